"""The ``blipwatch`` command line.

Each subcommand lives in its own module under ``stream_app/commands/`` and exposes
``register(subparsers)``; that module adds its parser and sets ``func`` to a function
taking the parsed arguments and returning an exit code. Modules import heavy
libraries (Faust, River) inside ``func`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from blipwatch.stream_app import commands
from blipwatch.stream_app.config import ConfigError

DESCRIPTION = """\
blipwatch: streaming anomaly detection for customer-behaviour events.

Consumes customer events from Kafka, turns them into per-segment business metrics
(cart abandonment, conversion, payment failures, traffic, ...), scores every metric
point with online River models and publishes alerts for blips to Kafka.

Start here:  blipwatch demo      (embedded broker + worker + simulator, ends by itself)
Settings:    BLIPWATCH_* environment variables; see README.md "Configuration".
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blipwatch", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"blipwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

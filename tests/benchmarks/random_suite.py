"""Detection on randomized shops against an oracle (the detection yardstick), default settings.

    .venv/bin/python tests/benchmarks/random_suite.py [--seeds 0 1 2] [--shops 20] [--hours 30]
        [--quick] [--config YAML] [--json OUT] [--shops-out SHOPS.jsonl]
    .venv/bin/python tests/benchmarks/random_suite.py --only 0/7 2/15 [...] [--config YAML] [--shops-out ...]
    .venv/bin/python tests/benchmarks/random_suite.py --from SHOPS.jsonl [SHOPS2.jsonl ...]

Each shop is drawn at random from (seed, index): volume, daily and weekly rhythm, funnel, channel /
country / device mixes, and incidents on a random metric and segment (two dimensions included)
after a first day of normal traffic. Its window counts go through the real pipeline (Replay's
trackers, detectors and alert policy), and each incident is compared with what a CUSUM that knows
the true baseline and shift achieves at the same false-alarm budget (one false alert per shop and
day over all series). Progress on stderr; the table on stdout; docs/detectors.md explains it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.tools.shopsuite.suite import ShopResult, countable, format_table, run_suite, shop_spec, summarise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--hours", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="3 shops x 8 hours (a minute or so)")
    parser.add_argument("--config", help="metric/detector YAML (default: the shipped one)")
    parser.add_argument("--json", help="write the whole report (every incident and series) here")
    parser.add_argument("--shops-out", help="append each shop's result here (JSON lines) as soon as it is done")
    parser.add_argument("--only", nargs="+", type=shop_spec, metavar="SEED/INDEX",
                        help="only these shops (as the progress lines and --shops-out name them), not --seeds x --shops")
    parser.add_argument("--from", dest="sources", nargs="+", help="summarise shop results written by --shops-out")
    args = parser.parse_args()
    if args.quick:
        args.shops, args.hours = 3, 8.0
    if args.sources:
        results = [ShopResult(**json.loads(line)) for source in args.sources
                   for line in Path(source).read_text().splitlines() if line.strip()]
        seeds = sorted({int(r.shop.split("/")[0]) for r in results})
        summary = summarise(results, seeds, len(results) // max(1, len(seeds)), results[0].days * 24 if results else 0)
    else:
        catalogue = countable(yaml.safe_load(Path(args.config).read_text())) if args.config else None
        out = open(args.shops_out, "a") if args.shops_out else None

        def keep(result):
            if out is not None:
                out.write(json.dumps(asdict(result), default=float) + "\n")
                out.flush()

        summary = run_suite(args.seeds, args.shops, args.hours, catalogue, keep=keep, only=args.only)
    print(format_table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``blipwatch worker``: the Faust worker against the configured Kafka."""

from __future__ import annotations

import argparse
import dataclasses
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker", help="run a stream worker against the configured Kafka (BLIPWATCH_BROKER)",
        description="Consumes customer events from BLIPWATCH_EVENTS_TOPIC, sends invalid ones to the DLQ, "
                    "computes per-segment metric windows, scores them and publishes metric points and "
                    "alerts. Serves Prometheus metrics on http://WEB_HOST:WEB_PORT/metrics. Run more "
                    "workers with the same BLIPWATCH_APP_ID to split the partitions. SIGTERM or Ctrl-C "
                    "stops it gracefully (flushes, commits).",
    )
    parser.add_argument("--web-port", type=int, help="HTTP port for /metrics (default BLIPWATCH_WEB_PORT, 6066)")
    parser.add_argument("--config", help="metric/detector YAML (default BLIPWATCH_CONFIG or the shipped one)")
    parser.add_argument("--loglevel", help="debug, info, warning, error (default BLIPWATCH_LOG_LEVEL, info)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from blipwatch.stream_app.config import Settings, load_catalogue

    settings = Settings.from_env()
    overrides = {}
    if args.web_port is not None:
        overrides["web_port"] = args.web_port
    if args.config:
        overrides["config_path"] = args.config
    if args.loglevel:
        overrides["log_level"] = args.loglevel
    settings = dataclasses.replace(settings, **overrides)
    catalogue = load_catalogue(settings)
    settings.check_tls()

    import faust

    from blipwatch.stream_app.app import create_app

    app = create_app(settings, catalogue)
    print(f"blipwatch worker: broker {settings.broker}, events {settings.events_topic}, "
          f"metrics http://{settings.web_host}:{settings.web_port}/metrics", file=sys.stderr, flush=True)
    from blipwatch.stream_app import logfilter

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger, level) -> None:
            super().on_setup_root_logger(logger, level)
            logfilter.install(logger)  # retry chatter while Kafka is away: one line per kind per 30 s

    worker = Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()
    return 0

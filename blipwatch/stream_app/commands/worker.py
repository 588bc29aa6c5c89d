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

    tune_gc()
    worker = Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()
    return 0


#: Generation-0 threshold in the worker (Python's default is 700). The ingest keeps every event of a
#: 0.5 s flush alive and the aggregate holds thousands of trackers: at 700 the collector ran so often,
#: over so large a heap, that the ingest's allocations cost ~3x their micro-benchmark.
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Once the app is built (imports, config, detectors' modules): move what exists to the
    permanent generation, so no collection walks it again, and collect less often. Measured with
    `blipwatch bench --events 300000 --live-seconds 0`, one session: end to end 35.6k events/s
    without, 40.1k with the freeze, 44.3k with the threshold, 54.6k with both (docs/performance.md)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)

"""``blipwatch bench``: events/s through a worker beside a bare consumer, in one run."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure this machine: events/s through a worker beside a bare consumer, one run",
        description="Starts the embedded broker, loads --events simulated events (not timed), then measures "
                    "on the same data: a bare aiokafka consumer decoding every event (the ceiling), and a "
                    "`blipwatch worker` subprocess processing them end to end until every window is scored. "
                    "Prints events/s for both and their ratio, the worker's peak RSS, detector-state bytes "
                    "per series and alert latency p50/p99 (window close to alert published). "
                    "See docs/performance.md.",
    )
    parser.add_argument("--events", type=int, default=300_000, help="events to load (default 300000, ~1 min)")
    parser.add_argument("--series", type=int, default=1_000,
                        help="series to track (default 1000): countries and per-type count metrics are "
                             "added to the simulated shop until about this many exist")
    parser.add_argument("--shop-rate", type=float, default=None, metavar="EVENTS_PER_S",
                        help="the simulated shop's traffic, events a second of event time: the events then "
                             "span --events / this seconds, so a window closes every ~this x 60 events per "
                             "series, as in that shop (default: the events span one hour, the demo incident's "
                             "scenario, whatever --events is; 300000 events is then an 83 events/s shop). "
                             "A window must close before the input goes idle: at least ~100 s of event time")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers in one consumer group (default 1; 2 measures scale-out)")
    parser.add_argument("--live-seconds", type=float, default=60.0,
                        help="then send the demo scenario paced (event time 60x the wall clock) to a fresh "
                             "worker tracking about --series series for this long and measure window close to "
                             "alert under live traffic (default 60; 0 skips it)")
    parser.add_argument("--live-speed", default="60",
                        help="event seconds per wall second in the live phase; several, comma separated, "
                             "run one after another with a fresh worker each (default 60: every series "
                             "closes a one-minute window each second; 10 is a calmer pace, see "
                             "docs/performance.md)")
    parser.add_argument("--journeys", choices=("on", "off", "both"), default="on",
                        help="on (default): the default catalogue's funnel metrics, a journey stage in the ingest; "
                             "off: no funnel metrics; both: the worker with them, then again without them on the "
                             "same events, each compared with the same bare consumer; the report gives the "
                             "journey stage's cost per event in any case")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from blipwatch.tools.bench import BenchError
    from blipwatch.tools.bench.run import format_report, run_bench
    from blipwatch.stream_app.embedded_broker import BrokerError

    if args.events < 1000:
        print("blipwatch bench: --events must be at least 1000", file=sys.stderr)
        return 2
    if not 1 <= args.series <= 13_000:
        print("blipwatch bench: --series must be between 1 and 13000", file=sys.stderr)
        return 2
    if not 0 <= args.live_seconds <= 3600:
        print("blipwatch bench: --live-seconds must be between 0 and 3600", file=sys.stderr)
        return 2
    try:
        speeds = tuple(float(speed) for speed in args.live_speed.split(",") if speed.strip())
    except ValueError:
        speeds = ()
    if not speeds or not all(0.5 <= speed <= 600 for speed in speeds):
        print("blipwatch bench: --live-speed must be one or more numbers between 0.5 and 600, comma separated",
              file=sys.stderr)
        return 2
    if args.shop_rate is not None and not 10 <= args.shop_rate <= 10_000_000:
        print("blipwatch bench: --shop-rate must be between 10 and 10000000 events a second", file=sys.stderr)
        return 2
    if not 1 <= args.workers <= 4:
        print("blipwatch bench: --workers must be between 1 and 4 (the topics have 4 partitions)",
              file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        if sys.stderr.isatty():
            print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)
        else:
            print(message, file=sys.stderr, flush=True)

    try:
        report = run_bench(args.events, args.series, progress=progress, workers=args.workers,
                           live_seconds=args.live_seconds, live_speeds=speeds, shop_rate=args.shop_rate,
                           journeys=args.journeys != "off", compare_journeys=args.journeys == "both")
    except (BenchError, BrokerError) as exc:
        print(f"\nblipwatch bench: {exc}", file=sys.stderr)
        return 1
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.json:
        print(orjson.dumps(report.as_dict()).decode())
    else:
        print(format_report(report))
    return 0

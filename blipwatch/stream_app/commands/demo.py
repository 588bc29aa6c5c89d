"""``blipwatch demo``: embedded broker + worker + simulator with an injected incident; ends by itself."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="see it work: embedded broker, a worker and simulated traffic with an incident (~2.5 min)",
        description="Starts the embedded broker, a worker and the simulator on this machine (nothing else "
                    "needs to run), sends a scenario's events with simulated time running ~90x faster than "
                    "the clock (normal traffic, then an injected incident), shows a live status line and "
                    "every alert as it fires and resolves, then prints whether the incident was caught, "
                    "stops everything it started and exits 0. Ctrl-C stops it at any moment.",
    )
    parser.add_argument("--duration", type=float, default=150.0,
                        help="wall-clock seconds for the whole demo, start-up to summary (default 150)")
    parser.add_argument("--scenario", default="demo",
                        help="scenario to send (default demo: a cart-abandonment spike on the web channel); "
                             "see `blipwatch simulate --list-scenarios`. A one-incident scenario is cut to "
                             "2 h before its incident and 30 min after it")
    parser.add_argument("--rate", type=float,
                        help="send this many events per second (default: as fast as needed to fit the "
                             "scenario's event time into --duration); sending stops when the time is up")
    parser.add_argument("--sessions-per-minute", type=float, default=None,
                        help="simulated sessions per minute (default 150; the service's simulator default is 60)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="windows a detector learns before it may alert (default 30; the service's is 120)")
    parser.add_argument("--tracker", choices=("segment", "ga4", "snowplow", "blipwatch"), default=None,
                        help="the format the simulated events are sent in (default segment: funnels from "
                             "journeys, no outcome events; blipwatch: the contract's own format)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the worker and broker logs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from blipwatch.tools.demo import DEMO_SESSIONS_PER_MINUTE, DEMO_TRACKER, DEMO_WARMUP_WINDOWS, DemoError, Options
    from blipwatch.tools.demo.run import run as run_demo

    for name in ("duration", "rate", "sessions_per_minute"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            print(f"blipwatch demo: --{name.replace('_', '-')} must be more than 0, not {value:g}", file=sys.stderr)
            return 2
    if args.warmup is not None and args.warmup < 1:
        print(f"blipwatch demo: --warmup must be 1 or more, not {args.warmup}", file=sys.stderr)
        return 2
    options = Options(scenario=args.scenario, duration=args.duration, rate=args.rate,
                      sessions_per_minute=args.sessions_per_minute or DEMO_SESSIONS_PER_MINUTE,
                      seed=args.seed, warmup=args.warmup or DEMO_WARMUP_WINDOWS, keep=args.keep,
                      tracker=args.tracker or DEMO_TRACKER)
    try:
        return run_demo(options)
    except DemoError as exc:
        print(f"blipwatch demo: {exc}", file=sys.stderr)
        return 1

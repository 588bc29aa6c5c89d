"""``blipwatch alerts tail``: the alerts topic, one readable line per alert, for a person on call
(the line and the reading: ``tools/alert_feed.py``)."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts", help="read the alerts topic (`blipwatch alerts tail`)",
        description="Reads anomaly alerts from BLIPWATCH_ALERTS_TOPIC on BLIPWATCH_BROKER.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    tail = actions.add_parser(
        "tail", help="print alerts as they arrive, one line each, until Ctrl-C",
        description="Prints each alert message (firing or resolved) from BLIPWATCH_ALERTS_TOPIC as one line: "
                    "window end (event time, UTC), status, severity, metric, segment, observed vs expected "
                    "(and the expected band), and the alert's summary. Follows new alerts until Ctrl-C, "
                    "--max or --timeout. Reads without a consumer group: it never moves anyone's offsets.",
    )
    tail.add_argument("--from-beginning", action="store_true",
                      help="start with the oldest alert the topic still holds (default: only new ones)")
    tail.add_argument("--json", action="store_true", help="print each alert's raw JSON, one per line")
    tail.add_argument("--max", type=int, metavar="N", help="stop after N alerts")
    tail.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    tail.set_defaults(func=run_tail)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_tail(args: argparse.Namespace) -> int:
    from blipwatch.stream_app.config import Settings
    from blipwatch.tools.alert_feed import KafkaUnreachable, follow_alerts, format_alert

    if args.max is not None and args.max < 1:
        print("blipwatch alerts tail: --max must be 1 or more", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    printed = 0
    try:
        # an unreachable broker is said within --timeout (10 s without one), not kafka-python's 30 s
        connect = 10.0 if args.timeout is None else min(max(args.timeout, 0.1), 10.0)
        for raw, alert in follow_alerts(settings, args.from_beginning, connect_seconds=connect):
            if raw:
                if args.json:
                    print(raw.decode("utf-8", errors="replace"), flush=True)
                elif alert is None:
                    print(f"(not an alert: {raw[:120].decode('utf-8', errors='replace')!r})", flush=True)
                else:
                    print(format_alert(alert), flush=True)
                printed += 1
                if args.max is not None and printed >= args.max:
                    break
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KafkaUnreachable as exc:
        print(f"blipwatch alerts tail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        return 0
    return 0

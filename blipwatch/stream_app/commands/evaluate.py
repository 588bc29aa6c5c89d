"""``blipwatch evaluate``: which labelled incidents the alerts caught, how fast, and how many false alerts."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score alerts against labelled incidents: detections, delays, false alerts",
        description="Reads alerts (JSON lines, the anomaly-alert contract) and a labels file (from "
                    "`blipwatch simulate --labels`) and prints, per incident, whether a firing alert caught it "
                    "and how long after its start, then the false alerts (alert episodes, one per dedup_key, "
                    "that match no incident) and their rate per simulated day. It reports; it does not judge: "
                    "the exit code is 0 whenever the input can be read.",
    )
    parser.add_argument("--alerts", required=True, help="alerts, one JSON object per line")
    parser.add_argument("--labels", required=True, help="labels JSON from blipwatch simulate --labels")
    parser.add_argument("--window-seconds", type=float, default=60.0,
                        help="the detector's window length, for delays in windows and the grace period (default 60)")
    parser.add_argument("--grace-windows", type=float, default=3.0,
                        help="an alert may start this many windows after an incident ends and still count (default 3)")
    parser.add_argument("--after", metavar="ALERTS",
                        help="the same events replayed with feedback (`blipwatch replay --feedback F --calendar C`): "
                             "adds alerts per day before and after, detections and false alerts of both")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from blipwatch.tools.evaluation import (EvaluationError, check_parameters, compare_feedback, evaluate,
                                            format_comparison, format_report, load_alerts, load_labels)

    try:
        check_parameters(args.window_seconds, args.grace_windows)
        report = evaluate(load_alerts(args.alerts), load_labels(args.labels),
                          window_seconds=args.window_seconds, grace_windows=args.grace_windows)
        if args.after:
            after = evaluate(load_alerts(args.after), load_labels(args.labels),
                             window_seconds=args.window_seconds, grace_windows=args.grace_windows)
            report["feedback"] = compare_feedback(report, after)
    except EvaluationError as exc:
        print(f"blipwatch evaluate: {exc}", file=sys.stderr)
        return 2
    text = format_report(report) + (format_comparison(report["feedback"]) if args.after else "")
    print(json.dumps(report, indent=2) if args.json else text)
    return 0

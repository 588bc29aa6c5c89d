"""``blipwatch replay``: the whole pipeline offline over a JSONL file of events."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay", help="run the whole pipeline offline over a JSONL file (no Kafka)",
        description="Reads customer events (one JSON object per line) in file order, and runs the same "
                    "validation, windows, detectors and alert policy as the stream. Writes the alerts "
                    "(and optionally every scored metric point) as JSONL. Invalid lines are counted by "
                    "reason, not fatal. Use it to backtest: replay last month's events, then "
                    "`blipwatch evaluate` the alerts against what really happened.",
    )
    parser.add_argument("events", help="events file (JSONL; '-' reads standard input)")
    parser.add_argument("--alerts", required=True, help="where to write the alerts (JSONL)")
    parser.add_argument("--points", help="where to write every scored metric point (JSONL)")
    parser.add_argument("--config", help="metric/detector YAML (default BLIPWATCH_CONFIG or the shipped one)")
    parser.add_argument("--feedback", metavar="FILE",
                        help="verdicts to act on (JSON lines, as `blipwatch feedback list --json` prints): each "
                             "is given once the event time reaches its `at`")
    parser.add_argument("--calendar", metavar="FILE",
                        help="planned events (YAML or JSON, as for `blipwatch calendar load`): those series "
                             "neither alert nor learn inside them")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def load_feedback(catalogue, feedback_path: str | None, calendar_path: str | None):
    """(book with the calendar, verdicts) from the two files; ValueError names the line that is wrong."""
    from datetime import datetime, timezone

    from blipwatch.pipeline.feedback import FeedbackBook
    from blipwatch.schemas.feedback import Feedback
    from blipwatch.schemas.outputs import InvalidDocument
    from blipwatch.stream_app.commands.calendar import load_file

    book, verdicts = FeedbackBook(), []
    if calendar_path:
        for entry in load_file(calendar_path, catalogue, datetime.now(timezone.utc)):
            book.apply_calendar(entry.key, entry.to_json())
    if feedback_path:
        try:
            with open(feedback_path, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            verdicts.append(Feedback.from_json(line))
                        except InvalidDocument as exc:
                            raise ValueError(f"{feedback_path}: line {number}: {exc}") from None
        except OSError as exc:
            raise ValueError(f"cannot read {feedback_path}: {exc.strerror}") from None
    return book, verdicts


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from blipwatch.stream_app.config import Settings, input_preset, load_catalogue
    from blipwatch.stream_app.replay import Replay

    settings = Settings.from_env()
    catalogue = load_catalogue(settings, args.config)
    if args.events != "-" and not Path(args.events).is_file():
        print(f"blipwatch replay: {args.events}: no such file", file=sys.stderr)
        return 2
    try:
        alerts_out = open(args.alerts, "wb")
        points_out = open(args.points, "wb") if args.points else None
    except OSError as exc:
        print(f"blipwatch replay: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2

    def on_point(point) -> None:
        if points_out is not None:
            points_out.write(point.to_json() + b"\n")

    def on_alert(alert) -> None:
        alerts_out.write(alert.to_json() + b"\n")

    try:
        book, verdicts = load_feedback(catalogue, args.feedback, args.calendar)
    except ValueError as exc:
        print(f"blipwatch replay: {exc}", file=sys.stderr)
        return 2
    replay = Replay(catalogue, on_point, on_alert, settings.max_event_bytes, book=book, verdicts=verdicts,
                    preset=input_preset(settings, catalogue), max_open_journeys=settings.max_open_journeys)
    started = time.perf_counter()
    source = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")
    total = None if args.events == "-" else Path(args.events).stat().st_size
    with tqdm(total=total, unit="B", unit_scale=True, disable=args.quiet or None, desc="replay",
              file=sys.stderr) as bar:
        def lines():
            for line in source:
                bar.update(len(line))
                yield line
        replay.feed(lines())
        stats = replay.finish()
    elapsed = time.perf_counter() - started
    alerts_out.close()
    if points_out is not None:
        points_out.close()
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.invalid_by_reason.items())) or "none"
    print(f"replayed {stats.events} events in {elapsed:.1f}s ({stats.events / max(elapsed, 1e-9):,.0f} events/s): "
          f"{stats.valid} valid, {stats.invalid} invalid ({reasons}), {stats.late} late; "
          f"{stats.series} series, {stats.windows_scored} windows scored, {stats.alerts} alert messages "
          f"-> {args.alerts}", file=sys.stderr)
    return 0

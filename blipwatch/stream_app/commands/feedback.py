"""``blipwatch feedback``: tell blipwatch what an incident was, and list what it was told.

    blipwatch feedback 'event_volume|channel=app@2026-01-05T02:00:00Z' --verdict false_positive --note "nightly gap"
    blipwatch feedback list

A verdict is one record on the compacted feedback topic (``BLIPWATCH_FEEDBACK_TOPIC``), keyed by
the incident's ``dedup_key``; giving another verdict later replaces it. The contract is
``schemas/feedback.schema.json``, so any other tool can write the same records.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone

from blipwatch.schemas.feedback import VERDICTS

EXAMPLE_KEY = "event_volume|channel=app@2026-01-05T02:00:00Z"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "feedback", help="give a verdict on an incident (false_positive, expected, confirmed), or list them",
        description="`blipwatch feedback DEDUP_KEY --verdict VERDICT [--note TEXT]` records a verdict on one "
                    "incident (its dedup_key is on every alert of it, and a label in Alertmanager): "
                    "false_positive (resolved if still firing; the same pattern at the same time of day "
                    "stops paging and is learned as normal), expected (real but planned or harmless: resolved, "
                    "not learned) or confirmed (kept, changes nothing). A later verdict on the same incident "
                    "replaces it. `blipwatch feedback list` prints the latest verdict per incident. Both use "
                    "BLIPWATCH_FEEDBACK_TOPIC on BLIPWATCH_BROKER.",
        epilog=f"example: blipwatch feedback '{EXAMPLE_KEY}' --verdict false_positive --note 'nightly tracking gap'",
    )
    parser.add_argument("target", metavar="DEDUP_KEY|list",
                        help="the incident's dedup_key, or `list` to print the verdicts given so far")
    parser.add_argument("--verdict", choices=VERDICTS, help="what the incident was (required with DEDUP_KEY)")
    parser.add_argument("--note", help="why, for the next person on call (up to 2,000 characters)")
    parser.add_argument("--by", default=os.environ.get("USER") or None,
                        help="who gives the verdict (default: $USER)")
    parser.add_argument("--json", action="store_true", help="list: print each record's JSON, one per line")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="S",
                        help="give up on Kafka after S seconds (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from blipwatch.stream_app.config import Settings
    from blipwatch.stream_app.feedback_topics import TopicError

    settings = Settings.from_env()
    try:
        if args.target == "list" and args.verdict is None:
            return run_list(args, settings)
        return run_give(args, settings)
    except TopicError as exc:
        print(f"blipwatch feedback: {exc}", file=sys.stderr)
        return 1


def run_give(args: argparse.Namespace, settings) -> int:
    from blipwatch.schemas.feedback import Feedback, incident_of
    from blipwatch.schemas.outputs import InvalidDocument
    from blipwatch.stream_app.feedback_topics import publish

    def fail(message: str) -> int:
        print(f"blipwatch feedback: {message}", file=sys.stderr)
        return 2

    if args.verdict is None:
        return fail("give a verdict: --verdict false_positive, expected or confirmed (or `blipwatch feedback list`)")
    if incident_of(args.target) is None:
        return fail(f"{args.target!r} is not an incident's dedup_key like '{EXAMPLE_KEY}': copy it from the alert "
                    "(the dedup_key field, or the dedup_key label in Alertmanager)")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        feedback = Feedback.from_dict({"dedup_key": args.target, "verdict": args.verdict, "at": now, "source": "cli",
                                       "note": args.note, "by": args.by})
    except InvalidDocument as exc:
        return fail(str(exc).replace("Feedback.", "--"))
    publish(settings, settings.feedback_topic, [(feedback.key, feedback.to_json())], timeout=args.timeout)
    print(f"{feedback.verdict} recorded for {feedback.dedup_key} on {settings.feedback_topic}")
    return 0


def format_feedback(feedback) -> str:
    """One verdict as one line: when, verdict, incident, who and how, note.

    >>> from blipwatch.schemas.feedback import Feedback
    >>> print(format_feedback(Feedback(EXAMPLE_KEY, "false_positive", "2026-01-05T08:12:00Z", "cli", note="gap",
    ...                                by="alice")))
    2026-01-05 08:12Z  false_positive  event_volume|channel=app@2026-01-05T02:00:00Z  cli alice  gap
    """
    from blipwatch.schemas.feedback import time_ms
    from blipwatch.schemas.outputs import iso_from_ms

    at = iso_from_ms(time_ms(feedback.at))
    who = f"{feedback.source} {feedback.by}" if feedback.by else feedback.source
    line = f"{at[:10]} {at[11:16]}Z  {feedback.verdict:14}  {feedback.dedup_key}  {who}"
    return f"{line}  {feedback.note}" if feedback.note else line


def run_list(args: argparse.Namespace, settings) -> int:
    from blipwatch.schemas.feedback import Feedback, time_ms
    from blipwatch.stream_app.feedback_topics import read_documents

    verdicts, skipped = read_documents(settings, settings.feedback_topic, Feedback.from_json, args.timeout)
    verdicts.sort(key=lambda f: (time_ms(f.at), f.dedup_key))
    for feedback in verdicts:
        print(feedback.to_json().decode() if args.json else format_feedback(feedback))
    if not verdicts:
        print(f"no verdicts on {settings.feedback_topic}", file=sys.stderr)
    if skipped:
        print(f"blipwatch feedback: {skipped} record(s) on {settings.feedback_topic} are not valid feedback "
              "(schemas/feedback.schema.json) and were skipped", file=sys.stderr)
    return 0

"""``blipwatch calendar``: planned events, during which the matching series neither alert nor learn.

    blipwatch calendar add --from 2026-03-20 --to 3d --metric event_volume --segment channel=web --reason "spring sale"
    blipwatch calendar list
    blipwatch calendar load campaigns.yaml
    blipwatch calendar remove spring-sale-20260320t0000z

Each entry is one record on the compacted calendar topic (``BLIPWATCH_CALENDAR_TOPIC``), keyed by
its id; the contract is ``schemas/calendar_entry.schema.json``. A file for ``load`` is YAML (or
JSON): a list of entries, or ``entries:`` holding one, each with the fields of ``add``::

    entries:
      - reason: spring sale
        from: 2026-03-20T00:00:00Z
        to: 2026-03-23T00:00:00Z          # or  for: 3d
        metrics: [event_volume, average_order_value]   # optional: every metric
        segment: channel=web              # optional: every series; "all": the overall series only
        id: spring-sale-2026              # optional: made from the reason and the start
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import date, datetime, timedelta, timezone
from typing import Any

from blipwatch.schemas.outputs import InvalidDocument

_DURATION = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*(m|min|h|d|w)$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
ENTRY_KEYS = ("id", "from", "to", "for", "reason", "metric", "metrics", "segment")


class CalendarInputError(ValueError):
    """What the user wrote cannot be an entry; the message is one line."""


def parse_when(value: Any, what: str, now: datetime) -> datetime:
    """A time as the user writes it: RFC 3339, ISO 8601 without a zone (UTC), a date (midnight
    UTC) or ``now``.

    >>> now = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    >>> [parse_when(v, "--from", now).strftime("%d %H:%M") for v in ("2026-03-20", "2026-03-20 08:00",
    ...                                                                "2026-03-20T08:00+01:00", "now")]
    ['20 00:00', '20 08:00', '20 07:00', '01 09:30']
    """
    if isinstance(value, datetime):   # YAML reads an unquoted time as one
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    text = str(value).strip()
    if text.lower() == "now":
        return now
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CalendarInputError(f"{what} {text!r}: write a time like 2026-03-20T08:00Z, 2026-03-20 (midnight UTC) "
                                 "or now") from None
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_end(value: Any, start: datetime, what: str, now: datetime) -> datetime:
    """``--to``: a time, or a duration after the start (``90m``, ``6h``, ``3d``, ``1w``).

    >>> start = datetime(2026, 3, 20, tzinfo=timezone.utc)
    >>> parse_end("3d", start, "--to", start).isoformat(), parse_end("90m", start, "--to", start).isoformat()
    ('2026-03-23T00:00:00+00:00', '2026-03-20T01:30:00+00:00')
    """
    match = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if match:
        return start + timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    return parse_when(value, what, now)


def parse_segment(value: Any, dimensions: tuple[str, ...]) -> dict[str, str] | None:
    """``channel=web[,country=DE]`` or a mapping; ``all`` is the overall series only; None: every series.

    >>> parse_segment("channel=web", ("channel",)), parse_segment("all", ()), parse_segment(None, ())
    ({'channel': 'web'}, {}, None)
    """
    if value is None:
        return None
    if isinstance(value, dict):
        segment = {str(k): str(v) for k, v in value.items()}
    else:
        text = str(value).strip()
        if text == "all":
            return {}
        segment = {}
        for part in text.split(","):
            name, equals, item = part.partition("=")
            if not equals or not name.strip() or not item.strip():
                raise CalendarInputError(f"segment {text!r}: write dimension=value pairs like channel=web or "
                                         "channel=web,country=DE, or all for the overall series")
            segment[name.strip()] = item.strip()
    unknown = sorted(set(segment) - set(dimensions))
    if unknown:
        raise CalendarInputError(f"segment dimension {unknown[0]!r} is not one the worker splits by; "
                                 f"use {', '.join(dimensions) or '(none configured)'}")
    return segment


def default_id(reason: str, start: datetime) -> str:
    """From the reason and the start, so adding the same entry twice replaces it.

    >>> default_id("Spring sale (EU)!", datetime(2026, 3, 20, tzinfo=timezone.utc))
    'spring-sale-eu-20260320t0000z'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", reason.lower()).strip("-")[:60].strip("-") or "entry"
    return f"{slug}-{start.strftime('%Y%m%dt%H%Mz')}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_entry(fields: dict[str, Any], catalogue, now: datetime, by: str | None = None):
    """A ``CalendarEntry`` from what a user wrote (``add``'s options or one entry of a file)."""
    from blipwatch.schemas.feedback import CalendarEntry

    unknown = sorted(set(fields) - set(ENTRY_KEYS))
    if unknown:
        raise CalendarInputError(f"unknown field {unknown[0]!r}; an entry has {', '.join(ENTRY_KEYS)}")
    for name in ("from", "reason"):
        if fields.get(name) in (None, ""):
            raise CalendarInputError(f"'{name}' is missing")
    if (fields.get("to") is None) == (fields.get("for") is None):
        raise CalendarInputError("give either 'to' (a time) or 'for' (a duration like 3d), not both or neither")
    if fields.get("for") is not None and not _DURATION.match(str(fields["for"]).strip()):
        raise CalendarInputError(f"for {fields['for']!r}: write a duration like 90m, 6h, 3d or 1w")
    start = parse_when(fields["from"], "from", now)
    end = parse_end(fields["to"] if fields.get("to") is not None else str(fields["for"]), start,
                    "to" if fields.get("to") is not None else "for", now)
    metrics = fields.get("metrics", fields.get("metric"))
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if metrics is not None:
        if not isinstance(metrics, list) or not metrics:
            raise CalendarInputError("metrics: a list of metric names, or leave it out for every metric")
        for metric in metrics:
            if metric not in catalogue.by_name:
                raise CalendarInputError(f"metric {metric!r} is not in the catalogue; known: "
                                         f"{', '.join(sorted(catalogue.by_name))}")
        metrics = list(dict.fromkeys(metrics))
    reason = str(fields["reason"]).strip()
    document = {"id": str(fields.get("id") or default_id(reason, start)), "from": _iso(start), "to": _iso(end),
                "reason": reason, "metrics": metrics,
                "segment": parse_segment(fields.get("segment"), catalogue.dimensions),
                "at": _iso(now), "by": by}
    try:
        return CalendarEntry.from_dict({k: v for k, v in document.items() if v is not None})
    except InvalidDocument as exc:
        raise CalendarInputError(str(exc).replace("CalendarEntry.", "").replace("CalendarEntry ", "entry ")) from None


def load_file(path: str, catalogue, now: datetime, by: str | None = None) -> list:
    """Every entry of a YAML/JSON calendar file, all checked before any is written."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as exc:
        raise CalendarInputError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CalendarInputError(f"{path} is not valid YAML or JSON: {str(exc).splitlines()[0]}") from None
    if isinstance(document, dict) and set(document) == {"entries"}:
        document = document["entries"]
    if not isinstance(document, list) or not document:
        raise CalendarInputError(f"{path}: expected a list of entries (or `entries:` holding one)")
    entries, seen = [], {}
    for number, fields in enumerate(document, 1):
        if not isinstance(fields, dict):
            raise CalendarInputError(f"{path}: entry {number} is not a mapping with from, to, reason")
        try:
            entry = build_entry(fields, catalogue, now, by)
        except CalendarInputError as exc:
            raise CalendarInputError(f"{path}: entry {number}: {exc}") from None
        if entry.id in seen:
            raise CalendarInputError(f"{path}: entries {seen[entry.id]} and {number} have the same id {entry.id!r}")
        seen[entry.id] = number
        entries.append(entry)
    return entries


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calendar", help="planned events: add, list, load or remove entries",
        description="Planned events (a campaign, a sale, maintenance): from an entry's start to its end, the "
                    "series it matches neither alert nor learn, and their points say why (suppressed: reason). "
                    "Entries live on BLIPWATCH_CALENDAR_TOPIC on BLIPWATCH_BROKER. Times are event time, UTC "
                    "unless written with a zone.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=float, default=15.0, metavar="S",
                        help="give up on Kafka after S seconds (default: %(default)s)")
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[common], help="add (or replace, by id) one entry",
        description="Adds one entry. Re-adding the same reason and start replaces it (the id is made from them).",
        epilog='example: blipwatch calendar add --from 2026-03-20 --to 3d --segment channel=web '
               '--metric event_volume --reason "spring sale"')
    add.add_argument("--from", dest="start", required=True, metavar="TIME",
                     help="start: 2026-03-20T08:00Z, 2026-03-20 (midnight UTC) or now")
    add.add_argument("--to", dest="end", required=True, metavar="TIME|DURATION",
                     help="end (exclusive): a time, or a duration after the start like 90m, 6h, 3d, 1w")
    add.add_argument("--segment", help="channel=web[,country=DE], or all for the overall series only "
                                       "(default: every series)")
    add.add_argument("--metric", action="append", metavar="NAME",
                     help="a metric it covers; repeat or separate with commas (default: every metric)")
    add.add_argument("--reason", required=True, help='shown on the suppressed points, e.g. "spring sale"')
    add.add_argument("--id", help="the entry's id (default: made from the reason and the start)")
    add.add_argument("--config", help="metric catalogue YAML to check --metric and --segment against "
                                      "(default: BLIPWATCH_CONFIG or the shipped one)")
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", parents=[common], help="print every entry, one line each",
                                 description="Prints every entry on the calendar topic, earliest first.")
    listing.add_argument("--json", action="store_true", help="print each entry's JSON, one per line")
    listing.set_defaults(func=run_list)
    load = actions.add_parser(
        "load", parents=[common], help="add every entry of a YAML or JSON file",
        description="Adds every entry of FILE (a list of entries, or `entries:` holding one; each with reason, "
                    "from, to or for, and optional metrics, segment, id). Every entry is checked before any is "
                    "written.")
    load.add_argument("file", metavar="FILE")
    load.add_argument("--dry-run", action="store_true", help="check and print the entries, write nothing")
    load.add_argument("--config", help="metric catalogue YAML to check metrics and segments against")
    load.set_defaults(func=run_load)
    remove = actions.add_parser("remove", parents=[common], help="remove an entry by id",
                                description="Removes an entry (a tombstone on its id): its series alert and "
                                            "learn again from the next window.")
    remove.add_argument("id", metavar="ID")
    remove.set_defaults(func=run_remove)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _fail(message: str, code: int = 2) -> int:
    print(f"blipwatch calendar: {message}", file=sys.stderr)
    return code


def _catalogue(args: argparse.Namespace, settings):
    from blipwatch.stream_app.config import load_catalogue

    return load_catalogue(settings, getattr(args, "config", None))


def _publish(settings, entries: list, timeout: float) -> None:
    from blipwatch.stream_app.feedback_topics import publish

    publish(settings, settings.calendar_topic, [(entry.key, entry.to_json()) for entry in entries], timeout=timeout)


def _kafka(action):
    def wrapped(args: argparse.Namespace) -> int:
        from blipwatch.stream_app.config import Settings
        from blipwatch.stream_app.feedback_topics import TopicError

        settings = Settings.from_env()
        try:
            return action(args, settings)
        except CalendarInputError as exc:
            return _fail(str(exc))
        except TopicError as exc:
            return _fail(str(exc), 1)
    return wrapped


@_kafka
def run_add(args: argparse.Namespace, settings) -> int:
    fields = {"from": args.start, "reason": args.reason, "id": args.id, "segment": args.segment,
              "metrics": ",".join(args.metric) if args.metric else None}
    fields["for" if _DURATION.match(args.end.strip()) else "to"] = args.end
    entry = build_entry(fields, _catalogue(args, settings), datetime.now(timezone.utc), os.environ.get("USER"))
    _publish(settings, [entry], args.timeout)
    print(f"added {entry.describe()}")
    return 0


@_kafka
def run_load(args: argparse.Namespace, settings) -> int:
    entries = load_file(args.file, _catalogue(args, settings), datetime.now(timezone.utc), os.environ.get("USER"))
    if not args.dry_run:
        _publish(settings, entries, args.timeout)
    for entry in entries:
        print(f"{'checked' if args.dry_run else 'added'} {entry.describe()}")
    return 0


@_kafka
def run_remove(args: argparse.Namespace, settings) -> int:
    from blipwatch.stream_app.feedback_topics import publish, read_latest

    if args.id.encode() not in read_latest(settings, settings.calendar_topic, timeout=args.timeout):
        return _fail(f"no entry {args.id!r} on {settings.calendar_topic}; `blipwatch calendar list` shows the ids")
    publish(settings, settings.calendar_topic, [(args.id.encode(), None)], timeout=args.timeout)
    print(f"removed {args.id}")
    return 0


@_kafka
def run_list(args: argparse.Namespace, settings) -> int:
    from blipwatch.schemas.feedback import CalendarEntry
    from blipwatch.stream_app.feedback_topics import read_documents

    entries, skipped = read_documents(settings, settings.calendar_topic, CalendarEntry.from_json, args.timeout)
    entries.sort(key=lambda e: (e.start_ms, e.id))
    for entry in entries:
        print(entry.to_json().decode() if args.json else entry.describe())
    if not entries:
        print(f"no entries on {settings.calendar_topic}", file=sys.stderr)
    if skipped:
        _fail(f"{skipped} record(s) on {settings.calendar_topic} are not valid calendar entries "
              "(schemas/calendar_entry.schema.json) and were skipped")
    return 0

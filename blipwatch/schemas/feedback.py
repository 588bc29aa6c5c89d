"""What people on call tell blipwatch: verdicts on incidents and planned events (calendars).

Two compacted topics, one contract each (JSON Schema files beside this module):

- ``blipwatch-feedback`` (``BLIPWATCH_FEEDBACK_TOPIC``), keyed by the incident's ``dedup_key``: a
  ``Feedback`` says the incident was a ``false_positive``, ``expected`` (real, but planned or
  harmless) or ``confirmed``. The latest verdict per incident wins; compaction keeps only it.
- ``blipwatch-calendar`` (``BLIPWATCH_CALENDAR_TOPIC``), keyed by the entry's ``id``: a
  ``CalendarEntry`` says that from ``from`` to ``to`` the matching series neither alert nor learn.
  A tombstone (null value) on an id removes the entry.

Why two topics and not one with a ``kind`` field: the two are written by different hands (a
verdict comes from the CLI, the Alertmanager bridge or any tool that reads alerts; a calendar
from whoever plans a campaign), so a producer of verdicts needs to know one small schema and
nothing about calendars; each topic's key space is one thing (a ``dedup_key`` and an entry id can
never overwrite each other under compaction, whatever an id looks like); a tombstone means
"withdrawn" on both without a kind to guess; and each can be retained, read and access-controlled
on its own (a consumer that only lists calendars never reads the whole history of verdicts). The
cost, one more topic for the worker to read, is small: both are tiny and read whole by every
worker, like a global table.

Times are RFC 3339 UTC strings. ``from``/``to`` and the incident span are event time (the
windows' clock); ``at`` is when the verdict or entry was given (wall clock).

>>> fb = Feedback(dedup_key="event_volume|channel=app@2026-01-05T02:00:00Z", verdict="false_positive",
...               at="2026-01-05T08:12:00Z", source="cli", note="nightly tracking gap")
>>> Feedback.from_json(fb.to_json()) == fb
True
>>> fb.series_key(), iso_from_ms(fb.started_ms())
('event_volume|channel=app', '2026-01-05T02:00:00Z')
>>> entry = CalendarEntry(id="spring-sale", start="2026-03-20T00:00:00Z", end="2026-03-23T00:00:00Z",
...                       reason="spring sale", metrics=("event_volume",), segment={"channel": "web"})
>>> orjson.loads(entry.to_json())["from"], CalendarEntry.from_json(entry.to_json()) == entry
('2026-03-20T00:00:00Z', True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from blipwatch.schemas.events import MAX_TIME_MS, MIN_TIME_MS, RFC3339_PATTERN
from blipwatch.schemas.outputs import InvalidDocument, iso_from_ms, ms_from_iso

FEEDBACK_TOPIC = "blipwatch-feedback"
CALENDAR_TOPIC = "blipwatch-calendar"

VERDICTS = ("false_positive", "expected", "confirmed")
SOURCES = ("cli", "alertmanager", "kafka")

MAX_KEY_LENGTH = 512
MAX_NOTE_LENGTH = 2000
MAX_REASON_LENGTH = 200
MAX_ID_LENGTH = 128
#: A planned event longer than this is not an event but a change of normal: let the series learn it.
MAX_CALENDAR_DAYS = 92

_RFC3339 = re.compile(RFC3339_PATTERN)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_METRIC = re.compile(r"^[a-z][a-z0-9_]*$")


def incident_of(dedup_key: str) -> tuple[str, int] | None:
    """``(series, started_at ms)`` of a blipwatch ``dedup_key`` (``SERIES@START``), None for another form.

    >>> incident_of("checkout_conversion_rate|all@2026-01-05T20:05:00Z")
    ('checkout_conversion_rate|all', 1767643500000)
    >>> incident_of("something else") is None
    True
    """
    series, at, start = dedup_key.rpartition("@")
    if not at or "|" not in series or not _RFC3339.match(start):
        return None
    millis = ms_from_iso(start)
    return (series, millis) if MIN_TIME_MS <= millis < MAX_TIME_MS else None


def _document(cls, raw: bytes | str) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidDocument(f"{cls.__name__} is not JSON ({str(exc).split(':', 1)[0]})") from None
    return document


def _check_fields(cls, document: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise InvalidDocument(f"{cls.__name__} must be a JSON object")
    for name in cls.REQUIRED:
        if document.get(name) is None:
            raise InvalidDocument(f"{cls.__name__}.{name} is missing")
    unknown = set(document) - set(names)
    if unknown:
        raise InvalidDocument(f"{cls.__name__} has unknown fields: {', '.join(sorted(unknown))}")
    return document


def _text(cls_name: str, name: str, value: Any, limit: int, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidDocument(f"{cls_name}.{name} must be a non-empty string")
    if len(value) > limit:
        raise InvalidDocument(f"{cls_name}.{name} is longer than {limit} characters")
    return value


def _time(cls_name: str, name: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidDocument(f"{cls_name}.{name} must be an RFC 3339 time with a zone, e.g. 2026-01-05T20:05:00Z")
    try:
        millis = ms_from_iso(re.sub(r"(\.\d{6})\d+", r"\1", value.replace("z", "Z").replace("t", "T")))
    except ValueError:
        raise InvalidDocument(f"{cls_name}.{name}={value!r} is not a real date and time") from None
    if not MIN_TIME_MS <= millis < MAX_TIME_MS:
        raise InvalidDocument(f"{cls_name}.{name} must lie between 2000-01-01 and 2100-01-01")
    return value


def time_ms(value: str) -> int:
    """An RFC 3339 time of a validated document as epoch milliseconds."""
    return ms_from_iso(re.sub(r"(\.\d{6})\d+", r"\1", value.replace("z", "Z").replace("t", "T")))


@dataclass(frozen=True)
class Feedback:
    """A verdict on one incident (topic ``blipwatch-feedback``, key ``dedup_key``).

    ``series``, ``started_at`` and ``ended_at`` describe the incident's span when the sender
    knows it (the start of its first window, the end of its last); without them a blipwatch
    ``dedup_key`` still names the series and the start (``series_key()``, ``started_ms()``).
    """

    REQUIRED = ("dedup_key", "verdict", "at", "source")
    FIELDS = ("dedup_key", "verdict", "at", "source", "note", "by", "series", "started_at", "ended_at")

    dedup_key: str
    verdict: str
    at: str
    source: str
    note: str | None = None
    by: str | None = None
    series: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def key(self) -> bytes:
        return self.dedup_key.encode()

    def series_key(self) -> str | None:
        if self.series:
            return self.series
        parsed = incident_of(self.dedup_key)
        return parsed[0] if parsed else None

    def started_ms(self) -> int | None:
        if self.started_at:
            return time_ms(self.started_at)
        parsed = incident_of(self.dedup_key)
        return parsed[1] if parsed else None

    def ended_ms(self) -> int | None:
        return time_ms(self.ended_at) if self.ended_at else None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS if getattr(self, name) is not None}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, document: Any) -> "Feedback":
        values = _check_fields(cls, document, cls.FIELDS)
        name = cls.__name__
        dedup_key = _text(name, "dedup_key", values["dedup_key"], MAX_KEY_LENGTH)
        if values["verdict"] not in VERDICTS:
            raise InvalidDocument(f"{name}.verdict must be one of {', '.join(VERDICTS)}")
        if values["source"] not in SOURCES:
            raise InvalidDocument(f"{name}.source must be one of {', '.join(SOURCES)}")
        feedback = cls(
            dedup_key=dedup_key, verdict=values["verdict"], at=_time(name, "at", values["at"]),
            source=values["source"], note=_text(name, "note", values.get("note"), MAX_NOTE_LENGTH, optional=True),
            by=_text(name, "by", values.get("by"), MAX_ID_LENGTH, optional=True),
            series=_text(name, "series", values.get("series"), MAX_KEY_LENGTH, optional=True),
            started_at=_time(name, "started_at", values.get("started_at"), optional=True),
            ended_at=_time(name, "ended_at", values.get("ended_at"), optional=True),
        )
        if feedback.series is not None and "|" not in feedback.series:
            raise InvalidDocument(f"{name}.series must be a series key like cart_abandonment_rate|channel=web")
        start, end = feedback.started_ms(), feedback.ended_ms()
        if start is not None and end is not None and end <= start:
            raise InvalidDocument(f"{name}.ended_at must be after started_at")
        return feedback

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Feedback":
        return cls.from_dict(_document(cls, raw))


@dataclass(frozen=True)
class CalendarEntry:
    """A planned event (topic ``blipwatch-calendar``, key ``id``): from ``start`` (``from`` on the
    wire) to ``end`` (``to``), the series it matches neither alert nor learn.

    ``metrics``: the metrics it covers (None: every metric). ``segment``: None covers every series;
    ``{}`` only the overall ``all`` series; ``{"channel": "web"}`` every series whose segment has
    channel=web.
    """

    REQUIRED = ("id", "from", "to", "reason")
    FIELDS = ("id", "from", "to", "reason", "metrics", "segment", "at", "by")

    id: str
    start: str
    end: str
    reason: str
    metrics: tuple[str, ...] | None = None
    segment: dict[str, str] | None = None
    at: str | None = None
    by: str | None = None

    @property
    def key(self) -> bytes:
        return self.id.encode()

    @property
    def start_ms(self) -> int:
        return time_ms(self.start)

    @property
    def end_ms(self) -> int:
        return time_ms(self.end)

    def to_dict(self) -> dict[str, Any]:
        document = {"id": self.id, "from": self.start, "to": self.end, "reason": self.reason,
                    "metrics": list(self.metrics) if self.metrics is not None else None,
                    "segment": self.segment, "at": self.at, "by": self.by}
        return {name: value for name, value in document.items() if value is not None}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, document: Any) -> "CalendarEntry":
        values = _check_fields(cls, document, cls.FIELDS)
        name = cls.__name__
        entry_id = values["id"]
        if not isinstance(entry_id, str) or not _ID.match(entry_id):
            raise InvalidDocument(f"{name}.id must be 1-128 letters, digits or . _ : - (starting with a letter "
                                  "or digit)")
        metrics = values.get("metrics")
        if metrics is not None:
            if not isinstance(metrics, list) or not metrics or \
                    not all(isinstance(m, str) and _METRIC.match(m) for m in metrics):
                raise InvalidDocument(f"{name}.metrics must be a non-empty list of metric names like event_volume")
            metrics = tuple(metrics)
        segment = values.get("segment")
        if segment is not None:
            if not isinstance(segment, dict) or not all(
                    isinstance(k, str) and k and isinstance(v, str) and v for k, v in segment.items()):
                raise InvalidDocument(f"{name}.segment must be an object of dimension to value, "
                                      'e.g. {"channel": "web"} ({} for the overall series only)')
        entry = cls(id=entry_id, start=_time(name, "from", values["from"]), end=_time(name, "to", values["to"]),
                    reason=_text(name, "reason", values["reason"], MAX_REASON_LENGTH), metrics=metrics,
                    segment=dict(segment) if segment is not None else None,
                    at=_time(name, "at", values.get("at"), optional=True),
                    by=_text(name, "by", values.get("by"), MAX_ID_LENGTH, optional=True))
        if entry.end_ms <= entry.start_ms:
            raise InvalidDocument(f"{name} {entry_id}: 'to' must be after 'from'")
        if entry.end_ms - entry.start_ms > MAX_CALENDAR_DAYS * 86_400_000:
            raise InvalidDocument(f"{name} {entry_id} lasts more than {MAX_CALENDAR_DAYS} days: a change that long "
                                  "is the new normal, let the series learn it")
        return entry

    @classmethod
    def from_json(cls, raw: bytes | str) -> "CalendarEntry":
        return cls.from_dict(_document(cls, raw))

    def describe(self) -> str:
        """One line: id, span, scope, reason.

        >>> CalendarEntry("sale", "2026-03-20T00:00:00Z", "2026-03-23T00:00:00Z", "spring sale",
        ...               segment={"channel": "web"}).describe()
        'sale  2026-03-20 00:00Z .. 2026-03-23 00:00Z  every metric on channel=web  spring sale'
        """
        what = ",".join(self.metrics) if self.metrics else "every metric"
        if self.segment is None:
            where = "every segment"
        else:
            where = ",".join(f"{k}={v}" for k, v in sorted(self.segment.items())) or "all"
        start, end = iso_from_ms(self.start_ms), iso_from_ms(self.end_ms)
        return f"{self.id}  {start[:10]} {start[11:16]}Z .. {end[:10]} {end[11:16]}Z  {what} on {where}  {self.reason}"

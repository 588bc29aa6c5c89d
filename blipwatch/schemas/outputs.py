"""What blipwatch publishes: metric points and anomaly alerts (docs/architecture.md, "Contracts").

Both are plain dataclasses with ``to_json()`` (bytes, via orjson) and ``from_dict()``
with validation, so consumers in Python and the JSON Schema files in this folder
describe the same documents.

>>> point = MetricPoint(series="cart_abandonment_rate|channel=web", metric="cart_abandonment_rate",
...     segment={"channel": "web"}, window_start="2026-01-05T20:05:00Z", window_end="2026-01-05T20:06:00Z",
...     numerator=81.0, denominator=100.0, value=0.81, expected=0.62, lower=0.58, upper=0.66,
...     score=0.9999, is_anomaly=True, direction="up")
>>> MetricPoint.from_dict(orjson.loads(point.to_json())) == point
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import orjson

ALERT_STATUSES = ("firing", "resolved")
#: an entry of an alert's ``related``: ``metric`` and ``segment`` always; ``firing`` (is that series
#: firing); for a segment of the same metric nested with the alert's, ``relation`` (``parent``:
#: broader, ``child``: narrower), ``share`` (0..1: of the broader segment's blip, how much the
#: narrower accounts for) and ``cause`` (true on the most specific child that explains the alert)
RELATIONS = ("parent", "child")
SEVERITIES = ("warning", "critical")
DIRECTIONS = ("up", "down")


def iso_from_ms(millis: int | float) -> str:
    """Epoch milliseconds to RFC 3339 UTC with a ``Z``.

    >>> iso_from_ms(1767643500000)
    '2026-01-05T20:05:00Z'
    >>> iso_from_ms(1767643500250)
    '2026-01-05T20:05:00.250Z'
    """
    text = _ISO_SEEN.get(millis)
    if text is None:
        moment = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
        if int(millis) % 1000:
            text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(millis) % 1000:03d}Z"
        else:
            text = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if len(_ISO_SEEN) >= 16_384:
            _ISO_SEEN.clear()
        _ISO_SEEN[millis] = text
    return text


#: Every series closes the same window starts and ends: formatting each once saved ~3% of a worker.
_ISO_SEEN: dict[int | float, str] = {}


def ms_from_iso(text: str) -> int:
    """RFC 3339 to epoch milliseconds (inverse of ``iso_from_ms``)."""
    return int(round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000))


def segment_label(segment: dict[str, str]) -> str:
    """The segment as one string, for series keys and metric labels: ``all`` or ``channel=web``.

    >>> segment_label({}), segment_label({"channel": "web"}), segment_label({"country": "DE", "channel": "web"})
    ('all', 'channel=web', 'channel=web,country=DE')
    """
    if not segment:
        return "all"
    return ",".join(f"{k}={v}" for k, v in sorted(segment.items()))


def segment_from_label(label: str) -> dict[str, str]:
    """Inverse of ``segment_label``."""
    if label == "all" or not label:
        return {}
    return dict(part.split("=", 1) for part in label.split(","))


def spoken_segment(label: str) -> str:
    """A segment label as a summary says it: ``channel=web × country=DE`` for a pair.

    >>> spoken_segment("channel=web,country=DE"), spoken_segment("channel=web"), spoken_segment("all")
    ('channel=web × country=DE', 'channel=web', 'overall')
    """
    return "overall" if label in ("all", "") else label.replace(",", " × ")


def series_key(metric: str, segment: dict[str, str]) -> str:
    """The series key: ``cart_abandonment_rate|channel=web`` (the partials topic's key)."""
    return f"{metric}|{segment_label(segment)}"


class InvalidDocument(ValueError):
    """A metric point or alert does not match its contract; the message names the field."""


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: an unknown bound is null, not NaN.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check(cls, document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise InvalidDocument(f"{cls.__name__} must be a JSON object")
    known = {f.name: f for f in fields(cls)}
    for name in cls.REQUIRED:
        if name not in document:
            raise InvalidDocument(f"{cls.__name__}.{name} is missing")
    unknown = set(document) - set(known)
    if unknown:
        raise InvalidDocument(f"{cls.__name__} has unknown fields: {', '.join(sorted(unknown))}")
    return {name: document[name] for name in known if name in document}


def _number_or_null(cls_name: str, name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidDocument(f"{cls_name}.{name} must be a number or null")


@dataclass
class MetricPoint:
    """One scored window of one series (topic ``blipwatch-metric-points``).

    ``(series, window_start)`` is the point's identity: a point published twice after a
    failover carries the same identity so consumers can drop the duplicate.
    """

    REQUIRED = ("series", "metric", "segment", "window_start", "window_end", "value", "score", "is_anomaly")

    series: str
    metric: str
    segment: dict[str, str]
    window_start: str
    window_end: str
    numerator: float | None
    denominator: float | None
    value: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float
    is_anomaly: bool
    direction: str | None = None
    #: why a rare point did not alert (and, for a planned event, was not learned): "calendar: REASON",
    #: "false_positive: DEDUP_KEY", "expected: DEDUP_KEY" or "min_change: RULE" (``pipeline.feedback``,
    #: ``pipeline.tracker``); None: nothing said
    suppressed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in asdict(self).items()}

    def to_json(self) -> bytes:
        # orjson encodes the dataclass itself (field order kept, NaN/inf as null, as to_dict does)
        # at ~1 µs against ~30 µs through asdict: this runs once per scored window
        return orjson.dumps(self)

    @classmethod
    def from_dict(cls, document: Any) -> "MetricPoint":
        values = _check(cls, document)
        for name in ("numerator", "denominator", "value", "expected", "lower", "upper", "score"):
            _number_or_null(cls.__name__, name, values.get(name))
            values.setdefault(name, None)
        if not isinstance(values["is_anomaly"], bool):
            raise InvalidDocument("MetricPoint.is_anomaly must be true or false")
        if values.get("suppressed") is not None and not isinstance(values["suppressed"], str):
            raise InvalidDocument("MetricPoint.suppressed must be a string or null")
        return cls(**values)


@dataclass
class AnomalyAlert:
    """One alert message (topic ``anomaly-alerts``, keyed by ``dedup_key``).

    One incident on one series yields one ``firing`` message, optional updates with the same
    ``dedup_key``, and one ``resolved``. No customer or session id, ever.
    """

    REQUIRED = ("alert_id", "dedup_key", "status", "severity", "metric", "segment", "direction",
                "window_start", "window_end", "observed", "expected", "score", "started_at", "summary")

    alert_id: str
    dedup_key: str
    status: str
    severity: str
    metric: str
    segment: dict[str, str]
    direction: str
    window_start: str
    window_end: str
    observed: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float
    numerator: float | None
    denominator: float | None
    started_at: str
    summary: str
    detector: str = ""
    #: other series of interest: those firing now and, on a firing alert, the segments of the same
    #: metric that explain it or that it explains (``RELATED_FIELDS``; ``pipeline.attribution.IncidentBook``)
    related: list[dict[str, Any]] = field(default_factory=list)
    #: when the alert was published (RFC 3339); set by the publisher
    published_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in asdict(self).items()}

    def to_json(self) -> bytes:
        # orjson encodes the dataclass itself (field order kept, NaN/inf as null, as to_dict does)
        # at ~1 µs against ~30 µs through asdict: this runs once per scored window
        return orjson.dumps(self)

    @classmethod
    def from_dict(cls, document: Any) -> "AnomalyAlert":
        values = _check(cls, document)
        if values["status"] not in ALERT_STATUSES:
            raise InvalidDocument(f"AnomalyAlert.status must be one of {ALERT_STATUSES}")
        if values["severity"] not in SEVERITIES:
            raise InvalidDocument(f"AnomalyAlert.severity must be one of {SEVERITIES}")
        if values["direction"] not in DIRECTIONS:
            raise InvalidDocument(f"AnomalyAlert.direction must be one of {DIRECTIONS}")
        if not isinstance(values["segment"], dict):
            raise InvalidDocument("AnomalyAlert.segment must be an object")
        _check_related(values.get("related", []))
        for name in ("observed", "expected", "lower", "upper", "score", "numerator", "denominator"):
            _number_or_null(cls.__name__, name, values.get(name))
            values.setdefault(name, None)
        return cls(**values)


def _check_related(related: Any) -> None:
    if not isinstance(related, list):
        raise InvalidDocument("AnomalyAlert.related must be a list")
    for entry in related:
        if not (isinstance(entry, dict) and isinstance(entry.get("metric"), str)
                and isinstance(entry.get("segment"), dict)):
            raise InvalidDocument("AnomalyAlert.related entries must be objects with a metric and a segment")
        for name in ("firing", "cause"):
            if name in entry and not isinstance(entry[name], bool):
                raise InvalidDocument(f"AnomalyAlert.related[].{name} must be true or false")
        if "relation" in entry and entry["relation"] not in RELATIONS:
            raise InvalidDocument(f"AnomalyAlert.related[].relation must be one of {RELATIONS}")
        share = entry.get("share")
        if "share" in entry and (isinstance(share, bool) or not isinstance(share, (int, float))
                                 or not 0 <= share <= 1):
            raise InvalidDocument("AnomalyAlert.related[].share must be a number from 0 to 1")

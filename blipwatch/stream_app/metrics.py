"""blipwatch's own Prometheus metrics, declared once (base units, bounded labels).

Faust's own counters (messages, commits, rebalances, send latency in ms) come from
``faust.sensors.prometheus`` with the ``blipwatch_faust`` prefix and are not re-counted here.
Label sets are bounded: event types are the canonical ones plus ``other``; reasons are
``schemas.REASONS``; metrics come from the config; segments are capped per metric.

Counters with a bounded label set are exported at 0 from the start (event types and DLQ reasons
at import, a metric's dropped and alert counters from its first scored window), so a dashboard
shows a flat 0 line, not "No data", and ``rate()`` sees the first increase.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from blipwatch.schemas.events import CANONICAL_EVENT_TYPES, REASONS
from blipwatch.schemas.outputs import ALERT_STATUSES, SEVERITIES

OTHER_EVENT_TYPE = "other"
_CANONICAL = frozenset(CANONICAL_EVENT_TYPES)


def event_type_label(event_type: str) -> str:
    """Unknown event types share one label value, so a flood of made-up types cannot blow up Prometheus."""
    return event_type if event_type in _CANONICAL else OTHER_EVENT_TYPE


EVENTS = Counter("blipwatch_events", "Valid customer events consumed, by type (unknown types as 'other')",
                 ["event_type"])
EVENTS_INVALID = Counter("blipwatch_events_invalid", "Events sent to the DLQ, by reason", ["reason"])
EVENTS_LATE = Counter("blipwatch_events_late",
                      "Valid events whose window had already closed (beyond allowed lateness): counted, not scored")
PARTIALS_LATE = Counter("blipwatch_partials_late",
                        "Partial counts that reached the aggregator after their window closed")
SERIES_DROPPED = Counter("blipwatch_series_dropped",
                         "Event contributions dropped because the metric's series cap was reached", ["metric"])
WINDOWS_SCORED = Counter("blipwatch_windows_scored", "Metric windows closed and scored", ["metric"])
ALERTS = Counter("blipwatch_alerts", "Alert messages published", ["metric", "status", "severity"])
ALERT_LATENCY = Histogram(
    "blipwatch_alert_latency_seconds",
    "Seconds from a window's close (end + allowed lateness, in event time, as seen by the watermark) "
    "to its alert being published",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INGEST_LAG = Gauge("blipwatch_ingest_lag_messages", "Events-topic consumer lag per partition", ["partition"])
INGEST_BATCH_SECONDS = Histogram("blipwatch_ingest_batch_seconds",
                                 "Seconds to decode, validate and pre-aggregate one batch of events",
                                 buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
WATERMARK = Gauge("blipwatch_watermark_timestamp_seconds",
                  "Event-time watermark of the aggregate stage per partials partition (windows closing before "
                  "it are closed); a value that stops moving while events arrive means a stalled input partition",
                  ["partition"])
PENDING_PARTIALS = Gauge("blipwatch_partials_unacknowledged",
                         "Partials messages held un-acknowledged (uncommitted) until their windows close",
                         ["partition"])
SERIES_TRACKED = Gauge("blipwatch_series_tracked", "Series whose detector state this worker holds")
STATE_RESET = Counter("blipwatch_detector_state_rewarmed",
                      "Stored detector states that could not be loaded (old format) and were re-warmed on purpose")

for _event_type in (*CANONICAL_EVENT_TYPES, OTHER_EVENT_TYPE):
    EVENTS.labels(_event_type)
for _reason in REASONS:
    EVENTS_INVALID.labels(_reason)

SERIES_LABELS = ["metric", "segment"]
SERIES_VALUE = Gauge("blipwatch_series_value", "Last closed window's value per series", SERIES_LABELS)
SERIES_EXPECTED = Gauge("blipwatch_series_expected", "Expected value for the last closed window", SERIES_LABELS)
SERIES_LOWER = Gauge("blipwatch_series_lower", "Lower bound of the expected band", SERIES_LABELS)
SERIES_UPPER = Gauge("blipwatch_series_upper", "Upper bound of the expected band", SERIES_LABELS)
SERIES_SCORE = Gauge("blipwatch_series_score", "Anomaly score of the last closed window (0..1)", SERIES_LABELS)
SERIES_FIRING = Gauge("blipwatch_series_firing", "1 while an incident is firing on the series, else 0",
                      SERIES_LABELS)


_INITIALISED_METRICS: set[str] = set()


def initialise_metric(metric: str) -> None:
    """Export a metric's dropped and alert counters at 0 (once; metric names come from the config)."""
    if metric in _INITIALISED_METRICS:
        return
    _INITIALISED_METRICS.add(metric)
    SERIES_DROPPED.labels(metric)
    for status in ALERT_STATUSES:
        for severity in SEVERITIES:
            ALERTS.labels(metric, status, severity)


#: Per series, the six gauges' bound ``set`` methods (bounded by the series cap): ``labels()`` takes
#: a lock and builds a key tuple per call, six times per closed series (~20% of the aggregate's
#: time with 10,000 series, py-spy).
_SERIES_SETTERS: dict[tuple[str, str], tuple] = {}


def observe_point(metric: str, segment: str, value, expected, lower, upper, score, firing: bool) -> None:
    """Set the per-series gauges (bounded by the series cap) from one scored point."""
    setters = _SERIES_SETTERS.get((metric, segment))
    if setters is None:
        initialise_metric(metric)
        setters = _SERIES_SETTERS[(metric, segment)] = tuple(
            gauge.labels(metric, segment).set for gauge in (SERIES_VALUE, SERIES_EXPECTED, SERIES_LOWER,
                                                            SERIES_UPPER, SERIES_SCORE, SERIES_FIRING))
    nan = float("nan")
    set_value, set_expected, set_lower, set_upper, set_score, set_firing = setters
    set_value(nan if value is None else value)
    set_expected(nan if expected is None else expected)
    set_lower(nan if lower is None else lower)
    set_upper(nan if upper is None else upper)
    set_score(nan if score is None else score)
    set_firing(1 if firing else 0)

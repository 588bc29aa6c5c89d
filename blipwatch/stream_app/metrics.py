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

from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
PARTIALS_DUPLICATE = Counter("blipwatch_partials_duplicate",
                             "Partials messages skipped: their input offsets were merged already (a flush sent again)")
PARTIALS_OVERLAP = Counter("blipwatch_partials_overlap",
                           "Partials messages partly merged already, merged again (their events may count twice)")
DELIVERY_FAILURES = Counter("blipwatch_delivery_failures",
                            "Failed deliveries to Kafka, by stage: 'aggregate' (points, alerts or detector state: "
                            "rebuilt from the stored state and the committed offsets), 'ingest' (a flush: sent again)",
                            ["stage"])
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
JOURNEYS = Counter("blipwatch_journeys",
                   "Journeys of funnel metrics by what happened: started, converted, not_converted, evicted "
                   "(the cap on open journeys), late (started in a window already released), unattributed "
                   "(no session or customer id), split_sessions (one session's events on two input partitions)",
                   ["outcome"])
OPEN_JOURNEYS = Gauge("blipwatch_journeys_open", "Journeys of funnel metrics this worker holds open")
JOURNEY_OUTCOMES = ("started", "converted", "not_converted", "evicted", "late", "unattributed", "split_sessions")
STATE_RESET = Counter("blipwatch_detector_state_rewarmed",
                      "Stored detector states that could not be loaded (old format) and were re-warmed on purpose")

for _event_type in (*CANONICAL_EVENT_TYPES, OTHER_EVENT_TYPE):
    EVENTS.labels(_event_type)
for _reason in REASONS:
    EVENTS_INVALID.labels(_reason)
for _outcome in JOURNEY_OUTCOMES:
    JOURNEYS.labels(_outcome)

SERIES_LABELS = ["metric", "segment"]
#: (name, help) of the six per-series gauges, in the order of ``_SeriesGauges.collect``
SERIES_GAUGES = (
    ("blipwatch_series_value", "Last closed window's value per series"),
    ("blipwatch_series_expected", "Expected value for the last closed window"),
    ("blipwatch_series_lower", "Lower bound of the expected band"),
    ("blipwatch_series_upper", "Upper bound of the expected band"),
    ("blipwatch_series_score", "Anomaly score of the last closed window (0..1)"),
    ("blipwatch_series_firing", "1 while an incident is firing on the series, else 0"),
)


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


FEEDBACK_REJECTED = Counter("blipwatch_feedback_records_rejected",
                            "Feedback or calendar records that did not match their contract (skipped)", ["topic"])
FEEDBACK_ACTIONS = Counter("blipwatch_feedback_actions",
                           "Verdicts acted on by the series they name: resolved (a firing incident), kept", ["verdict", "action"])
POINTS_SUPPRESSED = Counter("blipwatch_points_suppressed",
                            "Rare points that did not alert, by cause: calendar, false_positive, min_change",
                            ["metric", "cause"])

for _verdict in ("false_positive", "expected", "confirmed"):   # bounded labels: exported at 0 from the start
    for _action in ("resolved", "kept"):
        FEEDBACK_ACTIONS.labels(_verdict, _action)
for _topic in ("feedback", "calendar"):
    FEEDBACK_REJECTED.labels(_topic)


def count_suppressed(metric: str, suppressed: str) -> None:
    POINTS_SUPPRESSED.labels(metric, suppressed.split(":", 1)[0]).inc()


class _FeedbackGauges(Collector):
    """What people said, read from the worker's ``FeedbackBook`` at each scrape: verdicts by kind,
    calendar entries, and those active now."""

    def __init__(self) -> None:
        self.book: Any = None

    def collect(self):
        import time

        verdicts = GaugeMetricFamily("blipwatch_feedback_verdicts", "Verdicts on incidents, latest per incident",
                                     labels=["verdict"])
        entries = GaugeMetricFamily("blipwatch_calendar_entries", "Planned events in the calendar")
        active = GaugeMetricFamily("blipwatch_calendar_active", "Planned events going on now (wall clock)")
        book = self.book
        if book is not None:
            for verdict, count in book.counts().items():
                verdicts.add_metric([verdict], count)
            now = int(time.time() * 1000)
            entries.add_metric([], len(book.calendar))
            active.add_metric([], len(book.active(now, now + 1)))
        return [verdicts, entries, active]

    def describe(self):
        return [GaugeMetricFamily("blipwatch_feedback_verdicts", "", labels=["verdict"]),
                GaugeMetricFamily("blipwatch_calendar_entries", ""), GaugeMetricFamily("blipwatch_calendar_active", "")]


FEEDBACK = _FeedbackGauges()
REGISTRY.register(FEEDBACK)


class _SeriesGauges(Collector):
    """The per-series gauges (value, expected, lower, upper, score, firing; bounded by the series
    cap), read from each series' newest point when ``/metrics`` is scraped.

    They were six ``Gauge``s set once per series per partials message: a ``labels()`` lookup and
    six ``set`` calls, each taking a lock (~8% of the aggregate agent, py-spy, ``bench --events
    300000``). A scrape comes every few seconds, a message closes windows of every series several
    times a second: the agent now only keeps the newest point (``observe``, one dict store), and
    the text a scrape renders is the same (names, help, type, labels, values)."""

    def __init__(self) -> None:
        #: series key -> (metric, segment label, newest point, firing)
        self.last: dict[str, tuple] = {}

    def observe(self, series: str, metric: str, segment: str, point: Any, firing: bool) -> None:
        last = self.last
        if series not in last:
            initialise_metric(metric)
        last[series] = (metric, segment, point, firing)

    def collect(self):
        families = [GaugeMetricFamily(name, documentation, labels=SERIES_LABELS)
                    for name, documentation in SERIES_GAUGES]
        value, expected, lower, upper, score, firing = families
        suppressed = GaugeMetricFamily("blipwatch_series_suppressed",
                                       "1 while a series' newest point is suppressed, by cause (an annotation series)",
                                       labels=[*SERIES_LABELS, "cause"])
        families.append(suppressed)
        nan = float("nan")
        for metric, segment, point, is_firing in list(self.last.values()):   # a copy: the agent may add
            labels = [metric, segment]
            value.add_metric(labels, nan if point.value is None else point.value)
            expected.add_metric(labels, nan if point.expected is None else point.expected)
            lower.add_metric(labels, nan if point.lower is None else point.lower)
            upper.add_metric(labels, nan if point.upper is None else point.upper)
            score.add_metric(labels, nan if point.score is None else point.score)
            firing.add_metric(labels, 1 if is_firing else 0)
            said = getattr(point, "suppressed", None)
            if said:
                suppressed.add_metric([*labels, said.split(":", 1)[0]], 1)
        return families

    def describe(self):
        return [*(GaugeMetricFamily(name, documentation, labels=SERIES_LABELS) for name, documentation in SERIES_GAUGES),
                GaugeMetricFamily("blipwatch_series_suppressed", "", labels=[*SERIES_LABELS, "cause"])]


SERIES = _SeriesGauges()
REGISTRY.register(SERIES)

#: per metric, ``WINDOWS_SCORED.labels(metric).inc`` (``labels()`` takes a lock and builds a key per call)
_WINDOWS_SCORED_INC: dict[str, Any] = {}


def count_scored(metric: str, windows: int) -> None:
    """``WINDOWS_SCORED.labels(metric).inc(windows)``, the child looked up once per metric."""
    inc = _WINDOWS_SCORED_INC.get(metric)
    if inc is None:
        inc = _WINDOWS_SCORED_INC[metric] = WINDOWS_SCORED.labels(metric).inc
    inc(windows)

"""One series through time: open windows, closing them under the watermark, scoring each
closed window with the series' detector, and turning the alert policy's transitions into
alerts. The stream (``stream_app.app``) and ``blipwatch replay`` both run this, so for the
same input they produce the same points and alerts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from blipwatch.pipeline.catalogue import Catalogue, MetricDefinition
from blipwatch.detectors.state import StateVersionError, dump_series, load_series
from blipwatch.pipeline.feedback import (FeedbackBook, FeedbackStateError, SeriesFeedback, gate_window,
                                         relative_change, suppressed_text)
from blipwatch.pipeline.windows import closes_at
from blipwatch.schemas.outputs import (AnomalyAlert, MetricPoint, iso_from_ms, ms_from_iso, segment_from_label,
                                       spoken_segment)

log = logging.getLogger(__name__)

# The series record (progress, detector and policy) is one blob since state format 5
# (``detectors.state.dump_series``): its header's version and layout cover the record too, so the
# separate RECORD_VERSION of format 4's orjson envelope (base64 blobs inside) is gone.

#: A series silent for longer than this many windows is not back-filled window by window:
#: its detector sees the last MAX_GAP_WINDOWS empty windows only.
MAX_GAP_WINDOWS = 24 * 60
#: An incident record keeps at most this many anomalous windows (a ``false_positive`` learns them).
MAX_RECORD_WINDOWS = 240
#: Windows remembered before an incident fires (a confirm run's first points belong to it).
RECENT_WINDOWS = 8
#: Learn a false alarm's recorded windows when the verdict comes. Off: the detector has moved on in
#: time by then, and a window learned out of time order drags today's level towards the blip
#: (measured: a 10-minute gap to 0 learned at 08:00 left the count level at a fifth of normal);
#: the pattern the verdict leaves is learned as normal instead, in order, at each recurrence.
LEARN_PAST_WINDOWS = False
#: The book of a tracker nobody gave one to: no verdicts, no calendar.
NO_FEEDBACK = FeedbackBook()


@dataclass(frozen=True)
class _CauseUpdate:
    """What ``_alert`` reads of a policy transition, for the update naming a cause (not the policy's)."""
    severity: str
    status: str = "cause"
    started_at: float | None = None
    direction: str | None = None


@dataclass
class ClosedWindow:
    point: MetricPoint
    alert: AnomalyAlert | None
    closed_at_ms: int  # event time at which the window closed (end + allowed lateness)
    firing: bool


def _fmt(value: float | None, metric: MetricDefinition) -> str:
    if value is None:
        return "n/a"
    if metric.kind == "count":
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
    if metric.detector_kind == "rate":
        return f"{value:.3f}" if abs(value) < 0.1 else f"{value:.2f}"
    return f"{value:.2f}"


def summary_sentence(metric: MetricDefinition, segment_label: str, value, expected, lower, upper,
                     started_at_ms: int, status: str) -> str:
    """One sentence for a person on call.

    >>> from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
    >>> m = Catalogue.from_dict(default_config_dict()).by_name["cart_abandonment_rate"]
    >>> summary_sentence(m, "channel=web", 0.81, 0.62, 0.58, 0.66, 1767643500000, "firing")
    'Cart abandonment rate on channel=web is 0.81, expected 0.62 (0.58–0.66), since 20:05 UTC'
    """
    name = metric.name.replace("_", " ").capitalize()
    where = "overall" if segment_label == "all" else f"on {spoken_segment(segment_label)}"
    since = iso_from_ms(started_at_ms)[11:16]
    band = f" ({_fmt(lower, metric)}–{_fmt(upper, metric)})" if lower is not None and upper is not None else ""
    if status == "resolved":
        return (f"Resolved: {name} {where} is back to {_fmt(value, metric)}, expected {_fmt(expected, metric)}"
                f"{band}; the blip started {since} UTC")
    return f"{name} {where} is {_fmt(value, metric)}, expected {_fmt(expected, metric)}{band}, since {since} UTC"


class SeriesTracker:
    """Open windows, detector and alert policy of one series, and what people said about it.

    ``merge`` adds partial counts; ``close_until(watermark)`` closes every window whose end +
    allowed lateness the watermark has passed, oldest first (empty windows in between are closed
    too, with zero counts, so a series that goes silent is seen going silent).

    Before the policy sees a window, ``pipeline.feedback.gate_window`` asks ``book`` (calendars,
    shared by the worker's series) and ``feedback`` (this series' learned patterns) and the
    metric's ``min_change``: a gated point does not alert, says why (``suppressed``) and is learned,
    skipped (a planned event) or learned as normal (a pattern called harmless). ``act`` applies
    a verdict on one of this series' incidents.
    """

    def __init__(self, series: str, metric: MetricDefinition, catalogue: Catalogue,
                 detector: Any = None, policy: Any = None, last_closed: int | None = None,
                 incident: dict | None = None, record: dict | None = None,
                 feedback: SeriesFeedback | None = None, book: FeedbackBook | None = None):
        from blipwatch.detectors import AlertPolicy, make_detector

        self.series = series
        self.key = series.encode()   # its key in Kafka (points, detector state): encoded once
        self.metric = metric
        self.segment_label = series.split("|", 1)[1]
        self.segment = segment_from_label(self.segment_label)
        self.window_ms = catalogue.window_ms
        # a funnel's counts arrive once ``within`` has passed (pipeline.journeys): its windows wait that long too
        self.lateness_ms = catalogue.lateness_ms + (metric.funnel.within_ms if metric.funnel is not None else 0)
        self.detector = detector if detector is not None else make_detector(
            metric.detector_kind, catalogue.detector_settings_for(metric))
        self.policy = policy if policy is not None else AlertPolicy.from_settings(catalogue.policy_settings_for(metric))
        self.last_closed = last_closed
        self.open: dict[int, list[float]] = {}
        #: the incident in progress: {"dedup_key", "started_at", "direction"} and "named" once one
        #: of its messages named a cause (``IncidentBook.closed``); None when quiet
        self.incident = incident
        #: True when a stored state could not be loaded and this tracker started afresh
        self.rewarmed = False
        #: the last incident's record until the next one fires: {"dedup_key", "direction",
        #: "last_anomalous_end", "peak_deviation", "windows": [[t ms, value, num, den], ...]}
        self.record = record
        self.feedback = feedback if feedback is not None else SeriesFeedback()
        self.book = book if book is not None else NO_FEEDBACK
        #: the last windows closed, [t ms, value, num, den], for an incident that fires on a run
        self.recent: list[list] = []
        #: the newest point (for an alert resolved by feedback); not stored
        self.last_point: MetricPoint | None = None

    # --- input -------------------------------------------------------------------------

    def merge(self, window_start: int, numerator: float, denominator: float) -> bool:
        """Add partial counts; False (and nothing added) when that window is already closed."""
        if self.last_closed is not None and window_start <= self.last_closed:
            return False
        cell = self.open.get(window_start)
        if cell is None:
            self.open[window_start] = [numerator, denominator]
        else:
            cell[0] += numerator
            cell[1] += denominator
        return True

    def next_close_at(self) -> int | None:
        # asked of every series at every watermark step: closes_at written out
        last_closed = self.last_closed
        if last_closed is not None:
            window_ms = self.window_ms
            return last_closed + window_ms + window_ms + self.lateness_ms
        if self.open:
            return closes_at(min(self.open), self.window_ms, self.lateness_ms)
        return None

    # --- closing -----------------------------------------------------------------------

    def close_until(self, watermark: int | None) -> list[ClosedWindow]:
        closed: list[ClosedWindow] = []
        if watermark is None:
            return closed
        if self.last_closed is None:
            if not self.open:
                return closed
            start = min(self.open)
        else:
            start = self.last_closed + self.window_ms
        last_closable = watermark - self.window_ms - self.lateness_ms  # start of the newest closable window
        last_closable -= last_closable % self.window_ms
        if start > last_closable:
            return closed
        if (last_closable - start) // self.window_ms > MAX_GAP_WINDOWS:
            skip_to = last_closable - MAX_GAP_WINDOWS * self.window_ms
            self.open = {w: c for w, c in self.open.items() if w >= skip_to}
            start = min([skip_to, *self.open]) if self.open else skip_to
        window = start
        window_ms = self.window_ms
        pop = self.open.pop
        score = self._score
        while window <= last_closable:
            numerator, denominator = pop(window, (0.0, 0.0))
            closed.append(score(window, numerator, denominator))
            self.last_closed = window
            window += window_ms
        return closed

    def _value(self, numerator: float, denominator: float) -> tuple[float | None, float | None, float | None]:
        """(value, numerator, denominator) as the metric point reports them."""
        kind = self.metric.detector_kind   # a funnel is scored as a rate
        if kind == "count":
            return numerator, numerator, None
        if denominator > 0:
            return numerator / denominator, numerator, denominator
        return None, numerator, denominator

    def _score(self, window: int, numerator: float, denominator: float) -> ClosedWindow:
        # once per closed window: _value written out, arguments by position, closes_at inlined
        kind = self.metric.detector_kind   # a funnel is scored as a rate
        if kind == "count":
            value, num, den = numerator, numerator, None
        elif denominator > 0:
            value, num, den = numerator / denominator, numerator, denominator
        else:
            value, num, den = None, numerator, denominator
        t = window / 1000.0
        detector = self.detector
        if kind == "rate":
            x = {"t": t, "value": value, "numerator": num, "denominator": den}
        elif kind == "mean":
            x = {"t": t, "value": value, "denominator": den}
        else:
            x = {"t": t, "value": value}
        scored = detector.judge_one(x)
        window_ms = self.window_ms
        metric = self.metric
        book = self.book
        if book.calendar or scored.is_anomaly:
            gate = gate_window(book, self.feedback, metric.name, self.segment, window, window + window_ms, value,
                               scored.expected, scored.direction, scored.is_anomaly, metric.min_change,
                               self.policy.direction)
            learn, may_alert, suppressed = gate.learn, gate.may_alert, gate.suppressed
        else:   # the common case, written out: gate_window would return OPEN
            learn, may_alert, suppressed = "normal", True, None
        record = self.record
        if record is not None and record.get("held_by"):
            # an incident people resolved does not page again while it lasts
            if scored.is_anomaly and scored.direction == record["direction"]:
                record["held"] = 0
                if may_alert:
                    may_alert, suppressed = False, suppressed_text(record["held_by"], record["dedup_key"])
            else:
                record["held"] += 1
                if record["held"] >= self.policy.resolve_after:
                    record["held_by"] = None
        if learn == "normal":
            detector.learn_one(x)
        elif learn == "force":
            getattr(detector, "learn_as_normal", detector.learn_one)(x)
        # the detector knows the evidence behind its score (a run of windows for a sequential one)
        transition = self.policy.update(t, scored, None, may_alert)
        point = MetricPoint(
            self.series, metric.name, dict(self.segment), iso_from_ms(window),
            iso_from_ms(window + window_ms), num, den, value, scored.expected, scored.lower,
            scored.upper, float(scored.score), bool(scored.is_anomaly), scored.direction, suppressed,
        )
        self.last_point = point
        recent = self.recent
        recent.append([window, value, num, den])
        if len(recent) > RECENT_WINDOWS:
            del recent[0]
        alert = self._alert(transition, window, point) if transition is not None else None
        incident = self.incident
        policy = self.policy
        if incident is not None and may_alert and scored.direction == incident["direction"] \
                and scored.score >= policy.threshold - policy.hysteresis:   # what the policy counts as anomalous
            self._note_anomalous(window, value, num, den, scored.expected)
        return ClosedWindow(point, alert, window + window_ms + self.lateness_ms,   # closes_at(window)
                            incident is not None)

    def cause_update(self, point: MetricPoint) -> AnomalyAlert | None:
        """The update naming the cause of the incident in progress at ``point`` (a closed window of
        this series; ``IncidentBook.follow_up`` fills in the cause), at the severity it has, with
        ``alert_id`` ``dedup_key#cause@window_start``. None when the series is quiet at ``point``:
        no incident now, or one that began after it (``close_until`` closed a resolve and a new
        incident since)."""
        window = ms_from_iso(point.window_start)
        if self.incident is None or window < self.incident["started_at"]:
            return None
        return self._alert(_CauseUpdate(self.policy.severity or "warning"), window, point)

    def _note_anomalous(self, window: int, value, num, den, expected) -> None:
        record = self.record
        if record is None or record["dedup_key"] != self.incident["dedup_key"]:
            return
        windows = record["windows"]
        if not windows or windows[-1][0] < window:
            windows.append([window, value, num, den])
            del windows[:-MAX_RECORD_WINDOWS]
        record["last_anomalous_end"] = max(record["last_anomalous_end"] or 0, window + self.window_ms)
        deviation = relative_change(value, expected)
        if deviation is not None and (record["peak_deviation"] is None or deviation > record["peak_deviation"]):
            record["peak_deviation"] = deviation

    def _alert(self, transition: Any, window: int, point: MetricPoint) -> AnomalyAlert:
        status = transition.status
        if status == "firing" and self.incident is None:
            started_at = int(round(transition.started_at * 1000)) if transition.started_at else window
            self.incident = {
                "dedup_key": f"{self.series}@{iso_from_ms(started_at)}",
                "started_at": started_at,
                "direction": transition.direction or point.direction or "up",
            }
            # the record of the windows a false_positive would learn; the run before this point
            # (a confirm run) belongs to it too
            self.record = {
                "dedup_key": self.incident["dedup_key"], "direction": self.incident["direction"],
                "last_anomalous_end": None, "peak_deviation": None,
                "windows": [list(w) for w in self.recent[:-1] if w[0] >= started_at],
            }
            if self.record["windows"]:
                self.record["last_anomalous_end"] = self.record["windows"][-1][0] + self.window_ms
            kind = "firing"
        elif status == "resolved":
            kind = "resolved"
        else:
            kind = "cause" if status == "cause" else "update"   # "cause": IncidentBook.follow_up
        incident = self.incident or {
            "dedup_key": f"{self.series}@{point.window_start}", "started_at": window,
            "direction": transition.direction or point.direction or "up",
        }
        direction = incident["direction"] if incident["direction"] in ("up", "down") else "up"
        alert = AnomalyAlert(
            # deterministic: the same message re-published after a failover carries the same id
            alert_id=f"{incident['dedup_key']}#{kind}@{point.window_start}",
            dedup_key=incident["dedup_key"],
            status="resolved" if kind == "resolved" else "firing",
            severity=getattr(transition, "severity", None) or "warning",
            metric=self.metric.name, segment=dict(self.segment), direction=direction,
            window_start=point.window_start, window_end=point.window_end,
            observed=point.value, expected=point.expected, lower=point.lower, upper=point.upper,
            score=point.score, numerator=point.numerator, denominator=point.denominator,
            started_at=iso_from_ms(incident["started_at"]),
            summary=summary_sentence(self.metric, self.segment_label, point.value, point.expected,
                                     point.lower, point.upper, incident["started_at"],
                                     "resolved" if kind == "resolved" else "firing"),
            detector=f"{self.metric.detector_kind}:{type(self.detector).__name__}",
        )
        if kind == "resolved":
            self.incident = None
        return alert

    # --- feedback ----------------------------------------------------------------------

    def act(self, feedback: Any) -> AnomalyAlert | None:
        """Apply a verdict on one of this series' incidents (once: ``SeriesFeedback.act``).

        ``false_positive``: the incident's recorded windows are learned as normal and the series
        keeps the pattern; ``false_positive`` or ``expected`` on the incident still firing resolves
        it at once: the resolved alert is returned (the caller publishes it)."""
        key = feedback.dedup_key
        firing = self.incident is not None and self.incident["dedup_key"] == key
        record = self.record if self.record is not None and self.record["dedup_key"] == key else None
        ended = record["last_anomalous_end"] if record is not None else None
        if firing and self.last_closed is not None:
            ended = self.last_closed + self.window_ms
        direction = record["direction"] if record is not None else (self.incident or {}).get("direction")
        action = self.feedback.act(feedback, ended, self.window_ms, direction, firing,
                                   record["peak_deviation"] if record is not None else None)
        if action is None:
            return None
        if action.learn and record is not None and LEARN_PAST_WINDOWS:
            wanted = set(action.learn)
            learn = getattr(self.detector, "learn_as_normal", self.detector.learn_one)
            kind = self.metric.kind
            for window, value, num, den in record["windows"]:
                if window in wanted:
                    t = window / 1000.0
                    if kind == "rate":
                        learn({"t": t, "value": value, "numerator": num, "denominator": den})
                    elif kind == "mean":
                        learn({"t": t, "value": value, "denominator": den})
                    else:
                        learn({"t": t, "value": value})
        if not action.resolve:
            return None
        return self._resolved_by_feedback(feedback)

    def _resolved_by_feedback(self, feedback: Any) -> AnomalyAlert:
        incident = self.incident
        self.incident = None
        self.policy.quiet()
        if self.record is None or self.record["dedup_key"] != incident["dedup_key"]:
            self.record = {"dedup_key": incident["dedup_key"], "direction": incident["direction"],
                           "last_anomalous_end": None, "peak_deviation": None, "windows": []}
        # held until resolve_after points in a row are not anomalous that way
        self.record["held_by"], self.record["held"] = feedback.verdict, 0
        point = self.last_point
        end = (self.last_closed + self.window_ms) if self.last_closed is not None else incident["started_at"]
        start = end - self.window_ms
        note = f" ({feedback.note})" if getattr(feedback, "note", None) else ""
        direction = incident["direction"] if incident["direction"] in ("up", "down") else "up"
        return AnomalyAlert(
            alert_id=f"{incident['dedup_key']}#resolved@feedback:{feedback.verdict}",
            dedup_key=incident["dedup_key"], status="resolved", severity=self.policy.severity or "warning",
            metric=self.metric.name, segment=dict(self.segment), direction=direction,
            window_start=iso_from_ms(start), window_end=iso_from_ms(end),
            observed=point.value if point else None, expected=point.expected if point else None,
            lower=point.lower if point else None, upper=point.upper if point else None,
            score=point.score if point else 0.0, numerator=point.numerator if point else None,
            denominator=point.denominator if point else None, started_at=iso_from_ms(incident["started_at"]),
            summary=f"Resolved by feedback: {feedback.verdict}{note}",
            detector=f"{self.metric.detector_kind}:{type(self.detector).__name__}",
        )

    # --- state -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Detector + policy + progress + incident record + feedback, versioned; open windows are
        not part of it (they are rebuilt from the partials topic, whose offsets are committed only
        once a window closed)."""
        feedback = self.feedback
        blob = feedback.to_bytes() if (feedback.acted or feedback.patterns) else None
        return dump_series(self.last_closed, self.incident, self.detector, self.policy, self.record, blob)

    @classmethod
    def from_bytes(cls, blob: bytes, series: str, metric: MetricDefinition,
                   catalogue: Catalogue, book: FeedbackBook | None = None) -> "SeriesTracker":
        """Restore a tracker; an unreadable or old-format state (format 4's orjson record included)
        is re-warmed on purpose (logged), never a crash."""
        try:
            state = load_series(blob)
        except StateVersionError as exc:
            log.warning("detector state of %s could not be loaded (%s): re-warming it from scratch", series, exc)
            tracker = cls(series, metric, catalogue, book=book)
            tracker.rewarmed = True
            return tracker
        feedback = None
        if state.feedback is not None:
            try:
                feedback = SeriesFeedback.from_bytes(state.feedback)
            except FeedbackStateError as exc:   # the verdicts are re-read from the topic and acted on again
                log.warning("feedback state of %s could not be loaded (%s): starting it afresh", series, exc)
        return cls(series, metric, catalogue, detector=state.detector, policy=state.policy,
                   last_closed=state.last_closed, incident=state.incident, record=state.record,
                   feedback=feedback, book=book)

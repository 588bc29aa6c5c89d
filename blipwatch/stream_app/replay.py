"""The whole pipeline offline, over a JSONL file of events: the same ingest (decode, validate,
pre-aggregate), the same windows, detectors, policy and alert construction as the stream, with no
Kafka. The file is read in its order as one partition: its watermark is the newest event time
seen; at the end of the file every open window is flushed (as the stream does once its input
goes idle). The events are read in the input preset's format (``preset``), and funnel metrics come
from the same journey stage as the stream's, advanced at each merge with the file's watermark.

What people said can be replayed too (``book``, ``verdicts``): the calendar entries apply to every
series from the start; each verdict is acted on once the event time reaches its ``at`` (the moment
it was given), by the series it names, as the worker acts on it within seconds of its arrival.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from blipwatch.pipeline.catalogue import Catalogue, metric_of
from blipwatch.pipeline.feedback import FeedbackBook
from blipwatch.pipeline.journeys import DEFAULT_MAX_OPEN
from blipwatch.schemas.feedback import Feedback, time_ms
from blipwatch.pipeline.attribution import IncidentBook
from blipwatch.pipeline.tracker import ClosedWindow, SeriesTracker
from blipwatch.pipeline.windows import LocalWatermark
from blipwatch.schemas.outputs import AnomalyAlert, MetricPoint
from blipwatch.stream_app.ingest import IngestBatch

#: events between two merges of partials into the series (the stream flushes every 0.5 s)
BATCH_EVENTS = 2000


@dataclass
class ReplayStats:
    events: int = 0
    valid: int = 0
    invalid: int = 0
    late: int = 0
    windows_scored: int = 0
    alerts: int = 0
    series: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    journeys: dict[str, int] = field(default_factory=dict)   # the journey stage's counts (funnel metrics)


class Replay:
    def __init__(self, catalogue: Catalogue, on_point: Callable[[MetricPoint], None],
                 on_alert: Callable[[AnomalyAlert], None], max_event_bytes: int = 65536,
                 book: FeedbackBook | None = None, verdicts: Iterable[Feedback] = (),
                 preset: str = "blipwatch", max_open_journeys: int = DEFAULT_MAX_OPEN):
        self.catalogue = catalogue
        self.on_point = on_point
        self.on_alert = on_alert
        self.batch = IngestBatch(catalogue, max_event_bytes, preset=preset, max_open_journeys=max_open_journeys)
        # idle detection is meaningless offline: the end of the file is the only idle moment
        self.watermark = LocalWatermark(catalogue.window_ms, catalogue.lateness_ms, idle_ms=2**62)
        self.trackers: dict[str, SeriesTracker] = {}
        self.incidents = IncidentBook()
        self.stats = ReplayStats()
        self.book = book if book is not None else FeedbackBook()
        #: verdicts not yet given (event time before their ``at``), the latest last
        self.verdicts = sorted(verdicts, key=lambda f: (time_ms(f.at), f.dedup_key))

    def feed(self, lines: Iterable[bytes]) -> None:
        pending = 0
        current = None
        for number, line in enumerate(lines, 1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            self.stats.events += 1
            event_ms = self.batch.add(None, line, f"line {number}", current)
            if event_ms is not None:
                self.watermark.observe(0, event_ms, 0)
            pending += 1
            if pending >= BATCH_EVENTS:
                pending = 0
                self._merge_and_close()
                current = self.watermark.value(0)

    def merge_windows(self, series_windows: dict[str, Iterable[tuple[int, float, float]]]) -> None:
        """Counts already per window, ``{series: [(window start ms, numerator, denominator)]}``: what
        the ingest's pre-aggregation makes of events (for a backtest on stored counts)."""
        for series, windows in series_windows.items():
            tracker = self._tracker(series)
            if tracker is not None:
                for window, numerator, denominator in windows:
                    tracker.merge(int(window), numerator, denominator)

    def advance(self, watermark_ms: int) -> None:
        """Close what a watermark at ``watermark_ms`` closes (with ``merge_windows``)."""
        self.watermark.observe(0, watermark_ms, 0)
        self._close(self.watermark.value(0))

    def finish(self) -> ReplayStats:
        self._merge_and_close()
        # the end of the file is the stream's "every partition idle": flush as it does
        self._merge_and_close(self.watermark.report(now_ms=2**62).get(0))
        counts = self.batch.counts
        self.stats.valid = sum(counts.valid.values())
        self.stats.invalid = sum(counts.invalid.values())
        self.stats.invalid_by_reason = dict(counts.invalid)
        self.stats.late = counts.late
        self.stats.series = len(self.trackers)
        self.stats.journeys = self.batch.journey_counts()
        return self.stats

    def _tracker(self, series: str) -> SeriesTracker | None:
        tracker = self.trackers.get(series)
        if tracker is None:
            metric = self.catalogue.by_name.get(metric_of(series))
            if metric is None:
                return None
            tracker = self.trackers[series] = SeriesTracker(series, metric, self.catalogue, book=self.book)
        return tracker

    def _merge_and_close(self, watermark: int | None = None) -> None:
        watermark = self.watermark.value(0) if watermark is None else watermark
        partials = self.batch.aggregate.drain()
        if watermark is not None:
            self.batch.advance_journeys({0: watermark}, partials)
        for series, windows in partials.items():
            tracker = self._tracker(series)
            if tracker is None:
                continue
            for window, cell in windows.items():
                tracker.merge(window, cell[0], cell[1])
        self._close(watermark)

    def _close(self, watermark: int | None) -> None:
        if watermark is None:
            return
        for tracker in self.trackers.values():
            close_at = tracker.next_close_at()
            if close_at is not None and close_at <= watermark:
                for window in tracker.close_until(watermark):
                    self._emit(tracker, window)
        self._give_verdicts(watermark)

    def _give_verdicts(self, watermark: int) -> None:
        while self.verdicts and time_ms(self.verdicts[0].at) <= watermark:
            feedback = self.verdicts.pop(0)
            self.book.apply_feedback(feedback.key, feedback.to_json())
            tracker = self.trackers.get(feedback.series_key())
            if tracker is None:
                continue
            alert = tracker.act(feedback)
            if alert is not None:
                self.stats.alerts += 1
                self.on_alert(self.incidents.note(tracker.series, alert))

    def _emit(self, tracker: SeriesTracker, window: ClosedWindow) -> None:
        self.stats.windows_scored += 1
        self.on_point(window.point)
        alert = self.incidents.closed(tracker, window)
        if alert is not None:
            self.stats.alerts += 1
            self.on_alert(alert)

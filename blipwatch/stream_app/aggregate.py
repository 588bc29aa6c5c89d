"""The aggregate stage: partial counts in, scored windows out.

One ``PartitionAggregator`` per assigned partials-topic partition holds the ``SeriesTracker`` of
every series routed there, and its own watermark: every ingest flush writes its watermark report
to every partials partition after the partials it covers, so the reports read from one partition
are exact for that partition's data — and only for it. (One watermark shared by all partitions
closed windows of a partition whose backlog was read behind another's, e.g. after a restart.) Detector state lives in a changelog-backed Faust table (written when a
window closes). Open windows live in memory only: the messages that fed them are acknowledged —
and so committed — only once every window they touched has closed, so a restarted or
rebalanced worker rebuilds them exactly from the partials topic (Kafka Streams does the same
with its changelogged window stores; here the topic itself is the log).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Iterable

import orjson

from blipwatch.detectors.catalogue import Catalogue, metric_of
from blipwatch.detectors.tracker import ClosedWindow, SeriesTracker
from blipwatch.detectors.windows import GlobalWatermark, closes_at
from blipwatch.stream_app import metrics

log = logging.getLogger(__name__)

#: A seek back that has not brought the expected partials message within this long is asked again.
RESEEK_SECONDS = 5.0


class PartitionAggregator:
    def __init__(self, partition: int, catalogue: Catalogue, load_state: Callable[[str], bytes | None]):
        self.partition = partition
        self.catalogue = catalogue
        self.load_state = load_state
        self.trackers: dict[str, SeriesTracker] = {}
        self.watermark = GlobalWatermark()
        #: messages not yet acknowledged, in offset order, with the close point of the newest
        #: window they fed (None: fed none, done as soon as those before it are)
        self.pending: deque[tuple[int | None, Any]] = deque()
        #: the offset the next partials message should have (a jump is logged)
        self.next_offset: int | None = None
        self.seek_asked_at: float | None = None  # when a seek back to next_offset was asked for

    def tracker(self, series: str) -> SeriesTracker | None:
        tracker = self.trackers.get(series)
        if tracker is None:
            metric = self.catalogue.by_name.get(metric_of(series))
            if metric is None:  # a metric removed from the config: its partials are ignored
                return None
            blob = self.load_state(series)
            if blob is not None:
                tracker = SeriesTracker.from_bytes(blob, series, metric, self.catalogue)
                if tracker.rewarmed:
                    metrics.STATE_RESET.inc()
            else:
                tracker = SeriesTracker(series, metric, self.catalogue)
            self.trackers[series] = tracker
        return tracker

    def adopt(self, series_keys: Iterable[str]) -> None:
        """Load trackers for series known from the table, so silent series still close windows."""
        for series in series_keys:
            self.tracker(series)

    def admit(self, offset: int, now: float | None = None) -> str:
        """Each partials message exactly once, in offset order: "process", "skip" or "seek".

        Faust 0.15 can drop messages it fetched while its flow was suspended around an assignment
        (seen after a SIGKILL restart and after a failover rebalance, on the first messages of a
        partition): whole partials messages were lost that way. A jump past
        ``next_offset`` asks for a seek back to it (once); what arrives before the expected message
        is skipped unacknowledged (it comes again), and what was already merged is not merged twice.
        Should the expected message still not come, the seek is asked for again after
        ``RESEEK_SECONDS``."""
        now = time.monotonic() if now is None else now
        expected = self.next_offset
        if expected is None or offset == expected:
            self.next_offset = offset + 1
            self.seek_asked_at = None
            return "process"
        if offset > expected and (self.seek_asked_at is None or now - self.seek_asked_at > RESEEK_SECONDS):
            self.seek_asked_at = now
            return "seek"
        return "skip"

    def merge(self, series_partials: dict[str, list[list[float]]], ack: Any) -> None:
        newest_close = None
        late = 0
        for series, windows in series_partials.items():
            tracker = self.tracker(series)
            if tracker is None:
                continue
            for window, numerator, denominator in windows:
                window = int(window)
                if tracker.merge(window, numerator, denominator):
                    close = closes_at(window, self.catalogue.window_ms, self.catalogue.lateness_ms)
                    newest_close = close if newest_close is None else max(newest_close, close)
                else:
                    late += 1
        if late:
            metrics.PARTIALS_LATE.inc(late)
        self.pending.append((newest_close, ack))

    def close(self, watermark: int | None) -> list[tuple[SeriesTracker, list[ClosedWindow]]]:
        """Close every window the watermark has passed; returns per series what closed."""
        if watermark is None:
            return []
        results = []
        for tracker in self.trackers.values():
            close_at = tracker.next_close_at()
            if close_at is not None and close_at <= watermark:
                closed = tracker.close_until(watermark)
                if closed:
                    results.append((tracker, closed))
        return results

    def acknowledge_until(self, watermark: int | None) -> None:
        """Acknowledge, in offset order, the messages whose windows have all closed (after their
        state was written). Strictly in order: Faust 0.15 commits past an unacknowledged message
        that sits right at the committed offset when the one after it is acknowledged
        (faust-streaming/faust#606), so a message acknowledged early behind a pending one lost
        that pending message's partials on every restart or rebalance."""
        pending = self.pending
        while pending:
            close_at, ack = pending[0]
            if close_at is not None and (watermark is None or close_at > watermark):
                return
            pending.popleft()
            ack()


def decode_partials(value: bytes) -> tuple[dict[int, int | None], int, float, dict[str, list[list[float]]]]:
    document = orjson.loads(value)
    report = {int(p): v for p, v in document.get("wm", {}).items()}
    return report, int(document.get("total", 0)), float(document.get("at", 0.0)), document.get("s", {})


__all__ = ["PartitionAggregator", "GlobalWatermark", "decode_partials"]

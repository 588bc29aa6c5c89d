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

import asyncio
import logging
import time
from collections import deque
from typing import Any, Awaitable, Callable, Iterable

from blipwatch.pipeline.catalogue import Catalogue, metric_of
from blipwatch.pipeline.attribution import IncidentBook
from blipwatch.pipeline.tracker import ClosedWindow, SeriesTracker
from blipwatch.pipeline.windows import GlobalWatermark
from blipwatch.schemas.partials import Coverage
from blipwatch.stream_app import metrics

log = logging.getLogger(__name__)
alert_log = logging.getLogger("blipwatch")   # the alert lines, as the worker has always logged them

#: A seek back that has not brought the expected partials message within this long is asked again.
RESEEK_SECONDS = 5.0
#: Detector state is written when the aggregate goes quiet after a burst of closes, and at the
#: latest this long after the oldest close not yet written (the agent writes it itself then).
STATE_DEFER_SECONDS = 2.0
#: Quiet: no partials message in hand for this long.
STATE_QUIET_SECONDS = 0.02
#: Series serialised between two yields to the agent while the state is written.
STATE_CHUNK = 256


class PartitionAggregator:
    def __init__(self, partition: int, catalogue: Catalogue, load_state: Callable[[str], bytes | None],
                 book: Any = None):
        self.partition = partition
        self.book = book   # the worker's FeedbackBook (calendars, verdicts), shared by its series
        self.catalogue = catalogue
        self.load_state = load_state
        self.trackers: dict[str, SeriesTracker] = {}
        self.watermark = GlobalWatermark()
        #: messages not yet acknowledged, in offset order, with the close point of the newest
        #: window they fed (None: fed none, done as soon as those before it are)
        self.pending: deque[tuple[int | None, Any]] = deque()
        #: per input partition, the highest (end offset, part) of the partials merged here: a
        #: message sent again (a failed flush re-sent, a killed worker's flush re-read by the next
        #: owner) is skipped, not counted twice. In memory only: rebuilt after a restart by reading
        #: again from the committed offset, and a copy of a message before it (acknowledged: every
        #: window it fed is closed in the stored state) only meets closed windows (late, dropped).
        self.merged: dict[int, tuple[int, int]] = {}
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
                tracker = SeriesTracker.from_bytes(blob, series, metric, self.catalogue, book=self.book)
                if tracker.rewarmed:
                    metrics.STATE_RESET.inc()
            else:
                tracker = SeriesTracker(series, metric, self.catalogue, book=self.book)
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

    def already_merged(self, coverage: Coverage) -> bool:
        """A message whose input offsets were all merged here already (to be acknowledged in order,
        not merged). Part merged and part not cannot be split: merged (and counted in
        ``blipwatch_partials_overlap_total``)."""
        if coverage.merged_in(self.merged):
            metrics.PARTIALS_DUPLICATE.inc()
            return True
        if coverage.overlaps(self.merged):
            metrics.PARTIALS_OVERLAP.inc()
            log.warning("aggregate: partition %d: a partials message covers offsets %s..%s, partly merged "
                        "already (%s); merging it", self.partition, coverage.start, coverage.end, self.merged)
        coverage.add_to(self.merged)
        return False

    def merge(self, series_partials: dict[str, list[list[float]]], ack: Any) -> None:
        newest = None   # the newest close of a window merged (a funnel's windows close ``within`` later)
        late = 0
        trackers = self.trackers
        for series, windows in series_partials.items():
            tracker = trackers.get(series) or self.tracker(series)
            if tracker is None:
                continue
            merge = tracker.merge
            for window, numerator, denominator in windows:
                window = int(window)
                if merge(window, numerator, denominator):
                    if newest is None or window + tracker.lateness_ms > newest:
                        newest = window + tracker.lateness_ms
                else:
                    late += 1
        newest_close = None if newest is None else newest + self.catalogue.window_ms
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


class StateWriter:
    """Points first, detector state after, acknowledgements last — across partials messages.

    Each window close used to write its series' state before the agent took the next partials
    message, so with 10,000 series the points of the last partition of a flush waited for the state
    of the 7,500 series of the three before it (live p99 3.5 s at 10x). Now the agent scores, sends
    the points, notes the series it closed (``closed``) and goes on; the state is written when the
    agent goes quiet, or by the agent itself once the oldest unwritten close is
    ``STATE_DEFER_SECONDS`` old (a backlog never goes quiet). A series that closed several windows
    meanwhile is written once.

    The durability order of docs/reliability.md holds per write: every point queued so far is
    delivered, with no message half processed (``in_hand``), *before* a series' state is
    serialised; the state is delivered before any message is acknowledged, and only up to each
    partition's watermark at the time the state was taken (every window closed by then is in it).
    A kill in between re-reads more partials than before (up to ``STATE_DEFER_SECONDS`` of
    closes) and re-publishes those points, identical, as a kill between points and state did.
    """

    def __init__(self, aggregators: dict[int, "PartitionAggregator"],
                 send: Callable[[list[tuple[int, bytes, bytes]]], Awaitable[list[Any]]],
                 store: Callable[[bytes, bytes], None], busy: Callable[[], bool]):
        self.aggregators = aggregators
        #: [(partition, key, blob), ...] -> their delivery futures (one per record batch), in order
        self.send = send
        self.store = store      # (key, blob): the table's local copy
        self.busy = busy        # the agent has a partials message in hand
        self.dirty: dict[str, tuple[int, SeriesTracker]] = {}
        self.unconfirmed: list[Any] = []   # delivery futures of points and alerts not yet awaited
        self.oldest: float | None = None   # when the oldest close not yet written happened
        self.in_hand = False               # the agent is between merging a message and noting what it closed
        self.ack_wanted = False            # a message was left unacknowledged while a write was under way
        self.last_busy = 0.0
        self.generation = 0                # bumped when partitions are revoked: a write under way is dropped
        self.failure: BaseException | None = None
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()

    def closed(self, partition: int, trackers: Iterable[SeriesTracker], deliveries: list) -> None:
        for tracker in trackers:
            self.dirty[tracker.series] = (partition, tracker)
        self.unconfirmed.extend(deliveries)
        if self.oldest is None and self.dirty:
            self.oldest = time.monotonic()
        self.wake.set()

    def idle(self) -> bool:
        """Nothing closed waits for its state: the agent may acknowledge by itself."""
        return not self.dirty and not self.unconfirmed and not self.lock.locked()

    def acknowledge_later(self) -> None:
        self.ack_wanted = True
        self.wake.set()

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.oldest is not None and now - self.oldest >= STATE_DEFER_SECONDS

    def forget(self) -> None:
        """Partitions revoked: their trackers are rebuilt from the table and the partials topic."""
        self.generation += 1
        self.dirty.clear()
        self.unconfirmed.clear()
        self.oldest = None

    async def _confirm(self, in_agent: bool) -> None:
        """Every point queued so far delivered, and no message half processed (its watermark moved,
        its closes not yet noted)."""
        while True:
            if self.unconfirmed:
                batch, self.unconfirmed = self.unconfirmed, []
                await asyncio.gather(*batch)
            elif self.in_hand and not in_agent:
                await asyncio.sleep(0.005)
            else:
                return

    async def write(self, in_agent: bool = False) -> None:
        """Write the state of every series closed since the last write, then acknowledge."""
        async with self.lock:
            generation = self.generation
            await self._confirm(in_agent)
            if generation != self.generation:
                return
            marks = [(aggregator, aggregator.watermark.value()) for aggregator in self.aggregators.values()]
            self.ack_wanted = False
            todo, self.dirty, self.oldest = list(self.dirty.values()), {}, None
            sent = []
            for start in range(0, len(todo), STATE_CHUNK):
                if start:
                    await asyncio.sleep(0)   # a partials message in hand goes first
                    await self._confirm(in_agent)
                    if generation != self.generation:
                        return
                # serialised with nothing in between (no await): each blob is a consistent snapshot
                blobs = [(partition, tracker.series.encode(), tracker.to_bytes())
                         for partition, tracker in todo[start:start + STATE_CHUNK]]
                sent.extend(await self.send(blobs))
                for _, key, blob in blobs:
                    self.store(key, blob)
            await asyncio.gather(*sent)
            if generation != self.generation:
                return
            for aggregator, watermark in marks:
                if self.aggregators.get(aggregator.partition) is aggregator:
                    aggregator.acknowledge_until(watermark)

    async def run(self) -> None:
        """Write when the agent goes quiet after closes."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.dirty or self.unconfirmed or self.ack_wanted:
                await asyncio.sleep(STATE_QUIET_SECONDS)
                if self.busy() or time.monotonic() - self.last_busy < STATE_QUIET_SECONDS:
                    continue
                try:
                    await self.write()
                except Exception as exc:  # the agent recovers at its next message (AggregateAgent.recover)
                    log.warning("aggregate: writing the detector state failed (%s)", exc)
                    self.failure = exc
                    self.forget()
                    self.ack_wanted = False
                    break


def publish_closed(tracker: SeriesTracker, closed: list[ClosedWindow], observed_at: float,
                   points: list[tuple[bytes, bytes]], alerts: list[tuple[bytes, bytes]],
                   incidents: IncidentBook) -> None:
    """The windows one series closed in one partials message: their points (and alerts) as
    ``(key, value)`` records for the points (alerts) topic, sent with the message's others, and
    the series' metrics (windows scored; its gauges show its newest window).

    Not through Faust's ``Topic.send``: its per-message path (FutureMessage, sensors, callbacks)
    cost more than scoring the window (bench: 3.9k -> 6.6k windows/s); nor one
    ``app.producer.send`` each since perf-produce (``kafka.batches.BatchSender``). Same bytes, same key,
    same partitioner (the key's hash); Faust's ``blipwatch_faust_total_sent_messages`` does not
    count them (``blipwatch_windows_scored_total`` and ``blipwatch_alerts_total`` do)."""
    key = tracker.key
    append = points.append
    for window in closed:
        append((key, window.point.to_json()))
        if window.point.suppressed is not None:
            metrics.count_suppressed(window.point.metric, window.point.suppressed)
        alert = incidents.closed(tracker, window)
        if alert is not None:
            alert.published_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            alerts.append((alert.dedup_key.encode(), alert.to_json()))
            metrics.ALERTS.labels(alert.metric, alert.status, alert.severity).inc()
            metrics.ALERT_LATENCY.observe(max(0.0, time.time() - observed_at))
            alert_log.info("alert %s: %s", alert.status, alert.summary)
    last = closed[-1]
    metric = tracker.metric.name
    metrics.count_scored(metric, len(closed))
    metrics.SERIES.observe(tracker.series, metric, tracker.segment_label, last.point, last.firing)


__all__ = ["PartitionAggregator", "GlobalWatermark", "StateWriter", "publish_closed"]

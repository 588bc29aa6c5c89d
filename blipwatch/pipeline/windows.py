"""Window arithmetic and watermarks (event time).

Windows are tumbling: ``[start, start + window)``. A window closes when the watermark passes
``end + allowed lateness``. The watermark is the minimum event-time progress over all input
partitions, where a partition's progress is the largest event time seen in it; a partition that
has had no events for ``idle`` milliseconds (wall clock) stops holding it back; when every
partition is idle, all open windows are flushed (progress jumps past the last window) — as in
Flink's idleness handling and Kafka Streams' stream time.

The ingest stage keeps a ``LocalWatermark`` over the partitions it consumes and reports it with
its partials; the aggregate stage folds the reports of all ingest workers into a
``GlobalWatermark``.

>>> local = LocalWatermark(window_ms=60_000, lateness_ms=30_000, idle_ms=10_000)
>>> local.observe(0, 120_000, now_ms=0); local.observe(1, 100_000, now_ms=0)
>>> local.value(now_ms=1_000)
100000
>>> local.value(now_ms=20_000)   # both idle: flush everything seen so far
210000
>>> fresh = LocalWatermark(window_ms=60_000, lateness_ms=30_000, idle_ms=10_000)
>>> fresh.assign({0, 1}, now_ms=0); fresh.observe(0, 120_000, now_ms=5_000)
>>> fresh.report(now_ms=1_000), fresh.value(now_ms=1_000)   # partition 1 not read yet: unknown
({0: 120000}, None)
>>> fresh.report(now_ms=10_000)                             # ... until the idle timeout
{0: 120000, 1: None}
>>> taken = LocalWatermark(window_ms=60_000, lateness_ms=30_000, idle_ms=10_000)
>>> taken.assign({0}, now_ms=0); taken.seed(0, 120_000)     # taken over, nothing new to read
>>> taken.report(now_ms=10_000)                             # flushes what the last owner had read
{0: 210000}
>>> window_start(125_000, 60_000), closes_at(120_000, 60_000, 30_000)
(120000, 210000)
"""

from __future__ import annotations

IDLE = None  # a partition that reports no progress: it does not hold the watermark back


def window_start(event_ms: int, window_ms: int) -> int:
    return event_ms - event_ms % window_ms


def closes_at(start_ms: int, window_ms: int, lateness_ms: int) -> int:
    """The watermark at which the window starting at ``start_ms`` closes."""
    return start_ms + window_ms + lateness_ms


def is_late(event_ms: int, watermark: int | None, window_ms: int, lateness_ms: int) -> bool:
    """Whether an event's window has already closed under ``watermark``."""
    if watermark is None:
        return False
    return closes_at(window_start(event_ms, window_ms), window_ms, lateness_ms) <= watermark


class LocalWatermark:
    """Event-time progress of the input partitions one ingest consumer owns."""

    def __init__(self, window_ms: int, lateness_ms: int, idle_ms: int):
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.idle_ms = idle_ms
        self.progress: dict[int, int] = {}      # partition -> largest event time seen
        self.last_active: dict[int, int] = {}   # partition -> wall-clock ms of its last event
        self.assigned: set[int] = set()
        self.assigned_at: dict[int, int] = {}   # partition -> wall-clock ms it was assigned
        self.flushed_to: int | None = None
        #: partition -> how far its previous owner had read it (event time), for the flush when all are idle
        self.floor: dict[int, int] = {}

    def seed(self, partition: int, event_ms: int) -> None:
        """A partition taken over: its previous owner had read it up to ``event_ms``. When every
        partition is idle, the flush point passes that too, so a worker that takes partitions
        over and reads nothing new from them still closes (and decides the journeys of) the
        windows its predecessor had seen. Never used for lateness: that is the partition's own
        progress."""
        if partition in self.assigned:
            self.floor[partition] = max(event_ms, self.floor.get(partition, event_ms))

    def hold(self, partitions: set[int], now_ms: int) -> None:
        """Partitions not being read (paused while a takeover finds its bounds or re-reads a
        killed owner's flush) do not turn idle meanwhile: they may have a backlog."""
        for partition in partitions & self.assigned:
            if partition in self.progress:
                self.last_active[partition] = now_ms
            else:
                self.assigned_at[partition] = now_ms

    def assign(self, partitions: set[int], now_ms: int | None = None) -> None:
        self.assigned = set(partitions)
        for partition in list(self.progress):
            if partition not in self.assigned:
                del self.progress[partition]
                self.last_active.pop(partition, None)
        for partition in list(self.assigned_at):
            if partition not in self.assigned:
                del self.assigned_at[partition]
        for partition in list(self.floor):
            if partition not in self.assigned:
                del self.floor[partition]
        if now_ms is not None:
            for partition in self.assigned:
                self.assigned_at.setdefault(partition, now_ms)

    def unknown(self, now_ms: int) -> set[int]:
        """Assigned partitions not read from yet and assigned less than ``idle`` ago."""
        return {p for p in self.assigned if p not in self.progress and p in self.assigned_at
                and now_ms - self.assigned_at[p] < self.idle_ms}

    def observe(self, partition: int, event_ms: int, now_ms: int) -> None:
        self.assigned.add(partition)
        if event_ms > self.progress.get(partition, -1):
            self.progress[partition] = event_ms
        self.last_active[partition] = now_ms

    def report(self, now_ms: int) -> dict[int, int | None]:
        """Progress per assigned partition, ``IDLE`` for idle ones, unknown ones left out; when
        all are idle, every partition reports the flush point (past the last window seen)."""
        active = {p: t for p, t in self.progress.items()
                  if now_ms - self.last_active.get(p, now_ms) < self.idle_ms}
        unknown = self.unknown(now_ms)
        if active or unknown:
            return {p: active.get(p, IDLE) for p in sorted(self.assigned) if p not in unknown}
        seen = [*self.progress.values(), *self.floor.values()]
        if not seen:
            return {p: IDLE for p in sorted(self.assigned)}
        newest = max(seen)
        flush = closes_at(window_start(newest, self.window_ms), self.window_ms, self.lateness_ms)
        self.flushed_to = max(flush, self.flushed_to or flush)
        return {p: self.flushed_to for p in sorted(self.assigned)}

    def value(self, now_ms: int) -> int | None:
        if self.unknown(now_ms):
            return None
        values = [v for v in self.report(now_ms).values() if v is not IDLE]
        return min(values) if values else None


class GlobalWatermark:
    """The minimum progress over all input partitions, from the reports of every ingest worker.

    It never moves backwards (a worker taking over a partition restarts behind the old owner).
    Until every partition of the input topic has reported once, it is unknown (None).

    >>> wm = GlobalWatermark()
    >>> wm.update({0: 100, 1: 90}, total=3)
    >>> wm.value() is None
    True
    >>> wm.update({2: IDLE}, total=3)
    >>> wm.value()
    90
    """

    def __init__(self) -> None:
        self.progress: dict[int, int | None] = {}
        self.total = 0
        self.current: int | None = None

    def update(self, report: dict[int, int | None], total: int) -> None:
        self.total = max(self.total, total)
        for partition, value in report.items():
            previous = self.progress.get(partition)
            if value is IDLE:
                self.progress[partition] = IDLE
            else:
                self.progress[partition] = value if previous is IDLE else max(previous, value)

    def value(self) -> int | None:
        if self.total == 0 or len(self.progress) < self.total:
            return self.current
        values = [v for v in self.progress.values() if v is not IDLE]
        if values:
            candidate = min(values)
            if self.current is None or candidate > self.current:
                self.current = candidate
        return self.current

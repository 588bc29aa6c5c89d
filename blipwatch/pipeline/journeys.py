"""The journey stage: funnel metrics from journeys per session, in event time (no Kafka).

Events are grouped per session: by ``session_id``, or, where a tracker has none, by its anonymous
id (``anonymous_id``, see blipwatch.schemas.presets) or else the ``customer_id``, a session ending
after an inactivity gap (30 minutes by default, as GA4 and Segment's destinations use). For each
funnel metric (``kind: funnel`` in the catalogue), a ``start`` event opens a journey in its session
(a start while one is open belongs to it); a ``success`` event of the same session within
``within`` of the start converts it; otherwise it fails. A session's events are taken in the order they come (Kafka keeps one key's
order): a success before its start converts nothing. Each journey counts in the window where
it started: the denominator is the journeys started there, the numerator those with the metric's
``outcome``, so the numerator never exceeds the denominator.

A window's counts leave the stage once every journey started in it is decided: when the
watermark passes the window's end + ``within`` + the allowed lateness (the same rule that closes
windows, ``within`` later). ``advance(watermark)`` returns them, as partials in the shape of
``PartialAggregate.drain``: ``{series: {window start: [numerator, denominator]}}``. Session and
customer ids stay inside the stage (and its ``snapshot``): outputs carry series and counts only.

In the ingest, one stage per input partition (``SessionPartitions`` shared by a worker's stages):
``add`` for each valid, on-time event of the partition, after the lateness check; ``advance``
with the partition's watermark at each flush, its partials merged into the flush's; ``snapshot``
written with the flush (so it matches the offsets the flush covers) and ``restore``d when the
partition is taken over. The aggregate stage must hold a funnel metric's windows ``within``
longer than others: its counts arrive after ``within`` has passed.

>>> from blipwatch.pipeline.catalogue import Catalogue
>>> from blipwatch.schemas import CustomerEvent
>>> catalogue = Catalogue.from_dict({"metrics": {"cart_abandonment_rate": {
...     "kind": "funnel", "start": ["add_to_cart"], "success": ["purchase"], "within": "30m",
...     "outcome": "failure"}}, "segments": {"dimensions": ["channel"]}})
>>> stage = JourneyStage(catalogue)
>>> t = 1767643500000                                   # 20:05:00, a window start
>>> stage.add(CustomerEvent("e1", "add_to_cart", t + 1000, session_id="s1", channel="web"), t + 1000)
>>> stage.add(CustomerEvent("e2", "purchase", t + 60000, session_id="s1", channel="web"), t + 60000)
>>> stage.add(CustomerEvent("e3", "add_to_cart", t + 2000, session_id="s2", channel="web"), t + 2000)
>>> stage.advance(t + 60000)                            # within has not passed: nothing yet
{}
>>> stage.advance(t + 60000 + 30 * 60000 + 30000)       # window end + 30m + lateness
{'cart_abandonment_rate|all': {1767643500000: [1.0, 2.0]}, 'cart_abandonment_rate|channel=web': {1767643500000: [1.0, 2.0]}}
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from blipwatch.pipeline.catalogue import Catalogue

#: how long a session without a session id lasts without events (GA4's and Segment's default)
DEFAULT_GAP_MS = 30 * 60_000
#: open journeys per worker (over its stages) before the least recently active session's are evicted
#: (and counted): BLIPWATCH_MAX_OPEN_JOURNEYS; ~400 bytes each (tests/benchmarks/journeys_bench.py)
DEFAULT_MAX_OPEN = 1_000_000
SNAPSHOT_VERSION = 1
#: the prefix of a session keyed by an anonymous or customer id (apart from session ids)
_VISITOR = "\x00"
_START, _SUCCESS = 0, 1


class SessionPartitions:
    """Which input partition each open session was seen on, shared by the stages of one worker:
    a session whose events arrive on two partitions is counted (and not silently split)."""

    def __init__(self, limit: int = 1_000_000):
        self.limit = limit
        self.partition_of: dict[str, int] = {}

    def note(self, key: str, partition: int) -> bool:
        """Notes the session on ``partition``; True when it is noted on another one."""
        noted = self.partition_of.get(key)
        if noted is None:
            if len(self.partition_of) >= self.limit:
                self.partition_of.clear()  # bounded: forgetting only misses a split, never invents one
            self.partition_of[key] = partition
            return False
        return noted != partition

    def elsewhere(self, key: str, partition: int) -> bool:
        """The session is open on another partition (nothing noted)."""
        noted = self.partition_of.get(key)
        return noted is not None and noted != partition

    def forget(self, key: str, partition: int) -> None:
        if self.partition_of.get(key) == partition:
            del self.partition_of[key]


class JourneyCap:
    """The cap on open journeys shared by one worker's stages (``stages``: input partition -> its
    stage, the worker's own map of them): when a stage opens a journey with ``limit`` open over all
    of them, the session least recently active (event time of the newest event the stage looked
    at for it) among every stage's sessions loses its open journeys (``evicted``, counted by the
    stage that held them)."""

    def __init__(self, limit: int = DEFAULT_MAX_OPEN):
        if limit < 1:
            raise ValueError(f"the cap on open journeys must be at least 1, not {limit}")
        self.limit = limit
        self.stages: dict[int, JourneyStage] = {}

    def open_journeys(self) -> int:
        return sum(stage.open_journeys for stage in self.stages.values())

    def make_room(self, keep_stage: "JourneyStage", keep: str) -> None:
        """Evicts sessions, least recently active first, until a journey more fits under the cap;
        never ``keep_stage``'s session ``keep`` (the one opening it)."""
        while self.open_journeys() >= self.limit:
            oldest = None
            for stage in self.stages.values():
                for key, state in stage.open.items():   # each stage's sessions: least recently active first
                    if key == keep and stage is keep_stage:
                        continue
                    if oldest is None or state[0] < oldest[2][0]:
                        oldest = (stage, key, state)
                    break
            if oldest is None:
                return   # only the session opening the journey: it may exceed the cap
            oldest[0]._evict(oldest[1])


class JourneyStage:
    """Open journeys of one input partition and the funnel counts of their start windows.

    ``add(event, occurred_at_ms)`` per valid, on-time event, in the partition's order;
    ``advance(watermark_ms)`` per flush, returning the partials of the windows now decided.
    ``counts`` says what happened: journeys started, converted, not converted, evicted (the cap:
    ``cap``, a worker's ``JourneyCap`` shared with its other stages, else one of ``max_open`` for
    this stage alone), starts too late for their window, funnel events with no session or customer id,
    sessions seen on two partitions.
    """

    def __init__(self, catalogue: Catalogue, partition: int = 0, gap_ms: int = DEFAULT_GAP_MS,
                 max_open: int = DEFAULT_MAX_OPEN, notes: SessionPartitions | None = None,
                 cap: JourneyCap | None = None):
        self.partition = partition
        self.gap_ms = gap_ms
        self.cap = JourneyCap(max_open) if cap is None else cap
        self.cap.stages[partition] = self
        self.notes = notes
        self.window_ms = catalogue.window_ms
        self.lateness_ms = catalogue.lateness_ms
        self.dimensions = tuple(catalogue.dimensions)
        #: two-dimension segments: the two values' indexes and the label, dimensions in name order
        #: (as ``schemas.outputs.segment_label`` and the pre-aggregation write it)
        self.pairs = []
        for first, second in catalogue.pairs:
            i, j = sorted((self.dimensions.index(first), self.dimensions.index(second)),
                          key=lambda k: self.dimensions[k])
            self.pairs.append((i, j, f"{self.dimensions[i]}={{}},{self.dimensions[j]}={{}}"))
        self.max_series = catalogue.max_series_per_metric
        self.metrics = [metric for metric in catalogue.metrics if metric.kind == "funnel"]
        self.within = [metric.funnel.within_ms for metric in self.metrics]
        self.counts_success = [metric.funnel.outcome == "success" for metric in self.metrics]
        #: event type -> ((funnel slot, role), ...)
        self._roles: dict[str, tuple[tuple[int, int], ...]] = {}
        for slot, metric in enumerate(self.metrics):
            for role, types in ((_START, metric.funnel.start), (_SUCCESS, metric.funnel.success)):
                for event_type in types:
                    self._roles[event_type] = self._roles.get(event_type, ()) + ((slot, role),)
        #: the funnels' start and success types: ``add`` ignores an event of another type with a session id
        self.event_types = frozenset(self._roles)
        #: session key -> [last event ms, start ms of funnel 0 (-1: none), its segment values, start 1, ...],
        #: least recently active first (a session moves to the end when an event of it is looked at)
        self.open: OrderedDict[str, list] = OrderedDict()
        self.open_journeys = 0
        #: (funnel slot, window start) -> [(session key, start ms)] of the journeys started there
        self.timers: dict[tuple[int, int], list[tuple[str, int]]] = {}
        #: (funnel slot, window start) -> {segment values: [numerator, denominator]}
        self.pending: dict[tuple[int, int], dict[tuple, list[float]]] = {}
        #: per funnel, the newest window whose counts left the stage (starts in it or before are late)
        self.released = [-1] * len(self.metrics)
        self.series_seen: list[set[str]] = [set() for _ in self.metrics]
        self.dropped: dict[str, int] = {}
        self.counts = dict.fromkeys(("started", "converted", "not_converted", "evicted", "late",
                                     "unattributed", "split_sessions"), 0)
        self._values = self._segment_values()
        self._interned: dict[tuple, tuple] = {}

    def _segment_values(self):
        names = self.dimensions
        return lambda event: tuple([getattr(event, name) for name in names])

    # -- per event ------------------------------------------------------------------------------

    def add(self, event: Any, occurred_at_ms: int) -> None:
        """One event: anything with ``event_type``, ``session_id``, ``customer_id`` and the segment
        dimensions (a CustomerEvent, a TrackedEvent, the ingest's decoded wire struct)."""
        roles = self._roles.get(event.event_type)
        key = event.session_id
        if key is not None:  # a session id is the session: no gap to watch, only funnel events matter
            if roles is None:
                return
            state = self.open.get(key)
            if state is not None and occurred_at_ms > state[0]:
                state[0] = occurred_at_ms
                self.open.move_to_end(key)
        else:
            key = getattr(event, "anonymous_id", None) or event.customer_id
            if key is None:
                if roles is not None:
                    self.counts["unattributed"] += 1
                return
            key = _VISITOR + key
            state = self.open.get(key)
            if state is not None:
                if occurred_at_ms - state[0] > self.gap_ms:  # a new session: the old one's journeys failed
                    self._close_session(key, state)
                    state = None
                elif occurred_at_ms > state[0]:
                    state[0] = occurred_at_ms
                    self.open.move_to_end(key)
            if roles is None:
                return
        for slot, role in roles:
            if role == _START:
                if state is None:
                    state = self._new_session(key, occurred_at_ms)
                self._start(key, state, slot, event, occurred_at_ms)
            elif state is not None:
                start = state[1 + 2 * slot]
                if start >= 0 and occurred_at_ms >= start:
                    self._resolve(state, slot, occurred_at_ms - start <= self.within[slot])
            elif self.notes is not None and self.notes.elsewhere(key, self.partition):
                self.counts["split_sessions"] += 1  # its journey is open on another partition
        if state is not None and self.open.get(key) is state and not self._has_open(state):
            self._drop_session(key)

    def _new_session(self, key: str, occurred_at_ms: int) -> list:
        if self.notes is not None and self.notes.note(key, self.partition):
            self.counts["split_sessions"] += 1
        state = [occurred_at_ms] + [-1, None] * len(self.metrics)
        self.open[key] = state
        return state

    def _start(self, key: str, state: list, slot: int, event: Any, occurred_at_ms: int) -> None:
        start = state[1 + 2 * slot]
        if start >= 0:
            if occurred_at_ms - start <= self.within[slot]:
                return  # the journey already open
            self._resolve(state, slot, False)
        window = occurred_at_ms - occurred_at_ms % self.window_ms
        if window <= self.released[slot]:
            self.counts["late"] += 1
            return
        cap = self.cap
        if self.open_journeys >= cap.limit or (len(cap.stages) > 1 and cap.open_journeys() >= cap.limit):
            cap.make_room(self, key)
        values = self._values(event)
        values = self._interned.setdefault(values, values) if len(self._interned) < 100_000 else values
        state[1 + 2 * slot] = occurred_at_ms
        state[2 + 2 * slot] = values
        self.open_journeys += 1
        self.counts["started"] += 1
        cells = self.pending.get((slot, window))
        if cells is None:
            cells = self.pending[(slot, window)] = {}
        cell = cells.get(values)
        if cell is None:
            cells[values] = [0.0, 1.0]
        else:
            cell[1] += 1.0
        timers = self.timers.get((slot, window))
        if timers is None:
            self.timers[(slot, window)] = [(key, occurred_at_ms)]
        else:
            timers.append((key, occurred_at_ms))

    def _resolve(self, state: list, slot: int, converted: bool) -> None:
        start = state[1 + 2 * slot]
        values = state[2 + 2 * slot]
        state[1 + 2 * slot] = -1
        state[2 + 2 * slot] = None
        self.open_journeys -= 1
        self.counts["converted" if converted else "not_converted"] += 1
        if converted == self.counts_success[slot]:
            self.pending[(slot, start - start % self.window_ms)][values][0] += 1.0

    @staticmethod
    def _has_open(state: list) -> bool:
        return any(start >= 0 for start in state[1::2])

    def _close_session(self, key: str, state: list) -> None:
        for slot in range(len(self.metrics)):
            if state[1 + 2 * slot] >= 0:
                self._resolve(state, slot, False)
        self._drop_session(key)

    def _drop_session(self, key: str) -> None:
        del self.open[key]
        if self.notes is not None:
            self.notes.forget(key, self.partition)

    def _evict(self, key: str) -> None:
        """The session's open journeys leave both counts (an outcome we cannot know); ``JourneyCap``
        chooses the session."""
        state = self.open[key]
        for slot in range(len(self.metrics)):
            start = state[1 + 2 * slot]
            if start >= 0:
                self.pending[(slot, start - start % self.window_ms)][state[2 + 2 * slot]][1] -= 1.0
                state[1 + 2 * slot] = -1
                self.open_journeys -= 1
                self.counts["evicted"] += 1
        self._drop_session(key)

    # -- per flush ------------------------------------------------------------------------------

    def advance(self, watermark_ms: int) -> dict[str, dict[int, list[float]]]:
        """Decides the journeys whose ``within`` has passed and returns the counts of the windows
        now complete (none twice): ``{series: {window start: [numerator, denominator]}}``."""
        partials: dict[str, dict[int, list[float]]] = {}
        horizon = watermark_ms - self.window_ms - self.lateness_ms
        due = sorted(key for key in self.pending if key[1] + self.within[key[0]] <= horizon)
        for slot, window in due:
            for key, start in self.timers.pop((slot, window), ()):
                state = self.open.get(key)
                if state is not None and state[1 + 2 * slot] == start:
                    self._resolve(state, slot, False)
                    if not self._has_open(state):
                        self._drop_session(key)
            cells = self.pending.pop((slot, window))
            if window > self.released[slot]:
                self.released[slot] = window
            self._fan_out(partials, slot, window, cells)
        return partials

    def _fan_out(self, partials: dict, slot: int, window: int, cells: dict[tuple, list[float]]) -> None:
        name = self.metrics[slot].name
        # single dimensions first, then pairs: under the series cap a pair never takes a single's place
        rounds = (False, True) if self.pairs else (False,)
        for pairs, (values, (numerator, denominator)) in ((p, cell) for p in rounds for cell in cells.items()):
            if denominator <= 0:
                continue  # only evicted journeys
            if pairs:
                segments = [label.format(values[i], values[j]) for i, j, label in self.pairs
                            if values[i] is not None and values[j] is not None]
            else:
                segments = ["all"] + [f"{dimension}={value}" for dimension, value in zip(self.dimensions, values)
                                      if value is not None]
            for segment in segments:
                series = f"{name}|{segment}"
                seen = self.series_seen[slot]
                if series not in seen:
                    if len(seen) >= self.max_series and segment != "all":
                        self.dropped[name] = self.dropped.get(name, 0) + int(denominator)
                        continue
                    seen.add(series)
                windows = partials.get(series)
                if windows is None:
                    windows = partials[series] = {}
                cell = windows.get(window)
                if cell is None:
                    windows[window] = [numerator, denominator]
                else:
                    cell[0] += numerator
                    cell[1] += denominator

    # -- restart safety -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The open journeys and the undecided windows' counts, compact (msgpack): ids are in it,
        so it belongs in the worker's own state topic only."""
        segments: dict[tuple, int] = {}

        def index(values):
            return -1 if values is None else segments.setdefault(values, len(segments))

        sessions = [[key, state[0], *[index(v) if i % 2 else v for i, v in enumerate(state[1:])]]
                    for key, state in self.open.items()]
        pending = [[slot, window, index(values), cell[0], cell[1]]
                   for (slot, window), cells in self.pending.items() for values, cell in cells.items()]
        return msgspec.msgpack.encode({
            "v": SNAPSHOT_VERSION, "funnels": [[m.name, w] for m, w in zip(self.metrics, self.within)],
            "segments": [list(values) for values in segments], "sessions": sessions, "pending": pending,
            "released": self.released, "counts": self.counts,
            "series": [sorted(seen) for seen in self.series_seen]})

    def restore(self, snapshot: bytes) -> None:
        """The state ``snapshot`` saved, in place of this stage's; refuses one taken with other
        funnels or another layout (then the stage starts empty, as after a first start)."""
        try:
            document = msgspec.msgpack.decode(snapshot)
        except msgspec.DecodeError:
            raise ValueError("journey snapshot is not readable") from None
        if not isinstance(document, dict) or document.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"journey snapshot has layout {document.get('v') if isinstance(document, dict) else '?'}, "
                             f"this version reads {SNAPSHOT_VERSION}")
        funnels = [[m.name, w] for m, w in zip(self.metrics, self.within)]
        if document["funnels"] != funnels:
            raise ValueError("journey snapshot was taken with other funnel metrics")
        segments = [tuple(values) for values in document["segments"]]
        self.open, self.timers, self.pending, self.open_journeys = OrderedDict(), {}, {}, 0
        for key, last, *slots in document["sessions"]:
            state = [last]
            for slot in range(len(self.metrics)):
                start, values = slots[2 * slot], slots[2 * slot + 1]
                state += [start, None if values < 0 else segments[values]]
                if start >= 0:
                    self.open_journeys += 1
                    window = start - start % self.window_ms
                    self.timers.setdefault((slot, window), []).append((key, start))
            self.open[key] = state
            if self.notes is not None:
                self.notes.note(key, self.partition)
        for slot, window, values, numerator, denominator in document["pending"]:
            self.pending.setdefault((slot, window), {})[segments[values]] = [numerator, denominator]
        self.released = list(document["released"])
        self.counts = dict(document["counts"])
        self.series_seen = [set(seen) for seen in document["series"]]

    def __repr__(self) -> str:  # counts only: no ids
        return f"JourneyStage(partition={self.partition}, open_journeys={self.open_journeys}, counts={self.counts})"

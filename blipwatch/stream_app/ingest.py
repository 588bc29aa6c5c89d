"""The firehose stage: decode, validate, pre-aggregate — batched, outside Faust's per-message path.

``IngestBatch`` is the pure part (bytes in; partial counts, DLQ records and counters out), so the
worker, ``replay`` and the benchmark share it. A flush's partial counts go on the wire through
``blipwatch.schemas.partials``.

Bytes are decoded with the input preset (``blipwatch.schemas.presets``; ``blipwatch``, the
contract, is the msgspec fast path). When the catalogue has funnel metrics, each valid, on-time
event also goes to its input partition's journey stage (``blipwatch.pipeline.journeys``), and
``advance_journeys`` adds the funnel counts now decided to a flush's partials.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.pipeline.journeys import DEFAULT_MAX_OPEN, JourneyCap, JourneyStage, SessionPartitions
from blipwatch.pipeline.preaggregate import PartialAggregate
from blipwatch.schemas.events import InvalidEvent, decode_event_fields
from blipwatch.schemas.presets import get_preset
from blipwatch.stream_app.metrics import event_type_label

#: An event stamped further ahead of the wall clock than this is rejected (``too_far_ahead``): it
#: would move its partition's watermark into the future and make every later on-time event late.
MAX_AHEAD_MS = 3600 * 1000
#: A dead letter keeps at most this much of the original value (header ``blipwatch.truncated`` gives
#: the original size): a ~1 MB event kept whole was refused by the producer (over its request size),
#: failing the flush and losing every other dead letter of it.
MAX_DEAD_LETTER_BYTES = 64 * 1024


@dataclass
class DeadLetter:
    """An invalid message as it goes to the DLQ: original key and bytes, the reason in headers."""

    key: bytes | None
    value: bytes | None
    reason: str
    field: str | None
    message: str
    source: str  # "topic/partition/offset"

    def kept_value(self) -> bytes:
        """The value as it goes to the DLQ: the original bytes, the first ``MAX_DEAD_LETTER_BYTES`` of them."""
        return (self.value or b"")[:MAX_DEAD_LETTER_BYTES]

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("blipwatch.reason", self.reason.encode()),
            ("blipwatch.field", (self.field or "").encode()),
            ("blipwatch.error", self.message.encode("utf-8", "replace")[:1000]),
            ("blipwatch.source", self.source.encode()),
        ]
        if self.value is not None and len(self.value) > MAX_DEAD_LETTER_BYTES:
            headers.append(("blipwatch.truncated", str(len(self.value)).encode()))
        return headers


@dataclass
class IngestCounts:
    valid: Counter = field(default_factory=Counter)     # event type label -> n
    invalid: Counter = field(default_factory=Counter)   # reason -> n
    late: int = 0

    def clear(self) -> None:
        self.valid.clear()
        self.invalid.clear()
        self.late = 0


class IngestBatch:
    """Decode and pre-aggregate events; collect dead letters; count by type, reason and lateness."""

    def __init__(self, catalogue: Catalogue, max_event_bytes: int, max_ahead_ms: int = MAX_AHEAD_MS,
                 preset: str = "blipwatch", journeys: bool = True, max_open_journeys: int = DEFAULT_MAX_OPEN):
        self.catalogue = catalogue
        self.max_event_bytes = max_event_bytes
        self.max_ahead_ms = max_ahead_ms
        self.preset = preset
        self._decode = get_preset(preset).decode   # the contract's: decode_event_fields itself
        #: input partition -> its journey stage (only when the catalogue has funnel metrics)
        self.funnels = journeys and any(metric.kind == "funnel" for metric in catalogue.metrics)
        #: the cap on open journeys over this worker's stages (BLIPWATCH_MAX_OPEN_JOURNEYS)
        self.journey_cap = JourneyCap(max_open_journeys)
        self.journeys: dict[int, JourneyStage] = self.journey_cap.stages
        self.session_partitions = SessionPartitions()
        self.aggregate = PartialAggregate(catalogue)
        self._window_ms = catalogue.window_ms
        self._closes_after_ms = catalogue.window_ms + catalogue.lateness_ms  # a window closes at start + this
        self.dead_letters: list[DeadLetter] = []
        self.counts = IngestCounts()

    def journey_stage(self, partition: int) -> JourneyStage | None:
        """The journey stage of an input partition (made on first use); None without funnels."""
        if not self.funnels:
            return None
        stage = self.journeys.get(partition)
        if stage is None:
            stage = JourneyStage(self.catalogue, partition=partition, notes=self.session_partitions,
                                 cap=self.journey_cap)   # in self.journeys from here
        return stage

    def add(self, key: bytes | None, value: bytes | None, source: str,
            watermark: int | None, offset: int | None = None, partition: int = 0) -> int | None:
        """One message; returns its event time in ms when valid and on time, else None.

        ``source`` names the message in a dead letter; with ``offset`` it is a prefix
        (``topic/partition/``) completed only for the few that become dead letters."""
        try:
            event, occurred_at_ms = self._decode(value, self.max_event_bytes)
        except InvalidEvent as exc:
            self._dead_letter(key, value, exc, source, offset)
            return None
        if occurred_at_ms > time.time() * 1000 + self.max_ahead_ms:
            self._dead_letter(key, value, InvalidEvent(
                "too_far_ahead", "occurred_at",
                f"{occurred_at_ms} ms is more than {self.max_ahead_ms // 1000} s ahead of this worker's clock"),
                source, offset)
            return None
        self.counts.valid[event_type_label(event.event_type)] += 1
        # is_late(occurred_at_ms, watermark, window, lateness), inline: this runs once per event
        if (watermark is not None
                and occurred_at_ms - occurred_at_ms % self._window_ms + self._closes_after_ms <= watermark):
            self.counts.late += 1
            return None
        self.aggregate.add_fields(event, occurred_at_ms)
        if self.funnels:
            self.journey_stage(partition).add(event, occurred_at_ms)
        return occurred_at_ms

    def add_records(self, records, source_prefix: str, watermark: int | None, partition: int = 0,
                    journeys: bool = True) -> int | None:
        """``add`` for each of one partition's fetched records (``key``, ``value``, ``offset``), in
        order, with the same outcome; returns the newest event time among the valid, on-time ones.

        The worker's per-event path, so written for speed: no CustomerEvent (the decoded fields go
        straight to the pre-aggregation), counts by type kept locally and added once, the clock read
        once unless an event is near the too-far-ahead limit (then read again, as ``add`` does).
        ``partition``: the input partition (its journey stage gets the events, unless ``journeys``
        is False: records a restored journey snapshot already holds)."""
        decode = self._decode
        stage = self.journey_stage(partition) if journeys else None
        journey = stage.add if stage is not None else None
        # the events stage.add returns from at once, not called: a session id's, of no funnel's type
        funnel_types = stage.event_types if stage is not None else frozenset()
        max_bytes = self.max_event_bytes
        max_ahead_ms = self.max_ahead_ms
        limit = time.time() * 1000 + max_ahead_ms  # the clock only moves on: anything below is below later
        window_ms = self._window_ms
        # is_late(occurred_at_ms, watermark, window, lateness) is "the event's window starts at or
        # before watermark - (window + lateness)": every event before the end of that window is late
        if watermark is None:
            late_before = 0
        else:
            last_closed = watermark - self._closes_after_ms
            late_before = last_closed - last_closed % window_ms + window_ms
        # the window of the event before, [start, end): events come nearly in time order, and two
        # comparisons cost less than the arithmetic on these large integers
        start = end = 0
        add = self.aggregate.add_to_window
        by_type: dict[str, int] = {}
        late = 0
        newest = -1
        for record in records:
            value = record.value
            try:
                event, occurred_at_ms = decode(value, max_bytes)
            except InvalidEvent as exc:
                self._dead_letter(record.key, value, exc, source_prefix, record.offset)
                continue
            if occurred_at_ms > limit and occurred_at_ms > time.time() * 1000 + max_ahead_ms:
                self._dead_letter(record.key, value, InvalidEvent(
                    "too_far_ahead", "occurred_at",
                    f"{occurred_at_ms} ms is more than {max_ahead_ms // 1000} s ahead of this worker's clock"),
                    source_prefix, record.offset)
                continue
            event_type = event.event_type
            by_type[event_type] = by_type.get(event_type, 0) + 1
            if occurred_at_ms < late_before:
                late += 1
                continue
            if journey is not None and (event_type in funnel_types or event.session_id is None):
                journey(event, occurred_at_ms)
            if not start <= occurred_at_ms < end:
                start = occurred_at_ms - occurred_at_ms % window_ms
                end = start + window_ms
            add(event, start)
            if occurred_at_ms > newest:
                newest = occurred_at_ms
        counts = self.counts
        valid = counts.valid
        for event_type, n in by_type.items():
            valid[event_type_label(event_type)] += n
        counts.late += late
        return newest if newest >= 0 else None

    def add_to_journeys(self, records, watermark: int | None, partition: int) -> int | None:
        """Records whose counts a previous owner already sent, but which its newest journey
        snapshot does not hold: into the journey stage only (same checks as ``add_records``);
        returns the newest event time among them."""
        stage = self.journey_stage(partition)
        newest = None
        if stage is None:
            return newest
        window_ms = self._window_ms
        limit = time.time() * 1000 + self.max_ahead_ms
        for record in records:
            try:
                event, occurred_at_ms = self._decode(record.value, self.max_event_bytes)
            except InvalidEvent:
                continue
            if occurred_at_ms > limit:
                continue
            if watermark is not None and (occurred_at_ms - occurred_at_ms % window_ms
                                          + self._closes_after_ms <= watermark):
                continue
            stage.add(event, occurred_at_ms)
            if newest is None or occurred_at_ms > newest:
                newest = occurred_at_ms
        return newest

    def advance_journeys(self, watermarks: dict[int, int | None], partials: dict) -> dict:
        """At a flush: each partition's journey stage advanced to its watermark (``watermarks``:
        input partition -> ms; None leaves it waiting), the funnel counts now decided merged into
        ``partials`` (``PartialAggregate.drain``'s shape), which is returned."""
        for partition, stage in self.journeys.items():
            watermark = watermarks.get(partition)
            if watermark is None:
                continue
            for series, windows in stage.advance(watermark).items():
                into = partials.get(series)
                if into is None:
                    partials[series] = windows
                    continue
                for window, cell in windows.items():
                    have = into.get(window)
                    if have is None:
                        into[window] = cell
                    else:
                        have[0] += cell[0]
                        have[1] += cell[1]
        return partials

    def journey_counts(self) -> dict[str, int]:
        """The journey stages' counts (started, converted, evicted, ...) summed over partitions."""
        total: dict[str, int] = {}
        for stage in self.journeys.values():
            for name, n in stage.counts.items():
                total[name] = total.get(name, 0) + n
        return total

    def open_journeys(self) -> int:
        return sum(stage.open_journeys for stage in self.journeys.values())

    def _dead_letter(self, key: bytes | None, value: bytes | None, error: InvalidEvent, source: str,
                     offset: int | None) -> None:
        if offset is not None:
            source = f"{source}{offset}"
        self.dead_letters.append(DeadLetter(key, value, error.reason, error.field, error.message, source))
        self.counts.invalid[error.reason] += 1

    def drain_dead_letters(self) -> list[DeadLetter]:
        letters, self.dead_letters = self.dead_letters, []
        return letters

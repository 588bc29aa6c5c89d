"""The journey stages' state in Kafka: a snapshot per input partition, written with a flush to
the compacted topic ``<app_id>-journeys`` (key: the input partition), read back when a partition
is taken over (after a restart, a kill or a failover). With few open journeys every flush writes
it; a big one (its encoding takes long) waits ``COST_FACTOR`` times that since the last, unless
its stage released windows since.

A snapshot holds session and customer ids (``JourneyStage.snapshot``): it lives in this topic only,
never in points, alerts, metric labels or logs. Each record says up to which input offset it
covers (``to``), like the partials' ``to``:

- the flush sends its partials and dead letters, waits for their acks, then sends the snapshots
  and waits for theirs, then commits; so a snapshot never covers more than the partials sent;
- a new owner reads from the committed offset; where the partials went further (the old owner was
  killed after sending some or all of a flush's messages, ``IngestRebalance.skip_sent``), it reads
  up to there and flushes that alone, deciding the journeys up to the watermark that flush
  recorded (``jw``): its funnel counts are the killed flush's, skipped where that flush arrived;
- when the newest snapshot covers less than the committed offset, the records in between feed the
  journey stage only (their counts were sent), and the funnel counts released by the flushes they
  were in are released again, to nobody (they were sent too); when it covers more (killed between
  the snapshot's ack and the commit), the records in between feed the counts only.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from blipwatch.kafka.clients import stop_quietly
from blipwatch.stream_app.ingest import IngestBatch

log = logging.getLogger("blipwatch")

#: to (next input offset covered), piece index, pieces
_HEADER = struct.Struct(">qII")
#: an unchanged snapshot is written again this often (seconds), so it stays in the topic's tail
REWRITE_SECONDS = 60.0
#: a partition's snapshot that took more than SMALL_SECONDS to encode is written again only after
#: COST_FACTOR times that (at most ~5% of the worker's time on snapshots), or when its stage has
#: released windows since (a new owner must not release them again): with few open journeys every
#: flush writes it, with 300,000 every 10-20 s or each minute's release; a new owner re-reads the
#: records after the snapshot it finds, for the journeys only
COST_FACTOR = 20.0
SMALL_SECONDS = 0.01
#: a snapshot is sent in pieces of at most this many bytes (a producer's request limit is 1 MiB)
PIECE_BYTES = 512 * 1024


def journeys_topic(app_id: str) -> str:
    return f"{app_id}-journeys"


def snapshot_records(partition: int, to: int, snapshot: bytes) -> list[tuple[bytes, bytes]]:
    """(key, value) pieces of one input partition's snapshot covering its offsets below ``to``,
    to be sent in order to one partition."""
    key = str(partition).encode()
    pieces = [snapshot[i:i + PIECE_BYTES] for i in range(0, len(snapshot), PIECE_BYTES)] or [b""]
    return [(key, _HEADER.pack(to, index, len(pieces)) + piece) for index, piece in enumerate(pieces)]


def parse_snapshot_record(key: bytes | None, value: bytes | None) -> tuple[int, int, int, int, bytes] | None:
    """(input partition, to, piece index, pieces, piece), or None for a record that is not one."""
    if not key or not value or len(value) < _HEADER.size or not key.isdigit():
        return None
    to, index, count = _HEADER.unpack_from(value)
    return int(key), to, index, count, bytes(value[_HEADER.size:])


class SnapshotReader:
    """Assembles the newest complete snapshot per input partition from records read in order."""

    def __init__(self, input_partitions: set[int]):
        self.input_partitions = input_partitions
        self.newest: dict[int, tuple[int, bytes]] = {}
        self._parts: dict[int, tuple[int, list[bytes]]] = {}

    def add(self, key: bytes | None, value: bytes | None) -> None:
        parsed = parse_snapshot_record(key, value)
        if parsed is None or parsed[0] not in self.input_partitions:
            return
        partition, to, index, count, piece = parsed
        if index == 0:
            self._parts[partition] = (to, [piece])
        else:
            parts = self._parts.get(partition)
            if parts is None or parts[0] != to or len(parts[1]) != index:
                self._parts.pop(partition, None)   # a piece without the ones before it
                return
            parts[1].append(piece)
        if index == count - 1:
            to, pieces = self._parts.pop(partition)
            self.newest[partition] = (to, b"".join(pieces))


class JourneyState:
    """The worker's side of the journey snapshots: which to write at a flush, and restoring them
    (and how to read the records between a snapshot and the partials) on assignment."""

    def __init__(self, batch: IngestBatch, connection: dict[str, Any], topic: str, partitions: int):
        self.batch = batch
        self.connection = connection
        self.topic = topic
        self.partitions = partitions            # of the journeys topic (the worker's BLIPWATCH_PARTITIONS)
        self.positions: dict[int, int] = {}     # input partition -> next offset its stage has seen
        #: input partition -> offset below which records feed the journey stage only
        self.journeys_only_until: dict[int, int] = {}
        #: input partition -> offset below which records feed the counts only (a snapshot holds them)
        self.counts_only_until: dict[int, int] = {}
        #: input partition -> the flush after a catch-up releases to nobody (already sent)
        self.discard_next_release: set[int] = set()
        #: input partition -> the newest event time among its catch-up records (the lost flush's progress)
        self.caught_up_to: dict[int, int] = {}
        #: input partition -> how far the last owner's flush at the committed offset decided its
        #: journeys (its partials' ``jw``): what it released, exactly, where known
        self.released_to: dict[int, int] = {}
        self.restored = 0                       # snapshots restored (for the logs and the tests)
        self.exported: dict[int, dict[str, int]] = {}   # input partition -> its counts already exported
        #: input partition -> (what its last written snapshot held, when it was written)
        self.written: dict[int, tuple[tuple, float]] = {}
        #: input partition -> seconds its last snapshot took to encode
        self.cost: dict[int, float] = {}
        self.unconfirmed: dict[int, tuple[tuple, float]] = {}   # ... of the snapshots being sent

    def advance(self, watermarks: dict[int, int | None], partials: dict) -> dict:
        """``IngestBatch.advance_journeys``, except for partitions still catching up (they wait)
        and, once caught up, the release of the flush their snapshot missed (sent already)."""
        waiting = {p: None for p in self.journeys_only_until}
        # what the last owner released: to its flush's ``jw`` where the partials say it; else (older
        # partials) about as far as the catch-up records reach
        discard = {p: self.released_to[p] if p in self.released_to
                   else min(watermarks[p], self.caught_up_to.get(p, watermarks[p]))
                   for p in self.discard_next_release
                   if p not in self.journeys_only_until and (watermarks.get(p) is not None or p in self.released_to)}
        for partition, watermark in discard.items():
            self.batch.journeys[partition].advance(watermark)   # released to nobody: sent by the last owner
            self.discard_next_release.discard(partition)
            self.caught_up_to.pop(partition, None)
            self.released_to.pop(partition, None)
        return self.batch.advance_journeys({**watermarks, **waiting}, partials)

    def new_counts(self) -> dict[str, int]:
        """What the stages counted since the last call (restored counts are the last owner's)."""
        new: dict[str, int] = {}
        for partition, stage in self.batch.journeys.items():
            seen = self.exported.setdefault(partition, {})
            for name, n in stage.counts.items():
                if n > seen.get(name, 0):
                    new[name] = new.get(name, 0) + n - seen.get(name, 0)
                seen[name] = n
        return new

    def records(self) -> list[tuple[int, bytes, bytes]]:
        """(journeys-topic partition, key, value) for every stage, covering what it has seen."""
        out = []
        now = time.monotonic()
        for partition, stage in self.batch.journeys.items():
            to = self.positions.get(partition)
            if to is None or partition in self.journeys_only_until:
                continue  # nothing read yet, or still catching up: the older snapshot stays right
            held = (to, stage.open_journeys, sum(stage.counts.values()), len(stage.pending), tuple(stage.released))
            written = self.written.get(partition)
            if written is not None and written[0] == held and now - written[1] < REWRITE_SECONDS:
                continue  # the snapshot written last holds the same
            cost = self.cost.get(partition, 0.0)
            if (written is not None and cost > SMALL_SECONDS and now - written[1] < COST_FACTOR * cost
                    and written[0][4] == held[4]):
                continue  # a big one, written recently, nothing released since: a new owner re-reads the records since
            self.unconfirmed[partition] = (held, now)
            began = time.perf_counter()
            snapshot = stage.snapshot()
            self.cost[partition] = time.perf_counter() - began
            for key, value in snapshot_records(partition, to, snapshot):
                out.append((partition % self.partitions, key, value))
        return out

    def catch_up(self, partition: int, records: list, watermark: int | None) -> None:
        """Records the journey stage only takes (see ``split``)."""
        newest = self.batch.add_to_journeys(records, watermark, partition)
        if newest is not None and newest > self.caught_up_to.get(partition, -1):
            self.caught_up_to[partition] = newest

    def delivered(self) -> None:
        """The snapshots of the last ``records`` are on the broker."""
        self.written.update(self.unconfirmed)
        self.unconfirmed.clear()

    def split(self, partition: int, records: list) -> tuple[list, list, list]:
        """A fetch of ``partition`` as (records for the journey stage only, records for the counts
        only, the rest: for both). Usually ``([], [], records)``."""
        until = self.journeys_only_until.get(partition)
        if until is not None:
            before = [record for record in records if record.offset < until]
            if len(before) < len(records) or (before and before[-1].offset + 1 >= until):
                del self.journeys_only_until[partition]
            return before, [], records[len(before):]
        until = self.counts_only_until.get(partition)
        if until is not None:
            before = [record for record in records if record.offset < until]
            if len(before) < len(records) or (before and before[-1].offset + 1 >= until):
                del self.counts_only_until[partition]
            return [], before, records[len(before):]
        return [], [], records

    def revoked(self, partitions: set[int]) -> None:
        for partition in partitions:
            stage = self.batch.journeys.pop(partition, None)
            if stage is not None:
                for key in list(stage.open):
                    self.batch.session_partitions.forget(key, partition)
            self.positions.pop(partition, None)
            self.exported.pop(partition, None)
            self.written.pop(partition, None)
            self.cost.pop(partition, None)
            self.journeys_only_until.pop(partition, None)
            self.counts_only_until.pop(partition, None)
            self.discard_next_release.discard(partition)
            self.caught_up_to.pop(partition, None)
            self.released_to.pop(partition, None)

    async def restore(self, starts: dict[int, int], decided: dict[int, int] | None = None) -> dict[int, int]:
        """Restores the newest snapshot of each input partition in ``starts`` (partition -> offset
        the ingest will read from); returns the partitions to read from an earlier offset
        (partition -> offset), whose records up to the start feed the journey stage only, and
        whose journeys the last owner had decided to ``decided`` (partition -> ms, its ``jw`` at
        the start offset) are then released to nobody."""
        if not self.batch.funnels or not starts:
            return {}
        try:
            found = await read_snapshots(self.connection, self.topic, set(starts), self.partitions)
        except Exception as exc:  # never block consumption: the journeys start empty
            log.warning("ingest: cannot read the journey snapshots (%s); open journeys of partitions %s "
                        "start empty", type(exc).__name__, sorted(starts))
            found = {}
        seek_back = {}
        for partition, start in starts.items():
            stage = self.batch.journey_stage(partition)
            if partition not in found:
                if start:
                    log.info("ingest: no journey snapshot for partition %d; its journeys start at offset %d",
                             partition, start)
                self.positions[partition] = start
                continue
            to, snapshot = found[partition]
            try:
                stage.restore(snapshot)
            except ValueError as exc:
                log.warning("ingest: journey snapshot of partition %d refused (%s); its journeys start empty",
                            partition, exc)
                self.positions[partition] = start
                continue
            self.restored += 1
            log.info("ingest: journey snapshot of partition %d restored: %d open journeys, offsets below %d",
                     partition, stage.open_journeys, to)
            self.exported[partition] = dict(stage.counts)
            self.positions[partition] = max(to, start)
            if to < start:
                log.info("ingest: the journey snapshot of partition %d covers offsets below %d, the partials "
                         "below %d: re-reading those for the journeys only", partition, to, start)
                self.journeys_only_until[partition] = start
                self.discard_next_release.add(partition)
                if decided and partition in decided:
                    self.released_to[partition] = decided[partition]
                seek_back[partition] = to
            elif to > start:
                log.info("ingest: the journey snapshot of partition %d covers offsets below %d, the partials "
                         "below %d: the journeys skip the records in between", partition, to, start)
                self.counts_only_until[partition] = to
        return seek_back


async def read_snapshots(connection: dict[str, Any], topic: str, input_partitions: set[int], partitions: int,
                         tail: int = 2000) -> dict[int, tuple[int, bytes]]:
    """The newest snapshot of each of ``input_partitions`` in the tail of the journeys topic."""
    reader = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024,
                              **connection)
    await reader.start()
    try:
        found = reader.partitions_for_topic(topic) or set()
        wanted = {p % partitions for p in input_partitions}
        tps = [TopicPartition(topic, p) for p in found if p in wanted]
        if not tps:
            return {}
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
        pending = set()
        for tp in tps:
            if ends[tp]:
                reader.seek(tp, max(0, ends[tp] - tail))
                pending.add(tp)
        assembled = SnapshotReader(input_partitions)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            batches = await reader.getmany(*pending, timeout_ms=200, max_records=1000)
            for records in batches.values():
                for record in records:
                    assembled.add(record.key, record.value)
            for tp in list(pending):
                highwater = reader.highwater(tp)  # from the fetch: right even where end_offsets is not
                if highwater is not None and await reader.position(tp) >= highwater:
                    pending.discard(tp)
        return assembled.newest
    finally:
        await stop_quietly(reader)


__all__ = ["JourneyState", "journeys_topic", "parse_snapshot_record", "read_snapshots", "snapshot_records"]

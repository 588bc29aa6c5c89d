"""The ingest consumer's rebalance listener: hand partitions over cleanly, and take them over
without counting twice what a previous owner sent but did not commit."""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from blipwatch.kafka.clients import stop_quietly
from blipwatch.pipeline.windows import LocalWatermark
from blipwatch.schemas.partials import (SentHeader, reported_progress, sent_headers, sent_journey_watermarks,
                                        sent_positions)
from blipwatch.stream_app.config import Settings

log = logging.getLogger("blipwatch")


class IngestRebalance(ConsumerRebalanceListener):
    """``consumer``: the ingest's consumer; ``watermark``: its local watermark (told which input
    partitions it now reads); ``flush``: sends what was read and commits it."""

    def __init__(self, consumer: AIOKafkaConsumer, watermark: LocalWatermark, flush: Callable[[], Awaitable[None]],
                 settings: Settings, bound: Callable[[dict, dict], None] | None = None,
                 discard: Callable[[], None] | None = None, journeys: Any = None):
        self.consumer = consumer
        self.watermark = watermark
        self.flush = flush
        self.settings = settings
        #: read these partitions up to these offsets and flush them alone (``IngestService.bounded``,
        #: also given the journey watermarks of the flush that sent up to there); without it, the
        #: partitions are seeked past what was sent (a flush split over partials partitions by a
        #: kill then drops that flush's events where it had not arrived)
        self.bound = bound
        #: forget a flush not delivered when the partitions are handed over (the next owner re-reads)
        self.discard = discard
        self.journeys = journeys   # JourneyState: its snapshots restored on assignment, dropped on revoke
        #: input partition -> how far the last owner's flush up to the committed offset decided its
        #: journeys (its ``jw``), read by ``skip_sent`` for ``restore_journeys``
        self.committed_journeys: dict[int, int] = {}

    async def on_partitions_revoked(self, revoked) -> None:
        # hand over cleanly: what was read is sent and committed before another worker takes it
        if revoked:
            try:
                await self.flush()
            except Exception as exc:
                log.warning("ingest: flush on rebalance failed (%s); the next owner re-reads", exc)
                if self.discard is not None:
                    self.discard()
            if self.journeys is not None:
                self.journeys.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned) -> None:
        # aiokafka lets getmany return records from the committed offsets while this callback is
        # still awaiting: paused (before the first await) nothing is read until skip_sent has found the bounds
        self.consumer.pause(*assigned)
        bounds: dict = {}
        journey_watermarks: dict[int, int] = {}
        try:
            self.watermark.assign({tp.partition for tp in assigned}, int(time.time() * 1000))
            if assigned:
                starts, bounds, journey_watermarks = await self.skip_sent(assigned)
                if self.journeys is not None:
                    await self.restore_journeys(assigned, starts)
        finally:
            still = self.consumer.assignment()   # a rebalance meanwhile may have taken some away
            self.consumer.resume(*[tp for tp in assigned if tp in still])
            bounds = {tp: offset for tp, offset in bounds.items() if tp in still}
            if bounds and self.bound is not None:
                self.bound(bounds, {tp.partition: journey_watermarks[tp.partition] for tp in bounds
                                    if tp.partition in journey_watermarks})
        log.info("ingest: consuming %s partitions %s", self.settings.events_topic,
                 sorted(tp.partition for tp in assigned))

    async def skip_sent(self, assigned) -> tuple[dict[int, int], dict[TopicPartition, int], dict[int, int]]:
        """A previous owner killed between sending its partials and committing left events that
        are already counted, on some partials partitions at least (a flush is one message per
        partials partition: a kill can fall between them). Returns where each input partition
        starts (partition -> offset), how far the partitions sent but not committed were sent
        (their bounds) and the journey watermarks of the flush that sent up to there (partition ->
        ms). The ingest reads up to the bound and flushes that alone (``IngestService.bounded``);
        the aggregate skips those offsets where it merged them already and merges them elsewhere.
        Without a ``bound`` callback, the consumer is seeked past them (the former behaviour)."""
        committed = {tp: (await self.consumer.committed(tp)) or 0 for tp in assigned}
        starts = {tp.partition: offset for tp, offset in committed.items()}
        try:
            headers = await read_sent(self.settings.aiokafka_kwargs(), self.settings.partials_topic,
                                      {tp.partition for tp in assigned}, committed=starts)
        except Exception as exc:  # never block consumption on this: at-least-once still holds
            log.warning("ingest: cannot read how far the partials cover %s (%s); re-reading from the "
                        "committed offsets", self.settings.events_topic, exc)
            self.committed_journeys = {}
            return starts, {}, {}
        for partition, progress in reported_progress(headers, set(starts)).items():
            self.watermark.seed(partition, progress)   # a predecessor's reading, for the flush when all are idle
        sent = sent_positions(headers, set(starts))
        self.committed_journeys = sent_journey_watermarks(headers, starts)
        bounds = {}
        for tp in assigned:
            if tp.partition in sent and sent[tp.partition] > committed[tp]:
                log.info("ingest: partition %d was sent up to offset %d but committed at %s: %s",
                         tp.partition, sent[tp.partition], committed[tp],
                         "reading up to there, flushed alone" if self.bound else "resuming after what was sent")
                if self.bound is None:
                    self.consumer.seek(tp, sent[tp.partition])
                    starts[tp.partition] = sent[tp.partition]
                bounds[tp] = sent[tp.partition]
        return starts, bounds, sent_journey_watermarks(headers, {tp.partition: offset for tp, offset in bounds.items()})

    async def restore_journeys(self, assigned, starts: dict[int, int]) -> None:
        """The open journeys of the partitions taken over, from their newest snapshot; where it
        covers less than the committed offset, read from where it stops (those records feed the
        journeys only)."""
        for partition, offset in (await self.journeys.restore(starts, self.committed_journeys)).items():
            tp = next(tp for tp in assigned if tp.partition == partition)
            self.consumer.seek(tp, offset)


async def sent_offsets(connection: dict[str, Any], partials_topic: str, input_partitions: set[int],
                       tail: int = 200, committed: dict[int, int] | None = None,
                       seconds: float = 30.0) -> dict[int, int]:
    """How far the flushes in the partials topic cover each input partition (``read_sent``)."""
    return sent_positions(await read_sent(connection, partials_topic, input_partitions, tail, committed, seconds),
                          input_partitions)


async def read_sent(connection: dict[str, Any], partials_topic: str, input_partitions: set[int],
                    tail: int = 200, committed: dict[int, int] | None = None,
                    seconds: float = 30.0) -> list[SentHeader]:
    """The headers of the partials messages that say how far the flushes cover each input
    partition (each message decoded once, foreign records left out).

    Each partials partition is read backwards from its end, ``tail`` records and then twice as
    many each time, until a message covering each of ``input_partitions`` no further than its
    ``committed`` offset is found there (every message before it was sent before that commit),
    or its start: with many workers writing, a killed worker's last flush lies deep in the tail.
    Without ``committed``, only the last ``tail`` records are read."""
    reader = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **connection)
    await reader.start()
    try:
        found = reader.partitions_for_topic(partials_topic) or set()
        tps = [TopicPartition(partials_topic, p) for p in found]
        if not tps:
            return []
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
        deadline = time.monotonic() + seconds
        headers: list[SentHeader] = []
        for tp in tps:
            end = ends[tp]
            if not end:
                continue
            # the fetch's high watermark is right even where end_offsets is not (embedded broker)
            reader.seek(tp, max(0, end - 1))
            await reader.getmany(tp, timeout_ms=500, max_records=1)
            end = max(end, reader.highwater(tp) or end)
            upper, size = end, tail
            while upper > 0 and time.monotonic() < deadline:
                lower = max(0, upper - size)
                chunk = sent_headers(await read_range(reader, tp, lower, upper, deadline))
                headers.extend(chunk)
                if committed is None or reached(chunk, input_partitions, committed):
                    break
                upper, size = lower, size * 2
        return headers
    finally:
        await stop_quietly(reader)


async def read_range(reader: AIOKafkaConsumer, tp: TopicPartition, lower: int, upper: int,
                     deadline: float) -> list[bytes]:
    reader.seek(tp, lower)
    values: list[bytes] = []
    while time.monotonic() < deadline:
        batches = await reader.getmany(tp, timeout_ms=200, max_records=5000)
        for records in batches.values():
            values.extend(record.value for record in records if record.offset < upper)
        position = await reader.position(tp)
        highwater = reader.highwater(tp)
        if position >= upper or (highwater is not None and position >= highwater):
            break
    return values


def reached(headers: list[SentHeader], input_partitions: set[int], committed: dict[int, int]) -> bool:
    """Some message among ``headers`` covers each input partition no further than its committed offset."""
    left = set(input_partitions)
    for header in headers:
        for partition, offset in header.to.items():
            if partition in left and offset <= committed.get(partition, 0):
                left.discard(partition)
    return not left


__all__ = ["IngestRebalance", "read_sent", "sent_offsets"]

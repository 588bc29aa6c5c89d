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
from blipwatch.schemas.partials import sent_positions
from blipwatch.stream_app.config import Settings

log = logging.getLogger("blipwatch")


class IngestRebalance(ConsumerRebalanceListener):
    """``consumer``: the ingest's consumer; ``watermark``: its local watermark (told which input
    partitions it now reads); ``flush``: sends what was read and commits it."""

    def __init__(self, consumer: AIOKafkaConsumer, watermark: LocalWatermark, flush: Callable[[], Awaitable[None]],
                 settings: Settings, journeys: Any = None):
        self.consumer = consumer
        self.watermark = watermark
        self.flush = flush
        self.settings = settings
        self.journeys = journeys   # JourneyState: its snapshots restored on assignment, dropped on revoke

    async def on_partitions_revoked(self, revoked) -> None:
        # hand over cleanly: what was read is sent and committed before another worker takes it
        if revoked:
            try:
                await self.flush()
            except Exception as exc:
                log.warning("ingest: flush on rebalance failed (%s); the next owner re-reads", exc)
            if self.journeys is not None:
                self.journeys.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned) -> None:
        # aiokafka lets getmany return records from the committed offsets while this callback is
        # still awaiting: paused (before the first await) nothing is read until skip_sent has seeked
        self.consumer.pause(*assigned)
        try:
            self.watermark.assign({tp.partition for tp in assigned}, int(time.time() * 1000))
            if assigned:
                starts = await self.skip_sent(assigned)
                if self.journeys is not None:
                    await self.restore_journeys(assigned, starts)
        finally:
            still = self.consumer.assignment()   # a rebalance meanwhile may have taken some away
            self.consumer.resume(*[tp for tp in assigned if tp in still])
        log.info("ingest: consuming %s partitions %s", self.settings.events_topic,
                 sorted(tp.partition for tp in assigned))

    async def skip_sent(self, assigned) -> dict[int, int]:
        """A previous owner killed between sending its partials and committing left events that
        are already counted: start after them, or their counts would be added twice. The
        partials' tail says how far each input partition was sent. Returns where each partition
        starts (input partition -> offset)."""
        try:
            sent = await sent_offsets(self.settings.aiokafka_kwargs(), self.settings.partials_topic,
                                      {tp.partition for tp in assigned})
        except Exception as exc:  # never block consumption on this: at-least-once still holds
            log.warning("ingest: cannot read how far the partials cover %s (%s); re-reading from the "
                        "committed offsets", self.settings.events_topic, exc)
            sent = {}
        starts = {}
        for tp in assigned:
            committed = await self.consumer.committed(tp)
            starts[tp.partition] = committed or 0
            if tp.partition in sent and sent[tp.partition] > (committed or 0):
                log.info("ingest: partition %d was sent up to offset %d but committed at %s: resuming "
                         "after what was sent", tp.partition, sent[tp.partition], committed)
                self.consumer.seek(tp, sent[tp.partition])
                starts[tp.partition] = sent[tp.partition]
        return starts

    async def restore_journeys(self, assigned, starts: dict[int, int]) -> None:
        """The open journeys of the partitions taken over, from their newest snapshot; where it
        covers less than the partials, read from where it stops (those records feed the journeys only)."""
        for partition, offset in (await self.journeys.restore(starts)).items():
            tp = next(tp for tp in assigned if tp.partition == partition)
            self.consumer.seek(tp, offset)


async def sent_offsets(connection: dict[str, Any], partials_topic: str, input_partitions: set[int],
                       tail: int = 200) -> dict[int, int]:
    """How far the newest flushes in the partials topic cover each input partition."""
    reader = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **connection)
    await reader.start()
    try:
        found = reader.partitions_for_topic(partials_topic) or set()
        tps = [TopicPartition(partials_topic, p) for p in found]
        if not tps:
            return {}
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
        pending = set()
        for tp in tps:
            if ends[tp]:
                reader.seek(tp, max(0, ends[tp] - tail))
                pending.add(tp)
        values = []
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            batches = await reader.getmany(*pending, timeout_ms=200, max_records=5000)
            for records in batches.values():
                values.extend(record.value for record in records)
            for tp in list(pending):
                highwater = reader.highwater(tp)  # from the fetch: right even where end_offsets is not
                if highwater is not None and await reader.position(tp) >= highwater:
                    pending.discard(tp)
        return sent_positions(values, input_partitions)
    finally:
        await stop_quietly(reader)


__all__ = ["IngestRebalance", "sent_offsets"]

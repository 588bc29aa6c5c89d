"""The ingest's rebalance listener with a real consumer group on the embedded broker: a partition
taken over resumes after what its previous owner sent (the partials' coverage), not at a commit
that lags it, and nothing is read from the commit meanwhile; a revocation flushes what was read."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from blipwatch.pipeline.windows import LocalWatermark
from blipwatch.schemas.partials import partial_messages
from blipwatch.stream_app.config import Settings
from blipwatch.stream_app.rebalance import IngestRebalance, sent_offsets

pytestmark = pytest.mark.integration


async def setup(bootstrap: str, stem: str, coverage: list[dict[int, int]]) -> Settings:
    """Topics ``events`` (2 partitions, 10 events each) and ``partials`` (2 partitions) holding
    one flush per ``coverage`` entry, as an ingest wrote them."""
    settings = dataclasses.replace(Settings.from_env({"BLIPWATCH_BROKER": f"kafka://{bootstrap}"}),
                                   events_topic=f"{stem}-events", partials_topic=f"{stem}-partials",
                                   app_id=stem, partitions=2)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.events_topic, 2, 1), NewTopic(settings.partials_topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1, enable_idempotence=False)
    await producer.start()
    try:
        for partition in (0, 1):
            for i in range(10):
                await producer.send_and_wait(settings.events_topic, orjson.dumps({"n": i}), partition=partition)
        for sent_to in coverage:
            for partition, value in partial_messages({}, {0: None, 1: None}, 2, 2, "ingest-old", sent_to=sent_to):
                await producer.send_and_wait(settings.partials_topic, value, partition=partition)
    finally:
        await producer.stop()
    return settings


def test_the_partials_tail_says_how_far_each_input_partition_was_sent(broker):
    async def scenario():
        settings = await setup(broker.bootstrap, "rb-" + uuid.uuid4().hex[:6], [{0: 3, 1: 4}, {0: 7}])
        return (await sent_offsets(settings.aiokafka_kwargs(), settings.partials_topic, {0, 1}),
                await sent_offsets(settings.aiokafka_kwargs(), settings.partials_topic, {1}),
                await sent_offsets(settings.aiokafka_kwargs(), "no-such-topic-" + uuid.uuid4().hex[:6], {0}))

    assert asyncio.run(scenario()) == ({0: 7, 1: 4}, {1: 4}, {})


def test_a_partition_taken_over_resumes_after_what_was_sent_not_at_the_older_commit(broker):
    async def scenario():
        settings = await setup(broker.bootstrap, "rb-" + uuid.uuid4().hex[:6], [{0: 6, 1: 2}])
        group = f"{settings.app_id}-ingest"
        committer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **settings.aiokafka_kwargs())
        await committer.start()
        events = [TopicPartition(settings.events_topic, p) for p in (0, 1)]
        committer.assign(events)
        await committer.commit({events[0]: OffsetAndMetadata(2, ""), events[1]: OffsetAndMetadata(5, "")})
        await committer.stop()

        consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                    **settings.aiokafka_kwargs())
        await consumer.start()
        watermark = LocalWatermark(60_000, 30_000, 10_000)
        async def flush() -> None:
            pass

        consumer.subscribe([settings.events_topic], listener=IngestRebalance(consumer, watermark, flush, settings))
        try:
            first: dict[int, int] = {}
            for _ in range(100):
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    first.setdefault(tp.partition, records[0].offset)
                if len(first) == 2:
                    break
            return first, set(watermark.assigned)
        finally:
            await consumer.stop()

    first, partitions = asyncio.run(scenario())
    assert first == {0: 6, 1: 5}   # 0: sent up to 6, committed at 2; 1: committed 5 is past what was sent
    assert partitions == {0, 1}


def test_a_revocation_flushes_what_was_read_and_a_failed_flush_is_logged_not_raised(broker, caplog):
    async def scenario():
        settings = await setup(broker.bootstrap, "rb-" + uuid.uuid4().hex[:6], [])
        flushes: list[str] = []

        async def flush() -> None:
            flushes.append("flushed")
            if len(flushes) > 1:
                raise ConnectionError("broker gone")

        consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.aiokafka_kwargs())
        listener = IngestRebalance(consumer, LocalWatermark(60_000, 30_000, 10_000), flush, settings)
        revoked = {TopicPartition(settings.events_topic, 0)}
        await listener.on_partitions_revoked(set())      # nothing held: nothing to send
        await listener.on_partitions_revoked(revoked)
        await listener.on_partitions_revoked(revoked)    # this flush fails: the next owner re-reads
        return flushes

    with caplog.at_level(logging.WARNING, logger="blipwatch"):
        assert asyncio.run(scenario()) == ["flushed", "flushed"]
    assert [r.getMessage() for r in caplog.records if "flush on rebalance" in r.getMessage()] == [
        "ingest: flush on rebalance failed (broker gone); the next owner re-reads"]

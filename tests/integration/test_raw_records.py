"""raw_records against the embedded broker: a consumer that asks for aiokafka's records gets them,
with the key, value and offset the ingest reads, and every other consumer in the same process still
gets ConsumerRecords — and both see the same records at the same offsets; the commit is right."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from blipwatch.kafka.raw_records import RAW_RECORDS, install

pytestmark = pytest.mark.integration


async def _read(bootstrap: str, topic: str, expected: int, raw: bool,
                group: str | None = None) -> tuple[list, int | None]:
    """The records read, and with a group, the offset committed for what was read."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=group, enable_auto_commit=False,
                                **({"value_deserializer": RAW_RECORDS} if raw else {}))
    await consumer.start()
    got: list = []
    committed = None
    try:
        async with asyncio.timeout(30):
            while len(got) < expected:
                # a fetch is handed out over several calls: iteration stops and resumes mid-batch
                for records in (await consumer.getmany(timeout_ms=500, max_records=300)).values():
                    got.extend(records)
        if group is not None:
            await consumer.commit()
            committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    return got, committed


def test_only_the_consumer_that_asks_gets_raw_records_and_they_read_the_same(broker):
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import ConsumerRecord

    topic = f"raw-records-{uuid.uuid4().hex[:8]}"
    sent = [(f"k{i % 7}".encode() if i % 5 else None, b'{"n":%d}' % i) for i in range(2_000)]

    async def run() -> tuple[tuple[list, int | None], tuple[list, int | None]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for key, value in sent:
                await producer.send(topic, value, key=key, partition=0)
            await producer.flush()
        finally:
            await producer.stop()
        install()
        return await asyncio.gather(
            _read(broker.bootstrap, topic, len(sent), raw=True, group=f"raw-{uuid.uuid4().hex[:6]}"),
            _read(broker.bootstrap, topic, len(sent), raw=False))

    (raw, committed), (standard, _) = asyncio.run(run())
    assert all(type(record) is ConsumerRecord for record in standard)
    assert not any(isinstance(record, ConsumerRecord) for record in raw)
    assert [(r.offset, r.key, r.value) for r in raw] == [(r.offset, r.key, r.value) for r in standard]
    assert [(r.key, r.value) for r in raw] == sent
    # positions come from aiokafka's batch, not the records: the group commits past the last one
    assert committed == len(sent)

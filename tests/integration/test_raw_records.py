"""raw_records against the embedded broker: a consumer that asks for aiokafka's records gets them,
with the key, value and offset the ingest reads, and every other consumer in the same process still
gets ConsumerRecords — and both see the same records at the same offsets, and resume alike."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from blipwatch.stream_app.raw_records import RAW_RECORDS, install

pytestmark = pytest.mark.integration


async def _read(bootstrap: str, topic: str, expected: int, raw: bool, group: str | None = None) -> list:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=group, enable_auto_commit=False,
                                **({"value_deserializer": RAW_RECORDS} if raw else {}))
    await consumer.start()
    got: list = []
    try:
        async with asyncio.timeout(30):
            while len(got) < expected:
                # a fetch is handed out over several calls: iteration stops and resumes mid-batch
                for records in (await consumer.getmany(timeout_ms=500, max_records=300)).values():
                    got.extend(records)
        if group is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_only_the_consumer_that_asks_gets_raw_records_and_they_read_the_same(broker):
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import ConsumerRecord

    topic = f"raw-records-{uuid.uuid4().hex[:8]}"
    sent = [(f"k{i % 7}".encode() if i % 5 else None, b'{"n":%d}' % i) for i in range(2_000)]

    async def run() -> tuple[list, list, list]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for key, value in sent:
                await producer.send(topic, value, key=key, partition=0)
            await producer.flush()
            install()
            group = f"raw-{uuid.uuid4().hex[:6]}"
            raw, standard = await asyncio.gather(_read(broker.bootstrap, topic, len(sent), raw=True, group=group),
                                                 _read(broker.bootstrap, topic, len(sent), raw=False))
            # the raw consumer committed what it read: a new member of its group resumes after it
            await producer.send_and_wait(topic, b'{"n":-1}', partition=0)
            resumed = await _read(broker.bootstrap, topic, 1, raw=True, group=group)
        finally:
            await producer.stop()
        return raw, standard, resumed

    raw, standard, resumed = asyncio.run(run())
    assert all(type(record) is ConsumerRecord for record in standard)
    assert not any(isinstance(record, ConsumerRecord) for record in raw)
    assert [(r.offset, r.key, r.value) for r in raw] == [(r.offset, r.key, r.value) for r in standard]
    assert [(r.key, r.value) for r in raw] == sent
    assert [(r.offset, r.value) for r in resumed] == [(len(sent), b'{"n":-1}')]

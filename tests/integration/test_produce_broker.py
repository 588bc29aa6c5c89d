"""batches.BatchSender against the embedded broker: a consumer reads what ``AIOKafkaProducer.send``
(the worker's path before perf-produce) would have written — same partitions, same records in the
same order — with batches up to the producer's 1,000,000-byte request limit and split below it."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from blipwatch.kafka.batches import BatchSender
from blipwatch.kafka.partitioner import KeyHashCache
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4


def records(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"payment_failure_rate|country=C{i % 331}".encode(),
             b'{"n":%d,"pad":"%s"}' % (i, b"x" * (200 + i % 700))) for i in range(n)]


async def _send_both_ways(bootstrap: str, stem: str, max_request_size: int, keyed: list, given: list) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{stem}-{name}", PARTITIONS, 1)
                                   for name in ("send", "batch", "send-state", "batch-state")])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1, partitioner=KeyHashCache(),
                                max_request_size=max_request_size, enable_idempotence=False)
    await producer.start()
    try:
        futures = [await producer.send(f"{stem}-send", value, key=key) for key, value in keyed]
        futures += [await producer.send(f"{stem}-send-state", value, key=key, partition=partition)
                    for partition, key, value in given]
        await asyncio.gather(*futures)
        sender = BatchSender(lambda: producer)
        batches = await sender.send(f"{stem}-batch", keyed)
        batches += await sender.send_to(f"{stem}-batch-state", given)
        await asyncio.gather(*batches)
        return len(batches)
    finally:
        await producer.stop()


def _by_partition(broker, topic: str, expected: int) -> dict[int, list]:
    out: dict[int, list] = {}
    for record in read_topic(broker, topic, expected=expected, timeout=60):
        out.setdefault(record.partition, []).append((record.key, record.value, list(record.headers or [])))
    return out


@pytest.mark.parametrize("max_request_size", [1_000_000, 16_384])
def test_a_consumer_reads_what_send_would_have_written(broker, max_request_size):
    stem = "produce-" + uuid.uuid4().hex[:8]
    keyed = records(7_000)   # ~4.6 MB, ~1.15 MB a partition: one batch near the 1,000,000-byte limit each, or many small
    given = [(i % PARTITIONS, b"series-%d" % i, b"state" * (50 + i % 300)) for i in range(1_000)]
    batches = asyncio.run(_send_both_ways(broker.bootstrap, stem, max_request_size, keyed, given))
    if max_request_size == 1_000_000:   # the state: ~0.5 MB, one batch a partition
        assert 2 * PARTITIONS <= batches - PARTITIONS <= 2 * PARTITIONS
    else:
        assert batches > 100
    sent = _by_partition(broker, f"{stem}-send", len(keyed))
    assert len(sent) == PARTITIONS
    assert _by_partition(broker, f"{stem}-batch", len(keyed)) == sent
    assert _by_partition(broker, f"{stem}-batch-state", len(given)) == _by_partition(broker, f"{stem}-send-state", len(given))

"""batches.BatchSender: the records ``AIOKafkaProducer.send`` would have sent, as a few batches.

Offline: a stand-in for the producer records what ``send_batch`` is handed; the batches are read
back with aiokafka's own record-batch reader. tests/integration/test_produce_broker.py sends the
same records both ways through the embedded broker and compares what a consumer reads.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatch
from faust.exceptions import ProducerSendError

from blipwatch.kafka.batches import BatchSender, build_batches
from blipwatch.kafka.partitioner import KeyHashCache


def read(builder) -> list[tuple[bytes | None, bytes | None, list]]:
    return [(r.key, r.value, r.headers) for r in DefaultRecordBatch(bytes(builder._build()))]  # noqa: SLF001


class _Cluster:
    def __init__(self, partitions: int, available: set[int] | None):
        self.partitions, self.available = partitions, available

    def available_partitions_for_topic(self, topic):
        return set(range(self.partitions)) if self.available is None else set(self.available)


class _Producer:
    """What BatchSender uses of AIOKafkaProducer."""

    def __init__(self, partitions: int = 4, partitioner=None, max_request_size: int = 1_000_000,
                 available: set[int] | None = None, refuse_after: int | None = None):
        self.client = type("Client", (), {"cluster": _Cluster(partitions, available)})()
        self._partitioner = partitioner or KeyHashCache()
        self._max_request_size = max_request_size
        self._message_accumulator = type("Accumulator", (), {"_compression_type": 0})()
        self.submitted: list[tuple[str, int, list]] = []
        self.refuse_after = refuse_after

    async def partitions_for(self, topic):
        return set(range(self.client.cluster.partitions))

    async def send_batch(self, builder, topic, *, partition):
        assert builder.closed(), "closed before submission: send() must not append to it"
        if self.refuse_after is not None and len(self.submitted) >= self.refuse_after:
            raise KafkaTimeoutError()
        self.submitted.append((topic, partition, read(builder)))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def points(n: int, size: int = 300) -> list[tuple[bytes, bytes]]:
    return [(f"cart_abandonment_rate|country=C{i % 97}".encode(),
             (b'{"i":%d,"pad":"' % i).ljust(size, b"x") + b'"}') for i in range(n)]


def test_each_record_goes_to_the_partition_aiokafkas_default_partitioner_picks():
    default = DefaultPartitioner()
    for partitions in (1, 3, 4, 12):
        for partitioner in (KeyHashCache(), DefaultPartitioner()):
            producer = _Producer(partitions, partitioner)
            records = points(500)
            futures = asyncio.run(BatchSender(lambda: producer).send("points", records))
            assert len(futures) == len(producer.submitted) <= partitions
            got = {}
            for topic, partition, batch in producer.submitted:
                assert topic == "points"
                for key, value, headers in batch:
                    assert headers == []
                    got.setdefault(partition, []).append((key, value))
            everything = list(range(partitions))
            expected = {}
            for key, value in records:
                expected.setdefault(default(key, everything, everything), []).append((key, value))
            assert got == expected, "same partition, same bytes, same order within each partition"


def test_batches_split_at_the_request_size_limit_keeping_each_partitions_order():
    limit = 4096
    producer = _Producer(partitions=3, max_request_size=limit)
    records = points(300, size=500)
    asyncio.run(BatchSender(lambda: producer).send("points", records))
    per_partition: dict[int, list] = {}
    for _, partition, batch in producer.submitted:
        per_partition.setdefault(partition, []).append(batch)
    assert all(len(batches) > 5 for batches in per_partition.values())
    everything = [0, 1, 2]
    for partition, batches in per_partition.items():
        flat = [(key, value) for batch in batches for key, value, _ in batch]
        assert flat == [(k, v) for k, v in records if DefaultPartitioner()(k, everything, everything) == partition]
    batches = build_batches(((0, key, value) for key, value in records), limit)
    assert all(builder.size() <= limit for _, builder in batches)
    assert all(builder.size() + 560 > limit for _, builder in batches[:-1]), "each full batch was filled"
    assert sum(builder.record_count() for _, builder in batches) == len(records)


def test_batches_are_submitted_in_the_order_they_were_opened():
    records = [(p, b"k%d" % i, b"v" * 900) for i, p in enumerate([0, 1, 0, 0, 2, 1, 0, 0, 0, 2])]
    batches = build_batches(records, 2048)
    assert [p for p, _ in batches] == [0, 1, 0, 2, 0]
    assert [[k for k, _, _ in read(b)] for _, b in batches] == [
        [b"k0", b"k2"], [b"k1", b"k5"], [b"k3", b"k6"], [b"k4", b"k9"], [b"k7", b"k8"]]


def test_given_partitions_are_kept_and_a_record_larger_than_the_limit_is_refused_as_send_refuses_it():
    producer = _Producer(partitions=4, max_request_size=2000)
    sender = BatchSender(lambda: producer)
    asyncio.run(sender.send_to("state", [(3, b"a", b"1"), (1, b"b", b"2"), (3, b"c", b"3")]))
    assert [(p, [k for k, _, _ in batch]) for _, p, batch in producer.submitted] == [(3, [b"a", b"c"]), (1, [b"b"])]
    with pytest.raises(ProducerSendError) as raised:
        asyncio.run(sender.send_to("state", [(0, b"big", b"x" * 2000)]))
    assert isinstance(raised.value.__cause__, MessageSizeTooLargeError)
    assert asyncio.run(sender.send("points", [])) == []


def test_a_refused_submission_raises_as_fausts_send_does_and_a_failed_delivery_fails_its_future():
    producer = _Producer(partitions=4, max_request_size=1000, refuse_after=1)
    with pytest.raises(ProducerSendError):
        asyncio.run(BatchSender(lambda: producer).send("points", points(20)))

    class Failing(_Producer):
        async def send_batch(self, builder, topic, *, partition):
            future = asyncio.get_running_loop().create_future()
            future.set_exception(KafkaTimeoutError())
            return future

    async def scenario():
        futures = await BatchSender(lambda: Failing()).send("points", points(3))
        with pytest.raises(KafkaTimeoutError):
            await asyncio.gather(*futures)

    asyncio.run(scenario())

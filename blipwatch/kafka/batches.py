"""Records to Kafka as a few record batches, not one producer call each.

The aggregate sends a point per closed window, an alert now and then, and a detector-state record
per series it closed. Through ``AIOKafkaProducer.send`` (Faust's ``app.producer.send``) each record
paid a coroutine chain, a partition lookup that builds two lists, a size estimate, an append to the
accumulator's 16 KiB batch, a future of its own (resolved with a ``RecordMetadata`` when the batch
is acknowledged, then gathered), and a wait for a broker round trip whenever a partition's 16 KiB
batch was full while the one before it was in flight. ``BatchSender`` builds the records of one
call into aiokafka ``BatchBuilder``s itself, one per partition, and hands each to
``AIOKafkaProducer.send_batch``: one future per batch.

What stays as it was:

- the partition: the producer's own partitioner (``producer_partitioner``, ``partitioner.KeyHashCache``:
  murmur2 of the key, as aiokafka's and the Java client's default) over the same partition list
  ``send`` would use, or the partition given;
- the bytes: key, value, no headers; the timestamp is the producer's clock when the batch is
  built (``send`` stamped each record when it was queued: the same moment, give or take the time
  to publish the records of one call, and before the record could leave either way);
- the order within a partition: records are appended in call order and a partition's batches are
  submitted in the order they were opened (``send_batch`` waits until the partition's previous
  batch has left the accumulator); batches of one call are submitted before the call returns, so
  records of an earlier call never follow those of a later one;
- the size limit: a batch takes records up to the producer's ``max_request_size`` (Faust's
  ``producer_max_request_size``, 1,000,000 bytes by default), then a new one is opened; a single
  record larger than that raises ``MessageSizeTooLargeError``, as ``send`` does;
- errors: a refused submission raises ``ProducerSendError`` (Faust wraps ``KafkaError`` so in
  ``send``), a failed delivery fails the returned future of its batch, so whoever awaits the
  futures sees it as before.

aiokafka internals read here (tests/unit/test_kafka_compat.py checks each): the producer's
``_partitioner``, ``_max_request_size`` and ``_message_accumulator._compression_type``; and, on the
hot path of ``build_batches``, ``BatchBuilder._builder.append(offset, timestamp, key, value,
headers)`` at ``BatchBuilder._relative_offset``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable

from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.exceptions import ProducerSendError

estimate_size = DefaultRecordBatchBuilder.estimate_size_in_bytes
_NO_HEADERS: list = []   # BatchBuilder.append's default (read, never written)


class BatchSender:
    """``send`` / ``send_to``: records of one topic in as few batches as the size limit allows."""

    def __init__(self, producer: Callable[[], Any]):
        #: the running ``AIOKafkaProducer`` (looked up per call: Faust may replace it)
        self.producer = producer

    async def send(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> list[asyncio.Future]:
        """Keyed records, each to the partition the producer's partitioner picks for its key.
        Returns the delivery futures (one per batch)."""
        producer = self.producer()
        try:
            # waits for the topic's metadata, as AIOKafkaProducer.send does, then the same lists it passes
            all_partitions = list(await producer.partitions_for(topic))
        except KafkaError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        available = list(producer.client.cluster.available_partitions_for_topic(topic))
        partitioner = producer._partitioner  # noqa: SLF001  (the one send() uses)
        return await self._submit(producer, topic, (
            (partitioner(key, all_partitions, available), key, value) for key, value in records))

    async def send_to(self, topic: str, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> list[asyncio.Future]:
        """Records with their partition given: ``(partition, key, value)``."""
        producer = self.producer()
        try:
            await producer.partitions_for(topic)
        except KafkaError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        return await self._submit(producer, topic, records)

    async def _submit(self, producer, topic: str, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> list[asyncio.Future]:
        batches = build_batches(records, producer._max_request_size,  # noqa: SLF001
                                producer._message_accumulator._compression_type)  # noqa: SLF001
        futures = []
        try:
            for partition, builder in batches:
                futures.append(await producer.send_batch(builder, topic, partition=partition))
        except KafkaError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        return futures


async def track_topics(producer, topics: Iterable[str]) -> None:
    """Make the producer's metadata cover ``topics`` for good, before anything is queued for them.

    aiokafka's client asks for the metadata of *every* topic while its own topic set is empty, and
    only for that set once a send has added a topic the metadata did not know yet (its
    ``_wait_on_metadata``). That first addition drops every other topic from the producer's
    metadata: batches already queued for them have no known leader, so the sender keeps them
    (and refreshes metadata in a loop) until a send to their topic adds it back. A worker whose
    ingest was waiting for its queued partials to leave (``add_message`` behind a full batch) then
    waited until its consumer group threw it out (``max_poll_interval``, 5 minutes): seen with the
    points topic created after the worker started (``bench --live-seconds 0``), when the first
    points were sent while the ingest waited. Adding every topic the worker writes at start keeps
    the set non-empty and covering them all."""
    client = producer.client
    for topic in topics:
        client.add_topic(topic)
    await client.force_metadata_update()


def build_batches(records: Iterable[tuple[int, bytes | None, bytes | None]], max_bytes: int,
                  compression_type: int = 0) -> list[tuple[int, BatchBuilder]]:
    """``(partition, builder)`` in the order the builders were opened, each closed, records in call
    order; a builder that refuses a record (``append`` returns None: full) is followed by a new one."""
    open_: dict[int, BatchBuilder] = {}
    batches: list[tuple[int, BatchBuilder]] = []
    for partition, key, value in records:
        builder = open_.get(partition)
        if builder is not None:
            # BatchBuilder.append(timestamp=None, key=key, value=value), written out for an open
            # builder without serializers (ours): its C record builder's append at the next
            # relative offset; None means full, and the wrapper then closes the builder
            if builder._builder.append(builder._relative_offset, None, key, value, _NO_HEADERS) is not None:  # noqa: SLF001
                builder._relative_offset += 1  # noqa: SLF001
                continue
            builder.close()
        # a fresh builder takes any first record, so check what AIOKafkaProducer.send checks
        size = estimate_size(key, value, [])
        if size > max_bytes:
            error = MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized which is larger than the maximum "
                "request size you have configured with the max_request_size configuration")
            raise ProducerSendError(f"Error while sending: {error!r}") from error
        builder = open_[partition] = BatchBuilder(max_bytes, compression_type)
        batches.append((partition, builder))
        builder.append(timestamp=None, key=key, value=value)
    for _, builder in batches:
        builder.close()   # nothing else may append to it once submitted (send() would, to an open one)
    return batches


__all__ = ["BatchSender", "build_batches", "track_topics"]

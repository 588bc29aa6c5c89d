"""The bench's own writes and reads of topics: the events loaded before anything is timed, the
topics a run needs, and the size of the detector state a worker left in its changelog."""

from __future__ import annotations

import asyncio
import time

from blipwatch.stream_app.embedded_broker import EmbeddedBroker
from blipwatch.tools.bench import PARTITIONS, Progress, quiet


async def create_topics(broker: EmbeddedBroker, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in topics])
    finally:
        await admin.close()


async def load_events(broker: EmbeddedBroker, topic: str, messages: list[tuple[bytes, bytes, int]],
                      progress: Progress = quiet) -> None:
    """Create ``topic`` and write (key, value, partition) messages to it in large batches."""
    from aiokafka import AIOKafkaProducer

    await create_topics(broker, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value, partition in messages:
            by_partition.setdefault(partition, []).append((key, value))
        sent = 0
        pending = []
        for partition, records in by_partition.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                sent += 1
                if sent % 50_000 == 0:
                    await asyncio.gather(*pending)
                    pending.clear()
                    progress(f"loading {sent:,}/{len(messages):,} events")
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
        progress(f"loaded {len(messages):,} events")
    finally:
        await producer.stop()


def latest_sizes(broker: EmbeddedBroker, topic: str) -> dict[bytes, int]:
    """Bytes of the latest record per key in a (compacted) topic, read to the fetch high watermark
    (which the embedded broker reports right, where its end offset may point inside the last batch)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_bytes=32 * 1024 * 1024)
    sizes: dict[bytes, int] = {}
    try:
        # asks the broker when the topic is not in the fresh client's metadata yet
        assigned = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        if not assigned:
            return sizes
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 60
        empty_polls = 0
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=300, max_records=50_000)
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        sizes.pop(record.key, None)
                    else:
                        sizes[record.key] = len(record.value)
            done = all(consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
                       for tp in assigned)
            empty_polls = 0 if batches else empty_polls + 1
            if done or empty_polls > 10:
                break
        return sizes
    finally:
        consumer.close()

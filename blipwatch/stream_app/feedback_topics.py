"""The feedback and calendar topics on Kafka: create them compacted, write one record, read to the end.

Used by ``blipwatch feedback`` and ``blipwatch calendar`` (kafka-python, synchronous: a command
writes or lists and exits). Both topics have one partition: they are small, every worker reads
them whole, and one partition keeps one order of verdicts. They are created compacted before the
first read or write, because an auto-created topic would not be (replication 1, like the worker's
own topics: on a cluster, create them beforehand with yours and ``cleanup.policy=compact``).

"The end" of a topic is the high watermark of a fetch response, not ListOffsets: the embedded
broker's ListOffsets is too low after a batched produce (its end offset points inside the last
batch), and the fetch watermark is right on every broker.
"""

from __future__ import annotations

import time

from blipwatch.stream_app.config import Settings



class TopicError(RuntimeError):
    """Kafka could not be reached or refused; the message is one line for the user."""


def _unreachable(settings: Settings) -> TopicError:
    return TopicError(f"cannot reach Kafka at {settings.broker}: start it (e.g. `blipwatch broker`) "
                      "or set BLIPWATCH_BROKER")


def ensure_compacted(settings: Settings, topic: str, timeout: float = 15.0) -> bool:
    """Create ``topic`` (one partition, ``cleanup.policy=compact``) unless it exists; True if created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(**settings.kafka_python_kwargs(), bootstrap_timeout_ms=int(timeout * 1000),
                                 client_id="blipwatch-cli")
    except KafkaError:
        raise _unreachable(settings) from None
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
        except TopicAlreadyExistsError:   # another client was quicker
            return False
        return True
    except KafkaError as exc:
        raise TopicError(f"cannot create the topic {topic} on {settings.broker}: {exc}") from None
    finally:
        admin.close()


def publish(settings: Settings, topic: str, records: list[tuple[bytes, bytes | None]], timeout: float = 15.0) -> None:
    """Write ``(key, value)`` records (a None value is a tombstone) and wait until Kafka has them all."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    ensure_compacted(settings, topic, timeout)
    try:
        producer = KafkaProducer(**settings.kafka_python_kwargs(), acks="all", enable_idempotence=False,
                                 bootstrap_timeout_ms=int(timeout * 1000), linger_ms=5,
                                 max_block_ms=int(timeout * 1000), client_id="blipwatch-cli")
    except KafkaError:
        raise _unreachable(settings) from None
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush(timeout)
        for future in futures:
            future.get(timeout=max(0.1, timeout))
    except KafkaError as exc:
        raise TopicError(f"could not write to {topic} on {settings.broker}: {exc}") from None
    finally:
        producer.close(5)


def read_latest(settings: Settings, topic: str, timeout: float = 15.0) -> dict[bytes, bytes]:
    """The latest value per key, in the order keys were last written, read from the start of
    ``topic`` up to its end; tombstoned keys are left out. No consumer group, nothing committed."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    ensure_compacted(settings, topic, timeout)
    try:
        consumer = KafkaConsumer(**settings.kafka_python_kwargs(), group_id=None, enable_auto_commit=False,
                                 bootstrap_timeout_ms=int(timeout * 1000), client_id="blipwatch-cli")
    except KafkaError:
        raise _unreachable(settings) from None
    latest: dict[bytes, bytes] = {}
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.1)   # just created: its metadata may take a moment to appear
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TopicError(f"the topic {topic} on {settings.broker} has no partitions")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        # ListOffsets may be too low (see the module docstring) but never says "empty" for a topic
        # with records: a partition at 0 is done, the others are read up to the fetch watermark
        pending = {tp for tp, end in consumer.end_offsets(assigned).items() if end}
        consumer.seek_to_beginning()
        while pending:
            if time.monotonic() > deadline:
                raise TopicError(f"reading {topic} on {settings.broker} did not reach its end within {timeout:g} s")
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    latest.pop(record.key, None)   # re-inserted at the end: the order of last writes
                    if record.value is not None:
                        latest[record.key] = record.value
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and consumer.position(tp) >= highwater:
                    pending.discard(tp)
    except KafkaError as exc:
        raise TopicError(f"could not read {topic} on {settings.broker}: {exc}") from None
    finally:
        consumer.close()
    return latest


def read_documents(settings: Settings, topic: str, parse, timeout: float = 15.0) -> tuple[list, int]:
    """The latest document per key of ``topic``, each read by ``parse`` (``Feedback.from_json``,
    ``CalendarEntry.from_json``), and how many records were skipped: not a valid document, or one
    whose own key is not the record's (written by hand, or by something else)."""
    from blipwatch.schemas.outputs import InvalidDocument

    documents, skipped = [], 0
    for key, value in read_latest(settings, topic, timeout=timeout).items():
        try:
            document = parse(value)
        except InvalidDocument:
            skipped += 1
            continue
        if document.key != key:
            skipped += 1
            continue
        documents.append(document)
    return documents, skipped

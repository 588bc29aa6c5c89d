"""Every private internal of aiokafka and Faust that blipwatch.kafka touches, checked on the installed
versions: each test names the internal and the module that relies on it, so an upgrade that moves
one fails here, by name, before a worker misbehaves. (What each touch achieves end to end is tested
against the embedded broker: test_raw_records, test_produce_broker, test_pipeline_stream.)"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import MutableMapping

import aiokafka
import faust
import pytest
from aiokafka.consumer import fetcher
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from faust.transport import consumer as faust_consumer
from faust.types import TP
from faust.transport.drivers import aiokafka as faust_aiokafka

from blipwatch.kafka import batches, faust_compat, raw_records, tansu_compat


def require(condition: bool, internal: str, user: str) -> None:
    """Fail with one line that says which internal moved and what depends on it."""
    if not condition:
        pytest.fail(f"{internal} is not as blipwatch expects on aiokafka {aiokafka.__version__} / faust "
                    f"{faust.__version__}: recheck {user}", pytrace=False)


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def source(thing) -> str:
    return inspect.getsource(thing)


# --- aiokafka producer: kafka/batches.py -----------------------------------------------------

def test_the_producer_keeps_its_partitioner_request_size_and_compression_where_batches_reads_them():
    async def made() -> aiokafka.AIOKafkaProducer:
        return aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_request_size=12345,
                                         compression_type="gzip", partitioner=len)

    producer = asyncio.run(made())
    user = "blipwatch/kafka/batches.py (BatchSender)"
    require(getattr(producer, "_partitioner", None) is len, "AIOKafkaProducer._partitioner", user)
    require(getattr(producer, "_max_request_size", None) == 12345, "AIOKafkaProducer._max_request_size", user)
    accumulator = getattr(producer, "_message_accumulator", None)
    require(accumulator is not None and getattr(accumulator, "_compression_type", None) == 1,
            "AIOKafkaProducer._message_accumulator._compression_type (gzip = 1)", user)
    require("send_batch" in dir(producer) and parameters(producer.send_batch)[:2] == ["batch", "topic"],
            "AIOKafkaProducer.send_batch(batch, topic, *, partition)", user)


def test_a_batch_builders_record_builder_appends_at_its_relative_offset_as_build_batches_does():
    user = "blipwatch/kafka/batches.py (build_batches, its hot path)"
    builder = BatchBuilder(1_000_000, 0)
    record_builder = getattr(builder, "_builder", None)
    require(record_builder is not None and hasattr(builder, "_relative_offset"),
            "BatchBuilder._builder / BatchBuilder._relative_offset", user)
    require(parameters(record_builder.append)[:5] == ["offset", "timestamp", "key", "value", "headers"],
            "DefaultRecordBatchBuilder.append(offset, timestamp, key, value, headers)", user)
    builder.append(timestamp=None, key=b"k0", value=b"v0")
    for n in (1, 2):   # what build_batches writes out for an open builder
        assert builder._builder.append(builder._relative_offset, None, b"k%d" % n, b"v%d" % n, []) is not None
        builder._relative_offset += 1
    require(builder.record_count() == 3, "BatchBuilder._relative_offset (its record count)", user)
    batch = DefaultRecordBatch(bytes(builder._build()))   # the bytes the producer's sender sends
    records = [(record.offset, record.key, record.value) for record in batch]
    require(records == [(0, b"k0", b"v0"), (1, b"k1", b"v1"), (2, b"k2", b"v2")],
            "BatchBuilder._relative_offset (the next record's offset in the batch)", user)
    require(batches.estimate_size(b"k", b"v", []) > 2, "DefaultRecordBatchBuilder.estimate_size_in_bytes", user)


# --- aiokafka fetcher: kafka/raw_records.py --------------------------------------------------

def test_the_fetcher_builds_partition_records_by_the_module_name_raw_records_replaces():
    user = "blipwatch/kafka/raw_records.py"
    require(inspect.isclass(raw_records._STANDARD) and raw_records._STANDARD.__name__ == "PartitionRecords",
            "aiokafka.consumer.fetcher.PartitionRecords", user)
    require("PartitionRecords(" in source(fetcher.Fetcher),
            "aiokafka.consumer.fetcher.Fetcher building PartitionRecords by its module-level name", user)
    require(parameters(raw_records._STANDARD.__init__)[1:] == parameters(raw_records._partition_records),
            "PartitionRecords(tp, records, aborted_transactions, fetch_offset, key_deserializer, "
            "value_deserializer, check_crcs, isolation_level)", user)
    require(parameters(raw_records._STANDARD._consumer_record) == ["self", "tp", "record"],
            "PartitionRecords._consumer_record(tp, record)", user)
    require("self._records_iterator" in source(raw_records._STANDARD.__init__),
            "PartitionRecords._records_iterator (the generator __iter__ hands out)", user)


# --- Faust's aiokafka driver: kafka/tansu_compat.py and kafka/faust_compat.py ----------------

def test_fausts_consumer_thread_has_the_end_offset_lookup_and_consumer_factory_tansu_compat_wraps():
    user = "blipwatch/kafka/tansu_compat.py"
    thread = faust_aiokafka.AIOKafkaConsumerThread
    require(inspect.iscoroutinefunction(getattr(thread, "_highwaters", None))
            and parameters(thread._highwaters) == ["self", "partitions"],
            "faust AIOKafkaConsumerThread._highwaters(partitions) (async)", user)
    require(parameters(getattr(thread, "_create_worker_consumer", None) or (lambda: 0)) == ["self", "transport"],
            "faust AIOKafkaConsumerThread._create_worker_consumer(transport)", user)
    require("self._fetch_max_wait_ms" in source(aiokafka.AIOKafkaConsumer.__init__)
            and "self._fetch_max_wait_ms" in source(aiokafka.AIOKafkaConsumer.start),
            "AIOKafkaConsumer._fetch_max_wait_ms, set in __init__ and read by start()", user)
    require(tansu_compat.FETCH_MAX_WAIT_MS < 1500, "tansu_compat.FETCH_MAX_WAIT_MS", user)


def test_faust_keeps_its_aiokafka_producer_behind_ensure_producer():
    user = "blipwatch/kafka/faust_compat.py (aiokafka_producer)"
    producer_class = faust_aiokafka.Producer
    require(callable(getattr(producer_class, "_ensure_producer", None)) and "self._producer" in source(
        producer_class._ensure_producer), "faust aiokafka Producer._ensure_producer() -> self._producer", user)
    require("aiokafka.AIOKafkaProducer" in str(inspect.signature(producer_class._ensure_producer).return_annotation)
            or "AIOKafkaProducer" in source(producer_class._ensure_producer),
            "faust aiokafka Producer._ensure_producer returning an AIOKafkaProducer", user)


def test_faust_awaits_consumer_wait_empty_between_its_fetcher_and_its_tables_on_stop():
    user = "blipwatch/kafka/faust_compat.py (before_tables_stop)"
    require(parameters(getattr(faust.App, "_consumer_wait_empty", None) or (lambda: 0)) == ["self", "consumer", "logger"],
            "faust App._consumer_wait_empty(consumer, logger)", user)
    text = source(faust.App)
    call = text.find("await self._consumer_wait_empty(consumer, self.log)")
    require(0 <= text.find("await self._stop_fetcher()") < call < text.find("await self.tables.stop()", call),
            "faust App stopping: _stop_fetcher, then _consumer_wait_empty, then tables.stop", user)

    async def made() -> None:
        app = faust.App("compat-check", broker="kafka://127.0.0.1:9")

        async def finish(consumer, logger) -> None:
            seen.append((consumer, logger))

        seen: list = []
        faust_compat.before_tables_stop(app, finish)
        await app._consumer_wait_empty("consumer", "logger")
        require(seen == [("consumer", "logger")], "faust App._consumer_wait_empty set on the instance", user)

    asyncio.run(made())


def test_fausts_consumer_keeps_committed_offsets_and_gaps_per_partition():
    user = "blipwatch/kafka/faust_compat.py (committed_offset, forget_gaps)"

    async def made():
        return faust.App("compat-check", broker="kafka://127.0.0.1:9").consumer

    consumer = asyncio.run(made())
    tp = TP("partials", 0)
    committed = getattr(consumer, "_committed_offset", None)
    require(isinstance(committed, MutableMapping), "faust Consumer._committed_offset (TP -> offset)", user)
    require("self._committed_offset.update(committed_offsets)" in source(faust_consumer.Consumer),
            "faust Consumer._committed_offset updated with the committed offsets it seeks to", user)
    committed[tp] = 42
    require(faust_compat.committed_offset(consumer, tp) == 42, "faust Consumer._committed_offset", user)
    require(faust_compat.committed_offset(consumer, TP("partials", 1)) is None,
            "faust Consumer._committed_offset", user)
    gaps = getattr(consumer, "_gap", None)
    require(isinstance(gaps, MutableMapping) and "self._gap[tp]" in source(faust_consumer.Consumer._add_gap),
            "faust Consumer._gap (TP -> IntervalTree of offsets taken as skipped)", user)
    asyncio.run(consumer._add_gap(tp, 43, 45))
    require(len(gaps[tp]) > 0, "faust Consumer._add_gap recording into Consumer._gap", user)
    faust_compat.forget_gaps(consumer, tp)
    require(len(gaps[tp]) == 0, "faust Consumer._gap[tp].clear()", user)

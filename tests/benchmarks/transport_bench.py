"""aiokafka against librdkafka (``confluent-kafka``) for the ingest stage, same data, same run.

    .venv/bin/pip install -e '.[bench]'      # confluent-kafka is not a runtime dependency
    .venv/bin/python tests/benchmarks/transport_bench.py [--events 300000] [--rounds 3]

Why compare: Faust offers a librdkafka transport besides its default aiokafka one. Faust's
own consumers carry little here (the partials topic: a few messages a second); the per-event
consumer is the ingest stage's own batched one, so that is what is compared. In one process, on
the embedded broker, over the events of ``blipwatch bench --series 1000`` (the demo scenario,
~1,000 series), each round runs:

- ``aiokafka bare``: ``getmany`` + ``orjson.loads`` (the bench's ceiling);
- ``confluent bare``: ``Consumer.consume(10000)`` + ``orjson.loads``;
- ``aiokafka ingest``: the worker's ingest stage (``ingest_stage_bench.ingest``: ``getmany`` ->
  ``IngestBatch.add_records`` -> partials sent and acknowledged every 0.5 s);
- ``confluent ingest``: the same on a confluent consumer and producer. Its records are confluent
  ``Message`` objects, whose fields are methods, not attributes: the loop is the worker's
  ``add_records`` with those three reads made calls (derived from its source at run time, so it
  stays the worker's loop), and messages grouped by partition as ``getmany`` groups them.

librdkafka's consumer is tuned to keep fetching while Python works (``fetch.queue.backoff.ms`` 1,
``queued.min.messages`` 1M; with its defaults it pauses a partition's fetches for 1 s whenever
100k messages wait, which made it 2.5x slower than aiokafka here), and to the same fetch sizes and
100 ms wait as the worker. Its first message comes ~0.5 s after the start (connect, offsets,
first fetch), so its rows also give the time from the first message. CPU is the process's,
librdkafka's threads included. Best of --rounds per row.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest_stage_bench  # noqa: E402  (the aiokafka rows: the stage bench's own code)

PARTITIONS = ingest_stage_bench.PARTITIONS
FLUSH_SECONDS = ingest_stage_bench.FLUSH_SECONDS


def _confluent_add_records():
    """``IngestBatch.add_records`` for confluent ``Message``s (``value()``, ``key()``, ``offset()``)."""
    from blipwatch.stream_app import ingest

    source = textwrap.dedent(inspect.getsource(ingest.IngestBatch.add_records))
    for name in ("value", "key", "offset"):
        source = source.replace(f"record.{name}", f"record.{name}()")
    namespace = dict(vars(ingest))
    exec(source, namespace)  # noqa: S102  (our own source, read back)
    return namespace["add_records"]


def _confluent_consumer(bootstrap: str, topic: str):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"transport-bench-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": False,
        "fetch.wait.max.ms": 100, "fetch.max.bytes": 32 * 1024 * 1024,
        "max.partition.fetch.bytes": 4 * 1024 * 1024, "queued.max.messages.kbytes": 256 * 1024,
        "fetch.queue.backoff.ms": 1, "queued.min.messages": 1_000_000})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    return consumer


def confluent_bare(bootstrap: str, topic: str, expected: int) -> tuple[float, float, float]:
    import orjson

    consumer = _confluent_consumer(bootstrap, topic)
    try:
        loads = orjson.loads
        seen = 0
        wall, cpu = time.perf_counter(), time.process_time()
        first = None
        while seen < expected:
            messages = consumer.consume(num_messages=10_000, timeout=0.2)
            if messages and first is None:
                first = time.perf_counter()
            for message in messages:
                loads(message.value())
            seen += len(messages)
        end = time.perf_counter()
        return end - wall, time.process_time() - cpu, end - first
    finally:
        consumer.close()


def confluent_ingest(bootstrap: str, topic: str, partials_topic: str, expected: int,
                     config: dict) -> tuple[float, float, float]:
    from confluent_kafka import Producer

    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.schemas.partials import partial_messages
    from blipwatch.stream_app.ingest import IngestBatch

    batch = IngestBatch(Catalogue.from_dict(config), 65536)
    add_records = _confluent_add_records()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    consumer = _confluent_consumer(bootstrap, topic)

    def flush() -> None:
        partials = batch.aggregate.drain()
        batch.drain_dead_letters()
        for partition, value in partial_messages(partials, {}, PARTITIONS, PARTITIONS, "bench"):
            producer.produce(partials_topic, value, partition=partition)
        if producer.flush(30):
            raise RuntimeError("partials not acknowledged within 30 s")
        batch.aggregate.drain_dropped()
        batch.counts.clear()

    try:
        seen = 0
        wall, cpu = time.perf_counter(), time.process_time()
        first = None
        last_flush = time.monotonic()
        prefixes = {p: f"{topic}/{p}/" for p in range(PARTITIONS)}
        while seen < expected:
            messages = consumer.consume(num_messages=10_000, timeout=0.2)
            if not messages:
                continue
            if first is None:
                first = time.perf_counter()
            by_partition: dict[int, list] = {}
            for message in messages:
                partition = message.partition()
                found = by_partition.get(partition)
                if found is None:
                    by_partition[partition] = [message]
                else:
                    found.append(message)
            for partition, records in by_partition.items():
                add_records(batch, records, prefixes[partition], None)
            seen += len(messages)
            if time.monotonic() - last_flush >= FLUSH_SECONDS:
                last_flush = time.monotonic()
                flush()
        flush()
        end = time.perf_counter()
        return end - wall, time.process_time() - cpu, end - first
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import confluent_kafka
    except ImportError:
        sys.exit("transport_bench: confluent-kafka is not installed; run: .venv/bin/pip install -e '.[bench]'")

    from blipwatch.tools.bench.topics import load_events
    from blipwatch.tools.bench.workload import plan_workload
    from blipwatch.stream_app.embedded_broker import EmbeddedBroker

    workload = plan_workload(args.events, 1000)
    n = len(workload.messages)
    rows: dict[str, list[tuple[float, float, float | None]]] = {}
    print(f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]}), "
          f"{n:,} events", flush=True)
    with tempfile.TemporaryDirectory(prefix="blipwatch-transport-") as workdir, \
            EmbeddedBroker(log_path=Path(workdir) / "broker.log") as broker:
        topic = f"transport-{uuid.uuid4().hex[:8]}"
        asyncio.run(load_events(broker, topic, workload.messages, lambda _: None))
        gc.collect()  # as the worker sets it (commands/worker.py: tune_gc)
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        for round_ in range(args.rounds):
            runs = {
                "aiokafka bare": lambda: (*asyncio.run(ingest_stage_bench.bare(broker.bootstrap, topic, n)), None),
                "confluent bare": lambda: confluent_bare(broker.bootstrap, topic, n),
                "aiokafka ingest": lambda: (*asyncio.run(ingest_stage_bench.ingest(
                    broker.bootstrap, topic, f"{topic}-a{round_}", n, workload.config)), None),
                "confluent ingest": lambda: confluent_ingest(broker.bootstrap, topic, f"{topic}-c{round_}", n,
                                                             workload.config),
            }
            for name, run in runs.items():
                wall, cpu, from_first = run()
                rows.setdefault(name, []).append((wall, cpu, from_first))
                after = f" ({from_first:.2f} s from the first message)" if from_first is not None else ""
                print(f"round {round_ + 1} {name:17} {wall:5.2f} s wall{after}, {cpu:5.2f} s cpu", flush=True)
    print(f"\nbest of {args.rounds}, µs per event: wall / wall from the first message / cpu")
    for name, runs in rows.items():
        wall = min(r[0] for r in runs) / n * 1e6
        cpu = min(r[1] for r in runs) / n * 1e6
        first = [r[2] for r in runs if r[2] is not None]
        from_first = f"{min(first) / n * 1e6:5.2f}" if first else "    -"
        print(f"{name:17} {wall:5.2f} / {from_first} / {cpu:5.2f}")


if __name__ == "__main__":
    main()

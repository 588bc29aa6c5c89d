"""The ingest stage alone, against the embedded broker, beside a bare consumer, for two trees.

    git archive main blipwatch | tar -x -C /tmp/base
    .venv/bin/python tests/benchmarks/ingest_stage_bench.py --baseline /tmp/base [--baseline DIR ...] [--events 300000] [--rounds 3]

``blipwatch bench``'s "ingest only" figure runs the whole worker: it shares the core with the
scoring stage, and it ends at the first ``/metrics`` poll (every 0.25 s) after the flush (every
0.5 s) that counts the last event, so on a shared machine it moves ~30% between identical runs.
This runs what the worker's ingest does per event, and nothing else, in one process per tree:
aiokafka ``getmany`` (the worker's consumer settings; aiokafka's own records where the tree has
``raw_records``) -> ``IngestBatch`` (``add_records`` where the
tree has it, else ``add`` per record, as the worker then did) -> every 0.5 s the drain,
``partial_messages`` and their sends to a partials topic, acknowledged. Beside it, in the same
process and moment, the bench's bare consumer (``getmany`` + ``orjson.loads``). Both read the same
topic of the bench's workload (``plan_workload(events, 1000)``: the demo scenario, ~1,000 series).

Reported per tree, best of --rounds (the trees take turns): wall seconds and process CPU seconds
for the bare consumer and for the ingest, µs per event, and ingest/bare as events/s ratios (the
bench's "ingest only" ratio, without the scoring stage beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid

PARTITIONS = 4
FLUSH_SECONDS = 0.5


async def _consumer(bootstrap: str, topic: str, **options):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024, fetch_max_wait_ms=100, **options)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    await consumer.seek_to_beginning()
    return consumer


async def bare(bootstrap: str, topic: str, expected: int, **options) -> tuple[float, float]:
    import orjson

    consumer = await _consumer(bootstrap, topic, **options)
    try:
        loads = orjson.loads
        seen = 0
        wall, cpu = time.perf_counter(), time.process_time()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await consumer.stop()


async def ingest(bootstrap: str, topic: str, partials_topic: str, expected: int,
                 config: dict | None) -> tuple[float, float]:
    from aiokafka import AIOKafkaProducer

    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.stream_app.ingest import IngestBatch
    try:
        from blipwatch.schemas.partials import partial_messages
    except ImportError:  # a tree from before the partials codec
        from blipwatch.stream_app.ingest import partial_messages

    batch = IngestBatch(Catalogue.from_dict(config), 65536)
    add_records = getattr(batch, "add_records", None)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1)
    await producer.start()
    try:  # aiokafka's own records, as the worker's ingest reads them, where the tree has it
        from blipwatch.kafka.raw_records import RAW_RECORDS, install
    except ImportError:
        consumer = await _consumer(bootstrap, topic)
    else:
        install()
        consumer = await _consumer(bootstrap, topic, value_deserializer=RAW_RECORDS)

    async def flush() -> None:
        partials = batch.aggregate.drain()
        batch.drain_dead_letters()
        futures = [await producer.send(partials_topic, value, partition=partition)
                   for partition, value in partial_messages(partials, {}, PARTITIONS, PARTITIONS, "bench")]
        if futures:
            await asyncio.gather(*futures)
        batch.aggregate.drain_dropped()
        batch.counts.clear()

    try:
        seen = 0
        wall, cpu = time.perf_counter(), time.process_time()
        last_flush = time.monotonic()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                prefix = f"{tp.topic}/{tp.partition}/"
                if add_records is not None:
                    add_records(records, prefix, None)
                else:
                    add = batch.add
                    for record in records:
                        add(record.key, record.value, prefix, None, record.offset)
                seen += len(records)
            if time.monotonic() - last_flush >= FLUSH_SECONDS:
                last_flush = time.monotonic()
                await flush()
        await flush()
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await consumer.stop()
        await producer.stop()


def child(args: argparse.Namespace) -> None:
    import gc

    import blipwatch

    config = json.loads(args.config)
    gc.collect()  # as the worker sets it (commands/worker.py: tune_gc)
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    bare_wall, bare_cpu = asyncio.run(bare(args.bootstrap, args.topic, args.events))
    wall, cpu = asyncio.run(ingest(args.bootstrap, args.topic, args.partials, args.events, config))
    print(json.dumps({"tree": os.path.dirname(os.path.dirname(blipwatch.__file__)), "bare_wall": bare_wall,
                      "bare_cpu": bare_cpu, "ingest_wall": wall, "ingest_cpu": cpu}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="DIR", action="append", default=[],
                        help="a tree holding another blipwatch/ to measure in turn (may be repeated)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--partials", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import tempfile
    from pathlib import Path

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from blipwatch.tools.bench import measured   # this tree's (a --baseline child imports another)
    from blipwatch.tools.bench.topics import load_events
    from blipwatch.tools.bench.workload import plan_workload
    from blipwatch.stream_app.embedded_broker import EmbeddedBroker

    workload = plan_workload(args.events, 1000)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trees = {os.path.basename(os.path.abspath(tree)) or tree: os.path.abspath(tree) for tree in args.baseline}
    trees["this tree"] = here
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="blipwatch-ingest-stage-") as workdir, \
            EmbeddedBroker(log_path=Path(workdir) / "broker.log") as broker:
        topic = f"ingest-stage-{uuid.uuid4().hex[:8]}"
        asyncio.run(load_events(broker, topic, workload.messages, lambda _: None))

        async def create(name: str) -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
            finally:
                await admin.close()

        for round_ in range(args.rounds):
            for name, tree in trees.items():
                partials = f"{topic}-partials-{uuid.uuid4().hex[:6]}"
                asyncio.run(create(partials))
                out = measured(
                    [sys.executable, os.path.abspath(__file__), "--child", "--bootstrap", broker.bootstrap,
                     "--topic", topic, "--partials", partials, "--events", str(len(workload.messages)),
                     "--config", json.dumps(workload.config)],
                    f"measuring {name} ({tree})", env={**os.environ, "PYTHONPATH": tree})
                result = json.loads(out)
                print(f"round {round_ + 1} {name:12} bare {result['bare_wall']:.2f} s wall / "
                      f"{result['bare_cpu']:.2f} s cpu, ingest {result['ingest_wall']:.2f} s wall / "
                      f"{result['ingest_cpu']:.2f} s cpu, ratio {result['bare_wall'] / result['ingest_wall']:.3f}",
                      flush=True)
                kept = best.setdefault(name, {})
                for key, value in result.items():
                    if key != "tree":
                        kept[key] = min(kept.get(key, value), value)
    n = len(workload.messages)
    print(f"\n{n:,} events, best of {args.rounds}; us per event (wall / cpu) and ingest/bare ratio")
    for name, kept in best.items():
        print(f"{name:12} bare {kept['bare_wall'] / n * 1e6:5.2f} / {kept['bare_cpu'] / n * 1e6:5.2f}   "
              f"ingest {kept['ingest_wall'] / n * 1e6:5.2f} / {kept['ingest_cpu'] / n * 1e6:5.2f}   "
              f"ratio (wall) {kept['bare_wall'] / kept['ingest_wall']:.3f}")


if __name__ == "__main__":
    main()

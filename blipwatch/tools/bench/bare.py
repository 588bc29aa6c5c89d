"""The ceiling the worker is measured against: aiokafka ``getmany`` + ``orjson.loads`` of every
event, in a process of its own (the bench's holds the whole workload), the garbage collector set
as the worker sets it. ``python -m blipwatch.tools.bench.bare BOOTSTRAP TOPIC EVENTS`` is that
process: it prints the seconds it took."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import orjson

from blipwatch.stream_app.embedded_broker import EmbeddedBroker
from blipwatch.tools.bench import PARTITIONS, BenchError, measured


async def _bare_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Seconds for a group-less aiokafka consumer to read and orjson-decode ``expected`` events."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        loads = orjson.loads
        seen = 0
        started = time.perf_counter()
        deadline = started + 120
        while seen < expected:
            if time.perf_counter() > deadline:
                raise BenchError(f"the bare consumer read only {seen:,} of {expected:,} events in 120 s")
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def bare_consume(broker: EmbeddedBroker, topic: str, expected: int) -> float:
    """``_bare_consume`` in a process of its own, as the worker runs in one.

    In the bench's process it would share a heap holding the whole workload (3M events: ~1.5 GB
    of messages), which the garbage collector walks while the consumer allocates: 275-315k
    events/s there against 450-500k in a fresh process, same broker, same topic. The child sets
    the garbage collector as the worker does (``commands.worker.tune_gc``), so the ceiling is not
    lowered by what the worker tunes away (~+3% here)."""
    out = measured([sys.executable, "-m", "blipwatch.tools.bench.bare", broker.bootstrap, topic, str(expected)],
                   "the bare consumer", BenchError, timeout=180, stdin=subprocess.DEVNULL)
    return float(out.strip().splitlines()[-1])


if __name__ == "__main__":  # the bare consumer's own process (bare_consume)
    if len(sys.argv) != 4:
        sys.exit("usage: python -m blipwatch.tools.bench.bare BOOTSTRAP TOPIC EVENTS")
    from blipwatch.stream_app.commands.worker import tune_gc

    tune_gc()
    try:
        print(asyncio.run(_bare_consume(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
    except BenchError as exc:
        sys.exit(str(exc))

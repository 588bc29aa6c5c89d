"""The aggregate's produce path alone, against the embedded broker: one ``app.producer.send`` per
record (main before perf-produce) beside ``kafka.batches.BatchSender`` (record batches of our own).

    .venv/bin/python tests/benchmarks/produce_bench.py [--messages 200] [--points 280] [--rounds 3]

One process, one Faust app's producer (the worker's producer settings: acks all, ``KeyHashCache``
partitioner, Faust's 16 KiB batches and 1,000,000-byte requests), four partitions a topic, the two
ways taking turns. Per partials message, as the agent does: ``--points`` points (~480 bytes, keyed
by one of 1,000 series), one alert in 50, their deliveries gathered; every 4 messages, as the
state writer does, the detector state of those messages' series (~1,400 bytes, partition given) in
chunks of 256, gathered. Reported: wall and CPU (this process: our code, aiokafka's sender, the
socket writes; not the broker's) per record, best of --rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

PARTITIONS = 4


def workload(messages: int, points: int):
    series = [f"cart_abandonment_rate|country=C{i:03d}".encode() for i in range(1000)]
    out = []
    n = 0
    for m in range(messages):
        pts, alerts = [], []
        for _ in range(points):
            key = series[n % len(series)]
            pts.append((key, (b'{"series":"%s","n":%d,"pad":"' % (key, n)).ljust(470, b"x") + b'"}'))
            if n % 50 == 0:
                alerts.append((b"dedup-" + key, (b'{"alert":%d,"pad":"' % n).ljust(900, b"y") + b'"}'))
            n += 1
        state = [(i % PARTITIONS, key, b"s" * 1400) for i, (key, _) in enumerate(pts)]
        out.append((pts, alerts, state))
    return out


async def run(bootstrap: str, messages: int, points: int, rounds: int) -> None:
    import faust
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from blipwatch.kafka.batches import BatchSender
    from blipwatch.kafka.partitioner import KeyHashCache

    stem = "pb-" + uuid.uuid4().hex[:6]
    topics = {name: f"{stem}-{name}" for name in ("points", "alerts", "state")}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics.values()])
    await admin.close()
    app = faust.App(stem, broker=f"kafka://{bootstrap}", producer_acks=-1, producer_partitioner=KeyHashCache())
    producer = app.producer
    await producer.start()
    sender = BatchSender(lambda: producer._ensure_producer())
    data = workload(messages, points)
    records = sum(len(p) + len(a) + len(s) for p, a, s in data)

    async def one_by_one(topic: str, records) -> list:
        return [await producer.send(topic, k, v, None, None, None) for k, v in records]

    async def one_by_one_to(topic: str, records) -> list:
        return [await producer.send(topic, k, v, p, None, None) for p, k, v in records]

    async def publish(send, send_to) -> None:
        """What the agent does per partials message: its points and alerts delivered, and every
        fourth message the state of the series it closed, 256 at a time."""
        pending_state = []
        for i, (pts, alerts, state) in enumerate(data):
            deliveries = await send(topics["points"], pts)
            deliveries += await send(topics["alerts"], alerts)
            await asyncio.gather(*deliveries)
            pending_state += state
            if i % 4 == 3 or i == len(data) - 1:
                sent = []
                for start in range(0, len(pending_state), 256):
                    await asyncio.sleep(0)
                    sent.extend(await send_to(topics["state"], pending_state[start:start + 256]))
                await asyncio.gather(*sent)
                pending_state = []

    async def per_record() -> None:
        await publish(one_by_one, one_by_one_to)

    async def batched() -> None:
        await publish(sender.send, sender.send_to)

    best: dict[str, tuple[float, float]] = {}
    try:
        for round_ in range(rounds):
            for name, body in (("app.producer.send per record", per_record), ("BatchSender", batched)):
                wall, cpu = time.perf_counter(), time.process_time()
                await body()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                print(f"round {round_ + 1} {name:30s} wall {wall:6.3f} s  cpu {cpu:6.3f} s  "
                      f"{wall / records * 1e6:5.2f} / {cpu / records * 1e6:5.2f} us per record", flush=True)
                old = best.get(name)
                best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
    finally:
        await producer.stop()
    print(f"{records:,} records a round ({messages} messages of {points} points, their alerts and state)")
    for name, (wall, cpu) in best.items():
        print(f"best {name:30s} wall {wall / records * 1e6:5.2f} us, cpu {cpu / records * 1e6:5.2f} us per record")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--points", type=int, default=280)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from blipwatch.stream_app.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        asyncio.run(run(broker.bootstrap, args.messages, args.points, args.rounds))


if __name__ == "__main__":
    main()

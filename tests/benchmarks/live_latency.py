"""Alert latency under live, paced traffic (issue 8): how long after a window closes its alert is out.

`blipwatch bench` measures latency while a worker drains a backlog, which is its lag behind
ingest, not what on call sees. Here the `demo` scenario (a cart-abandonment spike on channel=web
after 36 minutes) is sent to the embedded broker *paced*: event time runs ``--speed`` times faster
than the wall clock (60: a one-minute window per second), at a rate one worker keeps up with. Then,
for every point and alert on their topics (a point takes the path its alert would):

    latency = the record's timestamp  -  the wall time at which the events sent had passed
              the window's close (window end + allowed lateness)

which includes everything on the way (fetch, the ingest flush interval, the partials hop, scoring,
the send), plus the worker's own figure, ``blipwatch_alert_latency_seconds`` (from the flush that
carried the closing watermark to the alert's send).

    .venv/bin/python tests/benchmarks/live_latency.py [--speed 60] [--sessions-per-minute 150] [--hours 1]

Bounded: it stops itself after the scenario (about hours x 3600 / speed seconds) plus 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from blipwatch.schemas.events import parse_timestamp_ms
from blipwatch.stream_app.bench import _scrape, histogram_quantile
from blipwatch.stream_app.embedded_broker import EmbeddedBroker, free_port
from blipwatch.stream_app.simulator import generate_events

PARTITIONS = 4
LATENESS_MS = 30_000  # the default config's allowed lateness


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def send_paced(bootstrap: str, topic: str, events: list[dict], speed: float) -> tuple[float, int]:
    """Send events so that event time runs ``speed`` times the wall clock; returns (wall t0, event t0)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    try:
        event_t0 = parse_timestamp_ms(events[0]["occurred_at"])
        wall_t0 = time.time()
        pending = []
        for event in events:
            due = wall_t0 + (parse_timestamp_ms(event["occurred_at"]) - event_t0) / 1000 / speed
            delay = due - time.time()
            if delay > 0.002:
                if pending:
                    await asyncio.gather(*pending)
                    pending.clear()
                await asyncio.sleep(delay)
            key = (event.get("customer_id") or event["session_id"]).encode()
            pending.append(await producer.send(topic, orjson.dumps(event), key=key))
        await asyncio.gather(*pending)
        return wall_t0, event_t0
    finally:
        await producer.stop()


async def read_records(bootstrap: str, topic: str) -> list[tuple[float, dict]]:
    """(record timestamp in s, decoded value) of every record of a topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found, quiet_since = [], time.monotonic()
        while time.monotonic() - quiet_since < 3:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found.extend((r.timestamp / 1000, orjson.loads(r.value)) for r in records)
                quiet_since = time.monotonic()
        return found
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=60.0, help="event seconds per wall second (default 60)")
    parser.add_argument("--sessions-per-minute", type=float, default=150.0)
    parser.add_argument("--hours", type=float, default=1.0, help="event time to send (default 1)")
    args = parser.parse_args()

    events = list(generate_events("demo", hours=args.hours, seed=0, sessions_per_minute=args.sessions_per_minute,
                                  incident_offset_hours=0.6))
    events.sort(key=lambda e: parse_timestamp_ms(e["occurred_at"]))
    with tempfile.TemporaryDirectory(prefix="blipwatch-latency-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedBroker(port=free_port(), log_path=workdir / "tansu.log").start()
        stem = f"latency-{uuid.uuid4().hex[:8]}"
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump({"policy": {"warmup": 30}}))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLIPWATCH_")}
        env.update({"BLIPWATCH_BROKER": broker.url, "BLIPWATCH_EMBEDDED_BROKER": "1", "BLIPWATCH_APP_ID": stem,
                    "BLIPWATCH_EVENTS_TOPIC": f"{stem}-events", "BLIPWATCH_DLQ_TOPIC": f"{stem}-dlq",
                    "BLIPWATCH_ALERTS_TOPIC": f"{stem}-alerts", "BLIPWATCH_POINTS_TOPIC": f"{stem}-points",
                    "BLIPWATCH_PARTIALS_TOPIC": f"{stem}-partials", "BLIPWATCH_PARTITIONS": str(PARTITIONS),
                    "BLIPWATCH_CONFIG": str(config), "BLIPWATCH_WEB_PORT": str(port),
                    "BLIPWATCH_DATA_DIR": str(workdir / "data")})
        log_path = workdir / "worker.log"
        with open(log_path, "ab") as log:
            worker = subprocess.Popen([sys.executable, "-m", "blipwatch.stream_app.cli", "worker"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while "ingest: consuming" not in log_path.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
                    return 1
                time.sleep(0.1)
            seconds = args.hours * 3600 / args.speed
            print(f"sending {len(events):,} events paced at {args.speed:g}x ({seconds:.0f} s of wall time, "
                  f"{len(events) / seconds:,.0f} events/s)", file=sys.stderr)
            wall_t0, event_t0 = asyncio.run(send_paced(broker.bootstrap, f"{stem}-events", events, args.speed))
            time.sleep(3)  # the last windows close when the input goes idle; those are not counted
            alerts = asyncio.run(read_records(broker.bootstrap, f"{stem}-alerts"))
            points = asyncio.run(read_records(broker.bootstrap, f"{stem}-points"))
            samples = _scrape(port)
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
            broker.stop()
    last_event_ms = parse_timestamp_ms(events[-1]["occurred_at"])

    def latencies(records: list[tuple[float, dict]]) -> list[float]:
        """Seconds from each window's close (as the paced events passed it) to its record; windows
        closed only by the idle flush after the last event are left out."""
        found = []
        for published, document in records:
            close_ms = parse_timestamp_ms(document["window_end"]) + LATENESS_MS
            if close_ms <= last_event_ms:
                found.append(published - (wall_t0 + (close_ms - event_t0) / 1000 / args.speed))
        return found

    for name, records in (("points", points), ("alerts", alerts)):
        values = latencies(records)
        if values:
            print(f"{name}: {len(values):,} records; window close -> record on the topic: p50 "
                  f"{statistics.median(values):.2f} s, p99 {quantile(values, 0.99):.2f} s, max {max(values):.2f} s")
    buckets = [(float(labels["le"]), value) for labels, value in samples.get("blipwatch_alert_latency_seconds_bucket", [])]
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    if p50 is not None:
        print(f"worker's blipwatch_alert_latency_seconds: p50 {p50:.3f} s, p99 {p99:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

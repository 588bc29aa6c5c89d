"""Helpers for tests that run real processes: a blipwatch worker, producers and readers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from blipwatch.stream_app.embedded_broker import free_port

BLIPWATCH = [sys.executable, "-m", "blipwatch.stream_app.cli"]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample a process exports on ``/metrics``: (name, sorted label pairs) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def base_env(broker, topics: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLIPWATCH_")}
    env.update(topics)
    env.update({"BLIPWATCH_BROKER": broker.url, "BLIPWATCH_EMBEDDED_BROKER": "1",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Worker:
    """A real ``blipwatch worker`` process with its own web port and data dir."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str = "worker"):
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.env = dict(env, BLIPWATCH_WEB_PORT=str(self.port), BLIPWATCH_DATA_DIR=str(workdir / f"{name}-data"))
        self.process: subprocess.Popen | None = None

    def start(self) -> "Worker":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([*BLIPWATCH, "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 60) -> None:
        """Until both the Faust side and the ingest consumer have their partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process and self.process.poll() is None, f"worker exited:\n{self.log()[-3000:]}"
            text = self.log()
            if "ingest: consuming" in text and "Worker ready" in text:
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {timeout}s:\n{self.log()[-3000:]}")

    def metrics(self) -> dict[tuple[str, tuple], float]:
        return scrape(self.port)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def diagnosis(self) -> str:
        """What a failing pipeline test needs to know: input read, lag, watermarks, held partials."""
        try:
            samples = self.metrics()
        except Exception as exc:  # the worker is gone: say so
            return f"{self.log_path.name}: /metrics unreachable ({exc})"
        wanted = ("blipwatch_events_total", "blipwatch_ingest_lag_messages", "blipwatch_watermark_timestamp_seconds",
                  "blipwatch_partials_unacknowledged", "blipwatch_series_tracked", "blipwatch_partials_late_total",
                  "blipwatch_events_late_total", "blipwatch_faust_messages_received_per_topics_partition")
        lines = [f"{name}{dict(labels) if labels else ''} = {value:g}" for (name, labels), value in sorted(samples.items())
                 if name in wanted and (value or name != "blipwatch_events_total")]
        return f"{self.log_path.name} metrics:\n  " + "\n  ".join(lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)

    def __enter__(self) -> "Worker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(condition, timeout: float, interval: float = 0.25, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message} not met within {timeout}s (last: {last!r})")


def produce(broker, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks="all",
                             enable_idempotence=False, max_request_size=8 * 1024 * 1024)
    count = 0
    for key, value in messages:
        producer.send(topic, key=key, value=value)
        count += 1
    producer.flush(30)
    producer.close(5)
    return count


def read_topic(broker, topic: str, expected: int | None = None, timeout: float = 30,
               idle: float = 2.0) -> list:
    """Every record of a topic from the start (no consumer group): until ``expected`` records, or,
    without ``expected``, until every partition is read up to its high watermark (taken from fetch
    responses: the embedded broker's ListOffsets is wrong after batched produce, docs/architecture.md)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_bytes=16 * 1024 * 1024)
    deadline = time.monotonic() + timeout
    partitions = None
    while not partitions and time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            time.sleep(0.2)
    if not partitions:
        consumer.close()
        return []
    assigned = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    consumer.seek_to_beginning()
    records = []
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200, max_records=50_000)
        new = [r for rs in batch.values() for r in rs]
        records.extend(new)
        if new:
            quiet_since = time.monotonic()
        if expected is not None:
            if len(records) >= expected:
                break
            continue
        highwaters = [consumer.highwater(tp) for tp in assigned]
        if all(h is not None for h in highwaters) and all(
                consumer.position(tp) >= h for tp, h in zip(assigned, highwaters)):
            break
        if time.monotonic() - quiet_since > idle and all(h is None for h in highwaters):
            break  # nothing fetched at all: the topic is empty
    consumer.close()
    return records


@contextlib.contextmanager
def workers(*items: Worker) -> Iterator[tuple[Worker, ...]]:
    try:
        for item in items:
            item.start()
        yield items
    finally:
        for item in items:
            item.stop()


def simulated_reference(folder: Path, scenario: list[str], config: Path) -> dict:
    """``blipwatch simulate`` with ``scenario`` into ``folder``, then ``replay`` with ``config``:
    the events as (key, line) messages keyed as the input must be, and replay's points and alerts,
    the reference a stream must equal."""
    import orjson

    events, labels = folder / "events.jsonl", folder / "labels.json"
    subprocess.run([*BLIPWATCH, "simulate", *scenario, "--out", str(events), "--labels", str(labels), "--quiet"],
                   check=True, timeout=120)
    alerts, points = folder / "alerts.jsonl", folder / "points.jsonl"
    subprocess.run([*BLIPWATCH, "replay", str(events), "--config", str(config), "--alerts", str(alerts),
                    "--points", str(points), "--quiet"], check=True, timeout=120)
    lines = events.read_bytes().splitlines()
    return {
        "messages": [((orjson.loads(line).get("customer_id") or orjson.loads(line)["session_id"]).encode(), line)
                     for line in lines],
        "points": [orjson.loads(line) for line in points.read_bytes().splitlines()],
        "alerts": [orjson.loads(line) for line in alerts.read_bytes().splitlines()],
    }

"""`blipwatch simulate --kafka` against the embedded broker: every event arrives, keyed by customer."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from blipwatch.stream_app.embedded_broker import free_port
from blipwatch.tools.simulator import generate_events
from tests.conftest import BLIPWATCH, REPO, child_env

pytestmark = pytest.mark.integration


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000, consumer_timeout_ms=1000)
    try:
        deadline = time.monotonic() + 10
        while not consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.1)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"topic {topic} was not created"
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
                records.extend(batch)
        # anything beyond the expected count would be a duplicate: give it a moment to show up
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def test_simulate_sends_every_event_to_the_events_topic_keyed_by_customer(broker, unique_topics, tmp_path):
    args = ["--scenario", "none", "--start", "2026-01-06T12:00:00Z", "--hours", "0.25",
            "--sessions-per-minute", "30", "--seed", "4"]
    expected = list(generate_events("none", start="2026-01-06T12:00:00Z", hours=0.25, sessions_per_minute=30, seed=4))
    labels = tmp_path / "labels.json"
    done = subprocess.run([*BLIPWATCH, "simulate", *args, "--kafka", "--labels", str(labels)], cwd=REPO,
                          env=child_env(BLIPWATCH_BROKER=broker.url, **unique_topics),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(expected):,} events" in done.stderr and unique_topics["BLIPWATCH_EVENTS_TOPIC"] in done.stderr
    assert json.loads(labels.read_text())["incidents"] == []

    records = read_topic(broker.bootstrap, unique_topics["BLIPWATCH_EVENTS_TOPIC"], len(expected))
    assert len(records) == len(expected)
    events = [json.loads(record.value) for record in records]
    assert sorted(e["event_id"] for e in events) == sorted(e["event_id"] for e in expected)
    for record, event in zip(records, events):
        assert record.key.decode() == event.get("customer_id", event["session_id"])


def test_simulate_paces_sending_to_the_rate_asked(broker, unique_topics):
    expected = sum(1 for _ in generate_events("none", start="2026-01-06T12:00:00Z", hours=0.05,
                                              sessions_per_minute=20))
    rate = expected / 2.0   # about two seconds
    began = time.monotonic()
    done = subprocess.run([*BLIPWATCH, "simulate", "--start", "2026-01-06T12:00:00Z", "--hours", "0.05",
                           "--sessions-per-minute", "20", "--kafka", "--rate", str(rate)], cwd=REPO,
                          env=child_env(BLIPWATCH_BROKER=broker.url, **unique_topics),
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert elapsed >= 1.8
    assert len(read_topic(broker.bootstrap, unique_topics["BLIPWATCH_EVENTS_TOPIC"], expected)) == expected


@pytest.mark.soak  # waits out the connect timeout (~11 s)
def test_simulate_says_so_in_one_line_when_kafka_is_not_there(unique_topics):
    done = subprocess.run([*BLIPWATCH, "simulate", "--hours", "0.01", "--kafka"], cwd=REPO,
                          env=child_env(BLIPWATCH_BROKER=f"kafka://127.0.0.1:{free_port()}", **unique_topics),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "cannot reach Kafka" in done.stderr and "BLIPWATCH_BROKER" in done.stderr

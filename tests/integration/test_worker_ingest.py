"""A real worker on the embedded broker: valid events counted by type, invalid ones in the DLQ
with their original bytes (the first 64 KiB of them) and reasons, and the worker still consuming afterwards."""

from __future__ import annotations

import time

import orjson
import pytest

from blipwatch.schemas.partials import sent_header
from blipwatch.stream_app.ingest import MAX_DEAD_LETTER_BYTES
from tests.helpers import Worker, base_env, produce, read_topic, wait_for

pytestmark = pytest.mark.integration

BASE_MS = 1767643200000  # 2026-01-05T20:00:00Z


def valid_events(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    types = ["page_view", "add_to_cart", "purchase", "made_up_type"]
    out = []
    for i in range(start, start + n):
        event = {"event_id": f"e{i}", "event_type": types[i % 4], "occurred_at": BASE_MS + i * 10,
                 "customer_id": f"c{i % 7}", "channel": "web", "country": "DE", "device": "mobile"}
        if event["event_type"] == "purchase":
            event["properties"] = {"order_value": 20.0 + i % 5}
        out.append((f"c{i % 7}".encode(), orjson.dumps(event)))
    return out


INVALID = [
    (b"k1", b"\xff\xfe not utf-8", "not_utf8"),
    (b"k2", b"{not json", "not_json"),
    (b"k3", b"[1, 2, 3]", "not_object"),
    (b"k4", orjson.dumps({"event_type": "page_view", "occurred_at": BASE_MS}), "missing_field"),
    (b"k5", orjson.dumps({"event_id": 5, "event_type": "page_view", "occurred_at": BASE_MS}), "wrong_type"),
    (b"k6", orjson.dumps({"event_id": "x", "event_type": "page_view", "occurred_at": "noon"}), "bad_timestamp"),
    (b"k7", orjson.dumps({"event_id": "x", "event_type": "page_view", "occurred_at": BASE_MS,
                          "channel": "fax"}), "bad_value"),
    (b"k8", b"{" + b'"a":' * 1 + b'"' + b"x" * 70_000 + b'"}', "too_large"),
    (None, b"", "empty"),
    (b"k9", b"[" * 50_000 + b"]" * 50_000, "too_large"),
    (b"k10", b'{"event_id": NaN}', "not_json"),
]


def test_worker_counts_valid_events_and_dead_letters_invalid_ones(broker, unique_topics, tmp_path):
    env = base_env(broker, unique_topics)
    n_valid = 400
    with Worker(env, tmp_path) as worker:
        worker.wait_ready()
        mixed = valid_events(n_valid)
        for i, (key, value, _) in enumerate(INVALID):  # poison spread among good traffic
            mixed.insert(i * 30, (key, value))
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], mixed)

        def counted():
            m = worker.metrics()
            valid = sum(v for (name, _), v in m.items() if name == "blipwatch_events_total")
            invalid = sum(v for (name, _), v in m.items() if name == "blipwatch_events_invalid_total")
            return (valid, invalid) if (valid, invalid) == (n_valid, len(INVALID)) else None

        wait_for(counted, 60, message=f"worker counted {n_valid} valid and {len(INVALID)} invalid")
        assert worker.metric("blipwatch_events_total", event_type="page_view") == 100
        assert worker.metric("blipwatch_events_total", event_type="purchase") == 100
        assert worker.metric("blipwatch_events_total", event_type="other") == 100  # unknown types folded
        expected_reasons = {}
        for _, _, reason in INVALID:
            expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
        for reason, count in expected_reasons.items():
            assert worker.metric("blipwatch_events_invalid_total", reason=reason) == count, reason
        assert any(name.startswith("blipwatch_faust_") for name, _ in worker.metrics())

        dead = read_topic(broker, unique_topics["BLIPWATCH_DLQ_TOPIC"], expected=len(INVALID), timeout=30)
        assert len(dead) == len(INVALID)
        by_value = {record.value: dict(record.headers) for record in dead}
        for key, value, reason in INVALID:
            kept = value[:MAX_DEAD_LETTER_BYTES]   # a longer value keeps its first 64 KiB, its size in a header
            assert kept in by_value, f"original bytes of the {reason} message not in the DLQ"
            assert by_value[kept]["blipwatch.reason"] == reason.encode()
            assert by_value[kept].get("blipwatch.truncated") == (
                str(len(value)).encode() if len(value) > MAX_DEAD_LETTER_BYTES else None)

        # still consuming after the poison
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], valid_events(40, start=n_valid))
        wait_for(lambda: sum(v for (name, _), v in worker.metrics().items()
                             if name == "blipwatch_events_total") == n_valid + 40, 30,
                 message="worker still consuming after the invalid messages")
        assert worker.process.poll() is None
    assert "Traceback" not in worker.log(), worker.log()[-3000:]


@pytest.mark.soak  # a worker's commits through a restart (~19 s); make test keeps the flush-exit fault test
def test_ingest_commits_only_offsets_its_acknowledged_partials_cover_and_never_goes_back(
        broker, unique_topics, tmp_path):
    """At-least-once: whenever the ingest group's committed offsets are looked at, the partials
    already in the topic cover them (a commit follows its flush's acks), and they never move back
    (flushes commit in order)."""
    from kafka import KafkaAdminClient

    env = base_env(broker, unique_topics)
    events_topic, partials_topic = unique_topics["BLIPWATCH_EVENTS_TOPIC"], unique_topics["BLIPWATCH_PARTIALS_TOPIC"]
    group = f"{unique_topics['BLIPWATCH_APP_ID']}-ingest"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)

    def committed() -> dict[int, int]:
        found = admin.list_group_offsets(group).get(group, {})
        return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == events_topic and meta.offset >= 0}

    def covered() -> dict[int, int]:
        furthest: dict[int, int] = {}
        for record in read_topic(broker, partials_topic, timeout=10):
            for partition, offset in sent_header(record.value).to.items():
                furthest[partition] = max(furthest.get(partition, 0), offset)
        return furthest

    seen: list[dict[int, int]] = []

    def check() -> dict[int, int]:
        now = committed()      # first the commits, then what the broker holds of the partials
        cover = covered()
        for partition, offset in now.items():
            assert cover.get(partition, 0) >= offset, (partition, offset, cover)
            if seen:
                assert offset >= seen[-1].get(partition, 0), (partition, offset, seen[-1])
        seen.append(now)
        return now

    total = 0
    try:
        with Worker(env, tmp_path) as worker:
            worker.wait_ready()
            for round_ in range(10):  # flushes while events keep coming: commits of many flushes
                total += produce(broker, events_topic, valid_events(3000, start=total))
                time.sleep(0.1 * (round_ % 4))
                check()
            wait_for(lambda: sum(check().values()) == total, 60, message=f"all {total} events committed")
            assert len({tuple(sorted(s.items())) for s in seen}) > 3, seen  # several flushes were seen
        assert "Traceback" not in worker.log(), worker.log()[-3000:]
    finally:
        admin.close()

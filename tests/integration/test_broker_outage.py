"""Broker outage: the embedded broker stops for 30 s and a new one starts on the same port
with nothing in it (memory storage). The worker stays up, says so in a few clear lines while Kafka is
away (not a wall of retries and tracebacks), re-creates its topics and resumes without manual steps:
events produced afterwards are counted and their windows scored."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from blipwatch.stream_app.embedded_broker import EmbeddedBroker, free_port
from tests.helpers import Worker, base_env, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.soak]

OUTAGE_SECONDS = 30
BASE_MS = 1767643200000  # 2026-01-05T20:00:00Z


def events(n: int, start_ms: int, spread_ms: int) -> list[tuple[bytes, bytes]]:
    """``n`` page views spread over ``spread_ms`` of event time, so several windows close."""
    return [(f"c{i % 7}".encode(), orjson.dumps({
        "event_id": f"e{start_ms}-{i}", "event_type": "page_view", "occurred_at": start_ms + i * spread_ms // n,
        "channel": "web", "country": "DE", "device": "mobile"})) for i in range(n)]


def topics_on(broker: EmbeddedBroker) -> dict[str, int]:
    """Topic -> partitions, read with the admin client (a metadata request for named topics would
    create them on a broker that auto-creates)."""
    async def read() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            return {topic["topic"]: len(topic["partitions"]) for topic in await admin.describe_topics()}
        finally:
            await admin.close()
    return asyncio.run(read())


def counted(worker: Worker) -> float:
    return sum(v for (name, _), v in worker.metrics().items() if name == "blipwatch_events_total")


def scored(worker: Worker) -> float:
    return sum(v for (name, _), v in worker.metrics().items() if name == "blipwatch_windows_scored_total")


@pytest.mark.timeout(240)
def test_worker_survives_a_30s_broker_outage_and_resumes_on_the_new_broker(unique_topics, tmp_path):
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu-1.log").start()
    worker = Worker(base_env(broker, unique_topics), tmp_path)
    try:
        worker.start().wait_ready(90)
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], events(600, BASE_MS, 5 * 60_000))
        wait_for(lambda: counted(worker) == 600, 60, message="600 events counted before the outage")
        wait_for(lambda: scored(worker) > 0, 60, message="windows scored before the outage")
        before_scored = scored(worker)

        broker.stop()
        log_before = len(worker.log().splitlines())
        time.sleep(OUTAGE_SECONDS)
        assert worker.process.poll() is None, f"worker exited while the broker was down:\n{worker.log()[-3000:]}"
        outage_log = worker.log().splitlines()[log_before:]

        broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu-2.log").start()
        restarted = time.monotonic()
        # the new broker is empty: the producer auto-creates the events topic, the worker its own
        after = events(600, BASE_MS + 10 * 60_000, 5 * 60_000)
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], after)
        wait_for(lambda: counted(worker) >= 1200, 90, interval=1, message="events after the restart counted")
        resumed_counting = time.monotonic() - restarted
        wait_for(lambda: scored(worker) > before_scored, 90, interval=1,
                 message="windows of the new events scored")
        resumed_scoring = time.monotonic() - restarted
        after_scored = scored(worker)
        assert worker.process.poll() is None
        app = unique_topics["BLIPWATCH_APP_ID"]
        wanted = [unique_topics[k] for k in ("BLIPWATCH_PARTIALS_TOPIC", "BLIPWATCH_DLQ_TOPIC", "BLIPWATCH_POINTS_TOPIC",
                                             "BLIPWATCH_ALERTS_TOPIC")] + [f"{app}-journeys",
                                                                            f"{app}-detector-state-changelog"]
        wait_for(lambda: all(topic in topics_on(broker) for topic in wanted), 30, interval=1,
                 message="the worker's topics back on the new broker")
        partitions = topics_on(broker)
    finally:
        worker.stop()
        broker.stop()

    log = worker.log()
    unreachable = [line for line in outage_log if "is unreachable for" in line]
    tracebacks = log.count("Traceback")
    recreated = "are missing on" in log
    print(f"broker outage {OUTAGE_SECONDS} s: {len(outage_log)} log lines while down "
          f"({len(unreachable)} 'unreachable' lines), {tracebacks} tracebacks; counting resumed "
          f"{resumed_counting:.1f} s and scoring {resumed_scoring:.1f} s after the new broker started; "
          f"events counted 600 before + {len(after)} after; windows scored {before_scored:.0f} before, "
          f"{after_scored:.0f} in all; topics re-created by {'the worker' if recreated else 'metadata requests'}")
    assert len(unreachable) >= OUTAGE_SECONDS // 10, "a clear line at least every 10 s while Kafka is away"
    assert len(outage_log) < 200, "\n".join(outage_log[:50])
    assert tracebacks == 0, log[-5000:]
    assert "is reachable again" in log
    # the worker re-creates missing topics with its partition count; the embedded broker also creates
    # a topic a client's metadata request names (4 partitions, its default), which may come first
    assert all(partitions[topic] == 4 for topic in wanted), partitions



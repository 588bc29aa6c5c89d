"""Delivery faults in the worker, injected for real (issue 16, items 1, 3, 4, 6): a ~1 MB event on the
embedded broker; a worker that exits between the sends of one flush; a TCP proxy between the worker
and the broker that stalls every connection longer than the producer's request timeout, during
flushes and state writes. The reference is ``replay`` over the same events: every window scored,
with the same counts (every event counted once), whatever was re-sent."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from blipwatch.stream_app.ingest import MAX_DEAD_LETTER_BYTES
from blipwatch.stream_app.ingest_service import EXIT_MID_FLUSH_ENV
from tests.helpers import Worker, base_env, produce, read_topic, simulated_reference, wait_for
from tests.integration.test_pipeline_stream import assert_same_points, point_content, point_identity, same_content
from tests.integration.test_pipeline_stream import stream_output
from tests.tcp_proxy import broker_behind_proxy

pytestmark = pytest.mark.integration

# 40 minutes of a small shop: ~12,000 events, ~4,000 windows; replay gives the reference
SCENARIO = ["--scenario", "search_zero_results", "--start", "2026-01-05T17:00:00Z",
            "--incident-offset-hours", "0.3", "--hours", "0.67", "--sessions-per-minute", "40", "--seed", "11"]
# a partition quiet for the idle timeout stops holding the watermark back, and the events behind
# a stall would then be late: 30 s, longer than a stall and the reconnects after it
CONFIG = "policy:\n  warmup: 10\nwindow:\n  idle_partition_seconds: {idle}\n"


@pytest.fixture(scope="module")
def small_scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults-scenario")
    config = folder / "config.yaml"
    config.write_text(CONFIG.format(idle=30))
    # without stalls, the last windows close 5 s after the stream ends, not 30 (replay has no idle timeout)
    quick = folder / "config-idle-5s.yaml"
    quick.write_text(CONFIG.format(idle=5))
    return {"config": config, "quick_config": quick, **simulated_reference(folder, SCENARIO, config)}


def distinct(points: list[dict]) -> dict:
    found: dict = {}
    for point in points:  # re-published points are identical: same identity, same content
        content = point_content(point)
        assert same_content(found.setdefault(point_identity(point), content), content), "a duplicate point differs"
    return found


def events_counted(worker: Worker) -> float:
    return sum(v for (name, _), v in worker.metrics().items() if name == "blipwatch_events_total")


def volume(points) -> float:
    """Events counted into the points: the numerators of the all-traffic volume series."""
    return sum(p["numerator"] for p in points if p["series"] == "event_volume|all")


@pytest.mark.timeout(120)
@pytest.mark.soak  # hostile input (~13 s)
def test_a_1mb_event_is_dead_lettered_truncated_and_the_flush_keeps_its_other_dead_letters(
        broker, unique_topics, tmp_path):
    huge = b'{"event_id": "' + b"x" * 1_200_000 + b'"}'
    others = [b"not json", b"[1, 2]", b'{"event_id": "e1", "event_type": "page_view", "occurred_at": "yesterday"}']
    with Worker(base_env(broker, unique_topics), tmp_path) as worker:
        worker.wait_ready(90)
        # one fetch, one flush: the huge one first, the others behind it
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], [(b"k", huge)] + [(b"k", v) for v in others])
        dead = read_topic(broker, unique_topics["BLIPWATCH_DLQ_TOPIC"], expected=4, timeout=40)
        log = worker.log()
    by_value = {record.value: dict(record.headers) for record in dead}
    assert len(dead) == 4, f"{len(dead)} dead letters of 4; worker log:\n{log[-2000:]}"
    assert huge[:MAX_DEAD_LETTER_BYTES] in by_value
    headers = by_value[huge[:MAX_DEAD_LETTER_BYTES]]
    assert headers["blipwatch.reason"] == b"too_large"
    assert headers["blipwatch.truncated"] == str(len(huge)).encode()
    for value in others:
        assert "blipwatch.truncated" not in by_value[value]
    assert "flush failed" not in log
    print(f"1 MB event: {len(dead)} of 4 dead letters; the huge one kept {MAX_DEAD_LETTER_BYTES} of "
          f"{len(huge)} bytes, header blipwatch.truncated={headers['blipwatch.truncated'].decode()}")


FUNNELS = ("cart_abandonment_rate", "checkout_conversion_rate", "checkout_unconverted_5m")


# "3": the 3rd flush with counts, once its first message with counts is delivered; "journeys": the
# first flush with funnel counts, once its first message with funnel counts is delivered (the
# successor's flush must decide the journeys as far as that flush did); "before-snapshot": the first
# flush with funnel counts once all its partials are delivered, before its journey snapshots and commit
@pytest.mark.parametrize("exit_at", ["3", "journeys", "before-snapshot"])
@pytest.mark.soak  # ~40 s each
@pytest.mark.timeout(240)
def test_a_worker_exiting_between_the_sends_of_one_flush_loses_and_doubles_nothing(
        broker, unique_topics, tmp_path, small_scenario, exit_at):
    reference, messages = small_scenario["points"], small_scenario["messages"]
    env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(small_scenario["quick_config"]))
    victim = Worker(dict(env, **{EXIT_MID_FLUSH_ENV: exit_at}), tmp_path, name="victim").start()
    successor = Worker(env, tmp_path, name="successor")
    try:
        victim.wait_ready(90)
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages)
        victim.process.wait(60)
        assert victim.process.returncode == 137, victim.log()[-2000:]
        assert ("before its journey snapshots" if exit_at == "before-snapshot" else "exiting after 1 of") \
            in victim.log(), victim.log()[-2000:]
        successor.start().wait_ready(90)
        points, _ = stream_output(broker, unique_topics, len(reference), timeout=120, reference=reference,
                                  worker=successor)
        duplicates = successor.metric("blipwatch_partials_duplicate_total")
        overlaps = successor.metric("blipwatch_partials_overlap_total")
        log = successor.log()
    finally:
        victim.stop()
        successor.stop()
    found = distinct(points)
    assert_same_points(list(found.values()), [point_content(p) for p in reference])
    assert "read up to where the previous owner had sent them" in log, log[-3000:]
    assert duplicates >= 1 and overlaps == 0
    funnel_points = [c for c in found.values() if c[0].split("|")[0] in FUNNELS]
    assert len({c[0].split("|")[0] for c in funnel_points}) == 3, "the reference has every funnel"
    if exit_at in ("journeys", "before-snapshot"):
        assert "decided as far as the previous owner's flush had decided them" in log, log[-3000:]
    print(f"exit mid-flush ({exit_at}): {len(messages)} events; windows {len(found)}/{len(reference)} equal to "
          f"replay (event volume {volume(found_points(points))} = replay's {volume(reference)}; "
          f"{len(funnel_points)} funnel points, {journeys(found_points(points))} journeys on 'all' = replay's "
          f"{journeys(reference)}); partials skipped as merged already {duplicates:.0f}, overlaps {overlaps:.0f}")


def journeys(points) -> float:
    """Journeys counted into the funnel points: the denominators of their all-traffic series."""
    return sum(p["denominator"] or 0 for p in points if p["series"] in {f"{name}|all" for name in FUNNELS})


def found_points(points: list[dict]) -> list[dict]:
    return list({point_identity(p): p for p in points}.values())


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_stalled_connections_during_flushes_and_state_writes_lose_and_double_nothing(
        unique_topics, tmp_path, small_scenario):
    reference, messages = small_scenario["points"], small_scenario["messages"]
    with broker_behind_proxy(tmp_path / "tansu.log") as (broker, proxy):
        # a produce not acknowledged within 3 s fails (Faust's default waits 20 minutes): the stall is
        # then a non-retriable delivery failure, as a partition without a leader for that long is
        env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(small_scenario["config"]),
                       PRODUCER_REQUEST_TIMEOUT="3")
        worker = Worker(env, tmp_path)

        def failures() -> dict[str, float]:
            return {stage: worker.metric("blipwatch_delivery_failures_total", stage=stage)
                    for stage in ("ingest", "aggregate")}

        stalls = 0
        try:
            worker.start().wait_ready(90)
            # a backlog (the aggregate busy scoring it: points and state in flight), then chunks, each
            # followed by a stall while the ingest flushes it. The test's own producer goes through the
            # proxy too: it is idle during a stall (acknowledged before), so it neither loses nor repeats
            backlog = len(messages) * 6 // 10
            topic = unique_topics["BLIPWATCH_EVENTS_TOPIC"]
            produce(broker, topic, messages[:backlog])
            wait_for(lambda: worker.metric("blipwatch_windows_scored_total", metric="event_volume") > 0, 60,
                     interval=0.1, message="windows scored")
            rest = messages[backlog:]
            chunks = [rest[i:i + 1000] for i in range(0, len(rest), 1000)]
            # stall every connection for 5 s from the worker's next large produce, then cut them (what
            # the stall held back never reaches the broker): from a delivery of points while the backlog
            # is scored, then from a flush with counts of a chunk, until both have failed. The worker is
            # paused (SIGSTOP) while the stall is armed and a chunk produced: it would otherwise read and
            # flush the chunk before the stall is armed. The stall waits for a produce to the worker's topic,
            # so the test's producer is never caught in it
            def data_flush_failed() -> bool:
                return re.search(r"kept and sent again \(\d+ partials messages, [1-9]", worker.log()) is not None

            for chunk in [None, *chunks]:
                aggregate_failed = failures()["aggregate"] >= 1
                stall = stalls < 10 and (not data_flush_failed() or not aggregate_failed)
                if stall and chunk is not None:
                    os.kill(worker.process.pid, signal.SIGSTOP)
                try:
                    if stall:
                        proxy.stall_on_produce(min_bytes=4096, topic=unique_topics[
                            "BLIPWATCH_PARTIALS_TOPIC" if aggregate_failed else "BLIPWATCH_POINTS_TOPIC"])
                    if chunk is not None:
                        produce(broker, topic, chunk)
                finally:
                    os.kill(worker.process.pid, signal.SIGCONT)
                if stall:
                    if proxy.triggered.wait(5):
                        stalls += 1
                        time.sleep(5)
                        proxy.cut()
                    proxy.restore()
                    time.sleep(2)
            points, _ = stream_output(broker, unique_topics, len(reference), timeout=150, reference=reference,
                                      worker=worker)
            wait_for(lambda: events_counted(worker) >= len(messages), 30, message="every event counted")
            counted = events_counted(worker)
            failed = failures()
            assert worker.process.poll() is None
            log = worker.log()
        finally:
            worker.stop()
    found = distinct(points)
    assert_same_points(list(found.values()), [point_content(p) for p in reference])
    assert counted == len(messages), f"{counted} events counted of {len(messages)}"
    assert failed["ingest"] >= 1 and re.search(r"kept and sent again \(\d+ partials messages, [1-9]", log), log[-3000:]
    assert failed["aggregate"] >= 1 and "delivering points or detector state failed" in log, log[-3000:]
    print(f"stall: {stalls} stalls of 5 s, each ended by a cut; {len(messages)} events counted {counted:.0f}; windows "
          f"{len(found)}/{len(reference)} equal to replay; delivery failures ingest {failed['ingest']:.0f}, "
          f"aggregate {failed['aggregate']:.0f}")


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_a_worker_restarted_on_a_quiet_stream_scores_the_windows_its_predecessor_left_open(
        broker, unique_topics, tmp_path, small_scenario):
    """The first worker reads every event and stops (SIGTERM) before its partitions have been idle
    for the idle timeout (30 s here), so the last windows are still open; nothing is produced
    after. The worker started next reads nothing new: once idle it must flush past what the first
    had read (the partials' reports), else those windows never close."""
    reference, messages = small_scenario["points"], small_scenario["messages"]
    env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(small_scenario["config"]))
    first, second = Worker(env, tmp_path, name="first"), Worker(env, tmp_path, name="second")
    try:
        first.start().wait_ready(90)
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages)
        wait_for(lambda: events_counted(first) >= len(messages), 25, interval=0.2, message="every event counted")
        first.stop()
        assert first.process.returncode == 0, first.log()[-2000:]
        second.start().wait_ready(90)
        points, _ = stream_output(broker, unique_topics, len(reference), timeout=120, reference=reference,
                                  worker=second)
        reread = events_counted(second)
    finally:
        first.stop()
        second.stop()
    found = distinct(points)
    assert_same_points(list(found.values()), [point_content(p) for p in reference])
    assert reread == 0, f"the second worker read {reread} events again"
    print(f"restart on a quiet stream: {len(messages)} events, all read by the first worker, none by the "
          f"second; windows {len(found)}/{len(reference)} equal to replay")


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_kafka_away_longer_than_the_idle_timeout_makes_no_event_late(unique_topics, tmp_path, small_scenario):
    """Every connection cut for 40 s, longer than the idle timeout (30 s), right after the worker
    read the first half of the events, which ends inside a window; the rest of that window's
    events come 5 s after Kafka is back, the worker's first fetches answered empty before them.
    Idleness is time without events while the partition is read, and seen read: had the watermark
    jumped during the outage, or at the first answer after it, they would count late."""
    reference, messages = small_scenario["points"], small_scenario["messages"]
    with broker_behind_proxy(tmp_path / "tansu.log") as (broker, proxy):
        env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(small_scenario["config"]))
        worker = Worker(env, tmp_path)
        topic = unique_topics["BLIPWATCH_EVENTS_TOPIC"]
        half = next(i for i, (_, line) in enumerate(messages) if b'"2026-01-05T17:20:30' in line)
        try:
            worker.start().wait_ready(90)
            produce(broker, topic, messages[:half])
            wait_for(lambda: events_counted(worker) >= half, 60, interval=0.2, message="the first half counted")
            proxy.cut()
            time.sleep(40)
            proxy.restore()
            time.sleep(5)   # the producers' backlog comes a little after the worker reads again
            produce(broker, topic, messages[half:])
            points, _ = stream_output(broker, unique_topics, len(reference), timeout=150, reference=reference,
                                      worker=worker)
            wait_for(lambda: events_counted(worker) >= len(messages), 30, message="every event counted")
            late = worker.metric("blipwatch_events_late_total") + worker.metric("blipwatch_partials_late_total")
            assert worker.process.poll() is None
        finally:
            worker.stop()
    found = distinct(points)
    assert late == 0, f"{late:.0f} events or partial counts late after the outage"
    assert_same_points(list(found.values()), [point_content(p) for p in reference])
    print(f"Kafka away 40 s (idle timeout 30 s): {len(messages)} events, none late; windows "
          f"{len(found)}/{len(reference)} equal to replay")

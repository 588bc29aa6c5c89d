"""`blipwatch alerts tail`: what a person on call reads from the alerts topic."""

from __future__ import annotations

import subprocess
import time

import orjson
import pytest

from blipwatch.schemas.outputs import AnomalyAlert
from tests.helpers import BLIPWATCH, base_env, produce

pytestmark = pytest.mark.integration


def alert(status: str, observed: float, window_start: str, window_end: str) -> AnomalyAlert:
    key = "cart_abandonment_rate|channel=web@2026-01-05T19:01:00Z"
    return AnomalyAlert(
        alert_id=f"{key}#{status}@{window_end}", dedup_key=key, status=status, severity="warning",
        metric="cart_abandonment_rate", segment={"channel": "web"}, direction="up",
        window_start=window_start, window_end=window_end, observed=observed, expected=0.7076, lower=0.35,
        upper=0.9, score=0.99,
        numerator=56.0, denominator=57.0, started_at="2026-01-05T19:01:00Z",
        summary=f"Cart abandonment rate on channel=web is {observed:.2f}, expected 0.71 (0.35–0.90), since 19:01 UTC")


@pytest.fixture
def alerts_on_topic(broker, unique_topics):
    messages = [alert("firing", 0.98, "2026-01-05T19:02:00Z", "2026-01-05T19:03:00Z"),
                alert("resolved", 0.70, "2026-01-05T19:30:00Z", "2026-01-05T19:31:00Z")]
    produce(broker, unique_topics["BLIPWATCH_ALERTS_TOPIC"],
            [(m.dedup_key.encode(), m.to_json()) for m in messages])
    return messages


def tail(broker, topics, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*BLIPWATCH, "alerts", "tail", *args], env=base_env(broker, topics),
                          capture_output=True, text=True, timeout=timeout)


def test_tail_prints_one_readable_line_per_alert(broker, unique_topics, alerts_on_topic):
    result = tail(broker, unique_topics, "--from-beginning", "--max", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    firing, resolved = lines
    for word in ("2026-01-05 19:03Z", "FIRING", "warning", "cart_abandonment_rate", "channel=web",
                 "observed 0.98 vs expected 0.71 (0.35–0.90)", "since 19:01 UTC"):
        assert word in firing, (word, firing)
    assert "RESOLVED" in resolved and "observed 0.70 vs expected 0.71" in resolved and "19:31Z" in resolved


def test_tail_json_prints_the_messages_unchanged(broker, unique_topics, alerts_on_topic):
    result = tail(broker, unique_topics, "--from-beginning", "--max", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert [orjson.loads(line) for line in result.stdout.splitlines()] == [m.to_dict() for m in alerts_on_topic]


def test_tail_follows_only_new_alerts_and_stops_at_timeout(broker, unique_topics, alerts_on_topic):
    began = time.monotonic()
    follower = subprocess.Popen([*BLIPWATCH, "alerts", "tail", "--timeout", "12"], env=base_env(broker, unique_topics),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)   # the follower is reading by now
        new = alert("firing", 0.97, "2026-01-06T08:14:00Z", "2026-01-06T08:15:00Z")
        produce(broker, unique_topics["BLIPWATCH_ALERTS_TOPIC"], [(new.dedup_key.encode(), new.to_json())])
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and "2026-01-06 08:15Z" in lines[0], f"only the alert sent after the start: {out!r}"
    assert 12 <= time.monotonic() - began < 60


def test_tail_says_what_to_do_when_kafka_is_not_there(unique_topics):
    from blipwatch.stream_app.embedded_broker import free_port
    from tests.conftest import child_env

    env = child_env(**unique_topics, BLIPWATCH_BROKER=f"kafka://127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = subprocess.run([*BLIPWATCH, "alerts", "tail", "--timeout", "5"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert time.monotonic() - started < 20   # within its --timeout and start-up, not kafka-python's 30 s
    assert result.returncode == 1
    assert "cannot reach Kafka" in result.stderr and "BLIPWATCH_BROKER" in result.stderr

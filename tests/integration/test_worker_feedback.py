"""A verdict reaches the worker on the embedded broker: `blipwatch feedback KEY --verdict
false_positive` resolves the incident still firing within seconds (a resolved alert "Resolved by
feedback" on the alerts topic), the worker counts it in /metrics, and after a restart the verdict is
not acted on again and the incident, still going on, does not page again."""

from __future__ import annotations

import subprocess
import time

import orjson
import pytest

from tests.helpers import BLIPWATCH, Worker, base_env, produce, read_topic
from tests.integration.test_dashboards_prometheus import MID_INCIDENT, scenario  # noqa: F401 - fixture
from tests.services import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.timeout(600)]  # a worker warmed up, then restarted


def feedback_topics(unique_topics: dict[str, str]) -> dict[str, str]:
    stem = unique_topics["BLIPWATCH_APP_ID"].removesuffix("-app")
    return {"BLIPWATCH_FEEDBACK_TOPIC": f"{stem}-feedback", "BLIPWATCH_CALENDAR_TOPIC": f"{stem}-calendar"}


def alerts(broker, topic: str) -> list[dict]:
    return [orjson.loads(record.value) for record in read_topic(broker, topic, timeout=10)]


def test_a_false_positive_from_the_cli_resolves_the_firing_incident_within_seconds(
        broker, unique_topics, tmp_path, scenario):  # noqa: F811 - the imported fixture
    messages = scenario["messages"]
    onset = next(i for i, (_, line) in enumerate(messages) if MID_INCIDENT in line)
    env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(scenario["config"]), **feedback_topics(unique_topics))
    alerts_topic = unique_topics["BLIPWATCH_ALERTS_TOPIC"]
    with Worker(env, tmp_path) as worker:
        worker.wait_ready()
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages[:onset])

        def firing():
            return [a for a in alerts(broker, alerts_topic) if a["metric"] == "search_zero_results_rate"
                    and not a["segment"] and a["status"] == "firing"]

        key = wait_until(firing, timeout=180, interval=1, what="the incident firing")[0]["dedup_key"]
        assert not [a for a in alerts(broker, alerts_topic) if a["dedup_key"] == key and a["status"] == "resolved"]
        given = time.monotonic()
        done = subprocess.run([*BLIPWATCH, "feedback", key, "--verdict", "false_positive", "--note", "reindex test"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        [resolved] = wait_until(lambda: [a for a in alerts(broker, alerts_topic)
                                         if a["dedup_key"] == key and a["status"] == "resolved"],
                                timeout=30, interval=0.25, what="the incident resolved by the verdict")
        took = time.monotonic() - given
        assert resolved["summary"] == "Resolved by feedback: false_positive (reindex test)"
        assert took < 15, took      # the CLI's own start and bootstrap are most of it
        assert worker.metric("blipwatch_feedback_actions_total", verdict="false_positive", action="resolved") == 1
        assert worker.metric("blipwatch_feedback_verdicts", verdict="false_positive") == 1
        listed = subprocess.run([*BLIPWATCH, "feedback", "list"], env=env, capture_output=True, text=True, timeout=60)
        assert key in listed.stdout and "false_positive" in listed.stdout
    assert worker.process.returncode == 0, worker.log()[-3000:]
    # the effect survives a restart: the new worker re-reads the verdict, finds it acted on (series
    # state), and the incident, still going on in the events that follow, does not page again
    with Worker(env, tmp_path, name="restarted") as again:
        again.wait_ready()
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages[onset:])
        wait_until(lambda: _last_point_after(broker, unique_topics), timeout=240, interval=2,
                   what="the restarted worker scoring the overall search series past the incident")
        assert again.metric("blipwatch_feedback_actions_total", verdict="false_positive", action="resolved") == 0
    assert again.process.returncode == 0, again.log()[-3000:]
    overall = [a for a in alerts(broker, alerts_topic) if a["metric"] == "search_zero_results_rate" and not a["segment"]]
    assert [a["status"] for a in overall if a["dedup_key"] == key].count("resolved") == 1
    assert all(a["window_start"] <= resolved["window_start"] for a in overall if a["dedup_key"] == key)
    assert not [a for a in overall if a["dedup_key"] != key and a["window_start"] < "2026-01-05T18:45"], overall
    print(f"\nresolved {took:.1f} s after `blipwatch feedback` started: {resolved['summary']}")


def _last_point_after(broker, topics) -> bool:
    """The restarted worker has scored the overall search series past the incident (18:00-18:45)."""
    for record in read_topic(broker, topics["BLIPWATCH_POINTS_TOPIC"], timeout=10):
        point = orjson.loads(record.value)
        if point["series"] == "search_zero_results_rate|all" and point["window_start"] >= "2026-01-05T18:50":
            return True
    return False

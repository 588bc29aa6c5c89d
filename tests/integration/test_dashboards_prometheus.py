"""Every Grafana panel has data: a real Prometheus scrapes a real ``blipwatch worker`` fed by the
simulator with an incident that fires and resolves, and each PromQL expression of each dashboard
panel and annotation is run as Grafana runs it (a range query over the test's time span). A query
without a single finite value is a failing test, not a blank panel found in production.

The table of panels, queries and series counts is printed and written to
``$EVIDENCE_DIR/dashboard-queries.md`` (default: the test's tmp dir).
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from blipwatch.schemas.events import CANONICAL_EVENT_TYPES, REASONS
from blipwatch.tools import dashboards
from tests.helpers import BLIPWATCH, Worker, base_env, produce, read_topic
from tests.services import Prometheus, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SCENARIO = ["--scenario", "search_zero_results", "--start", "2026-01-05T17:00:00Z",
            "--incident-offset-hours", "1", "--hours", "2.25", "--seed", "7", "--sessions-per-minute", "60"]
#: Events up to here first: the incident (from 18:00) fires, and Prometheus scrapes it firing.
MID_INCIDENT = b'"2026-01-05T18:04'


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenario")
    events, config = folder / "events.jsonl", folder / "config.yaml"
    config.write_text("policy:\n  warmup: 30\n")
    subprocess.run([*BLIPWATCH, "simulate", *SCENARIO, "--out", str(events), "--quiet"], check=True, timeout=120)
    messages = []
    for line in events.read_bytes().splitlines():
        event = orjson.loads(line)
        messages.append(((event.get("customer_id") or event["session_id"]).encode(), line))
    return {"config": config, "messages": messages}


def evidence_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("EVIDENCE_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def range_series(prom: Prometheus, expr: str, start: float, end: float) -> tuple[int, int]:
    """``(series returned, series with at least one finite value)`` for Grafana's kind of query."""
    body = prom.get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step="1")
    assert body["status"] == "success", (expr, body)
    result = body["data"]["result"]
    finite = [s for s in result if any(math.isfinite(float(value)) for _, value in s["values"])]
    return len(result), len(finite)


def label_values(prom: Prometheus, query: str, start: float, end: float) -> list[str]:
    """Grafana's ``label_values(SELECTOR, LABEL)`` variable query, through Prometheus' label API."""
    selector, label = query[len("label_values("):-1].rsplit(",", 1)
    body = prom.get(f"/api/v1/label/{label.strip()}/values", **{"match[]": dashboards.substitute(selector)},
                    start=f"{start:.0f}", end=f"{end:.0f}")
    return body["data"]




@pytest.fixture(scope="module")
def dashboard_run(broker, scenario, tmp_path_factory):
    """One worker fed with the scenario, scraped every second; every dashboard query run over it.
    What people say is drawn too: a planned event going on now (wall clock) and one over the
    scenario's error_rate series, and a false_positive on the incident once it fires."""
    from datetime import datetime, timedelta, timezone

    from blipwatch.schemas.feedback import CalendarEntry, Feedback
    from blipwatch.stream_app.config import Settings
    from blipwatch.stream_app.feedback_topics import publish

    tmp_path = tmp_path_factory.mktemp("dashboards")
    stem = f"dash{time.time_ns() % 10**8}"
    topics = {"BLIPWATCH_EVENTS_TOPIC": f"{stem}-events", "BLIPWATCH_DLQ_TOPIC": f"{stem}-dlq",
              "BLIPWATCH_ALERTS_TOPIC": f"{stem}-alerts", "BLIPWATCH_POINTS_TOPIC": f"{stem}-points",
              "BLIPWATCH_PARTIALS_TOPIC": f"{stem}-partials", "BLIPWATCH_APP_ID": f"{stem}-app",
              "BLIPWATCH_FEEDBACK_TOPIC": f"{stem}-feedback", "BLIPWATCH_CALENDAR_TOPIC": f"{stem}-calendar"}
    messages = scenario["messages"]
    onset = next(i for i, (_, line) in enumerate(messages) if MID_INCIDENT in line)
    env = base_env(broker, topics, BLIPWATCH_CONFIG=str(scenario["config"]))
    settings = Settings.from_env({**topics, "BLIPWATCH_BROKER": broker.url, "BLIPWATCH_EMBEDDED_BROKER": "1"})
    now = datetime.now(timezone.utc).replace(microsecond=0)
    entries = [CalendarEntry("now", (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                             (now + timedelta(days=1)).isoformat().replace("+00:00", "Z"), "maintenance today"),
               CalendarEntry("errors", "2026-01-05T17:00:00Z", "2026-01-05T19:30:00Z", "error tracking test",
                             metrics=("error_rate",))]
    publish(settings, settings.calendar_topic, [(entry.key, entry.to_json()) for entry in entries])
    with Worker(env, tmp_path) as worker:
        worker.wait_ready()
        before_events = worker.metrics()
        with Prometheus(tmp_path, targets=[f"127.0.0.1:{worker.port}"], scrape_interval="1s") as prom:
            wait_until(prom.targets_up, timeout=30, what="Prometheus scraping the worker")
            start = time.time()
            produce(broker, topics["BLIPWATCH_EVENTS_TOPIC"], messages[:onset])
            # the annotation query needs a scrape while the incident fires: only then send the rest
            firing = wait_until(lambda: prom.query(
                'blipwatch_series_firing{metric="search_zero_results_rate"} == 1')["result"], timeout=180,
                                interval=1, what="Prometheus scraping a firing series")
            [key] = {a["dedup_key"] for a in map(orjson.loads, (r.value for r in read_topic(
                broker, topics["BLIPWATCH_ALERTS_TOPIC"], timeout=10))) if a["metric"] == "search_zero_results_rate"
                and not a["segment"]}
            verdict = Feedback(key, "false_positive", now.isoformat().replace("+00:00", "Z"), "kafka")
            publish(settings, settings.feedback_topic, [(verdict.key, verdict.to_json())])
            produce(broker, topics["BLIPWATCH_EVENTS_TOPIC"], messages[onset:])
            wait_until(lambda: prom.query('blipwatch_alerts_total{status="resolved"} > 0')["result"],
                       timeout=180, interval=1, what="Prometheus scraping a resolved alert")
            wait_until(lambda: prom.query(f"sum(blipwatch_events_total) == {len(messages)}")["result"],
                       timeout=120, interval=1, what="Prometheus scraping every event counted")
            time.sleep(3)  # a few more scrapes after the last change, for rate() over the end
            end = time.time()
            rows = [(uid, title, expr, *range_series(prom, expr, start, end))
                    for uid, title, expr in dashboards.dashboard_queries()]
            variables = [(uid, f"variable ${name}", query, len(label_values(prom, query, start, end)))
                         for uid, name, query in dashboards.variable_queries()]

    table = ["| dashboard | panel | PromQL | series | with data |", "| --- | --- | --- | --- | --- |"]
    table += [f"| {uid} | {title} | `{expr}` | {count} | {finite} |" for uid, title, expr, count, finite in rows]
    table += [f"| {uid} | {name} | `{query}` | {count} values | |" for uid, name, query, count in variables]
    report = evidence_dir(tmp_path) / "dashboard-queries.md"
    report.write_text(f"Range queries, step 1 s, over {end - start:.0f} s of a worker fed with the "
                      f"search_zero_results scenario ({len(messages)} events). 'with data': series with at "
                      "least one finite value.\n\n" + "\n".join(table) + "\n")
    print(f"\n{report}:\n" + "\n".join(table))
    return {"before_events": before_events, "firing": firing, "rows": rows, "variables": variables}


def test_counters_with_bounded_labels_are_exported_at_zero_before_the_first_event(dashboard_run):
    before = dashboard_run["before_events"]
    for event_type in (*CANONICAL_EVENT_TYPES, "other"):
        assert before[("blipwatch_events_total", (("event_type", event_type),))] == 0
    for reason in REASONS:
        assert before[("blipwatch_events_invalid_total", (("reason", reason),))] == 0
    assert before[("blipwatch_events_late_total", ())] == 0


def test_every_dashboard_query_returns_data_from_a_worker_fed_with_a_simulated_incident(dashboard_run):
    assert any(s["metric"]["metric"] == "search_zero_results_rate" for s in dashboard_run["firing"])
    empty = [(uid, title, expr) for uid, title, expr, _, finite in dashboard_run["rows"]
             if not finite]
    assert not empty, f"dashboard queries without data: {empty}"
    assert all(count for *_, count in dashboard_run["variables"]), dashboard_run["variables"]



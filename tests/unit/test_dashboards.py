"""The Grafana dashboards: current with their generator, every panel queries something, every query
is PromQL that the real ``promtool`` accepts, over metrics the worker declares."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from blipwatch.stream_app import dashboards
from blipwatch.stream_app.alertmanager_bridge import BLIPS_DASHBOARD_PATH
from tests.services import find_binary

COMPOSE = dashboards.DASHBOARDS_DIR.parents[1]

#: The worker's metrics (stream_app/metrics.py) and Faust's Prometheus sensor (prefix blipwatch_faust).
WORKER_METRICS = {
    "blipwatch_events_total", "blipwatch_events_invalid_total", "blipwatch_events_late_total",
    "blipwatch_series_dropped_total", "blipwatch_windows_scored_total", "blipwatch_alerts_total",
    "blipwatch_alert_latency_seconds_bucket", "blipwatch_ingest_lag_messages", "blipwatch_series_tracked",
    "blipwatch_series_value", "blipwatch_series_expected", "blipwatch_series_lower", "blipwatch_series_upper",
    "blipwatch_series_score", "blipwatch_series_firing",
    "blipwatch_faust_total_rebalances", "blipwatch_faust_total_rebalances_recovering",
    "blipwatch_faust_messages_received_total",
}


def load(name: str) -> dict:
    return json.loads((dashboards.DASHBOARDS_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_committed_dashboard_json_is_what_the_generator_writes(name):
    committed = (dashboards.DASHBOARDS_DIR / f"{name}.json").read_text()
    assert committed == dashboards.render(dashboards.DASHBOARDS[name]), \
        "stale dashboard JSON: run `python -m blipwatch.stream_app.dashboards` and commit the result"


def test_every_panel_has_a_query():
    queries = dashboards.dashboard_queries()
    assert {uid for uid, _, _ in queries} == {"blipwatch-pipeline", "blipwatch-blips"}
    empty = [(uid, title) for uid, title, expr in queries if not expr.strip()]
    assert not empty, f"panels without a query: {empty}"


def test_every_query_is_valid_promql_by_promtool(tmp_path):
    queries = dashboards.dashboard_queries()
    # label_values(SELECTOR, label): the selector part must be valid PromQL too
    for uid, name, query in dashboards.variable_queries():
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        assert match, f"{uid} variable {name}: not a label_values(selector, label) query: {query!r}"
        queries.append((uid, f"variable {name}", dashboards.substitute(match.group(1))))
    rules = {"groups": [{"name": f"q{index}", "rules": [{"record": f"dashboard:q{index}", "expr": expr}]}
                        for index, (_, _, expr) in enumerate(queries)]}
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([find_binary("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    listing = "\n".join(f"q{i}: {uid} / {title}: {expr}" for i, (uid, title, expr) in enumerate(queries))
    assert result.returncode == 0, f"promtool rejected a query:\n{result.stdout}{result.stderr}\n{listing}"
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout + result.stderr


def test_queries_use_only_metrics_the_worker_exports():
    names = set()
    for _, _, expr in dashboards.dashboard_queries():
        names |= set(re.findall(r"\bblipwatch_\w+", expr))
    assert names <= WORKER_METRICS, f"unknown metrics: {sorted(names - WORKER_METRICS)}"


def test_blips_dashboard_has_metric_and_segment_variables_and_a_band_between_lower_and_upper():
    blips = load("blips")
    assert [variable["name"] for variable in blips["templating"]["list"]] == ["metric", "segment"]
    [band] = [panel for panel in blips["panels"] if panel.get("repeat") == "segment"]
    assert [target["legendFormat"] for target in band["targets"]] == ["value", "expected", "lower", "upper"]
    [upper] = [o for o in band["fieldConfig"]["overrides"] if o["matcher"] == {"id": "byName", "options": "upper"}]
    assert {"id": "custom.fillBelowTo", "value": "lower"} in upper["properties"]
    assert "blipwatch_series_firing" in blips["annotations"]["list"][0]["expr"]


def test_panels_use_the_provisioned_datasource_and_have_unique_ids():
    provisioned = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())
    [datasource] = provisioned["datasources"]
    assert datasource["uid"] == dashboards.DATASOURCE["uid"]
    for name in dashboards.DASHBOARDS:
        panels = [p for p in dashboards._walk_panels(load(name)["panels"])]
        assert len({p["id"] for p in panels}) == len(panels)
        for panel in panels:
            if panel["type"] != "row":
                assert panel["datasource"] == dashboards.DATASOURCE, panel["title"]


def test_alert_dashboard_links_point_at_the_blips_dashboard():
    assert BLIPS_DASHBOARD_PATH.split("/")[2] == load("blips")["uid"]

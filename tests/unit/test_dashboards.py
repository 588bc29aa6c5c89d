"""The Grafana dashboards: current with their generator, every panel queries something, every query
is PromQL that the real ``promtool`` accepts, over metrics the worker declares."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import blipwatch
from blipwatch.stream_app.alertmanager_mapping import BLIPS_DASHBOARD_PATH
from blipwatch.tools import dashboards
from tests.services import find_binary

REPOSITORY = Path(__file__).resolve().parents[2]
COMPOSE = REPOSITORY / "compose"
DASHBOARDS_DIR = COMPOSE / "grafana" / "dashboards"

#: The worker's metrics (stream_app/metrics.py) and Faust's Prometheus sensor (prefix blipwatch_faust).
WORKER_METRICS = {
    "blipwatch_events_total", "blipwatch_events_invalid_total", "blipwatch_events_late_total",
    "blipwatch_series_dropped_total", "blipwatch_windows_scored_total", "blipwatch_alerts_total",
    "blipwatch_alert_latency_seconds_bucket", "blipwatch_ingest_lag_messages", "blipwatch_series_tracked",
    "blipwatch_series_value", "blipwatch_series_expected", "blipwatch_series_lower", "blipwatch_series_upper",
    "blipwatch_series_score", "blipwatch_series_firing",
    "blipwatch_faust_total_rebalances", "blipwatch_faust_total_rebalances_recovering",
    "blipwatch_faust_messages_received_total",
    "blipwatch_feedback_verdicts", "blipwatch_feedback_records_rejected_total", "blipwatch_feedback_actions_total",
    "blipwatch_calendar_entries", "blipwatch_calendar_active", "blipwatch_points_suppressed_total",
    "blipwatch_series_suppressed",
}


def load(name: str) -> dict:
    return json.loads((DASHBOARDS_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_committed_dashboard_json_is_what_the_generator_writes(name):
    committed = (DASHBOARDS_DIR / f"{name}.json").read_text()
    assert committed == dashboards.render(dashboards.DASHBOARDS[name]), \
        "stale dashboard JSON: run `python -m blipwatch.tools.dashboards` and commit the result"


def test_the_default_folder_is_the_repository_compose_dashboards():
    assert dashboards.repository_dashboards_dir() == DASHBOARDS_DIR
    assert {uid for uid, _, _ in dashboards.dashboard_queries()} == \
        {uid for uid, _, _ in dashboards.dashboard_queries(DASHBOARDS_DIR)}


def test_the_generator_writes_to_the_folder_it_is_given(tmp_path):
    done = subprocess.run([sys.executable, "-m", "blipwatch.tools.dashboards", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == sorted(f"{n}.json" for n in dashboards.DASHBOARDS)
    for name in dashboards.DASHBOARDS:
        assert (tmp_path / "out" / f"{name}.json").read_text() == (DASHBOARDS_DIR / f"{name}.json").read_text()


def test_an_installed_package_without_the_repository_says_so_in_one_line(tmp_path):
    site = tmp_path / "site-packages"
    shutil.copytree(Path(blipwatch.__file__).parent, site / "blipwatch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.raises(dashboards.NoRepository, match="installed without its repository"):
        dashboards.repository_dashboards_dir(site / "blipwatch")
    done = subprocess.run([sys.executable, "-m", "blipwatch.tools.dashboards"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("blipwatch.tools.dashboards: no compose/grafana/dashboards beside") and \
        "pass the dashboards' folder" in line, done.stderr
    assert not [p.name for p in tmp_path.rglob("*.json") if p.name.replace(".json", "") in dashboards.DASHBOARDS]


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

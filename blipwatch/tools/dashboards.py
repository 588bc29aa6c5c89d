"""The Grafana dashboards, as code: ``python -m blipwatch.tools.dashboards [DIR]`` writes them to
DIR, by default the repository's ``compose/grafana/dashboards/`` (committed;
``tests/unit/test_dashboards.py`` fails when they are stale). Built with Grafana's own
``grafana-foundation-sdk`` (a test extra), so the JSON has the shape Grafana expects; every query is
PromQL over the metrics in ``stream_app/metrics.py``.

``dashboard_queries()`` reads the committed JSON back and lists every query with its template
variables filled in, so tests can run each one against a real Prometheus.

The committed JSON lives in the repository, not in the package: ``repository_dashboards_dir()``
finds it beside the checkout this ``blipwatch`` was imported from, and says so in one line when
``blipwatch`` is an installed package with no repository around it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import blipwatch

#: Fixed uid of the Prometheus datasource (``compose/grafana/provisioning/datasources``).
DATASOURCE = {"type": "prometheus", "uid": "blipwatch-prometheus"}
#: Where the committed dashboards sit in the repository.
DASHBOARDS_IN_REPOSITORY = Path("compose", "grafana", "dashboards")
#: What ``dashboard_queries`` puts in place of Grafana's variables: valid PromQL matching anything.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

RATE = "[$__rate_interval]"
#: Per annotation (by name): its title and tags (Prometheus annotation options the SDK does not model).
ANNOTATION_TEXT = {
    "Blip alerts firing": ("{{metric}} firing on {{segment}}", "metric,segment"),
    "Suppressed by feedback": ("{{metric}} on {{segment}} suppressed: {{cause}}", "metric,segment,cause"),
    "Planned events": ("a planned event (calendar) is going on", ""),
    "Verdicts acted on": ("verdict {{verdict}}: {{action}}", "verdict,action"),
}
SERIES = 'metric=~"$metric", segment=~"$segment"'


def _panel(title: str, targets: list[tuple[str, str]], *, unit: str = "short", width: int = 12,
           height: int = 8, description: str = ""):
    from grafana_foundation_sdk.builders import common, prometheus, timeseries
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    panel = (timeseries.Panel().title(title).unit(unit).span(width).height(height)
             .datasource(DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"]))
             .fill_opacity(10).line_width(1).show_points("never")
             .legend(common.VizLegendOptions().display_mode("list").placement("bottom").show_legend(True))
             .tooltip(common.VizTooltipOptions().mode("multi").sort("desc")))
    if description:
        panel = panel.description(description)
    for ref_id, (expr, legend) in zip("ABCDEFGH", targets):
        panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).range())
    return panel


def pipeline_health():
    """Is the stream healthy: input rate, bad input, lag, alert latency, rebalances."""
    from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

    return (
        Dashboard("blipwatch pipeline health").uid("blipwatch-pipeline").tags(["blipwatch"])
        .refresh("10s").time("now-1h", "now").timezone("utc").editable()
        .with_row(Row("Input"))
        .with_panel(_panel("Events per second by type", [
            (f"sum by (event_type) (rate(blipwatch_events_total{RATE}))", "{{event_type}}")], unit="ops"))
        .with_panel(_panel("Invalid and late events per second", [
            (f"sum by (reason) (rate(blipwatch_events_invalid_total{RATE}))", "invalid: {{reason}}"),
            (f"sum(rate(blipwatch_events_late_total{RATE}))", "late (after allowed lateness)")], unit="ops",
            description="Invalid events go to the DLQ topic with their reason; late events arrived after "
                        "their window closed and were not counted."))
        .with_panel(_panel("Consumer lag per partition (events topic)", [
            ("max by (partition) (blipwatch_ingest_lag_messages)", "partition {{partition}}")],
            unit="short", description="Messages on the events topic not yet read by the workers."))
        .with_panel(_panel("Window close to alert published latency", [
            (f"histogram_quantile(0.5, sum by (le) (rate(blipwatch_alert_latency_seconds_bucket{RATE})))", "p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(blipwatch_alert_latency_seconds_bucket{RATE})))", "p99")],
            unit="s"))
        .with_row(Row("Scoring and alerts"))
        .with_panel(_panel("Windows scored per second by metric", [
            (f"sum by (metric) (rate(blipwatch_windows_scored_total{RATE}))", "{{metric}}")], unit="ops"))
        .with_panel(_panel("Alerts published per minute", [
            (f"sum by (metric, status, severity) (rate(blipwatch_alerts_total{RATE})) * 60",
             "{{metric}} {{status}} {{severity}}")], unit="short"))
        .with_panel(_panel("Series tracked and dropped", [
            ("sum(blipwatch_series_tracked)", "tracked"),
            (f"sum by (metric) (rate(blipwatch_series_dropped_total{RATE}))", "dropped/s: {{metric}}")],
            description="Dropped: new segments refused because the cardinality cap was reached."))
        .with_row(Row("Workers (Faust)"))
        .with_panel(_panel("Rebalances", [
            ("sum by (instance) (blipwatch_faust_total_rebalances)", "rebalances {{instance}}"),
            ("sum by (instance) (blipwatch_faust_total_rebalances_recovering)", "recovering {{instance}}")],
            description="Rebalances since each worker started; a rising line means workers join, leave or flap."))
        .with_panel(_panel("Faust messages received per second", [
            (f"sum by (instance) (rate(blipwatch_faust_messages_received_total{RATE}))", "{{instance}}")],
            unit="ops"))
        .build()
    )


def blips():
    """Per metric and segment: the value inside its expected band, the score, and when alerts fired."""
    from grafana_foundation_sdk.builders.dashboard import AnnotationQuery, Dashboard, QueryVariable
    from grafana_foundation_sdk.models.dashboard import (DataSourceRef, DynamicConfigValue, VariableRefresh,
                                                         VariableSort)

    datasource = DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"])
    band = (
        _panel("$metric on $segment", [
            (f"max by (metric, segment) (blipwatch_series_value{{{SERIES}}})", "value"),
            (f"max by (metric, segment) (blipwatch_series_expected{{{SERIES}}})", "expected"),
            (f"max by (metric, segment) (blipwatch_series_lower{{{SERIES}}})", "lower"),
            (f"max by (metric, segment) (blipwatch_series_upper{{{SERIES}}})", "upper")],
            width=24, height=9, description="The metric per window with the band the detector expected it in; "
                                            "red marks show when an alert fired.")
        .repeat("segment").repeat_direction("v")
        .override_by_name("upper", [DynamicConfigValue("custom.fillBelowTo", "lower"),
                                    DynamicConfigValue("custom.fillOpacity", 20),
                                    DynamicConfigValue("custom.lineWidth", 0),
                                    DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "green"})])
        .override_by_name("lower", [DynamicConfigValue("custom.lineWidth", 0),
                                    DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "green"})])
        .override_by_name("expected", [DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                                       DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "green"})])
        .override_by_name("value", [DynamicConfigValue("custom.lineWidth", 2),
                                    DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "blue"})])
    )
    return (
        Dashboard("blipwatch blips").uid("blipwatch-blips").tags(["blipwatch"])
        .refresh("10s").time("now-3h", "now").timezone("utc").editable()
        .with_variable(QueryVariable("metric").label("Metric").datasource(datasource)
                       .query("label_values(blipwatch_series_value, metric)")
                       .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))
        .with_variable(QueryVariable("segment").label("Segment").datasource(datasource)
                       .query('label_values(blipwatch_series_value{metric=~"$metric"}, segment)')
                       .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
                       .multi(True).include_all(True))
        .annotation(AnnotationQuery().name("Blip alerts firing").datasource(datasource).enable(True)
                    .icon_color("red").expr(f"max by (metric, segment) (blipwatch_series_firing{{{SERIES}}}) == 1"))
        # what people said: a point suppressed (calendar, false_positive pattern, min_change), a
        # planned event going on, a verdict acted on (docs/ops.md, "Feedback on incidents")
        .annotation(AnnotationQuery().name("Suppressed by feedback").datasource(datasource).enable(True)
                    .icon_color("purple")
                    .expr(f"max by (metric, segment, cause) (blipwatch_series_suppressed{{{SERIES}}}) == 1"))
        .annotation(AnnotationQuery().name("Planned events").datasource(datasource).enable(True)
                    .icon_color("blue").expr("max(blipwatch_calendar_active) > 0"))
        .annotation(AnnotationQuery().name("Verdicts acted on").datasource(datasource).enable(True)
                    .icon_color("orange")
                    .expr("sum by (verdict, action) (increase(blipwatch_feedback_actions_total[2m])) > 0"))
        .with_panel(_panel("Series firing now (all metrics)", [
            ("sum(blipwatch_series_firing)", "firing")], width=8, height=6))
        .with_panel(_panel("Anomaly score", [
            (f"max by (segment) (blipwatch_series_score{{{SERIES}}})", "{{segment}}")],
            unit="percentunit", width=8, height=6, description="0..1, higher = more anomalous."))
        .with_panel(_panel("Alerts published for $metric", [
            (f'sum by (status, severity) (increase(blipwatch_alerts_total{{metric=~"$metric"}}{RATE}))',
             "{{status}} {{severity}}")], width=8, height=6))
        .with_panel(band)
        .with_panel(_panel("Points suppressed per minute for $metric", [
            (f'sum by (cause) (rate(blipwatch_points_suppressed_total{{metric=~"$metric"}}{RATE})) * 60', "{{cause}}")],
            width=12, height=6, description="Rare points that did not page: inside a planned event (calendar), "
                                            "a pattern called a false positive, or a change below min_change."))
        .with_panel(_panel("Verdicts and planned events", [
            ("sum by (verdict) (blipwatch_feedback_verdicts)", "{{verdict}}"),
            ("max(blipwatch_calendar_entries)", "calendar entries"),
            ("max(blipwatch_calendar_active)", "planned events now"),
            (f"sum by (topic) (rate(blipwatch_feedback_records_rejected_total{RATE}))", "rejected/s {{topic}}")],
            width=12, height=6))
        .build()
    )


DASHBOARDS = {"pipeline-health": pipeline_health, "blips": blips}


def render(build) -> str:
    """A dashboard as the JSON Grafana provisions (stable key order, so regeneration diffs cleanly)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    document = json.loads(json.dumps(build(), cls=JSONEncoder))
    document["annotations"] = document.get("annotations") or {"list": []}
    document["templating"] = document.get("templating") or {"list": []}
    for variable in document["templating"]["list"]:
        variable.pop("id", None)  # the SDK gives every variable the same placeholder id
    for panel_id, panel in enumerate(_walk_panels(document["panels"]), start=1):
        panel["id"] = panel_id  # Grafana wants unique panel ids; the SDK leaves them unset or 0
    for annotation in document["annotations"]["list"]:
        # Prometheus annotation options the SDK does not model: one mark per firing series and step
        title, tags = ANNOTATION_TEXT[annotation["name"]]
        annotation.update({"step": "60s", "titleFormat": title, "tagKeys": tags, "useValueForTime": False})
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


class NoRepository(RuntimeError):
    """The dashboards' folder was not given and there is no repository checkout to find it in."""


def repository_dashboards_dir(package_dir: Path | None = None) -> Path:
    """``compose/grafana/dashboards`` of the repository checkout that holds the ``blipwatch`` package
    (``package_dir``, default the one imported): the checkout is the package's parent folder when
    that folder has the project's ``pyproject.toml`` and ``compose/`` beside the package."""
    package_dir = Path(blipwatch.__file__).resolve().parent if package_dir is None else package_dir
    root = package_dir.parent
    if not ((root / "pyproject.toml").is_file() and (root / DASHBOARDS_IN_REPOSITORY).is_dir()):
        raise NoRepository(f"no {DASHBOARDS_IN_REPOSITORY} beside {package_dir} (blipwatch installed without "
                           f"its repository?): run from a checkout, or pass the dashboards' folder")
    return root / DASHBOARDS_IN_REPOSITORY


def write(directory: Path | None = None) -> list[Path]:
    directory = repository_dashboards_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in DASHBOARDS.items():
        path = directory / f"{name}.json"
        path.write_text(render(build))
        paths.append(path)
    return paths


def _walk_panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def substitute(expr: str) -> str:
    """Grafana variables replaced so the query runs as plain PromQL and matches every value.

    >>> substitute('rate(x{metric=~"$metric", segment=~"${segment}"}[$__rate_interval])')
    'rate(x{metric=~".*", segment=~".*"}[1m])'
    """
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard_queries(directory: Path | None = None) -> list[tuple[str, str, str]]:
    """``(dashboard uid, panel title, PromQL)`` for every panel target and annotation of the committed
    dashboards, variables substituted (``substitute``). Annotation entries are titled ``annotation: NAME``.
    A panel without a query is listed with an empty expression, so a test can see it.
    """
    queries = []
    for path in _committed(directory):
        document = json.loads(path.read_text())
        uid = document["uid"]
        for panel in _walk_panels(document.get("panels", [])):
            if panel.get("type") == "row":
                continue
            exprs = [target.get("expr", "") for target in panel.get("targets", [])] or [""]
            queries.extend((uid, panel.get("title", ""), substitute(expr)) for expr in exprs)
        for annotation in document.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                queries.append((uid, f"annotation: {annotation['name']}", substitute(annotation["expr"])))
    return queries


def variable_queries(directory: Path | None = None) -> list[tuple[str, str, str]]:
    """``(dashboard uid, variable name, query)`` for the template variables (``label_values(...)``)."""
    result = []
    for path in _committed(directory):
        document = json.loads(path.read_text())
        for variable in document.get("templating", {}).get("list", []):
            query = variable.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            result.append((document["uid"], variable["name"], query))
    return result


def _committed(directory: Path | None) -> list[Path]:
    directory = repository_dashboards_dir() if directory is None else directory
    return sorted(directory.glob("*.json"))


if __name__ == "__main__":
    if len(sys.argv) > 2 or sys.argv[1:2] in (["-h"], ["--help"]):
        sys.exit("usage: python -m blipwatch.tools.dashboards [DIR]  (default: the repository's "
                 f"{DASHBOARDS_IN_REPOSITORY})")
    try:
        for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
            print(written)
    except NoRepository as exc:
        sys.exit(f"blipwatch.tools.dashboards: {exc}")

"""Scoring alerts against labelled incidents (``blipwatch evaluate``): pure, no I/O but reading files.

An incident is *detected* by a firing alert when

- the alert's metric is one of the incident's metrics,
- its segment is the incident's segment, a sub-segment of it (more specific: ``{"channel":
  "web", "country": "DE"}`` for ``{"channel": "web"}``) or a super-segment (less specific: the
  global ``{}`` series, or ``{"country": "DE"}`` for ``{"channel": "web", "country": "DE"}``),
  or its ``related`` list names such a segment (with that metric, or without one),
- and its window overlaps the incident, from its start to its end plus a grace of a few windows.

The delay is from the incident's start to the end of the first matching alert's window: the
earliest moment that alert could have been sent. Each ``dedup_key`` is one alert episode,
counted once however many messages it has. An episode that matches no expected incident is a
*false alert* — including one that fires during an incident labelled ``expect_alert: false``
(a busy evening) — unless it fires, on one of an expected incident's metrics during that
incident, in a segment that overlaps the incident's (``{"device": "mobile"}`` during an app
incident): those are reported as *related*, neither a detection nor a false alert.

>>> labels = {"start": "2026-01-05T00:00:00Z", "end": "2026-01-06T00:00:00Z", "incidents": [
...     {"name": "payment_outage", "metrics": ["payment_failure_rate"], "segment": {"country": "FR"},
...      "start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:40:00Z", "expect_alert": True}]}
>>> alerts = [{"dedup_key": "a", "status": "firing", "metric": "payment_failure_rate", "segment": {},
...            "window_start": "2026-01-05T09:01:00Z", "window_end": "2026-01-05T09:02:00Z"}]
>>> report = evaluate(alerts, labels)
>>> report["detected"], report["incidents"][0]["delay_windows"], report["false_alerts"]
(1, 2.0, 0)
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Iterable

from blipwatch.schemas import times
from blipwatch.schemas.outputs import segment_label

DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_GRACE_WINDOWS = 3


class EvaluationError(ValueError):
    """The alerts or labels cannot be read; the message says where and what is wrong."""


# --- reading ------------------------------------------------------------------------------

def epoch_seconds(value: Any, where: str) -> float:
    """Epoch seconds from an RFC 3339 string or epoch milliseconds (``schemas.times``)."""
    try:
        return times.parse_time(value).timestamp()
    except ValueError as exc:
        raise EvaluationError(f"{where}: {exc}") from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in JSON")


def read_json(text: str, where: str) -> Any:
    """Strict JSON: no NaN/Infinity, no number that overflows to infinity (1e400), bounded nesting."""
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{where}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise EvaluationError(f"{where}: JSON nested too deep") from None
    except ValueError as exc:
        raise EvaluationError(f"{where}: {exc}") from None


def load_alerts(path: str | Path) -> list[dict]:
    """Alert messages from a JSON-lines file (blank lines skipped)."""
    alerts = []
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                alert = read_json(line, f"{path} line {number}")
                if not isinstance(alert, dict):
                    raise EvaluationError(f"{path} line {number}: an alert must be a JSON object")
                alert.setdefault("_line", number)
                alerts.append(alert)
    except OSError as exc:
        raise EvaluationError(f"cannot read alerts {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EvaluationError(f"{path}: not UTF-8 text") from None
    return alerts


def load_labels(path: str | Path) -> dict:
    """A labels file from ``blipwatch simulate --labels`` (or a bare list of incidents)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EvaluationError(f"cannot read labels {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EvaluationError(f"labels {path}: not UTF-8 text") from None
    return read_json(text, f"labels {path}")


def _incidents(labels: dict | list) -> list[dict]:
    raw = labels.get("incidents") if isinstance(labels, dict) else labels
    if not isinstance(raw, list):
        raise EvaluationError("labels: expected an object with an 'incidents' list (blipwatch simulate --labels)")
    incidents = []
    for number, label in enumerate(raw, 1):
        where = f"labels incident {number}"
        if not isinstance(label, dict):
            raise EvaluationError(f"{where}: must be an object")
        for key in ("name", "metrics", "start", "end"):
            if key not in label:
                raise EvaluationError(f"{where}: missing {key!r}")
        metrics = label["metrics"]
        if isinstance(metrics, str):
            metrics = [metrics]
        if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
            raise EvaluationError(f"{where}: 'metrics' must be a list of metric names")
        segment = label.get("segment") or {}
        if not isinstance(segment, dict):
            raise EvaluationError(f"{where}: 'segment' must be an object such as {{\"channel\": \"web\"}}")
        start = epoch_seconds(label["start"], f"{where} start")
        end = epoch_seconds(label["end"], f"{where} end")
        if end < start:
            raise EvaluationError(f"{where}: ends before it starts")
        incidents.append({**label, "metrics": metrics, "segment": _segment(segment, where),
                          "_start": start, "_end": end, "_lags": _by_metric(label.get("lags"), where, "lags"),
                          "_leads": _by_metric(label.get("leads"), where, "leads"),
                          "expect_alert": bool(label.get("expect_alert", True)),
                          "subtle": bool(label.get("subtle", False))})
    return incidents


def _by_metric(raw: Any, where: str, key: str) -> dict[str, float]:
    """``lags``: seconds by which a metric shows the incident later than it happens (carts flagged
    abandoned half an hour after the last action): its alerts match up to that much after the end.
    ``leads``: seconds by which it shows it earlier (a funnel counts a journey in the window it
    started, so a checkout begun a minute before an outage and never paid counts before it): its
    alerts match from that much before the start.

    >>> _by_metric({"cart_abandonment_rate": 1200}, "labels incident 1", "lags")
    {'cart_abandonment_rate': 1200.0}
    >>> _by_metric({"cart_abandonment_rate": -5}, "labels incident 1", "leads")
    Traceback (most recent call last):
    ...
    blipwatch.tools.evaluation.EvaluationError: labels incident 1: 'leads' maps metric names to seconds (0 or more)
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v >= 0 for k, v in raw.items()):
        raise EvaluationError(f"{where}: {key!r} maps metric names to seconds (0 or more)")
    return {k: float(v) for k, v in raw.items()}


def _segment(segment: dict | None, where: str = "segment") -> dict[str, str]:
    segment = segment or {}
    if not all(isinstance(v, (str, int, float, bool)) for v in segment.values()):
        raise EvaluationError(f"{where}: segment values must be strings such as {{\"channel\": \"web\"}}")
    return {str(k): str(v) for k, v in segment.items()}


def _firing(alerts: Iterable[dict]) -> list[dict]:
    firing = []
    for number, alert in enumerate(alerts, 1):
        where = f"alert on line {alert.get('_line', number)}"
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise EvaluationError(f"{where}: status must be 'firing' or 'resolved', not {status!r}")
        if status != "firing":
            continue
        for key in ("metric", "window_start", "window_end"):
            if key not in alert:
                raise EvaluationError(f"{where}: missing {key!r}")
        segment = alert.get("segment") or {}
        if not isinstance(segment, dict):
            raise EvaluationError(f"{where}: 'segment' must be an object ({{}} for all)")
        if not isinstance(alert["metric"], str):
            raise EvaluationError(f"{where}: 'metric' must be a metric name")
        for name in ("dedup_key", "alert_id"):
            if not isinstance(alert.get(name) or "", str):
                raise EvaluationError(f"{where}: {name!r} must be a string")
        related = []
        for entry in alert.get("related") or []:
            if isinstance(entry, dict) and isinstance(entry.get("segment"), dict) and entry.get("firing", True):
                related.append((entry.get("metric"), _segment(entry["segment"], f"{where} related")))
        segment = _segment(segment, where)
        key = alert.get("dedup_key") or alert.get("alert_id") or f"{alert['metric']}|{sorted(segment.items())}"
        firing.append({"alert": alert, "key": str(key), "metric": alert["metric"], "segment": segment,
                       "related": related,
                       "start": epoch_seconds(alert["window_start"], f"{where} window_start"),
                       "end": epoch_seconds(alert["window_end"], f"{where} window_end")})
    return firing


# --- matching -----------------------------------------------------------------------------

def nested(a: dict[str, str], b: dict[str, str]) -> bool:
    """One segment contains the other (equal, sub- or super-segment)."""
    return a.items() <= b.items() or b.items() <= a.items()


def overlapping(a: dict[str, str], b: dict[str, str]) -> bool:
    """The segments can share customers: no dimension has two different values."""
    return all(b.get(k, v) == v for k, v in a.items())


def _in_time(message: dict, incident: dict, grace: float, metric: str | None = None) -> bool:
    """The message's window overlaps the incident, from its start less the lead of ``metric`` (the
    message's own by default) to its end plus ``grace`` plus the metric's lag."""
    metric = metric or message["metric"]
    lag, lead = incident["_lags"].get(metric, 0.0), incident["_leads"].get(metric, 0.0)
    return message["start"] < incident["_end"] + lag + grace and message["end"] > incident["_start"] - lead


def matches(message: dict, incident: dict, grace: float) -> bool:
    if message["metric"] in incident["metrics"] and nested(message["segment"], incident["segment"]) \
            and _in_time(message, incident, grace):
        return True
    return any((metric or message["metric"]) in incident["metrics"] and nested(segment, incident["segment"])
               and _in_time(message, incident, grace, metric)
               for metric, segment in message["related"])


def _related(message: dict, incident: dict) -> bool:
    return (message["metric"] in incident["metrics"] and overlapping(message["segment"], incident["segment"])
            and message["start"] < incident["_end"] and message["end"] > incident["_start"])


def check_parameters(window_seconds: float, grace_windows: float) -> None:
    """Both change the verdict: NaN, infinite or negative values are refused, not used."""
    if not (math.isfinite(window_seconds) and 0 < window_seconds <= 86_400):
        raise EvaluationError(f"--window-seconds {window_seconds:g} must be more than 0 and at most 86400")
    if not (math.isfinite(grace_windows) and 0 <= grace_windows <= 1_000):
        raise EvaluationError(f"--grace-windows {grace_windows:g} must be between 0 and 1000")


def evaluate(alerts: Iterable[dict], labels: dict | list, window_seconds: float = DEFAULT_WINDOW_SECONDS,
             grace_windows: float = DEFAULT_GRACE_WINDOWS) -> dict:
    """The evaluation report (what ``blipwatch evaluate --json`` prints)."""
    check_parameters(window_seconds, grace_windows)
    incidents = _incidents(labels)
    alerts = list(alerts)
    firing = _firing(alerts)
    grace = grace_windows * window_seconds
    episodes: dict[str, list[dict]] = {}
    for message in firing:
        episodes.setdefault(message["key"], []).append(message)
    for messages in episodes.values():
        messages.sort(key=lambda m: (m["end"], m["start"]))
    expected = [incident for incident in incidents if incident["expect_alert"]]
    classification: dict[str, str] = {}
    for key, messages in episodes.items():
        if any(matches(m, incident, grace) for m in messages for incident in expected):
            classification[key] = "true"
        elif any(_related(m, incident) for m in messages for incident in expected):
            classification[key] = "related"
        else:
            classification[key] = "false"

    results = []
    for incident in incidents:
        result = {k: v for k, v in incident.items() if not k.startswith("_")}
        if incident["expect_alert"]:
            matching = [m for m in firing if matches(m, incident, grace)]
            first = min(matching, key=lambda m: (m["end"], m["start"])) if matching else None
            result["detected"] = first is not None
            result["alert_episodes"] = len({m["key"] for m in matching})
            result["related_alerts"] = len({m["key"] for m in firing
                                            if classification[m["key"]] == "related" and _related(m, incident)})
            if first is not None:
                delay = max(0.0, first["end"] - incident["_start"])
                result["delay_seconds"] = round(delay, 3)
                result["delay_windows"] = round(delay / window_seconds, 2)
                result["first_alert"] = _brief(first)
            else:
                result["delay_seconds"] = result["delay_windows"] = result["first_alert"] = None
        else:
            during = [messages[0] for key, messages in episodes.items()
                      if classification[key] == "false" and _in_time(messages[0], incident, 0.0)]
            result["false_alerts_during"] = len(during)
        results.append(result)

    false_alerts = sorted((messages[0] for key, messages in episodes.items() if classification[key] == "false"),
                          key=lambda m: (m["end"], m["start"]))
    days = _days(labels, firing)
    delays = [r["delay_windows"] for r in results if r.get("detected")]
    detected = sum(1 for r in results if r.get("detected"))
    missed = [r for r in results if r["expect_alert"] and not r["detected"]]
    return {
        "incidents": results,
        "detected": detected,
        "missed": len(missed),
        "missed_subtle": sum(1 for r in missed if r["subtle"]),
        "median_delay_windows": round(statistics.median(delays), 2) if delays else None,
        "false_alerts": len(false_alerts),
        "false_alerts_per_day": round(len(false_alerts) / days, 3) if days else None,
        "related_alerts": sum(1 for c in classification.values() if c == "related"),
        "days": round(days, 4) if days else None,
        "window_seconds": window_seconds,
        "grace_windows": grace_windows,
        "alert_messages": len(alerts),
        "alert_episodes": len(episodes),
        "false_alert_list": [_brief(m) for m in false_alerts],
        "alerts_per_day": alerts_per_day(episodes),
    }


def alerts_per_day(episodes: dict[str, list[dict]]) -> dict[str, int]:
    """Alert episodes (incidents paged) per UTC day of their first firing window, days in order.

    >>> alerts_per_day({"a": [{"start": 86_400.0 * 3}], "b": [{"start": 86_400.0 * 3 + 60}], "c": [{"start": 0.0}]})
    {'1970-01-01': 1, '1970-01-04': 2}
    """
    days: dict[str, int] = {}
    for messages in episodes.values():
        day = times.format_time(min(m["start"] for m in messages) * 1000)[:10]
        days[day] = days.get(day, 0) + 1
    return dict(sorted(days.items()))


def compare_feedback(before: dict, after: dict) -> dict:
    """The same run's alerts without feedback (``before``) and replayed with it (``after``), per day.

    >>> compare_feedback({"alerts_per_day": {"2026-01-05": 2}, "detected": 1, "false_alerts": 2},
    ...                  {"alerts_per_day": {"2026-01-05": 1}, "detected": 1, "false_alerts": 1})["days"]
    [{'day': '2026-01-05', 'before': 2, 'after': 1}]
    """
    days = sorted(set(before["alerts_per_day"]) | set(after["alerts_per_day"]))
    return {"days": [{"day": day, "before": before["alerts_per_day"].get(day, 0),
                      "after": after["alerts_per_day"].get(day, 0)} for day in days],
            "detected": {"before": before["detected"], "after": after["detected"]},
            "false_alerts": {"before": before["false_alerts"], "after": after["false_alerts"]}}


def format_comparison(comparison: dict) -> str:
    lines = ["", "alerts per day (incidents paged), without and with feedback:", f"{'day':12} {'before':>7} {'after':>7}"]
    for row in comparison["days"]:
        lines.append(f"{row['day']:12} {row['before']:7d} {row['after']:7d}")
    lines.append(f"detected {comparison['detected']['before']} -> {comparison['detected']['after']}; "
                 f"false alerts {comparison['false_alerts']['before']} -> {comparison['false_alerts']['after']}")
    return "\n".join(lines)


def _brief(message: dict) -> dict:
    alert = message["alert"]
    return {key: alert.get(key) for key in ("alert_id", "dedup_key", "metric", "segment", "direction", "severity",
                                            "window_start", "window_end", "observed", "expected", "summary")}


def _days(labels: dict | list, firing: list[dict]) -> float:
    """Simulated days covered: the labels' run, else the alerts' span."""
    if isinstance(labels, dict) and labels.get("start") is not None and labels.get("end") is not None:
        seconds = epoch_seconds(labels["end"], "labels end") - epoch_seconds(labels["start"], "labels start")
    elif firing:
        seconds = max(m["end"] for m in firing) - min(m["start"] for m in firing)
    else:
        seconds = 0.0
    return max(0.0, seconds) / 86_400


# --- the text report ---------------------------------------------------------------------

def format_report(report: dict) -> str:
    lines = []
    days = f"{report['days']:.2f} simulated days" if report["days"] else "no time span"
    lines.append(f"{len(report['incidents'])} incidents, {report['alert_episodes']} alert episodes "
                 f"({report['alert_messages']} messages), {days}, windows of {report['window_seconds']:g} s")
    lines.append("")
    lines.append(f"{'incident':24} {'start (UTC)':17} {'segment':26} result")
    for incident in report["incidents"]:
        start = epoch_seconds(incident["start"], "start")
        head = f"{incident['name']:24} {times.format_time(start * 1000)[:16].replace('T', ' '):17} " \
               f"{segment_label(incident['segment'] or {}):26} "
        if not incident["expect_alert"]:
            count = incident["false_alerts_during"]
            lines.append(head + ("no alert expected, none fired" if not count else
                                 f"no alert expected, but {count} fired (counted as false alerts)"))
        elif incident["detected"]:
            first = incident["first_alert"]
            lines.append(head + f"detected after {incident['delay_seconds']:g} s ({incident['delay_windows']:g} "
                                f"windows) by {first['metric']} {first.get('direction') or ''} on "
                                f"{segment_label(first['segment'] or {})}".replace("  ", " "))
        else:
            lines.append(head + ("missed (subtle: may be missed)" if incident["subtle"] else "MISSED"))
    lines.append("")
    expected = sum(1 for i in report["incidents"] if i["expect_alert"])
    missed_names = [i["name"] for i in report["incidents"] if i["expect_alert"] and not i["detected"]]
    median = report["median_delay_windows"]
    lines.append(f"detected {report['detected']} of {expected} incidents"
                 + (f" (missed: {', '.join(missed_names)})" if missed_names else "")
                 + (f"; median delay {median:g} windows" if median is not None else ""))
    rate = report["false_alerts_per_day"]
    lines.append(f"false alerts: {report['false_alerts']}"
                 + (f" ({rate:g} per simulated day)" if rate is not None else "")
                 + (f"; {report['related_alerts']} more in segments overlapping an incident (not counted)"
                    if report["related_alerts"] else ""))
    for alert in report["false_alert_list"][:20]:
        lines.append(f"  {alert['window_start']}  {alert['metric']} {alert.get('direction') or ''} on "
                     f"{segment_label(alert['segment'] or {})}  (dedup_key {alert['dedup_key']})".replace("  on", " on"))
    if len(report["false_alert_list"]) > 20:
        lines.append(f"  ... and {len(report['false_alert_list']) - 20} more (--json lists them all)")
    if report.get("alerts_per_day"):
        lines.append("alerts per day: " + ", ".join(f"{day} {n}" for day, n in report["alerts_per_day"].items()))
    return "\n".join(lines)

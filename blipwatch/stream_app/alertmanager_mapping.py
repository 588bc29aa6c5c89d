"""What the Alertmanager bridge sends: one alerts-topic record decoded (or refused, with a reason)
and mapped to one Alertmanager v2 alert. Pure, no I/O."""

from __future__ import annotations

import json
import re
import urllib.parse
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from blipwatch.schemas import times
from blipwatch.schemas.outputs import segment_label


ALERTNAME = "CustomerBehaviourBlip"
#: The uid of the generated "blips" dashboard (``tools/dashboards.py``), for the dashboard link.
BLIPS_DASHBOARD_PATH = "/d/blipwatch-blips/blipwatch-blips"
RESERVED_LABELS = frozenset({"alertname", "metric", "severity", "dedup_key"})
#: A dead-lettered record keeps at most this much of its value (header ``truncated_from`` says so).


# --- the mapping: one alert message -> one Alertmanager alert (pure) ---------------------------


def optional_time(value: Any) -> datetime | None:
    """``schemas.times.parse_time``, None when absent (a bad value raises ``ValueError``)."""
    return None if value is None or value == "" else times.parse_time(value)


def rfc3339(moment: datetime) -> str:
    return times.format_time(round(moment.timestamp() * 1000))


def label_name(dimension: str) -> str:
    """A segment dimension as a valid Alertmanager label name that cannot clash with ours."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", dimension) or "_"
    if name[0].isdigit():
        name = "_" + name
    return f"segment_{name}" if name in RESERVED_LABELS or name.startswith("__") else name


def number(value: Any) -> str:
    """A figure for a human: 4 significant digits. ``number(0.123456) == '0.1235'``"""
    if value is None:
        return "n/a"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def dashboard_link(base_url: str, alert: Mapping[str, Any]) -> str:
    """The blips dashboard for this alert's metric and segment, an hour either side of its window."""
    params = {"var-metric": alert.get("metric", ""), "var-segment": segment_label(alert.get("segment") or {})}
    start, end = optional_time(alert.get("window_start")), optional_time(alert.get("window_end"))
    if start and end:
        params["from"] = str(int((start - timedelta(hours=1)).timestamp() * 1000))
        params["to"] = str(int((end + timedelta(hours=1)).timestamp() * 1000))
    return base_url.rstrip("/") + BLIPS_DASHBOARD_PATH + "?" + urllib.parse.urlencode(params)


def labels_for(alert: Mapping[str, Any]) -> dict[str, str]:
    """Alertmanager labels: what identifies the incident and what routing needs, nothing that changes
    while it fires except ``severity`` (an escalation is sent as a new alert; see ``AlertmanagerBridge``).

    ``dedup_key`` is a label so that two incidents on one series never overwrite each other in
    Alertmanager (e.g. an old one's resolution replayed after a restart); it has one value per
    incident, and Alertmanager forgets resolved alerts, so it does not accumulate.
    """
    labels = {
        "alertname": ALERTNAME,
        "metric": str(alert["metric"]),
        "severity": str(alert.get("severity") or "warning"),
        "dedup_key": str(alert["dedup_key"]),
    }
    for dimension, value in sorted((alert.get("segment") or {}).items()):
        labels[label_name(str(dimension))] = str(value)
    return labels


def to_alertmanager(alert: Mapping[str, Any], now: datetime, *, dashboard_url: str | None = None,
                    firing_ttl: float = 300.0) -> dict[str, Any]:
    """One blipwatch alert message as one alert for ``POST /api/v2/alerts``.

    Firing: ``endsAt`` is ``firing_ttl`` seconds from ``now`` (re-sent before then while firing).
    Resolved: ``endsAt`` is the end of the window that resolved it, never later than ``now`` nor
    earlier than ``startsAt``.

    >>> alert = {"alert_id": "a1", "dedup_key": "cart_abandonment_rate|channel=web|1", "status": "firing",
    ...          "severity": "critical", "metric": "cart_abandonment_rate", "segment": {"channel": "web"},
    ...          "direction": "up", "window_start": "2025-03-01T12:00:00Z", "window_end": "2025-03-01T12:01:00Z",
    ...          "started_at": "2025-03-01T12:00:00Z", "observed": 0.61, "expected": 0.3, "lower": 0.22,
    ...          "upper": 0.38, "score": 0.999, "numerator": 61, "denominator": 100,
    ...          "summary": "Cart abandonment on web rose to 61% (expected 30%).", "detector": "rate", "related": []}
    >>> now = optional_time("2025-03-01T12:01:05Z")
    >>> out = to_alertmanager(alert, now, dashboard_url="http://grafana:3000")
    >>> out["labels"]
    {'alertname': 'CustomerBehaviourBlip', 'metric': 'cart_abandonment_rate', 'severity': 'critical', 'dedup_key': 'cart_abandonment_rate|channel=web|1', 'channel': 'web'}
    >>> out["startsAt"], out["endsAt"]
    ('2025-03-01T12:00:00.000Z', '2025-03-01T12:06:05.000Z')
    >>> out["annotations"]["observed"], out["annotations"]["bounds"], out["annotations"]["dashboard"].split("&")[:2]
    ('0.61', '[0.22, 0.38]', ['http://grafana:3000/d/blipwatch-blips/blipwatch-blips?var-metric=cart_abandonment_rate', 'var-segment=channel%3Dweb'])
    >>> to_alertmanager({**alert, "status": "resolved", "window_end": "2025-03-01T12:09:00Z"}, now)["endsAt"]
    '2025-03-01T12:01:05.000Z'
    """
    starts_at = optional_time(alert.get("started_at")) or optional_time(alert.get("window_start")) or now
    starts_at = min(starts_at, now)  # a producer clock ahead of ours must not make Alertmanager refuse it
    if alert.get("status") == "resolved":
        ends_at = min(optional_time(alert.get("window_end")) or now, now)
        ends_at = max(ends_at, starts_at + timedelta(milliseconds=1))
    else:
        ends_at = now + timedelta(seconds=firing_ttl)
    segment = alert.get("segment") or {}
    related = ", ".join(f"{item.get('metric')}[{segment_label(item.get('segment') or {})}]"
                        for item in alert.get("related") or [])
    annotations = {
        "summary": str(alert.get("summary") or f"{alert.get('metric')} blip on {segment_label(segment)}"),
        "observed": number(alert.get("observed")),
        "expected": number(alert.get("expected")),
        "bounds": f"[{number(alert.get('lower'))}, {number(alert.get('upper'))}]",
        "score": number(alert.get("score")),
        "direction": str(alert.get("direction") or ""),
        "segment": segment_label(segment),
        "window": f"{alert.get('window_start')} .. {alert.get('window_end')}",
        "volume": f"{number(alert.get('numerator'))} / {number(alert.get('denominator'))}",
        "detector": str(alert.get("detector") or ""),
        "alert_id": str(alert.get("alert_id") or ""),
    }
    if related:
        annotations["related"] = related
    result: dict[str, Any] = {
        "labels": labels_for(alert),
        "annotations": annotations,
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at),
    }
    if dashboard_url:
        annotations["dashboard"] = result["generatorURL"] = dashboard_link(dashboard_url, alert)
    return result


class BadAlert(ValueError):
    """An alerts-topic record the bridge cannot map; ``reason`` is a short label for the metric."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


#: Why a record was skipped: the label values of ``blipwatch_alertmanager_bridge_skipped_total``.
SKIP_REASONS = ("not_json", "too_deep", "not_an_alert", "bad_field")


def decode_alert(value: bytes | str | None, now: datetime | None = None) -> dict[str, Any]:
    """One alerts-topic record as an alert the bridge can post, or ``BadAlert``; never another error.

    >>> decode_alert(b'{"dedup_key": "k", "metric": "m", "status": "firing"}')["metric"]
    'm'
    >>> for raw in (b"{not json", b"[" * 100_000, b'{"dedup_key": ["k"], "metric": "m"}',
    ...             b'{"dedup_key": "k", "metric": "m", "started_at": Infinity}',
    ...             b'{"dedup_key": "k", "metric": "m", "window_end": -1e20, "status": "resolved"}'):
    ...     try:
    ...         decode_alert(raw)
    ...     except BadAlert as exc:
    ...         print(exc.reason)
    not_json
    too_deep
    not_an_alert
    bad_field
    bad_field
    """
    try:
        alert = json.loads(value)
    except RecursionError:
        raise BadAlert("too_deep", "JSON nested too deep") from None
    except (ValueError, TypeError) as exc:
        raise BadAlert("not_json", f"not JSON ({str(exc)[:100]})") from None
    if not isinstance(alert, dict) or not isinstance(alert.get("dedup_key"), str) \
            or not isinstance(alert.get("metric"), str):
        raise BadAlert("not_an_alert", "not an alert object with dedup_key and metric strings")
    segment = alert.get("segment")
    if segment is not None and (not isinstance(segment, dict) or not all(
            isinstance(v, (str, int, float, bool)) for v in segment.values())):
        raise BadAlert("bad_field", "segment is not an object of plain values")
    try:
        # the same mapping the sender runs later, and its JSON: a record that fails either would
        # fail every batch it is posted in
        json.dumps(to_alertmanager(alert, now or datetime.now(timezone.utc), dashboard_url="http://x"),
                   allow_nan=False)
    except Exception as exc:  # noqa: BLE001 - RecursionError, OverflowError, ...: whatever it is, skip it
        raise BadAlert("bad_field", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return alert


def _skipped_counter():
    from prometheus_client import REGISTRY, Counter

    name = "blipwatch_alertmanager_bridge_skipped"
    existing = REGISTRY._names_to_collectors.get(name + "_total")  # this module imported twice (doctests)
    if existing is not None:
        return existing
    counter = Counter(name, "Alerts-topic records the Alertmanager bridge could not map and skipped, by reason",
                      ["reason"])
    for reason in SKIP_REASONS:
        counter.labels(reason)
    return counter


SKIPPED = _skipped_counter()

"""The worker's numbers as the demo shows them: totals from one scrape of its ``/metrics``."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field


@dataclass
class Reading:
    """Totals from one scrape of the worker's /metrics."""

    at: float = 0.0
    events: float = 0.0
    windows: float = 0.0
    series: float = 0.0
    alerts: dict[str, float] = field(default_factory=dict)   # by status

    @property
    def alert_messages(self) -> int:
        return int(sum(self.alerts.values()))


def scrape(url: str) -> Reading:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    reading = Reading(at=time.monotonic())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "blipwatch_events_total":
                reading.events += sample.value
            elif sample.name == "blipwatch_windows_scored_total":
                reading.windows += sample.value
            elif sample.name == "blipwatch_series_tracked":
                reading.series += sample.value
            elif sample.name == "blipwatch_alerts_total":
                status = sample.labels.get("status", "?")
                reading.alerts[status] = reading.alerts.get(status, 0.0) + sample.value
    return reading

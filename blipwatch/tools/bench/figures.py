"""Figures from what the bench reads off a worker: its ``/metrics`` (summed over labels, and
latency quantiles as Prometheus computes them from buckets) and its peak RSS from ``/proc``."""

from __future__ import annotations

import math
import urllib.request
from pathlib import Path


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def safe_scrape(port: int) -> dict:
    try:
        return scrape(port)
    except OSError:   # the web server is not up yet
        return {}


def total(samples: dict, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper bound, count)`` pairs.

    >>> histogram_quantile(0.5, [(0.1, 0), (0.25, 10), (0.5, 20), (math.inf, 20)])
    0.25
    >>> histogram_quantile(0.99, [(0.1, 0), (math.inf, 0)]) is None
    True
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def quantile_at(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, the nearest rank below (None for none).

    >>> quantile_at([0.1, 0.2, 0.3, 0.4], 0.5), quantile_at([0.1, 0.2, 0.3, 0.4], 0.99), quantile_at([], 0.5)
    (0.3, 0.4, None)
    """
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def rounded(value: float | None) -> float | None:
    """A figure as the report's JSON gives it: four decimals, None kept."""
    return None if value is None else round(value, 4)

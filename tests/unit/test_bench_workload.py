"""The bench's workloads: the live phase tracks about as many series as asked, as the backlog does.

Offline only (no broker): the series a worker will track are counted with the worker's own ingest
code (``IngestBatch``) over the very events the bench sends.
"""

from __future__ import annotations

import pytest

from blipwatch.detectors.catalogue import Catalogue
from blipwatch.stream_app.bench import LIVE_SESSIONS_PER_MINUTE, plan_live, spread_series
from blipwatch.stream_app.ingest import IngestBatch


def _series_made(timed, config) -> int:
    batch = IngestBatch(Catalogue.from_dict(config), 65536)
    for _, key, value, _ in timed:
        batch.add(key, value, "", None)
    return len(batch.aggregate.drain())


@pytest.mark.parametrize(("seconds", "speed", "series", "raised"),
                         [(20, 60, 1000, False), (30, 60, 3000, False), (60, 10, 10000, True)])
def test_live_plan_tracks_about_the_series_asked(seconds, speed, series, raised):
    plan = plan_live(seconds, speed, series)
    # the shop's traffic is raised only when the span is too short to make that many series
    assert (plan.sessions_per_minute > LIVE_SESSIONS_PER_MINUTE) is raised
    assert abs(plan.series - series) <= 0.03 * series, plan.series
    # the count is the worker's ingest over the bytes that are sent, not an estimate
    assert _series_made(plan.timed, plan.config) == plan.series
    # paced in event-time order over seconds x speed of event time
    times = [event_ms for event_ms, _, _, _ in plan.timed]
    assert times == sorted(times)
    assert (times[-1] - times[0]) / 1000 == pytest.approx(seconds * speed, rel=0.05)
    # a tracked series closes a window per minute of event time (rare types' series start late)
    assert plan.points >= 0.6 * plan.series * (seconds * speed / 60 - 2)


def test_live_plan_without_series_keeps_the_demo_shop():
    plan = plan_live(20, 60, 0)
    assert 100 < plan.series < 400   # the demo's own countries: a few hundred series
    assert "product_view_count" not in plan.config["metrics"]


def test_spread_series_adds_count_metrics_only_past_what_the_catalogue_holds():
    from blipwatch.stream_app.simulator import generate_events

    events = list(generate_events("demo", hours=0.5, seed=1, sessions_per_minute=150))
    small, countries = spread_series([dict(e) for e in events], 1000)
    assert countries >= 10 and not any(name.endswith("_count") and name != "complaint_count"
                                       for name in small["metrics"])
    large, countries = spread_series([dict(e) for e in events], 8000)
    assert "product_view_count" in large["metrics"]

"""The bench's workloads: the live phase tracks about as many series as asked, as the backlog does.

Offline only (no broker): the series a worker will track are counted with the worker's own ingest
code (``IngestBatch``) over the very events the bench sends.
"""

from __future__ import annotations

import pytest

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.tools.bench.live import LIVE_SESSIONS_PER_MINUTE, plan_live
from blipwatch.tools.bench.workload import spread_series
from blipwatch.stream_app.ingest import IngestBatch


def _series_made(timed, config) -> int:
    catalogue = Catalogue.from_dict(config)
    batch = IngestBatch(catalogue, 65536)
    for _, key, value, _ in timed:
        batch.add(key, value, "", None)
    # funnel series: those whose journeys are decided by the worker's idle flush after the last event
    newest = timed[-1][0]
    idle_flush = newest - newest % catalogue.window_ms + catalogue.window_ms + catalogue.lateness_ms
    return len(batch.advance_journeys({0: idle_flush}, batch.aggregate.drain()))


@pytest.mark.parametrize(("seconds", "speed", "series", "raised"),
                         [(20, 60, 1000, False), (30, 60, 3000, False),
                          pytest.param(60, 10, 10000, True, marks=pytest.mark.soak)])  # ~80 s
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
    from blipwatch.tools.simulator import generate_events

    events = list(generate_events("demo", hours=0.5, seed=1, sessions_per_minute=150))
    small, countries = spread_series([dict(e) for e in events], 1000)
    assert countries >= 10 and not any(name.endswith("_count") and name != "complaint_count"
                                       for name in small["metrics"])
    large, countries = spread_series([dict(e) for e in events], 8000)
    assert "product_view_count" in large["metrics"]


def test_shop_rate_squeezes_the_hour_into_events_over_rate_seconds():
    from blipwatch.schemas.events import decode_event
    from blipwatch.tools.bench.workload import plan_workload

    # without funnels: 133 s of event time decide no 5- or 30-minute journey, an hour does
    hour = plan_workload(20_000, 300, journeys=False)
    busy = plan_workload(20_000, 300, shop_rate=150, journeys=False)   # 133 s of event time
    assert hour.span_s == 3600 and busy.span_s == pytest.approx(20_000 / 150)
    times = [decode_event(value).occurred_at_ms for _, value, _ in busy.messages]
    assert times == sorted(times)
    assert (times[-1] - times[0]) / 1000 == pytest.approx(busy.span_s, abs=0.01)
    # the same events (keys and partitions), only their times moved: as many series
    assert [(key, p) for key, _, p in busy.messages] == [(key, p) for key, _, p in hour.messages]
    assert busy.series == hour.series
    # a busier shop closes fewer windows per event: 2 minutes of windows instead of 60
    assert 0 < busy.points_before_idle < hour.points_before_idle / 10
    assert not any(metric.get("kind") == "funnel" for metric in hour.config["metrics"].values())
    assert set(hour.ingest_us) == {"with_journeys", "without_journeys", "journey_stage"}


def test_shop_rate_too_high_for_the_events_says_how_many_are_needed():
    from blipwatch.tools.bench import BenchError
    from blipwatch.tools.bench.workload import plan_workload

    with pytest.raises(BenchError, match=r"span 20 s of event time.*at least 100 s \(--events 100,000\)"):
        plan_workload(20_000, 300, shop_rate=1000)


def test_comparing_journeys_on_and_off_uses_the_same_messages_with_and_without_funnels():
    from blipwatch.tools.bench.workload import plan_workload

    workload = plan_workload(20_000, 300, compare=True)
    off = workload.without_journeys
    assert workload.journeys and off is not None and not off.journeys
    assert off.messages == workload.messages
    funnels = {name for name, metric in workload.config["metrics"].items() if metric.get("kind") == "funnel"}
    assert funnels and set(off.config["metrics"]) == set(workload.config["metrics"]) - funnels
    assert 0 < off.series < workload.series and off.points_total < workload.points_total
    assert plan_workload(20_000, 300).without_journeys is None

"""The randomized shops (the detection yardstick): the generator against its own truth, the window
counts against the real ingest, and the oracle against its promises."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.schemas.events import validate_event
from blipwatch.stream_app.replay import Replay
from blipwatch.schemas.times import parse_time
from blipwatch.tools.shopsuite import oracle
from blipwatch.tools.shopsuite.cells import count_cells
from blipwatch.tools.shopsuite.generator import Events, draw_shop, event_dicts, generate
from blipwatch.tools.shopsuite.suite import (CellReplay, _trials, countable, format_table, horizons, oracle_budget,
    run_suite)
from blipwatch.tools.shopsuite.truth import Truth, selector_expectation

CATALOGUE = countable()


def test_shops_are_deterministic_and_varied():
    a, b = draw_shop(3, 1, hours=30), draw_shop(3, 1, hours=30)
    assert a.describe() == b.describe() and a.incidents == b.incidents
    shops = [draw_shop(0, i, hours=30) for i in range(30)]
    volumes = [s.sessions_per_minute for s in shops]
    assert 10 <= min(volumes) < 60 and 600 < max(volumes) <= 3000
    incidents = [i for s in shops for i in s.incidents]
    assert {i.kind for i in incidents} >= {"tracking_drop", "abandonment_up", "complaints_up"}
    assert any(len(i.segment) == 2 for i in incidents) and any(not i.segment for i in incidents)
    assert all(5 <= (i.end_ms - i.onset_ms) / 60_000 <= 90 for i in incidents)
    # onsets after a day of learning, at every hour of the shop's day (its peak hour is random)
    assert all(i.onset_ms - s.start_ms >= 24 * 3_600_000 for s in shops for i in s.incidents)


@pytest.mark.parametrize("index", [0, 2, 5])
def test_generator_matches_its_truth_within_noise(index):
    """Over six hours of a shop without incidents, every series' count is within 4.5 sigma of
    the truth (sigma: Poisson, times the true dispersion for event volume)."""
    shop = replace(draw_shop(1, index, hours=6), incidents=[])
    cells = count_cells(shop, CATALOGUE)
    truth = Truth(shop, horizons(CATALOGUE))
    checked = funnels = 0
    for label, segment in cells.segments:
        expected = truth.expected(segment)
        row = cells.index[label]
        for metric in CATALOGUE.metrics:
            if metric.kind == "mean":
                continue
            if metric.kind == "count":
                parts = [selector_expectation(metric.numerator, expected)]
            else:
                parts = list(_trials(metric, expected))
            for part, observed in zip(parts, (cells.num, cells.den)):
                # a funnel's journeys that end after the run are not counted: its last window is `within` earlier
                last = shop.windows - (metric.funnel.within_ms // 60_000 + 1 if metric.funnel else 0)
                true = part[30:last].sum()
                seen = observed[metric.name][row, 30:last].sum()
                everything = metric.kind == "count" and metric.numerator.event_types is None
                spread = np.sqrt(max(true, 1.0) * (12.0 if everything else 2.0))
                assert abs(seen - true) < 4.5 * spread, (label, metric.name, seen, true)
                checked += 1
                funnels += metric.kind == "funnel"
    assert checked > 100 and funnels > 30


def test_events_follow_the_contract_and_counts_match_replay():
    """The suite's window counts fed to Replay's trackers give the same points and alerts as
    Replay itself reading the shop's events (JSON lines in the customer-event contract)."""
    shop = draw_shop(2, 0, hours=3)
    shop = replace(shop, sessions_per_minute=40.0, incidents=[])
    events = Events.concat(list(generate(shop)))
    dicts = event_dicts(shop, events)
    for event in dicts[:2000]:
        validate_event(event)
    points, alerts = [], []
    replay = Replay(CATALOGUE, points.append, alerts.append)
    replay.feed(orjson.dumps(event) for event in dicts)
    replay.finish()
    cells = count_cells(shop, CATALOGUE)
    mirror = CellReplay(CATALOGUE, shop.windows, shop.start_ms)
    mirror.feed_cells(cells)
    mirror.finish()
    assert set(mirror.trackers) == set(replay.trackers)
    by_series: dict[str, list] = {}
    for point in points:
        by_series.setdefault(point.series, []).append(point)
    compared = 0
    for series, rows in by_series.items():
        expected = mirror.expected[series]
        for point in rows:
            w = int(parse_time(point.window_start).timestamp() * 1000 - shop.start_ms) // 60_000
            if not 0 <= w < shop.windows:
                continue
            if point.expected is None:
                assert np.isnan(expected[w])
            else:
                assert expected[w] == pytest.approx(point.expected, rel=1e-9)
                assert mirror.score[series][w] == pytest.approx(point.score, abs=1e-9)
            compared += 1
    assert compared > 10_000
    assert [(a["dedup_key"], a["status"], a["window_start"]) for a in mirror.alert_dicts] == \
        [(a.dedup_key, a.status, a.window_start) for a in alerts] or \
        sorted((a["dedup_key"], a["status"], a["window_start"]) for a in mirror.alert_dicts) == \
        sorted((a.dedup_key, a.status, a.window_start) for a in alerts)


def test_oracle_keeps_its_false_alarm_rate_on_the_null():
    """Calibrated for 5 % of days with an alarm, fresh null days alarm on about 5 % of them."""
    days = 1440
    p0 = 0.2 + 0.05 * np.sin(np.arange(days) / 200)
    hypothesis = oracle.RateHypothesis(p0, p0 * 1.5, 30 + 20 * np.cos(np.arange(days) / 300), np.full(days, 30.0))
    threshold = oracle.calibrate(hypothesis, np.arange(days), 0.05, np.random.default_rng(1), replicates=800)
    rng = np.random.default_rng(2)
    x, n = hypothesis.sample(rng, np.arange(days), 1000, False)
    steps = hypothesis.llr(np.arange(days)[:, None], x, n)
    s = np.zeros(1000)
    peak = np.zeros(1000)
    for step in steps:
        s = np.maximum(0.0, s + step)
        peak = np.maximum(peak, s)
    assert 0.025 < np.mean(peak >= threshold) < 0.09


def test_oracle_extrapolated_threshold_is_conservative_enough():
    """For a budget the replicates cannot reach (1 in 200 days), the fitted tail's threshold
    gives an alarm rate of that order on many fresh days."""
    days = 1440
    hypothesis = oracle.CountHypothesis(np.full(days, 20.0), np.full(days, 30.0))
    threshold = oracle.calibrate(hypothesis, np.arange(days), 0.005, np.random.default_rng(3), replicates=400)
    x, n = hypothesis.sample(np.random.default_rng(4), np.arange(days), 4000, False)
    steps = hypothesis.llr(np.arange(days)[:, None], x, n)
    s = np.zeros(4000)
    peak = np.zeros(4000)
    for step in steps:
        s = np.maximum(0.0, s + step)
        peak = np.maximum(peak, s)
    assert np.mean(peak >= threshold) < 0.015


def test_oracle_detects_a_big_shift_at_once_and_no_shift_never():
    days = 1440
    big = oracle.CountHypothesis(np.full(days, 50.0), np.full(days, 10.0))          # a tracking drop to a fifth
    threshold = oracle.calibrate(big, np.arange(days), 0.01, np.random.default_rng(5))
    assert oracle.expected_delay(big, np.arange(100, 130), threshold, np.random.default_rng(6)) <= 2
    x = np.concatenate([np.full(60, 50.0), np.full(30, 10.0)])
    assert oracle.delay(big, np.arange(40, 130), x, np.ones(90), threshold, 100) in (1, 2)
    huge = oracle.CountHypothesis(np.full(days, 800.0), np.full(days, 80.0))         # a null never near it
    threshold = oracle.calibrate(huge, np.arange(days), 0.01, np.random.default_rng(11))
    assert oracle.expected_delay(huge, np.arange(100, 130), threshold, np.random.default_rng(12)) == 1
    tiny = oracle.CountHypothesis(np.full(days, 50.0), np.full(days, 50.5))
    threshold = oracle.calibrate(tiny, np.arange(days), 0.01, np.random.default_rng(7))
    assert oracle.expected_delay(tiny, np.arange(100, 110), threshold, np.random.default_rng(8)) == float("inf")
    mean = oracle.MeanHypothesis(np.full(days, 50.0), np.full(days, 400.0), np.full(days, 25.0),
                                 np.full(days, 100.0), np.full(days, 20.0), np.full(days, 20.0))
    threshold = oracle.calibrate(mean, np.arange(days), 0.01, np.random.default_rng(9))
    assert oracle.expected_delay(mean, np.arange(100, 130), threshold, np.random.default_rng(10)) <= 2


@pytest.mark.soak  # ~45 s: two shops through the whole suite
def test_quick_suite_reports_every_figure():
    summary = run_suite([0], shops=2, hours=8.0, log=None)
    assert summary["incidents"] == sum(r["incidents"] for r in summary["by_class"].values())
    for incident in summary["incident_list"]:
        assert incident["class"] in ("<=2", "3-5", "6-10", ">10", "undetectable")
        assert incident["oracle_series"]
    assert summary["rate_bias_day1"]["series"] > 20
    # the order value series' bias is reported too
    assert summary["mean_bias_day1"]["series"] > 5 and "mean bias (day1)" in format_table(summary)
    # episodes are counted once, however many incidents they match
    assert summary["never_resolved"] <= summary["resolved_late"] <= summary["alert_episodes_on_incidents"]
    assert summary["alert_episodes_on_incidents"] <= sum(i["episodes"] for i in summary["incident_list"])
    assert "false alerts" in format_table(summary)


def test_only_the_chosen_shops_are_run_and_the_report_names_them():
    """``--only``: a change is tried on the shops of a few misses before the whole suite."""
    kept = []
    summary = run_suite([0], shops=20, hours=2.0, log=None, keep=kept.append, only=[(1, 3), (0, 2)])
    assert [r.shop for r in kept] == ["1/3", "0/2"]
    assert summary["seeds"] == [0, 1] and summary["chosen"] == ["1/3", "0/2"]
    assert format_table(summary).startswith("2 chosen shops (1/3, 0/2) x 2 h")


def test_suite_oracle_tests_the_shift_at_any_time_with_a_real_threshold():
    """The oracle's alternative holds in every window (its threshold comes from null days before
    the incident, where a shift tested only during the incident would make every LLR zero)."""
    from blipwatch.tools.shopsuite.suite import _hypothesis

    shop = draw_shop(0, 2, hours=8)
    truth = Truth(shop)
    checked = 0
    for incident in shop.incidents:
        metric = CATALOGUE.by_name[incident.metrics[0]]
        hypothesis = _hypothesis(metric, truth, incident.segment, incident, {})
        onset = (incident.onset_ms - shop.start_ms) // 60_000
        null = np.arange(max(0, onset - 240), onset)
        steps = hypothesis.llr(null, *hypothesis.sample(np.random.default_rng(0), null, 1, False))
        assert np.abs(steps).sum() > 0
        threshold = oracle.calibrate(hypothesis, np.resize(null, 1440), 0.01, np.random.default_rng(1))
        assert threshold > 1.0
        checked += 1
    assert checked


def test_the_oracle_held_to_a_real_normal_day_raises_no_alarm_there():
    """``peak`` is the least threshold at which the CUSUM raises no alarm on given windows: on
    over-dispersed counts (a session's events come together) the quasi-Poisson-free model's
    threshold alarms, the one floored by the peak does not."""
    days = 1440
    hypothesis = oracle.CountHypothesis(np.full(days, 20.0), np.full(days, 30.0))
    model = oracle.calibrate(hypothesis, np.arange(days), 0.01, np.random.default_rng(3), replicates=400)
    rng = np.random.default_rng(4)
    x = 5.0 * rng.poisson(4.0, days)                  # mean 20, variance 100: five events a session
    windows, n = np.arange(days), np.ones(days)
    top = oracle.peak(hypothesis, windows, x, n)
    assert oracle.alarms(hypothesis, windows, x, n, model) > 0
    assert top > model
    assert oracle.alarms(hypothesis, windows, x, n, top * (1 + 1e-9)) == 0
    assert oracle.alarms(hypothesis, windows, x, n, top * (1 - 1e-6)) == 1


def test_the_oracle_held_to_the_tail_of_a_real_normal_day_keeps_its_budget_on_fresh_days():
    """On counts whose sessions span three windows (lag-1 correlation 2/3, variance five times the
    mean), the model's threshold (independent Poisson windows) alarms on every fresh day; the one
    fitted to a single real day's CUSUM excursions keeps near its budget of 5 % of days."""
    days = 1440
    hypothesis = oracle.CountHypothesis(np.full(days, 20.0), np.full(days, 30.0))
    model = oracle.calibrate(hypothesis, np.arange(days), 0.05, np.random.default_rng(3), replicates=400)

    def sessions(rng, replicates):
        arrivals = rng.poisson(4 / 3, (days + 2, replicates))
        return 5.0 * (arrivals[2:] + arrivals[1:-1] + arrivals[:-2])   # mean 20, variance 100

    windows = np.arange(days)
    one_day = sessions(np.random.default_rng(10), 1)[:, 0]
    tail = oracle.tail_threshold(hypothesis, windows, one_day, np.ones(days), 0.05)
    x = sessions(np.random.default_rng(4), 400)
    steps = hypothesis.llr(windows[:, None], x, np.ones_like(x))
    s, peak = np.zeros(400), np.zeros(400)
    for step in steps:
        s = np.maximum(0.0, s + step)
        peak = np.maximum(peak, s)
    assert np.mean(peak >= model) > 0.95
    assert 0.02 < np.mean(peak >= tail) < 0.12
    assert oracle.tail_threshold(hypothesis, windows[:3], np.zeros(3), np.ones(3), 0.05) == 0.0   # no excursion


def test_the_oracles_budget_is_measured_on_fresh_days_without_incidents():
    """``oracle_budget`` (tests/benchmarks/oracle_budget.py): every test of the shop's incidents,
    with a budget for its fresh days, and fewer alarms the more its threshold is held."""
    rows = oracle_budget(0, 4, 54.0, countable(log=None))   # 13 sessions a minute: its model alarms
    shop = draw_shop(0, 4, 30.0)
    assert {r["incident"] for r in rows} == {i.kind for i in shop.incidents}
    assert all(1.0 < r["days"] < 1.5 and r["budget"] > 0 for r in rows)
    assert all(r["alarms_model"] >= r["alarms_peak"] >= r["alarms_held"] for r in rows)
    assert sum(r["alarms_model"] for r in rows) > sum(r["alarms_held"] for r in rows)


def test_pair_series_are_counted_as_the_ingest_counts_them():
    """With ``segments.pairs`` the suite's window counts give Replay's pair series too, window by
    window the same points as Replay reading the events."""
    catalogue = countable({"segments": {"pairs": [["channel", "country"]]}})
    shop = replace(draw_shop(2, 3, hours=2), sessions_per_minute=60.0, incidents=[])
    dicts = event_dicts(shop, Events.concat(list(generate(shop))))
    points = []
    replay = Replay(catalogue, points.append, lambda alert: None)
    replay.feed(orjson.dumps(event) for event in dicts)
    replay.finish()
    mirror = CellReplay(catalogue, shop.windows, shop.start_ms)
    mirror.feed_cells(count_cells(shop, catalogue))
    mirror.finish()
    assert set(mirror.trackers) == set(replay.trackers)
    pairs = [p for p in points if "," in p.series.split("|")[1]]
    assert len({p.series for p in pairs}) >= 4
    for point in pairs:
        w = int(parse_time(point.window_start).timestamp() * 1000 - shop.start_ms) // 60_000
        if 0 <= w < shop.windows and point.expected is not None:
            assert mirror.expected[point.series][w] == pytest.approx(point.expected, rel=1e-9)


#: cart abandonment counted from the shops' ``cart_abandoned`` events, as a user's config may
#: (the default is a funnel, counted where its journey starts)
FLAGGED = {"metrics": {
    "cart_abandonment_rate": {"kind": "rate", "numerator": {"event_types": ["cart_abandoned"]},
                              "denominator": {"event_types": ["cart_abandoned", "purchase"]}, "direction": "up"},
    "payment_failure_rate": {"kind": "rate", "numerator": {"event_types": ["payment_failed"]},
                             "denominator": {"event_types": ["payment_failed", "purchase"]}, "direction": "up"}}}


def test_a_metric_counting_abandoned_carts_is_labelled_with_the_lag_its_truth_has():
    """The suite's labels give a cart abandonment rate of ``cart_abandoned`` events the lag its
    truth has (carts flagged abandoned ``abandon_minutes`` after the last action): shifted until the
    incident's end plus the lag, not after; other metrics, and the default funnel (a journey counts
    where it starts), carry no lag."""
    from blipwatch.tools.shopsuite.suite import labels_of, lag_minutes

    assert lag_minutes(draw_shop(1, 0, hours=30), CATALOGUE.by_name["cart_abandonment_rate"]) == 0
    flagged = countable(FLAGGED)

    for index in range(12):
        shop = draw_shop(1, index, hours=30)
        found = [i for i in shop.incidents if "cart_abandonment_rate" in i.metrics and i.kind == "abandonment_up"]
        if found:
            break
    incident = found[0]
    metric = flagged.by_name["cart_abandonment_rate"]
    lag = lag_minutes(shop, metric)
    assert 1 <= lag <= 30 and lag_minutes(shop, flagged.by_name["payment_failure_rate"]) == 0
    label = next(l for l in labels_of(shop, flagged)["incidents"] if l["name"] == incident.name)
    assert label["lags"] == {"cart_abandonment_rate": lag * 60}
    truth = Truth(shop)
    base = selector_expectation(metric.numerator, truth.expected(incident.segment))
    shifted = selector_expectation(metric.numerator, truth.with_incident(incident.segment, incident))
    end = (incident.end_ms - shop.start_ms) // 60_000
    moved = np.nonzero(~np.isclose(shifted, base))[0]
    assert moved.max() == end + lag - 1


def test_a_funnel_is_labelled_with_the_lead_its_journeys_have():
    """A funnel counts a journey where it started, so it shows an incident up to the time from a
    journey's start to its payment earlier: the label's lead covers 99 % of the converted journeys'
    spans (measured on the shop's own events), never more than ``within``; other kinds have none."""
    from blipwatch.tools.shopsuite.generator import T
    from blipwatch.tools.shopsuite.suite import labels_of, lead_minutes

    shop = replace(draw_shop(1, 4, hours=3), incidents=[])
    events = Events.concat(list(generate(shop)))
    started = {}
    spans = {"add_to_cart": [], "checkout_start": []}
    for i in np.argsort(events.t, kind="stable").tolist():
        kind, session = int(events.type[i]), int(events.session[i])
        for start in spans:
            if kind == T[start]:
                started.setdefault((start, session), int(events.t[i]))
            elif kind == T["purchase"] and (start, session) in started:
                spans[start].append(int(events.t[i]) - started.pop((start, session)))
    for name, start in (("cart_abandonment_rate", "add_to_cart"), ("checkout_conversion_rate", "checkout_start"),
                        ("checkout_unconverted_5m", "checkout_start")):
        metric = CATALOGUE.by_name[name]
        lead = lead_minutes(shop, metric) * 60_000
        assert len(spans[start]) > 200
        assert np.mean(np.array(spans[start]) <= lead) >= 0.98 and 0 < lead <= metric.funnel.within_ms + 60_000
    assert lead_minutes(shop, CATALOGUE.by_name["payment_failure_rate"]) == 0
    label = labels_of(draw_shop(1, 4, hours=30), CATALOGUE)["incidents"]
    assert all(set(i["leads"]) <= {"cart_abandonment_rate", "checkout_conversion_rate", "checkout_unconverted_5m"}
               for i in label) and any(i["leads"] for i in label)

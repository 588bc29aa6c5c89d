"""The simulator: realistic, seeded traffic, and incidents that do what their labels say."""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from blipwatch.tools import simulator
from blipwatch.stream_app.cli import main
from blipwatch.tools.simulator import (
    CHANNELS, COUNTRIES, DEVICES, EVENT_TYPES, INCIDENTS, ScenarioError, generate_events, parse_time,
    scenario_labels,
)

METRICS = {"event_volume", "cart_abandonment_rate", "checkout_conversion_rate", "checkout_unconverted_5m",
           "payment_failure_rate",
           "search_zero_results_rate", "error_rate", "complaint_count", "average_order_value"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def metrics_of(events, segment=None, start=None, end=None) -> dict[str, float]:
    """The default metric catalogue, computed the obvious way over the selected events."""
    counts = Counter()
    zero_results = order_value = 0.0
    for event in events:
        if segment and any(event.get(k) != v for k, v in segment.items()):
            continue
        if start and event["occurred_at"] < start or end and event["occurred_at"] >= end:
            continue
        kind = event["event_type"]
        counts[kind] += 1
        if kind == "search" and event["properties"]["results_count"] == 0:
            zero_results += 1
        if kind == "purchase":
            order_value += event["properties"]["order_value"]

    def ratio(a, b):
        return a / b if b else float("nan")

    return {
        "event_volume": sum(counts.values()),
        "cart_abandonment_rate": ratio(counts["cart_abandoned"], counts["cart_abandoned"] + counts["purchase"]),
        "checkout_conversion_rate": ratio(counts["purchase"], counts["checkout_start"]),
        # checkouts not converted (within 5 minutes, as the funnel counts it; here: at all)
        "checkout_unconverted_5m": 1.0 - ratio(counts["purchase"], counts["checkout_start"]),
        "payment_failure_rate": ratio(counts["payment_failed"], counts["payment_failed"] + counts["purchase"]),
        "search_zero_results_rate": ratio(zero_results, counts["search"]),
        "error_rate": ratio(counts["error"], counts["page_view"]),
        "complaint_count": counts["complaint"],
        "average_order_value": ratio(order_value, counts["purchase"]),
        "purchases": counts["purchase"],
        "checkouts": counts["checkout_start"],
    }


@pytest.fixture(scope="module")
def normal_day():
    return list(generate_events("none", hours=24, seed=11, sessions_per_minute=25))


def test_the_same_arguments_write_byte_identical_files_and_another_seed_does_not(tmp_path):
    paths = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        path = tmp_path / f"{name}.jsonl"
        assert main(["simulate", "--scenario", "payment_outage", "--incident-offset-hours", "0.2",
                     "--hours", "0.5", "--sessions-per-minute", "120", "--seed", seed, "--out", str(path), "--labels", str(path) + ".labels",
                     "--quiet"]) == 0
        paths.append(path)
    a, b, c = (path.read_bytes() for path in paths)
    assert a == b and len(a) > 100_000
    assert a != c
    assert (tmp_path / "a.jsonl.labels").read_bytes() == (tmp_path / "b.jsonl.labels").read_bytes()


def test_every_event_follows_the_customer_event_contract():
    events = list(generate_events("all", start="2026-01-06T07:00:00Z", hours=17, sessions_per_minute=8))
    assert len(events) > 50_000
    ids = set()
    for event in events:
        assert isinstance(event["event_id"], str) and event["event_id"] not in ids
        ids.add(event["event_id"])
        assert event["event_type"] in EVENT_TYPES
        assert TIMESTAMP.match(event["occurred_at"]), event["occurred_at"]
        assert event["channel"] in CHANNELS and event["country"] in COUNTRIES and event["device"] in DEVICES
        assert isinstance(event["session_id"], str)
        assert isinstance(event.get("customer_id", ""), str)
        properties = event["properties"]
        assert isinstance(properties, dict)
        if event["event_type"] == "search":
            assert isinstance(properties["results_count"], int) and properties["results_count"] >= 0
        elif event["event_type"] == "purchase":
            assert properties["order_value"] > 0 and properties["currency"] in ("EUR", "GBP", "CHF", "USD")
        elif event["event_type"] == "error":
            assert isinstance(properties["code"], str)
        elif event["event_type"] == "complaint":
            assert isinstance(properties["reason"], str)
    assert {event["event_type"] for event in events} == set(EVENT_TYPES)
    assert set(event["channel"] for event in events) == set(CHANNELS)
    assert set(event["country"] for event in events) == set(COUNTRIES)


def test_events_come_in_time_order_within_the_requested_span():
    events = list(generate_events("none", start="2026-01-07T12:00:00+01:00", hours=0.5, sessions_per_minute=40))
    times = [event["occurred_at"] for event in events]
    assert times == sorted(times)
    assert times[0] >= "2026-01-07T11:00:00.000Z" and times[-1] < "2026-01-07T11:30:00.000Z"
    assert times[0] < "2026-01-07T11:00:05.000Z"    # opens mid-stream, not with an empty shop


def test_a_normal_day_has_the_funnel_rates_of_a_mid_size_shop(normal_day):
    rates = metrics_of(normal_day)
    assert 0.6 <= rates["cart_abandonment_rate"] <= 0.7
    assert 0.6 <= rates["checkout_conversion_rate"] <= 0.8
    assert 0.02 <= rates["payment_failure_rate"] <= 0.05
    assert 0.05 <= rates["search_zero_results_rate"] <= 0.10
    assert 0.007 <= rates["error_rate"] <= 0.013
    assert 30 <= rates["average_order_value"] <= 120
    assert rates["complaint_count"] > 50


def test_no_session_buys_more_often_than_it_checks_out(normal_day):
    per_session = defaultdict(Counter)
    for event in normal_day:
        per_session[event["session_id"]][event["event_type"]] += 1
    whole_sessions = [counts for counts in per_session.values() if counts["session_start"]]   # not cut by the start
    assert len(whole_sessions) > 0.9 * len(per_session)
    for counts in whole_sessions:
        assert counts["purchase"] <= counts["checkout_start"] <= 1
        assert counts["purchase"] + counts["cart_abandoned"] <= 1


def test_channels_countries_and_devices_have_realistic_shares(normal_day):
    channels = Counter(event["channel"] for event in normal_day)
    devices = Counter(event["device"] for event in normal_day)
    countries = Counter(event["country"] for event in normal_day)
    total = len(normal_day)
    assert channels.most_common(2)[0][0] == "web" and channels.most_common(2)[1][0] == "app"
    assert 0.3 < channels["web"] / total < 0.5
    assert devices["mobile"] > devices["desktop"] > devices["tablet"] > 0
    assert countries.most_common(1)[0][0] == "DE" and len(countries) == 10


def test_traffic_at_four_in_the_morning_is_far_below_the_evening(normal_day):
    by_hour = Counter(event["occurred_at"][11:13] for event in normal_day)
    assert by_hour["04"] < 0.3 * by_hour["20"]
    assert by_hour["12"] > by_hour["04"] * 2


def test_sunday_is_busier_than_friday_and_days_differ_beyond_poisson_noise():
    def day_volume(date: str, seed: int) -> int:
        return sum(1 for _ in generate_events("none", start=f"{date}T00:00:00Z", hours=24, seed=seed,
                                               sessions_per_minute=3))

    friday = [day_volume("2026-01-09", seed) for seed in range(6)]
    sunday = [day_volume("2026-01-11", seed) for seed in range(6)]
    assert sum(sunday) > sum(friday) * 1.1
    mean = sum(friday) / len(friday)
    # session counts vary by ~1 %, events per session by ~1 %: the day-to-day level adds ~8 %
    assert max(friday) - min(friday) > 0.06 * mean


@functools.lru_cache(maxsize=2)
def _window(name: str):
    """A run around one incident on a Tuesday daytime, and the label of that incident."""
    incident = INCIDENTS[name]
    lead = 1.0
    options = dict(start="2026-01-06T10:00:00Z", hours=lead + incident.duration_minutes / 60 + 0.25, seed=3,
                   sessions_per_minute=60)
    labels = scenario_labels(name, incident_offset_hours=lead, **options)
    assert len(labels) == 1
    scenario = list(generate_events(name, incident_offset_hours=lead, **options))
    normal = list(generate_events("none", **options))
    return labels[0], scenario, normal


#: How far each labelled metric must move during its incident, against the same window of normal traffic.
MOVES = {
    "event_volume": {"down": lambda got, usual: got < 0.3 * usual, "up": lambda got, usual: got > 1.15 * usual},
    "cart_abandonment_rate": {"up": lambda got, usual: got > usual + 0.1},
    "checkout_conversion_rate": {"down": lambda got, usual: got < usual - 0.03},
    "checkout_unconverted_5m": {"up": lambda got, usual: got > usual + 0.03},
    "payment_failure_rate": {"up": lambda got, usual: got > usual + 0.2},
    "search_zero_results_rate": {"up": lambda got, usual: got > usual + 0.2},
    "error_rate": {"up": lambda got, usual: got > 4 * usual},
    "complaint_count": {"up": lambda got, usual: got > 3 * usual},
    "average_order_value": {"down": lambda got, usual: got < 0.75 * usual},
}


@pytest.mark.parametrize("name", sorted(INCIDENTS))
def test_each_incident_moves_the_metrics_its_label_names_in_its_segment(name):
    label, scenario, normal = _window(name)
    window = dict(segment=label["segment"], start=label["start"], end=label["end"])
    got, usual = metrics_of(scenario, **window), metrics_of(normal, **window)
    assert label["metrics"] and set(label["metrics"]) <= METRICS
    for metric, direction in label["directions"].items():
        assert MOVES[metric][direction](got[metric], usual[metric]), (metric, direction, got[metric], usual[metric])
    before = dict(segment=label["segment"], end=label["start"])
    assert metrics_of(scenario, **before) == metrics_of(normal, **before)   # nothing changes before the onset


def test_a_busy_evening_brings_more_traffic_but_the_same_behaviour():
    label, scenario, normal = _window("busy_evening")
    assert label["expect_alert"] is False
    window = dict(start=label["start"], end=label["end"])
    got, usual = metrics_of(scenario, **window), metrics_of(normal, **window)
    assert got["event_volume"] > 1.15 * usual["event_volume"]
    for metric in ("cart_abandonment_rate", "checkout_conversion_rate", "payment_failure_rate",
                   "search_zero_results_rate", "error_rate"):
        assert got[metric] == pytest.approx(usual[metric], rel=0.15, abs=0.01), metric
    assert got["average_order_value"] == pytest.approx(usual["average_order_value"], rel=0.1)


def test_a_local_incident_leaves_other_segments_alone():
    label, scenario, normal = _window("cart_abandonment_spike")
    window = dict(segment={"channel": "app"}, start=label["start"], end=label["end"])
    got, usual = metrics_of(scenario, **window), metrics_of(normal, **window)
    assert got["cart_abandonment_rate"] == pytest.approx(usual["cart_abandonment_rate"], abs=0.06)


def test_the_all_scenario_starts_every_incident_on_the_second_day_one_after_another():
    labels = scenario_labels("all")
    assert [label["name"] for label in labels] == list(INCIDENTS)
    day_two = datetime(2026, 1, 6, tzinfo=timezone.utc)
    previous_end = day_two
    for label in labels:
        start, end = parse_time(label["start"]), parse_time(label["end"])
        assert start >= previous_end + timedelta(minutes=30), label["name"]
        assert end <= day_two + timedelta(days=1)
        previous_end = end
        assert label["expect_alert"] is (label["name"] != "busy_evening")
        assert label["subtle"] is (label["name"] == "subtle_conversion_dip")


def test_the_demo_is_normal_traffic_then_a_clear_web_cart_abandonment_spike():
    [label] = scenario_labels("demo")
    assert label["segment"] == {"channel": "web"} and label["metrics"] == ["cart_abandonment_rate"]
    events = list(generate_events("demo", sessions_per_minute=30))
    before = metrics_of(events, segment={"channel": "web"}, end=label["start"])
    during = metrics_of(events, segment={"channel": "web"}, start=label["start"], end=label["end"])
    assert during["cart_abandonment_rate"] > before["cart_abandonment_rate"] + 0.2


def test_a_short_run_labels_only_the_incidents_it_reaches():
    assert [label["name"] for label in scenario_labels("all", hours=34)] == ["tracking_drop", "payment_outage"]
    assert scenario_labels("none") == []


def test_unknown_scenarios_and_bad_parameters_are_refused_with_a_clear_message(capsys):
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'"):
        generate_events("nope")
    with pytest.raises(ScenarioError, match="exactly one"):
        scenario_labels("all", incident_offset_hours=1)
    assert main(["simulate", "--scenario", "nope", "--out", "/dev/null"]) == 2
    assert main(["simulate", "--start", "yesterday", "--out", "/dev/null"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown scenario" in err[0] and "ISO 8601" in err[1]


def test_list_scenarios_names_every_scenario(capsys):
    assert main(["simulate", "--list-scenarios"]) == 0
    out = capsys.readouterr().out
    for name in simulator.SCENARIOS:
        assert name in out

"""Funnel metrics end to end offline (``Replay``: the ingest's decode, the journey stage, the
series' detectors): the same traffic in every tracker's format gives the same funnel points as in
blipwatch's own format, and the conversion rates equal the simulator's true ones within noise."""

from __future__ import annotations

import math

import pytest

from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
from blipwatch.stream_app.replay import Replay
from blipwatch.tools import simulator
from blipwatch.schemas.events import parse_timestamp_ms
from blipwatch.tools.simulator import generate_events, true_funnel_rates
from blipwatch.tools.trackers import tracker_encoder

FUNNELS = ("cart_abandonment_rate", "checkout_conversion_rate", "checkout_unconverted_5m")
RUN = dict(scenario="none", start="2026-01-05T17:00:00Z", hours=2.0, seed=5, sessions_per_minute=60)


PRESETS = ("blipwatch", "segment", "ga4", "snowplow")
#: the default funnels: start event, minutes within, counting the journeys not converted
DEFINITIONS = {"cart_abandonment_rate": ("add_to_cart", 30, True), "checkout_conversion_rate": ("checkout_start", 30, False),
               "checkout_unconverted_5m": ("checkout_start", 5, True)}


def replay_points(preset: str, events: list[dict]) -> tuple[list, dict]:
    points = []
    replay = Replay(Catalogue.from_dict(default_config_dict()), points.append, lambda alert: None, preset=preset)
    encode = tracker_encoder(preset)
    replay.feed(value for value in map(encode, events) if value is not None)
    stats = replay.finish()
    return [p for p in points if p.metric in FUNNELS], stats


@pytest.fixture(scope="module")
def events():
    return list(generate_events(**RUN))


@pytest.fixture(scope="module")
def replayed(events):
    """preset -> its funnel points and replay stats (each preset replayed once for the module)."""
    cache: dict[str, tuple[list, dict]] = {}

    def points_of(preset: str) -> tuple[list, dict]:
        if preset not in cache:
            cache[preset] = replay_points(preset, events)
        return cache[preset]
    return points_of


@pytest.fixture(scope="module")
def contract_points(replayed):
    return replayed("blipwatch")


def content(point) -> tuple:
    return (point.series, point.window_start, point.numerator, point.denominator, point.value, point.expected,
            point.score, point.is_anomaly)


@pytest.mark.parametrize("preset", ["segment", "ga4", "snowplow"])
def test_a_trackers_format_gives_the_same_funnel_points_as_the_contracts(preset, replayed, contract_points):
    reference, reference_stats = contract_points
    points, stats = replayed(preset)
    assert len(reference) > 500 and {p.metric for p in reference} == set(FUNNELS)
    assert sum(p.denominator for p in reference if p.series.endswith("|all")) > 1000
    assert sorted(map(content, points)) == sorted(map(content, reference))
    # the tracker sent no cart_abandoned, and its sessions (anonymous ids with the 30-minute gap,
    # or GA4's and Snowplow's session ids) hold the same journeys
    assert stats.journeys == reference_stats.journeys
    assert stats.journeys["unattributed"] == 0 and stats.journeys["split_sessions"] == 0


def simulated_outcomes(events: list[dict], metric: str) -> dict[str, dict[int, list[float]]]:
    """The simulator's own sessions (its session ids, whatever a tracker sends) as the funnel's
    truth: a session's first start event opens its journey, converted by a purchase of the session
    at most ``within`` later; per channel, start window -> [journeys with the metric's outcome, journeys]."""
    start_type, minutes, counts_failure = DEFINITIONS[metric]
    started: dict[str, tuple[int, str]] = {}
    converted: set[str] = set()
    for event in events:   # in time order
        session, at = event["session_id"], parse_timestamp_ms(event["occurred_at"])
        if event["event_type"] == start_type and session not in started:
            started[session] = (at, event["channel"])
        elif event["event_type"] == "purchase" and session in started and at - started[session][0] <= minutes * 60_000:
            converted.add(session)
    outcomes: dict[str, dict[int, list[float]]] = {}
    for session, (at, channel) in started.items():
        cell = outcomes.setdefault(channel, {}).setdefault(at - at % 60_000, [0.0, 0.0])
        cell[0] += (session not in converted) == counts_failure
        cell[1] += 1
    return outcomes


@pytest.mark.parametrize("preset", PRESETS)
def test_each_presets_funnel_points_count_the_simulators_own_sessions_outcomes(preset, replayed, events):
    points, _ = replayed(preset)
    last_point = max(parse_timestamp_ms(p.window_start) for p in points)
    for metric in FUNNELS:
        truth = simulated_outcomes(events, metric)
        for channel, windows in truth.items():
            series = {parse_timestamp_ms(p.window_start): [p.numerator, p.denominator] for p in points
                      if p.series == f"{metric}|channel={channel}" and p.denominator}   # not the empty windows
            assert series == {window: cell for window, cell in windows.items() if window in series}, (metric, channel)
            # no journey lost: windows without a point are those still undecided when the input ended
            assert all(window > last_point - 35 * 60_000 for window in windows if window not in series), (metric, channel)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_presets_funnel_rates_equal_the_simulators_true_rates_within_noise(preset, replayed):
    """The sample's rates against ``true_funnel_rates``, the expectation they scatter around: per
    channel (web and app, a few hundred journeys each, within 4 sigma) and over every channel
    (the channels' true rates weighted by their journeys, within 3 sigma)."""
    points, _ = replayed(preset)
    for metric in FUNNELS:
        pooled_n = pooled_d = pooled_truth = pooled_variance = 0.0
        for channel in simulator.BEHAVIOURS:
            series = [p for p in points if p.series == f"{metric}|channel={channel}"]
            numerator, denominator = sum(p.numerator for p in series), sum(p.denominator for p in series)
            truth = true_funnel_rates(channel)[metric]
            pooled_n, pooled_d = pooled_n + numerator, pooled_d + denominator
            pooled_truth += truth * denominator
            pooled_variance += truth * (1 - truth) * denominator
            if channel in ("web", "app"):
                assert denominator > 200, (metric, channel, denominator)
                sigma = math.sqrt(truth * (1 - truth) / denominator)
                print(f"{preset} {metric} channel={channel}: journeys {numerator:.0f}/{denominator:.0f} = "
                      f"{numerator / denominator:.4f}, true {truth:.4f} (±{sigma:.4f})")
                assert abs(numerator / denominator - truth) < 4 * sigma, (metric, channel)
        truth, sigma = pooled_truth / pooled_d, math.sqrt(pooled_variance) / pooled_d
        print(f"{preset} {metric} every channel: {pooled_n:.0f}/{pooled_d:.0f} = {pooled_n / pooled_d:.4f}, "
              f"true {truth:.4f} (±{sigma:.4f})")
        assert abs(pooled_n / pooled_d - truth) < 3 * sigma, metric


def test_the_ingest_decodes_with_the_chosen_preset_and_the_contracts_is_its_fast_path():
    from blipwatch.schemas.events import decode_event_fields
    from blipwatch.schemas.presets import decode_segment
    from blipwatch.stream_app.ingest import IngestBatch

    catalogue = Catalogue.from_dict(default_config_dict())
    assert IngestBatch(catalogue, 65536)._decode is decode_event_fields
    batch = IngestBatch(catalogue, 65536, preset="segment")
    assert batch._decode is decode_segment
    # a contract event is not a Segment call: a dead letter naming Segment's field
    assert batch.add(None, b'{"event_id": "e1", "event_type": "purchase", "occurred_at": 1767643200000}', "x",
                     None) is None
    assert batch.drain_dead_letters()[0].field == "type"

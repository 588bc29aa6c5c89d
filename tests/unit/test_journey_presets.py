"""Funnel metrics end to end offline (``Replay``: the ingest's decode, the journey stage, the
series' detectors): the same traffic in every tracker's format gives the same funnel points as in
blipwatch's own format, and the conversion rates equal the simulator's true ones within noise."""

from __future__ import annotations

import math

import pytest

from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
from blipwatch.stream_app.replay import Replay
from blipwatch.tools import simulator
from blipwatch.tools.simulator import generate_events, tracker_encoder

FUNNELS = ("cart_abandonment_rate", "checkout_conversion_rate", "checkout_unconverted_5m")
RUN = dict(scenario="none", start="2026-01-05T17:00:00Z", hours=2.0, seed=5, sessions_per_minute=60)


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
def contract_points(events):
    return replay_points("blipwatch", events)


def content(point) -> tuple:
    return (point.series, point.window_start, point.numerator, point.denominator, point.value, point.expected,
            point.score, point.is_anomaly)


@pytest.mark.parametrize("preset", ["segment", "ga4", "snowplow"])
def test_a_trackers_format_gives_the_same_funnel_points_as_the_contracts(preset, events, contract_points):
    reference, reference_stats = contract_points
    points, stats = replay_points(preset, events)
    assert len(reference) > 500 and {p.metric for p in reference} == set(FUNNELS)
    assert sum(p.denominator for p in reference if p.series.endswith("|all")) > 1000
    assert sorted(map(content, points)) == sorted(map(content, reference))
    # the tracker sent no cart_abandoned, and its sessions (anonymous ids with the 30-minute gap,
    # or GA4's and Snowplow's session ids) hold the same journeys
    assert stats.journeys == reference_stats.journeys
    assert stats.journeys["unattributed"] == 0 and stats.journeys["split_sessions"] == 0


def true_rates(channel: str) -> dict[str, float]:
    """The simulator's parameters as funnel outcomes: a cart goes to checkout with ``p_checkout``,
    a checkout is left with ``p_dropout``, else up to 3 payment attempts (failure
    P_PAYMENT_FAILURE, retried with P_PAYMENT_RETRY) until one succeeds."""
    behaviour = simulator.BEHAVIOURS[channel]
    fail, retry = simulator.P_PAYMENT_FAILURE, simulator.P_PAYMENT_RETRY
    paid = sum((1 - fail) * (fail * retry) ** attempt for attempt in range(3))
    converted = (1 - behaviour.p_dropout) * paid
    return {"checkout_conversion_rate": converted, "cart_abandonment_rate": 1 - behaviour.p_checkout * converted}


@pytest.mark.parametrize("channel", ["web", "app"])
def test_funnel_rates_equal_the_simulators_true_rates_within_noise(channel, contract_points):
    points, _ = contract_points
    for metric, truth in true_rates(channel).items():
        series = [p for p in points if p.series == f"{metric}|channel={channel}"]
        numerator = sum(p.numerator for p in series)
        denominator = sum(p.denominator for p in series)
        assert denominator > 200, (metric, channel, denominator)
        rate = numerator / denominator
        sigma = math.sqrt(truth * (1 - truth) / denominator)
        print(f"{metric} channel={channel}: journeys {numerator:.0f}/{denominator:.0f} = {rate:.4f}, "
              f"the simulator's true rate {truth:.4f} (±{sigma:.4f})")
        assert abs(rate - truth) < 4 * sigma, (metric, channel, rate, truth, sigma)


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

"""The journey stage (blipwatch.pipeline.journeys) and funnel metrics in the catalogue."""

from __future__ import annotations

import re

import pytest
import yaml

from blipwatch.pipeline.catalogue import Catalogue, CatalogueError, default_config_dict
from blipwatch.pipeline.journeys import JourneyStage, SessionPartitions
from blipwatch.schemas import CustomerEvent
from blipwatch.schemas.events import decode_event
from blipwatch.tools.simulator import generate_events

import orjson

T0 = 1767643200000  # 2026-01-05T20:00:00Z, a window start
MINUTE = 60_000
LATENESS = 30_000


def funnel_catalogue(**funnels) -> Catalogue:
    metrics = {name: {"kind": "funnel", "start": ["add_to_cart"], "success": ["purchase"], "within": "30m",
                      **spec} for name, spec in funnels.items()}
    return Catalogue.from_dict({"metrics": metrics, "segments": {"dimensions": ["channel", "country"]}})


ABANDONMENT = {"outcome": "failure", "direction": "up"}


def event(event_type: str, at_ms: int, session: str | None = "s1", customer: str | None = None,
          channel: str = "web", country: str = "DE") -> tuple[CustomerEvent, int]:
    return CustomerEvent(f"e{at_ms}", event_type, at_ms, customer, session, channel, country), at_ms


def feed(stage: JourneyStage, *events) -> None:
    for fields, at_ms in events:
        stage.add(fields, at_ms)


def everything(stage: JourneyStage) -> dict:
    return stage.advance(10**15)


def test_a_cart_followed_by_a_purchase_within_30m_converts_and_one_without_fails():
    stage = JourneyStage(funnel_catalogue(cart_abandonment_rate=ABANDONMENT, cart_conversion={}))
    feed(stage, event("add_to_cart", T0 + 1000, "s1"), event("purchase", T0 + 20 * MINUTE, "s1"),
         event("add_to_cart", T0 + 2000, "s2"), event("page_view", T0 + 3000, "s2"))
    partials = everything(stage)
    assert partials["cart_abandonment_rate|all"] == {T0: [1.0, 2.0]}
    assert partials["cart_conversion|all"] == {T0: [1.0, 2.0]}
    assert partials["cart_abandonment_rate|channel=web"] == {T0: [1.0, 2.0]}
    assert stage.counts["started"] == 4 and stage.counts["converted"] == 2 and stage.counts["not_converted"] == 2


def test_a_funnel_has_the_pair_series_the_pairs_ask_for_and_singles_come_first_under_the_cap():
    """With ``segments.pairs`` a funnel counts its journeys on the pair too (channel=web,country=DE), as
    counts and rates do; under the series cap the single dimensions are admitted before the pairs."""
    metrics = {"conversion": {"kind": "funnel", "start": ["add_to_cart"], "success": ["purchase"], "within": "30m"}}
    segments = {"dimensions": ["country", "channel"], "pairs": [["country", "channel"]]}
    stage = JourneyStage(Catalogue.from_dict({"metrics": metrics, "segments": segments}))
    feed(stage, event("add_to_cart", T0 + 1000, "s1"), event("purchase", T0 + 2000, "s1"),
         event("add_to_cart", T0 + 3000, "s2", channel="app"), event("add_to_cart", T0 + 4000, "s3"))
    partials = everything(stage)
    assert partials["conversion|channel=web,country=DE"] == {T0: [1.0, 2.0]}
    assert partials["conversion|channel=app,country=DE"] == {T0: [0.0, 1.0]}
    assert partials["conversion|all"] == partials["conversion|country=DE"] == {T0: [1.0, 3.0]}
    capped = JourneyStage(Catalogue.from_dict({"metrics": metrics, "segments": {**segments, "max_series_per_metric": 4}}))
    feed(capped, event("add_to_cart", T0 + 1000, "s1"), event("add_to_cart", T0 + 3000, "s2", channel="app"))
    assert sorted(everything(capped)) == ["conversion|all", "conversion|channel=app", "conversion|channel=web",
                                          "conversion|country=DE"]


def test_a_purchase_after_within_is_a_failure_and_counts_in_the_window_of_the_cart():
    stage = JourneyStage(funnel_catalogue(conversion={"within": "5m"}))
    feed(stage, event("add_to_cart", T0 + 59_000, "s1"), event("purchase", T0 + 59_000 + 5 * MINUTE + 1, "s1"),
         event("add_to_cart", T0 + 59_500, "s2"), event("purchase", T0 + 59_500 + 5 * MINUTE, "s2"))
    assert everything(stage)["conversion|all"] == {T0: [1.0, 2.0]}  # the second: exactly 5m is within


def test_counts_leave_only_once_within_has_passed_after_the_window_and_never_twice():
    stage = JourneyStage(funnel_catalogue(conversion={"within": "10m"}))
    feed(stage, event("add_to_cart", T0 + 1000, "s1"), event("purchase", T0 + 2000, "s1"))
    complete_at = T0 + MINUTE + 10 * MINUTE + LATENESS
    assert stage.advance(complete_at - 1) == {}
    assert stage.advance(complete_at) == {"conversion|all": {T0: [1.0, 1.0]}, "conversion|channel=web": {T0: [1.0, 1.0]},
                                          "conversion|country=DE": {T0: [1.0, 1.0]},
                                          "conversion|channel=web,country=DE": {T0: [1.0, 1.0]}}
    assert stage.advance(complete_at + 10 * MINUTE) == {}


def test_a_second_cart_while_one_is_open_is_the_same_journey():
    stage = JourneyStage(funnel_catalogue(conversion={}))
    feed(stage, event("add_to_cart", T0 + 1000), event("add_to_cart", T0 + 2 * MINUTE), event("purchase", T0 + 3 * MINUTE))
    assert everything(stage)["conversion|all"] == {T0: [1.0, 1.0]}


def test_without_a_session_id_a_gap_of_inactivity_ends_the_session():
    stage = JourneyStage(funnel_catalogue(conversion={"within": "2h"}), gap_ms=30 * MINUTE)
    # the same customer: a purchase 31 minutes after their last event belongs to a new session
    feed(stage, event("add_to_cart", T0 + 1000, None, "c1"), event("purchase", T0 + 1000 + 31 * MINUTE, None, "c1"),
         event("add_to_cart", T0 + 2000, None, "c2"), event("page_view", T0 + 20 * MINUTE, None, "c2"),
         event("purchase", T0 + 45 * MINUTE, None, "c2"))
    assert everything(stage)["conversion|all"] == {T0: [1.0, 2.0]}


def test_a_session_id_is_one_session_however_long_its_pauses():
    stage = JourneyStage(funnel_catalogue(conversion={"within": "2h"}), gap_ms=30 * MINUTE)
    feed(stage, event("add_to_cart", T0 + 1000, "s1"), event("purchase", T0 + 1000 + 31 * MINUTE, "s1"))
    assert everything(stage)["conversion|all"] == {T0: [1.0, 1.0]}


def test_funnel_events_without_any_id_are_counted_not_guessed():
    stage = JourneyStage(funnel_catalogue(conversion={}))
    feed(stage, event("add_to_cart", T0, None, None), event("page_view", T0, None, None))
    assert everything(stage) == {} and stage.counts["unattributed"] == 1


def test_a_session_without_an_id_but_its_trackers_anonymous_id_is_grouped_by_it():
    from blipwatch.schemas.presets import TrackedEvent

    stage = JourneyStage(funnel_catalogue(conversion={}))
    cart = TrackedEvent("e1", "add_to_cart", T0 + 1000, "u1", None, anonymous_id="device-1")
    logged_in = TrackedEvent("e2", "purchase", T0 + 2000, "u2", None, anonymous_id="device-1")
    feed(stage, (cart, cart.occurred_at_ms), (logged_in, logged_in.occurred_at_ms))
    assert everything(stage)["conversion|all"] == {T0: [1.0, 1.0]}


def test_the_cap_evicts_the_oldest_sessions_journeys_from_both_counts():
    stage = JourneyStage(funnel_catalogue(conversion={}), max_open=2)
    feed(stage, event("add_to_cart", T0 + 1, "s1"), event("add_to_cart", T0 + 2, "s2"),
         event("add_to_cart", T0 + 3, "s3"), event("purchase", T0 + 4, "s3"), event("purchase", T0 + 5, "s1"))
    assert stage.counts["evicted"] == 1 and stage.open_journeys == 1  # s2's
    assert everything(stage)["conversion|all"] == {T0: [1.0, 2.0]}  # s1 gone: its purchase finds no journey


def test_the_cap_never_evicts_the_session_being_added_to():
    stage = JourneyStage(funnel_catalogue(conversion={}, checkout={"start": ["checkout_start"]}), max_open=1)
    feed(stage, event("add_to_cart", T0 + 1, "s1"), event("checkout_start", T0 + 2, "s1"), event("purchase", T0 + 3, "s1"))
    partials = everything(stage)
    assert partials["conversion|all"] == {T0: [1.0, 1.0]} and partials["checkout|all"] == {T0: [1.0, 1.0]}


def test_the_cap_is_per_worker_over_its_partitions_and_evicts_the_least_recently_active_session():
    from blipwatch.stream_app.ingest import IngestBatch

    batch = IngestBatch(funnel_catalogue(conversion={"within": "2h"}), 65536, max_open_journeys=3)
    first, second = batch.journey_stage(0), batch.journey_stage(1)
    feed(first, event("add_to_cart", T0 + 1, None, "c1"), event("add_to_cart", T0 + 2, None, "c2"))
    feed(second, event("add_to_cart", T0 + 3, None, "c3"))
    feed(first, event("page_view", T0 + 4, None, "c1"))   # c1 active again: c2 is now the least recent
    assert batch.open_journeys() == 3 and first.counts["evicted"] == second.counts["evicted"] == 0
    feed(second, event("add_to_cart", T0 + 5, None, "c4"))   # the worker's fourth: one goes, on partition 0
    assert batch.open_journeys() == 3 and first.counts["evicted"] == 1 and second.counts["evicted"] == 0
    assert sorted(key[1:] for key in first.open) == ["c1"] and sorted(key[1:] for key in second.open) == ["c3", "c4"]
    feed(first, event("purchase", T0 + 6, None, "c2"), event("purchase", T0 + 7, None, "c1"))
    partials = batch.advance_journeys({0: 10**15, 1: 10**15}, {})
    assert partials["conversion|all"] == {T0: [1.0, 3.0]}   # c2's journey left both counts
    assert batch.journey_counts()["evicted"] == 1


def test_a_session_id_session_is_as_recent_as_its_newest_funnel_event():
    from blipwatch.pipeline.journeys import JourneyCap

    catalogue = funnel_catalogue(conversion={}, checkout={"start": ["checkout_start"]})
    cap = JourneyCap(3)
    first, second = JourneyStage(catalogue, 0, cap=cap), JourneyStage(catalogue, 1, cap=cap)
    feed(first, event("add_to_cart", T0 + 1, "s1"))
    feed(second, event("add_to_cart", T0 + 2, "s2"))
    feed(first, event("checkout_start", T0 + 3, "s1"))      # s1: two open journeys, active at T0 + 3
    feed(second, event("add_to_cart", T0 + 4, "s3"))        # over the cap: s2 (T0 + 2) goes
    assert second.counts["evicted"] == 1 and list(second.open) == ["s3"] and cap.open_journeys() == 3


def test_a_session_seen_on_two_partitions_is_counted_once_by_the_second():
    notes = SessionPartitions()
    catalogue = funnel_catalogue(conversion={})
    first, second = JourneyStage(catalogue, 0, notes=notes), JourneyStage(catalogue, 1, notes=notes)
    feed(first, event("add_to_cart", T0, "s1"), event("add_to_cart", T0, "s2"))
    feed(second, event("add_to_cart", T0 + 5, "s1"), event("add_to_cart", T0 + 6, "s3"))
    assert (first.counts["split_sessions"], second.counts["split_sessions"]) == (0, 1)
    feed(second, event("purchase", T0 + 7, "s2"))  # s2's cart is open on partition 0
    assert second.counts["split_sessions"] == 2


def test_starts_after_their_window_was_released_are_late():
    stage = JourneyStage(funnel_catalogue(conversion={"within": "1m"}))
    feed(stage, event("add_to_cart", T0 + 1000, "s1"))
    assert stage.advance(T0 + 3 * MINUTE)
    feed(stage, event("add_to_cart", T0 + 2000, "s2"))
    assert stage.counts["late"] == 1 and everything(stage) == {}


def simulated(hours: float = 0.75, seed: int = 1, rate: float = 40):
    events = [e for e in generate_events("none", hours=hours, seed=seed, sessions_per_minute=rate)]
    return [(decode_event(orjson.dumps(e)), None) for e in events]


def run(stage: JourneyStage, events, flush_every: int = 500) -> dict:
    """Events in order, advancing the watermark (newest event time) every ``flush_every`` events."""
    partials: dict = {}
    newest = 0
    for i, (fields, _) in enumerate(events):
        stage.add(fields, fields.occurred_at_ms)
        newest = max(newest, fields.occurred_at_ms)
        if i % flush_every == flush_every - 1:
            merge(partials, stage.advance(newest))
    merge(partials, everything(stage))
    return partials


def merge(into: dict, partials: dict) -> None:
    for series, windows in partials.items():
        for window, (numerator, denominator) in windows.items():
            assert window not in into.setdefault(series, {}), "a window left the stage twice"
            into[series][window] = [numerator, denominator]


def test_on_simulated_traffic_the_numerator_never_exceeds_the_denominator_and_abandonment_matches_the_simulator():
    catalogue = funnel_catalogue(cart_abandonment_rate=ABANDONMENT)
    events = simulated()
    partials = run(JourneyStage(catalogue), events)
    for windows in partials.values():
        for numerator, denominator in windows.values():
            assert 0 <= numerator <= denominator
    failed = sum(n for n, _ in partials["cart_abandonment_rate|all"].values())
    carts = sum(d for _, d in partials["cart_abandonment_rate|all"].values())
    # the simulator's sessions last minutes: per session, a cart with no purchase after it is abandoned
    types_by_session: dict[str, list[str]] = {}
    for fields, _ in events:
        types_by_session.setdefault(fields.session_id, []).append(fields.event_type)
    with_cart = [types for types in types_by_session.values() if "add_to_cart" in types]
    assert carts == len(with_cart) > 300
    assert failed == sum(1 for types in with_cart if "purchase" not in types[types.index("add_to_cart"):])
    # and each cart the simulator flagged abandoned (cart_abandoned) is a failed journey
    assert sum(1 for types in with_cart if "cart_abandoned" in types) <= failed


def test_snapshot_and_restore_mid_stream_give_the_same_outcomes():
    catalogue = funnel_catalogue(cart_abandonment_rate=ABANDONMENT, checkout_unconverted_5m={
        "start": ["checkout_start"], "within": "5m", "outcome": "failure"})
    events = simulated(hours=0.5, seed=2)
    whole = run(JourneyStage(catalogue), events)

    first = JourneyStage(catalogue, max_open=10_000)
    half = len(events) // 2
    before = run_part(first, events[:half])
    restored = JourneyStage(catalogue, max_open=10_000)
    restored.restore(first.snapshot())
    assert restored.open_journeys == first.open_journeys > 0
    after = run_part(restored, events[half:], final=True)
    for series, windows in after.items():
        for window, cell in windows.items():
            assert window not in before.get(series, {})
            before.setdefault(series, {})[window] = cell
    assert before == whole


def run_part(stage: JourneyStage, events, final: bool = False) -> dict:
    partials: dict = {}
    newest = 0
    for i, (fields, _) in enumerate(events):
        stage.add(fields, fields.occurred_at_ms)
        newest = max(newest, fields.occurred_at_ms)
        if i % 500 == 499:
            merge(partials, stage.advance(newest))
    if final:
        merge(partials, everything(stage))
    return partials


def test_a_snapshot_of_other_funnels_is_refused():
    stage = JourneyStage(funnel_catalogue(conversion={}))
    feed(stage, event("add_to_cart", T0))
    other = JourneyStage(funnel_catalogue(conversion={"within": "10m"}))
    with pytest.raises(ValueError, match="other funnel metrics"):
        other.restore(stage.snapshot())
    with pytest.raises(ValueError, match="not readable"):
        other.restore(b"\xc1")


def test_ids_never_leave_the_stage():
    stage = JourneyStage(funnel_catalogue(conversion={}))
    feed(stage, event("add_to_cart", T0, "session-secret", "customer-secret"),
         event("add_to_cart", T0, None, "visitor-secret"))
    text = repr(stage) + repr(everything(stage)) + repr(stage.counts)
    assert "secret" not in text


# --- funnel metrics in the catalogue ---------------------------------------------------------------

@pytest.mark.parametrize("spec, message", [
    ({"start": ["add_to_cart"], "success": ["purchase"]}, "within is missing"),
    ({"start": ["add_to_cart"], "success": ["purchase"], "within": "soon"}, "duration like 30m"),
    ({"start": ["add_to_cart"], "success": ["purchase"], "within": "25h"}, "at most 24h"),
    ({"start": ["add_to_cart"], "success": ["purchase"], "within": 0}, "more than 0"),
    ({"start": [], "success": ["purchase"], "within": "5m"}, "start must be a list of event types"),
    ({"start": ["add_to_cart"], "success": "*", "within": "5m"}, "success must be a list"),
    ({"start": ["purchase"], "success": ["purchase"], "within": "5m"}, "cannot both start and convert"),
    ({"start": ["add_to_cart"], "success": ["purchase"], "within": "5m", "outcome": "abandoned"},
     "use success .* or failure"),
    ({"start": ["add_to_cart"], "success": ["purchase"], "within": "5m", "numerator": {}}, "does not take"),
])
def test_a_wrong_funnel_definition_is_one_clear_error(spec, message):
    with pytest.raises(CatalogueError, match=message):
        Catalogue.from_dict({"metrics": {"funnel_metric": {"kind": "funnel", **spec}}})


def test_funnel_metrics_are_scored_as_rates_and_feed_no_event_counts():
    catalogue = funnel_catalogue(conversion={"within": "90s"})
    metric = catalogue.by_name["conversion"]
    assert metric.detector_kind == "rate" and metric.funnel.within_ms == 90_000
    assert catalogue.contributions("add_to_cart") == [] and catalogue.contributions("purchase") == []


def test_the_default_catalogue_has_the_funnels_and_still_accepts_cart_abandoned():
    catalogue = Catalogue.from_dict(default_config_dict())
    kinds = {m.name: (m.kind, m.funnel.within_ms if m.funnel else None, m.funnel.outcome if m.funnel else None)
             for m in catalogue.metrics}
    assert kinds["cart_abandonment_rate"] == ("funnel", 30 * MINUTE, "failure")
    assert kinds["checkout_conversion_rate"] == ("funnel", 30 * MINUTE, "success")
    assert kinds["checkout_unconverted_5m"] == ("funnel", 5 * MINUTE, "failure")
    # an outcome event a shop still sends is valid and counted in the volume, feeding no funnel
    assert [catalogue.metrics[c[0]].name for c in catalogue.contributions("cart_abandoned")] == ["event_volume"]

"""The pre-aggregation and the aggregate stage: sums equal event by event; acknowledgements in offset order."""

import math

from blipwatch.detectors.catalogue import Catalogue
from blipwatch.detectors.windows import closes_at
from blipwatch.stream_app.aggregate import PartitionAggregator

MINUTE = 60_000


def aggregator() -> tuple[PartitionAggregator, Catalogue]:
    catalogue = Catalogue.from_dict(None)
    return PartitionAggregator(0, catalogue, lambda series: None), catalogue


def test_acknowledges_in_offset_order_so_a_commit_never_passes_an_open_window():
    """Faust 0.15 commits past an unacknowledged message at the committed offset once the next
    one is acknowledged (faust-streaming/faust#606): a message that fed no open window must still
    wait for the ones before it."""
    agg, catalogue = aggregator()
    acked: list[str] = []
    agg.merge({"complaint_count|all": [[0, 3, 0]]}, lambda: acked.append("window 0"))
    agg.merge({}, lambda: acked.append("report only"))
    agg.merge({"complaint_count|all": [[MINUTE, 2, 0]]}, lambda: acked.append("window 1"))
    agg.acknowledge_until(None)
    assert acked == []
    first_closes = closes_at(0, catalogue.window_ms, catalogue.lateness_ms)
    agg.acknowledge_until(first_closes - 1)
    assert acked == []
    agg.acknowledge_until(first_closes)
    assert acked == ["window 0", "report only"]
    agg.acknowledge_until(closes_at(MINUTE, catalogue.window_ms, catalogue.lateness_ms))
    assert acked == ["window 0", "report only", "window 1"]


def test_a_message_that_fed_no_window_is_acknowledged_at_once_when_nothing_is_open():
    agg, _ = aggregator()
    acked: list[str] = []
    agg.merge({}, lambda: acked.append("report"))
    agg.acknowledge_until(None)
    assert acked == ["report"]


def test_partials_are_admitted_once_each_in_offset_order_and_a_jump_asks_for_one_seek_back():
    agg, _ = aggregator()
    agg.next_offset = 5                       # where the partition resumes (its committed offset)
    assert agg.admit(5) == "process"
    assert agg.admit(8) == "seek"             # 6 and 7 were dropped on the way: go back for them
    assert agg.admit(9) == "skip"             # still buffered from before the seek
    assert agg.admit(6) == "process"
    assert agg.admit(6) == "skip"             # delivered twice: merged once
    assert agg.admit(7) == "process"
    assert agg.admit(8) == "process"
    assert agg.admit(10, now=100.0) == "seek"  # a later jump asks again
    assert agg.admit(11, now=102.0) == "skip"  # ... once
    assert agg.admit(11, now=106.0) == "seek"  # ... and again if 9 has not come within RESEEK_SECONDS


def per_event_reference(catalogue, events):
    """What the pre-aggregation must equal: every event added to every series it feeds, one by one."""
    expected: dict[str, dict[int, list[float]]] = {}
    seen: dict[int, set] = {}
    dropped: dict[str, int] = {}
    for event in events:
        window = event.occurred_at_ms - event.occurred_at_ms % catalogue.window_ms
        segments = ["all"] + [f"{d}={getattr(event, d)}" for d in catalogue.dimensions
                              if getattr(event, d) is not None]
        for index, role, selector in catalogue.contributions(event.event_type):
            if not selector.matches(event.properties):
                continue
            if selector.property is not None:
                value = event.properties.get(selector.property)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                add = (value, 1.0)
            else:
                add = (1.0, 0.0) if role == 0 else (0.0, 1.0)
            metric = catalogue.metrics[index]
            for segment in segments:
                key = f"{metric.name}|{segment}"
                names = seen.setdefault(index, set())
                if key not in names and len(names) >= catalogue.max_series_per_metric and segment != "all":
                    dropped[metric.name] = dropped.get(metric.name, 0) + 1
                    continue
                names.add(key)
                cell = expected.setdefault(key, {}).setdefault(window, [0.0, 0.0])
                cell[0] += add[0]
                cell[1] += add[1]
    return expected, dropped


def test_two_stage_pre_aggregation_equals_adding_each_event_to_each_series():
    import random

    from blipwatch.detectors.catalogue import PartialAggregate
    from blipwatch.schemas.events import CustomerEvent

    catalogue = Catalogue.from_dict({"segments": {"max_series_per_metric": 6}})
    rng = random.Random(11)
    types = ["page_view", "search", "add_to_cart", "cart_abandoned", "checkout_start", "purchase",
             "payment_failed", "complaint", "error", "made_up_type"]
    events = []
    for i in range(3000):
        event_type = rng.choice(types)
        properties = {}
        if event_type == "search":
            properties["results_count"] = rng.choice([0, 0, 3, 12])
        if event_type == "purchase" and rng.random() < 0.9:
            properties["order_value"] = rng.choice([12.5, 80, 199.99])
        events.append(CustomerEvent(f"e{i}", event_type, 1_767_600_000_000 + rng.randint(0, 5 * MINUTE), None, None,
                                    rng.choice(["web", "app", None]), rng.choice(["DE", "FR", "GB", "ES", "IT", None]),
                                    rng.choice(["mobile", "desktop", None]), properties))
    aggregate = PartialAggregate(catalogue)
    merged: dict[str, dict[int, list[float]]] = {}
    for start in range(0, len(events), 700):  # several drains, as flushes do
        for event in events[start:start + 700]:
            aggregate.add(event)
        for key, windows in aggregate.drain().items():
            for window, (n, d) in windows.items():
                cell = merged.setdefault(key, {}).setdefault(window, [0.0, 0.0])
                cell[0] += n
                cell[1] += d
    expected, dropped = per_event_reference(catalogue, events)
    assert merged.keys() == expected.keys()
    for key in expected:
        assert merged[key].keys() == expected[key].keys(), key
        for window, (n, d) in expected[key].items():
            assert math.isclose(merged[key][window][0], n) and math.isclose(merged[key][window][1], d), key
    assert aggregate.drain_dropped() == dropped


def test_a_mean_whose_where_fails_does_not_shift_the_next_means_sums():
    """add() keeps a sum and count for every mean of the type; a mean skipped by its ``where`` must
    still be counted when finding the next mean's place (it read the skipped mean's sums before)."""
    from blipwatch.detectors.catalogue import PartialAggregate
    from blipwatch.schemas.events import CustomerEvent

    catalogue = Catalogue.from_dict({"metrics": {
        "big_order_value": {"kind": "mean", "mean": {"event_types": ["purchase"], "property": "order_value",
                                                     "where": "order_value > 100"}},
        "items_per_order": {"kind": "mean", "mean": {"event_types": ["purchase"], "property": "items"}},
    }})
    events = [CustomerEvent("e1", "purchase", 1_767_643_500_000, properties={"order_value": 10, "items": 3}),
              CustomerEvent("e2", "purchase", 1_767_643_501_000, properties={"order_value": 150, "items": 5})]
    aggregate = PartialAggregate(catalogue)
    for event in events:
        aggregate.add(event)
    partials = aggregate.drain()
    expected, _ = per_event_reference(catalogue, events)
    assert partials == expected
    assert partials["items_per_order|all"] == {1_767_643_500_000: [8.0, 2.0]}
    assert partials["big_order_value|all"] == {1_767_643_500_000: [150.0, 1.0]}

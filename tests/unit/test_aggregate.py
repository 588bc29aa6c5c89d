"""The pre-aggregation and the aggregate stage: sums equal event by event; acknowledgements in offset order."""

import math

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.pipeline.windows import closes_at
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


def pair_segments(catalogue, values: dict) -> list[str]:
    """The two-dimension segments of an event's segment values, in the order of ``segments.pairs``."""
    from blipwatch.schemas.outputs import segment_label

    return [segment_label({a: values[a], b: values[b]}) for a, b in catalogue.pairs
            if values.get(a) is not None and values.get(b) is not None]


def per_event_reference(catalogue, events, flush_every: int | None = None):
    """What the pre-aggregation must equal: every event added to every series it feeds, one by one;
    in each flush of ``flush_every`` events, to its single-dimension segments first, then (a second
    pass over the flush's events) to its pairs: the cap admits a flush's single dimensions first."""
    expected: dict[str, dict[int, list[float]]] = {}
    seen: dict[int, set] = {}
    dropped: dict[str, int] = {}
    flush_every = flush_every or max(1, len(events))
    for start in range(0, len(events), flush_every):
        flush = events[start:start + flush_every]
        for pairs in (False, True):
            for event in flush:
                window = event.occurred_at_ms - event.occurred_at_ms % catalogue.window_ms
                if pairs:
                    segments = pair_segments(catalogue, {d: getattr(event, d) for d in catalogue.dimensions})
                else:
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

    from blipwatch.pipeline.preaggregate import PartialAggregate
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
    expected, dropped = per_event_reference(catalogue, events, 700)
    assert merged.keys() == expected.keys()
    for key in expected:
        assert merged[key].keys() == expected[key].keys(), key
        for window, (n, d) in expected[key].items():
            assert math.isclose(merged[key][window][0], n) and math.isclose(merged[key][window][1], d), key
    assert aggregate.drain_dropped() == dropped


def test_a_mean_whose_where_fails_does_not_shift_the_next_means_sums():
    """add() keeps a sum and count for every mean of the type; a mean skipped by its ``where`` must
    still be counted when finding the next mean's place (it read the skipped mean's sums before)."""
    from blipwatch.pipeline.preaggregate import PartialAggregate
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


# --- StateWriter: points delivered, then state, then acknowledgements -----------------------

import asyncio  # noqa: E402

from blipwatch.stream_app import aggregate as aggregate_module  # noqa: E402
from blipwatch.stream_app.aggregate import StateWriter  # noqa: E402


class _Tracker:
    def __init__(self, series: str, log: list):
        self.series, self.log, self.version = series, log, 0

    def to_bytes(self) -> bytes:
        self.log.append(("serialise", self.series, self.version))
        return f"{self.series}@{self.version}".encode()


def _writer(log: list, aggregators: dict | None = None, busy=lambda: False):
    sent: list[asyncio.Future] = []

    async def send(records):
        futures = []
        for partition, key, blob in records:   # a future per record: the tests settle them one by one
            log.append(("state sent", key.decode(), blob.decode()))
            futures.append(asyncio.get_running_loop().create_future())
        sent.extend(futures)
        return futures

    writer = StateWriter(aggregators if aggregators is not None else {}, send, lambda key, blob: None, busy)
    return writer, sent


def test_state_is_serialised_only_after_every_point_is_delivered_and_acks_wait_for_the_state():
    async def scenario():
        log: list = []
        agg, catalogue = aggregator()
        agg.merge({"complaint_count|all": [[0, 3, 0]]}, lambda: log.append("ack"))
        agg.watermark.update({0: closes_at(0, catalogue.window_ms, catalogue.lateness_ms)}, 1)
        writer, sent = _writer(log, {0: agg})
        tracker = _Tracker("complaint_count|all", log)
        point = asyncio.get_running_loop().create_future()
        writer.closed(0, [tracker], [point])
        task = asyncio.ensure_future(writer.write())
        await asyncio.sleep(0.01)
        assert log == [], "nothing is serialised while a point is undelivered"
        point.set_result(None)
        await asyncio.sleep(0.01)
        assert log == [("serialise", "complaint_count|all", 0), ("state sent", "complaint_count|all",
                                                                  "complaint_count|all@0")]
        assert not task.done()
        sent[0].set_result(None)
        await task
        assert log[-1] == "ack", "acknowledged once the state is delivered"
        assert writer.idle()

    asyncio.run(scenario())


def test_a_message_half_processed_holds_the_state_back(monkeypatch):
    """The agent moved the watermark and closed windows but has not yet queued their points."""
    async def scenario():
        log: list = []
        writer, sent = _writer(log)
        tracker = _Tracker("a", log)
        writer.closed(0, [tracker], [])
        writer.in_hand = True
        task = asyncio.ensure_future(writer.write())
        await asyncio.sleep(0.02)
        assert log == []
        point = asyncio.get_running_loop().create_future()
        tracker.version = 1
        writer.closed(0, [tracker], [point])
        writer.in_hand = False
        await asyncio.sleep(0.02)
        assert log == [], "the new point is not delivered yet"
        point.set_result(None)
        await asyncio.sleep(0.02)
        assert log[0] == ("serialise", "a", 1)
        for future in sent:
            future.set_result(None)
        await task

    asyncio.run(scenario())


def test_a_series_closed_twice_before_the_write_is_written_once_and_chunks_let_the_agent_in(monkeypatch):
    monkeypatch.setattr(aggregate_module, "STATE_CHUNK", 2)

    async def scenario():
        log: list = []
        writer, sent = _writer(log)
        trackers = [_Tracker(name, log) for name in "abcde"]
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        writer.closed(0, trackers, [done])
        writer.closed(0, trackers[:1], [done])
        assert writer.due(now=writer.oldest + aggregate_module.STATE_DEFER_SECONDS)
        assert not writer.due(now=writer.oldest)
        task = asyncio.ensure_future(writer.write())
        while not task.done():
            await asyncio.sleep(0)
            for future in sent:
                if not future.done():
                    future.set_result(None)
        assert [entry[1] for entry in log if entry[0] == "serialise"] == list("abcde")
        assert writer.idle() and writer.oldest is None

    asyncio.run(scenario())


def test_a_revocation_drops_a_write_under_way_and_acknowledges_nothing():
    async def scenario():
        log: list = []
        agg, catalogue = aggregator()
        agg.merge({"complaint_count|all": [[0, 3, 0]]}, lambda: log.append("ack"))
        agg.watermark.update({0: closes_at(0, catalogue.window_ms, catalogue.lateness_ms)}, 1)
        aggregators = {0: agg}
        writer, sent = _writer(log, aggregators)
        writer.closed(0, [_Tracker("a", log)], [])
        task = asyncio.ensure_future(writer.write())
        await asyncio.sleep(0.01)
        aggregators.clear()
        writer.forget()
        for future in sent:
            future.set_result(None)
        await task
        assert "ack" not in log

    asyncio.run(scenario())


class ReferenceAggregate:
    """``PartialAggregate`` as it was before the margins (2026-11-30): every event counted per
    combination of (type, segment values, window, where outcomes), each combination fanned out to
    every series at the drain (all the combinations to their single-dimension segments, then all
    of them to their two-dimension segments). The partials' order and floats, the series the cap admits and the
    drops must stay exactly these. Series admission and labels come from a PartialAggregate of its
    own (``helper``), whose combinations are not used."""

    def __init__(self, catalogue: Catalogue):
        from blipwatch.pipeline.preaggregate import PartialAggregate

        self.helper = PartialAggregate(catalogue)
        self.combos: dict[tuple, list[float]] = {}

    def add(self, event) -> None:
        helper = self.helper
        contributions, filtered, averaged = helper._plan(event.event_type)
        if not contributions:
            return
        properties = event.properties
        matched = tuple([selector.matches(properties) for selector in filtered]) if filtered else ()
        ms = event.occurred_at_ms
        key = (event.event_type, helper._values(event), ms - ms % helper.window_ms, matched)
        cell = self.combos.get(key)
        if cell is None:
            cell = self.combos[key] = [0.0] * (1 + 2 * len(averaged))
        cell[0] += 1.0
        for i, selector in enumerate(averaged):
            value = properties.get(selector.property)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                continue
            cell[1 + 2 * i] += value
            cell[2 + 2 * i] += 1.0

    def drain(self) -> dict[str, dict[int, list[float]]]:
        helper = self.helper
        partials: dict[str, dict[int, list[float]]] = {}
        dimensions = helper.dimensions
        # every combination to its single-dimension segments, then every combination to its pairs
        for (event_type, values, window_start, matched), cell, segments in [
                *[(key, cell, helper._segments(key[1])) for key, cell in self.combos.items()],
                *[(key, cell, pair_segments(helper.catalogue, dict(zip(dimensions, key[1]))))
                  for key, cell in self.combos.items()]]:
            contributions = helper._plan(event_type)[0]
            count = cell[0]
            where_index = mean_index = 0
            for metric_index, role, selector in contributions:
                if selector.where is not None:
                    where_index += 1
                    if not matched[where_index - 1]:
                        if selector.property is not None:
                            mean_index += 1
                        continue
                if selector.property is not None:
                    add_numerator, add_denominator = cell[1 + 2 * mean_index], cell[2 + 2 * mean_index]
                    mean_index += 1
                    if not add_denominator:
                        continue
                    weight = add_denominator
                elif role == 0:
                    add_numerator, add_denominator, weight = count, 0.0, count
                else:
                    add_numerator, add_denominator, weight = 0.0, count, count
                for segment in segments:
                    key = helper._series(metric_index, segment)
                    if key is None:
                        helper._drop(metric_index, weight)
                        continue
                    windows = partials.setdefault(key, {})
                    series_cell = windows.get(window_start)
                    if series_cell is None:
                        windows[window_start] = [0.0 + add_numerator, 0.0 + add_denominator]
                    else:
                        series_cell[0] += add_numerator
                        series_cell[1] += add_denominator
        self.combos = {}
        return partials


def test_partials_equal_the_reference_in_order_and_floats_with_the_same_cap_and_drops():
    import random

    from blipwatch.pipeline.preaggregate import PartialAggregate
    from blipwatch.schemas.events import CustomerEvent

    catalogue = Catalogue.from_dict({"segments": {"max_series_per_metric": 9}, "metrics": {
        "big_order_value": {"kind": "mean", "mean": {"event_types": ["purchase"], "property": "order_value",
                                                     "where": "order_value > 100"}},
        "cart_abandonment_rate": {"kind": "rate", "numerator": {"event_types": ["cart_abandoned"]},
                                  "denominator": {"event_types": ["cart_abandoned", "purchase"]}},
        "items_per_order": {"kind": "mean", "mean": {"event_types": ["purchase"], "property": "items"}},
        "event_volume": {"kind": "count", "count": {"event_types": "*"}},
        "search_zero_results_rate": {"kind": "rate",
                                     "numerator": {"event_types": ["search"], "where": "results_count == 0"},
                                     "denominator": {"event_types": ["search"]}},
        "small_orders": {"kind": "count", "count": {"event_types": ["purchase"], "where": "order_value < 50"}},
    }})
    rng = random.Random(5)
    types = ["page_view", "search", "cart_abandoned", "purchase", "purchase", "made_up_type"]
    countries = ["DE", "FR", "GB", "ES", "IT", "PL", "NL", "SE", "AT", "BE", "DK", None]
    events = []
    for i in range(8000):
        event_type = rng.choice(types)
        properties: dict = {}
        if event_type == "search":
            properties["results_count"] = rng.choice([0, 3, 12])
        if event_type == "purchase":
            if rng.random() < 0.8:
                properties["order_value"] = rng.choice([12.5, 80.1, 199.99, 0.3, 1e-7, 1e16])
            if rng.random() < 0.7:
                properties["items"] = rng.choice([1, 2, 3.5, 0.1])
        events.append(CustomerEvent(f"e{i}", event_type, 1_767_600_000_000 + rng.randint(0, 8 * MINUTE), None, None,
                                    rng.choice(["web", "app", None]), rng.choice(countries),
                                    rng.choice(["mobile", "desktop", None]), properties))
    aggregate, reference = PartialAggregate(catalogue), ReferenceAggregate(catalogue)
    for start in range(0, len(events), 900):  # several drains, as flushes do
        for event in events[start:start + 900]:
            aggregate.add(event)
            reference.add(event)
        got, expected = aggregate.drain(), reference.drain()
        assert [(k, list(w.items())) for k, w in got.items()] == [(k, list(w.items())) for k, w in expected.items()]
        assert aggregate.drain_dropped() == reference.helper.drain_dropped()
    assert [sorted(seen) for seen in aggregate.series_seen] == [sorted(seen) for seen in reference.helper.series_seen]
    assert any(len(seen) == 9 for seen in aggregate.series_seen)


def test_the_cap_admits_series_in_the_order_events_first_fed_them():
    """Which series the cap lets in depends on the order they are first fed; the margins replay it."""
    from blipwatch.pipeline.preaggregate import PartialAggregate
    from blipwatch.schemas.events import CustomerEvent

    catalogue = Catalogue.from_dict({"segments": {"max_series_per_metric": 3}})
    aggregate, reference = PartialAggregate(catalogue), ReferenceAggregate(catalogue)
    for i, (country, channel) in enumerate([("DE", "web"), ("FR", "web"), ("DE", "app"), ("GB", "app")]):
        event = CustomerEvent(f"e{i}", "page_view", 1_767_600_000_000 + i, channel=channel, country=country)
        aggregate.add(event)
        reference.add(event)
    assert list(aggregate.drain()) == list(reference.drain())
    assert sorted(aggregate.series_seen[0]) == sorted(reference.helper.series_seen[0]) == [
        "event_volume|all", "event_volume|channel=web", "event_volume|country=DE"]


def test_pairs_are_series_labelled_in_name_order_and_the_cap_admits_single_dimensions_first():
    from blipwatch.pipeline.preaggregate import PartialAggregate
    from blipwatch.schemas.events import CustomerEvent
    from blipwatch.schemas.outputs import segment_from_label, series_key

    catalogue = Catalogue.from_dict({"segments": {"pairs": [["device", "channel"], ["channel", "country"]],
                                                  "max_series_per_metric": 7}})
    aggregate = PartialAggregate(catalogue)
    events = [("web", "DE", "mobile"), ("web", "DE", "desktop"), ("app", "FR", None), ("web", None, "mobile")]
    for i, (channel, country, device) in enumerate(events):
        aggregate.add(CustomerEvent(f"e{i}", "payment_failed", 1_767_600_000_000 + i, channel=channel,
                                    country=country, device=device))
    partials = aggregate.drain()
    failures = [key for key in partials if key.startswith("payment_failure_rate|")]
    # all + 6 single-dimension segments fill the cap of 7 before any pair is admitted
    assert failures == ["payment_failure_rate|all", "payment_failure_rate|channel=web",
                           "payment_failure_rate|country=DE", "payment_failure_rate|device=mobile",
                           "payment_failure_rate|device=desktop", "payment_failure_rate|channel=app",
                           "payment_failure_rate|country=FR"]
    # the pairs' events were dropped: web x mobile (2), web x DE (2), web x desktop, app x FR, each
    # counted once as a numerator and once as a denominator
    assert aggregate.drain_dropped()["payment_failure_rate"] == 2 * (2 + 2 + 1 + 1)

    roomy = PartialAggregate(Catalogue.from_dict({"segments": {"pairs": [["device", "channel"],
                                                                         ["channel", "country"]]}}))
    for i, (channel, country, device) in enumerate(events):
        roomy.add(CustomerEvent(f"e{i}", "payment_failed", 1_767_600_000_000 + i, channel=channel,
                                country=country, device=device))
    partials = roomy.drain()
    window = 1_767_600_000_000 - 1_767_600_000_000 % MINUTE
    pairs = {key: windows[window] for key, windows in partials.items()
             if key.startswith("payment_failure_rate|") and "," in key}
    assert pairs == {"payment_failure_rate|channel=web,device=mobile": [2.0, 2.0],
                     "payment_failure_rate|channel=web,country=DE": [2.0, 2.0],
                     "payment_failure_rate|channel=web,device=desktop": [1.0, 1.0],
                     "payment_failure_rate|channel=app,country=FR": [1.0, 1.0]}
    for key in pairs:   # the label is the one schemas.outputs builds and parses
        metric, label = key.split("|")
        assert series_key(metric, segment_from_label(label)) == key
    # the singles of the flush come before its pairs
    keys = [key for key in partials if key.startswith("payment_failure_rate|")]
    assert max(keys.index(k) for k in keys if "," not in k) < min(keys.index(k) for k in pairs)


def test_no_pairs_configured_no_pair_series():
    from blipwatch.pipeline.preaggregate import PartialAggregate
    from blipwatch.schemas.events import CustomerEvent

    aggregate = PartialAggregate(Catalogue.from_dict({"segments": {"pairs": []}}))
    aggregate.add(CustomerEvent("e1", "purchase", 1_767_600_000_000, channel="web", country="DE",
                                properties={"order_value": 12.0}))
    assert not [key for key in aggregate.drain() if "," in key]


def test_dimensions_given_without_pairs_keep_the_default_pairs_they_hold():
    assert Catalogue.from_dict(None).pairs == (("channel", "country"),)
    assert Catalogue.from_dict({"segments": {"dimensions": ["country", "channel"]}}).pairs == (("channel", "country"),)
    assert Catalogue.from_dict({"segments": {"dimensions": ["channel", "device"]}}).pairs == ()
    assert Catalogue.from_dict({"segments": {"pairs": [["device", "country"]]}}).pairs == (("device", "country"),)

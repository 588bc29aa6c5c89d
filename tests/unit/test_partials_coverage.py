"""Re-sent partials are harmless (issue 16 item 4): each message says which input offsets it covers,
and the aggregate skips what it has merged already, remembering it in its state."""

from __future__ import annotations

from blipwatch.schemas.partials import Coverage, decode_covered, partial_messages


def test_a_flush_sent_again_is_recognised_piece_by_piece_and_a_later_one_is_not():
    merged: dict[int, tuple[int, int]] = {}
    first = Coverage({0: 100, 1: 50}, {0: 200, 1: 80}, 0)
    assert not first.merged_in(merged)
    first.add_to(merged)
    assert merged == {0: (200, 0), 1: (80, 0)}
    assert first.merged_in(merged)                                   # the same flush again
    assert Coverage({0: 100}, {0: 150}, 0).merged_in(merged)         # a part of it, re-read up to a bound
    assert not Coverage({0: 200}, {0: 300}, 0).merged_in(merged)     # the next flush
    assert not Coverage({0: 200, 2: 0}, {0: 200, 2: 10}, 0).merged_in(merged)  # another partition too
    assert not Coverage({}, {}, 0).merged_in(merged)                 # a report only: never skipped
    # pieces of a split flush: each is skipped only once merged
    Coverage({0: 200}, {0: 300}, 0).add_to(merged)
    assert Coverage({0: 200}, {0: 300}, 0).merged_in(merged)
    assert not Coverage({0: 200}, {0: 300}, 1).merged_in(merged)


def test_a_message_partly_merged_is_an_overlap():
    merged = {0: (200, 0)}
    assert Coverage({0: 100}, {0: 300}, 0).overlaps(merged)
    assert not Coverage({0: 200}, {0: 300}, 0).overlaps(merged)
    assert not Coverage({0: 100}, {0: 200}, 0).overlaps(merged)


def test_every_piece_of_a_message_carries_its_coverage():
    partials = {f"event_volume|country=C{n}": {60_000 * w: [1.0, 0.0] for w in range(20)} for n in range(3000)}
    messages = partial_messages(partials, {0: 5}, 1, 1, "a", sent_to={0: 10}, sent_from={0: 3}, max_bytes=64 * 1024)
    coverages = [decode_covered(value)[4] for _, value in messages]
    assert len(coverages) > 2
    assert coverages == [Coverage({0: 3}, {0: 10}, part) for part in range(len(coverages))]


def test_the_aggregator_skips_what_it_merged_and_a_copy_of_an_acknowledged_message_only_meets_closed_windows():
    from blipwatch.pipeline.windows import closes_at
    from blipwatch.stream_app.aggregate import PartitionAggregator
    from blipwatch.stream_app.config import Settings, load_catalogue

    catalogue = load_catalogue(Settings.from_env({}))
    aggregator = PartitionAggregator(2, catalogue, lambda key: None)
    acked = []
    first = Coverage({0: 0}, {0: 60}, 0)
    assert not aggregator.already_merged(first)
    aggregator.merge({"complaint_count|all": [[0, 3, 0]]}, lambda: acked.append("first"))
    assert aggregator.already_merged(first)                          # the same message again
    assert aggregator.already_merged(Coverage({0: 0}, {0: 30}, 0))  # a part of it, re-read up to a bound
    assert not aggregator.already_merged(Coverage({0: 60}, {0: 90}, 0))
    # the window closes and the message is acknowledged: after a restart (merged offsets forgotten)
    # a copy of it is merged again, but only into a closed window: late, not counted twice
    closing = closes_at(0, catalogue.window_ms, catalogue.lateness_ms)
    [(tracker, closed)] = aggregator.close(closing)
    aggregator.acknowledge_until(closing)
    assert acked == ["first"] and closed[0].point.numerator == 3
    restarted = PartitionAggregator(2, catalogue, lambda key: tracker.to_bytes() if key == tracker.series else None)
    restarted.adopt([tracker.series])
    assert not restarted.already_merged(first)
    assert restarted.trackers[tracker.series].merge(0, 3, 0) is False   # late: window 0 stays closed

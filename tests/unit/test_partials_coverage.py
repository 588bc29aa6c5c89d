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


def test_the_aggregator_skips_what_it_merged_and_remembers_what_was_acknowledged():
    from blipwatch.stream_app.aggregate import COVERED_KEY, PartitionAggregator, encode_covered
    from blipwatch.stream_app.config import Settings, load_catalogue

    catalogue = load_catalogue(Settings.from_env({}))
    stored = {COVERED_KEY + "2": encode_covered({0: (50, 0)}, committed=30)}
    aggregator = PartitionAggregator(2, catalogue, lambda key: stored.get(key))
    assert aggregator.merged == {0: (50, 0)}                       # read back from the state
    acked = []
    old = Coverage({0: 40}, {0: 50}, 0)
    assert aggregator.already_merged(old)                            # merged before a restart
    new = Coverage({0: 50}, {0: 60}, 0)
    assert not aggregator.already_merged(new)
    aggregator.merge({"complaint_count|all": [[0, 3, 0]]}, lambda: acked.append("new"), new)
    assert aggregator.already_merged(new)                            # the same message again
    assert aggregator.acked == {0: (50, 0)}                          # not acknowledged yet
    aggregator.acknowledge_until(10**15)
    assert acked == ["new"] and aggregator.acked == {0: (60, 0)} and aggregator.acked_changed
    aggregator.check_resume(30)                                      # at the committed offset: kept
    assert aggregator.merged == {0: (60, 0)}


def test_a_partials_topic_made_anew_drops_the_coverage_of_the_old_offsets():
    from blipwatch.stream_app.aggregate import COVERED_KEY, PartitionAggregator, encode_covered
    from blipwatch.stream_app.config import Settings, load_catalogue

    catalogue = load_catalogue(Settings.from_env({}))
    stored = {COVERED_KEY + "0": encode_covered({1: (600, 0)}, committed=40)}
    aggregator = PartitionAggregator(0, catalogue, lambda key: stored.get(key))
    aggregator.check_resume(0)   # a restarted memory-only broker: offsets start again at 0
    assert aggregator.merged == {} and not aggregator.already_merged(Coverage({1: 0}, {1: 150}, 0))

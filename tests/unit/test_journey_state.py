"""The journey snapshots' records (stream_app/journey_state.py) without a broker: pieces put back
together, the newest complete snapshot wins, what a taken-over partition reads for the journeys
only, and that a snapshot is written only when it holds something new."""

from __future__ import annotations

import orjson

from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
from blipwatch.stream_app import journey_state
from blipwatch.stream_app.ingest import IngestBatch
from blipwatch.stream_app.journey_state import JourneyState, SnapshotReader, snapshot_records

T0 = 1767643200000


class Record:
    def __init__(self, offset: int, value: bytes = b"", key: bytes = b"k"):
        self.offset, self.value, self.key = offset, value, key


def test_a_large_snapshot_goes_in_pieces_and_the_newest_complete_one_is_read(monkeypatch):
    monkeypatch.setattr(journey_state, "PIECE_BYTES", 10)
    old = snapshot_records(3, 100, b"a" * 25)
    new = snapshot_records(3, 200, b"b" * 31)
    assert len(old) == 3 and len(new) == 4
    reader = SnapshotReader({3})
    for key, value in old + new[:2]:        # the newest cut short (a kill mid-send)
        reader.add(key, value)
    assert reader.newest == {3: (100, b"a" * 25)}
    for key, value in new:
        reader.add(key, value)
    reader.add(*snapshot_records(5, 7, b"x")[0])   # another worker's partition: not asked for
    assert reader.newest == {3: (200, b"b" * 31)}


def test_records_before_the_partials_position_feed_the_journeys_only():
    state = JourneyState(IngestBatch(Catalogue.from_dict(default_config_dict()), 65536), {}, "t", 4)
    state.journeys_only_until[0] = 12
    journeys_only, counts_only, both = state.split(0, [Record(o) for o in range(10, 15)])
    assert [r.offset for r in journeys_only] == [10, 11] and counts_only == [] and [r.offset for r in both] == [12, 13, 14]
    assert 0 not in state.journeys_only_until
    state.counts_only_until[1] = 3
    journeys_only, counts_only, both = state.split(1, [Record(0), Record(1)])
    assert journeys_only == [] and [r.offset for r in counts_only] == [0, 1] and both == []
    assert state.counts_only_until == {1: 3}   # not there yet
    assert state.split(2, [Record(5)])[2][0].offset == 5


def test_a_snapshot_is_written_when_it_holds_something_new_and_restores_the_journeys():
    catalogue = Catalogue.from_dict(default_config_dict())
    batch = IngestBatch(catalogue, 65536)
    state = JourneyState(batch, {}, "t", 4)
    cart = {"event_id": "e1", "event_type": "add_to_cart", "occurred_at": T0 + 1000, "session_id": "s1",
            "channel": "web"}
    batch.add_records([Record(0, orjson.dumps(cart))], "t/1/", None, partition=1)
    state.positions[1] = 1
    written = state.records()
    assert [(p, key) for p, key, _ in written] == [(1, b"1")]
    assert len(state.records()) == 1        # not confirmed delivered: sent again
    state.delivered()
    assert state.records() == []            # nothing new
    state.positions[1] = 2
    assert len(state.records()) == 1        # read on
    state.delivered()
    # a new owner restores it: the open journey is decided as the old owner would have
    reader = SnapshotReader({1})
    for _, key, value in written:
        reader.add(key, value)
    to, snapshot = reader.newest[1]
    other = IngestBatch(catalogue, 65536)
    other.journey_stage(1).restore(snapshot)
    assert to == 1 and other.journey_stage(1).open_journeys == 1   # the cart, open in cart_abandonment_rate
    partials = other.advance_journeys({1: T0 + 60_000 + 30 * 60_000 + 30_000}, {})
    assert partials["cart_abandonment_rate|all"] == {T0: [1.0, 1.0]}


def test_a_successor_deciding_to_the_killed_flush_jw_releases_what_that_flush_released():
    """The bounded re-read on takeover: snapshot at the committed offset, the killed flush's records
    fed again, journeys decided to that flush's ``jw`` (IngestService.bounded): the same funnel
    counts as that flush, which the aggregate skips where it arrived and merges where it did not.
    Decided to a lower watermark (the successor's own progress, when the partition's newest event
    came before the committed offset), it would release less, and the rest again later where the
    killed flush had arrived."""
    catalogue = Catalogue.from_dict(default_config_dict())

    def cart(i: int, minute: int) -> Record:
        return Record(i, orjson.dumps({"event_id": f"e{i}", "event_type": "add_to_cart",
                                       "occurred_at": T0 + minute * 60_000 + i, "session_id": f"s{i}",
                                       "channel": "web"}))

    before = [cart(i, i) for i in range(9)] + [cart(9, 50)]   # committed, in the snapshot; one at 20:50
    killed = [cart(i, i - 5) for i in range(10, 20)]      # the killed flush's records, 20:05..20:14
    owner = IngestBatch(catalogue, 65536)
    owner.add_records(before, "t/0/", None, partition=0)
    snapshot = owner.journey_stage(0).snapshot()
    owner.add_records(killed, "t/0/", None, partition=0)
    jw = T0 + 50 * 60_000 + 9                             # the owner's progress: the newest event it had seen
    sent = owner.advance_journeys({0: jw}, {})
    assert sum(cell[1] for cell in sent["cart_abandonment_rate|all"].values()) >= 10

    def successor(watermark: int) -> dict:
        batch = IngestBatch(catalogue, 65536)
        batch.journey_stage(0).restore(snapshot)
        batch.add_records(killed, "t/0/", None, partition=0)
        return batch.advance_journeys({0: watermark}, {})

    assert successor(jw) == sent
    own = T0 + 14 * 60_000 + 19                           # the successor's progress: the newest re-read event
    assert successor(own) == {} != sent


def test_a_big_snapshot_waits_twenty_times_its_encoding_time(monkeypatch):
    catalogue = Catalogue.from_dict(default_config_dict())
    batch = IngestBatch(catalogue, 65536)
    state = JourneyState(batch, {}, "t", 4)
    carts = [Record(n, orjson.dumps({"event_id": f"e{n}", "event_type": "add_to_cart", "occurred_at": T0 + n,
                                     "session_id": f"s{n}", "channel": "web"})) for n in range(3)]
    batch.add_records(carts[:1], "t/1/", None, partition=1)
    state.positions[1] = 1
    clock = [1000.0]
    monkeypatch.setattr(journey_state.time, "monotonic", lambda: clock[0])
    assert len(state.records()) == 1
    state.delivered()
    state.cost[1] = 0.5                       # as if encoding it had taken 0.5 s
    batch.add_records(carts[1:], "t/1/", None, partition=1)
    state.positions[1] = 3
    clock[0] += 9.9
    assert state.records() == []              # within 20 x 0.5 s: the older snapshot stands
    clock[0] += 0.2
    written = state.records()
    assert len(written) == 1 and state.cost[1] < 0.5   # its real (small) cost from here
    state.delivered()
    state.cost[1] = 0.5
    clock[0] += 1.0
    state.advance({1: T0 + 60_000 + 30 * 60_000 + 30_000}, {})   # a window released: written at once
    assert len(state.records()) == 1
    reader = SnapshotReader({1})
    for _, key, value in written:
        reader.add(key, value)
    other = IngestBatch(catalogue, 65536)
    other.journey_stage(1).restore(reader.newest[1][1])
    assert reader.newest[1][0] == 3 and other.journey_stage(1).open_journeys == 3


def test_a_snapshot_several_flushes_old_releases_to_nobody_only_what_the_last_owner_decided():
    """A big snapshot is not rewritten every flush, so a new owner may restore one several flushes
    behind the committed offset and re-read the records in between for the journeys only. What the
    last owner released is what its flush at the committed offset decided (``jw`` in its partials):
    exactly that is released to nobody, and the journeys it had not decided yet are released by
    the new owner. Up to the newest re-read event instead (all that is known without ``jw``), the
    carts of 20:10-20:14 would be lost."""
    catalogue = Catalogue.from_dict(default_config_dict())

    def cart(i: int, minute: int) -> Record:
        return Record(i, orjson.dumps({"event_id": f"e{i}", "event_type": "add_to_cart",
                                       "occurred_at": T0 + minute * 60_000 + i, "session_id": f"s{i}",
                                       "channel": "web"}))

    early = [cart(i, i) for i in range(5)]                        # 20:00-20:04, in the snapshot
    later = [cart(i, 5 + i) for i in range(5, 10)] + [cart(10, 50)]   # 20:10-20:14 and one at 20:50
    owner = IngestBatch(catalogue, 65536)
    owner.add_records(early, "t/0/", None, partition=0)
    snapshot = owner.journey_stage(0).snapshot()
    owner.add_records(later, "t/0/", None, partition=0)
    jw = T0 + 36 * 60_000                                         # decides the carts of 20:00-20:05
    assert owner.advance_journeys({0: jw}, {})                    # sent by the last owner
    after = T0 + 56 * 60_000
    expected = owner.advance_journeys({0: after}, {})             # what the last owner would have sent next
    assert sum(cell[1] for cell in expected["cart_abandonment_rate|all"].values()) == 5

    def successor(decided: dict[int, int]) -> dict:
        state = JourneyState(IngestBatch(catalogue, 65536), {}, "t", 4)
        state.batch.journey_stage(0).restore(snapshot)
        # as ``restore`` leaves a snapshot behind the committed offset 11
        state.journeys_only_until[0], state.positions[0] = 11, 5
        state.discard_next_release.add(0)
        state.released_to.update(decided)
        assert state.split(0, later)[0] == later
        state.catch_up(0, later, None)
        return state.advance({0: after}, {})

    assert successor({0: jw}) == expected
    assert successor({}) != expected    # to the newest re-read event (20:50): 20:10-20:14 released to nobody

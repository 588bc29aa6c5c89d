"""The worker's per-partition ingest path (``IngestBatch.add_records``) gives what ``add`` gives
message by message: the same partials (same order, same floats), dead letters, counts and newest
event time. ``add`` is the reference (``replay`` and ``bench`` use it); the fast path inlines it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.stream_app import ingest
from blipwatch.stream_app.ingest import IngestBatch
from blipwatch.tools.simulator import generate_events

MINUTE = 60_000


@dataclass
class Record:  # what aiokafka's ConsumerRecord offers the ingest
    key: bytes | None
    value: bytes | None
    offset: int


def messages() -> list[tuple[bytes | None, bytes | None]]:
    """Simulated events, with hostile and unusual ones mixed in."""
    out: list[tuple[bytes | None, bytes | None]] = []
    for event in generate_events("all", hours=2, seed=3, sessions_per_minute=60):
        out.append(((event.get("customer_id") or event["session_id"]).encode(), orjson.dumps(event)))
        if len(out) >= 6000:
            break
    now_ms = int(time.time() * 1000)
    odd = [
        b"", b"not json", b"\xff\xfe", b"[1, 2]", b'{"event_id": "x"}', b'{"event_id": 1, "event_type": "a", '
        b'"occurred_at": 1767643500000}', None,
        b'{"event_id": "n1", "event_type": "made_up", "occurred_at": 1767643500000}',
        b'{"event_id": "n2", "event_type": "purchase", "occurred_at": "2026-01-05T20:05:00Z", "properties": null}',
        b'{"event_id": "n3", "event_type": "purchase", "occurred_at": 1767643500000, '
        b'"properties": {"order_value": -1}}',
        b'{"event_id": "n4", "event_type": "search", "occurred_at": 1767643500000, "properties": {"results_count": 0},'
        b' "extra": [1]}',
        b'{"event_id": "n5", "event_type": "page_view", "occurred_at": 1767643500000, "country": "de"}',
        orjson.dumps({"event_id": "n6", "event_type": "page_view", "occurred_at": now_ms + 2 * 3600 * 1000}),
        orjson.dumps({"event_id": "n7", "event_type": "page_view", "occurred_at": now_ms + 60_000}),
        b'{"event_id": "n8", "event_type": "purchase", "occurred_at": 1767643500000, '
        b'"properties": {"order_value": 19.99}, "channel": "web", "country": "DE", "device": "tablet"}',
    ]
    for i, value in enumerate(odd):
        out.insert(37 * i + 5, (b"k%d" % i, value))
    return out


def ordered(partials: dict) -> list:
    """Partials with their dict order made visible (it is the order of the partials message)."""
    return [(key, list(windows.items())) for key, windows in partials.items()]


def run_both(catalogue: Catalogue, watermark: int | None, chunk: int = 500):
    msgs = messages()
    slow, fast = IngestBatch(catalogue, 4096), IngestBatch(catalogue, 4096)
    slow_out, fast_out = [], []
    for start in range(0, len(msgs), chunk):
        newest = None
        for offset in range(start, min(start + chunk, len(msgs))):
            key, value = msgs[offset]
            event_ms = slow.add(key, value, "events/2/", watermark, offset)
            if event_ms is not None and (newest is None or event_ms > newest):
                newest = event_ms
        records = [Record(*msgs[offset], offset) for offset in range(start, min(start + chunk, len(msgs)))]
        slow_out.append(newest)
        fast_out.append(fast.add_records(records, "events/2/", watermark))
        if start % (4 * chunk) == 0:  # a flush now and then
            assert ordered(fast.aggregate.drain()) == ordered(slow.aggregate.drain())
    assert fast_out == slow_out
    assert ordered(fast.aggregate.drain()) == ordered(slow.aggregate.drain())
    assert fast.drain_dead_letters() == slow.drain_dead_letters()
    assert fast.counts == slow.counts
    assert fast.aggregate.drain_dropped() == slow.aggregate.drain_dropped()
    # the journey stage: add_records skips the events stage.add would ignore, and nothing else
    assert fast.journey_counts() == slow.journey_counts() and slow.journey_counts()["started"] > 100
    assert fast.open_journeys() == slow.open_journeys()
    assert [stage.snapshot() for stage in fast.journeys.values()] == [stage.snapshot() for stage in slow.journeys.values()]
    assert ordered(fast.advance_journeys({0: 10**15}, {})) == ordered(slow.advance_journeys({0: 10**15}, {}))
    return slow


def test_add_records_equals_add_message_by_message():
    batch = run_both(Catalogue.from_dict(None), None)
    assert batch.counts.late == 0


def test_add_records_equals_add_with_late_events_and_a_series_cap():
    # a watermark in the middle of the simulated hours: about half the events are late
    events = [orjson.loads(value) for _, value in messages()[:3000] if value and value.startswith(b'{"event_id":"')]
    middle = sorted(e["occurred_at"] for e in events if isinstance(e.get("occurred_at"), str))[len(events) // 2]
    from blipwatch.schemas.events import parse_timestamp_ms

    catalogue = Catalogue.from_dict({"segments": {"max_series_per_metric": 5}})
    batch = run_both(catalogue, parse_timestamp_ms(middle), chunk=333)
    assert batch.counts.late > 0


def test_add_records_reads_the_clock_again_for_an_event_near_the_too_far_ahead_limit(monkeypatch):
    """The clock is read once per call and again only for an event beyond that first limit, so an
    event is judged against the clock of its own moment, as ``add`` judges it."""
    catalogue = Catalogue.from_dict(None)
    start = time.time()
    clock = iter([start, start + 10.0])
    monkeypatch.setattr(ingest.time, "time", lambda: next(clock))
    batch = IngestBatch(catalogue, 65536)
    ahead = int(start * 1000) + batch.max_ahead_ms + 5_000  # beyond the first reading, within the second
    value = orjson.dumps({"event_id": "a", "event_type": "page_view", "occurred_at": ahead})
    assert batch.add_records([Record(b"k", value, 7)], "events/0/", None) == ahead
    assert not batch.drain_dead_letters()


def test_add_records_finds_late_events_and_windows_exactly_at_the_boundaries():
    """Lateness as one comparison and the window from the event before: the same outcome as ``add``
    for events on and next to window edges, in and out of order, with watermarks on and next to the
    moment a window closes (its end + lateness)."""
    from blipwatch.schemas.events import parse_timestamp_ms

    catalogue = Catalogue.from_dict(None)
    closes_after = catalogue.window_ms + catalogue.lateness_ms
    t0 = parse_timestamp_ms("2026-01-05T20:00:00.000Z")
    offsets = [0, 1, MINUTE - 1, MINUTE, 2 * MINUTE - 1, 2 * MINUTE, 3 * MINUTE + 7, 1, 2 * MINUTE, 0]
    values = [orjson.dumps({"event_id": f"e{i}", "event_type": "page_view", "occurred_at": t0 + offset,
                            "channel": "web"}) for i, offset in enumerate(offsets)]
    for watermark in (None, t0 + closes_after - 1, t0 + closes_after, t0 + closes_after + 1,
                      t0 + MINUTE + closes_after - 1, t0 + MINUTE + closes_after, t0 + 5 * MINUTE):
        slow, fast = IngestBatch(catalogue, 4096), IngestBatch(catalogue, 4096)
        accepted = [slow.add(b"k", value, "events/0/", watermark, offset) for offset, value in enumerate(values)]
        newest = max((ms for ms in accepted if ms is not None), default=None)
        assert fast.add_records([Record(b"k", value, offset) for offset, value in enumerate(values)],
                                "events/0/", watermark) == newest, watermark
        assert fast.counts == slow.counts, watermark
        assert ordered(fast.aggregate.drain()) == ordered(slow.aggregate.drain()), watermark
    assert slow.counts.late == len(offsets)  # the last watermark closed every window: all late

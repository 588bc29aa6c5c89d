"""Pure pieces of the fault handling: far-future timestamps, unread partitions, the partials' coverage."""

from __future__ import annotations

import time

import orjson

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.pipeline.windows import IDLE, LocalWatermark, closes_at, window_start
from blipwatch.schemas.partials import partial_messages, reported_progress, sent_headers, sent_positions
from blipwatch.stream_app.ingest import IngestBatch


def event(occurred_at_ms: int) -> bytes:
    return orjson.dumps({"event_id": "e1", "event_type": "page_view", "occurred_at": occurred_at_ms})


def test_an_event_hours_ahead_of_the_clock_goes_to_the_dlq_and_does_not_move_the_watermark():
    batch = IngestBatch(Catalogue.from_dict(None), 65536)
    now = int(time.time() * 1000)
    assert batch.add(None, event(now + 3 * 3600 * 1000), "t/0/0", None) is None
    assert batch.add(None, event(now), "t/0/1", None) == now
    assert batch.counts.invalid == {"too_far_ahead": 1}
    letter, = batch.drain_dead_letters()
    assert letter.reason == "too_far_ahead" and letter.field == "occurred_at"


def test_a_partition_not_read_yet_makes_the_watermark_unknown_until_the_idle_timeout():
    local = LocalWatermark(window_ms=60_000, lateness_ms=30_000, idle_ms=10_000)
    local.assign({0, 1}, now_ms=0)
    local.observe(0, 600_000, now_ms=100)
    assert local.value(now_ms=1_000) is None     # the backlog of partition 1 is not late
    assert local.report(now_ms=1_000) == {0: 600_000}
    local.observe(1, 400_000, now_ms=2_000)
    assert local.value(now_ms=2_000) == 400_000


def test_a_paused_partition_does_not_turn_idle_while_it_may_have_a_backlog():
    local = LocalWatermark(window_ms=60_000, lateness_ms=30_000, idle_ms=10_000)
    local.assign({0, 1, 2}, now_ms=0)
    local.observe(0, 600_000, now_ms=100)
    local.observe(1, 400_000, now_ms=100)
    local.hold({1, 2}, now_ms=20_000)     # paused: a takeover finding its bounds, a bounded re-read
    assert local.report(now_ms=20_000) == {0: IDLE, 1: 400_000}   # 2 never read: still unknown
    assert local.value(now_ms=20_000) is None
    local.hold({1}, now_ms=40_000)        # 2 resumed and has nothing: idle after the timeout
    assert local.value(now_ms=40_000) == 400_000
    assert local.value(now_ms=60_000) == closes_at(window_start(600_000, 60_000), 60_000, 30_000)  # all idle


def test_a_worker_taking_over_partitions_with_nothing_new_closes_what_its_predecessor_had_read():
    """A worker given partitions whose every event the previous owner had read and sent reads
    nothing from them: once idle it must still flush past what that owner had seen, else the
    windows (and the journeys) the owner left open never close, or close by another worker's
    report alone while this one's journeys are still undecided."""
    values = [value for _, value in partial_messages({}, {0: 1_000_000, 1: None}, 2, 2, "old", sent_to={0: 50})]
    values += [value for _, value in partial_messages({}, {0: 1_090_000, 1: 1_020_000}, 2, 2, "old", sent_to={0: 60})]
    progress = reported_progress(sent_headers(values), {0, 1})
    assert progress == {0: 1_090_000, 1: 1_020_000}
    local = LocalWatermark(window_ms=60_000, lateness_ms=30_000, idle_ms=10_000)
    local.assign({0, 1}, now_ms=0)
    for partition, event_ms in progress.items():
        local.seed(partition, event_ms)
    assert local.value(now_ms=5_000) is None          # unknown: a backlog may come
    flush = closes_at(window_start(1_090_000, 60_000), 60_000, 30_000)
    assert local.report(now_ms=10_000) == {0: flush, 1: flush}
    assert local.value(now_ms=10_000) == flush
    local.assign({1}, now_ms=20_000)                  # the seed leaves with its partition
    assert local.floor == {1: 1_020_000}
    without = LocalWatermark(window_ms=60_000, lateness_ms=30_000, idle_ms=10_000)
    without.assign({0, 1}, now_ms=0)
    assert without.report(now_ms=10_000) == {0: IDLE, 1: IDLE} and without.value(now_ms=10_000) is None


def test_the_partials_say_how_far_each_input_partition_was_sent():
    values = [value for _, value in partial_messages({}, {0: 1}, 4, 2, "a", sent_to={0: 10, 3: 7})]
    values += [value for _, value in partial_messages({}, {0: 1}, 4, 2, "b", sent_to={0: 25})]
    assert sent_positions(sent_headers(values), {0, 1, 3}) == {0: 25, 3: 7}


def test_ingest_counts_an_event_late_exactly_when_windows_is_late_says_its_window_has_closed():
    """IngestBatch.add inlines ``is_late`` on its hot path: hold the two to the same answer around
    every boundary (a window closes at its end plus the allowed lateness)."""
    from blipwatch.pipeline.windows import is_late

    catalogue = Catalogue.from_dict(None)
    window, lateness = catalogue.window_ms, catalogue.lateness_ms
    start = 1_767_643_200_000  # 2026-01-05T20:00:00Z, a window start
    for offset in (0, 1, window - 1, window, window + 1):
        event_ms = start + offset
        for watermark in (None, start, start + window + lateness - 1, start + window + lateness,
                          start + 2 * window + lateness - 1, start + 2 * window + lateness):
            batch = IngestBatch(catalogue, 65536)
            value = orjson.dumps({"event_id": "e", "event_type": "page_view", "occurred_at": event_ms})
            accepted = batch.add(b"k", value, "t/0/0", watermark) is not None
            assert accepted == (not is_late(event_ms, watermark, window, lateness)), (offset, watermark)
            assert batch.counts.late == (0 if accepted else 1)


def test_a_flush_too_big_for_one_record_is_split_in_order_with_the_watermark_on_the_last_piece():
    partials = {f"event_volume|country=C{n}": {60_000 * w: [1.0, 0.0] for w in range(20)} for n in range(3000)}
    messages = partial_messages(partials, {0: 5, 1: 6}, 2, 2, "a", sent_to={0: 10, 1: 11}, max_bytes=64 * 1024)
    merged: dict[str, list] = {}
    for partition in (0, 1):
        pieces = [orjson.loads(value) for p, value in messages if p == partition]
        assert len(pieces) > 1
        assert all(len(value) <= 64 * 1024 * 1.2 for p, value in messages if p == partition)
        assert [piece["wm"] for piece in pieces] == [{}] * (len(pieces) - 1) + [{"0": 5, "1": 6}]
        assert [(piece["to"], piece["part"]) for piece in pieces] == [({"0": 10, "1": 11}, i) for i in range(len(pieces))]
        for piece in pieces:
            assert not set(piece["s"]) & set(merged)
            merged.update(piece["s"])
    assert merged == {series: [[w, c[0], c[1]] for w, c in windows.items()] for series, windows in partials.items()}
    assert sent_positions(sent_headers([value for _, value in messages]), {0, 1}) == {0: 10, 1: 11}
    small = partial_messages({"event_volume|all": {0: [1.0, 0.0]}}, {0: 5}, 1, 2, "a")
    assert len(small) == 2 and orjson.loads(small[0][1])["wm"] == {"0": 5}


def test_the_libraries_whose_internals_we_use_are_pinned_to_the_installed_versions():
    import re
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", spec).groups()
                for spec in pyproject["project"]["dependencies"] if "==" in spec)
    for name in ("faust-streaming", "mode-streaming", "aiohttp", "aiokafka"):
        assert name in pins, f"{name} is not pinned with == in pyproject.toml"
        assert pins[name] == version(name), f"{name}: pinned {pins[name]}, installed {version(name)}"


def test_the_worker_creates_its_topics_with_the_replication_asked_and_no_router_or_table_routes():
    from blipwatch.stream_app.app import create_app
    from blipwatch.stream_app.config import Settings, load_catalogue

    settings = Settings.from_env({"BLIPWATCH_BROKER": "kafka://127.0.0.1:9", "BLIPWATCH_REPLICATION_FACTOR": "3"})
    app = create_app(settings, load_catalogue(settings))  # built, not started: no broker needed
    assert app.conf.topic_replication_factor == 3
    [table] = app.tables.values()
    assert table.changelog_topic.config == {"min.insync.replicas": "2"}
    assert not (app.conf.web_router_enabled or app.conf.web_tables_enabled or app.conf.web_graph_enabled
                or app.conf.web_stats_enabled)
    assert app.conf.web_bind == "127.0.0.1"

"""The partials message: what the ingest encodes is what partials.schema.json describes and what the
aggregate decodes, for a real flush of the ingest's own pre-aggregation."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.schemas import SCHEMA_DIR
from blipwatch.schemas.partials import (decode_partials, partial_messages, partition_for, sent_header,
                                        sent_headers, sent_positions)
from blipwatch.stream_app.ingest import IngestBatch

BASE_MS = 1_767_643_200_000  # 2026-01-05T20:00:00Z
VALIDATOR = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "partials.schema.json").read_text()))


def flushed_partials() -> dict[str, dict[int, list[float]]]:
    """What one ingest flush drains: a few hundred events over two windows and three countries."""
    batch = IngestBatch(Catalogue.from_dict(None), 65536)
    types = ["page_view", "add_to_cart", "checkout_start", "purchase", "cart_abandoned", "search"]
    for i in range(600):
        event = {"event_id": f"e{i}", "event_type": types[i % len(types)], "occurred_at": BASE_MS + i * 200,
                 "channel": ["web", "app"][i % 2], "country": ["FR", "DE", "US"][i % 3],
                 "properties": {"order_value": 10 + i % 7, "results_count": i % 4}}
        assert batch.add(None, orjson.dumps(event), "t/0/", None, i) is not None
    return batch.aggregate.drain()


def test_every_message_of_a_flush_is_valid_against_the_schema_and_decodes_to_what_was_drained():
    partials = flushed_partials()
    messages = partial_messages(partials, {0: BASE_MS + 120_000, 1: None}, 2, 4, "ingest-test",
                                sent_to={0: 600})
    assert [partition for partition, _ in messages] == [0, 1, 2, 3]
    decoded: dict[str, dict[int, list[float]]] = {}
    for partition, value in messages:
        VALIDATOR.validate(orjson.loads(value))
        report, total, observed_at, series = decode_partials(value)
        assert report == {0: BASE_MS + 120_000, 1: None} and total == 2 and observed_at > 0
        assert sent_header(value).to == {0: 600}
        for key, windows in series.items():
            assert partition_for(key, 4) == partition
            decoded[key] = {window: [n, d] for window, n, d in windows}
    assert decoded == partials


def test_a_split_flush_is_valid_piece_by_piece_only_its_last_piece_reports_and_each_piece_covers():
    partials = {f"event_volume|country=C{n}": {60_000 * w: [1.0, 0.0] for w in range(20)} for n in range(3000)}
    messages = partial_messages(partials, {0: 5}, 1, 1, "ingest-test", sent_to={0: 10}, max_bytes=64 * 1024)
    assert len(messages) > 2
    for _, value in messages:
        VALIDATOR.validate(orjson.loads(value))
    assert [decode_partials(value)[0] for _, value in messages] == [{}] * (len(messages) - 1) + [{0: 5}]
    assert [sent_header(value).to for _, value in messages] == [{0: 10}] * len(messages)
    assert [orjson.loads(value)["part"] for _, value in messages] == list(range(len(messages)))


def test_the_wire_bytes_are_the_documented_layout_in_its_key_order():
    [(_, value)] = partial_messages({"complaint_count|all": {BASE_MS: [2.0, 0.0]}}, {3: None}, 4, 1, "i",
                                    observed_at=7.0)
    assert value == (b'{"wm":{"3":null},"total":4,"at":7.0,"src":"i",'
                     b'"s":{"complaint_count|all":[[1767643200000,2.0,0.0]]}}')


@pytest.mark.parametrize("broken", [
    {"wm": {}, "total": 1, "at": 1.0, "src": "i"},                                   # no series
    {"wm": {"x": 1}, "total": 1, "at": 1.0, "src": "i", "s": {}},                    # partition not a number
    {"wm": {}, "total": 1, "at": 1.0, "src": "i", "s": {"a|all": [[1.5, 1.0, 0.0]]}},  # window not in ms
    {"wm": {}, "total": 1, "at": 1.0, "src": "i", "s": {"a|all": [[1, 1.0]]}},         # no denominator
    {"wm": {}, "total": 1, "at": 1.0, "src": "i", "s": {}, "extra": 1},
])
def test_the_schema_refuses_what_the_aggregate_could_not_read(broken):
    assert not VALIDATOR.is_valid(broken)


def test_a_takeover_reads_the_furthest_coverage_and_passes_over_records_that_are_not_partials():
    first = partial_messages({}, {0: 1}, 4, 1, "a", sent_to={0: 10, 3: 7})[0][1]
    second = partial_messages({}, {0: 1}, 4, 1, "b", sent_to={0: 25})[0][1]
    headers = sent_headers([first, b"not json", b"[1, 2]", b'{"to": {"x": 1}}', second])
    assert len(headers) == 2
    assert sent_positions(headers, {0, 3}) == {0: 25, 3: 7}
    assert sent_positions(headers, {3}) == {3: 7}

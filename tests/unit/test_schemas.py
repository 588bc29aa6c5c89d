"""The wire contracts: every rejection reason, odd input, and agreement with the JSON Schema files."""

from __future__ import annotations

import time
import json

import jsonschema
import orjson
import pytest

from blipwatch.schemas import (REASONS, SCHEMA_DIR, AnomalyAlert, InvalidDocument, InvalidEvent, MetricPoint,
                               decode_event)

GOOD = {"event_id": "e-1", "event_type": "add_to_cart", "occurred_at": "2026-01-05T20:05:00Z"}


def raw(**changes) -> bytes:
    document = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            document.pop(key)
        else:
            document[key] = value
    return orjson.dumps(document)


def reason_of(message: bytes, **kwargs) -> tuple[str, str | None]:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(message, **kwargs)
    return caught.value.reason, caught.value.field


@pytest.mark.parametrize("message, reason, field", [
    (b"", "empty", None),
    (b"\xff\xfe{}", "not_utf8", None),
    (b'{"event_id": "\xc3\x28"}', "not_utf8", None),
    (b"{not json", "not_json", None),
    (b'{"event_id": NaN}', "not_json", None),
    (b'{"a": Infinity}', "not_json", None),
    (b"[1, 2]", "not_object", None),
    (b'"just a string"', "not_object", None),
    (b"null", "not_object", None),
    (raw(event_id=...), "missing_field", "event_id"),
    (raw(event_type=None), "missing_field", "event_type"),
    (raw(occurred_at=...), "missing_field", "occurred_at"),
    (raw(event_id=17), "wrong_type", "event_id"),
    (raw(event_type=["purchase"]), "wrong_type", "event_type"),
    (raw(occurred_at=True), "wrong_type", "occurred_at"),
    (raw(occurred_at={"ms": 1}), "wrong_type", "occurred_at"),
    (raw(occurred_at="yesterday"), "bad_timestamp", "occurred_at"),
    (raw(occurred_at="2026-01-05T20:05:00"), "bad_timestamp", "occurred_at"),  # no zone
    (raw(occurred_at="2026-02-30T20:05:00Z"), "bad_timestamp", "occurred_at"),
    (raw(occurred_at=1), "bad_timestamp", "occurred_at"),  # 1970: a broken clock
    (raw(occurred_at=9_999_999_999_999), "bad_timestamp", "occurred_at"),  # year 2286
    (raw(channel="fax"), "bad_value", "channel"),
    (raw(channel=3), "wrong_type", "channel"),
    (raw(device="watch"), "bad_value", "device"),
    (raw(country="Germany"), "bad_value", "country"),
    (raw(country="de"), "bad_value", "country"),
    (raw(properties=[1]), "wrong_type", "properties"),
    (raw(event_id=""), "bad_value", "event_id"),
    (raw(event_id="x" * 300), "bad_value", "event_id"),
    (raw(event_type="purchase", properties={"order_value": "12"}), "wrong_type", "properties.order_value"),
    (raw(event_type="purchase", properties={"order_value": -1}), "bad_value", "properties.order_value"),
    (raw(event_type="search", properties={"results_count": 1.5}), "wrong_type", "properties.results_count"),
    (raw(event_type="search", properties={"results_count": -3}), "bad_value", "properties.results_count"),
])
def test_each_breach_of_the_contract_names_its_reason_and_field(message, reason, field):
    assert reason_of(message) == (reason, field)


def test_every_declared_reason_is_reachable():
    seen = {
        reason_of(b"")[0], reason_of(b"x" * 100, max_bytes=50)[0], reason_of(b"\xff")[0], reason_of(b"{")[0],
        reason_of(b"[]")[0], reason_of(raw(event_id=...))[0], reason_of(raw(event_id=1))[0],
        reason_of(raw(occurred_at="noon"))[0], reason_of(raw(channel="fax"))[0],
    }
    # the one reason that needs the worker's clock: decided by the ingest, not by the decoder
    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.stream_app.ingest import IngestBatch

    batch = IngestBatch(Catalogue.from_dict(None), 65536)
    batch.add(None, raw(occurred_at=int(time.time() * 1000) + 2 * 86_400_000), "t/0/0", None)
    seen |= {letter.reason for letter in batch.drain_dead_letters()}
    assert seen == set(REASONS)


def test_a_payload_over_the_size_limit_is_rejected_before_parsing():
    huge = raw(properties={"blob": "x" * 2_000_000})
    assert reason_of(huge, max_bytes=65536) == ("too_large", None)


def test_deeply_nested_garbage_is_not_json_not_a_crash():
    nested = b"[" * 100_000 + b"]" * 100_000
    assert reason_of(nested)[0] in ("not_json", "too_large")
    assert reason_of(nested, max_bytes=10**6)[0] == "not_json"
    deep_object = b'{"a":' * 5000 + b"1" + b"}" * 5000
    assert reason_of(deep_object, max_bytes=10**6)[0] == "not_json"


def test_unicode_in_fields_is_kept():
    event = decode_event(raw(event_id="ü-🛒-事件", event_type="自定义", properties={"reason": "zu spät ⏰"}))
    assert event.event_id == "ü-🛒-事件"
    assert event.event_type == "自定义"
    assert event.properties["reason"] == "zu spät ⏰"


def test_lone_surrogates_are_rejected():
    assert reason_of(b'{"event_id": "\\ud800", "event_type": "x", "occurred_at": 1767643500000}')[0] in (
        "not_json", "not_utf8")


def test_timestamps_in_both_forms_and_zones_agree():
    as_text = decode_event(raw(occurred_at="2026-01-05T21:05:00.000+01:00"))
    as_millis = decode_event(raw(occurred_at=1767643500000))
    assert as_text.occurred_at_ms == as_millis.occurred_at_ms == 1767643500000


def test_nanosecond_fractions_are_accepted():
    assert decode_event(raw(occurred_at="2026-01-05T20:05:00.123456789Z")).occurred_at_ms == 1767643500123


def test_unknown_event_types_and_extra_fields_are_valid():
    event = decode_event(raw(event_type="wishlist_add", extra={"anything": [1, 2]}))
    assert event.event_type == "wishlist_add"


def test_the_event_repr_shows_no_personal_data():
    event = decode_event(raw(customer_id="cust-42", session_id="sess-9"))
    assert "cust-42" not in repr(event) and "sess-9" not in repr(event)


# --- the JSON Schema files agree with the Python validation --------------------------------------

AGREEMENT_CORPUS = [
    GOOD,
    {**GOOD, "occurred_at": 1767643500000},
    {**GOOD, "occurred_at": 1767643500000.5},
    {**GOOD, "occurred_at": "2026-01-05T20:05:00.5+05:30"},
    {**GOOD, "occurred_at": "2026-01-05 20:05:00z"},
    {**GOOD, "channel": "web", "country": "DE", "device": "mobile", "customer_id": "c", "session_id": "s"},
    {**GOOD, "channel": None, "country": None, "properties": None},
    {**GOOD, "event_type": "purchase", "properties": {"order_value": 12.5, "currency": "EUR"}},
    {**GOOD, "event_type": "purchase", "properties": {"order_value": 0}},
    {**GOOD, "event_type": "search", "properties": {"results_count": 0}},
    {**GOOD, "event_type": "search", "properties": {"results_count": 3.0}},
    {**GOOD, "event_type": "other", "properties": {"order_value": "free"}},  # only purchases carry a value
    {**GOOD, "unknown_field": [1, {"x": None}]},
    {"event_id": "e"},
    {**GOOD, "event_id": 5},
    {**GOOD, "event_id": ""},
    {**GOOD, "event_type": None},
    {**GOOD, "occurred_at": "2026-01-05T20:05:00"},
    {**GOOD, "occurred_at": "2026-13-05T20:05:00Z"},
    {**GOOD, "occurred_at": "2026-01-05T20:05:00Z\n"},
    {**GOOD, "occurred_at": "1999-12-31T23:00:00Z"},
    {**GOOD, "occurred_at": 5},
    {**GOOD, "occurred_at": 4_102_444_800_000},
    {**GOOD, "occurred_at": False},
    {**GOOD, "channel": "fax"},
    {**GOOD, "device": 1},
    {**GOOD, "country": "deu"},
    {**GOOD, "customer_id": 12},
    {**GOOD, "properties": "x"},
    {**GOOD, "event_type": "purchase", "properties": {"order_value": -0.01}},
    {**GOOD, "event_type": "purchase", "properties": {"order_value": True}},
    {**GOOD, "event_type": "search", "properties": {"results_count": -1}},
    {**GOOD, "event_type": "search", "properties": {"results_count": "3"}},
    [GOOD],
    "event",
    42,
]


@pytest.mark.parametrize("document", AGREEMENT_CORPUS, ids=lambda d: json.dumps(d)[:60])
def test_python_validation_and_the_json_schema_agree(document):
    schema = json.loads((SCHEMA_DIR / "customer_event.schema.json").read_text())
    schema_says_valid = jsonschema.Draft202012Validator(schema).is_valid(document)
    try:
        decode_event(orjson.dumps(document))
        python_says_valid = True
    except InvalidEvent:
        python_says_valid = False
    assert schema_says_valid == python_says_valid


def test_the_schema_files_are_valid_json_schemas():
    for path in SCHEMA_DIR.glob("*.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


ALERT = {
    "alert_id": "a-1", "dedup_key": "cart_abandonment_rate|channel=web@2026-01-05T20:05:00Z",
    "status": "firing", "severity": "critical", "metric": "cart_abandonment_rate",
    "segment": {"channel": "web"}, "direction": "up", "window_start": "2026-01-05T20:05:00Z",
    "window_end": "2026-01-05T20:06:00Z", "observed": 0.81, "expected": 0.62, "lower": 0.58, "upper": 0.66,
    "score": 0.9999, "numerator": 81, "denominator": 100, "started_at": "2026-01-05T20:05:00Z",
    "summary": "Cart abandonment on channel=web is 0.81, expected 0.62 (0.58-0.66), since 20:05 UTC",
    "detector": "rate", "related": [{"metric": "cart_abandonment_rate", "segment": {}}],
}


@pytest.mark.parametrize("change", [{}, {"status": "resolved"}, {"status": "pending"}, {"severity": "high"},
                                    {"direction": "sideways"}, {"segment": "web"}, {"observed": "0.8"},
                                    {"dedup_key": None}, {"surprise": 1},
                                    {"related": [{"metric": "cart_abandonment_rate", "segment": {"channel": "web"},
                                                  "firing": False, "relation": "parent", "share": 0.95},
                                                 {"metric": "cart_abandonment_rate", "firing": True, "cause": True,
                                                  "segment": {"channel": "web", "country": "DE"},
                                                  "relation": "child", "share": 1}]},
                                    {"related": [{"metric": "m", "segment": {}, "share": 1.5}]},
                                    {"related": [{"metric": "m", "segment": {}, "share": True}]},
                                    {"related": [{"metric": "m", "segment": {}, "relation": "sibling"}]},
                                    {"related": [{"metric": "m", "segment": {}, "firing": "yes"}]},
                                    {"related": [{"metric": "m"}]}, {"related": {"metric": "m", "segment": {}}}])
def test_alert_contract_in_python_and_json_schema_agree(change):
    document = {**ALERT, **change}
    document = {k: v for k, v in document.items() if v is not None}
    schema = json.loads((SCHEMA_DIR / "anomaly_alert.schema.json").read_text())
    schema_says_valid = jsonschema.Draft202012Validator(schema).is_valid(document)
    try:
        AnomalyAlert.from_dict(document)
        python_says_valid = True
    except InvalidDocument:
        python_says_valid = False
    assert schema_says_valid == python_says_valid


def test_an_alert_round_trips_through_json_and_matches_its_schema():
    alert = AnomalyAlert.from_dict(ALERT)
    document = orjson.loads(alert.to_json())
    jsonschema.validate(document, json.loads((SCHEMA_DIR / "anomaly_alert.schema.json").read_text()))
    assert AnomalyAlert.from_dict(document) == alert


def test_a_metric_point_with_unknown_bounds_writes_null_not_nan():
    point = MetricPoint(series="event_volume|all", metric="event_volume", segment={},
                        window_start="2026-01-05T20:05:00Z", window_end="2026-01-05T20:06:00Z",
                        numerator=5.0, denominator=None, value=5.0, expected=float("nan"), lower=None,
                        upper=float("inf"), score=0.0, is_anomaly=False)
    document = orjson.loads(point.to_json())
    assert document["expected"] is None and document["upper"] is None
    jsonschema.validate(document, json.loads((SCHEMA_DIR / "metric_point.schema.json").read_text()))


def test_point_and_alert_json_match_their_dicts_with_unknown_bounds_as_null():
    from blipwatch.schemas.outputs import AnomalyAlert, MetricPoint

    point = MetricPoint(series="cart_abandonment_rate|channel=web", metric="cart_abandonment_rate",
                        segment={"channel": "web"}, window_start="2026-01-05T17:00:00Z",
                        window_end="2026-01-05T17:01:00Z", numerator=3.0, denominator=4.0, value=0.75,
                        expected=float("nan"), lower=float("-inf"), upper=float("inf"), score=0.5,
                        is_anomaly=False)
    assert orjson.loads(point.to_json()) == point.to_dict()
    assert orjson.loads(point.to_json())["lower"] is None
    alert = AnomalyAlert(alert_id="a", dedup_key="k", status="firing", severity="warning",
                         metric="cart_abandonment_rate", segment={"channel": "web"}, direction="up",
                         window_start="2026-01-05T17:00:00Z", window_end="2026-01-05T17:01:00Z",
                         observed=0.75, expected=float("nan"), lower=None, upper=float("inf"), numerator=3.0,
                         denominator=4.0, score=0.9, started_at="2026-01-05T17:00:00Z",
                         summary="s", related=[{"metric": "m", "segment": {}}])
    assert orjson.loads(alert.to_json()) == alert.to_dict()


def test_millisecond_utc_timestamps_parse_exactly_and_bad_dates_still_fail():
    import calendar
    import random

    from blipwatch.schemas.events import InvalidEvent, parse_timestamp_ms

    rng = random.Random(3)
    for _ in range(2000):
        year, month, day = rng.randint(2000, 2099), rng.randint(1, 12), rng.randint(1, 28)
        hour, minute, second, ms = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999)
        text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"
        expected = calendar.timegm((year, month, day, hour, minute, second)) * 1000 + ms
        assert parse_timestamp_ms(text) == expected, text
        assert parse_timestamp_ms(text.lower()) == expected, text
    for bad in ("2026-02-30T20:05:00.250Z", "1999-12-31T23:59:59.999Z", "2026-13-01T00:00:00.000Z"):
        with pytest.raises(InvalidEvent) as caught:
            parse_timestamp_ms(bad)
        assert caught.value.reason == "bad_timestamp"


def test_the_time_and_segment_helpers_are_defined_once_in_the_package():
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "blipwatch"
    definitions: dict[str, list[str]] = {"parse_time": [], "format_time": [], "segment_label": []}
    for path in package.rglob("*.py"):
        for name in re.findall(r"^def (parse_time|format_time|segment_label)\(", path.read_text(), re.M):
            definitions[name].append(str(path.relative_to(package)))
    definitions = {name: sorted(paths) for name, paths in definitions.items()}
    assert definitions == {"parse_time": ["schemas/times.py"], "format_time": ["schemas/times.py"],
                           "segment_label": ["schemas/outputs.py"]}

"""The fast decoder (msgspec) against the reference (orjson + validate_event): same event, same error.

``decode_event`` may only accept what ``decode_event_reference`` accepts, with the same field
values and types, and leaves every other message to the reference, so the reason, field and
message of an error are the reference's. These tests hold it to that on simulated events, on the
corners where msgspec and orjson differ, and on hypothesis-generated documents and bytes.
"""

from __future__ import annotations

import json
import sys

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blipwatch.schemas import events
from blipwatch.schemas.events import InvalidEvent, decode_event, decode_event_reference
from blipwatch.tools.simulator import generate_events

FIELDS = ("event_id", "event_type", "occurred_at", "customer_id", "session_id", "channel", "country", "device",
          "properties")
GOOD = b'{"event_id":"e","event_type":"purchase","occurred_at":"2026-01-05T20:05:00.250Z","channel":"web"'


def dumps(document) -> bytes:
    """JSON as a producer might write it; unlike orjson.dumps, integers of any size (and NaN)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def outcome(decoder, raw, max_bytes: int = 65536) -> tuple:
    """Everything a caller can see: the event's fields (types included, via repr) or the error."""
    try:
        event = decoder(raw, max_bytes)
    except InvalidEvent as exc:
        return ("invalid", exc.reason, exc.field, exc.message)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))  # repr of properties nested as deep as orjson allows
    try:
        return _fields(event)
    finally:
        sys.setrecursionlimit(limit)


def _fields(event) -> tuple:
    return ("valid", repr(event.event_id), repr(event.event_type), event.occurred_at_ms,
            repr(event.customer_id), repr(event.session_id), repr(event.channel), repr(event.country),
            repr(event.device), repr(event.properties), type(event.properties))


def assert_same(raw, max_bytes: int = 65536) -> None:
    assert outcome(decode_event, raw, max_bytes) == outcome(decode_event_reference, raw, max_bytes), raw[:200]


@pytest.fixture(scope="module")
def simulated() -> list[bytes]:
    found = []
    for event in generate_events("all", hours=1, seed=3):
        found.append(orjson.dumps(event))
        if len(found) >= 3000:
            break
    return found


def test_simulated_events_take_the_fast_path_and_decode_the_same(simulated, monkeypatch):
    reference_calls = []

    def counting_reference(raw, max_bytes=65536):
        reference_calls.append(raw)
        return decode_event_reference(raw, max_bytes)

    for raw in simulated:
        assert_same(raw)
    monkeypatch.setattr(events, "decode_event_reference", counting_reference)
    for raw in simulated:
        decode_event(raw)
    assert reference_calls == []  # the valid majority never needs the reference


def test_mutated_simulated_events_decide_the_same(simulated):
    """Each field of real events dropped, nulled, retyped, stretched or doubled; bytes cut and flipped."""
    replacements = [None, 0, -1, 1.5, 2**63, 2**64, -2**63 - 1, 10**30, True, "", "x" * 300, "DE\n", "de", "web",
                    "mobile", [1], {"a": 1}, {"a": {"b": 1}}, {"order_value": -1}, {"results_count": 2.0},
                    {"results_count": 2**64}, {"order_value": 10**30}, "2026-01-05T20:05:00Z",
                    "2026-01-05t20:05:00.250z", "2026-02-30T20:05:00.250Z", "1999-12-31T23:59:59.999Z",
                    "2026-01-05T20:05:00.2٥0Z", "2026-01-05T20:05:00.250+01:00", 1767643500000, 1767643500000.5,
                    "ü-🛒", "🛒" * 256, "🛒" * 257]
    for raw in simulated[:40]:
        document = orjson.loads(raw)
        for name in FIELDS + ("extra",):
            assert_same(dumps({k: v for k, v in document.items() if k != name}))
            for value in replacements:
                assert_same(dumps({**document, name: value}))
            if name in document:  # duplicate key, last value wins in both decoders
                text = raw[:-1] + b',"' + name.encode() + b'":null}'
                assert_same(text)
                assert_same(raw[:-1] + b',"' + name.encode() + b'":' + dumps(document[name]) + b"}")
        for cut in range(0, len(raw), 7):
            assert_same(raw[:cut])
        for position in range(0, len(raw), 5):
            for byte in (b"\xff", b"\x00", b"\\", b'"', b"\xc3", b"9"):
                assert_same(raw[:position] + byte + raw[position + 1:])
        assert_same(raw, max_bytes=len(raw) - 1)


@pytest.mark.parametrize("raw", [
    GOOD + b"}",
    GOOD + b',"zz":"\xff\xfe"}',                          # msgspec would skip an unknown field unchecked
    GOOD + b',"z\xffz":1}',
    GOOD + b',"zz":"\xed\xa0\x80"}',                      # a surrogate as UTF-8 bytes
    GOOD + b',"zz":1e400}',                               # orjson: not JSON; msgspec would skip it
    GOOD + b',"zz":' + b"[" * 2000 + b"]" * 2000 + b"}",
    GOOD + b',"properties":' + b'{"a":' * 1100 + b"1" + b"}" * 1100 + b"}",
    GOOD + b',"properties":{"a":' + b"[" * 1020 + b"]" * 1020 + b"}}",
    GOOD + b',"properties":{"a":"\\ud800"}}',
    GOOD + b',"properties":{"a":"\\ud83d\\ude00","b":"\\u00fc\\n\\t\\"\\/"}}',
    GOOD + b',"properties":{"order_value":1e400}}',
    GOOD + b',"properties":{"order_value":123456789012345678901234567890}}',  # orjson: a float
    GOOD + b',"properties":{"a":18446744073709551615,"b":18446744073709551616,"c":-9223372036854775809}}',
    GOOD + b',"properties":{"a":9223372036854775807,"b":-9223372036854775808,"c":9223372036854775808}}',
    GOOD + b',"properties":{"a":-0,"b":-0.0,"c":1E2,"d":1e-400,"e":0.1e1,"f":5e-324,"g":1.7976931348623157e308}}',
    GOOD + b',"properties":{"a":0.1000000000000000055511151231257827021181583404541015625}}',
    GOOD + b',"properties":{"a":1,"b":2,"a":3}}',
    GOOD + b',"properties":{"a":1},"properties":null}',
    GOOD + b',"properties":{"a":1},"properties":{"b":[1]}}',
    GOOD + b',"properties":{"a":NaN}}',
    GOOD + b',"properties":{"a":Infinity}}',
    GOOD + b',"properties":{"a":true,"b":null,"c":"x","d":1.0,"e":1}}',
    GOOD + b',"properties":{}}',
    GOOD + b',"properties":null}',
    GOOD + b',"properties":[]}',
    GOOD + b',"customer_id":null,"session_id":null,"country":null,"device":null}',
    GOOD + b',"country":"DE\\n"}',
    GOOD + b',"country":"D\\u0045"}',
    GOOD + b',"\\u0063ountry":"DE"}',                     # an escaped key is the same key
    GOOD + b',"channel":"web","channel":"fax"}',
    GOOD + b',"channel":"fax","channel":"web"}',
    GOOD + b',"zz":"a\x7fb"}',
    GOOD + b',"zz":"a\x01b"}',
    GOOD + b"} x",
    GOOD + b"}\x00",
    b"\xef\xbb\xbf" + GOOD + b"}",
    b" \t\r\n" + GOOD + b"} \t\r\n",
    b"\x0b" + GOOD + b"}",
    GOOD + b",}",
    b'{"event_id":"e","event_type":"search","occurred_at":1767643500000,"properties":{"results_count":3.0}}',
    b'{"event_id":"e","event_type":"search","occurred_at":1767643500000,"properties":{"results_count":1e20}}',
    b'{"event_id":"e","event_type":"search","occurred_at":1767643500000,"properties":{"results_count":-0.0}}',
    b'{"event_id":"e","event_type":"x","occurred_at":1767643500000.9}',
    b'{"event_id":"e","event_type":"x","occurred_at":1.7676435e12}',
    b'{"event_id":"e","event_type":"x","occurred_at":123456789012345678901234567890}',
    b'{"event_id":"e","event_type":"x","occurred_at":-1e400}',
    b'{"event_id":"e","event_type":"x","occurred_at":true}',
    b'{"event_id":"e","event_type":"x","occurred_at":null}',
    b'{"event\\u005fid":"e","event_type":"x","occurred_at":1767643500000}',
    b'{"event_id":"\\ud800","event_type":"x","occurred_at":1767643500000}',
    b'{"event_id":"\xc3\x28","event_type":"x","occurred_at":1767643500000}',
    b'{"event_type":"x","occurred_at":1767643500000,"event_id":5}',
    b"[1]", b'"x"', b"null", b"1", b"{}", b"", b" ", b"\xff",
], ids=lambda raw: repr(raw[-40:]))
def test_where_msgspec_and_orjson_differ_the_outcome_does_not(raw):
    assert_same(raw)
    assert_same(bytearray(raw))
    assert_same(memoryview(raw))


def test_timestamps_seen_before_skip_the_pattern_but_decide_the_same():
    for text in ("2026-01-05T20:05:00.250Z", "2026-01-05t20:05:00.250z", "2026-01-05 20:05:00.250Z",
                 "2026-02-30T20:05:00.250Z", "2099-12-31T23:59:59.999Z", "2000-01-01T00:00:00.000Z"):
        for suffix in ("250Z", "999z", "000Z", "25OZ", "2٥0Z", "250+", "250 ", "2500"):
            value = text[:20] + suffix
            raw = dumps({"event_id": "e", "event_type": "x", "occurred_at": value})
            first, again = outcome(decode_event, raw), outcome(decode_event, raw)
            reference = outcome(decode_event_reference, raw)
            assert first == again == reference, value


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**65, 2**65), st.floats(), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
field_values = {
    "event_id": st.one_of(st.text(max_size=3), st.just("x" * 256), st.just("x" * 257), json_values),
    "event_type": st.one_of(st.sampled_from(["purchase", "search", "page_view", "", "x" * 65]), json_values),
    "occurred_at": st.one_of(
        st.integers(0, 5_000_000_000_000), st.floats(9e11, 5e12),
        st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z"),
        st.sampled_from(["2026-01-05T20:05:00Z", "2026-01-05T20:05:00.250+01:00", "2026-01-05T20:05:00.250"]),
        json_values),
    "channel": st.one_of(st.sampled_from(["web", "app", "fax", "WEB"]), json_values),
    "country": st.one_of(st.sampled_from(["DE", "de", "DEU", "DE\n"]), st.text(max_size=3), json_values),
    "device": st.one_of(st.sampled_from(["mobile", "tablet", "phone"]), json_values),
    "customer_id": st.one_of(st.text(max_size=5), st.just("c" * 257), json_values),
    "session_id": st.one_of(st.text(max_size=5), json_values),
    "properties": st.one_of(
        st.dictionaries(st.sampled_from(["order_value", "results_count", "a", "b"]), json_scalars, max_size=3),
        json_values),
    "extra": json_values,
}
documents = st.fixed_dictionaries({}, optional=field_values)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_generated_documents_decide_the_same(document):
    assert_same(dumps(document))


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents, st.integers(0, 400), st.binary(min_size=1, max_size=4))
def test_generated_bytes_decide_the_same(document, position, noise):
    raw = dumps(document)
    position = min(position, len(raw))
    assert_same(raw[:position] + noise + raw[position:])
    assert_same(raw[:position] + noise + raw[position + len(noise):])

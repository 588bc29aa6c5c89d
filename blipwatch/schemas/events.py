"""The customer event: the input contract, decoded and validated.

``decode_event(raw)`` turns the bytes of one Kafka message into a ``CustomerEvent`` or
raises ``InvalidEvent`` whose ``reason`` is one of ``REASONS`` (a bounded set: it is a
Prometheus label and the DLQ's machine-readable reason) and whose ``field`` names the
part of the event at fault.

>>> event = decode_event(b'{"event_id": "e1", "event_type": "purchase", '
...                      b'"occurred_at": "2026-01-05T20:05:00Z", "channel": "web", '
...                      b'"properties": {"order_value": 42.5}}')
>>> event.event_type, event.occurred_at_ms, event.channel
('purchase', 1767643500000, 'web')
>>> decode_event(b'{"event_id": "e1"}')
Traceback (most recent call last):
...
blipwatch.schemas.events.InvalidEvent: missing_field: event_type: required field is missing
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from string import ascii_uppercase
from typing import Annotated, Any, Literal, Union

import msgspec
import orjson

#: Machine-readable reasons an event is rejected (the DLQ ``reason`` and the
#: ``blipwatch_events_invalid_total{reason}`` label). Keep in step with README.
REASONS = (
    "empty",          # zero-length message
    "too_large",      # more bytes than BLIPWATCH_MAX_EVENT_BYTES
    "not_utf8",       # bytes are not UTF-8
    "not_json",       # not parseable JSON (includes NaN/Infinity literals and nesting deeper than the codec allows)
    "not_object",     # JSON, but not an object at the top level
    "missing_field",  # a required field is absent or null
    "wrong_type",     # a field has the wrong JSON type
    "bad_timestamp",  # occurred_at is not RFC 3339 with a zone / epoch ms, or outside 2000..2100
    "bad_value",      # a field has a value outside its allowed set or range
    "too_far_ahead",  # occurred_at is more than an hour ahead of the worker's clock (a broken client clock)
)

CHANNELS = frozenset({"web", "app", "email", "store", "call_center", "chat", "social"})
DEVICES = frozenset({"desktop", "mobile", "tablet", "other"})
CANONICAL_EVENT_TYPES = (
    "session_start", "page_view", "product_view", "search", "add_to_cart", "remove_from_cart",
    "checkout_start", "payment_failed", "purchase", "cart_abandoned", "error", "complaint",
)

REQUIRED = ("event_id", "event_type", "occurred_at")
OPTIONAL_STRINGS = ("customer_id", "session_id", "channel", "country", "device")
MAX_ID_LENGTH = 256
MAX_EVENT_TYPE_LENGTH = 64
#: Epoch milliseconds of 2000-01-01 and 2100-01-01: anything outside is a broken clock.
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000

#: Same pattern as customer_event.schema.json's ``occurred_at``.
RFC3339_PATTERN = (
    r"^20\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)(?!\n)$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class InvalidEvent(ValueError):
    """An event broke the contract: ``reason`` (one of REASONS), ``field`` and a one-line message."""

    def __init__(self, reason: str, field: str | None, message: str):
        self.reason = reason
        self.field = field
        self.message = message
        where = f"{field}: " if field else ""
        super().__init__(f"{reason}: {where}{message}")

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "field": self.field, "message": self.message}


class CustomerEvent:
    """One valid customer event. ``occurred_at_ms`` is epoch milliseconds (UTC)."""

    __slots__ = ("event_id", "event_type", "occurred_at_ms", "customer_id", "session_id",
                 "channel", "country", "device", "properties")

    def __init__(self, event_id: str, event_type: str, occurred_at_ms: int,
                 customer_id: str | None = None, session_id: str | None = None,
                 channel: str | None = None, country: str | None = None,
                 device: str | None = None, properties: dict | None = None):
        self.event_id = event_id
        self.event_type = event_type
        self.occurred_at_ms = occurred_at_ms
        self.customer_id = customer_id
        self.session_id = session_id
        self.channel = channel
        self.country = country
        self.device = device
        self.properties = properties if properties is not None else {}

    def __repr__(self) -> str:  # no customer or session id: they are personal data
        return (f"CustomerEvent(event_id={self.event_id!r}, event_type={self.event_type!r}, "
                f"occurred_at_ms={self.occurred_at_ms})")


def parse_timestamp_ms(value: Any, field: str = "occurred_at") -> int:
    """RFC 3339 with a zone, or epoch milliseconds, to epoch milliseconds.

    >>> parse_timestamp_ms("2026-01-05T20:05:00.250+01:00")
    1767639900250
    >>> parse_timestamp_ms(1767643500000)
    1767643500000
    """
    if isinstance(value, bool):
        raise InvalidEvent("wrong_type", field, "must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidEvent("bad_timestamp", field, "epoch milliseconds must be finite")
        millis = int(value)
    elif isinstance(value, str):
        if not _RFC3339.match(value):
            raise InvalidEvent("bad_timestamp", field,
                               "must be RFC 3339 with a zone, e.g. 2026-01-05T20:05:00Z, or epoch milliseconds")
        if len(value) == 24 and value[19] == "." and value[23] in "Zz":  # ...T20:05:00.250Z, the usual form
            return _utc_millis(value, field)
        text = value.replace("z", "Z").replace("t", "T")
        # Python 3.11 fromisoformat takes at most 6 fractional digits; nanoseconds are cut, not rounded.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)
        try:
            millis = int(datetime.fromisoformat(text).timestamp() * 1000)
        except ValueError:
            raise InvalidEvent("bad_timestamp", field, f"{value!r} is not a real date and time") from None
    else:
        raise InvalidEvent("wrong_type", field, "must be an RFC 3339 string or epoch milliseconds")
    if not MIN_TIME_MS <= millis < MAX_TIME_MS:
        raise InvalidEvent("bad_timestamp", field, "must lie between 2000-01-01 and 2100-01-01")
    return millis


#: UTC date-time to the second -> epoch ms of that second: events of one second share the parse
#: (bounded). Only seconds within [MIN_TIME_MS, MAX_TIME_MS) are kept; both bounds are whole
#: seconds, so every millisecond of a kept second is within them too and needs no check.
_SECOND_MS: dict[str, int] = {}
#: the rest of the usual form, ``250Z`` -> 250 (ASCII digits only, as the pattern's ``\d`` is not)
_MILLIS = {f"{ms:03d}{zone}": ms for ms in range(1000) for zone in "Zz"}


def _utc_millis(value: str, field: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS.fffZ`` (already matched by the RFC 3339 pattern) to epoch ms, ~5x
    faster than fromisoformat per event."""
    prefix = value[:19]
    second_ms = _SECOND_MS.get(prefix)
    if second_ms is None:
        try:
            second_ms = int(datetime.fromisoformat(prefix.replace("t", "T") + "+00:00").timestamp()) * 1000
        except ValueError:
            raise InvalidEvent("bad_timestamp", field, f"{value!r} is not a real date and time") from None
        if MIN_TIME_MS <= second_ms < MAX_TIME_MS:
            if len(_SECOND_MS) >= 100_000:
                _SECOND_MS.clear()
            _SECOND_MS[prefix] = second_ms
    millis = second_ms + int(value[20:23])
    if not MIN_TIME_MS <= millis < MAX_TIME_MS:
        raise InvalidEvent("bad_timestamp", field, "must lie between 2000-01-01 and 2100-01-01")
    return millis


def _check_properties(event_type: str, properties: dict) -> None:
    if event_type == "purchase" and "order_value" in properties:
        order_value = properties["order_value"]
        if isinstance(order_value, bool) or not isinstance(order_value, (int, float)):
            raise InvalidEvent("wrong_type", "properties.order_value", "must be a number")
        if order_value < 0 or not math.isfinite(order_value):
            raise InvalidEvent("bad_value", "properties.order_value", "must be a finite number >= 0")
    elif event_type == "search" and "results_count" in properties:
        results = properties["results_count"]
        if isinstance(results, float) and results.is_integer():
            results = int(results)  # 3.0 is a whole number (as in JSON Schema)
        if isinstance(results, bool) or not isinstance(results, int):
            raise InvalidEvent("wrong_type", "properties.results_count", "must be a whole number")
        if results < 0:
            raise InvalidEvent("bad_value", "properties.results_count", "must be >= 0")


def validate_event(document: Any) -> CustomerEvent:
    """Check a decoded JSON document against the event contract."""
    if not isinstance(document, dict):
        raise InvalidEvent("not_object", None, f"an event must be a JSON object, got {type(document).__name__}")
    for name in REQUIRED:
        if document.get(name) is None:
            raise InvalidEvent("missing_field", name, "required field is missing")
    event_id = document["event_id"]
    if not isinstance(event_id, str):
        raise InvalidEvent("wrong_type", "event_id", "must be a string")
    if not event_id or len(event_id) > MAX_ID_LENGTH:
        raise InvalidEvent("bad_value", "event_id", f"must be 1 to {MAX_ID_LENGTH} characters")
    event_type = document["event_type"]
    if not isinstance(event_type, str):
        raise InvalidEvent("wrong_type", "event_type", "must be a string")
    if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise InvalidEvent("bad_value", "event_type", f"must be 1 to {MAX_EVENT_TYPE_LENGTH} characters")
    occurred_at_ms = parse_timestamp_ms(document["occurred_at"])

    optional = {}
    for name in OPTIONAL_STRINGS:
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidEvent("wrong_type", name, "must be a string")
        optional[name] = value
    for name in ("customer_id", "session_id"):
        if optional[name] is not None and len(optional[name]) > MAX_ID_LENGTH:
            raise InvalidEvent("bad_value", name, f"must be at most {MAX_ID_LENGTH} characters")
    if optional["channel"] is not None and optional["channel"] not in CHANNELS:
        raise InvalidEvent("bad_value", "channel", f"must be one of {', '.join(sorted(CHANNELS))}")
    if optional["device"] is not None and optional["device"] not in DEVICES:
        raise InvalidEvent("bad_value", "device", f"must be one of {', '.join(sorted(DEVICES))}")
    if optional["country"] is not None and not _COUNTRY.match(optional["country"]):
        raise InvalidEvent("bad_value", "country", "must be an ISO 3166-1 alpha-2 code in capitals, e.g. DE")

    properties = document.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise InvalidEvent("wrong_type", "properties", "must be an object")
    else:
        _check_properties(event_type, properties)

    return CustomerEvent(event_id, event_type, occurred_at_ms, optional["customer_id"],
                         optional["session_id"], optional["channel"], optional["country"],
                         optional["device"], properties)


def _check_size(raw: bytes | bytearray | memoryview | None, max_bytes: int) -> None:
    """The checks before any decoding, shared by both paths: ``empty`` and ``too_large``."""
    if not raw:
        raise InvalidEvent("empty", None, "the message has no bytes")
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", None, f"{len(raw)} bytes is more than the limit of {max_bytes}")


def decode_event_reference(raw: bytes | bytearray | memoryview | None, max_bytes: int = 65536) -> CustomerEvent:
    """Decode and validate one message's bytes; raise ``InvalidEvent`` on any breach.

    The precise path: ``orjson.loads`` and ``validate_event``. It decides every message the fast
    path (``decode_event``) does not accept, so it alone words the errors."""
    return validate_event(load_json(raw, max_bytes))


def load_json(raw: bytes | bytearray | memoryview | None, max_bytes: int) -> Any:
    """The checks every input format shares before its own: size, JSON, UTF-8 (named when it is
    why the JSON failed). Returns the parsed document."""
    _check_size(raw, max_bytes)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("not_utf8", None, "the message is not UTF-8") from None
        raise InvalidEvent("not_json", None, f"not valid JSON ({str(exc).split(':')[0]})") from None


# --- the fast path: a typed msgspec decoder for the common shape of a valid event ------------------
#
# It accepts a subset of what the reference accepts and yields the same CustomerEvent; anything it
# does not accept goes to the reference, which then accepts it or raises the precise error. So it
# must never accept what orjson + validate_event reject, nor decode a value differently. Where
# msgspec differs from orjson, the type below steps aside:
# - unknown top-level fields are forbidden here: msgspec would skip them unchecked (invalid UTF-8,
#   1e400, any nesting depth), where orjson rejects the whole message;
# - properties hold scalars only (no nesting, so no depth limit to match), and integers within
#   int64: orjson turns integers outside [-2**63, 2**64) into floats, msgspec keeps them exact;
# - everything decoded is checked by msgspec as orjson does (UTF-8, lone surrogates, NaN/Infinity
#   literals, 1e400); duplicate keys keep the last value in both.

_Int64 = Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)]
_Scalar = Union[str, bool, None, _Int64, float]
_Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    event_type: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_TYPE_LENGTH)]
    occurred_at: Union[str, int, float]
    customer_id: Union[_Id, None] = None
    session_id: Union[_Id, None] = None
    channel: Union[Literal[tuple(sorted(CHANNELS))], None] = None  # type: ignore[valid-type]
    country: Union[str, None] = None
    device: Union[Literal[tuple(sorted(DEVICES))], None] = None  # type: ignore[valid-type]
    properties: Union[dict[str, _Scalar], None] = None


_WIRE_DECODER = msgspec.json.Decoder(_WireEvent)
#: what ``^[A-Z]{2}$`` matches, but for a trailing newline (that goes to the reference)
_COUNTRY_CODES = frozenset(a + b for a in ascii_uppercase for b in ascii_uppercase)


#: the event types whose properties ``_check_properties`` looks at
_CHECKED_TYPES = frozenset({"purchase", "search"})


def decode_event_fields(raw: bytes | bytearray | memoryview | None, max_bytes: int = 65536) -> tuple[Any, int]:
    """``decode_event`` without building the ``CustomerEvent``: ``(fields, occurred_at_ms)``.

    ``fields`` has the event's ``event_type``, ``customer_id``, ``session_id``, ``channel``,
    ``country``, ``device`` and ``properties`` (a dict) attributes — the decoded wire struct on the
    fast path, a ``CustomerEvent`` when the reference decided. The ingest's per-event path: same
    acceptance, same errors as ``decode_event`` (which is built on it)."""
    if not raw or len(raw) > max_bytes:
        _check_size(raw, max_bytes)
    try:
        wire = _WIRE_DECODER.decode(raw)
    except msgspec.DecodeError:
        event = decode_event_reference(raw, max_bytes)
        return event, event.occurred_at_ms
    occurred_at = wire.occurred_at
    occurred_at_ms = None
    if occurred_at.__class__ is str and len(occurred_at) == 24 and occurred_at[19] == ".":
        # ...T20:05:00.250Z of a second seen before: _SECOND_MS only holds the first 19 characters
        # of strings that matched the pattern, so with an ASCII .fffZ the whole matches it too; and
        # only seconds within the allowed range, so the sum is within it
        second_ms = _SECOND_MS.get(occurred_at[:19])
        fraction = _MILLIS.get(occurred_at[20:])
        if second_ms is not None and fraction is not None:
            occurred_at_ms = second_ms + fraction
    if occurred_at_ms is None:
        try:
            occurred_at_ms = parse_timestamp_ms(occurred_at)
        except InvalidEvent:
            event = decode_event_reference(raw, max_bytes)
            return event, event.occurred_at_ms
    country = wire.country
    if country is not None and country not in _COUNTRY_CODES:
        event = decode_event_reference(raw, max_bytes)
        return event, event.occurred_at_ms
    properties = wire.properties
    if properties is None:
        wire.properties = {}
    elif properties and wire.event_type in _CHECKED_TYPES:
        try:
            _check_properties(wire.event_type, properties)
        except InvalidEvent:
            event = decode_event_reference(raw, max_bytes)
            return event, event.occurred_at_ms
    return wire, occurred_at_ms


def decode_event(raw: bytes | bytearray | memoryview | None, max_bytes: int = 65536) -> CustomerEvent:
    """Decode and validate one message's bytes; raise ``InvalidEvent`` on any breach.

    Same result as ``decode_event_reference`` (tests/unit/test_decode_fast_path.py holds them to
    it), ~3x faster on the usual event: one typed msgspec decode, the reference for the rest."""
    fields, occurred_at_ms = decode_event_fields(raw, max_bytes)
    if fields.__class__ is CustomerEvent:
        return fields
    return CustomerEvent(fields.event_id, fields.event_type, occurred_at_ms, fields.customer_id, fields.session_id,
                         fields.channel, fields.country, fields.device, fields.properties)

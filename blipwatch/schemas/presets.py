"""Input presets: the events real trackers send, mapped onto the customer-event contract.

A preset turns one Kafka message's bytes into the contract's fields, as ``decode_event_fields``
does for blipwatch's own format, with the same DLQ reasons (``REASONS``) for bad input; the
``field`` of an error names the tracker's field. Chosen with ``BLIPWATCH_INPUT_PRESET`` or
``input.preset`` in the config file; docs/inputs.md has a table per preset.

- ``blipwatch``: the contract itself (``decode_event_fields``, unchanged).
- ``segment``: Segment's ``track``/``page``/``screen`` calls with its e-commerce spec names.
- ``ga4``: Google Analytics 4 events, one row of the BigQuery export per message.
- ``snowplow``: Snowplow enriched events as JSON (the Analytics SDKs' shape), with the
  Snowplow e-commerce plugin's actions.

Each tracker's mapped event carries ``anonymous_id`` too (Segment's ``anonymousId``, GA4's
``user_pseudo_id``, Snowplow's ``domain_userid``): the journey stage groups by it, with an
inactivity gap, where the tracker has no session id. ``encode(preset, event)`` is the inverse
(a contract event as that tracker would send it), for the simulator and the tests.

>>> preset = get_preset("segment")
>>> event, at_ms = preset.decode(b'{"type": "track", "event": "Order Completed", "messageId": "m1", '
...     b'"anonymousId": "a1", "timestamp": "2026-01-05T20:05:00.000Z", "properties": {"total": 42.5}}')
>>> event.event_type, at_ms, event.properties["order_value"], event.session_id
('purchase', 1767643500000, 42.5, None)
>>> get_preset("gtm")
Traceback (most recent call last):
...
blipwatch.schemas.presets.PresetError: unknown input preset 'gtm': use one of blipwatch, segment, ga4, snowplow
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable


from blipwatch.schemas.events import (_CHECKED_TYPES, _MILLIS, _SECOND_MS, CHANNELS, MAX_EVENT_TYPE_LENGTH,
                                      MAX_ID_LENGTH, CustomerEvent, InvalidEvent, _check_properties,
                                      decode_event_fields, load_json, parse_timestamp_ms)


class PresetError(ValueError):
    """An unknown preset name; the message lists the known ones."""


class TrackedEvent(CustomerEvent):
    """A contract event from a tracker: also the tracker's anonymous (device or cookie) id."""

    __slots__ = ("anonymous_id",)

    def __init__(self, event_id: str, event_type: str, occurred_at_ms: int, customer_id: str | None = None,
                 session_id: str | None = None, channel: str | None = None, country: str | None = None,
                 device: str | None = None, properties: dict | None = None, anonymous_id: str | None = None):
        CustomerEvent.__init__(self, event_id, event_type, occurred_at_ms, customer_id, session_id, channel,
                               country, device, properties)
        self.anonymous_id = anonymous_id


# --- what the trackers' names and values mean in the contract ------------------------------------

#: English country names as GA4 (``geo.country``) and Segment (``context.location.country``) give
#: them, to ISO 3166-1 alpha-2; a two-letter code is taken as it is, an unknown name as no country.
COUNTRY_CODES = {
    "Argentina": "AR", "Australia": "AU", "Austria": "AT", "Belgium": "BE", "Brazil": "BR",
    "Bulgaria": "BG", "Canada": "CA", "Chile": "CL", "China": "CN", "Colombia": "CO", "Croatia": "HR",
    "Czechia": "CZ", "Czech Republic": "CZ", "Denmark": "DK", "Egypt": "EG", "Estonia": "EE",
    "Finland": "FI", "France": "FR", "Germany": "DE", "Greece": "GR", "Hong Kong": "HK", "Hungary": "HU",
    "Iceland": "IS", "India": "IN", "Indonesia": "ID", "Ireland": "IE", "Israel": "IL", "Italy": "IT",
    "Japan": "JP", "Latvia": "LV", "Lithuania": "LT", "Luxembourg": "LU", "Malaysia": "MY", "Malta": "MT",
    "Mexico": "MX", "Morocco": "MA", "Netherlands": "NL", "New Zealand": "NZ", "Nigeria": "NG",
    "Norway": "NO", "Peru": "PE", "Philippines": "PH", "Poland": "PL", "Portugal": "PT", "Romania": "RO",
    "Saudi Arabia": "SA", "Serbia": "RS", "Singapore": "SG", "Slovakia": "SK", "Slovenia": "SI",
    "South Africa": "ZA", "South Korea": "KR", "Spain": "ES", "Sweden": "SE", "Switzerland": "CH",
    "Taiwan": "TW", "Thailand": "TH", "Turkey": "TR", "Türkiye": "TR", "Ukraine": "UA",
    "United Arab Emirates": "AE", "United Kingdom": "GB", "United States": "US", "Vietnam": "VN",
}
COUNTRY_NAMES = {code: name for name, code in reversed(COUNTRY_CODES.items())}


def _country(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return COUNTRY_CODES.get(value)


#: device class words of the trackers (Segment ``context.device.type``, GA4 ``device.category``,
#: Snowplow's YAUAA ``deviceClass``) to the contract's; anything else present is ``other``
DEVICE_WORDS = {"desktop": "desktop", "mobile": "mobile", "phone": "mobile", "ios": "mobile",
                "android": "mobile", "tablet": "tablet", "other": "other"}


def _device(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return DEVICE_WORDS.get(value.lower(), "other")


def _channel(explicit: Any, platform: Any, platforms: dict[str, str]) -> str | None:
    """A field naming a blipwatch channel wins; else the tracker's platform says web or app."""
    if isinstance(explicit, str) and explicit in CHANNELS:
        return explicit
    return platforms.get(platform) if isinstance(platform, str) else None


def _timestamp_ms(value: Any, field: str) -> int:
    """``parse_timestamp_ms``, with its cache of seconds first for the usual ``...T20:05:00.250Z``
    (as ``decode_event_fields`` does: a cached second matched the RFC 3339 pattern already)."""
    if value.__class__ is str and len(value) == 24 and value[19] == ".":
        second_ms = _SECOND_MS.get(value[:19])
        fraction = _MILLIS.get(value[20:])
        if second_ms is not None and fraction is not None:
            return second_ms + fraction
    return parse_timestamp_ms(value, field)


def _string(document: dict, name: str, required: bool = False) -> str | None:
    value = document.get(name)
    if value is None:
        if required:
            raise InvalidEvent("missing_field", name, "required field is missing")
        return None
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", name, "must be a string")
    return value


def _object(document: dict, name: str) -> dict:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", name, "must be an object")
    return value


def _load(raw: bytes | bytearray | memoryview | None, max_bytes: int) -> dict:
    """The checks every format shares: size, UTF-8, JSON, an object at the top."""
    document = load_json(raw, max_bytes)
    if not isinstance(document, dict):
        raise InvalidEvent("not_object", None, f"an event must be a JSON object, got {type(document).__name__}")
    return document


def _contract(event_id: Any, event_type: Any, occurred_at_ms: int, customer_id, session_id, channel, country,
              device, properties: dict, anonymous_id, id_field: str) -> TrackedEvent:
    """The tracked event, checked as ``validate_event`` checks the contract (same reasons); channel,
    country and device come from the mappings above, valid by construction."""
    if event_id.__class__ is not str:
        raise InvalidEvent("wrong_type", id_field, "must be a string")
    if not event_id or len(event_id) > MAX_ID_LENGTH:
        raise InvalidEvent("bad_value", id_field, f"must be 1 to {MAX_ID_LENGTH} characters")
    if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise InvalidEvent("bad_value", "event type", f"must be 1 to {MAX_EVENT_TYPE_LENGTH} characters")
    for name, value in (("customer id", customer_id), ("session id", session_id), ("anonymous id", anonymous_id)):
        if value is not None and len(value) > MAX_ID_LENGTH:
            raise InvalidEvent("bad_value", name, f"must be at most {MAX_ID_LENGTH} characters")
    if properties and event_type in _CHECKED_TYPES:
        _check_properties(event_type, properties)
    return TrackedEvent(event_id, event_type, occurred_at_ms, customer_id, session_id, channel, country, device,
                        properties, anonymous_id=anonymous_id)


# --- Segment -------------------------------------------------------------------------------------

#: Segment's e-commerce spec (``track`` event names) -> contract event types. Names the spec does
#: not define (payment failures, errors, complaints) are blipwatch's; any other name passes as is.
SEGMENT_EVENTS = {
    "Product Viewed": "product_view",
    "Products Searched": "search",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Checkout Started": "checkout_start",
    "Order Completed": "purchase",
    "Payment Failed": "payment_failed",
    "Error Occurred": "error",
    "Complaint Filed": "complaint",
    "Session Started": "session_start",
}
SEGMENT_NAMES = {event_type: name for name, event_type in SEGMENT_EVENTS.items()}
#: Segment's ``channel`` (the library that sent the call)
SEGMENT_PLATFORMS = {"browser": "web", "mobile": "app"}


def decode_segment(raw, max_bytes: int = 65536) -> tuple[TrackedEvent, int]:
    document = _load(raw, max_bytes)
    call = _string(document, "type", required=True)
    if call == "track":
        name = _string(document, "event", required=True)
        event_type = SEGMENT_EVENTS.get(name, name)
    elif call in ("page", "screen"):
        event_type = "page_view"
    else:  # identify, group, alias: no behaviour; counted in event_volume under their call type
        event_type = call
    timestamp = document.get("timestamp", document.get("originalTimestamp"))
    if timestamp is None:
        raise InvalidEvent("missing_field", "timestamp", "required field is missing")
    occurred_at_ms = _timestamp_ms(timestamp, "timestamp")
    context = _object(document, "context")
    properties = dict(_object(document, "properties"))
    if event_type == "purchase":  # the spec's total (revenue with shipping and tax), else revenue
        for name in ("total", "revenue", "value"):
            if name in properties:
                properties["order_value"] = properties[name]
                break
    anonymous_id = _string(document, "anonymousId")
    user_id = _string(document, "userId")
    if anonymous_id is None and user_id is None:
        raise InvalidEvent("missing_field", "anonymousId", "a call needs an anonymousId or a userId")
    device = context.get("device")
    location = context.get("location")
    event = _contract(
        _string(document, "messageId", required=True), event_type, occurred_at_ms, user_id, None,
        _channel(context.get("channel"), document.get("channel"), SEGMENT_PLATFORMS),
        _country(location.get("country")) if isinstance(location, dict) else None,
        _device(device.get("type")) if isinstance(device, dict) else None,
        properties, anonymous_id, "messageId")
    return event, event.occurred_at_ms


def encode_segment(event: dict) -> dict:
    event_type = event["event_type"]
    properties = dict(event.get("properties") or {})
    if event_type == "purchase" and "order_value" in properties:
        properties["total"] = properties.pop("order_value")
    message: dict[str, Any] = {"type": "page"} if event_type == "page_view" else {
        "type": "track", "event": SEGMENT_NAMES.get(event_type, event_type)}
    channel = event.get("channel")
    context: dict[str, Any] = {"channel": channel} if channel else {}
    if event.get("country"):
        context["location"] = {"country": COUNTRY_NAMES.get(event["country"], event["country"])}
    if event.get("device"):
        context["device"] = {"type": event["device"]}
    message.update({
        "messageId": event["event_id"], "anonymousId": _anonymous(event), "userId": event.get("customer_id"),
        "timestamp": _iso(event["occurred_at"]),
        "channel": {"web": "browser", "app": "mobile"}.get(channel, "server"),
        "context": context, "properties": properties})
    return message


# --- GA4 (BigQuery export rows) ------------------------------------------------------------------

GA4_EVENTS = {
    "session_start": "session_start",
    "page_view": "page_view",
    "screen_view": "page_view",
    "view_item": "product_view",
    "search": "search",
    "view_search_results": "search",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "begin_checkout": "checkout_start",
    "purchase": "purchase",
    "exception": "error",
    "payment_failed": "payment_failed",
    "complaint": "complaint",
}
GA4_NAMES = {"session_start": "session_start", "page_view": "page_view", "product_view": "view_item",
             "search": "view_search_results", "add_to_cart": "add_to_cart",
             "remove_from_cart": "remove_from_cart", "checkout_start": "begin_checkout",
             "purchase": "purchase", "error": "exception", "payment_failed": "payment_failed",
             "complaint": "complaint"}
GA4_PLATFORMS = {"WEB": "web", "IOS": "app", "ANDROID": "app"}


def _ga4_params(document: dict) -> dict:
    params = document.get("event_params")
    if params is None:
        return {}
    if not isinstance(params, list):
        raise InvalidEvent("wrong_type", "event_params", "must be a list of {key, value} objects")
    flat = {}
    for param in params:
        key = param.get("key") if param.__class__ is dict else None
        if key.__class__ is not str:
            raise InvalidEvent("wrong_type", "event_params", "must be a list of {key, value} objects")
        value = param.get("value")
        if value.__class__ is not dict:
            continue
        found = value.get("string_value")
        if found is None:
            found = value.get("int_value")
            if found is not None:
                if found.__class__ is str and found.lstrip("-").isdigit():  # BigQuery's JSON: INT64 as a string
                    found = int(found)
            else:
                found = value.get("double_value")
                if found is None:
                    found = value.get("float_value")
                    if found is None:
                        continue
        flat[key] = found
    return flat


def decode_ga4(raw, max_bytes: int = 65536) -> tuple[TrackedEvent, int]:
    document = _load(raw, max_bytes)
    name = _string(document, "event_name", required=True)
    event_type = GA4_EVENTS.get(name, name)
    micros = document.get("event_timestamp")
    if micros is None:
        raise InvalidEvent("missing_field", "event_timestamp", "required field is missing")
    if isinstance(micros, str) and micros.isdigit():
        micros = int(micros)
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise InvalidEvent("wrong_type" if not isinstance(micros, str) else "bad_timestamp", "event_timestamp",
                           "must be microseconds since the epoch (a whole number)")
    occurred_at_ms = parse_timestamp_ms(micros // 1000, "event_timestamp")
    params = _ga4_params(document)
    pseudo_id = _string(document, "user_pseudo_id")
    user_id = _string(document, "user_id")
    if pseudo_id is None and user_id is None:
        raise InvalidEvent("missing_field", "user_pseudo_id", "an event needs a user_pseudo_id or a user_id")
    ga_session_id = params.pop("ga_session_id", None)
    # ga_session_id is the session's start second: unique per user, not across users
    session_id = f"{pseudo_id or user_id}.{ga_session_id}" if ga_session_id is not None else None
    properties = {key: value for key, value in params.items() if key != "channel"}
    if event_type == "purchase":
        ecommerce = _object(document, "ecommerce")
        revenue = ecommerce.get("purchase_revenue", properties.get("value"))
        if revenue is not None:
            properties["order_value"] = revenue
    geo = _object(document, "geo")
    device = _object(document, "device")
    event_id = properties.pop("event_id", None)
    if event_id is None:  # GA4 has no event id: the user, the moment and the name make one
        event_id = f"{pseudo_id or user_id}:{micros}:{name}:{document.get('batch_event_index', 0)}"
    event = _contract(
        str(event_id), event_type, occurred_at_ms, user_id, session_id,
        _channel(params.get("channel"), document.get("platform"), GA4_PLATFORMS),
        _country(geo.get("country")), _device(device.get("category")), properties, pseudo_id, "event_params.event_id")
    return event, event.occurred_at_ms


def encode_ga4(event: dict) -> dict:
    event_type = event["event_type"]
    properties = dict(event.get("properties") or {})
    ecommerce = None
    if event_type == "purchase" and "order_value" in properties:
        ecommerce = {"purchase_revenue": properties["order_value"]}
        properties["value"] = properties.pop("order_value")
    params = {"event_id": event["event_id"], **properties}
    if event.get("session_id"):
        params["ga_session_id"] = zlib.crc32(event["session_id"].encode())
    if event.get("channel"):
        params["channel"] = event["channel"]
    row: dict[str, Any] = {
        "event_name": GA4_NAMES.get(event_type, event_type),
        "event_timestamp": str(parse_timestamp_ms(event["occurred_at"]) * 1000),
        "user_pseudo_id": _anonymous(event), "user_id": event.get("customer_id"),
        "platform": "ANDROID" if event.get("channel") == "app" else "WEB",
        "event_params": [{"key": key, "value": _ga4_value(value)} for key, value in params.items()],
        "geo": {"country": COUNTRY_NAMES.get(event.get("country"), event.get("country"))},
        "device": {"category": event.get("device")},
    }
    if ecommerce:
        row["ecommerce"] = ecommerce
    return row


def _ga4_value(value: Any) -> dict:
    if isinstance(value, bool) or isinstance(value, str):
        return {"string_value": str(value)}
    if isinstance(value, int):
        return {"int_value": str(value)}
    return {"double_value": value}


# --- Snowplow (enriched events as JSON) ----------------------------------------------------------

_SP_ACTION = "unstruct_event_com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action_1"
_SP_TRANSACTION = "contexts_com_snowplowanalytics_snowplow_ecommerce_transaction_1"
_SP_CHECKOUT = "contexts_com_snowplowanalytics_snowplow_ecommerce_checkout_step_1"
_SP_SEARCH = "unstruct_event_com_snowplowanalytics_snowplow_site_search_1"
_SP_YAUAA = "contexts_nl_basjes_yauaa_context_1"
#: the e-commerce plugin's action types -> contract types (checkout steps after the first stay
#: ``checkout_step``: one checkout is one start)
SNOWPLOW_ACTIONS = {"product_view": "product_view", "add_to_cart": "add_to_cart",
                    "remove_from_cart": "remove_from_cart", "checkout_step": "checkout_start",
                    "transaction": "purchase", "trns_error": "payment_failed"}
SNOWPLOW_EVENTS = {"page_view": "page_view", "screen_view": "page_view", "site_search": "search",
                   "application_error": "error"}
SNOWPLOW_PLATFORMS = {"web": "web", "mob": "app", "app": "app"}


def _first_entity(document: dict, name: str) -> dict:
    entities = document.get(name)
    if isinstance(entities, list) and entities and isinstance(entities[0], dict):
        return entities[0]
    return {}


def decode_snowplow(raw, max_bytes: int = 65536) -> tuple[TrackedEvent, int]:
    document = _load(raw, max_bytes)
    name = _string(document, "event_name", required=True)
    properties: dict[str, Any] = {}
    if name == "snowplow_ecommerce_action":
        action = _object(document, _SP_ACTION).get("type")
        if not isinstance(action, str):
            raise InvalidEvent("missing_field", f"{_SP_ACTION}.type", "an e-commerce action needs its type")
        event_type = SNOWPLOW_ACTIONS.get(action, action)
        if action == "checkout_step" and _first_entity(document, _SP_CHECKOUT).get("step", 1) != 1:
            event_type = "checkout_step"
        elif event_type == "purchase":
            transaction = _first_entity(document, _SP_TRANSACTION)
            if "revenue" in transaction:
                properties["order_value"] = transaction["revenue"]
            if "currency" in transaction:
                properties["currency"] = transaction["currency"]
    else:
        event_type = SNOWPLOW_EVENTS.get(name, name)
        if event_type == "search":
            search = _object(document, _SP_SEARCH)
            if "totalResults" in search:
                properties["results_count"] = search["totalResults"]
    timestamp = document.get("derived_tstamp", document.get("collector_tstamp"))
    if timestamp is None:
        raise InvalidEvent("missing_field", "derived_tstamp", "required field is missing")
    if isinstance(timestamp, str) and len(timestamp) >= 19 and timestamp[10] == " " and timestamp[-1].isdigit():
        timestamp = timestamp.replace(" ", "T", 1) + "Z"  # the enriched TSV's UTC time without a zone
    occurred_at_ms = _timestamp_ms(timestamp, "derived_tstamp")
    device_class = _first_entity(document, _SP_YAUAA).get("deviceClass")
    if device_class is None and document.get("dvce_ismobile") is not None:
        device_class = "mobile" if document.get("dvce_ismobile") else "desktop"
    event = _contract(
        _string(document, "event_id", required=True), event_type, occurred_at_ms,
        _string(document, "user_id"), _string(document, "domain_sessionid"),
        _channel(document.get("app_id"), document.get("platform"), SNOWPLOW_PLATFORMS),
        _country(document.get("geo_country")), _device(device_class), properties,
        _string(document, "domain_userid"), "event_id")
    return event, event.occurred_at_ms


def encode_snowplow(event: dict) -> dict:
    event_type = event["event_type"]
    properties = event.get("properties") or {}
    actions = {value: key for key, value in SNOWPLOW_ACTIONS.items()}
    names = {"page_view": "page_view", "search": "site_search", "error": "application_error"}
    row: dict[str, Any] = {"event_id": event["event_id"]}
    if event_type in actions:
        row["event_name"] = "snowplow_ecommerce_action"
        row[_SP_ACTION] = {"type": actions[event_type]}
        if event_type == "checkout_start":
            row[_SP_CHECKOUT] = [{"step": 1}]
        if event_type == "purchase" and "order_value" in properties:
            row[_SP_TRANSACTION] = [{"transaction_id": event["event_id"], "revenue": properties["order_value"],
                                     "currency": properties.get("currency", "EUR"),
                                     "payment_method": "card", "total_quantity": properties.get("items", 1)}]
    else:
        row["event_name"] = names.get(event_type, event_type)
        if event_type == "search" and "results_count" in properties:
            row[_SP_SEARCH] = {"terms": ["q"], "totalResults": properties["results_count"]}
    row.update({
        "derived_tstamp": _iso(event["occurred_at"]), "collector_tstamp": _iso(event["occurred_at"]),
        "domain_sessionid": event.get("session_id"), "domain_userid": _anonymous(event),
        "user_id": event.get("customer_id"), "app_id": event.get("channel"),
        "platform": {"web": "web", "app": "mob"}.get(event.get("channel"), "srv"),
        "geo_country": event.get("country"),
    })
    if event.get("device"):
        row[_SP_YAUAA] = [{"deviceClass": {"mobile": "Phone"}.get(event["device"], event["device"].capitalize())}]
    return row


# --- the registry --------------------------------------------------------------------------------

def _iso(occurred_at: Any) -> str:
    if isinstance(occurred_at, str):
        return occurred_at
    from blipwatch.schemas.outputs import iso_from_ms
    return iso_from_ms(int(occurred_at))


def _anonymous(event: dict) -> str:
    """The device id a tracker would have sent: one per session of the contract event."""
    return "a-" + (event.get("session_id") or event.get("customer_id") or event["event_id"])


@dataclass(frozen=True)
class Preset:
    name: str
    #: bytes -> (event fields, occurred_at_ms), raising InvalidEvent as ``decode_event_fields`` does
    decode: Callable[..., tuple[Any, int]]
    #: a contract event (dict) -> the tracker's document, or None where the tracker sends no such event
    encode: Callable[[dict], dict | None]
    #: contract types this tracker has no event for (the simulator leaves them out)
    not_sent: frozenset[str] = frozenset()


PRESETS = {
    "blipwatch": Preset("blipwatch", decode_event_fields, dict),
    "segment": Preset("segment", decode_segment, encode_segment, frozenset({"session_start"})),
    "ga4": Preset("ga4", decode_ga4, encode_ga4),
    "snowplow": Preset("snowplow", decode_snowplow, encode_snowplow, frozenset({"session_start"})),
}
#: the outcome events a journey computes; trackers do not send them
OUTCOME_EVENT_TYPES = frozenset({"cart_abandoned"})


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown input preset {name!r}: use one of {', '.join(PRESETS)}") from None


def encode(preset: str, event: dict) -> dict | None:
    """A contract event as ``preset``'s tracker sends it; None for a type it has no event for."""
    chosen = get_preset(preset)
    if event["event_type"] in chosen.not_sent:
        return None
    if preset != "blipwatch" and event["event_type"] in OUTCOME_EVENT_TYPES:
        return None
    return chosen.encode(event)


__all__ = ["PRESETS", "Preset", "PresetError", "TrackedEvent", "encode", "get_preset"]

"""Input presets (blipwatch.schemas.presets): trackers' events onto the customer-event contract."""

from __future__ import annotations

import orjson
import pytest

from blipwatch.pipeline.catalogue import Catalogue, CatalogueError
from blipwatch.pipeline.journeys import JourneyStage
from blipwatch.schemas.events import REASONS, InvalidEvent, decode_event
from blipwatch.schemas.presets import PRESETS, PresetError, get_preset
from blipwatch.stream_app.config import ConfigError, Settings, input_preset
from blipwatch.tools.simulator import ScenarioError, generate_events
from blipwatch.tools.trackers import tracker_encoder

TRACKERS = ("segment", "ga4", "snowplow")


@pytest.fixture(scope="module")
def simulated() -> list[dict]:
    return list(generate_events("none", hours=0.5, seed=4, sessions_per_minute=40))


def contract_view(fields, at_ms: int) -> tuple:
    """What the metrics read from an event (ids are compared apart: each tracker has its own)."""
    properties = fields.properties
    return (fields.event_type, at_ms, fields.customer_id, fields.channel, fields.country, fields.device,
            properties.get("order_value"), properties.get("results_count"))


@pytest.mark.parametrize("tracker", TRACKERS)
def test_each_tracker_format_maps_back_to_the_same_contract_events(tracker, simulated):
    encode, decode = tracker_encoder(tracker), get_preset(tracker).decode
    expected, mapped, left_out = [], [], set()
    for event in simulated:
        value = encode(event)
        if value is None:
            left_out.add(event["event_type"])
            continue
        original = decode_event(orjson.dumps(event))
        expected.append(contract_view(original, original.occurred_at_ms))
        mapped.append(contract_view(*decode(value)))
    assert mapped == expected and len(mapped) > 1000
    assert left_out == ({"cart_abandoned"} if tracker == "ga4" else {"cart_abandoned", "session_start"})


@pytest.mark.parametrize("tracker", TRACKERS)
def test_each_tracker_format_gives_the_same_sessions_and_journeys(tracker, simulated):
    catalogue = Catalogue.from_dict({"metrics": {
        "cart_abandonment_rate": {"kind": "funnel", "start": ["add_to_cart"], "success": ["purchase"],
                                  "within": "30m", "outcome": "failure"},
        "checkout_unconverted_5m": {"kind": "funnel", "start": ["checkout_start"], "success": ["purchase"],
                                    "within": "5m", "outcome": "failure"}}})
    encode, decode = tracker_encoder(tracker), get_preset(tracker).decode
    ours, theirs = JourneyStage(catalogue), JourneyStage(catalogue)
    pairs = set()
    for event in simulated:
        value = encode(event)
        if value is None:
            continue
        original = decode_event(orjson.dumps(event))
        fields, at_ms = decode(value)
        ours.add(original, original.occurred_at_ms)
        theirs.add(fields, at_ms)
        pairs.add((original.session_id, fields.session_id or fields.anonymous_id))
    # one tracker session per simulated session, and the other way round
    assert len({ours for ours, _ in pairs}) == len({theirs for _, theirs in pairs}) == len(pairs)
    outcomes = ours.advance(10**15)
    assert outcomes == theirs.advance(10**15)
    assert sum(d for _, d in outcomes["cart_abandonment_rate|all"].values()) > 100
    assert ours.counts == theirs.counts


# --- documents as the trackers' own docs show them -------------------------------------------------

def test_segment_order_completed_and_a_page_call():
    event, at_ms = get_preset("segment").decode(orjson.dumps({
        "type": "track", "event": "Order Completed", "messageId": "ajs-1", "anonymousId": "507f191e",
        "userId": "u1", "timestamp": "2026-01-05T20:05:00.250+01:00", "channel": "browser",
        "context": {"location": {"country": "Germany"}, "device": {"type": "ios"}},
        "properties": {"order_id": "50314b8e", "total": 27.5, "revenue": 25.0, "currency": "EUR"}}))
    assert (event.event_type, at_ms, event.customer_id, event.anonymous_id, event.session_id) == (
        "purchase", 1767639900250, "u1", "507f191e", None)
    assert (event.channel, event.country, event.device, event.properties["order_value"]) == ("web", "DE", "mobile", 27.5)
    page, _ = get_preset("segment").decode(b'{"type": "page", "name": "Home", "messageId": "m2", '
                                           b'"userId": "u1", "timestamp": "2026-01-05T20:05:00Z"}')
    assert (page.event_type, page.channel, page.country) == ("page_view", None, None)


def test_ga4_bigquery_rows_with_microseconds_sessions_per_user_and_country_names():
    row = {"event_name": "begin_checkout", "event_timestamp": "1767643500123456", "user_pseudo_id": "1197.1767",
           "platform": "IOS", "geo": {"country": "United Kingdom"}, "device": {"category": "smart tv"},
           "event_params": [{"key": "ga_session_id", "value": {"int_value": "1767643400"}},
                            {"key": "engagement_time_msec", "value": {"int_value": 12}}]}
    event, at_ms = get_preset("ga4").decode(orjson.dumps(row))
    assert (event.event_type, at_ms, event.session_id, event.anonymous_id) == (
        "checkout_start", 1767643500123, "1197.1767.1767643400", "1197.1767")
    assert (event.channel, event.country, event.device) == ("app", "GB", "other")
    purchase, _ = get_preset("ga4").decode(orjson.dumps({**row, "event_name": "purchase",
                                                         "ecommerce": {"purchase_revenue": 80.5}}))
    assert purchase.event_type == "purchase" and purchase.properties["order_value"] == 80.5


def test_snowplow_enriched_events_with_ecommerce_actions():
    base = {"event_id": "c6ef3124-b53a-4b13-a233-0088f79dcbcb", "derived_tstamp": "2026-01-05 20:05:00.000",
            "domain_sessionid": "ds-1", "domain_userid": "du-1", "geo_country": "FR", "platform": "web",
            "app_id": "shop-frontend", "event_name": "snowplow_ecommerce_action"}
    action = "unstruct_event_com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action_1"
    step = "contexts_com_snowplowanalytics_snowplow_ecommerce_checkout_step_1"
    decode = get_preset("snowplow").decode
    first, at_ms = decode(orjson.dumps({**base, action: {"type": "checkout_step"}, step: [{"step": 1}]}))
    assert (first.event_type, at_ms, first.session_id, first.channel, first.country) == (
        "checkout_start", 1767643500000, "ds-1", "web", "FR")
    later, _ = decode(orjson.dumps({**base, action: {"type": "checkout_step"}, step: [{"step": 2}]}))
    assert later.event_type == "checkout_step"  # one checkout is one start
    failed, _ = decode(orjson.dumps({**base, action: {"type": "trns_error"}}))
    assert failed.event_type == "payment_failed"


# --- invalid input: the contract's reasons, the tracker's field names --------------------------------

SEGMENT = {"type": "track", "event": "Product Added", "messageId": "m1", "anonymousId": "a1",
           "timestamp": "2026-01-05T20:05:00Z"}
GA4 = {"event_name": "add_to_cart", "event_timestamp": 1767643500000000, "user_pseudo_id": "p1"}
SNOWPLOW = {"event_id": "e1", "event_name": "page_view", "derived_tstamp": "2026-01-05T20:05:00Z",
            "domain_sessionid": "d1"}


@pytest.mark.parametrize("preset, raw, reason, field", [
    ("segment", b"", "empty", None),
    ("ga4", b"x" * 70_000, "too_large", None),
    ("snowplow", b'{"event_id": "\xff"}', "not_utf8", None),
    ("segment", b'{"type": ', "not_json", None),
    ("ga4", b"[1, 2]", "not_object", None),
    ("segment", {**SEGMENT, "timestamp": None}, "missing_field", "timestamp"),
    ("segment", {**SEGMENT, "anonymousId": None}, "missing_field", "anonymousId"),
    ("segment", {**SEGMENT, "messageId": 7}, "wrong_type", "messageId"),
    ("segment", {**SEGMENT, "timestamp": "yesterday"}, "bad_timestamp", "timestamp"),
    ("segment", {**SEGMENT, "event": "Order Completed", "properties": {"total": -3}}, "bad_value",
     "properties.order_value"),
    ("ga4", {**GA4, "event_timestamp": None}, "missing_field", "event_timestamp"),
    ("ga4", {**GA4, "event_timestamp": "soon"}, "bad_timestamp", "event_timestamp"),
    ("ga4", {**GA4, "event_timestamp": 1.5}, "wrong_type", "event_timestamp"),
    ("ga4", {**GA4, "event_timestamp": 10**18}, "bad_timestamp", "event_timestamp"),
    ("ga4", {**GA4, "event_params": {"key": "x"}}, "wrong_type", "event_params"),
    ("ga4", {**GA4, "event_name": "view_search_results",
             "event_params": [{"key": "results_count", "value": {"int_value": "-1"}}]}, "bad_value",
     "properties.results_count"),
    ("snowplow", {**SNOWPLOW, "event_id": None}, "missing_field", "event_id"),
    ("snowplow", {**SNOWPLOW, "derived_tstamp": "2026-13-05T20:05:00Z"}, "bad_timestamp", "derived_tstamp"),
    ("snowplow", {**SNOWPLOW, "domain_sessionid": ["d1"]}, "wrong_type", "domain_sessionid"),
    ("snowplow", {**SNOWPLOW, "event_name": "snowplow_ecommerce_action"}, "missing_field",
     "unstruct_event_com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action_1.type"),
])
def test_invalid_tracker_input_gets_the_contracts_dlq_reasons(preset, raw, reason, field):
    raw = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    with pytest.raises(InvalidEvent) as caught:
        get_preset(preset).decode(raw, 65536)
    assert caught.value.reason == reason and caught.value.reason in REASONS
    assert caught.value.field == field


def test_the_blipwatch_preset_is_the_contract_itself():
    raw = b'{"event_id": "e1", "event_type": "purchase", "occurred_at": "2026-01-05T20:05:00Z"}'
    fields, at_ms = get_preset("blipwatch").decode(raw)
    assert (fields.event_type, at_ms) == ("purchase", 1767643500000)


# --- choosing a preset --------------------------------------------------------------------------------

def test_the_preset_is_chosen_by_the_environment_over_the_config_file():
    from_file = Catalogue.from_dict({"input": {"preset": "Snowplow"}})
    assert input_preset(Settings.from_env({}), Catalogue.from_dict(None)) == "blipwatch"
    assert input_preset(Settings.from_env({}), from_file) == "snowplow"
    assert input_preset(Settings.from_env({"BLIPWATCH_INPUT_PRESET": "GA4"}), from_file) == "ga4"
    assert Settings.from_env({"BLIPWATCH_INPUT_PRESET": "segment"}).as_env()["BLIPWATCH_INPUT_PRESET"] == "segment"


def test_an_unknown_preset_is_one_clear_error_wherever_it_is_named():
    with pytest.raises(ConfigError, match=r"BLIPWATCH_INPUT_PRESET='gtm': use one of blipwatch, segment, ga4, snowplow"):
        Settings.from_env({"BLIPWATCH_INPUT_PRESET": "gtm"})
    with pytest.raises(CatalogueError, match=r"input.preset='gtm': use one of"):
        Catalogue.from_dict({"input": {"preset": "gtm"}})
    with pytest.raises(CatalogueError, match=r"input must be a mapping like \{preset: segment\}"):
        Catalogue.from_dict({"input": "segment"})
    with pytest.raises(PresetError, match="unknown input preset"):
        get_preset("gtm")
    with pytest.raises(ScenarioError, match="unknown tracker"):
        tracker_encoder("gtm")
    assert set(PRESETS) == {"blipwatch", *TRACKERS}


def test_a_tracked_event_shows_no_ids():
    event, _ = get_preset("segment").decode(orjson.dumps({**SEGMENT, "userId": "secret-user",
                                                          "anonymousId": "secret-device"}))
    assert "secret" not in repr(event)


ODD_VALUES = (None, 0, -1, 1.5, "", "x", [], ["web"], {}, {"a": 1}, True)


def replaced(document, path=()):
    """Every document with one value (at any depth) replaced by an odd one."""
    items = document.items() if isinstance(document, dict) else enumerate(document)
    for key, value in items:
        for odd in ODD_VALUES:
            yield _set(document, key, odd)
        if isinstance(value, (dict, list)) and value:
            for inner in replaced(value):
                yield _set(document, key, inner)


def _set(document, key, value):
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[key] = value
    return copy


@pytest.mark.parametrize("tracker", TRACKERS)
def test_any_odd_value_anywhere_is_mapped_or_rejected_with_a_reason_never_a_crash(tracker, simulated):
    encode, decode = tracker_encoder(tracker), get_preset(tracker).decode
    samples = {}
    for event in simulated:  # one document of each event type
        if event["event_type"] not in samples and encode(event) is not None:
            samples[event["event_type"]] = orjson.loads(encode(event))
    tried = 0
    for document in samples.values():
        for variant in replaced(document):
            tried += 1
            try:
                decode(orjson.dumps(variant))
            except InvalidEvent as exc:
                assert exc.reason in REASONS
    assert tried > 500


@pytest.mark.parametrize("tracker", TRACKERS)
def test_simulate_with_a_tracker_writes_its_format_without_outcome_events(tracker, tmp_path, capsys):
    from blipwatch.stream_app.cli import main

    out = tmp_path / "events.jsonl"
    assert main(["simulate", "--scenario", "none", "--hours", "0.1", "--sessions-per-minute", "30",
                 "--tracker", tracker, "--out", str(out), "--quiet"]) == 0
    lines = out.read_bytes().splitlines()
    types = {get_preset(tracker).decode(line)[0].event_type for line in lines}
    assert {"add_to_cart", "purchase", "page_view"} <= types and "cart_abandoned" not in types
    with pytest.raises(InvalidEvent):  # and it is not the contract's format
        decode_event(lines[0])
    assert f"{len(lines):,} events" in capsys.readouterr().err

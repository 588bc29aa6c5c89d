"""The feedback and calendar contracts: Python and the JSON Schema files agree, every field is checked."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from blipwatch.schemas import SCHEMA_DIR, InvalidDocument
from blipwatch.schemas.feedback import CalendarEntry, Feedback, incident_of

FEEDBACK = {"dedup_key": "event_volume|channel=app@2026-01-05T02:00:00Z", "verdict": "false_positive",
            "at": "2026-01-05T08:12:00Z", "source": "cli"}
ENTRY = {"id": "spring-sale", "from": "2026-03-20T00:00:00Z", "to": "2026-03-23T00:00:00Z", "reason": "spring sale"}


def schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / name).read_text()))


def python_accepts(cls, document) -> bool:
    try:
        cls.from_dict(document)
        return True
    except InvalidDocument:
        return False


@pytest.mark.parametrize("change", [
    {}, {"verdict": "expected"}, {"verdict": "confirmed"}, {"verdict": "wrong"}, {"verdict": None},
    {"source": "alertmanager"}, {"source": "kafka"}, {"source": "email"}, {"at": "yesterday"},
    {"at": "2026-01-05T08:12:00"}, {"at": 1767600000000}, {"dedup_key": ""}, {"dedup_key": "  "},
    {"dedup_key": 7}, {"dedup_key": "x" * 513}, {"note": "nightly tracking gap"}, {"note": ""},
    {"note": None}, {"note": "n" * 2001}, {"by": "alice"}, {"series": "event_volume|channel=app"},
    {"series": "event_volume"}, {"started_at": "2026-01-05T02:00:00Z", "ended_at": "2026-01-05T02:10:00Z"},
    {"ended_at": "2026-01-05 03:10:00+01:00"}, {"ended_at": "soon"}, {"surprise": 1},
])
def test_feedback_python_and_json_schema_agree(change):
    document = {k: v for k, v in {**FEEDBACK, **change}.items() if not (v is None and k in FEEDBACK)}
    assert schema("feedback.schema.json").is_valid(document) == python_accepts(Feedback, document)


@pytest.mark.parametrize("change", [
    {}, {"id": "a"}, {"id": "-x"}, {"id": "sale 2026"}, {"id": "x" * 129}, {"from": "2026-03-20"},
    {"to": None}, {"reason": ""}, {"reason": "r" * 201}, {"metrics": ["event_volume", "complaint_count"]},
    {"metrics": []}, {"metrics": ["Event Volume"]}, {"metrics": "event_volume"}, {"metrics": None},
    {"segment": {}}, {"segment": {"channel": "web"}}, {"segment": {"channel": ""}}, {"segment": {"channel": 1}},
    {"segment": "channel=web"}, {"segment": None}, {"at": "2026-03-01T10:00:00Z"}, {"by": "marketing"},
    {"kind": "calendar"},
])
def test_calendar_python_and_json_schema_agree(change):
    document = {k: v for k, v in {**ENTRY, **change}.items() if not (v is None and k in ENTRY)}
    assert schema("calendar_entry.schema.json").is_valid(document) == python_accepts(CalendarEntry, document)


@pytest.mark.parametrize("cls, document, message", [
    (Feedback, {**FEEDBACK, "started_at": "2026-01-05T02:10:00Z", "ended_at": "2026-01-05T02:10:00Z"},
     "ended_at must be after started_at"),
    (Feedback, {**FEEDBACK, "ended_at": "2026-01-05T01:00:00Z"}, "ended_at must be after started_at"),
    (Feedback, {**FEEDBACK, "at": "2026-02-30T08:00:00Z"}, "not a real date"),
    (CalendarEntry, {**ENTRY, "to": ENTRY["from"]}, "'to' must be after 'from'"),
    (CalendarEntry, {**ENTRY, "to": "2026-12-31T00:00:00Z"}, "more than 92 days"),
])
def test_what_a_json_schema_cannot_say_python_still_refuses(cls, document, message):
    with pytest.raises(InvalidDocument, match=message):
        cls.from_dict(document)


def test_round_trips_write_only_what_is_set_and_match_the_schemas():
    feedback = Feedback.from_dict({**FEEDBACK, "note": "gap", "ended_at": "2026-01-05T02:10:00Z"})
    document = orjson.loads(feedback.to_json())
    assert document == {**FEEDBACK, "note": "gap", "ended_at": "2026-01-05T02:10:00Z"}
    assert schema("feedback.schema.json").is_valid(document) and Feedback.from_json(feedback.to_json()) == feedback
    entry = CalendarEntry.from_dict({**ENTRY, "metrics": ["event_volume"], "segment": {}})
    document = orjson.loads(entry.to_json())
    assert document == {**ENTRY, "metrics": ["event_volume"], "segment": {}}
    assert schema("calendar_entry.schema.json").is_valid(document) and CalendarEntry.from_json(entry.to_json()) == entry


def test_the_incident_span_comes_from_the_dedup_key_unless_given():
    feedback = Feedback.from_dict(FEEDBACK)
    assert (feedback.series_key(), feedback.started_ms(), feedback.ended_ms()) == \
        ("event_volume|channel=app", 1767578400000, None)
    other = Feedback.from_dict({**FEEDBACK, "dedup_key": "pagerduty-123", "series": "complaint_count|all",
                                "started_at": "2026-01-05T03:00:00+01:00"})
    assert (other.series_key(), other.started_ms()) == ("complaint_count|all", 1767578400000)
    assert incident_of("pagerduty-123") is None
    assert Feedback.from_dict({**FEEDBACK, "dedup_key": "k"}).series_key() is None


@pytest.mark.parametrize("raw, message", [(b"{", "Feedback is not JSON"), (b"[]", "must be a JSON object"),
                                          (b'{"verdict": "expected"}', "Feedback.dedup_key is missing")])
def test_undecodable_feedback_is_one_clear_error(raw, message):
    with pytest.raises(InvalidDocument, match=message):
        Feedback.from_json(raw)

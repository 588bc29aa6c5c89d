"""Which Alertmanager silences are feedback (pure mapping; the real Alertmanager is in tests/integration)."""

from __future__ import annotations

import pytest

from blipwatch.stream_app.silence_feedback import feedback_from_silence

KEY = "event_volume|channel=app@2026-01-05T02:00:00Z"
BASE = {"id": "s1", "updatedAt": "2026-01-05T09:12:03+01:00", "createdBy": "bob", "comment": "expected: sale",
        "matchers": [{"name": "dedup_key", "value": KEY, "isRegex": False, "isEqual": True}]}


def test_a_verdict_silence_gives_feedback_at_its_update_time_in_utc():
    feedback = feedback_from_silence(BASE)
    assert (feedback.dedup_key, feedback.verdict, feedback.note, feedback.at, feedback.by) == \
        (KEY, "expected", "sale", "2026-01-05T08:12:03.000Z", "bob")
    assert feedback_from_silence(BASE) == feedback          # read again: the same record


@pytest.mark.parametrize("change", [
    {"comment": "sale"}, {"comment": ""}, {"comment": None}, {"matchers": []}, {"matchers": "dedup_key=x"},
    {"matchers": [{"name": "dedup_key", "value": KEY, "isRegex": True}]},
    {"matchers": [{"name": "dedup_key", "value": KEY, "isEqual": False}]},
    {"matchers": [{"name": "dedup_key", "value": KEY}, {"name": "dedup_key", "value": "other|all@x"}]},
    {"matchers": [{"name": "dedup_key", "value": ""}]}, {"updatedAt": "yesterday"},
])
def test_anything_broader_or_without_a_verdict_is_an_ordinary_silence(change):
    assert feedback_from_silence({**BASE, **change}) is None


def test_verdict_words_are_read_in_any_case_and_spelling_and_an_empty_creator_is_no_one():
    for comment, verdict in [("FALSE POSITIVE", "false_positive"), ("false-positive, again", "false_positive"),
                             ("Confirmed.", "confirmed")]:
        assert feedback_from_silence({**BASE, "comment": comment, "createdBy": " "}).verdict == verdict
    assert feedback_from_silence({**BASE, "createdBy": " "}).by is None

"""FeedbackBook and SeriesFeedback: verdicts and calendars as state, acted on once, patterns that recur."""

from __future__ import annotations

import pytest

from blipwatch.pipeline.feedback import (DAY_MS, MAX_LEARN_WINDOWS, FeedbackBook, FeedbackStateError,
                                         SeriesFeedback, load_records, windows_of)
from blipwatch.schemas.feedback import CalendarEntry, Feedback
from blipwatch.schemas.outputs import ms_from_iso

MINUTE = 60_000
KEY = "event_volume|channel=app@2026-01-05T02:00:00Z"
NIGHT = ms_from_iso("2026-01-05T02:00:00Z")


def verdict(kind: str, key: str = KEY, **extra) -> Feedback:
    return Feedback(key, kind, "2026-01-05T08:00:00Z", "cli", **extra)


def entry(entry_id: str, start: str, end: str, **extra) -> CalendarEntry:
    return CalendarEntry(entry_id, start, end, extra.pop("reason", entry_id), **extra)


def record(item) -> tuple[bytes, bytes]:
    return item.key, item.to_json()


def test_the_latest_verdict_wins_a_repeat_is_not_news_and_a_tombstone_withdraws_it():
    book = FeedbackBook()
    assert book.apply_feedback(*record(verdict("false_positive"))).verdict == "false_positive"
    assert book.apply_feedback(*record(verdict("false_positive", note="again"))) is None
    assert book.apply_feedback(*record(verdict("expected"))).verdict == "expected"
    assert book.verdict(KEY).verdict == "expected" and book.counts()["expected"] == 1
    book.apply_feedback(KEY.encode(), None)
    assert book.verdict(KEY) is None and book.counts() == {"false_positive": 0, "expected": 0, "confirmed": 0}


def test_undecodable_records_and_records_under_another_key_are_counted_not_applied():
    book = FeedbackBook()
    assert book.apply_feedback(b"k", b"{not json") is None
    assert book.apply_feedback(b"other-key", verdict("confirmed").to_json()) is None
    assert book.apply_calendar(b"sale", b'{"id": "sale"}') is None
    assert book.rejected == 3 and not book.verdicts and not book.calendar


def test_verdicts_for_a_series_come_from_their_dedup_keys_oldest_first():
    book = load_records(FeedbackBook(), [record(verdict("confirmed", KEY.replace("02:00", "05:00"))),
                                         record(verdict("false_positive")),
                                         record(verdict("expected", "complaint_count|all@2026-01-05T02:00:00Z"))])
    assert [f.verdict for f in book.verdicts_for("event_volume|channel=app")] == ["false_positive", "confirmed"]


@pytest.mark.parametrize("metric, segment, start, covered", [
    ("event_volume", {"channel": "web"}, "2026-03-21T12:00:00Z", True),
    ("event_volume", {"channel": "app"}, "2026-03-21T12:00:00Z", False),
    ("event_volume", {}, "2026-03-21T12:00:00Z", False),                  # {"channel": "web"} is not "all"
    ("complaint_count", {"channel": "web"}, "2026-03-21T12:00:00Z", False),
    ("event_volume", {"channel": "web"}, "2026-03-19T23:59:00Z", False),  # ends exactly at 'from'
    ("event_volume", {"channel": "web"}, "2026-03-19T23:59:30Z", True),   # overlaps 'from'
    ("event_volume", {"channel": "web"}, "2026-03-23T00:00:00Z", False),  # starts exactly at 'to'
])
def test_a_calendar_entry_covers_the_windows_that_overlap_it_on_its_metrics_and_segment(metric, segment, start,
                                                                                        covered):
    book = FeedbackBook()
    book.apply_calendar(*record(entry("sale", "2026-03-20T00:00:00Z", "2026-03-23T00:00:00Z",
                                      metrics=("event_volume", "average_order_value"), segment={"channel": "web"})))
    start_ms = ms_from_iso(start)
    assert (book.calendar_for(metric, segment, start_ms, start_ms + MINUTE) is not None) == covered


def test_without_a_segment_an_entry_covers_every_series_and_with_an_empty_one_only_the_overall():
    book = FeedbackBook()
    book.apply_calendar(*record(entry("everything", "2026-03-20T00:00:00Z", "2026-03-20T02:00:00Z")))
    book.apply_calendar(*record(entry("overall", "2026-03-20T01:00:00Z", "2026-03-20T03:00:00Z", segment={})))
    at = ms_from_iso("2026-03-20T01:30:00Z")
    assert book.calendar_for("error_rate", {"country": "FR"}, at, at + MINUTE).id == "everything"
    assert book.calendar_for("error_rate", {}, at, at + MINUTE).id == "everything"   # the earliest first
    later = at + 3600_000
    assert book.calendar_for("error_rate", {}, later, later + MINUTE).id == "overall"
    assert book.calendar_for("error_rate", {"country": "FR"}, later, later + MINUTE) is None
    assert [e.id for e in book.active(at, at + MINUTE)] == ["everything", "overall"]


def test_a_calendar_entry_is_replaced_by_its_id_and_removed_by_a_tombstone():
    book = FeedbackBook()
    book.apply_calendar(*record(entry("sale", "2026-03-20T00:00:00Z", "2026-03-21T00:00:00Z")))
    assert book.apply_calendar(*record(entry("sale", "2026-03-20T00:00:00Z", "2026-03-21T00:00:00Z"))) is None
    book.apply_calendar(*record(entry("sale", "2026-03-22T00:00:00Z", "2026-03-23T00:00:00Z")))
    early, late = ms_from_iso("2026-03-20T10:00:00Z"), ms_from_iso("2026-03-22T10:00:00Z")
    assert book.calendar_for("m", {}, early, early + MINUTE) is None
    assert book.calendar_for("m", {}, late, late + MINUTE).id == "sale"
    book.apply_calendar(b"sale", None)
    assert book.calendar_for("m", {}, late, late + MINUTE) is None and not book.calendar


def test_the_book_survives_a_restart_and_a_damaged_or_foreign_state_is_refused():
    book = FeedbackBook()
    book.apply_feedback(*record(verdict("false_positive", note="gap", ended_at="2026-01-05T02:10:00Z")))
    book.apply_calendar(*record(entry("sale", "2026-03-20T00:00:00Z", "2026-03-21T00:00:00Z", segment={})))
    again = FeedbackBook.from_bytes(book.to_bytes())
    assert again.verdicts == book.verdicts and again.calendar == book.calendar
    at = ms_from_iso("2026-03-20T10:00:00Z")
    assert again.calendar_for("m", {}, at, at + MINUTE).id == "sale"
    for blob in (b"", b"blipwatch-feedback-book/0\n{}", book.to_bytes()[:-5], book.to_bytes().replace(b"sale", b"s a")):
        with pytest.raises(FeedbackStateError):
            FeedbackBook.from_bytes(blob)


def act(series: SeriesFeedback, kind: str, firing: bool = False, **extra):
    return series.act(verdict(kind, **extra), ended_ms=NIGHT + 10 * MINUTE, window_ms=MINUTE, direction="down",
                      firing=firing, deviation=1.0)


def test_a_false_positive_resolves_a_firing_incident_and_learns_its_windows_once_even_after_a_restart():
    series = SeriesFeedback()
    action = act(series, "false_positive", firing=True)
    assert action.resolve and action.learn == tuple(range(NIGHT, NIGHT + 10 * MINUTE, MINUTE))
    assert act(series, "false_positive") is None
    assert act(SeriesFeedback.from_bytes(series.to_bytes()), "false_positive") is None


def test_expected_resolves_and_learns_nothing_and_confirmed_changes_nothing():
    expected = act(SeriesFeedback(), "expected", firing=True)
    assert expected.resolve and expected.learn == ()
    confirmed = act(SeriesFeedback(), "confirmed", firing=True)
    assert not confirmed.resolve and confirmed.learn == ()


def test_a_changed_verdict_is_acted_on_but_windows_are_never_learned_twice():
    series = SeriesFeedback()
    assert act(series, "expected").learn == ()
    assert len(act(series, "false_positive").learn) == 10      # expected, then false_positive: learned now
    assert act(series, "expected").learn == ()
    assert act(series, "false_positive").learn == ()            # back again: already learned
    assert series.recurs(NIGHT + DAY_MS, "down", 1.0) is not None


def test_the_incident_end_given_in_the_verdict_wins_over_the_workers_guess():
    series = SeriesFeedback()
    action = series.act(verdict("false_positive", ended_at="2026-01-05T02:03:00Z"), ended_ms=NIGHT + 10 * MINUTE,
                        window_ms=MINUTE, direction="down", firing=False)
    assert action.learn == (NIGHT, NIGHT + MINUTE, NIGHT + 2 * MINUTE)


def test_a_false_positive_pattern_recurs_at_the_same_time_of_day_only_same_way_and_size():
    series = SeriesFeedback()
    act(series, "false_positive")
    next_night = NIGHT + DAY_MS
    assert series.recurs(next_night + 5 * MINUTE, "down", 1.0) is not None
    assert series.recurs(next_night - 14 * MINUTE, "down", 0.9) is not None      # within the tolerance
    assert series.recurs(next_night - 16 * MINUTE, "down", 1.0) is None
    assert series.recurs(next_night + 60 * MINUTE, "down", 1.0) is None          # an hour later: pages
    assert series.recurs(next_night + 5 * MINUTE, "up", 1.0) is None             # the other way: pages
    assert series.recurs(next_night + 5 * MINUTE, "down", 2.0) is None           # twice as large: pages
    assert series.recurs(next_night + 5 * MINUTE, None, 1.0) is None


def test_a_pattern_not_seen_for_keep_days_is_forgotten_and_seeing_it_keeps_it():
    series = SeriesFeedback(keep_days=3)
    act(series, "false_positive")
    for day in range(1, 10):   # it comes back every night: kept
        assert series.recurs(NIGHT + day * DAY_MS + MINUTE, "down", 1.0) is not None, day
    assert series.recurs(NIGHT + 14 * DAY_MS + MINUTE, "down", 1.0) is None
    assert series.patterns == []


def test_an_expected_verdict_withdraws_the_pattern_of_a_false_positive():
    series = SeriesFeedback()
    act(series, "false_positive")
    act(series, "expected")
    assert series.recurs(NIGHT + DAY_MS, "down", 1.0) is None


def test_a_pattern_across_midnight_covers_both_sides():
    series = SeriesFeedback(tolerance_ms=0)
    late = ms_from_iso("2026-01-05T23:55:00Z")
    series.act(Feedback("error_rate|all@2026-01-05T23:55:00Z", "false_positive", "2026-01-06T08:00:00Z", "cli"),
               ended_ms=late + 10 * MINUTE, window_ms=MINUTE, direction="up", firing=False)
    assert series.recurs(late + DAY_MS + 2 * MINUTE, "up") is not None
    assert series.recurs(late + DAY_MS + 7 * MINUTE, "up") is not None
    assert series.recurs(late + DAY_MS + 12 * MINUTE, "up") is None


def test_a_long_false_alarm_is_learned_from_its_last_windows_only():
    windows = windows_of(0, 3 * MAX_LEARN_WINDOWS * MINUTE, MINUTE)
    assert len(windows) == MAX_LEARN_WINDOWS and windows[-1] == (3 * MAX_LEARN_WINDOWS - 1) * MINUTE


def test_the_series_state_keeps_a_bounded_memory_and_refuses_damage():
    series = SeriesFeedback()
    for n in range(SeriesFeedback.MAX_ACTED + 5):
        series.act(verdict("confirmed", f"m|all@2026-01-05T{n // 60:02d}:{n % 60:02d}:00Z"), None, MINUTE, "up", False)
    assert len(series.acted) == SeriesFeedback.MAX_ACTED
    with pytest.raises(FeedbackStateError):
        SeriesFeedback.from_bytes(b"blipwatch-series-feedback/1\n{\"acted\": 3}")
    with pytest.raises(FeedbackStateError):
        SeriesFeedback.from_bytes(b"something else")


def gate(book, series, t, value=0.0, expected=100.0, direction="down", rare=True, rule="30%", segment=None):
    from blipwatch.detectors.significance import parse_min_change
    from blipwatch.pipeline.feedback import gate_window

    return gate_window(book, series, "event_volume", segment if segment is not None else {"channel": "app"}, t,
                       t + MINUTE, value, expected, direction, rare, parse_min_change(rule, "count"), "down")


def test_the_gate_puts_a_calendar_first_then_a_learned_pattern_then_min_change():
    from blipwatch.pipeline.feedback import OPEN, Gate

    book, series = FeedbackBook(), SeriesFeedback()
    act(series, "false_positive")
    next_night = NIGHT + DAY_MS + 3 * MINUTE
    assert gate(book, series, next_night) == Gate(f"false_positive: {KEY}", False, "force")
    assert gate(book, series, next_night + 3600_000) == OPEN                      # an hour later: pages
    assert gate(book, series, next_night + 3600_000, value=90.0) == Gate("min_change: 30%", False, "normal")
    assert gate(book, series, next_night + 3600_000, value=90.0, rare=False) == OPEN
    assert gate(book, series, next_night + 3600_000, value=90.0, rule="0") == OPEN
    book.apply_calendar(*record(entry("maintenance", "2026-01-06T01:00:00Z", "2026-01-06T04:00:00Z")))
    for rare in (True, False):   # inside a planned event nothing alerts or is learned, rare or not
        assert gate(book, series, next_night, rare=rare) == Gate("calendar: maintenance", False, "skip")
    assert gate(book, series, next_night, segment={}) == Gate("calendar: maintenance", False, "skip")

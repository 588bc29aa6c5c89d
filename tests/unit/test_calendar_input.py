"""What a user writes for a calendar entry (``calendar add`` options, ``calendar load`` files): read,
or refused in one line."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.stream_app.commands.calendar import CalendarInputError, build_entry, load_file

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
CATALOGUE = Catalogue.from_dict(None)


def entry(**fields):
    return build_entry(fields, CATALOGUE, NOW, by="alice")


def test_an_entry_reads_times_durations_metrics_and_segments_as_a_person_writes_them():
    sale = entry(**{"from": "2026-03-20", "for": "3d", "reason": "Spring sale", "segment": "channel=web",
                    "metrics": "event_volume, average_order_value"})
    assert sale.to_dict() == {
        "id": "spring-sale-20260320t0000z", "from": "2026-03-20T00:00:00Z", "to": "2026-03-23T00:00:00Z",
        "reason": "Spring sale", "metrics": ["event_volume", "average_order_value"], "segment": {"channel": "web"},
        "at": "2026-03-01T09:30:00Z", "by": "alice"}
    maintenance = entry(**{"from": "now", "to": "2026-03-01T12:00+01:00", "reason": "db maintenance",
                           "segment": "all", "id": "db-1"})
    assert (maintenance.start, maintenance.end, maintenance.segment, maintenance.metrics) == \
        ("2026-03-01T09:30:00Z", "2026-03-01T11:00:00Z", {}, None)


@pytest.mark.parametrize("fields, message", [
    ({"to": "1d", "reason": "r"}, "'from' is missing"),
    ({"from": "now", "to": "1d"}, "'reason' is missing"),
    ({"from": "now", "reason": "r"}, "either 'to'"),
    ({"from": "now", "to": "2026-03-02", "for": "1d", "reason": "r"}, "either 'to'"),
    ({"from": "now", "for": "a while", "reason": "r"}, "write a duration"),
    ({"from": "next monday", "to": "1d", "reason": "r"}, "write a time like"),
    ({"from": "2026-03-20", "to": "2026-03-19", "reason": "r"}, "'to' must be after 'from'"),
    ({"from": "2026-03-20", "to": "200d", "reason": "r"}, "more than 92 days"),
    ({"from": "now", "to": "1d", "reason": "r", "metrics": "conversion"}, "not in the catalogue"),
    ({"from": "now", "to": "1d", "reason": "r", "metrics": []}, "a list of metric names"),
    ({"from": "now", "to": "1d", "reason": "r", "segment": "web"}, "dimension=value"),
    ({"from": "now", "to": "1d", "reason": "r", "segment": "region=EU"}, "not one the worker splits by"),
    ({"from": "now", "to": "1d", "reason": "r", "id": "my sale"}, "id must be"),
    ({"from": "now", "to": "1d", "reason": "r", "colour": "red"}, "unknown field 'colour'"),
])
def test_a_wrong_entry_is_one_line_that_names_the_field(fields, message):
    with pytest.raises(CalendarInputError, match=message) as caught:
        entry(**fields)
    assert "\n" not in str(caught.value) and "CalendarEntry" not in str(caught.value)


def test_a_file_is_a_list_or_entries_and_yaml_dates_work_unquoted(tmp_path):
    path = tmp_path / "campaigns.yaml"
    path.write_text("entries:\n"
                    "  - {reason: spring sale, from: 2026-03-20T00:00:00Z, to: 2026-03-23T00:00:00Z,\n"
                    "     segment: {channel: web}}\n"
                    "  - {reason: newsletter, from: 2026-03-25 08:00, for: 6h, metric: event_volume}\n"
                    "  - {reason: black friday, from: 2026-11-27, for: 4d}\n")
    entries = load_file(str(path), CATALOGUE, NOW)
    assert [(e.id, e.start, e.end) for e in entries] == [
        ("spring-sale-20260320t0000z", "2026-03-20T00:00:00Z", "2026-03-23T00:00:00Z"),
        ("newsletter-20260325t0800z", "2026-03-25T08:00:00Z", "2026-03-25T14:00:00Z"),
        ("black-friday-20261127t0000z", "2026-11-27T00:00:00Z", "2026-12-01T00:00:00Z")]
    json_path = tmp_path / "one.json"
    json_path.write_text('[{"reason": "sale", "from": "2026-03-20T00:00:00Z", "to": "2026-03-21T00:00:00Z"}]')
    assert [e.id for e in load_file(str(json_path), CATALOGUE, NOW)] == ["sale-20260320t0000z"]


@pytest.mark.parametrize("text, message", [
    ("", "expected a list of entries"), ("entries: {reason: x}", "expected a list"),
    ("[1]", "entry 1 is not a mapping"),
    ("- {reason: a, from: 2026-03-20, for: 1d}\n- {reason: b, from: 2026-03-20, to: 2026-03-01}", "entry 2: .*after"),
    ("- {reason: a, from: 2026-03-20, for: 1d}\n- {reason: a, from: 2026-03-20, for: 2d}",
     "entries 1 and 2 have the same id"),
    ("- [unclosed", "not valid YAML or JSON"),
])
def test_a_wrong_file_names_the_entry_and_nothing_is_taken_from_it(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalendarInputError, match=message) as caught:
        load_file(str(path), CATALOGUE, NOW)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(CalendarInputError, match="cannot read .*No such file"):
        load_file(str(tmp_path / "nope.yaml"), CATALOGUE, NOW)

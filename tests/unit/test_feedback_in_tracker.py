"""Feedback in one series' tracker: min_change from the catalogue, the policy's may_alert, a verdict
acted on once (and kept across the state codec), suppressed points in the contract, the replay and
evaluate options."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from blipwatch.detectors.policy import AlertPolicy
from blipwatch.detectors.scored import Scored
from blipwatch.pipeline.catalogue import Catalogue, CatalogueError, default_config_dict
from blipwatch.pipeline.feedback import FeedbackBook
from blipwatch.pipeline.tracker import SeriesTracker
from blipwatch.schemas.feedback import CalendarEntry, Feedback
from blipwatch.schemas.outputs import MetricPoint, iso_from_ms, ms_from_iso
from tests.unit.test_feedback_effect import APP, replay

BLIPWATCH = [sys.executable, "-m", "blipwatch.stream_app.cli"]


def catalogue(**metric) -> Catalogue:
    base = {"kind": "count", "count": {"event_types": "*"}, "direction": "down", **metric}
    return Catalogue.from_dict({"segments": {"dimensions": ["channel"]}, "metrics": {"event_volume": base}})


def test_min_change_is_read_from_the_catalogue_with_the_shipped_defaults_and_clear_errors():
    shipped = Catalogue.from_dict(default_config_dict())
    assert str(shipped.by_name["checkout_conversion_rate"].min_change) == "2 points"
    assert str(shipped.by_name["event_volume"].min_change) == "30%"
    assert catalogue(min_change="off").by_name["event_volume"].min_change is None
    assert str(catalogue().by_name["event_volume"].min_change) == "30%"     # the metric's default
    with pytest.raises(CatalogueError, match=r"^metrics\.event_volume: min_change '2 points' is in percentage"):
        catalogue(min_change="2 points")


def point(score: float, direction: str = "down") -> Scored:
    return Scored(40.0, 100.0, 80.0, 120.0, score, direction, score >= 0.6, 0.0, 100.0)


def test_a_gated_point_neither_fires_nor_extends_an_incident_and_counts_towards_resolving():
    policy = AlertPolicy(warmup=0, resolve_after=2, cooldown=0)
    assert policy.update(0, point(0.9), None, may_alert=False) is None and not policy.firing
    assert policy.update(1, point(0.9)).status == "firing"
    assert policy.update(2, point(0.9), None, may_alert=False) is None
    assert policy.update(3, point(0.9), None, may_alert=False).status == "resolved"
    confirm = AlertPolicy(warmup=0, confirm_points=2, confirm_threshold=0.4, cooldown=0)
    confirm.update(0, point(0.5))
    confirm.update(1, point(0.5), None, may_alert=False)        # breaks the run
    assert confirm.update(2, point(0.5)) is None


def run_windows(tracker: SeriesTracker, start: int, values: list[float]) -> list:
    closed = []
    for i, value in enumerate(values):
        window = start + i * 60_000
        tracker.merge(window, value, 0.0)
        closed += tracker.close_until(window + 60_000 + 30_000)
    return closed


def warm(tracker: SeriesTracker, minutes: int = 300) -> int:
    start = ms_from_iso("2026-01-05T00:00:00Z")
    run_windows(tracker, start, [100.0 + (i % 7) for i in range(minutes)])
    return start + minutes * 60_000


def test_a_verdict_resolves_once_and_what_the_series_acted_on_survives_the_state_codec():
    cat = catalogue()
    tracker = SeriesTracker(APP, cat.by_name["event_volume"], cat)
    t = warm(tracker)
    closed = run_windows(tracker, t, [0.0, 0.0, 0.0])
    [fired] = [c.alert for c in closed if c.alert is not None]
    assert fired.status == "firing" and tracker.incident is not None
    assert tracker.record["windows"] and tracker.record["peak_deviation"] == pytest.approx(1.0)
    verdict = Feedback(fired.dedup_key, "false_positive", "2026-01-05T06:00:00Z", "cli", note="known")
    resolved = tracker.act(verdict)
    assert resolved.status == "resolved" and resolved.summary == "Resolved by feedback: false_positive (known)"
    assert tracker.incident is None and not tracker.policy.firing
    restored = SeriesTracker.from_bytes(tracker.to_bytes(), APP, cat.by_name["event_volume"], cat)
    assert restored.act(verdict) is None                          # acted on already: a takeover does nothing
    assert restored.record == tracker.record and restored.feedback.patterns == tracker.feedback.patterns
    assert [p.dedup_key for p in restored.feedback.patterns] == [fired.dedup_key]   # the effect: test_feedback_effect


def test_a_calendar_entry_suppresses_and_skips_learning_for_the_series_it_covers():
    cat = catalogue()
    book = FeedbackBook()
    tracker = SeriesTracker(APP, cat.by_name["event_volume"], cat, book=book)
    t = warm(tracker)
    entry = CalendarEntry("sale", iso_from_ms(t), iso_from_ms(t + 600_000), "sale", segment={"channel": "app"})
    book.apply_calendar(entry.key, entry.to_json())
    learned = tracker.detector.n_learned
    closed = run_windows(tracker, t, [0.0] * 5)
    assert all(c.alert is None and c.point.suppressed == "calendar: sale" for c in closed)
    assert tracker.detector.n_learned == learned


def test_the_suppressed_field_is_in_the_metric_point_contract():
    schema = json.loads(open("blipwatch/schemas/metric_point.schema.json").read())
    document = MetricPoint("a|all", "a", {}, "2026-01-05T00:00:00Z", "2026-01-05T00:01:00Z", 1.0, None, 1.0,
                           2.0, 1.5, 2.5, 0.9, True, "down", "min_change: 30%").to_dict()
    jsonschema.validate(document, schema)
    assert MetricPoint.from_dict(document).suppressed == "min_change: 30%"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "suppressed": 3}, schema)


def test_replay_and_evaluate_take_feedback_files(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("")
    bad = tmp_path / "verdicts.jsonl"
    bad.write_text('{"dedup_key": "x", "verdict": "maybe"}\n')
    done = subprocess.run([*BLIPWATCH, "replay", str(events), "--alerts", str(tmp_path / "a.jsonl"),
                           "--feedback", str(bad), "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("blipwatch replay: ") and "line 1" in done.stderr
    assert "Traceback" not in done.stderr
    _, before = replay(days=4)
    _, after = replay(days=4, verdicts=[Feedback(f"{APP}@2026-01-07T02:00:00Z", "false_positive",
                                                 "2026-01-07T08:00:00Z", "cli")])
    paths = {}
    for name, alerts in (("before", before), ("after", after)):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_bytes(b"".join(a.to_json() + b"\n" for a in alerts))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"start": "2026-01-05T00:00:00Z", "end": "2026-01-09T00:00:00Z", "incidents": []}))
    done = subprocess.run([*BLIPWATCH, "evaluate", "--alerts", str(paths["before"]), "--after", str(paths["after"]),
                           "--labels", str(labels), "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    days = {row["day"]: (row["before"], row["after"]) for row in report["feedback"]["days"]}
    assert days["2026-01-07"][0] >= 1 and days["2026-01-08"] == (days["2026-01-08"][0], 0) and days["2026-01-08"][0] >= 1


def test_the_trackers_written_out_open_gate_is_what_gate_window_says():
    # SeriesTracker._score skips gate_window when there is no calendar and the point is not rare
    from blipwatch.detectors.significance import parse_min_change
    from blipwatch.pipeline.feedback import OPEN, SeriesFeedback, gate_window

    series = SeriesFeedback()
    series.act(Feedback(f"{APP}@2026-01-05T02:00:00Z", "false_positive", "2026-01-05T08:00:00Z", "cli"),
               ended_ms=ms_from_iso("2026-01-05T02:10:00Z"), window_ms=60_000, direction="down", firing=False)
    t = ms_from_iso("2026-01-06T02:03:00Z")
    for value, direction in ((0.0, "down"), (500.0, "up"), (None, None)):
        for rule in (None, parse_min_change("30%", "count")):
            assert gate_window(FeedbackBook(), series, "event_volume", {"channel": "app"}, t, t + 60_000, value,
                               100.0, direction, False, rule, "down") == OPEN

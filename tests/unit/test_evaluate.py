"""blipwatch evaluate: which incidents were caught, how fast, and what fired for nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from blipwatch.stream_app.cli import main
from blipwatch.tools.evaluation import EvaluationError, evaluate


def incident(name="payment_outage", metrics=("payment_failure_rate",), segment=None,
             start="2026-01-06T09:00:00Z", end="2026-01-06T09:40:00Z", **extra) -> dict:
    return {"name": name, "metrics": list(metrics), "segment": segment if segment is not None else {"country": "FR"},
            "direction": "up", "start": start, "end": end, "expect_alert": True, "subtle": False, **extra}


def labels(*incidents, start="2026-01-05T00:00:00Z", end="2026-01-07T00:00:00Z") -> dict:
    return {"scenario": "test", "start": start, "end": end, "incidents": list(incidents)}


def alert(window_start="2026-01-06T09:02:00Z", window_end=None, metric="payment_failure_rate", segment=None,
          dedup_key="k1", status="firing", **extra) -> dict:
    if window_end is None:   # a one-minute window
        window_end = (datetime.fromisoformat(window_start.replace("Z", "+00:00")) + timedelta(minutes=1)
                      ).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"alert_id": f"{dedup_key}-{window_start}-{status}", "dedup_key": dedup_key, "status": status,
            "severity": "warning", "metric": metric, "segment": segment if segment is not None else {"country": "FR"},
            "direction": "up", "window_start": window_start, "window_end": window_end, **extra}


def test_an_alert_on_the_incident_metric_and_segment_detects_it_with_the_delay_to_its_window_end():
    report = evaluate([alert("2026-01-06T09:02:00Z")], labels(incident()))
    [result] = report["incidents"]
    assert result["detected"] and report["detected"] == 1 and report["missed"] == 0
    assert result["delay_seconds"] == 180 and result["delay_windows"] == 3
    assert report["false_alerts"] == 0 and report["median_delay_windows"] == 3


def test_delays_are_counted_in_the_windows_given():
    report = evaluate([alert("2026-01-06T09:00:00Z", "2026-01-06T09:05:00Z")], labels(incident()), window_seconds=300)
    assert report["incidents"][0]["delay_windows"] == 1


def test_a_global_alert_detects_a_local_incident():
    assert evaluate([alert(segment={})], labels(incident()))["detected"] == 1


def test_an_alert_on_a_sub_segment_detects_the_incident():
    report = evaluate([alert(segment={"country": "FR", "channel": "web"})], labels(incident()))
    assert report["detected"] == 1


def test_an_alert_on_one_dimension_of_a_two_dimensional_incident_detects_it():
    local = incident(metrics=["cart_abandonment_rate"], segment={"channel": "web", "country": "DE"})
    for segment in ({"channel": "web"}, {"country": "DE"}):
        assert evaluate([alert(metric="cart_abandonment_rate", segment=segment)], labels(local))["detected"] == 1


def test_an_alert_whose_related_series_name_the_incident_segment_detects_it():
    explained = alert(segment={"channel": "app"},
                      related=[{"metric": "payment_failure_rate", "segment": {"country": "FR"}}])
    assert evaluate([explained], labels(incident()))["detected"] == 1


def test_an_alert_in_a_sibling_segment_is_a_false_alert():
    report = evaluate([alert(segment={"country": "NL"})], labels(incident()))
    assert report["detected"] == 0 and report["missed"] == 1 and report["false_alerts"] == 1


def test_an_alert_on_another_metric_is_a_false_alert():
    report = evaluate([alert(metric="event_volume")], labels(incident()))
    assert report["detected"] == 0 and report["false_alerts"] == 1


def test_an_alert_before_the_onset_does_not_detect_it():
    report = evaluate([alert("2026-01-06T08:50:00Z")], labels(incident()))
    assert report["detected"] == 0 and report["false_alerts"] == 1


def test_an_alert_shortly_after_the_end_counts_and_one_after_the_grace_does_not():
    assert evaluate([alert("2026-01-06T09:41:00Z")], labels(incident()))["detected"] == 1
    late = evaluate([alert("2026-01-06T09:44:00Z")], labels(incident()), grace_windows=3)
    assert late["detected"] == 0 and late["false_alerts"] == 1


def test_one_dedup_key_is_one_alert_however_many_messages_it_has():
    messages = [alert("2026-01-05T12:00:00Z", dedup_key="noise"), alert("2026-01-05T12:05:00Z", dedup_key="noise"),
                alert("2026-01-05T12:09:00Z", dedup_key="noise", status="resolved"),
                alert("2026-01-05T15:00:00Z", dedup_key="other")]
    report = evaluate(messages, labels(incident()))
    assert report["false_alerts"] == 2 and report["alert_episodes"] == 2
    assert report["false_alerts_per_day"] == 1.0            # two false alerts over the labels' two days
    assert [a["window_start"] for a in report["false_alert_list"]] == ["2026-01-05T12:00:00Z", "2026-01-05T15:00:00Z"]


def test_resolved_messages_alone_are_not_alerts():
    report = evaluate([alert(status="resolved")], labels(incident()))
    assert report["detected"] == 0 and report["false_alerts"] == 0


def test_alerts_during_an_incident_that_must_not_alert_are_false_alerts():
    busy = incident("busy_evening", ["event_volume"], {}, "2026-01-06T18:30:00Z", "2026-01-06T21:30:00Z",
                    expect_alert=False)
    report = evaluate([alert("2026-01-06T20:00:00Z", metric="event_volume", segment={})], labels(busy))
    assert report["false_alerts"] == 1 and report["detected"] == 0 and report["missed"] == 0
    assert report["incidents"][0]["false_alerts_during"] == 1


def test_an_alert_in_an_overlapping_segment_is_related_neither_detection_nor_false():
    drop = incident("tracking_drop", ["event_volume"], {"channel": "app"})
    report = evaluate([alert(metric="event_volume", segment={"device": "mobile"})], labels(drop))
    assert report["detected"] == 0 and report["false_alerts"] == 0 and report["related_alerts"] == 1


def test_a_subtle_miss_is_counted_apart_and_the_median_delay_covers_detected_incidents():
    subtle = incident("subtle_conversion_dip", ["checkout_conversion_rate"], {}, "2026-01-06T22:00:00Z",
                      "2026-01-06T23:00:00Z", subtle=True)
    other = incident("search_zero_results", ["search_zero_results_rate"], {}, "2026-01-06T10:30:00Z",
                     "2026-01-06T11:00:00Z")
    report = evaluate([alert("2026-01-06T09:00:00Z"),
                       alert("2026-01-06T10:33:00Z", metric="search_zero_results_rate", segment={}, dedup_key="k2")],
                      labels(incident(), other, subtle))
    assert (report["detected"], report["missed"], report["missed_subtle"]) == (2, 1, 1)
    assert report["median_delay_windows"] == 2.5


def test_without_a_run_span_in_the_labels_the_alerts_span_is_the_duration():
    messages = [alert("2026-01-05T00:00:00Z", dedup_key="a"), alert("2026-01-05T11:59:00Z", dedup_key="b")]
    report = evaluate(messages, [incident()])
    assert report["days"] == 0.5 and report["false_alerts_per_day"] == 4.0


def test_epoch_millisecond_windows_are_read_too():
    report = evaluate([alert(window_start=1767690120000, window_end=1767690180000)], labels(incident()))
    assert report["detected"] == 1 and report["incidents"][0]["delay_seconds"] == 180


@pytest.mark.parametrize("bad, message", [
    ({"status": "open"}, "status must be"),
    ({"window_start": "soon"}, "not an RFC 3339 time"),
    ({"segment": "web"}, "'segment' must be an object"),
])
def test_malformed_alerts_are_refused_with_the_reason(bad, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate([{**alert(), **bad}], labels(incident()))


def test_the_command_prints_a_report_and_exits_0_even_when_it_missed_everything(tmp_path, capsys):
    alerts_path, labels_path = tmp_path / "alerts.jsonl", tmp_path / "labels.json"
    alerts_path.write_text(json.dumps(alert(segment={"country": "NL"})) + "\n\n")
    labels_path.write_text(json.dumps(labels(incident())))
    assert main(["evaluate", "--alerts", str(alerts_path), "--labels", str(labels_path)]) == 0
    out = capsys.readouterr().out
    assert "payment_outage" in out and "MISSED" in out and "false alerts: 1 (0.5 per simulated day)" in out
    assert main(["evaluate", "--alerts", str(alerts_path), "--labels", str(labels_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"incidents", "detected", "missed", "median_delay_windows", "false_alerts",
            "false_alerts_per_day"} <= report.keys()
    assert report["missed"] == 1 and report["false_alerts"] == 1


def test_the_command_refuses_unreadable_input_with_one_line_and_exit_2(tmp_path, capsys):
    alerts_path, labels_path = tmp_path / "alerts.jsonl", tmp_path / "labels.json"
    alerts_path.write_text(json.dumps(alert()) + "\n{not json\n")
    labels_path.write_text(json.dumps(labels(incident())))
    assert main(["evaluate", "--alerts", str(alerts_path), "--labels", str(labels_path)]) == 2
    assert main(["evaluate", "--alerts", str(tmp_path / "missing"), "--labels", str(labels_path)]) == 2
    labels_path.write_text('{"incidents": [{"name": "x"}]}')
    alerts_path.write_text("")
    assert main(["evaluate", "--alerts", str(alerts_path), "--labels", str(labels_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "line 2: not JSON" in err[0] and "No such file" in err[1] and "missing 'metrics'" in err[2]


DEEP = '{"a":' * 5000 + "1" + "}" * 5000


@pytest.mark.parametrize("alert_line, labels_text, extra, message", [
    (json.dumps(alert(score=float("nan"))), None, [], "NaN is not a number"),
    (json.dumps(alert()).replace('"2026-01-06T09:02:00Z"', "NaN"), None, [], "NaN is not a number"),
    (json.dumps(alert()).replace('"2026-01-06T09:02:00Z"', "1e400"), None, [], "1e400 is out of range"),
    (json.dumps(alert()).replace('"2026-01-06T09:02:00Z"', "1e30"), None, [], "out of range for epoch"),
    (json.dumps(alert()).replace('"k1"', DEEP, 1), None, [], "nested too deep"),
    (json.dumps(alert(segment={"country": {"a": [[[1]]]}})), None, [], "segment values must be strings"),
    (json.dumps(alert()), '{"incidents": [' + DEEP + "]}", [], "nested too deep"),
    (json.dumps(alert()), None, ["--grace-windows", "nan"], "--grace-windows nan"),
    (json.dumps(alert()), None, ["--grace-windows", "-100"], "--grace-windows -100"),
    (json.dumps(alert()), None, ["--window-seconds", "inf"], "--window-seconds inf"),
])
def test_hostile_numbers_nesting_and_arguments_are_one_clear_line(tmp_path, capsys, alert_line, labels_text,
                                                                  extra, message):
    alerts_path, labels_path = tmp_path / "alerts.jsonl", tmp_path / "labels.json"
    alerts_path.write_text(alert_line + "\n")
    labels_path.write_text(labels_text or json.dumps(labels(incident())))
    assert main(["evaluate", "--alerts", str(alerts_path), "--labels", str(labels_path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err


def test_a_metric_that_shows_the_incident_later_matches_up_to_its_lag_after_the_end():
    conversion = incident(name="conversion_down", metrics=["cart_abandonment_rate", "checkout_conversion_rate"])
    late_abandonment = alert("2026-01-06T10:00:00Z", metric="cart_abandonment_rate")   # 20 min after the end
    late_conversion = alert("2026-01-06T10:00:00Z", metric="checkout_conversion_rate", dedup_key="k2")
    plain = evaluate([late_abandonment, late_conversion], labels(conversion))
    assert plain["false_alerts"] == 2
    lagged = evaluate([late_abandonment, late_conversion],
                      labels({**conversion, "lags": {"cart_abandonment_rate": 1800}}))
    # the abandonment alert is the incident (carts flagged abandoned half an hour later); the
    # conversion alert, on a metric without a lag, is still false
    assert lagged["false_alerts"] == 1 and lagged["false_alert_list"][0]["metric"] == "checkout_conversion_rate"
    with pytest.raises(EvaluationError, match="lags"):
        evaluate([], labels({**conversion, "lags": {"cart_abandonment_rate": "half an hour"}}))


def test_a_metric_that_shows_the_incident_earlier_matches_from_its_lead_before_the_start():
    """A funnel counts a journey in the window it started: a checkout begun two minutes before a
    payment outage and never paid is counted before the outage starts."""
    outage = incident(metrics=["payment_failure_rate", "checkout_conversion_rate"])
    early_conversion = alert("2026-01-06T08:58:00Z", metric="checkout_conversion_rate")     # 2 min before
    early_payment = alert("2026-01-06T08:58:00Z", metric="payment_failure_rate", dedup_key="k2")
    too_early = alert("2026-01-06T08:50:00Z", metric="checkout_conversion_rate", dedup_key="k3")
    led = evaluate([early_conversion, early_payment, too_early],
                   labels({**outage, "leads": {"checkout_conversion_rate": 180}}))
    assert sorted(a["dedup_key"] for a in led["false_alert_list"]) == ["k2", "k3"]
    assert led["incidents"][0]["detected"] and led["incidents"][0]["delay_windows"] == 0
    assert evaluate([early_conversion], labels(outage))["false_alerts"] == 1
    with pytest.raises(EvaluationError, match="leads"):
        evaluate([], labels({**outage, "leads": {"checkout_conversion_rate": -1}}))

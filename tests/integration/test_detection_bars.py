"""Issue 5's bars on the simulator, offline, with default settings, through the real
``blipwatch simulate`` / ``replay`` / ``evaluate`` commands: 36 h of the ``all`` scenario (the
first day normal; tracking_drop, payment_outage and search_zero_results fall inside it, later
incidents are left out by the simulator). About 25 s on 2 cores.

Three tests: what the defaults achieve today, asserted as a guard against regressions (every
incident in the window detected, median delay <= 3 windows — measured 3), the issue's false-alert
bar (<= 1 per simulated day — measured 0.67: one on the first day, none on the second), and its
median-delay bar (<= 2 windows), marked xfail(strict): when a detector change meets it, that test
XPASSes, fails as strict, and the marker must be removed.

Until counts waited for their daily profile before adding up runs of windows (2026-11-30) the
false alerts were 2.0 a day here, all event_volume on the first day; over 3 seeds x 48 h
(`tests/benchmarks/scenario_eval.py`) they fell from 13 to 3. The median was 1 window until
counts learned their level slower once the daily profile knows the time of day (same day): the
tracking drop on channel=app now fires on its 3rd window, not its 1st (its band is ~10 % wider),
while the complaint surge is caught on every seed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "scenario_eval", Path(__file__).resolve().parents[1] / "benchmarks" / "scenario_eval.py")
scenario_eval = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenario_eval)


@pytest.fixture(scope="module")
def report_36h(tmp_path_factory):
    return scenario_eval.run_one(tmp_path_factory.mktemp("bars"), "all", seed=0, rate=60.0, hours=36.0)


@pytest.mark.timeout(200)
def test_default_settings_detect_every_incident_quickly_on_36_hours_of_the_all_scenario(report_36h):
    missed = [i["name"] for i in report_36h["incidents"]
              if i["expect_alert"] and not i["detected"] and not i["subtle"]]
    assert missed == []
    assert report_36h["median_delay_windows"] is not None and report_36h["median_delay_windows"] <= 3
    busy = [i for i in report_36h["incidents"] if not i["expect_alert"]]
    assert all(i["false_alerts_during"] == 0 for i in busy)


@pytest.mark.timeout(200)
def test_default_settings_meet_the_false_alert_bar_of_one_per_day(report_36h):
    assert report_36h["false_alerts_per_day"] <= 1.0


@pytest.mark.timeout(200)
@pytest.mark.xfail(strict=True, reason="the tracking drop takes 3 windows (a quasi-Poisson band of "
                                       "clustered events); the issue's bar is a median of 2")
def test_default_settings_meet_the_median_delay_bar_of_two_windows(report_36h):
    assert report_36h["median_delay_windows"] <= 2

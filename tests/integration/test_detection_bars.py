"""Issue 5's bars on the simulator, offline, with default settings, through the real
``blipwatch simulate`` / ``replay`` / ``evaluate`` commands: 36 h of the ``all`` scenario (the
first day normal; tracking_drop, payment_outage and search_zero_results fall inside it, later
incidents are left out by the simulator). About 25 s on 2 cores.

Marked xfail(strict) while the defaults miss the bars (see the tuning report): when a detector
change meets them, this test XPASSes, fails as strict, and the marker must be removed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "scenario_eval", Path(__file__).resolve().parents[1] / "benchmarks" / "scenario_eval.py")
scenario_eval = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenario_eval)


@pytest.mark.timeout(150)
@pytest.mark.xfail(strict=True, reason="defaults miss payment_outage (country=FR) and raise "
                                       "~2.7 false alerts/day here; issue 5 bars not met yet")
def test_default_settings_meet_the_detection_bars_on_36_hours_of_the_all_scenario(tmp_path):
    report = scenario_eval.run_one(tmp_path, "all", seed=0, rate=60.0, hours=36.0)
    missed = [i["name"] for i in report["incidents"]
              if i["expect_alert"] and not i["detected"] and not i["subtle"]]
    assert missed == []
    assert report["median_delay_windows"] is not None and report["median_delay_windows"] <= 2
    assert report["false_alerts_per_day"] <= 1.0
    busy = [i for i in report["incidents"] if not i["expect_alert"]]
    assert all(i["false_alerts_during"] == 0 for i in busy)

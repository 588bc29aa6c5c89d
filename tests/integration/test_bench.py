"""`blipwatch bench --json` runs end to end on the embedded broker and reports sane figures.

No timing thresholds: the machine is shared; the figures themselves go to docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.soak]  # a whole bench run

KEYS = ("bare_events_per_s", "worker_events_per_s", "ratio", "worker_peak_rss_bytes",
        "state_bytes_per_series", "alert_latency_p50_s", "alert_latency_p99_s")


def test_bench_json_reports_every_figure_from_one_run():
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLIPWATCH_")}
    done = subprocess.run([sys.executable, "-m", "blipwatch.stream_app.cli", "bench", "--events", "60000",
                           "--series", "300", "--live-seconds", "20", "--live-speed", "60,10", "--json"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert key in figures, key
    assert figures["bare_events_per_s"] > 0
    assert figures["worker_events_per_s"] > 0
    assert figures["ratio"] > 0
    assert figures["worker_peak_rss_bytes"] > 10 * 2**20
    assert 0 < figures["state_bytes_per_series"] < 100_000
    assert figures["alerts"] > 0, "the workload has an incident: the run must publish alerts"
    assert 0 <= figures["alert_latency_p50_s"] <= figures["alert_latency_p99_s"]
    assert figures["alert_latency_measured"] == "live"
    assert figures["live_records"] > 100, "20 s at 60x: ~18 closed windows of every series"
    # the live phase tracks the series asked for (it tracked the demo's own ~170 before), at each speed
    assert [run["speed"] for run in figures["live_runs"]] == [60.0, 10.0]
    for run in figures["live_runs"]:
        assert run["series_tracked"] == run["series_expected"], run
        assert abs(run["series_tracked"] - 300) <= 15, run
        assert run["windows_closed_per_s"] == pytest.approx(run["series_expected"] * run["speed"] / 60, rel=0.01)
        assert run["records"] >= run["records_expected"] > 0, "every point the events' watermark closes came out"
        assert 0 <= run["p50_s"] <= run["p99_s"] <= run["max_s"]
    assert figures["live_series_tracked"] == figures["live_runs"][0]["series_tracked"]
    assert figures["alert_latency_p99_s"] == figures["live_runs"][0]["p99_s"]
    assert 0 <= figures["backlog_alert_latency_p50_s"] <= figures["backlog_alert_latency_p99_s"]
    assert figures["series_tracked"] == figures["series_expected"] >= 300
    assert figures["events_late"] == 0 and figures["events_invalid"] == 0
    assert figures["windows_scored"] > 0
    # no --shop-rate: the events span one hour of event time
    assert figures["shop_events_per_s"] == pytest.approx(60_000 / 3600, rel=0.01)
    assert 0 < figures["windows_per_event"] < 0.5

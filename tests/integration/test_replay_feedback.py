"""`blipwatch replay` honours feedback and calendars, through the real commands (no Kafka): the
simulator's search-index incident fires without them; a verdict `expected` given five minutes in
resolves it then and it stays quiet while it lasts; a planned event over it pages nothing and its
points say why. `blipwatch evaluate --after` compares the runs per day."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import BLIPWATCH
from tests.integration.test_dashboards_prometheus import SCENARIO

pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.timeout(600)]  # whole scenarios replayed
OVERALL = "search_zero_results_rate|all@"


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_replay_with_a_verdict_and_with_a_calendar(tmp_path):
    events, labels, config = tmp_path / "events.jsonl", tmp_path / "labels.json", tmp_path / "config.yaml"
    config.write_text("policy:\n  warmup: 30\n")
    subprocess.run([*BLIPWATCH, "simulate", *SCENARIO, "--out", str(events), "--labels", str(labels), "--quiet"],
                   check=True, timeout=300)
    verdicts, calendar = tmp_path / "verdicts.jsonl", tmp_path / "calendar.yaml"
    verdicts.write_text(json.dumps({"dedup_key": OVERALL + "2026-01-05T18:00:00Z", "verdict": "expected",
                                    "at": "2026-01-05T18:05:00Z", "source": "cli", "note": "reindex"}) + "\n")
    calendar.write_text("entries:\n  - {reason: search reindex, from: 2026-01-05T17:55:00Z, to: 2026-01-05T18:50:00Z,"
                        " metrics: [search_zero_results_rate], segment: all}\n")
    runs = {"plain": [], "verdict": ["--feedback", str(verdicts)], "calendar": ["--calendar", str(calendar)]}
    for name, options in runs.items():
        subprocess.run([*BLIPWATCH, "replay", str(events), "--config", str(config), "--alerts",
                        str(tmp_path / f"{name}.alerts"), "--points", str(tmp_path / f"{name}.points"), "--quiet",
                        *options], check=True, timeout=300)
    overall = {name: [a for a in lines(tmp_path / f"{name}.alerts") if a["dedup_key"].startswith(OVERALL)
                      and "#cause@" not in a["alert_id"]]   # the update naming a narrower cause is not the verdict's
               for name in runs}
    assert overall["plain"][0]["dedup_key"] == OVERALL + "2026-01-05T18:00:00Z"
    assert not overall["plain"][-1]["summary"].startswith("Resolved by feedback")
    # the verdict: resolved at 18:05-18:07, nothing more on that series
    assert [(a["status"], a["summary"].split(":")[0]) for a in overall["verdict"]] == \
        [("firing", overall["plain"][0]["summary"].split(":")[0]), ("resolved", "Resolved by feedback")]
    assert overall["verdict"][1]["window_end"] <= "2026-01-05T18:08:00Z"
    held = [p for p in lines(tmp_path / "verdict.points") if p["series"] == "search_zero_results_rate|all"
            and p["suppressed"]]
    said = [p["suppressed"] for p in held]
    assert said.count("expected: " + OVERALL + "2026-01-05T18:00:00Z") >= 20, said   # the incident, held
    assert {text.split(":")[0] for text in said} <= {"expected", "min_change"}          # and, as it fades, small
    # the calendar: no alert on the overall series, its points inside say why
    assert overall["calendar"] == []
    inside = [p for p in lines(tmp_path / "calendar.points") if p["series"] == "search_zero_results_rate|all"
              and "2026-01-05T17:55" <= p["window_start"] < "2026-01-05T18:50"]
    assert len(inside) == 55 and {p["suppressed"] for p in inside} == {"calendar: search reindex"}
    done = subprocess.run([*BLIPWATCH, "evaluate", "--alerts", str(tmp_path / "plain.alerts"), "--after",
                           str(tmp_path / "calendar.alerts"), "--labels", str(labels)],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "alerts per day (incidents paged), without and with feedback:" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("2026-01-05"))
    before, after = map(int, row.split()[1:])
    assert after == before - 1, done.stdout     # the overall series' incident, and only it
    print(done.stdout)

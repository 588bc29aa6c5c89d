"""Detection quality on the simulator's scenarios with default settings (the simulator's bars).

    .venv/bin/python tests/benchmarks/scenario_eval.py [--seeds 0 1 2] [--rates 480 60]
        [--scenario all] [--hours 48] [--workdir DIR]

For every seed x sessions-per-minute: ``blipwatch simulate`` -> ``blipwatch replay`` ->
``blipwatch evaluate --json`` (the real commands, as a user runs them), then one line per run
and a summary table. Bars: every non-subtle incident detected, median delay <= 2 windows,
<= 1 false alert per simulated day across all series (busy_evening quiet).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from blipwatch.tools.bench import measured

BLIPWATCH = [sys.executable, "-m", "blipwatch.stream_app.cli"]


def run_one(workdir: Path, scenario: str, seed: int, rate: float, hours: float | None) -> dict:
    """Simulate, replay and evaluate one run; the evaluation report (``evaluate --json``).

    ``simulate --out -`` is piped into ``replay -``: the two run side by side (one core each) and
    no multi-gigabyte events file is written."""
    stem = workdir / f"{scenario}-s{seed}-r{rate:g}"
    labels, alerts = (stem.with_suffix(s) for s in (".labels.json", ".alerts.jsonl"))
    simulate = [*BLIPWATCH, "simulate", "--scenario", scenario, "--seed", str(seed),
                "--sessions-per-minute", str(rate), "--out", "-", "--labels", str(labels), "--quiet"]
    if hours is not None:
        simulate += ["--hours", str(hours)]
    with subprocess.Popen(simulate, stdout=subprocess.PIPE) as producer:
        replayed = subprocess.run([*BLIPWATCH, "replay", "-", "--alerts", str(alerts), "--quiet"],
                                  stdin=producer.stdout, stdout=subprocess.DEVNULL)
        producer.stdout.close()
    if producer.returncode or replayed.returncode:
        raise RuntimeError(f"simulate exited {producer.returncode}, replay {replayed.returncode}")
    return json.loads(measured([*BLIPWATCH, "evaluate", "--alerts", str(alerts), "--labels", str(labels), "--json"],
                               "blipwatch evaluate"))


def meets_bars(report: dict) -> bool:
    missed = [i for i in report["incidents"] if i["expect_alert"] and not i["detected"] and not i["subtle"]]
    median = report["median_delay_windows"]
    return not missed and median is not None and median <= 2 and (report["false_alerts_per_day"] or 0) <= 1


def describe(report: dict) -> str:
    expected = [i for i in report["incidents"] if i["expect_alert"]]
    missed = [i["name"] + ("(subtle)" if i["subtle"] else "") for i in expected if not i["detected"]]
    median = report["median_delay_windows"]
    return (f"detected {report['detected']}/{len(expected)}"
            f" missed [{', '.join(missed)}] median delay {median if median is not None else '-'} windows,"
            f" false alerts {report['false_alerts']} ({report['false_alerts_per_day']}/day)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[480.0],
                        help="sessions per minute (default 480, the simulator's default shop)")
    parser.add_argument("--scenario", default="all")
    parser.add_argument("--hours", type=float, default=None, help="hours of event time (default: the scenario's)")
    parser.add_argument("--workdir", default=None, help="keep labels and alerts here (default: a temporary folder)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="scenario-eval-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for rate in args.rates:
        for seed in args.seeds:
            report = run_one(workdir, args.scenario, seed, rate, args.hours)
            ok = meets_bars(report)
            print(f"seed {seed} rate {rate:g}: {describe(report)} -> {'meets the bars' if ok else 'FAILS the bars'}",
                  flush=True)
            rows.append((seed, rate, report, ok))
    print()
    print(f"{'seed':>4} {'rate':>5} {'detected':>9} {'median':>7} {'false/day':>10} bars")
    for seed, rate, report, ok in rows:
        expected = sum(1 for i in report["incidents"] if i["expect_alert"])
        median = report["median_delay_windows"]
        print(f"{seed:>4} {rate:>5g} {report['detected']:>4}/{expected:<4} {median if median is not None else '-':>7}"
              f" {report['false_alerts_per_day']:>10} {'ok' if ok else 'FAIL'}")
    print(f"alerts and labels in {workdir}")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run the default "value" detector over the NAB subset and score it with NAB's scorer.

    .venv/bin/python tests/benchmarks/nab_run.py [--data /work/shared/nab] [--results DIR]

Same defaults on every file (no per-file tuning); each row is scored before it is learned.
Writes DIR/<category>/<file>.csv with timestamp,value,score, then runs nab_score.py.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from blipwatch.detectors import make_detector


def score_file(source: Path, target: Path) -> None:
    detector = make_detector("value")
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open(newline="") as f_in, target.open("w", newline="") as f_out:
        writer = csv.writer(f_out)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for row in csv.DictReader(f_in):
            t = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=timezone.utc).timestamp()
            value = float(row["value"])
            scored = detector.score_one(t, value)
            detector.learn_one(t, value)
            writer.writerow([row["timestamp"], row["value"], f"{scored.score:.6f}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/nab")
    parser.add_argument("--results", default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--per-file", action="store_true")
    args = parser.parse_args()
    data = Path(args.data)
    results = Path(args.results or tempfile.mkdtemp(prefix="nab-results-"))
    for source in sorted((data / "data").glob("*/*.csv")):
        score_file(source, results / source.parent.name / source.name)
    print(f"results in {results}", flush=True)
    command = [sys.executable, str(data / "nab_score.py"), "--data", str(data), "--results", str(results)]
    if args.per_file:
        command.append("--per-file")
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())

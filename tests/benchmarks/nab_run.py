"""Run the default "value" detector over a NAB corpus and score it with a NAB scorer.

    .venv/bin/python tests/benchmarks/nab_run.py --data NAB [--scorer NAB/nab_score.py] [--results DIR]
        [--per-file] [--by-category]

NAB is a folder laid out as numenta/NAB: data/<category>/<file>.csv, labels/combined_windows.json,
config/profiles.json (the whole corpus: 58 files; docs/detectors.md says how to build it from the
public repository). The scorer is a script taking ``--data NAB --results DIR`` (default
NAB/nab_score.py). Same defaults on every file (no per-file tuning); each row is scored before it
is learned. Writes DIR/<category>/<file>.csv with timestamp,value,score, then runs the scorer.
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
    parser.add_argument("--data", required=True, help="NAB folder (data/, labels/, config/)")
    parser.add_argument("--scorer", default=None, help="NAB scoring script (default: DATA/nab_score.py)")
    parser.add_argument("--results", default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--per-file", action="store_true")
    parser.add_argument("--by-category", action="store_true", help="also score each category on its own")
    args = parser.parse_args()
    data = Path(args.data)
    results = Path(args.results or tempfile.mkdtemp(prefix="nab-results-"))
    scorer = Path(args.scorer) if args.scorer else data / "nab_score.py"
    sources = sorted((data / "data").glob("*/*.csv"))
    if not sources or not scorer.is_file():
        print(f"nab_run: {data} has no data/<category>/*.csv or no scorer {scorer}", file=sys.stderr)
        return 2
    for number, source in enumerate(sources, 1):
        print(f"[{number}/{len(sources)}] {source.parent.name}/{source.name}", file=sys.stderr, flush=True)
        score_file(source, results / source.parent.name / source.name)
    print(f"{len(sources)} files, results in {results}", flush=True)
    command = [sys.executable, str(scorer), "--data", str(data), "--results", str(results)]
    if args.per_file:
        command.append("--per-file")
    if args.by_category:
        command.append("--by-category")
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())

"""Our "value" detector against River models on the NAB corpus, scored by NAB's scorer.

    .venv/bin/python tests/benchmarks/nab_run.py NAB_FOLDER [--detector NAME=YAML ...] [--results DIR] [--per-file] [--by-category]
        [--scorer NAB/nab_score.py]

NAB_FOLDER is laid out as numenta/NAB: data/<category>/<file>.csv, labels/combined_windows.json,
config/profiles.json (the whole corpus: 58 files; docs/detectors.md says how to build it from the
public repository); the scorer takes ``--data NAB --results DIR...`` (default NAB_FOLDER/nab_score.py). Every detector
runs through the same code as a metric series: ``make_detector("value", settings)``, each row
judged (``judge_one``) before it is learned, the same defaults on every file (no per-file
tuning), River models' raw scores calibrated to our rarity scale. Without ``--detector``:
ours, ``preprocessing.MinMaxScaler | anomaly.HalfSpaceTrees`` and ``time_series.SNARIMAX``.
Writes DIR/<detector>/<category>/<file>.csv (timestamp,value,anomaly_score), then runs
nab_score.py over all of them (one corpus-wide threshold per detector and profile).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from blipwatch.detectors import make_detector

DEFAULT_DETECTORS = {
    "blipwatch-value": None,
    "river-hst": {"model": "preprocessing.MinMaxScaler | anomaly.HalfSpaceTrees", "params": {"seed": 1}},
    "river-snarimax": {"model": "time_series.SNARIMAX", "params": {"p": 2, "d": 1, "q": 1}},
}


def score_file(source: Path, target: Path, settings: dict | None) -> int:
    detector = make_detector("value", settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with source.open(newline="") as f_in, target.open("w", newline="") as f_out:
        writer = csv.writer(f_out)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for row in csv.DictReader(f_in):
            t = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=timezone.utc).timestamp()
            x = {"t": t, "value": float(row["value"])}
            scored = detector.judge_one(x)
            detector.learn_one(x)
            writer.writerow([row["timestamp"], row["value"], f"{scored.score:.6f}"])
            rows += 1
    return rows


def parse_detector(text: str) -> tuple[str, dict | None]:
    name, _, spec = text.partition("=")
    settings = yaml.safe_load(spec) if spec else None
    if not name or not (settings is None or isinstance(settings, dict)):
        raise SystemExit(f"--detector {text!r}: write NAME=YAML, e.g. hst={{model: anomaly.HalfSpaceTrees}}")
    return name, settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nab", help="the NAB folder (data/, labels/, config/, nab_score.py)")
    parser.add_argument("--detector", action="append", default=[], metavar="NAME=YAML",
                        help="a detector's settings, e.g. 'hw={model: time_series.HoltWinters, params: "
                             "{alpha: 0.3, beta: 0.1, gamma: 0.5, seasonality: 288}}' (NAME alone: ours)")
    parser.add_argument("--scorer", default=None, help="NAB scoring script (default: NAB/nab_score.py)")
    parser.add_argument("--results", default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--per-file", action="store_true")
    parser.add_argument("--by-category", action="store_true", help="also score each category on its own")
    args = parser.parse_args()
    data = Path(args.nab)
    detectors = dict(parse_detector(d) for d in args.detector) if args.detector else DEFAULT_DETECTORS
    results = Path(args.results or tempfile.mkdtemp(prefix="nab-results-"))
    scorer = Path(args.scorer) if args.scorer else data / "nab_score.py"
    sources = sorted((data / "data").glob("*/*.csv"))
    if not sources or not scorer.is_file():
        print(f"nab_run: {data} has no data/<category>/*.csv or no scorer {scorer}", file=sys.stderr)
        return 2
    for name, settings in detectors.items():
        started, rows = time.process_time(), 0
        for number, source in enumerate(sources, 1):
            print(f"[{name} {number}/{len(sources)}] {source.parent.name}/{source.name}", file=sys.stderr, flush=True)
            rows += score_file(source, results / name / source.parent.name / source.name, settings)
        print(f"{name}: {rows} rows, {(time.process_time() - started) / rows * 1e6:.1f} us/row", flush=True)
    command = [sys.executable, str(scorer), "--data", str(data), "--results",
               *[str(results / name) for name in detectors]]
    if args.per_file:
        command.append("--per-file")
    if args.by_category:
        command.append("--by-category")
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())

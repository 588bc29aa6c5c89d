"""Our detectors against River models on the simulator, through the whole pipeline.

    .venv/bin/python tests/benchmarks/river_models_sim.py [--seed 0] [--rate 120] [--hours 48] [--workdir DIR]

``blipwatch simulate`` once (scenario ``all``: 9 labelled incidents), then for each detector a
config that gives every metric of the shipped catalogue that detector, ``blipwatch replay
--config`` and ``blipwatch evaluate --json`` (the real commands). The River models' raw scores
are calibrated to our rarity scale, so the shipped alert policy (threshold 0.6) applies unchanged.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from blipwatch.pipeline.catalogue import default_config_dict
from blipwatch.tools.bench import measured

BLIPWATCH = [sys.executable, "-m", "blipwatch.stream_app.cli"]
DETECTORS = {
    "blipwatch (shipped)": None,
    "river HalfSpaceTrees": {"model": "preprocessing.MinMaxScaler | anomaly.HalfSpaceTrees", "params": {"seed": 1}},
    "river SNARIMAX": {"model": "time_series.SNARIMAX", "params": {"p": 2, "d": 1, "q": 1}},
}


def config_for(settings: dict | None) -> dict:
    document = copy.deepcopy(default_config_dict())
    if settings is not None:
        document.pop("detector", None)
        for metric in document["metrics"].values():
            metric["detector"] = dict(settings)
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=120.0, help="sessions per minute")
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="river-models-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    events, labels = workdir / "events.jsonl", workdir / "labels.json"
    subprocess.run([*BLIPWATCH, "simulate", "--scenario", "all", "--seed", str(args.seed), "--hours", str(args.hours),
                    "--sessions-per-minute", str(args.rate), "--out", str(events), "--labels", str(labels),
                    "--quiet"], check=True)
    rows = []
    for index, (name, settings) in enumerate(DETECTORS.items()):
        config, alerts = workdir / f"config{index}.yaml", workdir / f"alerts{index}.jsonl"
        config.write_text(yaml.safe_dump(config_for(settings)))
        started = time.monotonic()
        subprocess.run([*BLIPWATCH, "replay", str(events), "--config", str(config), "--alerts", str(alerts),
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)
        seconds = time.monotonic() - started
        report = json.loads(measured([*BLIPWATCH, "evaluate", "--alerts", str(alerts), "--labels", str(labels),
                                      "--json"], "blipwatch evaluate"))
        expected = sum(1 for i in report["incidents"] if i["expect_alert"])
        rows.append((name, f"{report['detected']}/{expected}", report["median_delay_windows"],
                     report["false_alerts_per_day"], f"{seconds:.0f}"))
        print(*rows[-1], sep="  ", flush=True)
    print()
    print("| detector | incidents detected | median delay (windows) | false alerts / day | replay (s) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join("-" if v is None else str(v) for v in row) + " |")
    print(f"\nevents, labels, configs and alerts in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

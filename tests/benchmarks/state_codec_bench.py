"""Cost of a series' detector state: encode and decode microseconds and bytes per series.

    .venv/bin/python tests/benchmarks/state_codec_bench.py [--repeat 7]

What the worker pays per closed series (``SeriesTracker.to_bytes``, by the StateWriter) and per
series taken over (``SeriesTracker.from_bytes``), over trackers of every metric of the default
catalogue warmed for 3 hours, 1 day and 7 days of one-minute windows (daily-shaped traffic).
It only uses ``SeriesTracker``, so it also runs against an older tree for a before/after in one
session (run it from outside the repository, or ``python -m`` puts the cwd first on sys.path):

    git archive main blipwatch | tar -x -C /tmp/codec-base
    cd /tmp && PYTHONPATH=/tmp/codec-base python /work/wt-codec/tests/benchmarks/state_codec_bench.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import blipwatch
from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
from blipwatch.pipeline.tracker import SeriesTracker

CATALOGUE = Catalogue.from_dict(default_config_dict())
START = 1767225600000
WARM = {"3h": 180, "1d": 1440, "7d": 7 * 1440}


def warmed(metric, n: int, seed: int) -> SeriesTracker:
    rng = np.random.default_rng(seed)
    tracker = SeriesTracker(f"{metric.name}|all", metric, CATALOGUE)
    step = CATALOGUE.window_ms
    for i in range(n):
        daily = 1.0 + 0.8 * math.sin(2 * math.pi * i / 1440)
        if metric.kind == "rate":
            den = int(rng.poisson(60 * daily)) + 1
            num = float(rng.binomial(den, 0.3))
        elif metric.kind == "count":
            num, den = float(rng.poisson(200 * daily)), 0
        else:
            den = int(rng.poisson(20 * daily)) + 1
            num = float(rng.normal(50, 5, den).sum())
        start = START + i * step
        tracker.merge(start, num, float(den))
        tracker.close_until(start + step + CATALOGUE.lateness_ms)
    return tracker


def per_series_us(fn, items, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        begin = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - begin)
    return best / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="best of this many passes (default 7)")
    args = parser.parse_args()
    print(f"blipwatch from {blipwatch.__file__}")
    print(f"{'metric kind':12} {'warmed':>6} {'series':>6} {'encode us':>10} {'decode us':>10} {'bytes':>7}")
    overall = {"enc": [], "dec": [], "bytes": []}
    for label, n in WARM.items():
        trackers = [warmed(metric, n, seed) for seed, metric in enumerate(CATALOGUE.metrics)]
        blobs = [t.to_bytes() for t in trackers]
        for t, blob in zip(trackers, blobs):
            again = SeriesTracker.from_bytes(blob, t.series, t.metric, CATALOGUE)
            assert not again.rewarmed and again.to_bytes() == blob, t.series
        for kind in ("rate", "count", "mean"):
            group = [(t, b) for t, b in zip(trackers, blobs) if t.metric.kind == kind]
            enc = per_series_us(lambda tb: tb[0].to_bytes(), group, args.repeat)
            dec = per_series_us(lambda tb: SeriesTracker.from_bytes(tb[1], tb[0].series, tb[0].metric, CATALOGUE),
                                group, args.repeat)
            size = statistics.mean(len(b) for _, b in group)
            print(f"{kind:12} {label:>6} {len(group):6d} {enc:10.1f} {dec:10.1f} {size:7.0f}")
            overall["enc"] += [enc] * len(group)
            overall["dec"] += [dec] * len(group)
            overall["bytes"] += [len(b) for _, b in group]
    print(f"{'all (mix of the default catalogue)':35} {statistics.mean(overall['enc']):10.1f} "
          f"{statistics.mean(overall['dec']):10.1f} {statistics.mean(overall['bytes']):7.0f}")


if __name__ == "__main__":
    main()

"""Per-kind cost of the detectors: microseconds per point (score + learn) and state bytes.

    .venv/bin/python tests/benchmarks/detectors_bench.py [--points 20000]

Targets: <= 50 us per point, <= 20 KB of state per series (detector + policy).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from blipwatch.detectors import AlertPolicy, dump_state, make_detector


def series(kind: str, n: int, rng: np.random.Generator):
    for m in range(n):
        t = m * 60.0
        daily = 1.0 + 0.8 * np.sin(2 * np.pi * t / 86400.0)
        if kind == "rate":
            den = int(rng.poisson(400 * daily)) + 1
            num = int(rng.binomial(den, 0.7))
            yield t, num / den, num, den
        elif kind == "count":
            yield t, float(rng.poisson(300 * daily)), None, None
        else:
            yield t, float(rng.normal(50, 5)), None, 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20_000, help="points per kind (default 20000, ~14 days)")
    args = parser.parse_args()
    print(f"{'kind':6} {'us/point':>9} {'detector bytes':>15} {'policy bytes':>13}")
    for kind in ("rate", "count", "value"):
        points = list(series(kind, args.points, np.random.default_rng(0)))
        detector, policy = make_detector(kind), AlertPolicy()
        start = time.perf_counter()
        for t, value, num, den in points:
            x = {"t": t, "value": value, "numerator": num, "denominator": den}
            scored = detector.judge_one(x)
            detector.learn_one(x)
            policy.update(t, scored, den)
        elapsed = time.perf_counter() - start
        print(f"{kind:6} {elapsed / len(points) * 1e6:9.1f} {len(dump_state(detector)):15d} "
              f"{len(dump_state(policy)):13d}")


if __name__ == "__main__":
    main()

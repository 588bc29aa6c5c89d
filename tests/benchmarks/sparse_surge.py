"""The smallest detectable surge of a sparse count, with the default count detector (docs/detectors.md).

    .venv/bin/python tests/benchmarks/sparse_surge.py

Per base rate: a count detector warmed for two days on Poisson(base) events a minute; the
smallest count that one window alone needs to score >= 0.6; then a surge of x f for 25 windows,
40 surges per factor (each from a copy of the warmed detector), caught when a window scores >= 0.6.
Prints one table row per base rate: the smallest factor caught in half the surges and in 90 %,
and the median window of the first such score at the latter.
"""

from __future__ import annotations

import copy

import numpy as np

from blipwatch.detectors import make_detector

BASES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
FACTORS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
SURGES, WINDOWS, DAY = 40, 25, 1440


def main() -> None:
    print("| base a minute | learned level | one window alone needs | surge caught in half the cases | in 90 % "
          "| median windows to catch (90 %) |\n| --- | --- | --- | --- | --- | --- |")
    for base in BASES:
        rng = np.random.default_rng(1)
        warm = make_detector("count")
        for m in range(2 * DAY):
            x = {"t": m * 60.0, "value": float(rng.poisson(base))}
            warm.judge_one(x)
            warm.learn_one(x)
        t0 = 2 * DAY * 60.0
        alone = next(k for k in range(1, 10_000) if warm.judge_one({"t": t0, "value": float(k)}).score >= 0.6)
        rows = []
        for factor in FACTORS:
            firsts = []
            for surge in range(SURGES):
                detector, r = copy.deepcopy(warm), np.random.default_rng(100 + surge)
                for i in range(WINDOWS):
                    x = {"t": t0 + i * 60.0, "value": float(r.poisson(base * factor))}
                    score = detector.judge_one(x).score
                    detector.learn_one(x)
                    if score >= 0.6:
                        firsts.append(i + 1)
                        break
            rows.append((factor, len(firsts) / SURGES, float(np.median(firsts)) if firsts else None))
        half = next((f for f, share, _ in rows if share >= 0.5), None)
        most = next(((f, med) for f, share, med in rows if share >= 0.9), (None, None))
        print(f"| {base:g} | {warm.level:.3g} | {alone} | x{half} | x{most[0]} | {most[1]} |", flush=True)


if __name__ == "__main__":
    main()

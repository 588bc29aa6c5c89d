"""An md5 of every ``Scored`` (``repr`` of all its fields), every policy transition and the final
detector state, per kind, over synthetic series (gaps, zeros, NaN, spikes, shifts, low volumes)
and over the NAB files (as value, count and mean series). For changes that must not move a bit:

    .venv/bin/python tests/benchmarks/detector_bits.py NAB_FOLDER > /tmp/after.txt
    git archive main blipwatch | tar -x -C /tmp/base
    cd /tmp && PYTHONPATH=/tmp/base python …/tests/benchmarks/detector_bits.py NAB_FOLDER > /tmp/before.txt
    diff /tmp/before.txt /tmp/after.txt

Each point is scored twice on some windows (the caches must give the same answer).
"""
import csv, glob, hashlib, math, sys
from datetime import datetime, timezone
import numpy as np
from blipwatch.detectors import AlertPolicy, make_detector

def synth(kind, n, seed):
    rng = np.random.default_rng(seed)
    for m in range(n):
        t = m * 60.0
        daily = 1.0 + 0.8 * np.sin(2 * np.pi * t / 86400.0)
        shock = 3.0 if 3000 <= m < 3040 else (0.2 if 5000 <= m < 5100 else 1.0)
        if m % 997 == 5:
            yield t, None, None, None; continue
        if kind == "rate":
            den = int(rng.poisson(40 * daily * (0.01 if 7000 <= m < 7200 else 1))) 
            p = 0.3 * (2 if 3000 <= m < 3040 else 1)
            num = int(rng.binomial(den, min(p, 1.0))) if den else 0
            yield t, (num / den if den else None), num, den
        elif kind == "count":
            yield t, float(rng.poisson(30 * daily * shock)), None, None
        elif kind == "mean":
            k = int(rng.poisson(5)) + (0 if m % 50 else 0)
            v = float(rng.lognormal(3.5, 0.8, size=k).mean()) * (0.5 if 3000 <= m < 3100 else 1.0) if k else None
            yield t, v, None, (k if k else 0)
        else:
            v = float(rng.normal(50, 5)) * shock
            if m % 500 == 7: v = float("nan")
            yield t, v, None, None

def run(kind, points, settings=None):
    det, pol = make_detector(kind, settings), AlertPolicy(warmup=10)
    h = hashlib.md5()
    for t, v, num, den in points:
        x = {"t": t, "value": v, "numerator": num, "denominator": den}
        s = det.judge_one(x)
        if int(t) % 7 == 0:
            s2 = det.judge_one(x)   # judged twice: the caches must give the same
            assert repr(s2) == repr(s), (s, s2)
            assert det.score_one(x) == s.score
        det.learn_one(x)
        tr = pol.update(t, s, None)
        h.update(repr((s, tr)).encode())
    # what the state codec stores: the detector's _STATE_FIELDS and its Page-Hinkley test's
    # (the same values as River's PageHinkley held in _x_mean.n, _x_mean._mean, _sum_increase,
    # _sum_decrease, _min_increase, _max_decrease, _drift_detected before state format 6)
    ph = det.shift
    state = [getattr(det, f) for f in det._STATE_FIELDS] + [
        ph.n, ph.mean, ph.sum_increase, ph.sum_decrease, ph.min_increase, ph.max_decrease, ph.drift_detected]
    h.update(repr(state).encode())
    return h.hexdigest()

def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: detector_bits.py NAB_FOLDER (the NAB corpus: its data/**/*.csv)")
    NAB = sys.argv[1]
    out = []
    for kind in ("rate", "count", "mean", "value"):
        for seed in (0, 1):
            out.append((kind, seed, run(kind, list(synth(kind, 9000, seed)))))
        out.append((kind, "seq_seasoned", run(kind, list(synth(kind, 4000, 2)), {"sequential_seasoned": 1, "pool_windows": 2, "sequential": 1})))
    nab = hashlib.md5()
    for path in sorted(glob.glob(f"{NAB}/data/**/*.csv", recursive=True)):
        rows = []
        with open(path) as f:
            for row in csv.DictReader(f):
                rows.append((datetime.fromisoformat(row["timestamp"]).replace(tzinfo=timezone.utc).timestamp(), float(row["value"]), None, None))
        nab.update(run("value", rows).encode())
        for kind in ("count", "mean"):
            nab.update(run(kind, [(t, abs(v), None, None if kind == "count" else 3) for t, v, _, _ in rows]).encode())
    out.append(("nab", "all", nab.hexdigest()))
    for row in out: print(*row)


if __name__ == "__main__":
    main()

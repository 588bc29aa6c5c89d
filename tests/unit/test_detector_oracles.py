"""The scoring path's written-out code against the readable code it stands for.

``_var_total`` is written out per kind for speed; ``_variance`` (the sampling, extra and floor
variance hooks put together) is its readable twin. Our Page-Hinkley test stands for River's
``drift.PageHinkley``. Scoring advances the CUSUMs inline; ``_cusum_step`` is that step written
readably. Each pair must agree on many random inputs, bit for bit where the
operations are the same.
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest
from river import drift

from blipwatch.detectors import make_detector
from blipwatch.detectors.page_hinkley import PageHinkley
from blipwatch.detectors.tails import cusum_score, t_tail_score, tail_score


def warmed(kind: str, seed: int):
    """A detector that has learned a few hundred points of a random series."""
    rng = random.Random(seed)
    detector = make_detector(kind)
    for minute in range(rng.randint(1, 400)):
        n = rng.randint(1, 500)
        if kind == "rate":
            x = {"numerator": rng.randint(0, n), "denominator": n}
        elif kind == "count":
            x = {"value": float(rng.randint(0, 50) * rng.choice((1, 1, 1, 10)))}
        else:
            x = {"value": rng.lognormvariate(3.0, 0.8), "denominator": n}
        detector.learn_one({"t": minute * 60.0, **x})
    return detector, rng


@pytest.mark.parametrize("kind", ["rate", "count", "mean"])
def test_scoring_advances_the_cusums_as_the_readable_step_does(kind):
    """Through normal windows, an incident (its CUSUM at freeze_at, where a window must lean by a
    share of the run's shift) and its end (a count's CUSUMs start once its profile has a day)."""
    rng = random.Random(7)
    detector = make_detector(kind)
    at_freeze = 0
    onset = 1500 if kind == "count" else 500
    for minute in range(onset + 200):
        shifted = onset <= minute < onset + 40
        n = rng.randint(20, 200)
        if kind == "rate":
            p = 0.6 if shifted else 0.3
            x = {"numerator": sum(rng.random() < p for _ in range(n)), "denominator": n}
        elif kind == "count":
            x = {"value": float(sum(rng.random() < (0.5 if shifted else 0.2) for _ in range(100)))}
        else:
            x = {"value": rng.gauss(70.0 if shifted else 50.0, 10.0 / math.sqrt(n)), "denominator": n}
        x["t"] = minute * 60.0
        scored = detector.judge_one(x)
        if scored.expected is not None:
            judged = detector._judge(x["t"], x.get("value"), x.get("numerator"), x.get("denominator"))
            obs, mu, _, z, _, _ = judged
            rho, bias = detector._residual_rho(), detector._residual_bias()
            at_freeze += max(detector.cusum_up, detector.cusum_down) >= detector.freeze_at
            expected = detector._cusum_step(z, rho, bias, detector._volume(obs[0], mu, obs[1]))
            assert detector._cusum_cache[1:3] == expected
        detector.learn_one(x)
    assert at_freeze >= 20


@pytest.mark.parametrize("kind", ["rate", "count", "mean", "value"])
def test_the_written_out_total_variance_is_the_readable_one_bit_for_bit(kind):
    for seed in range(40):
        detector, rng = warmed(kind, seed)
        for _ in range(50):
            mu = detector._clamp(rng.uniform(0.0, 1.0) if kind == "rate" else rng.uniform(0.0, 300.0))
            n = float(rng.randint(1, 1000))
            assert detector._var_total(mu, n) == detector._variance(mu, n)[1], (seed, mu, n)


@pytest.mark.parametrize("kind", ["rate", "count"])
def test_the_deviance_residual_is_the_square_root_of_the_deviance(kind):
    """Count and rate residuals against the textbook Poisson / binomial deviance."""
    for seed in range(20):
        detector, rng = warmed(kind, seed)
        for _ in range(50):
            n = float(rng.randint(1, 1000))
            if kind == "count":
                x, mu = float(rng.randint(0, 60)), rng.uniform(0.05, 60.0)
                deviance = 2.0 * ((x * math.log(x / mu) if x > 0 else 0.0) - (x - mu))
                sampling = mu
            else:
                x, mu = rng.randint(0, int(n)) / n, rng.uniform(1e-3, 1 - 1e-3)
                k = x * n
                deviance = 2.0 * ((k * math.log(k / (n * mu)) if k > 0 else 0.0)
                                  + ((n - k) * math.log((n - k) / (n * (1 - mu))) if n - k > 0 else 0.0))
                sampling = mu * (1 - mu) / n
            total = detector._var_total(mu, n)
            expected = math.copysign(math.sqrt(max(deviance, 0.0)), x - mu) * math.sqrt(sampling / total)
            assert detector._residual_z(x, mu, n, total) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_our_page_hinkley_decides_as_rivers_on_random_streams():
    rng = random.Random(3)
    detections = 0
    for _ in range(200):
        threshold, delta = rng.choice((5.0, 20.0, 80.0)), rng.choice((0.1, 1.0))
        ours = PageHinkley(min_instances=10, delta=delta, threshold=threshold, alpha=1.0)
        rivers = drift.PageHinkley(min_instances=10, delta=delta, threshold=threshold, alpha=1.0)
        shift_at, size = rng.randint(0, 300), rng.uniform(-6.0, 6.0)
        for i in range(400):
            z = max(-5.0, min(5.0, rng.gauss(size if i >= shift_at else 0.0, 1.0)))
            ours.update(z)
            rivers.update(z)
            assert ours.drift_detected == rivers.drift_detected, i
            detections += ours.drift_detected
    assert detections > 50   # the streams did test detections, not only their absence


def test_the_tails_are_the_textbook_ones():
    normal = NormalDist()
    for z in (0.0, 0.5, 1.0, 2.0, 3.5, 4.89, 6.0):
        p = 2.0 * (1.0 - normal.cdf(z))
        assert tail_score(z) == pytest.approx(min(1.0, -math.log10(p) / 10.0), abs=1e-6)
        assert tail_score(-z) == tail_score(z)
    # Student's t with 1 degree of freedom is Cauchy: two-sided tail 1 - 2 atan(z) / pi
    for z in (0.5, 2.0, 10.0, 300.0):
        p = 1.0 - 2.0 * math.atan(z) / math.pi
        assert t_tail_score(z, 1) == pytest.approx(-math.log10(p) / 10.0, rel=1e-9)
    assert t_tail_score(50.0, 1000) == pytest.approx(tail_score(50.0), abs=0.02)
    assert cusum_score(0.0, 1.0) == 0.0 and cusum_score(100.0, 1.0) == 1.0

"""Tail probabilities on one rarity scale: ``score = min(1, -log10(p) / 10)``.

0.3 is one in a thousand, 0.6 one in a million, 1.0 one in 10^10 or rarer, whatever made ``p``:
a normal or Student's t tail of a residual, a CUSUM's stationary tail, or the rank of a River
model's raw score among its past ones.

>>> round(tail_score(4.89), 2)             # a 4.89-sigma point: about one in a million
0.6
>>> round(score_of_p(1e-3), 2), round(p_of_score(0.6), 7)
(0.3, 1e-06)
>>> t_tail_score(4.89, 4) < tail_score(4.89)   # heavy tails: the same residual is less rare
True
"""

from __future__ import annotations

import math
from statistics import NormalDist

SQRT2 = math.sqrt(2.0)
LN10 = math.log(10.0)


def score_of_p(p: float) -> float:
    """A tail probability on the rarity scale."""
    if p <= 1e-10:
        return 1.0
    return min(1.0, max(0.0, -math.log10(p) / 10.0))


def p_of_score(score: float) -> float:
    """The tail probability a score stands for (the inverse of :func:`score_of_p` below 1.0)."""
    return 10.0 ** (-10.0 * score)


def tail_score(z: float) -> float:
    """The two-sided normal tail of ``z`` on the rarity scale."""
    p = math.erfc(abs(z) / SQRT2)
    if p <= 1e-10:
        return 1.0
    score = -math.log10(p) / 10.0
    score = score if score > 0.0 else 0.0
    return score if score < 1.0 else 1.0


def _betacf(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for I_x(a, b), accurate to ~1e-12 for the x < (a+1)/(a+b+2) branch
    (each step's two terms in turn)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 200):
        m2 = 2 * m
        num = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return h


def t_tail_score(z: float, dof: float) -> float:
    """Like :func:`tail_score` with Student's t tails (``dof`` degrees of freedom), via the
    regularised incomplete beta function's continued fraction (no SciPy).

    >>> t_tail_score(5e-9, 30.0)   # a residual too small for x = dof / (dof + z^2) to differ from 1
    0.0
    """
    if abs(z) < 1e-9:
        return 0.0
    x = dof / (dof + z * z)
    a, b = dof / 2.0, 0.5
    if x <= 0.0:
        return 1.0
    if x >= 1.0:   # z so small next to dof that x rounds to 1 (log1p(-1) is a domain error): no evidence
        return 0.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        p = math.exp(log_front) * _betacf(a, b, x) / a          # two-sided tail = I_x(dof/2, 1/2)
    else:
        p = 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b
    if p <= 1e-10:
        return 1.0
    return min(1.0, max(0.0, -math.log10(max(p, 1e-300)) / 10.0))


def cusum_score(s: float, k: float) -> float:
    """A one-sided CUSUM ``s`` (reference ``k`` sigma) on the same scale as one point: for N(0,1)
    residuals its stationary tail is P(S > s) ~ exp(-2k (s + 0.583)) (Siegmund's overshoot
    correction).

    >>> round(cusum_score(6.3, 1.0), 2)       # 2 sigma held for ~6 windows: one in a million
    0.6
    """
    if s <= 0.0:
        return 0.0
    log10_p = -2.0 * k * (s + 0.583) / LN10
    return min(1.0, max(0.0, -log10_p / 10.0))


def z_for_score(score: float) -> float:
    """The normal deviate whose two-sided tail has ``score`` (where a band reaches the threshold)."""
    p = p_of_score(score)
    return NormalDist().inv_cdf(1.0 - p / 2.0)


def xlogy(x: float, y: float) -> float:
    """``x log(x / y)``, 0 at x = 0 (the terms of a Poisson or binomial deviance)."""
    return 0.0 if x <= 0.0 else x * math.log(x / y)

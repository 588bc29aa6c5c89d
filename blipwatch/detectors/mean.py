"""Kind ``mean``: the mean of a window's observations (average order value)."""

from __future__ import annotations

import math

from blipwatch.detectors.aside import KeptAside
from blipwatch.detectors.base import SeriesDetector
from blipwatch.detectors.tails import t_tail_score, tail_score


#: a skewness sample is at most this (one basket 4 sd out is 64; a 10-sd one would swamp the mean)
_SKEW_CAP = 50.0


class MeanDetector(KeptAside, SeriesDetector):
    """Means over a window's observations; ``denominator`` = the number of observations.

    The level is the ratio of exponentially weighted sums (sum of values / number of values),
    so every observation weighs the same and a window of 2 orders cannot drag it; the noise is
    the per-observation variance, so a window's band narrows with its number of observations.
    One window above the level is judged with Student's t (``tail_dof`` 4: one big basket is not
    an incident), one below it with the normal tail, and the last two windows are also pooled.
    Order values are skewed: a big basket starts a run whose points are learned slowly, small ones
    never do, so what a run kept out of the level is learned once it turns out to be noise
    (:mod:`~blipwatch.detectors.aside`; without it, order values read 7 % low).

    >>> det = MeanDetector()
    >>> for minute in range(300):
    ...     x = {"t": minute * 60.0, "value": 50.0 + (minute % 7 - 3) * 1.5, "denominator": 40}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> det.judge_one({"t": 300 * 60.0, "value": 52.0, "denominator": 40}).is_anomaly
    False
    >>> for minute in range(300, 310):           # orders at half price, window after window
    ...     x = {"t": minute * 60.0, "value": 25.0, "denominator": 40}
    ...     drop = det.judge_one(x)
    ...     det.learn_one(x)
    >>> drop.is_anomaly, drop.direction
    (True, 'down')
    """

    kind = "mean"
    _STATE_FIELDS = SeriesDetector._STATE_FIELDS + ("ew_num", "ew_den", "skew") + KeptAside._ASIDE_FIELDS

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        if self.tail_dof > 0:
            self._point_score = self._skewed_point_score

    def _skewed_point_score(self, z: float) -> float:
        """One window's rarity: Student's t above the level (one big basket), the normal tail
        below it. A mean of positive, right-skewed values has a light left tail: orders at half
        price, window after window, are rare at once, not only as a run. (The learned ``skew`` is
        no guide to the side: between big baskets its samples are small and negative.)"""
        if z < 0.0:
            return tail_score(z)
        return t_tail_score(z, self.tail_dof)

    def _reset(self) -> None:
        super()._reset()
        self.ew_num = 0.0
        self.ew_den = 0.0
        #: EW of one observation's skewness (a window mean of n: its cubed standardized residual
        #: times sqrt(n)); order values are right-skewed (lognormal baskets, 3 to 5)
        self.skew = 0.0

    def _start_level(self, x: float, n: float) -> None:
        self.ew_num, self.ew_den = x * n, n
        self.level = x

    def _start_noise(self, x: float) -> None:
        # per-observation spread unknown: assume half the first mean, worth two points
        self.extra_sum, self.extra_weight = 2.0 * (0.5 * x) ** 2, 2.0

    def _estimate(self) -> float:
        return self.ew_num / self.ew_den if self.ew_den > 0 else self.level

    def _update_level(self, mu: float, n: float, e_clipped: float, factor: float) -> None:
        keep = (1.0 - self.alpha) ** factor
        self._age_aside(keep)
        self.ew_num = keep * self.ew_num + factor * (mu + e_clipped) * n
        self.ew_den = keep * self.ew_den + factor * n
        if self.ew_den > 0:
            self.level = self.ew_num / self.ew_den

    def _apply_relevel(self, delta: float) -> None:
        super()._apply_relevel(delta)
        self.ew_num = self.level * self.ew_den

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        return e * e * n          # a window mean of n values: n e^2 estimates one value's variance

    def _value_var(self) -> float:
        """One value's learned variance (0 before any)."""
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return est if est > 0.0 else 0.0

    def _noise_sample(self, e: float, mu: float, n: float, residual: float) -> float:
        est = self._value_var()
        if est > 0.0:
            # a window mean of n values has skewness skew / sqrt(n): u^3 sqrt(n) estimates skew
            u = e * math.sqrt(n / est)
            sample = u * u * u * math.sqrt(n)
            sample = sample if sample < _SKEW_CAP else _SKEW_CAP
            sample = sample if sample > -_SKEW_CAP else -_SKEW_CAP
            self.skew += self.alpha_var * (sample - self.skew)
        return self._extra_sample(e, mu, n)

    def _skew_room(self, mu: float, n: float, var_total: float) -> float:
        # the Cornish-Fisher term of a mean of n skewed values, sd skew / sqrt(n) (z^2 - 1) / 6,
        # at most another clip_z sd: one big basket is learned whole, not clipped to 3 sd (the
        # level of order values read low)
        clip_z = self.clip_z
        room = math.sqrt(var_total) * self.skew / math.sqrt(n if n > 1.0 else 1.0) * (clip_z * clip_z - 1.0) / 6.0
        cap = clip_z * math.sqrt(var_total)
        room = room if room < cap else cap
        return room if room > -cap else -cap

    def _extra_var(self, mu: float, n: float) -> float:
        return self._value_var() / n

    def _floor_var(self, mu: float) -> float:
        return self._value_var() / (self.ew_den + 1.0) + (1e-3 * abs(mu)) ** 2 + 1e-12

    def _var_total(self, mu: float, n: float) -> float:
        weight = self.extra_weight
        est = self.extra_sum / weight if weight > 0 else 0.0
        est = 0.0 if 0.0 > est else est
        extra = est / n
        extra *= 1.0 + 4.0 / (weight + 1.0)
        return 0.0 + extra + (est / (self.ew_den + 1.0) + (1e-3 * abs(mu)) ** 2 + 1e-12)

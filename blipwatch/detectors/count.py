"""Kind ``count``: events per window (page views, complaints)."""

from __future__ import annotations

import math

from blipwatch.detectors.base import SeriesDetector
from blipwatch.detectors.tails import xlogy


class CountDetector(SeriesDetector):
    """Counts per window: Poisson noise plus learned over-dispersion (quasi-Poisson), a
    multiplicative daily profile, a floor under the expected count.

    >>> import random
    >>> rng = random.Random(1)
    >>> det = CountDetector()
    >>> def poisson(lam):
    ...     k, p, limit = 0, 1.0, math.exp(-lam)
    ...     while True:
    ...         p *= rng.random()
    ...         if p < limit:
    ...             return k
    ...         k += 1
    >>> for minute in range(600):
    ...     x = {"t": minute * 60.0, "value": poisson(20)}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> det.judge_one({"t": 600 * 60.0, "value": 26}).is_anomaly
    False
    >>> surge = det.judge_one({"t": 600 * 60.0, "value": 80})
    >>> surge.is_anomaly, surge.direction
    (True, 'up')
    """

    kind = "count"
    multiplicative = True

    def _observe(self, value, numerator, denominator):
        if value is None or not math.isfinite(value) or value < 0:
            return None
        return float(value), 1.0

    def _clamp(self, mu: float) -> float:
        # the level itself goes as low as the data say (expected is unbiased however sparse);
        # this only keeps its logarithm finite
        low = 0.01 * self.alpha
        return low if low > mu else mu

    def _floor(self, mu: float) -> float:
        """The expected count a point is judged against: never under half ``alpha`` a window
        (Jeffreys-like: zeros all night do not make one event a miracle)."""
        low = 0.5 * self.alpha
        return low if low > mu else mu

    def _sampling_var(self, mu: float, n: float) -> float:
        low = 0.5 * self.alpha
        return low if low > mu else mu

    def _extra_var(self, mu: float, n: float) -> float:
        # quasi-Poisson: events come in clusters (a session makes several), so the variance is
        # a multiple of the mean, not Poisson's mean itself
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return max(est, 0.0) * mu

    def _var_total(self, mu: float, n: float) -> float:
        low = 0.5 * self.alpha
        mu = low if low > mu else mu
        weight = self.extra_weight
        est = self.extra_sum / weight if weight > 0 else 0.0
        extra = (0.0 if 0.0 > est else est) * mu
        extra *= 1.0 + 4.0 / (weight + 1.0)
        return mu + extra + 0.0

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        return (e * e - mu) / mu

    def _noise_sample(self, e: float, mu: float, n: float, residual: float) -> float:
        return self._dispersion_sample(mu, n, residual)

    def _residual_z(self, x: float, mu: float, n: float, var_total: float) -> float:
        low = 0.5 * self.alpha
        mu = low if low > mu else mu
        deviance = 2.0 * (xlogy(x, mu) - (x - mu))
        z = math.copysign(math.sqrt(0.0 if 0.0 > deviance else deviance), x - mu)
        return z * math.sqrt(mu / var_total)

    def _skew_room(self, mu: float, n: float, var_total: float) -> float:
        # a count's upper tail is longer than its lower one: the Cornish-Fisher quantile of a
        # (scaled) Poisson is mu + z sd + d (z^2 - 1) / 6, so one event against 0.05 expected is
        # learned whole, not clipped to 0.67 (sparse levels were biased low)
        clip_z = self.clip_z
        return var_total / self._floor(mu) * (clip_z * clip_z - 1.0) / 6.0

    def _volume(self, x: float, mu: float, n: float) -> float:
        return mu if mu > x else x

    def _pool(self, prev: list[float], x: float, n: float, mu: float) -> tuple[float, float, float]:
        return prev[0] + x, 1.0, prev[2] + mu

    def _bounds(self, mu: float, half: float) -> tuple[float, float]:
        lower = mu - half
        return (lower if lower > 0.0 else 0.0), mu + half

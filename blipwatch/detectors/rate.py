"""Kind ``rate``: numerator / denominator per window (cart abandonment, payment failures)."""

from __future__ import annotations

import math

from blipwatch.detectors.aside import KeptAside
from blipwatch.detectors.base import SeriesDetector
from blipwatch.detectors.tails import xlogy


class RateDetector(KeptAside, SeriesDetector):
    """Rates: binomial noise in the denominator plus a learned extra variance (quasi-binomial);
    the level is the ratio of exponentially weighted sums of numerators and denominators, so
    every trial weighs the same. What a run kept out of the level is learned once it turns out
    to be noise (:mod:`~blipwatch.detectors.aside`).

    >>> det = RateDetector()
    >>> for minute in range(300):
    ...     abandoned = 2800 + (minute % 5 - 2) * 20     # ~70 % of 4,000 carts
    ...     x = {"t": minute * 60.0, "numerator": abandoned, "denominator": 4000}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> det.judge_one({"t": 300 * 60.0, "numerator": 4, "denominator": 4}).is_anomaly        # weak evidence
    False
    >>> det.judge_one({"t": 300 * 60.0, "numerator": 3600, "denominator": 4000}).is_anomaly  # strong
    True
    """

    kind = "rate"
    _STATE_FIELDS = SeriesDetector._STATE_FIELDS + ("ew_num", "ew_den") + KeptAside._ASIDE_FIELDS

    def _reset(self) -> None:
        super()._reset()
        self.ew_num = 0.0   # exponentially weighted sums of numerators and denominators: the
        self.ew_den = 0.0   # level is their ratio, so every trial weighs the same (volume-weighted)
        #: the numerator a window's ratio cannot hold: all of it without a denominator (``1 of
        #: 0``: the purchase's checkout started a minute earlier), the excess over it (``5 of
        #: 4``). Scoring sees the ratio within [0, 1]; learning adds this back, so the level is
        #: sum(numerator) / sum(denominator) over time, not biased low by the lag between them.
        self._spill = 0.0

    def _learn(self, t: float, value, numerator, denominator) -> None:
        spill = 0.0
        if numerator is not None and numerator > 0:
            if denominator is None or denominator <= 0:
                spill = float(numerator)
            elif numerator > denominator:
                spill = float(numerator) - float(denominator)
        self._spill = spill
        if spill and (denominator is None or denominator <= 0):
            # no trials to judge: only the numerator is learned, at the level's rate, unless a
            # blip's evidence holds learning (as for any point)
            if self.n_learned and self._learns():
                slow = self.cusum_up >= self.slow_at or self.cusum_down >= self.slow_at
                # robust as any point: at most what a window usually holds, twice over, plus one
                cap = 1.0 + 2.0 * self.level * self.volume_mean
                self.ew_num += (spill if spill < cap else cap) * (0.1 if slow else 1.0)
                self.level = self._clamp(self._estimate())
            self._spill = 0.0
        super()._learn(t, value, numerator, denominator)   # the aside ages, and settles after
        self._spill = 0.0

    def _estimate(self) -> float:
        # half a success in one trial, a prior that fades as trials come (1 / (1 + trials)): a
        # new series is not certain of a rate of exactly 0 or 1, and a learned one is unbiased
        # (a fixed Jeffreys prior put payment failures at 1 % among 5 attempts a minute 20 % high)
        den = self.ew_den
        prior = 1.0 / (1.0 + den)
        return (self.ew_num + 0.5 * prior) / (den + prior)

    def _judged(self, mu: float) -> float:
        """The rate a point is judged against: at least half a success (or failure) in the
        trials behind the level plus one (Jeffreys-like: 0 of 1 cart at night, or no payment
        failure in the last hour, must not make the next one a miracle)."""
        low = 0.5 / (self.ew_den + 1.0)
        mu = low if low > mu else mu
        high = 1.0 - low
        return high if high < mu else mu

    def _start_level(self, x: float, n: float) -> None:
        self.ew_num, self.ew_den = x * n, n
        self.level = self._clamp(self._estimate())

    def _update_level(self, mu: float, n: float, e_clipped: float, factor: float) -> None:
        keep = (1.0 - self.alpha) ** factor
        self._age_aside(keep)
        if self._spill:
            # the excess over the denominator is part of the residual, clipped with it (unclipped,
            # it pushed a level near 1, whose band narrows to nothing, up to 1)
            var_total = self._var_total(mu, n)
            room = self._skew_room(mu, n, var_total)
            bound = self.clip_z * math.sqrt(var_total) + (room if room > 0.0 else 0.0)
            e_clipped = e_clipped + self._spill / n
            e_clipped = e_clipped if e_clipped < bound else bound
        self.ew_num = keep * self.ew_num + factor * (mu + e_clipped) * n
        self.ew_den = keep * self.ew_den + factor * n
        self.level = self._clamp(self._estimate())

    def _apply_relevel(self, delta: float) -> None:
        super()._apply_relevel(delta)
        self.ew_num = self.level * self.ew_den

    def _observe(self, value, numerator, denominator):
        if numerator is not None and denominator is not None:
            if denominator <= 0 or numerator < 0:
                return None
            x = float(numerator) / float(denominator)
            x = 0.0 if 0.0 > x else x
            return (1.0 if 1.0 < x else x), float(denominator)
        if value is None or not math.isfinite(value):
            return None
        return min(max(float(value), 0.0), 1.0), float(denominator) if denominator else 1.0

    def _clamp(self, mu: float) -> float:
        mu = 1e-6 if 1e-6 > mu else mu
        return (1.0 - 1e-6) if (1.0 - 1e-6) < mu else mu

    def _sampling_var(self, mu: float, n: float) -> float:
        mu = self._judged(mu)
        return mu * (1.0 - mu) / n

    def _extra_var(self, mu: float, n: float) -> float:
        # quasi-binomial: trials come in clusters (a session's page views, a customer's retries),
        # so the extra variance is a multiple of the binomial one at every volume
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return max(est, 0.0) * self._sampling_var(mu, n)

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        sampling = self._sampling_var(mu, n)
        return (e * e - sampling) / sampling

    def _noise_sample(self, e: float, mu: float, n: float, residual: float) -> float:
        return self._dispersion_sample(mu, n, residual)

    def _floor_var(self, mu: float) -> float:
        # the level itself is uncertain when few trials back it
        mu = self._judged(mu)
        return mu * (1.0 - mu) / (self.ew_den + 1.0)

    def _var_total(self, mu: float, n: float) -> float:
        mu = self._judged(mu)
        sampling = mu * (1.0 - mu) / n
        weight = self.extra_weight
        est = self.extra_sum / weight if weight > 0 else 0.0
        extra = (0.0 if 0.0 > est else est) * sampling
        extra *= 1.0 + 4.0 / (weight + 1.0)
        return sampling + extra + mu * (1.0 - mu) / (self.ew_den + 1.0)

    def _residual_z(self, x: float, mu: float, n: float, var_total: float) -> float:
        mu = self._judged(mu)
        k = x * n
        deviance = 2.0 * (xlogy(k, n * mu) + xlogy(n - k, n * (1.0 - mu)))
        z = math.copysign(math.sqrt(0.0 if 0.0 > deviance else deviance), x - mu)
        return z * math.sqrt(mu * (1.0 - mu) / n / var_total)

    def _skew_room(self, mu: float, n: float, var_total: float) -> float:
        # the (quasi-)binomial's Cornish-Fisher term, in rate units: d (z^2 - 1) (1 - 2 mu) / 6n,
        # so a payment failure among 5 attempts at 1 % is learned whole (clipped at 3 sd, rare
        # rates read ~20 % low)
        clip_z = self.clip_z
        mu = self._judged(mu)
        dispersion = var_total * n / (mu * (1.0 - mu))
        return dispersion * (clip_z * clip_z - 1.0) * (1.0 - 2.0 * mu) / (6.0 * n)

    def _bounds(self, mu: float, half: float) -> tuple[float, float]:
        lower, upper = mu - half, mu + half
        return (lower if lower > 0.0 else 0.0), (upper if upper < 1.0 else 1.0)

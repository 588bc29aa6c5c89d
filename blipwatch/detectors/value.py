"""Kind ``value``: generic real values (machine metrics, NAB series, ``score-series``)."""

from __future__ import annotations

import math

from blipwatch.detectors.base import SeriesDetector
from blipwatch.detectors.breakout import RangeBreakout
from blipwatch.detectors.calibration import ResidualCalibration
from blipwatch.detectors.changes import ChangeEvidence
from blipwatch.detectors.scored import Scored
from blipwatch.detectors.seasonal import SeasonalResidual


class ValueDetector(ChangeEvidence, RangeBreakout, SeasonalResidual, ResidualCalibration, SeriesDetector):
    """Generic values; ``denominator`` = observations behind a value (default 1).

    The noise is learned from the residuals; a window with fewer observations than usual is
    weaker evidence, one with more is not taken as stronger (a busy evening stays quiet). One
    point at a time with Page-Hinkley re-levelling, and the residuals' own history
    (:mod:`~blipwatch.detectors.calibration`); changes of level and spread judged by their own
    history, and only news scored (:mod:`~blipwatch.detectors.changes`); a jump beyond the
    whole range seen (:mod:`~blipwatch.detectors.breakout`); the distance from the daily
    profile by its own history (:mod:`~blipwatch.detectors.seasonal`).

    >>> det = ValueDetector()
    >>> for minute in range(300):
    ...     x = {"t": minute * 60.0, "value": 50.0 + (minute % 7) * 0.5, "denominator": 40}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> det.judge_one({"t": 300 * 60.0, "value": 51.0, "denominator": 40}).is_anomaly
    False
    >>> drop = det.judge_one({"t": 300 * 60.0, "value": 30.0, "denominator": 40})
    >>> drop.is_anomaly, drop.direction
    (True, 'down')
    """

    kind = "value"
    _STATE_FIELDS = (SeriesDetector._STATE_FIELDS + ResidualCalibration._CALIBRATION_FIELDS
                     + ChangeEvidence._CHANGE_FIELDS + RangeBreakout._BREAKOUT_FIELDS
                     + SeasonalResidual._SEASONAL_FIELDS)

    def _reset(self) -> None:
        super()._reset()
        self._reset_calibration()
        self._reset_changes()
        self._reset_breakout()
        self._reset_seasonal()

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        return e * e * min(n / self.volume_mean, 1.0) if self.volume_mean > 0 else e * e

    def _extra_var(self, mu: float, n: float) -> float:
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return est * max(self.volume_mean / n, 1.0)

    def _start_noise(self, x: float) -> None:
        # nothing is known about the noise of a new value series: assume 10 % of the first
        # value, worth two points, so the second point is not a one-in-a-billion event
        self.extra_sum, self.extra_weight = 2.0 * (0.1 * x) ** 2, 2.0

    def _floor_var(self, mu: float) -> float:
        # a perfectly flat series must not turn every rounding error into an alert
        return (1e-3 * abs(mu)) ** 2 + 1e-12

    def _raw(self, key: tuple, scored: Scored) -> tuple[float, int | None, int | None]:
        """(score before the news filter, residual bin, change bin) of a judged point."""
        score, b = scored.score, None
        if self.calibrate_memory:
            score, b = self._calibrated(key, scored)
        change_bin = None
        if self.change_memory and scored.expected is not None and scored.value is not None \
                and math.isfinite(scored.value):
            change, change_bin = self._change_score(key, scored.value)
            score = change if change > score else score
        if scored.value is not None and math.isfinite(scored.value):
            if self.breakout_margin:
                breakout = self._breakout(scored.value)
                score = breakout if breakout > score else score
            if self.seasonal_memory:
                seasonal = self._seasonal_score(key, key[0], scored.value)[0]
                score = seasonal if seasonal > score else score
        return score, b, change_bin

    def _scored(self, t, value, numerator, denominator) -> Scored:
        scored = super()._scored(t, value, numerator, denominator)
        if not (self.calibrate_memory or self.change_memory or self.news_decay or self.breakout_margin
                or self.seasonal_memory):
            return scored
        raw, _, _ = self._raw((t, value, numerator, denominator), scored)
        final = self._news(raw)
        return Scored(scored.value, scored.expected, scored.lower, scored.upper, final, scored.direction,
                      final >= self.threshold, scored.z, scored.volume)

    def _learn(self, t, value, numerator, denominator) -> None:
        if self.calibrate_memory or self.change_memory or self.news_decay or self.breakout_margin \
                or self.seasonal_memory:
            key = (t, value, numerator, denominator)
            scored = super()._scored(t, value, numerator, denominator)
            raw, b, _ = self._raw(key, scored)
            self._calib_cache = None
            if b is not None and self.calibrate_memory > 0:
                self._learn_calibration(b)
            if self.change_memory and scored.value is not None and math.isfinite(scored.value):
                self._learn_changes(key, scored.value)
            if scored.value is not None and math.isfinite(scored.value):
                if self.breakout_margin:
                    self._learn_breakout(scored.value)
                if self.seasonal_memory:
                    self._learn_seasonal(key, t, scored.value)
            self._learn_news(raw)
        super()._learn(t, value, numerator, denominator)

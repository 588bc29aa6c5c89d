"""Value series: the distance from the daily profile, judged by its own history.

A point is expected at the level alone unless the daily profile explains it better
(:mod:`~blipwatch.detectors.base`): so a daily jump that does not come, or a day part that goes
flat, is never an alarm, for the level follows the series. Kind ``value`` also keeps the
residual from the level moved along the daily profile (once its bins have been seen on an
earlier day) in a decayed histogram of its own (``seasonal_memory`` points, 0: off; the bins,
top share and tail of :mod:`~blipwatch.detectors.calibration`), and scores its exceedance
there, worth one point at probability 1: on a series that repeats every day, a point far from
what the same time brought before is rare; on one that does not, that distance is always large
and scores little. As the level change, it waits for ``learn_freely`` + 3 / ``change_slow`` of
its own residuals, and a residual beyond all of ``seasonal_memory`` points scores about
``log10(seasonal_memory) / 10`` (0.33 at 2000): a level the same time of day never had.

A mixin of :class:`blipwatch.detectors.value.ValueDetector`.

>>> from blipwatch.detectors import make_detector
>>> import random
>>> rng = random.Random(2)
>>> det = make_detector("value", {"calibrate_memory": 0, "change_memory": 0, "breakout_margin": 0})
>>> for minute in range(0, 4 * 1440, 5):             # 10 by night, 50 from 08:00 to 16:00
...     base = 50.0 if 480 <= minute % 1440 < 960 else 10.0
...     det.learn_one({"t": minute * 60.0, "value": base + rng.gauss(0, 1)})
>>> t = (4 * 1440 + 480) * 60.0                      # 08:00 on the fifth day
>>> round(det.score_one({"t": t, "value": 50.0}), 2), round(det.score_one({"t": t, "value": 10.0}), 2)
(0.0, 0.28)
"""

from __future__ import annotations

import math

from blipwatch.detectors.calibration import exceedance, learn_bin, log_bin


class SeasonalResidual:
    """The histogram of distances from the daily profile and the score it allows (a mixin)."""

    _SEASONAL_FIELDS = ("seas_hist", "seas_seen")

    def _reset_seasonal(self) -> None:
        self.seas_hist: list = [[], 0.0, 1.0]    # histogram [bins, total, unit] of |x - profile|
        self.seas_seen = 0                       # residuals learned by it
        self._seas_cache: tuple | None = None

    def _seasonal_score(self, key: tuple, t: float, x: float) -> tuple[float, int | None]:
        """(score, histogram bin) of ``x`` at ``t`` against the level moved along the profile;
        (0, None) while the profile does not know ``t``'s bin."""
        cache = self._seas_cache
        if cache is not None and cache[0] == key:
            return cache[1]
        seasonal = self._bases(t)[1]
        result = (0.0, None)
        if seasonal is not None:
            e = abs(x - self._clamp(seasonal))
            e = 0.0 if e <= 1e-9 * abs(x) else e     # a rounding error is no distance
            per = self.calibrate_bins
            hist = self.seas_hist
            score = 0.0
            if self.seas_seen >= self.learn_freely + 3.0 / self.change_slow and hist[1] > 0:
                best = exceedance(hist[0], hist[1], e, per, self.calibrate_top, self.calibrate_tail)
                score = -math.log10(max((best + hist[2]) / (hist[1] + hist[2]), 1e-10)) / 10.0
            result = (score, log_bin(e, per))
        self._seas_cache = (key, result)
        return result

    def _learn_seasonal(self, key: tuple, t: float, x: float) -> None:
        _, b = self._seasonal_score(key, t, x)
        self._seas_cache = None
        if b is not None:
            learn_bin(self.seas_hist, b, self.seasonal_memory)
            self.seas_seen += 1

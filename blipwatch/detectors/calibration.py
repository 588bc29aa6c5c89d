"""Value series: a residual judged by the series' own history as well as by the noise model.

A generic series (machine metrics, NAB) rarely has normal noise. So for kind ``value`` the tail
probability is the less rare of two: the noise model's, and the empirical exceedance rate of the
series' own past residuals, kept in a decayed histogram of ``log2 |residual|``
(``calibrate_bins`` bins per doubling, ``calibrate_memory`` points of memory, the noise model's
tail weighing ``calibrate_prior`` points in it). Beyond the largest residuals seen (their top
``calibrate_top`` share) the exceedance falls as a power law (``calibrate_tail``): a residual a
little beyond the largest seen is nearly as common as they were, one many times larger is news.

A mixin of :class:`blipwatch.detectors.value.ValueDetector`.

>>> from blipwatch.detectors import make_detector
>>> det = make_detector("value")
>>> for minute in range(400):
...     spike = 40.0 if minute % 50 == 25 else 0.0       # a spike every 50 points, as usual
...     det.learn_one({"t": minute * 60.0, "value": 100.0 + (minute % 3) + spike})
>>> round(det.score_one({"t": 400 * 60.0, "value": 141.0}), 1)   # one more: about one in 100
0.2
"""

from __future__ import annotations

import math


class ResidualCalibration:
    """The decayed histogram of past residuals and the score it allows (a mixin)."""

    _CALIBRATION_FIELDS = ("calib_bins", "calib_total", "calib_unit")

    def _reset_calibration(self) -> None:
        self.calib_bins: list[list[float]] = []   # [bin, weight] sorted by bin: decayed histogram of log2|residual|
        self.calib_total = 0.0        # sum of the weights
        self.calib_unit = 1.0         # weight of the next residual (weights grow instead of decaying)
        self._calib_cache: tuple | None = None

    def _calib_bin(self, e: float) -> int:
        a = abs(e)
        if a < 1e-300:
            return -1_000_000
        return math.floor(self.calibrate_bins * math.log2(a))

    def _calibrated(self, key: tuple, scored) -> tuple[float, int | None]:
        """The score of one point, the less rare of the noise model and the residual history,
        and the residual's histogram bin (None: no residual)."""
        if self._calib_cache is not None and self._calib_cache[0] == key:
            return self._calib_cache[1]
        score, b = scored.score, None
        if scored.expected is not None and scored.value is not None and math.isfinite(scored.value):
            b = self._calib_bin(scored.value - scored.expected)
            if self.calibrate_memory > 0 and self.calib_total > 0:
                p_model = 10.0 ** (-10.0 * score)
                # the residuals' exceedance curve, made to fall no faster than a power law
                # (|r| / |e|)^calibrate_tail
                pos = self.calibrate_bins * math.log2(max(abs(scored.value - scored.expected), 1e-300))
                gamma = self.calibrate_tail / self.calibrate_bins
                above = best = 0.0
                for k, w in reversed(self.calib_bins):
                    if k > b:
                        above += w
                        best = above
                        continue
                    if k == b:     # residuals spread evenly (in log) within their bin
                        v = above + w * (k + 1 - pos)
                        best = v if v > best else best
                    above += w
                    if above > self.calibrate_top * self.calib_total:
                        break      # the power law extends the top of the histogram only
                    share = 2.0 ** (gamma * (k - pos))
                    v = above * share
                    best = v if v > best else best
                    if self.calib_total * share <= best:
                        break
                prior = self.calibrate_prior * self.calib_unit
                p_emp = (best + prior * p_model) / (self.calib_total + prior)
                score = min(score, max(0.0, -math.log10(max(p_emp, 1e-300)) / 10.0))
        result = (score, b)
        self._calib_cache = (key, result)
        return result

    def _learn_calibration(self, b: int) -> None:
        bins = self.calib_bins
        i = len(bins)
        while i > 0 and bins[i - 1][0] > b:
            i -= 1
        if i > 0 and bins[i - 1][0] == b:
            bins[i - 1][1] += self.calib_unit
        else:
            bins.insert(i, [b, self.calib_unit])
        self.calib_total += self.calib_unit
        self.calib_unit /= 1.0 - 1.0 / self.calibrate_memory
        if self.calib_unit > 1e30:    # rescale; drop bins that no longer weigh anything
            scale = 1.0 / self.calib_unit
            self.calib_bins = [[k, w * scale] for k, w in bins if w * scale > 1e-9]
            self.calib_total = sum(w for _, w in self.calib_bins)
            self.calib_unit = 1.0

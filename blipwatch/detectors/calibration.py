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


def log_bin(a: float, bins_per_doubling: int) -> int:
    """The histogram bin of a magnitude ``a`` >= 0 (``bins_per_doubling`` bins per doubling).

    >>> log_bin(1.0, 4), log_bin(2.0, 4), log_bin(3.0, 4), log_bin(0.0, 4)
    (0, 4, 6, -1000000)
    """
    if a < 1e-300:
        return -1_000_000
    return math.floor(bins_per_doubling * math.log2(a))


def exceedance(bins: list, total: float, a: float, bins_per_doubling: int, top: float, tail: float) -> float:
    """The weight of a decayed histogram of ``log2`` magnitudes (``bins``: sorted [bin, weight])
    at or above the magnitude ``a``, made to fall no faster than the power law ``(|r| / a)^tail``
    beyond the histogram's top ``top`` share (the largest seen are not the largest possible).

    >>> bins = [[0, 90.0], [4, 9.0], [8, 1.0]]          # magnitudes ~1 (90), ~2 (9), ~4 (1)
    >>> exceedance(bins, 100.0, 2.0, 4, 0.1, 6.0)       # at or above 2: the 10 largest
    10.0
    >>> round(exceedance(bins, 100.0, 8.0, 4, 0.1, 6.0), 4)   # twice the largest: 1 x 2^-6
    0.0156
    >>> exceedance([[log_bin(0.0, 4), 5.0]], 5.0, 0.0, 4, 0.1, 6.0)   # exactly 0, as always: all of them
    5.0
    """
    b = log_bin(a, bins_per_doubling)
    pos = bins_per_doubling * math.log2(a) if a >= 1e-300 else float(b)
    gamma = tail / bins_per_doubling
    above = best = 0.0
    for k, w in reversed(bins):
        if k > b:
            above += w
            best = above
            continue
        if k == b:     # magnitudes spread evenly (in log) within their bin
            v = above + w * (k + 1 - pos)
            best = v if v > best else best
        above += w
        if above > top * total:
            break      # the power law extends the top of the histogram only
        share = 2.0 ** (gamma * (k - pos))
        v = above * share
        best = v if v > best else best
        if total * share <= best:
            break
    return best


def learn_bin(hist: list, b: int, memory: float) -> None:
    """Add one magnitude's bin ``b`` to ``hist`` = [bins, total, unit], a histogram decayed to
    ``memory`` points (the weights of new points grow instead of old ones decaying).

    >>> hist = [[], 0.0, 1.0]
    >>> for b in (3, 1, 3):
    ...     learn_bin(hist, b, 1000)
    >>> [[k, round(w, 3)] for k, w in hist[0]], round(hist[1], 3)
    ([[1, 1.001], [3, 2.002]], 3.003)
    """
    bins, unit = hist[0], hist[2]
    i = len(bins)
    while i > 0 and bins[i - 1][0] > b:
        i -= 1
    if i > 0 and bins[i - 1][0] == b:
        bins[i - 1][1] += unit
    else:
        bins.insert(i, [b, unit])
    hist[1] += unit
    unit /= 1.0 - 1.0 / memory
    if unit > 1e30:    # rescale; drop bins that no longer weigh anything
        scale = 1.0 / unit
        hist[0] = [[k, w * scale] for k, w in bins if w * scale > 1e-9]
        hist[1] = sum(w for _, w in hist[0])
        unit = 1.0
    hist[2] = unit


class ResidualCalibration:
    """The decayed histogram of past residuals and the score it allows (a mixin)."""

    _CALIBRATION_FIELDS = ("calib_bins", "calib_total", "calib_unit")

    def _reset_calibration(self) -> None:
        self.calib_bins: list[list[float]] = []   # [bin, weight] sorted by bin: decayed histogram of log2|residual|
        self.calib_total = 0.0        # sum of the weights
        self.calib_unit = 1.0         # weight of the next residual (weights grow instead of decaying)
        self._calib_cache: tuple | None = None

    def _calib_bin(self, e: float) -> int:
        return log_bin(abs(e), self.calibrate_bins)

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
                best = exceedance(self.calib_bins, self.calib_total, abs(scored.value - scored.expected),
                                  self.calibrate_bins, self.calibrate_top, self.calibrate_tail)
                prior = self.calibrate_prior * self.calib_unit
                p_emp = (best + prior * p_model) / (self.calib_total + prior)
                score = min(score, max(0.0, -math.log10(max(p_emp, 1e-300)) / 10.0))
        result = (score, b)
        self._calib_cache = (key, result)
        return result

    def _learn_calibration(self, b: int) -> None:
        hist = [self.calib_bins, self.calib_total, self.calib_unit]
        learn_bin(hist, b, self.calibrate_memory)
        self.calib_bins, self.calib_total, self.calib_unit = hist

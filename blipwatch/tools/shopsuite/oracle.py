"""The oracle: a CUSUM of the exact log-likelihood ratio between the true baseline and the true
shift, per window, with its threshold calibrated by simulation on the null so that it raises
false alarms at a given rate per series and day. Its detection delay is the physical limit of
detection for an incident (given its windows): no detector with that false-alarm rate is faster
on average.

Per window, given its evidence:

* rate: numerator ``x`` of ``n`` trials, binomial(n, p0) against binomial(n, p1);
* count: quasi-Poisson with the true dispersion ``d`` (variance d x mean), mu0 against mu1;
* mean: the mean of ``n`` observations, normal with the true per-observation variance.

>>> import numpy as np
>>> h = RateHypothesis(np.full(1440, 0.1), np.full(1440, 0.3), np.full(1440, 50.0), np.full(1440, 50.0))
>>> threshold = calibrate(h, np.arange(1440), 0.01, np.random.default_rng(0))
>>> 3 < threshold < 15
True
"""

from __future__ import annotations

import math

import numpy as np

DAY_WINDOWS = 1440


class RateHypothesis:
    def __init__(self, p0, p1, trials0, trials1):
        self.p0 = np.clip(np.asarray(p0, float), 1e-9, 1 - 1e-9)
        self.p1 = np.clip(np.asarray(p1, float), 1e-9, 1 - 1e-9)
        self.trials0, self.trials1 = np.asarray(trials0, float), np.asarray(trials1, float)

    def sample(self, rng, w: np.ndarray, replicates: int, shifted: bool):
        """Observations of windows ``w`` (an array of indexes): arrays [window, replicate]."""
        trials, p = (self.trials1, self.p1) if shifted else (self.trials0, self.p0)
        n = rng.poisson(trials[w][:, None], (len(w), replicates))
        return rng.binomial(n, p[w][:, None]).astype(float), n.astype(float)

    def llr(self, w, x, n):
        x = np.minimum(x, n)
        p0, p1 = self.p0[w], self.p1[w]
        return x * np.log(p1 / p0) + (n - x) * np.log((1 - p1) / (1 - p0))


class CountHypothesis:
    def __init__(self, mu0, mu1, dispersion: float = 1.0):
        self.mu0 = np.maximum(np.asarray(mu0, float), 1e-9)
        self.mu1 = np.maximum(np.asarray(mu1, float), 1e-9)
        self.d = max(1.0, float(dispersion))

    def sample(self, rng, w: np.ndarray, replicates: int, shifted: bool):
        mu = (self.mu1 if shifted else self.mu0)[w][:, None]
        return self.d * rng.poisson(mu / self.d, (len(w), replicates)).astype(float), np.ones((len(w), replicates))

    def llr(self, w, x, n):
        mu0, mu1 = self.mu0[w], self.mu1[w]
        return (x * np.log(mu1 / mu0) - (mu1 - mu0)) / self.d


class MeanHypothesis:
    """``x`` is the window's mean of ``n`` observations (0 when there are none)."""

    def __init__(self, m0, v0, m1, v1, count0, count1):
        self.m0, self.v0 = np.asarray(m0, float), np.asarray(v0, float)
        self.m1, self.v1 = np.asarray(m1, float), np.asarray(v1, float)
        self.count0, self.count1 = np.asarray(count0, float), np.asarray(count1, float)

    def sample(self, rng, w: np.ndarray, replicates: int, shifted: bool):
        count, m, v = (self.count1, self.m1, self.v1) if shifted else (self.count0, self.m0, self.v0)
        n = rng.poisson(count[w][:, None], (len(w), replicates)).astype(float)
        x = m[w][:, None] + rng.standard_normal(n.shape) * np.sqrt(v[w][:, None] / np.maximum(n, 1.0))
        return np.where(n > 0, x, 0.0), n

    def llr(self, w, x, n):
        m0, v0, m1, v1 = self.m0[w], self.v0[w], self.m1[w], self.v1[w]
        # the mean of n normal observations has variance v / n
        value = -0.5 * np.log(v1 / v0) - n * (x - m1) ** 2 / (2 * v1) + n * (x - m0) ** 2 / (2 * v0)
        return np.where(n > 0, value, 0.0)


def calibrate(hypothesis, windows: np.ndarray, alpha: float, rng: np.random.Generator,
              replicates: int = 1000) -> float:
    """The CUSUM threshold at which a day of null windows (``windows``: their indexes, ~1,440)
    raises an alarm with probability ``alpha``: the empirical quantile of the day's maximum where
    ten replicates reach it, else an exponential tail fitted to the largest 5 % of the maxima
    that are above zero (a sparse series' CUSUM mostly stays at 0 all day: the tail starts from
    the share of days it leaves 0 at all). With fewer than five such days, just above the largest
    maximum (a shift so large that the null's log-likelihood ratio is never positive: any
    positive evidence is an alarm)."""
    windows = np.asarray(windows)
    x, n = hypothesis.sample(rng, windows, replicates, False)
    steps = hypothesis.llr(windows[:, None], x, n)
    s = np.zeros(replicates)
    peak = np.zeros(replicates)
    for step in steps:
        s = np.maximum(0.0, s + step)
        np.maximum(peak, s, out=peak)
    peak.sort()
    if alpha * replicates >= 10:
        return float(np.quantile(peak, 1 - alpha))
    positive = peak[peak > 0]
    if len(positive) < 5:
        return float(peak[-1]) + 1e-9
    k = max(5, min(len(positive), replicates // 20))
    base = float(positive[-k - 1]) if k < len(positive) else 0.0
    above = positive[positive > base] - base
    share = len(above) / replicates
    return base + float(above.mean()) * max(0.0, math.log(share / alpha))


def delay(hypothesis, windows: np.ndarray, x: np.ndarray, n: np.ndarray, threshold: float,
          start: int) -> int | None:
    """Windows from ``start`` (1 = the alarm is on the first window at or after it) until the CUSUM
    over ``windows`` (with observations ``x``, ``n``) reaches ``threshold``; an alarm before
    ``start`` restarts it. None: no alarm."""
    windows = np.asarray(windows)
    steps = hypothesis.llr(windows, np.asarray(x, float), np.asarray(n, float)).tolist()
    s = 0.0
    for i, w in enumerate(windows.tolist()):
        s = max(0.0, s + steps[i])
        if s >= threshold:
            if w >= start:
                return int(w - start + 1)
            s = 0.0
    return None


def alarms(hypothesis, windows: np.ndarray, x: np.ndarray, n: np.ndarray, threshold: float) -> int:
    """Alarms of the CUSUM over ``windows`` (restarted after each): on windows known to be
    normal, the oracle's real false alarms."""
    windows = np.asarray(windows)
    steps = hypothesis.llr(windows, np.asarray(x, float), np.asarray(n, float)).tolist()
    s, count = 0.0, 0
    for step in steps:
        s = max(0.0, s + step)
        if s >= threshold:
            count, s = count + 1, 0.0
    return count


def tail_threshold(hypothesis, windows: np.ndarray, x: np.ndarray, n: np.ndarray, alpha: float,
                   top: int = 20) -> float:
    """The threshold at which the CUSUM over real normal ``windows`` would raise alarms at ``alpha``
    a day: the heights of its excursions (from 0 back to 0), their exponential tail fitted to the
    ``top`` highest (their mean excess over the next one) at the rate such excursions come a day.
    The noise here is the real one, which the model's is not (a session's events fall in several
    windows, order values are heavy-tailed): a CUSUM's excursions are taller on it, and the tail
    says by how much. 0 when it has no excursion; the highest one when it has under five."""
    steps = hypothesis.llr(np.asarray(windows), np.asarray(x, float), np.asarray(n, float)).tolist()
    heights, s, high = [], 0.0, 0.0
    for step in steps:
        s = s + step if s + step > 0.0 else 0.0
        if s > 0.0:
            high = s if s > high else high
        elif high > 0.0:
            heights.append(high)
            high = 0.0
    if high > 0.0:
        heights.append(high)
    if len(heights) < 5:
        return max(heights, default=0.0)
    heights = np.sort(np.asarray(heights))[::-1]
    k = min(top, len(heights) - 1)
    base = float(heights[k])
    excess = float(np.mean(heights[:k] - base))
    per_day = k / (len(windows) / DAY_WINDOWS)
    return base + excess * max(0.0, math.log(per_day / alpha))


def peak(hypothesis, windows: np.ndarray, x: np.ndarray, n: np.ndarray) -> float:
    """The CUSUM's largest value over ``windows`` (never restarted): on windows known to be
    normal, the least threshold at which it raises no alarm there."""
    steps = hypothesis.llr(np.asarray(windows), np.asarray(x, float), np.asarray(n, float))
    s, top = 0.0, 0.0
    for step in steps.tolist():
        s = s + step if s + step > 0.0 else 0.0
        top = s if s > top else top
    return top


def expected_delay(hypothesis, windows: np.ndarray, threshold: float, rng: np.random.Generator,
                   replicates: int = 300) -> float:
    """The median delay (windows) of the CUSUM started at 0 on the first of ``windows``, over
    replicates drawn under the shift; ``inf`` when most replicates raise no alarm within them."""
    windows = np.asarray(windows)
    if not len(windows):
        return float("inf")
    x, n = hypothesis.sample(rng, windows, replicates, True)
    steps = hypothesis.llr(windows[:, None], x, n)
    s = np.zeros(replicates)
    alarm = np.full(replicates, np.inf)
    for i, step in enumerate(steps):
        s = np.maximum(0.0, s + step)
        alarm = np.where(np.isinf(alarm) & (s >= threshold), i + 1, alarm)
    return float(np.median(alarm))

"""Raw scores of any model on our rarity scale: how rare is this raw score among past ones?

River's anomaly models score on scales of their own (HalfSpaceTrees: mass in [0, 1]; a
forecaster's absolute error: the series' units). :class:`RankCalibration` keeps the last
``memory`` raw scores and turns a new one into a tail probability ``p`` = the share of past raw
scores at least as large; beyond the largest ones (the top ``top`` share, at least 10) the tail is
an exponential fitted to their excesses (peaks over threshold, as in Siffer et al., "Anomaly
detection in streams with extreme value theory", KDD 2017), so that a raw score far beyond any seen
can be one in a million although only ``memory`` were kept. Then ``score = score_of_p(p)``, so one
threshold means one rarity for our detectors and for River's.

>>> import random
>>> rng = random.Random(7)
>>> calibration = RankCalibration(memory=1000)
>>> for _ in range(1000):
...     calibration.learn(abs(rng.gauss(0.0, 1.0)))
>>> round(calibration.p(0.0), 2), round(calibration.p(1.96), 2)     # |N(0,1)|: 5 % beyond 1.96
(1.0, 0.05)
>>> calibration.p(8.0) < 1e-6                                      # far beyond: very rare
True
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque


class RankCalibration:
    """Online empirical tail probability of raw scores, with an exponential tail (see the module)."""

    def __init__(self, memory: int = 1000, top: float = 0.02) -> None:
        self.memory = memory
        self.top = top
        self.history: deque[float] = deque()   # the last ``memory`` raw scores, oldest first
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self.history)

    def learn(self, raw: float) -> None:
        if not math.isfinite(raw):
            return
        self.history.append(raw)
        insort(self._sorted, raw)
        if len(self.history) > self.memory:
            old = self.history.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def restore(self, history: list[float]) -> None:
        self.history = deque(history)
        self._sorted = sorted(history)

    def _tail(self) -> tuple[int, float, float]:
        """(k, u, mean excess): the k largest raw scores are above or at u, by mean excess on average."""
        n = len(self._sorted)
        k = min(n, max(10, math.ceil(self.top * n)))
        top = self._sorted[n - k:]
        u = top[0]
        return k, u, sum(top) / k - u

    def p(self, raw: float) -> float:
        """The tail probability of ``raw``: 1.0 with no history."""
        n = len(self._sorted)
        if n == 0 or not math.isfinite(raw):
            return 1.0
        at_least = n - bisect_left(self._sorted, raw)
        empirical = (at_least + 1) / (n + 1)
        k, u, excess = self._tail()
        if at_least > k or raw <= u or excess <= 0.0:
            return empirical
        return min(empirical, k / (n + 1) * math.exp(-(raw - u) / excess))

    def raw_at(self, p: float) -> float | None:
        """The raw score whose tail probability is ``p`` (beyond the top share), None if unknown."""
        n = len(self._sorted)
        if n == 0:
            return None
        k, u, excess = self._tail()
        if excess <= 0.0:
            return None
        return u + excess * max(0.0, math.log(k / ((n + 1) * p)))

"""The Page-Hinkley test that re-levels a series after a lasting shift.

The same recursion as ``river.drift.PageHinkley`` (``tests/unit/test_detector_oracles.py`` runs
both on random streams and requires the same decisions), with its state in public fields, so
that the state format stores our own fields and not River's private ones.

>>> ph = PageHinkley(min_instances=10, delta=1.0, threshold=80.0)
>>> for i in range(200):
...     ph.update(0.0 if i < 100 else 5.0)     # residuals jump by 5 sigma at point 100
...     if ph.drift_detected:
...         print("shift adopted at point", i)
shift adopted at point 122
"""

from __future__ import annotations

#: The running state, in the order the state format stores it.
STATE_FIELDS = ("n", "mean", "sum_increase", "sum_decrease", "min_increase", "max_decrease", "drift_detected")


class PageHinkley:
    """Two-sided Page-Hinkley test of a shift in the mean of ``update``'s values.

    ``alpha`` is the forgetting factor of the cumulative sums; after a detection the next
    ``update`` starts afresh, as River's does.
    """

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.reset()

    def reset(self) -> None:
        self.n = 0.0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.sum_decrease = 0.0
        self.min_increase = float("inf")
        self.max_decrease = -1
        self.drift_detected = False

    def update(self, x: float) -> None:
        if self.drift_detected:
            self.reset()
        self.n += 1.0
        self.mean += (1.0 / self.n) * (x - self.mean)
        dev = x - self.mean
        self.sum_increase = self.alpha * self.sum_increase + dev - self.delta
        self.sum_decrease = self.alpha * self.sum_decrease + dev + self.delta
        if self.sum_increase < self.min_increase:
            self.min_increase = self.sum_increase
        if self.sum_decrease > self.max_decrease:
            self.max_decrease = self.sum_decrease
        if self.n >= self.min_instances:
            self.drift_detected = (self.sum_increase - self.min_increase > self.threshold
                                   or self.max_decrease - self.sum_decrease > self.threshold)

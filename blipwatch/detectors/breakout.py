"""Value series: a value beyond the whole range seen so far.

The residual and the level change judge a point against the recent level and the series' own
history of residuals; a series that has always stayed between 20 and 80 and now reads 95 can
still look ordinary to them when its noise is large or its level has just moved. So kind
``value`` also keeps the lowest and the highest value it has learned: a point beyond them by
more than ``breakout_margin`` times their distance (0: off) scores at least
:data:`BREAKOUT_SCORE`. A steady climb never breaks out (each point is at most a little beyond
the last one, the highest so far), a jump to a new extreme does; and as for the level change,
the range must first have seen ``learn_freely`` + 3 / ``change_slow`` points. Only learned
points widen the range, so one outlier that a ThresholdFilter keeps out does not hide the next.

A mixin of :class:`blipwatch.detectors.value.ValueDetector`.

>>> from blipwatch.detectors import make_detector
>>> det = make_detector("value", {"calibrate_memory": 0, "change_memory": 0, "news_decay": 0})
>>> for minute in range(400):
...     det.learn_one({"t": minute * 60.0, "value": 50.0 + 30.0 * (minute % 20 == 0)})
>>> det._breakout(80.5), det._breakout(49.5), det._breakout(84.0)    # range 50-80, margin 0.9
(0.0, 0.0, 0.5)
"""

from __future__ import annotations

#: The score of a breakout (a tail probability of 1e-5): above the thresholds NAB's profiles
#: choose for the other scores (0.28-0.35), below the default alerting threshold 0.6.
BREAKOUT_SCORE = 0.5


class RangeBreakout:
    """The range of the learned values and the score of a point beyond it (a mixin)."""

    _BREAKOUT_FIELDS = ("range_low", "range_high")

    def _reset_breakout(self) -> None:
        self.range_low: float | None = None    # the lowest and highest learned values
        self.range_high: float | None = None

    def _breakout(self, x: float) -> float:
        """:data:`BREAKOUT_SCORE` if ``x`` is beyond the range by more than the margin, else 0."""
        low, high = self.range_low, self.range_high
        if low is None or self.n_learned < self.learn_freely + 3.0 / self.change_slow:
            return 0.0
        margin = self.breakout_margin * (high - low)
        if margin > 0.0 and (x > high + margin or x < low - margin):
            return BREAKOUT_SCORE
        return 0.0

    def _learn_breakout(self, x: float) -> None:
        if self.range_low is None:
            self.range_low = self.range_high = x
        elif x < self.range_low:
            self.range_low = x
        elif x > self.range_high:
            self.range_high = x

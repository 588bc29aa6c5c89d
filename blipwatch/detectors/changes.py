"""Value series: a change of level judged by the series' own history, and only news scored.

One point's residual sees a spike; it barely sees a level that steps by two sigma (the level
follows it within ~10 points). So kind ``value`` also keeps a fast mean of the values
(``change_fast`` per point) minus a slow one (``change_slow``), judged by the decayed histogram
of its own past values (as the residuals are, :mod:`~blipwatch.detectors.calibration`), so a
series whose level wanders all the time does not alert on wandering. The score is the rarer of
the point and the change. (The same for the spread, a fast over a slow mean of the squared
residuals, lost more on NAB than it caught: 53.9 -> 52.5.) ``change_memory`` points of memory
(0: off). Then ``news_decay``: a score counts only while it is news, i.e. above every score of
the recent past, that reference falling by ``news_decay`` per point; below it the point scores
0. One incident then makes one detection at its onset, not one per point while it lasts
(NAB counts every flagged point outside a labelled window as a false positive).

A mixin of :class:`blipwatch.detectors.value.ValueDetector`.

>>> from blipwatch.detectors import make_detector
>>> import random
>>> rng = random.Random(1)
>>> det = make_detector("value", {"breakout_margin": 0})   # the change alone
>>> for minute in range(1500):
...     det.learn_one({"t": minute * 60.0, "value": 100.0 + rng.gauss(0, 1)})
>>> scores = []
>>> for minute in range(1500, 1540):                   # the level steps up by 2.5 sigma
...     x = {"t": minute * 60.0, "value": 102.5 + rng.gauss(0, 1)}
...     scores.append(det.score_one(x))
...     det.learn_one(x)
>>> round(scores[0], 1), round(max(scores), 1)     # seen at its onset, certain as it lasts
(0.3, 1.0)
>>> sum(s > 0 for s in scores)                       # news only: most of its 40 points score 0
6
"""

from __future__ import annotations

import math

from blipwatch.detectors.calibration import exceedance, learn_bin, log_bin


class ChangeEvidence:
    """A level change judged by its own history, and news-only scores (a mixin)."""

    _CHANGE_FIELDS = ("chg_fast", "chg_slow", "chg_seen", "chg_hist", "news_ref")

    def _reset_changes(self) -> None:
        self.chg_fast = self.chg_slow = 0.0     # fast and slow EW means of the values
        self.chg_seen = 0                       # points learned by them
        self.chg_hist: list = [[], 0.0, 1.0]    # histogram [bins, total, unit] of |fast - slow|
        self.news_ref = 0.0                     # the recent scores' reference (falls by news_decay)
        self._chg_cache: tuple | None = None

    def _change_score(self, key: tuple, x: float) -> tuple[float, int]:
        """The level change with the point ``x`` on the rarity scale, and its histogram bin."""
        cache = self._chg_cache
        if cache is not None and cache[0] == key:
            return cache[1]
        change = abs(self.chg_fast + self.change_fast * (x - self.chg_fast) - self.chg_slow)
        per = self.calibrate_bins
        b = log_bin(change, per)
        score = 0.0
        total = self.chg_hist[1]
        # its histogram must first have seen the slow mean settle, three of its time constants
        # (330 points): judged on its first few dozen values, a slow wave's first ramp was a
        # "change" larger than any seen (and, under River's ThresholdFilter, never learned after)
        if self.chg_seen >= self.learn_freely + 3.0 / self.change_slow and total > 0:
            best = exceedance(self.chg_hist[0], total, change, per, self.calibrate_top, self.calibrate_tail)
            score = -math.log10(max(best / total, 1e-10)) / 10.0
        result = (score, b)
        self._chg_cache = (key, result)
        return result

    def _learn_changes(self, key: tuple, x: float) -> None:
        _, b = self._change_score(key, x)
        self._chg_cache = None
        if self.chg_seen == 0:
            self.chg_fast = self.chg_slow = x
        else:
            if self.chg_seen >= self.learn_freely:
                learn_bin(self.chg_hist, b, self.change_memory)
            self.chg_fast += self.change_fast * (x - self.chg_fast)
            self.chg_slow += self.change_slow * (x - self.chg_slow)
        self.chg_seen += 1

    def _news(self, score: float) -> float:
        """The score if it is news (above the recent scores' reference), else 0."""
        if not self.news_decay:
            return score
        return score if score > self.news_ref else 0.0

    def _learn_news(self, score: float) -> None:
        if self.news_decay:
            ref = self.news_ref - self.news_decay
            self.news_ref = score if score > ref else ref

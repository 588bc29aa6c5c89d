"""The shared base of our four detector kinds: a River anomaly detector for one metric series.

River's two verbs on a dict ``x`` with keys ``value``, ``numerator``, ``denominator`` and ``t``
(the window start in seconds; by default one minute after the last learned point):
``score_one(x)`` says how unusual the point is, before seeing it, as one float on the rarity
scale (:mod:`blipwatch.detectors.tails`); ``learn_one(x)`` then learns it. ``judge_one(x)``
gives the whole judgement (:class:`Scored`: expected value, bounds, direction). So River's
``anomaly.ThresholdFilter``, ``compose.Pipeline`` and ``evaluate`` take these detectors:

>>> from river import anomaly
>>> from blipwatch.detectors import make_detector
>>> flagged = anomaly.ThresholdFilter(make_detector("value"), threshold=0.6)
>>> for minute in range(100):
...     x = {"value": 50.0 + minute % 3}               # no t: one minute after the last point
...     _ = flagged.score_one(x)
...     flagged.learn_one(x)                           # anomalies are not learned
>>> flagged.classify(flagged.score_one({"value": 51.0})), flagged.classify(flagged.score_one({"value": 90.0}))
(False, True)

How a point is judged
---------------------
* **Expected value**: a robust level with a damped trend (Holt), moved along a learned daily
  profile (:mod:`~blipwatch.detectors.profile`). Once a bin has been seen on an earlier day, the
  level moved along the profile is a competing prediction, and a point is judged by the one that
  explains it best (a step seen yesterday at 09:00 is normal today).
* **Noise model per kind**: rates are binomial in their denominator (4 carts is weak evidence,
  4,000 strong), counts Poisson, means shrink with their number of observations; each adds an
  extra variance learned online (quasi-binomial / quasi-Poisson), so a busy evening with the same
  rates does not look like an incident.
* **Score**: a signed deviance residual ``z`` turned into a two-sided tail probability, or the
  sequential evidence of a run of windows if that is rarer (:mod:`~blipwatch.detectors.sequential`).
* **Robust learning**: a point moves the level and the noise by at most ``clip_z`` sigma; a
  lasting shift is adopted on purpose (a Page-Hinkley test on the clipped ``z``, or
  ``adopt_after`` points of frozen learning), and the previous normal is remembered for
  ``remember`` points, so a series that returns to it snaps back.

Why not River's components as they are: ``stats.EWMean``/``EWVar`` are Rust objects whose
state cannot be exported to our explicit, versioned format, so their recursions are ours;
``time_series.HoltWinters`` needs a full season before forecasting; ``anomaly.GaussianScorer``
scores 1.0 on every point of a flat series. (They can still be named in the config:
:mod:`~blipwatch.detectors.river_models`.)

On the scoring path (once or more per window) ``min``/``max`` of two floats are conditional
expressions: the same result, NaN and signed zeros included, ~0.1 us cheaper each. ``_var_total``
is ``_variance(mu, n)[1]`` written out per kind; ``tests/unit/test_detector_oracles.py`` checks
one against the other.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Mapping

from river import base

from blipwatch.detectors.learning import RobustLearning
from blipwatch.detectors.page_hinkley import PageHinkley
from blipwatch.detectors.profile import _BIN_CACHES, DAY_SECONDS, DailyProfile
from blipwatch.detectors.scored import Scored
from blipwatch.detectors.sequential import SequentialEvidence
from blipwatch.detectors.settings import SettingsError, resolve_settings
from blipwatch.detectors.tails import cusum_score, t_tail_score, tail_score, z_for_score

_MINUTE = 60.0


class SeriesDetector(RobustLearning, SequentialEvidence, DailyProfile, base.AnomalyDetector):
    """Base of the four kinds (rate, count, mean, value); see the module docstring.

    Use :func:`blipwatch.detectors.make_detector`.
    """

    kind = "value"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = resolve_settings(self.kind, settings)
        if "model" in self.settings:
            raise SettingsError(f"{type(self).__name__} is our own model; make_detector runs a River one")
        for key, value in self.settings.items():
            setattr(self, key, value)
        self._band_z = z_for_score(self.threshold)
        #: a point (or two windows pooled) at least this rare holds learning for ``hold_after``
        #: points: the rarity of a CUSUM at ``freeze_at`` (p ~ 1e-4)
        self._hold_score = cusum_score(self.freeze_at, self.cusum_k)
        # per-series constants of the scoring path (the settings do not change after this)
        self._bins = _BIN_CACHES.setdefault(self.season_bins, {})
        self._pools = self.pool_windows > 1 and bool(self.sequential)
        self._one_bin = self.season_bins == 1
        self._bin_minutes = DAY_SECONDS / _MINUTE / self.season_bins   # one-minute windows per profile bin
        #: one point's tail: Student's t with ``tail_dof`` > 0 degrees of freedom, else normal; chosen once
        self._point_score = partial(t_tail_score, dof=self.tail_dof) if self.tail_dof > 0 else tail_score
        self._reset()

    def _reset(self) -> None:
        self.n_learned = 0
        self.t_last: float | None = None
        self.level = 0.0
        self.trend = 0.0
        self.volume_mean = 0.0       # EW mean of the evidence behind a point (rates, means)
        self.extra_sum = 0.0         # bias-corrected EW of the extra variance samples
        self.extra_weight = 0.0
        self.profile = [0.0] * self.season_bins   # level per bin, averaged over days
        self.profile_days = [0] * self.season_bins
        self.bin_current = -1
        self.bin_sum = 0.0
        self.bin_count = 0
        self.bin_pending = None      # a count's last bin, [bin, sum, count], folded one bin later
        self.step_noise_sum = 0.0    # bias-corrected EW over bins of a count's bin noise (profile steps' damping)
        self.step_noise_weight = 0.0
        self.offset = 0.0            # sum of re-level jumps, kept out of the profile
        self.relevel_t = -math.inf   # when the offset last changed (the profile's bins mix two offsets for a day)
        self.recent: list[float] = []   # last few observations, the new level on a re-level
        self.prev_delta: float | None = None   # jump of the last re-level, while remembered
        self.prev_left = 0
        self.cusum_up = 0.0          # sequential evidence of a rise / fall, in sigma (CUSUM)
        self.cusum_down = 0.0
        self.guard_up = 0.0          # the learning guard's CUSUMs (reference guard_k; they slow learning only)
        self.guard_down = 0.0
        self.pool_prev: list[float] | None = None   # the last window: observation, evidence, expected
        self.evidence_up = 0.0       # volume behind each CUSUM (sum of the points' volumes while it is > 0)
        self.evidence_down = 0.0
        self.shift_up = 0.0          # sum of z * sqrt(volume) over the points behind each CUSUM: the run's
        self.shift_down = 0.0        # shift per unit of volume is shift / evidence
        self.frozen_run = 0          # consecutive points not learned because evidence was building
        self.hold_left = 0           # points still not learned after one scored at the freeze level
        self.last_z = 0.0            # residual of the previous learned point
        self.ac_cross = 0.0          # EW of z_t * z_(t-1), z_t^2 and z_t: lag-1 autocorrelation of residuals
        self.ac_square = 0.0
        self.ac_mean = 0.0
        self.shift = PageHinkley(min_instances=10, delta=self.relevel_delta,
                                 threshold=self.relevel_threshold, alpha=1.0)
        #: (point, judgement) of the last ``_judge``: scoring and learning the same point judge it once
        self._cache: tuple | None = None
        #: (the ``_judge`` result it belongs to, up, down, volume): the CUSUMs after the point that
        #: scoring computed, reused by learning (same point, same state in between)
        self._cusum_cache: tuple | None = None

    # --- River's verbs ---------------------------------------------------------------------

    def _default_t(self) -> float:
        return 0.0 if self.t_last is None else self.t_last + _MINUTE

    def judge_one(self, x: Mapping[str, Any]) -> Scored:
        """The whole judgement of the point ``x`` (expected, bounds, score, direction), before learning it."""
        get = x.get
        t = get("t")
        return self._scored(self._default_t() if t is None else t, get("value"), get("numerator"),
                            get("denominator"))

    def score_one(self, x: Mapping[str, Any]) -> float:
        """How rare the point ``x`` is, before learning it: ``judge_one(x).score``."""
        return self.judge_one(x).score

    def learn_one(self, x: Mapping[str, Any]) -> None:
        """Learn the point ``x`` (after scoring it); a point without evidence is skipped."""
        get = x.get
        t = get("t")
        self._learn(self._default_t() if t is None else t, get("value"), get("numerator"), get("denominator"))

    def learn_as_normal(self, x: Mapping[str, Any]) -> None:
        """Learn ``x`` as a normal point even where building evidence of a blip would freeze
        learning: people called it harmless (``pipeline.feedback``). As the first points are learned."""
        freely, self.learn_freely = self.learn_freely, self.n_learned + 1
        try:
            self.learn_one(x)
        finally:
            self.learn_freely = freely

    # --- kind hooks ------------------------------------------------------------------------

    def _observe(self, value, numerator, denominator) -> tuple[float, float] | None:
        """The observation and the evidence behind it, or None (no evidence)."""
        if value is None or not math.isfinite(value):
            return None
        n = 1.0 if denominator is None else float(denominator)
        if n <= 0:
            return None
        return float(value), n

    def _clamp(self, mu: float) -> float:
        return mu

    def _sampling_var(self, mu: float, n: float) -> float:
        """Variance a point would have from sampling alone (rates, counts), else 0."""
        return 0.0

    def _extra_var(self, mu: float, n: float) -> float:
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return max(est, 0.0)

    def _floor_var(self, mu: float) -> float:
        return 0.0

    def _variance(self, mu: float, n: float) -> tuple[float, float]:
        """(sampling, total) variance of a point of evidence ``n`` expected at ``mu``."""
        sampling = self._sampling_var(mu, n)
        extra = self._extra_var(mu, n)
        # young series: the noise estimate itself is uncertain, widen it
        extra *= 1.0 + 4.0 / (self.extra_weight + 1.0)
        return sampling, sampling + extra + self._floor_var(mu)

    def _var_total(self, mu: float, n: float) -> float:
        """``_variance(mu, n)[1]``; kinds on the scoring path write it out."""
        return self._variance(mu, n)[1]

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        return e * e - self._sampling_var(mu, n)

    def _residual_z(self, x: float, mu: float, n: float, var_total: float) -> float:
        return (x - mu) / math.sqrt(var_total)

    def _noise_sample(self, e: float, mu: float, n: float, residual: float) -> float:
        """One sample of the extra noise; ``residual`` is z times the total standard deviation."""
        return self._extra_sample(e, mu, n)

    def _dispersion_sample(self, mu: float, n: float, residual: float) -> float:
        """Counts and rates: the extra dispersion factor (phi - 1) from the deviance residual, not
        the Pearson one, which explodes on small counts (4 complaints against 0.35 expected is
        a Pearson residual of 38 but a deviance residual of 3.5)."""
        deviance_z = residual / math.sqrt(self._sampling_var(mu, n))
        clip = 2.0 * self.clip_z
        low = -clip
        deviance_z = deviance_z if deviance_z < clip else clip
        deviance_z = deviance_z if deviance_z > low else low
        return deviance_z * deviance_z - 1.0

    def _volume(self, x: float, mu: float, n: float) -> float:
        return n

    def _skew_room(self, mu: float, n: float, var_total: float) -> float:
        """How much further than ``clip_z`` sigma a point may move the level on the side of the
        longer tail (positive: above ``mu``, negative: below): counts and rates of rare events
        are skewed, and a symmetric clip biased their levels low. 0: a symmetric noise model."""
        return 0.0

    def _bounds(self, mu: float, half: float) -> tuple[float, float]:
        return mu - half, mu + half

    # --- judging a point -------------------------------------------------------------------

    def _judge(self, t: float, value, numerator, denominator):
        """(observation, expected, total variance, z, returning to the previous normal, seasoned)."""
        key = (t, value, numerator, denominator)
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        obs = self._observe(value, numerator, denominator)
        if self.n_learned == 0:
            result = (obs, None, None, 0.0, None, False)
        else:
            n = obs[1] if obs is not None else (self.volume_mean or 1.0)
            plain, seasonal = self._bases(t)
            mu = self._clamp(plain)
            var_total = self._var_total(mu, n)
            z, returning = 0.0, False
            if obs is not None:
                z = self._residual_z(obs[0], mu, n, var_total)
            # most points have abs(z) < 1.0: nothing could explain them better
            if obs is not None and not abs(z) < 1.0:
                # The point is judged by the hypothesis that explains it best: the level alone,
                # the level moved along yesterday's profile (a step seen yesterday at this time is
                # normal today; an incident yesterday does not make its absence today an alert),
                # and, after a re-level, the previous normal (the incident is over).
                candidates = []
                if seasonal is not None:
                    candidates.append((self._clamp(seasonal), False))
                if self.prev_delta is not None:
                    candidates.append((self._clamp(mu * math.exp(-self.prev_delta) if self.multiplicative
                                                   else mu - self.prev_delta), True))
                guard = self.guard_at
                for mu_other, is_previous in candidates:
                    if abs(z) < 1.0:
                        break
                    if not is_previous and guard > 0.0 and (
                            (mu_other < mu and self.guard_down >= guard) or (mu_other > mu and self.guard_up >= guard)):
                        # while the guard holds learning, a profile step the run's way does not
                        # explain a point (one day's noisy step ratcheted the level into a drop)
                        continue
                    v_other = self._var_total(mu_other, n)
                    z_other = self._residual_z(obs[0], mu_other, n, v_other)
                    # snapping back to the previous normal needs a point that is clearly
                    # the old normal and clearly not the new one (noise near the middle is not),
                    # or, where one window is too noisy to be clear (a mean of a few orders), the
                    # last five windows whose median is nearer the old normal than the new
                    if self.sequential:
                        back = abs(z_other) < 1.0 and abs(z) >= 2.0 * self.clip_z
                        if not back and is_previous and len(self.recent) >= 4:
                            window = sorted(self.recent[-4:] + [obs[0]])
                            middle = window[2]
                            back = abs(middle - mu_other) < abs(middle - mu)
                    else:
                        back = abs(z_other) < self.clip_z
                    if abs(z_other) < abs(z) and (not is_previous or back):
                        mu, var_total, z, returning = mu_other, v_other, z_other, is_previous
            result = (obs, mu, var_total, z, returning, seasonal is not None)
        self._cache = (key, result)
        return result

    def _scored(self, t: float, value, numerator, denominator) -> Scored:
        """How unusual ``value`` at window start ``t`` is, judged before learning it."""
        judged = self._judge(t, value, numerator, denominator)
        obs, mu, var_total, z, _, seasoned = judged
        x = obs[0] if obs is not None else (None if value is None else float(value))
        if mu is None:
            return Scored(x, None, None, None, 0.0, None, False, 0.0, obs[1] if obs else 0.0)
        half = self._band_z * math.sqrt(var_total)
        lower, upper = self._bounds(mu, half)
        if obs is None:
            return Scored(x, mu, lower, upper, 0.0, None, False, 0.0, 0.0)
        x, n = obs
        point_score = self._point_score
        burst = score = point_score(z)
        direction = "up" if z > 0 else "down" if z < 0 else None
        # evidence over several points: a 2-sigma rise held for 6 windows is as rare as one
        # 5-sigma point, and on small segments it is the only way a blip can be seen
        volume = point_volume = self._volume(x, mu, n)
        if self.sequential:
            rho, bias = self._residual_rho(), self._residual_bias()
            step = self._step(z, rho, bias)
            lean_up, lean_down = self._leans(point_volume)
            up, down = self._advance(self.cusum_up, self.cusum_down, step, z, self.cusum_k, 0.5, lean_up, lean_down)
            guard = self._guard_step(step, z) if self.guard_at > 0.0 else (0.0, 0.0)
        else:
            up = down = 0.0
            guard = (0.0, 0.0)
        cusum_up, cusum_down = up, down
        seasonal_only = self.sequential_seasoned
        if seasonal_only and not seasoned:
            up = down = 0.0
        peak = down if down > up else up
        if peak > 0.0:
            sequential = self._cusum_score(peak)
            if sequential > score:
                score, direction = sequential, "up" if up >= down else "down"
                # the evidence is the run of points behind the CUSUM, not this point alone
                volume += self.evidence_up if direction == "up" else self.evidence_down
        prev = self.pool_prev
        if self._pools and prev is not None and (seasoned or not seasonal_only):
            pooled_z = self._pooled_z(x, n, mu, rho, bias)
            pooled = point_score(pooled_z)
            burst = pooled if pooled > burst else burst
            if pooled > score:
                score, direction = pooled, "up" if pooled_z > 0 else "down"
                volume += self._volume(prev[0], prev[2], prev[1])
        # learning needs the same CUSUMs (no state they depend on changes in between), the
        # point's own volume (a function of x, mu and n alone) and the evidence of the point or
        # the two windows pooled (it holds learning; the CUSUMs freeze it themselves)
        self._cusum_cache = (judged, cusum_up, cusum_down, point_volume, burst, guard)
        return Scored(x, mu, lower, upper, score, direction, score >= self.threshold, z, volume)

    #: The running state, in the order the state format stores it (kinds add their own).
    _STATE_FIELDS = ("n_learned", "t_last", "level", "trend", "volume_mean", "extra_sum",
                     "extra_weight", "profile", "profile_days", "bin_current", "bin_sum",
                     "bin_count", "bin_pending", "offset", "relevel_t", "recent", "prev_delta", "prev_left", "cusum_up",
                     "cusum_down", "guard_up", "guard_down", "pool_prev", "evidence_up", "evidence_down", "shift_up", "shift_down", "frozen_run", "last_z",
                     "ac_cross", "ac_square", "ac_mean", "hold_left", "step_noise_sum",
                     "step_noise_weight")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_learned={self.n_learned}, level={self.level:.6g})"

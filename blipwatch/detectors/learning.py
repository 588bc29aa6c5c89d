"""Robust learning of a series' normal: spikes are not learned, lasting shifts are adopted.

A point moves the level and the noise estimates by at most ``clip_z`` sigma. While a CUSUM is
above ``slow_at`` the level learns at a tenth of its rate; above ``freeze_at`` nothing is
learned (a blip stays visible for as long as it lasts) but the level still follows the daily
profile. A blip that lasts ``adopt_after`` points is the new normal; so is a shift that the
Page-Hinkley test on the clipped residuals confirms (:mod:`~blipwatch.detectors.page_hinkley`).
After a re-level the previous normal is remembered for ``remember`` points.

A mixin of :class:`blipwatch.detectors.base.SeriesDetector`.

>>> from blipwatch.detectors import make_detector
>>> det = make_detector("value")
>>> for minute in range(200):
...     value = 10.0 if minute < 100 else 50.0           # a lasting shift at minute 100
...     det.learn_one({"t": minute * 60.0, "value": value})
>>> round(det.level)                                  # the new normal, adopted
50
"""

from __future__ import annotations

import math


class RobustLearning:
    """``_learn`` and the level's updates (a mixin; see the module docstring)."""

    def _learn(self, t: float, value, numerator, denominator) -> None:
        """Learn the point (after scoring it); a point without evidence is skipped."""
        judged = self._judge(t, value, numerator, denominator)
        obs, mu, var_total, z, returning, seasoned = judged
        cusums = self._cusum_cache
        if (cusums is None or cusums[0] is not judged) and obs is not None and mu is not None:
            # learned without being scored first: the scoring's CUSUMs and score are needed
            if self.sequential:
                self._scored(t, value, numerator, denominator)
                cusums = self._cusum_cache
            else:
                cusums = (judged, 0.0, 0.0, self._volume(obs[0], mu, obs[1]), 0.0, (0.0, 0.0))
        self._cache = None
        self._cusum_cache = None
        if obs is None:
            self.pool_prev = None   # nothing to pool with: the next window is judged on its own
            return
        x, n = obs
        self.pool_prev = None if mu is None else [x, n, mu]
        if mu is None:
            self._start_level(x, n)
            self.volume_mean = n
            self.t_last = t
            self.n_learned = 1
            self._start_noise(x)
            self._commit_profile(t, x)
            return
        if returning:
            self._apply_relevel(-self.prev_delta)
            self.prev_delta, self.prev_left = None, 0
            self.shift.reset()
        elif self.prev_delta is not None:
            self.prev_left -= 1
            if self.prev_left <= 0:
                self.prev_delta = None

        _, up, down, point_volume, score, (guard_up, guard_down) = cusums   # the scoring's, for this very judgement
        self._note_run(score, up, down)
        if self.sequential_seasoned and not seasoned:   # as when scoring: no run builds up (nor freezes)
            up = down = guard_up = guard_down = 0.0
        self.evidence_up = self.evidence_up + point_volume if up > 0 else 0.0
        self.evidence_down = self.evidence_down + point_volume if down > 0 else 0.0
        if up > 0 or down > 0:   # most points: neither CUSUM runs, no root to take
            root = math.sqrt(point_volume) if point_volume > 0.0 else 0.0
            self.shift_up = self.shift_up + z * root if up > 0 else 0.0
            self.shift_down = self.shift_down - z * root if down > 0 else 0.0
        else:
            self.shift_up = self.shift_down = 0.0
        recent = self.recent
        recent.append(x)
        del recent[:-5]
        held = False
        if self.n_learned < self.learn_freely:
            up = down = guard_up = guard_down = 0.0
        elif returning:
            self.hold_left = 0   # back at the old normal: the blip is over
        elif self.sequential and (seasoned or not self.sequential_seasoned):
            # a point (or two windows pooled) as rare as a CUSUM at freeze_at holds learning for
            # hold_after points: a blip on a few events a window has windows that look normal,
            # and a CUSUM halved by each of them never reaches freeze_at, so
            # the blip was learned (a complaint surge, a conversion drop on a small segment).
            # Not before the profile knows the time of day (counts): the first 09:00 step is news,
            # and the profile must learn it to know it the next day
            if score >= self._hold_score:
                self.hold_left = self.hold_after
            if self.hold_left > 0:
                self.hold_left -= 1
                held = True
        self.cusum_up, self.cusum_down = up, down
        self.guard_up, self.guard_down = guard_up, guard_down
        peak = down if down > up else up
        guard = self.guard_at
        guarded = guard > 0.0 and (guard_up >= guard or guard_down >= guard)
        slow = held or peak >= self.slow_at or guarded
        # a blip that outlasts adopt_after points (of evidence above slow_at) is the new normal
        if slow:
            self.frozen_run += 1
            if self.frozen_run >= self.adopt_after:
                self._adopt()
                self.t_last = t
                self.n_learned += 1
                self._commit_profile(t, x)
                return
        else:
            self.frozen_run = 0
        if peak >= self.freeze_at:
            self._not_learned(x, n, mu, var_total, 1.0)
            # evidence of a blip is building: learn nothing from it, so the blip stays visible
            # for as long as it lasts; but normal moves on along the daily curve (a 40-minute
            # tracking drop in the morning ramp must not leave the level where the ramp began)
            self._follow_profile(t)
            self.t_last = t
            self.n_learned += 1
            self._commit_profile(t, None)   # nor does the profile learn the blip's values
            return
        clip_z = self.clip_z
        alpha_var = self.alpha_var
        keep = 1 - alpha_var
        low = -clip_z
        z_clipped = z if z < clip_z else clip_z
        z_clipped = z_clipped if z_clipped > low else low
        self.ac_cross = keep * self.ac_cross + alpha_var * z_clipped * self.last_z
        self.ac_square = keep * self.ac_square + alpha_var * z_clipped * z_clipped
        self.ac_mean = keep * self.ac_mean + alpha_var * z_clipped
        self.last_z = z_clipped
        sd = math.sqrt(var_total)
        e = x - mu
        room = self._skew_room(mu, n, var_total)
        high = clip_z * sd + (room if room > 0.0 else 0.0)
        low = -clip_z * sd + (room if room < 0.0 else 0.0)
        e_clipped = e if e < high else high
        e_clipped = e_clipped if e_clipped > low else low
        factor = 1.0
        if seasoned and self.alpha_seasoned is not None:
            factor = self.alpha_seasoned / self.alpha
        if self.kind == "count" and mu < 1.0:
            # a count of under one event a window learns per event, not per window: at 0.15 a
            # minute 1 / alpha_seasoned windows held 5 events, so the level was mostly noise and
            # followed a 50-minute tracking loss down to a fifth (the return to normal was a
            # surge), and on the first day ten windows of zeros took it to nothing. No slower than
            # at the scoring floor, so a level that fell near zero comes back
            factor *= self._floor(mu)
        if abs(z) >= clip_z:
            # out of band: barely move until Page-Hinkley says the shift lasts, so an incident
            # keeps looking like one (and its end is not a new incident)
            factor *= 0.25
        if slow:
            # evidence of a blip may be building: learn it slowly, so the blip is not absorbed
            # before it can be confirmed
            factor *= 0.1
        if held:
            self._follow_profile(t)   # the level learns nothing from a blip, as when frozen
            self._not_learned(x, n, mu, var_total, 1.0)
        else:
            self._update_level(mu, n, e_clipped, factor)
            if factor < 1.0 and (slow or abs(z) >= clip_z):
                self._not_learned(x, n, mu, var_total, 1.0 - factor)
        # a blip in the making must not widen the bands that should catch it (a run's samples are
        # kept aside where the kind keeps one); otherwise the noise sees up to twice the learning
        # clip, so heavy-tailed series get wider bands
        noise_now = peak < self.slow_at
        if noise_now or self._keeps_aside:
            high, low = 2.0 * clip_z * sd, -2.0 * clip_z * sd
            e_noise = e if e < high else high
            e_noise = e_noise if e_noise > low else low
            sample = self._noise_sample(e_noise, mu, n, z * sd)
            if noise_now:
                self.extra_sum = keep * self.extra_sum + sample
                self.extra_weight = keep * self.extra_weight + 1.0
            else:
                self._noise_aside(sample)
        self.volume_mean += alpha_var * (n - self.volume_mean)
        self.t_last = t
        self.n_learned += 1
        if held:
            self._commit_profile(t, None)   # nor do the profile and the shift test
            return

        clip = self.relevel_clip
        low = -clip
        clipped = z if z < clip else clip
        shift = self.shift
        shift.update(clipped if clipped > low else low)
        if shift.drift_detected and not returning:
            self._relevel_to_recent()
        self._commit_profile(t, x)

    def _relevel_to_recent(self) -> None:
        """Jump the level to the median of the last few observations, remembering the old normal."""
        new_level = sorted(self.recent)[len(self.recent) // 2]
        if self.multiplicative:
            delta = math.log(max(new_level, 0.5)) - math.log(max(self.level, 0.5))
        else:
            delta = new_level - self.level
        self._apply_relevel(delta)
        self.prev_delta, self.prev_left = delta, self.remember
        self.trend = 0.0

    def _adopt(self) -> None:
        """A blip that lasted ``adopt_after`` points is the new normal: re-level to the recent
        median, remember the old normal (its return is not a new incident), restart the CUSUMs."""
        self._relevel_to_recent()
        self.cusum_up = self.cusum_down = 0.0
        self.guard_up = self.guard_down = 0.0
        self.evidence_up = self.evidence_down = 0.0
        self.shift_up = self.shift_down = 0.0
        self.frozen_run = 0
        self.hold_left = 0
        self.shift.reset()

    def _note_run(self, score: float, up: float, down: float) -> None:
        """The point's score (one window or two pooled) and its CUSUMs, as scored (rates track
        the highest of a run of rare-looking windows)."""

    #: whether the kind keeps a run's points aside (``detectors.aside``)
    _keeps_aside = False

    def _noise_aside(self, sample: float) -> None:
        """A noise sample a run kept out of the noise estimate (see ``_not_learned``)."""

    def _not_learned(self, x: float, n: float, mu: float, var_total: float, share: float) -> None:
        """A ``share`` of the point ``x`` that a blip's evidence kept out of the level (rates
        keep it aside and learn it once the run ends without an alert)."""

    def _learns(self) -> bool:
        """Whether the next point would be learned (no blip's evidence holds learning)."""
        peak = self.cusum_down if self.cusum_down > self.cusum_up else self.cusum_up
        return self.hold_left <= 0 and peak < self.freeze_at

    def _update_level(self, mu: float, n: float, e_clipped: float, factor: float) -> None:
        """Move level and trend towards the (clipped) observation; ``factor`` slows learning."""
        weight = 1.0
        if self.kind != "count" and self.volume_mean > 0:
            weight = min(n / self.volume_mean, 4.0)
        alpha = (1.0 - (1.0 - self.alpha) ** weight) * factor
        self.level = self._clamp(mu + alpha * e_clipped)
        self.trend = self.phi * self.trend + alpha * self.beta * e_clipped

    def _start_level(self, x: float, n: float) -> None:
        self.level = x

    def _start_noise(self, x: float) -> None:
        """Prior for the extra noise before any residual is seen (none: sampling noise is known)."""

    def _apply_relevel(self, delta: float) -> None:
        self.level = self._clamp(self.level * math.exp(delta) if self.multiplicative
                                 else self.level + delta)
        self.offset += delta
        if self.t_last is not None:
            self.relevel_t = self.t_last

"""The daily profile: what a series does at each time of day, learned over days.

``season_bins`` bins of a day (288 = five minutes) hold the mean of the series in that bin,
averaged over days (the newest day weighs ``season_gamma``); counts keep it in logs
(multiplicative: the evening is three times the night). The profile predicts the *change*
between the bin of the last point and the bin of ``t``: piecewise constant, so a step at 09:00
seen yesterday is expected today. Re-level jumps (``offset``) are kept out of it.

A mixin of :class:`blipwatch.detectors.base.SeriesDetector`.

>>> from blipwatch.detectors import make_detector
>>> det = make_detector("value")
>>> det._bin(9 * 3600.0), det._bin(9 * 3600.0 + 299.0), det._bin(9 * 3600.0 + 300.0)
(108, 108, 109)
"""

from __future__ import annotations

import math

DAY_SECONDS = 86400.0
#: Per number of profile bins: window start (seconds) -> its bin. Every series closes the same
#: window starts, and a window's bin is needed three times per point (a pure function of both).
_BIN_CACHES: dict[int, dict[float, int]] = {}
#: A count's profile step is a noisy estimate of the true one: the difference of two bins'
#: log-means, of variance 2 x noise / events, shrunk towards no step by the factor
#: prior / (prior + that variance), where prior is the variance of a true step between two bins,
#: at least _STEP_PRIOR_VAR (0.02: ~0.14 in logs; a daily cycle moves a few % a bin). At 0.1 a
#: level held through an incident followed one noisy day's steps of x1.2, and the alert outlived
#: the incident by 17 windows.
_STEP_PRIOR_VAR = 0.02


class DailyProfile:
    """Bins, steps and learning of the daily profile (a mixin; see the module docstring)."""

    multiplicative = False   # additive (level + profile) or multiplicative (level * exp(profile))

    def _bin(self, t: float) -> int:
        bins = self._bins
        b = bins.get(t)
        if b is None:
            b = int((t % DAY_SECONDS) / DAY_SECONDS * self.season_bins) % self.season_bins
            if len(bins) >= 4096:
                bins.clear()
            bins[t] = b
        return b

    def _bases(self, t: float) -> tuple[float, float | None]:
        """Level moved to ``t`` by the damped trend; and also by the daily profile, if known."""
        trend = self.phi * self.trend
        if self.multiplicative:
            # a trend takes a count down no faster than a window of zeros would (a run of zeros
            # must not carry the level through zero)
            low = -self.alpha * self.level
            trend = trend if trend > low else low
        base = self.level + trend
        step = self._profile_step(t)
        return base, None if step is None else self._moved(base, step)

    def _profile_step(self, t: float) -> float | None:
        """The daily profile's change from the last point's bin to ``t``'s; None if either is unseen."""
        t_last = self.t_last
        # one bin (rates, means): every window falls in bin 0, so the step is None while that bin
        # was never folded in, whatever t and t_last are
        if t_last is None or (self._one_bin and not self.profile_days[0]):
            return None
        bins = self._bins
        now = bins.get(t)
        if now is None:
            now = self._bin(t)
        before = bins.get(t_last)
        if before is None:
            before = self._bin(t_last)
        days = self.profile_days
        seen_now, seen_before = days[now], days[before]
        if not (seen_now and seen_before):
            return None
        if now == before:
            return 0.0
        profile = self.profile
        if not self.multiplicative:
            return profile[now] - profile[before]
        # a count's bins are read through a median of three: edge-keeping (a ramp or a sharp
        # step comes through whole), but one noisy bin of one day does not (a bin with one window
        # of 1 among ~20s stepped a level x2.4, into a false drop alert, when the series fell
        # back to normal). Two noisy bins in a row still do: the shrinkage below stays as it was
        smooth_now = self._median3(now)
        smooth_before = self._median3(before)
        step = smooth_now - smooth_before
        if step:
            # a bin of a sparse count is a few events a day: its log-mean is mostly noise (0.5 a
            # minute: ~2.5 events a bin, +-60 %), so a step counts in proportion to the events
            # behind it, not every bin's noise (a frozen level followed it through a surge).
            # The events are the busier bin's, as the profile holds them (not the level's: in
            # a dip, a nightly tracking gap, the level is the dip's, and the step out of it was
            # damped as noise, so the level came out low and froze on the return to normal;
            # nor the level moved by the step, which drifts: a step there and back must cancel)
            busier = smooth_now if smooth_now > smooth_before else smooth_before
            busier += self.offset
            events = math.exp(busier if busier < 50.0 else 50.0) * self._bin_minutes * (
                seen_now if seen_now < seen_before else seen_before)
            # Events that come in sessions are fewer independent ones (see _bin_noise)
            weight = self.step_noise_weight
            noise = self.step_noise_sum / weight if weight > 0.0 else self._bin_noise()
            # shrunk as a noisy estimate towards its prior (see _STEP_PRIOR_VAR), the prior's
            # variance raised to what the step shows beyond three times its noise (a step of x100
            # into a learned nightly gap, and out of it, is taken whole; one of x1.2 from a bin of
            # a few hundred clustered events mostly not. Beyond once its noise, a quarter of the
            # steps of noise passed, and levels held at night followed them into false drops)
            noise_var = 2.0 * noise / events
            excess = step * step - 9.0 * noise_var
            prior = _STEP_PRIOR_VAR if _STEP_PRIOR_VAR > excess else excess
            step *= prior / (prior + noise_var)
        return step

    def _median3(self, i: int) -> float:
        """Bin ``i``'s log-mean as the median of it and its two neighbours (around midnight too);
        the bin alone where a neighbour was never seen, or within a day of a re-level: bins
        folded in since then hold the series less the new offset, the others less the old one,
        and the median would mix the two (a shop's 09:00 opening, adopted on day 1, came a
        quarter short on day 3)."""
        profile, days, bins = self.profile, self.profile_days, self.season_bins
        left, right = i - 1, (i + 1) % bins
        if not (days[left] and days[right]) or self.t_last - self.relevel_t < DAY_SECONDS:
            return profile[i]
        a, b, c = profile[left], profile[i], profile[right]
        if a > b:
            a, b = b, a
        # now a <= b: the median is b if c >= b, else the larger of a and c
        if c >= b:
            return b
        return c if c > a else a

    def _bin_noise(self) -> float:
        """How many times noisier a bin's log-mean of a count is than independent events'.

        With the learned dispersion d (variance d x mean) one window has d times the noise (a
        small segment's chat sessions made a 5-minute bin twice the next one, and a frozen level
        followed that step into a false drop alert); and a session spans several windows, so
        the windows of a bin are correlated: a sum of AR(1) residuals has (1+rho)/(1-rho) times
        the variance (on the simulator's sessions rho is ~0.4: a bin 2.3 times noisier)."""
        extra = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        rho = self._residual_rho()
        return (1.0 + (extra if extra > 0.0 else 0.0)) * (1.0 + rho) / (1.0 - rho)

    def _moved(self, level: float, step: float) -> float:
        """``level`` moved by a profile step (a log-ratio for multiplicative profiles, within +-5)."""
        if self.multiplicative:
            step = step if step < 5.0 else 5.0
            return level * math.exp(step if step > -5.0 else -5.0)
        return level + step

    def _fold(self, i: int, total: float, count: int) -> None:
        """Fold a bin's observations (their sum and number) into the profile."""
        if not count:
            return
        mean = total / count
        if self.profile_days[i]:
            gamma = max(self.season_gamma, 1.0 / (1 + self.profile_days[i]))
            self.profile[i] += gamma * (mean - self.profile[i])
        else:
            self.profile[i] = mean
        self.profile_days[i] = min(self.profile_days[i] + 1, 1000)
        if self.multiplicative:
            # the steps' damping is learned over a day of bins, and only from bins that were
            # learned: a step there and back must be damped alike (a nightly gap's zeros, once
            # learned, raised the residuals' correlation within ten minutes, the step out of the
            # gap was damped more than the step in, and the level came out at half its normal)
            keep = 1.0 - 1.0 / self.season_bins
            self.step_noise_sum = keep * self.step_noise_sum + self._bin_noise()
            self.step_noise_weight = keep * self.step_noise_weight + 1.0

    def _profile_key(self, x: float) -> float:
        """What the profile averages for an observation (its log for multiplicative profiles)."""
        return math.log(0.5 if 0.5 > x else x) if self.multiplicative else x

    def _follow_profile(self, t: float) -> None:
        """Move the level by the daily profile's step from the last point's bin to ``t``'s."""
        step = self._profile_step(t)
        if step:   # None (unseen) or 0.0 (same bin): nothing to move
            self.level = self._clamp(self._moved(self.level, step))

    def _commit_profile(self, t: float, x: float | None) -> None:
        """Accumulate observations per bin; at a bin change fold the bin into the profile.
        ``x`` None: only move on to ``t``'s bin (a point not learned).

        A count's bin is folded one bin later (it waits as ``bin_pending``): a step reads the
        median of three bins (``_median3``), and every median a step reads must be the same
        when the next step reads it, or the steps do not add up to the profile's change (a bin
        folded in between moved its neighbours' medians, and a level followed a one-day bump up
        and not back down: 8.7 to 19 events a minute against 7)."""
        b = self._bins.get(t)
        if b is None:
            b = self._bin(t)
        if b != self.bin_current:
            if self.multiplicative:
                pending = self.bin_pending
                self.bin_pending = [self.bin_current, self.bin_sum, self.bin_count]
                if pending is not None:
                    self._fold(*pending)
            else:
                self._fold(self.bin_current, self.bin_sum, self.bin_count)
            self.bin_current, self.bin_sum, self.bin_count = b, 0.0, 0
        if x is not None:
            self.bin_sum += self._profile_key(x) - self.offset
            self.bin_count += 1

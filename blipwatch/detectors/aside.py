"""Points a run kept out of a level, learned once the run turns out to be noise.

A mixin of the kinds whose level is a ratio of exponentially weighted sums (``ew_num`` /
``ew_den``: rates, means). While a run of rare-looking windows builds evidence of a blip, its
points are not learned (frozen, held) or learned at a tenth of the rate (slowed). Where the noise
is skewed, those runs lean one way: on a rate of 1 % at 5 trials a minute two failures in a row
are such a run, and one big basket lifts a mean's up-CUSUM over ``slow_at`` while small ones never
do. Leaving them out biased the level low (rates 10 %, order values 7 %), and leaving their
residuals out of the noise estimate made the bands too narrow for the next big basket, which
started the next run. So the share not learned is kept aside, ageing as the sums it would be in
(by the same factor, on the points they age: a frozen point ages neither, so the aside keeps its
weight against what came before the run), and learned once the run is over (both CUSUMs at 0, no
hold) if no point of it reached ``threshold``; a run that did is an incident, and is dropped: an
incident is not learned. The slowed points' noise samples are kept and settled the same way
(a frozen point's are not taken at all).
"""

from __future__ import annotations

import math


class KeptAside:
    """The aside of a ratio level (see the module docstring); kinds define ``_estimate``."""

    _ASIDE_FIELDS = ("aside_num", "aside_den", "aside_peak", "aside_noise", "aside_samples")
    _keeps_aside = True

    def _reset(self) -> None:
        super()._reset()
        #: numerator and weight a run kept out of the level, and the run's highest score
        self.aside_num = 0.0
        self.aside_den = 0.0
        self.aside_peak = 0.0
        #: the sum and number of the run's noise samples
        self.aside_noise = 0.0
        self.aside_samples = 0

    def _noise_aside(self, sample: float) -> None:
        self.aside_noise += sample
        self.aside_samples += 1

    def _not_learned(self, x: float, n: float, mu: float, var_total: float, share: float) -> None:
        room = self._skew_room(mu, n, var_total)
        high = mu + self.clip_z * math.sqrt(var_total) + (room if room > 0.0 else 0.0)
        self.aside_num += share * (x if x < high else high) * n
        self.aside_den += share * n

    def _note_run(self, score: float, up: float, down: float) -> None:
        if up > 0.0 or down > 0.0:
            sequential = self._cusum_score(up if up > down else down)
            score = sequential if sequential > score else score
        self.aside_peak = score if score > self.aside_peak else self.aside_peak

    def _settle_aside(self) -> None:
        """When a run is over (both CUSUMs at 0, no hold), learn what it kept aside if no point
        reached ``threshold``, else forget it."""
        if self.cusum_up > 0.0 or self.cusum_down > 0.0 or self.hold_left > 0:
            return
        if self.aside_peak < self.threshold:
            if self.aside_den > 0.0:
                self.ew_num += self.aside_num
                self.ew_den += self.aside_den
                self.level = self._clamp(self._estimate())
            if self.aside_samples:
                keep = (1.0 - self.alpha_var) ** self.aside_samples
                self.extra_sum = keep * self.extra_sum + self.aside_noise
                self.extra_weight = keep * self.extra_weight + self.aside_samples
        self._drop_aside()

    def _drop_aside(self) -> None:
        self.aside_num = self.aside_den = self.aside_peak = self.aside_noise = 0.0
        self.aside_samples = 0

    def _age_aside(self, keep: float) -> None:
        """The sums aged by ``keep`` (``_update_level``): the aside ages with them."""
        self.aside_num *= keep
        self.aside_den *= keep

    def _learn(self, t: float, value, numerator, denominator) -> None:
        super()._learn(t, value, numerator, denominator)
        self._settle_aside()

    def _apply_relevel(self, delta: float) -> None:
        super()._apply_relevel(delta)
        self._drop_aside()   # the new normal is the recent one

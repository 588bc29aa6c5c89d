"""Sequential evidence: a run of windows can be rare where no single window is.

Two one-sided CUSUMs of the residuals (a 2-sigma rise held for six windows is as rare as one
5-sigma point) and, with ``pool_windows`` 2, the last two windows judged as one. Both are put on
the rarity scale of one point (:func:`blipwatch.detectors.tails.cusum_score`), both add up
departures from the residuals' recent bias, and both are shrunk by the residuals' lag-1
autocorrelation (a session spans several windows; a level lags a daily ramp).

A window that does not lean a CUSUM's way by half a sigma halves it. Once the CUSUM is at
``freeze_at`` (an incident), the bar is ``end_share`` of the shift its run has shown at that
window's volume: after a conversion drop of 20 sigma a window, windows 1-2 sigma low are its end,
not more of it (they kept a CUSUM at its cap, and the alert open, for five windows more).

A mixin of :class:`blipwatch.detectors.base.SeriesDetector`: it reads the detector's
``cusum_*`` settings, its ``ac_*`` residual statistics and its noise hooks.

>>> from blipwatch.detectors import make_detector
>>> det = make_detector("rate")
>>> det.cusum_up = 0.0
>>> for _ in range(6):                                 # six 2-sigma residuals in a row
...     det.cusum_up, det.cusum_down = det._cusum_step(2.0, 0.0, 0.0)
>>> det.cusum_up, round(det._cusum_score(det.cusum_up), 2)
(6.0, 0.57)
"""

from __future__ import annotations

import math

from blipwatch.detectors.tails import SQRT2, cusum_score


class SequentialEvidence:
    """CUSUMs and pooled windows of a detector (a mixin; see the module docstring)."""

    def _residual_rho(self) -> float:
        """Lag-1 autocorrelation of the learned residuals, in [0, 0.9]."""
        m = self.ac_mean
        variance = self.ac_square - m * m
        rho = (self.ac_cross - m * m) / variance if variance > 1e-9 else 0.0
        rho = 0.0 if 0.0 > rho else rho
        return 0.9 if 0.9 < rho else rho

    def _residual_bias(self) -> float:
        """The learned residuals' recent mean (a level lagging a ramp), within one sigma."""
        m = self.ac_mean
        bias = m if m < 1.0 else 1.0
        return bias if bias > -1.0 else -1.0

    def _step(self, z: float, rho: float, bias: float) -> float:
        """What residual ``z`` adds to a CUSUM: centred on the residuals' bias, clipped at
        ``cusum_clip``, and shrunk for their correlation (a sum of n AR(1) residuals has variance
        n (1+rho)/(1-rho), so the CUSUM's tail stays calibrated)."""
        centred = z - bias
        clip = self.cusum_clip
        low = -clip
        centred = centred if centred < clip else clip
        centred = centred if centred > low else low
        return centred * math.sqrt((1.0 - rho) / (1.0 + rho))

    def _leans(self, volume: float) -> tuple[float, float]:
        """How far a point of ``volume`` must lean each CUSUM's way not to halve it: half a sigma,
        or, once the CUSUM is at ``freeze_at`` (an incident, not noise), ``end_share`` of the shift
        its run has shown, at this point's volume. A window much nearer normal than the incident
        is evidence that the incident is over, even if it still leans its way by a sigma or two."""
        lean_up = lean_down = 0.5
        share = self.end_share
        freeze = self.freeze_at
        up_run = self.cusum_up >= freeze and self.evidence_up > 0.0
        down_run = self.cusum_down >= freeze and self.evidence_down > 0.0
        if share <= 0.0 or not (up_run or down_run):   # most points: no incident under way
            return lean_up, lean_down
        root = math.sqrt(volume) if volume > 0.0 else 0.0
        if up_run:
            d = share * self.shift_up / self.evidence_up * root
            lean_up = d if d > lean_up else lean_up
        if down_run:
            d = share * self.shift_down / self.evidence_down * root
            lean_down = d if d > lean_down else lean_down
        return lean_up, lean_down

    def _advance(self, up: float, down: float, step: float, z: float, k: float,
                 keep: float, lean_up: float = 0.5, lean_down: float = 0.5) -> tuple[float, float]:
        """Two one-sided CUSUMs of reference ``k`` after ``step``; one that the point ``z`` does not
        lean towards (by ``lean_up`` / ``lean_down``: :meth:`_leans`) keeps only ``keep`` of
        itself; both within ``cusum_cap``."""
        up = up + step - k
        up = up if up > 0.0 else 0.0
        down = down - step - k
        down = down if down > 0.0 else 0.0
        if z < lean_up:
            up *= keep
        if z > -lean_down:
            down *= keep
        cap = self.cusum_cap
        return (cap if cap < up else up), (cap if cap < down else down)

    def _cusum_step(self, z: float, rho: float, bias: float, volume: float = 1.0) -> tuple[float, float]:
        """The CUSUMs after residual ``z`` of a point of ``volume``, given the residuals' correlation
        and bias (what scoring computes, written out).

        A point that does not lean its way halves a CUSUM: an incident that ended stops counting
        within a few points (this only makes the statistic more conservative).
        """
        lean_up, lean_down = self._leans(volume)
        return self._advance(self.cusum_up, self.cusum_down, self._step(z, rho, bias), z, self.cusum_k, 0.5,
                             lean_up, lean_down)

    def _guard_step(self, step: float, z: float) -> tuple[float, float]:
        """The learning guard's two CUSUMs after ``step`` (:meth:`_step`): reference ``guard_k``
        (half a sigma: a shift of one sigma a window adds up); a point that does not lean its way
        takes a fifth off, not half. They never alert; above ``guard_at`` they slow learning."""
        return self._advance(self.guard_up, self.guard_down, step, z, self.guard_k, 0.8)

    def _cusum_score(self, s: float) -> float:
        """A CUSUM on the rarity scale of one point (:func:`~blipwatch.detectors.tails.cusum_score`)."""
        return cusum_score(s, self.cusum_k)

    def _pool(self, prev: list[float], x: float, n: float, mu: float) -> tuple[float, float, float]:
        """Two windows as one: (observation, evidence, expected). Means of trials (rates) pool
        weighted by their evidence; counts override this and add up."""
        total = prev[1] + n
        return (prev[0] * prev[1] + x * n) / total, total, (prev[2] * prev[1] + mu * n) / total

    def _pooled_z(self, x: float, n: float, mu: float, rho: float, bias: float) -> float:
        """The residual of this window and the last one pooled, as one window of their summed
        evidence (exact-ish deviance tails for small counts, the same learned dispersion), shrunk
        by the residuals' lag-1 correlation (two neighbouring windows are not independent) and
        centred on the level's recent bias, as the CUSUM is."""
        x_p, n_p, mu_p = self._pool(self.pool_prev, x, n, mu)
        mu_p = self._clamp(mu_p)
        z = self._residual_z(x_p, mu_p, n_p, self._var_total(mu_p, n_p))
        return (z - SQRT2 * bias) / math.sqrt(1.0 + rho)

"""Online detectors for one metric series: rates, counts and means.

One object per series, River's two verbs: ``score_one`` says how unusual the new point is
(before seeing it), ``learn_one`` then learns it. The same code runs in the stream, in
``replay`` and in ``score-series``.

How a point is judged
---------------------
* **Expected value**: a robust level with a damped trend (Holt), moved along a learned
  *daily profile* (288 five-minute bins of raw values). The level follows smooth daily
  curves from the first hour; once a bin has been seen on an earlier day, the level moved
  along the profile is a competing prediction, and a point is judged by the one that
  explains it best (a step seen yesterday at 09:00 is normal today).
* **Noise model per kind**: rates are binomial in their denominator (4 carts is weak
  evidence, 4,000 strong), counts are Poisson, means shrink with the number of observations;
  each adds an *extra* variance learned online (beta-binomial / negative-binomial style:
  ``tau^2`` for rates, ``c^2 * mu^2`` for counts), so a busy evening with the same rates
  does not look like an incident and real series that are noisier than Poisson stay quiet.
* **Score**: a signed deviance residual ``z`` (exact-ish tails for small counts: a count
  of 1 where 0.01 was expected is not a one-in-a-million event), turned into a two-sided
  tail probability ``p`` and ``score = min(1, -log10(p) / 10)``. So the score is calibrated
  the same way on every series: 0.3 = one in a thousand, 0.6 = one in a million, 1.0 = one
  in 10^10 or rarer.
* **Value series** (kind ``value``) also judge a residual by the series' own history: the
  tail probability is the less rare of the noise model's and the empirical exceedance rate of
  past residuals (a decayed histogram of ``log2 |residual|``, with a power-law tail beyond its
  top), so a spike pattern that recurs is not rare; see docs/detectors.md.
* **Robust learning**: a point moves the level and the noise estimates by at most
  ``clip_z`` standard deviations, so a spike is not learned. A lasting shift is adopted on
  purpose: a Page-Hinkley test (``river.drift.PageHinkley``) on the clipped ``z`` re-levels
  the series to its recent values. Out-of-band points move the level at a quarter of the
  rate. With the defaults (threshold 80, delta 1, z clipped at 5) any lasting shift stops
  scoring >= 0.3 within 21 points (a 50-sigma shift: re-levelled at point 20; 10 sigma:
  ~12 points; 5 sigma: ~5 points, as the noise estimate widens; see the unit tests). After a re-level the previous normal is remembered for ``remember`` points: a
  series that returns to it (the incident ended) is not flagged again, it snaps back.

Why not River's components as they are: ``stats.EWMean``/``EWVar`` are Rust objects whose
state cannot be exported to our explicit, versioned format (River pickles broke between
0.24 and 0.25), so their recursions are written out here; ``time_series.HoltWinters``
initialises additive seasons as y/level and needs a full season before forecasting;
``anomaly.GaussianScorer`` scores 1.0 on every point of a flat series. River's
``drift.PageHinkley`` is used as is; its few fields are copied into the state explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Mapping

from river import drift

DAY_SECONDS = 86400.0
KINDS = ("rate", "count", "mean", "value")

#: Settings shared by every kind, with their defaults. Per-kind overrides are in KIND_DEFAULTS.
COMMON_DEFAULTS: dict[str, Any] = {
    "threshold": 0.6,        # is_anomaly when score >= threshold (0.6: one in a million)
    "alpha": 0.1,            # level learning rate per point (rates: per typical volume)
    "alpha_seasoned": None,  # level learning rate where the daily profile knows the time of day (None: alpha)
    "beta": 0.05,            # trend learning rate (relative to alpha)
    "phi": 0.95,             # trend damping per point
    "alpha_var": 0.02,       # learning rate of the noise estimates (~100 points memory)
    "clip_z": 3.0,           # a point moves level and noise estimates by at most this many sigma
    "season_bins": 288,      # bins of the daily profile (288 = 5 minutes)
    "season_gamma": 0.25,    # weight of the newest day in the daily profile
    "relevel_threshold": 80.0,  # Page-Hinkley threshold on clipped z (adoption of a lasting shift)
    "relevel_delta": 1.0,    # Page-Hinkley drift allowance, in sigma per point
    "relevel_clip": 5.0,     # z fed to Page-Hinkley is clipped to +-this
    "remember": 1440,        # points during which the previous normal is remembered after a re-level
    "cusum_k": 1.0,          # CUSUM reference (sigma per point): shifts above ~2k sigma accumulate fast
    "cusum_clip": 4.0,       # one point adds at most this many sigma to the CUSUM (outliers are the single-point score's job)
    "cusum_cap": 10.0,       # the CUSUM never exceeds this, so an incident's end is seen within a few points
    "pool_windows": 1,       # 2: also judge the last two windows pooled (their counts added up), on the
                             # same tail scale as one point: a blip in a few events per window (5 of 7
                             # payments failing, then 7 of 9) is rare over two windows before one is
    "freeze_at": 4.0,        # while a CUSUM is above this (p ~ 1e-4), the level and noise do not learn
    "slow_at": 2.0,          # while a CUSUM is above this (p ~ 0.6 %), the level learns at a tenth of its rate
    "adopt_after": 60,       # points of frozen learning after which the recent level is adopted as the new normal
    "learn_freely": 30,      # the first points are all learned: normal must be known before a blip can be
    "sequential": 1,         # 1: sequential evidence (CUSUM, learning freeze, adoption); 0: one point at a time
    "sequential_seasoned": 0,  # 1: sequential evidence only where the daily profile knows the time of day
    "tail_dof": 0,           # one point's tail: 0 = normal; n = Student's t with n degrees of freedom (heavy tails)
    "calibrate_memory": 0,   # value: points of memory of the residuals' own histogram (0: off); a residual
                             # as large as ones seen before is no rarer than they were
    "calibrate_prior": 50.0, # value: weight (in points) of the noise model's tail in the empirical one
    "calibrate_bins": 4,     # value: histogram bins per doubling of |residual|
    "calibrate_top": 0.01,   # value: ... the largest residuals (this share of them) set that tail
    "calibrate_tail": 6.0,   # value: ... and fall as a power law: k times larger is k^-this as common
}

KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    # rates: ratios of same-time counts, so traffic's daily swing cancels out; their profile bins
    # (a few trials each on small segments) are noise that would drag the level around
    "rate": {"alpha": 0.02, "beta": 0.0, "season_bins": 1, "pool_windows": 2},
    # counts follow the daily curve with the level alone on the first day (alpha 0.1, ~10 min);
    # once the profile knows the time of day it carries the curve, and a level that still chased
    # every 10 minutes would absorb a surge (3x complaints) before its evidence could add up
    # and before that, a run of residuals of one sign is mostly the level lagging the curve: on
    # its first day a count alerts on one rare point only (a tracking drop, a 10x surge)
    "count": {"alpha_seasoned": 0.03, "sequential_seasoned": 1, "pool_windows": 2},
    # means of a window's observations (order value): volume-weighted like rates, and no daily
    # profile (a handful of orders per bin is noise, not a season)
    "mean": {"alpha": 0.02, "beta": 0.0, "season_bins": 1, "cusum_clip": 3.0, "cusum_k": 0.5, "cusum_cap": 20.0,
             # order values are heavy-tailed (one big basket): one window is judged with t(4), so
             # only a run of windows can be rare
             "tail_dof": 4},
    # generic values (NAB-like machine metrics) are strongly autocorrelated and often noiseless:
    # they are judged one point at a time, with Page-Hinkley re-levelling
    "value": {"sequential": 0, "calibrate_memory": 2000},
}


class SettingsError(ValueError):
    """A detector or policy setting is unknown or out of range; the message says which."""


@dataclass(frozen=True, init=False)
class Scored:
    """What a detector says about one point.

    ``expected``, ``lower`` and ``upper`` are None until the series has been seen; the bounds
    are where ``score`` would reach the detector's threshold. ``z`` is the signed evidence in
    sigma, ``volume`` the evidence behind the point (rates: denominator; counts: the larger of
    observed and expected; means: the number of observations, 1 if not given).
    """

    value: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float
    direction: str | None
    is_anomaly: bool
    z: float = 0.0
    volume: float = 0.0

    def __init__(self, value: float | None, expected: float | None, lower: float | None,
                 upper: float | None, score: float, direction: str | None, is_anomaly: bool,
                 z: float = 0.0, volume: float = 0.0) -> None:
        # one per scored window: the generated frozen __init__ calls object.__setattr__ per field
        # (~0.7 us); writing the instance dict directly is ~0.25 us and the object is the same
        d = self.__dict__
        d["value"] = value
        d["expected"] = expected
        d["lower"] = lower
        d["upper"] = upper
        d["score"] = score
        d["direction"] = direction
        d["is_anomaly"] = is_anomaly
        d["z"] = z
        d["volume"] = volume


# On the scoring path (once or more per window) min() and max() of two floats are written out as
# conditional expressions, ~0.1 us cheaper each and the same result, NaN and signed zeros included:
# the builtins keep their first argument unless a later one compares strictly smaller (min: b < a)
# or larger (max: b > a), so min(a, b) is `b if b < a else a` and max(a, b) is `b if b > a else a`.
_SQRT2 = math.sqrt(2.0)
_LN10 = math.log(10.0)
#: Per number of profile bins: window start (seconds) -> its bin. Every series closes the same
#: window starts, and a window's bin was computed three times per point (a pure function of both).
_BIN_CACHES: dict[int, dict[float, int]] = {}


def _tail_score(z: float) -> float:
    """``-log10`` of the two-sided normal tail of ``z``, over 10, clipped to [0, 1]."""
    p = math.erfc(abs(z) / _SQRT2)
    if p <= 1e-10:
        return 1.0
    score = -math.log10(p) / 10.0
    score = score if score > 0.0 else 0.0      # min(1.0, max(0.0, score))
    return score if score < 1.0 else 1.0


def _betacf(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for I_x(a, b), accurate to ~1e-12 for the x < (a+1)/(a+b+2) branch
    (the two terms of each step written out; the same operations as a loop over both)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 200):
        m2 = 2 * m
        num = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return h


def _t_tail_score(z: float, dof: float) -> float:
    """Like ``_tail_score`` but with Student's t tails (``dof`` degrees of freedom), via the
    regularised incomplete beta function's continued fraction (no SciPy)."""
    if abs(z) < 1e-9:
        return 0.0
    x = dof / (dof + z * z)
    a, b = dof / 2.0, 0.5
    if x <= 0.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        p = math.exp(log_front) * _betacf(a, b, x) / a          # two-sided tail = I_x(dof/2, 1/2)
    else:
        p = 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b
    if p <= 1e-10:
        return 1.0
    return min(1.0, max(0.0, -math.log10(max(p, 1e-300)) / 10.0))


def _z_for_score(score: float) -> float:
    p = 10.0 ** (-10.0 * score)
    return NormalDist().inv_cdf(1.0 - p / 2.0)


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x <= 0.0 else x * math.log(x / y)


def resolve_settings(kind: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults for ``kind`` overlaid with ``settings`` (flat keys, and/or a per-kind mapping).

    >>> resolve_settings("rate", {"threshold": 0.7, "count": {"alpha": 0.2}})["threshold"]
    0.7
    >>> resolve_settings("count", {"alfa": 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    blipwatch.detectors.series.SettingsError: unknown detector setting 'alfa'; known: adopt_after, alpha, ...
    """
    if kind not in KINDS:
        raise SettingsError(f"unknown detector kind {kind!r}; use one of {', '.join(KINDS)}")
    merged = dict(COMMON_DEFAULTS)
    merged.update(KIND_DEFAULTS[kind])
    if settings is None:
        return merged
    if not isinstance(settings, Mapping):
        raise SettingsError(f"detector settings must be a mapping, not {type(settings).__name__}")
    flat = {k: v for k, v in settings.items() if k not in KINDS}
    per_kind = settings.get(kind) or {}
    if not isinstance(per_kind, Mapping):
        raise SettingsError(f"detector settings for {kind!r} must be a mapping")
    for source in (flat, per_kind):
        for key, value in source.items():
            if key not in COMMON_DEFAULTS:
                known = ", ".join(sorted(COMMON_DEFAULTS))
                raise SettingsError(f"unknown detector setting {key!r}; known: {known}")
            default = COMMON_DEFAULTS[key]
            if value is None and default is None:  # an optional setting left unset
                merged[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingsError(f"detector setting {key!r} must be a number, not {value!r}")
            merged[key] = int(value) if isinstance(default, int) else float(value)
    for key in ("alpha", "alpha_var", "season_gamma", "alpha_seasoned"):
        if key == "alpha_seasoned" and merged[key] is None:
            continue
        if not 0.0 < merged[key] <= 1.0:
            raise SettingsError(f"detector setting {key!r} must be in (0, 1], not {merged[key]}")
    if not 0.0 < merged["threshold"] <= 1.0:
        raise SettingsError(f"detector setting 'threshold' must be in (0, 1], not {merged['threshold']}")
    if merged["season_bins"] < 1 or merged["clip_z"] <= 0 or merged["relevel_threshold"] <= 0:
        raise SettingsError("season_bins, clip_z and relevel_threshold must be positive")
    return merged


class SeriesDetector:
    """Base of the three kinds; see the module docstring. Use :func:`make_detector`."""

    kind = "value"
    #: additive (level + profile) or multiplicative (level * exp(profile)) daily profile
    multiplicative = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = resolve_settings(self.kind, settings)
        for key, value in self.settings.items():
            setattr(self, key, value)
        self._band_z = _z_for_score(self.threshold)
        # per-series constants of the scoring path (the settings do not change after this)
        self._bins = _BIN_CACHES.setdefault(self.season_bins, {})
        self._pools = self.pool_windows > 1 and bool(self.sequential)
        #: one profile bin (rates, means): every window falls in bin 0, so the profile's step is
        #: None while that bin was never folded in (profile_days[0] == 0), whatever t and t_last are
        self._one_bin = self.season_bins == 1
        self._cusum_slope = -2.0 * self.cusum_k
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
        self.offset = 0.0            # sum of re-level jumps, kept out of the profile
        self.recent: list[float] = []   # last few observations, the new level on a re-level
        self.prev_delta: float | None = None   # jump of the last re-level, while remembered
        self.prev_left = 0
        self.cusum_up = 0.0          # sequential evidence of a rise / fall, in sigma (CUSUM)
        self.cusum_down = 0.0
        self.pool_prev: list[float] | None = None   # the last window: observation, evidence, expected
        self.evidence_up = 0.0       # volume behind each CUSUM (sum of the points' volumes while it is > 0)
        self.evidence_down = 0.0
        self.frozen_run = 0          # consecutive points not learned because evidence was building
        self.last_z = 0.0            # residual of the previous learned point
        self.ac_cross = 0.0          # EW of z_t * z_(t-1), z_t^2 and z_t: lag-1 autocorrelation of residuals
        self.ac_square = 0.0
        self.ac_mean = 0.0
        self.shift = drift.PageHinkley(
            min_instances=10, delta=self.relevel_delta, threshold=self.relevel_threshold, alpha=1.0,
        )
        self._cache: tuple | None = None
        #: (the ``_judge`` result it belongs to, up, down): the CUSUMs after the point that
        #: ``score_one`` computed, reused by ``learn_one`` (same point, same state in between)
        self._cusum_cache: tuple | None = None

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
        deviance_z = max(-clip, min(clip, deviance_z))
        return deviance_z * deviance_z - 1.0

    def _volume(self, x: float, mu: float, n: float) -> float:
        return n

    def _pool(self, prev: list[float], x: float, n: float, mu: float) -> tuple[float, float, float]:
        """Two windows as one: (observation, evidence, expected). Means of trials (rates) pool
        weighted by their evidence; counts override this and add up."""
        total = prev[1] + n
        return (prev[0] * prev[1] + x * n) / total, total, (prev[2] * prev[1] + mu * n) / total

    def _profile_key(self, level: float) -> float:
        return math.log(max(level, 0.5)) if self.multiplicative else level

    # --- prediction ------------------------------------------------------------------------

    def _bin(self, t: float) -> int:
        bins = self._bins   # shared by the detectors with this many bins: a pure function of t
        b = bins.get(t)
        if b is None:
            b = int((t % DAY_SECONDS) / DAY_SECONDS * self.season_bins) % self.season_bins
            if len(bins) >= 4096:
                bins.clear()
            bins[t] = b
        return b

    def _bases(self, t: float) -> tuple[float, float | None]:
        """Level moved to ``t`` by the damped trend; and also by the daily profile, if known.

        The profile gives the expected change between the bin of the last point and the bin of
        ``t`` (piecewise constant, so a step at 09:00 seen yesterday is expected today).
        """
        base = self.level + self.phi * self.trend
        step = self._profile_step(t)
        return base, None if step is None else self._moved(base, step)

    def _profile_step(self, t: float) -> float | None:
        """The daily profile's change from the last point's bin to ``t``'s; None if either is unseen."""
        t_last = self.t_last
        if t_last is None or (self._one_bin and not self.profile_days[0]):
            return None
        bins = self._bins   # self._bin(t), self._bin(t_last), mostly from the cache
        now = bins.get(t)
        if now is None:
            now = self._bin(t)
        before = bins.get(t_last)
        if before is None:
            before = self._bin(t_last)
        days = self.profile_days
        if not (days[now] and days[before]):
            return None
        profile = self.profile
        return profile[now] - profile[before]

    def _moved(self, level: float, step: float) -> float:
        """``level`` moved by a profile step (a log-ratio for multiplicative profiles)."""
        if self.multiplicative:
            step = step if step < 5.0 else 5.0             # max(-5.0, min(5.0, step))
            return level * math.exp(step if step > -5.0 else -5.0)
        return level + step

    def _variance(self, mu: float, n: float) -> tuple[float, float]:
        sampling = self._sampling_var(mu, n)
        extra = self._extra_var(mu, n)
        # young series: the noise estimate itself is uncertain, widen it
        extra *= 1.0 + 4.0 / (self.extra_weight + 1.0)
        return sampling, sampling + extra + self._floor_var(mu)

    def _var_total(self, mu: float, n: float) -> float:
        """``_variance(mu, n)[1]``, the same operations (kinds write it out without the hooks)."""
        sampling = self._sampling_var(mu, n)
        extra = self._extra_var(mu, n)
        extra *= 1.0 + 4.0 / (self.extra_weight + 1.0)
        return sampling + extra + self._floor_var(mu)

    def _floor_var(self, mu: float) -> float:
        return 0.0

    def _judge(self, t: float, value, numerator, denominator):
        key = (t, value, numerator, denominator)
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        obs = self._observe(value, numerator, denominator)
        if self.n_learned == 0:
            result = (obs, None, None, 0.0, None, False)
        else:
            n = obs[1] if obs is not None else (self.volume_mean or 1.0)
            plain = self.level + self.phi * self.trend   # _bases(t), written out
            step = self._profile_step(t)
            seasonal = None if step is None else self._moved(plain, step)
            mu = self._clamp(plain)
            var_total = self._var_total(mu, n)
            z, returning = 0.0, False
            if obs is not None:
                z = self._residual_z(obs[0], mu, n, var_total)
            # the loop below stops at once while abs(z) < 1.0 (most points): no candidates then
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
                for mu_other, is_previous in candidates:
                    if abs(z) < 1.0:
                        break
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

    # --- sequential evidence ----------------------------------------------------------------

    def _residual_rho(self) -> float:
        """Lag-1 autocorrelation of the learned residuals, in [0, 0.9]."""
        variance = self.ac_square - self.ac_mean * self.ac_mean
        rho = (self.ac_cross - self.ac_mean * self.ac_mean) / variance if variance > 1e-9 else 0.0
        return min(max(rho, 0.0), 0.9)

    def _residual_bias(self) -> float:
        """The learned residuals' recent mean (a level lagging a ramp), within one sigma."""
        return max(-1.0, min(1.0, self.ac_mean))

    def _cusum_next(self, z: float) -> tuple[float, float]:
        """The two one-sided CUSUMs after a point with residual ``z``.

        A point that does not lean its way (by half a sigma) halves a CUSUM: an incident that ended
        stops counting within a few points (this only makes the statistic more conservative).
        """
        # residuals of neighbouring windows are correlated (a session spans several windows, a
        # level lags a daily ramp): a sum of n AR(1) residuals has variance n (1+rho)/(1-rho),
        # so each step is shrunk to keep the CUSUM's tail calibrated
        # centred: residuals of small counts are not mean-zero (mostly 0 against 0.3 expected)
        if not self.sequential:
            return 0.0, 0.0
        # and the level's own recent bias (it lags a daily ramp by a steady fraction of a sigma)
        # is not evidence of a blip: the CUSUM adds up departures from it
        return self._cusum_step(z, self._residual_rho(), self._residual_bias())

    def _cusum_step(self, z: float, rho: float, bias: float) -> tuple[float, float]:
        """``_cusum_next`` of a sequential series, given ``_residual_rho()`` and ``_residual_bias()``."""
        centred = z - bias
        clip = self.cusum_clip
        low = -clip
        centred = centred if centred < clip else clip     # max(-clip, min(clip, centred))
        centred = centred if centred > low else low
        step = centred * math.sqrt((1.0 - rho) / (1.0 + rho))
        k = self.cusum_k
        up = self.cusum_up + step - k
        up = up if up > 0.0 else 0.0                      # max(0.0, up)
        down = self.cusum_down - step - k
        down = down if down > 0.0 else 0.0
        if z < 0.5:
            up *= 0.5
        if z > -0.5:
            down *= 0.5
        cap = self.cusum_cap
        return (cap if cap < up else up), (cap if cap < down else down)   # min(up, cap), min(down, cap)

    def _cusum_score(self, s: float) -> float:
        """The CUSUM on the same rarity scale as a single point: for N(0,1) residuals its
        stationary tail is P(S > s) ~ exp(-2k (s + 0.583)) (Siegmund's overshoot correction)."""
        if s <= 0.0:
            return 0.0
        log10_p = -2.0 * self.cusum_k * (s + 0.583) / math.log(10.0)
        return min(1.0, max(0.0, -log10_p / 10.0))

    # --- the two verbs -----------------------------------------------------------------------

    def score_one(self, t: float, value: float | None, numerator: float | None = None,
                  denominator: float | None = None) -> Scored:
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
        dof = self.tail_dof
        score = _t_tail_score(z, dof) if dof > 0 else _tail_score(z)   # _point_score
        direction = "up" if z > 0 else "down" if z < 0 else None
        # evidence over several points: a 2-sigma rise held for 6 windows is as rare as one
        # 5-sigma point, and on small segments it is the only way a blip can be seen
        volume = point_volume = self._volume(x, mu, n)
        if self.sequential:
            # the residuals' lag-1 correlation and recent bias, for the CUSUM and the pooled windows
            # (_residual_rho, _residual_bias: the same operations)
            m = self.ac_mean
            variance = self.ac_square - m * m
            rho = (self.ac_cross - m * m) / variance if variance > 1e-9 else 0.0
            rho = 0.0 if 0.0 > rho else rho          # min(max(rho, 0.0), 0.9)
            rho = 0.9 if 0.9 < rho else rho
            bias = m if m < 1.0 else 1.0              # max(-1.0, min(1.0, m))
            bias = bias if bias > -1.0 else -1.0
            up, down = self._cusum_step(z, rho, bias)
        else:
            up = down = 0.0
        # learn_one needs the same CUSUMs (no state they depend on changes in between) and the
        # point's own volume (a function of x, mu and n alone)
        self._cusum_cache = (judged, up, down, point_volume)
        seasonal_only = self.sequential_seasoned
        if seasonal_only and not seasoned:
            up = down = 0.0
        peak = down if down > up else up              # max(up, down)
        if peak > 0.0:   # _cusum_score
            log10_p = self._cusum_slope * (peak + 0.583) / _LN10
            sequential = -log10_p / 10.0
            sequential = sequential if sequential > 0.0 else 0.0   # min(1.0, max(0.0, sequential))
            sequential = sequential if sequential < 1.0 else 1.0
            if sequential > score:
                score, direction = sequential, "up" if up >= down else "down"
                # the evidence is the run of points behind the CUSUM, not this point alone
                volume += self.evidence_up if direction == "up" else self.evidence_down
        prev = self.pool_prev
        if self._pools and prev is not None and (seasoned or not seasonal_only):
            pooled_z = self._pooled_z(x, n, mu, rho, bias)
            pooled = _t_tail_score(pooled_z, dof) if dof > 0 else _tail_score(pooled_z)
            if pooled > score:
                score, direction = pooled, "up" if pooled_z > 0 else "down"
                volume += self._volume(prev[0], prev[2], prev[1])
        return Scored(x, mu, lower, upper, score, direction, score >= self.threshold, z, volume)

    def _bounds(self, mu: float, half: float) -> tuple[float, float]:
        return mu - half, mu + half

    def _pooled_z(self, x: float, n: float, mu: float, rho: float | None = None,
                  bias: float | None = None) -> float:
        """The residual of this window and the last one pooled, as one window of their summed
        evidence (exact-ish deviance tails for small counts, the same learned dispersion), shrunk
        by the residuals' lag-1 correlation (two neighbouring windows are not independent) and
        centred on the level's recent bias, as the CUSUM is."""
        x_p, n_p, mu_p = self._pool(self.pool_prev, x, n, mu)
        mu_p = self._clamp(mu_p)
        z = self._residual_z(x_p, mu_p, n_p, self._var_total(mu_p, n_p))
        if rho is None:
            rho = self._residual_rho()
        if bias is None:
            bias = self._residual_bias()
        return (z - _SQRT2 * bias) / math.sqrt(1.0 + rho)

    def _point_score(self, z: float) -> float:
        return _t_tail_score(z, self.tail_dof) if self.tail_dof > 0 else _tail_score(z)

    def learn_one(self, t: float, value: float | None, numerator: float | None = None,
                  denominator: float | None = None) -> None:
        """Learn the point (after :meth:`score_one`); a point without evidence is skipped."""
        judged = self._judge(t, value, numerator, denominator)
        obs, mu, var_total, z, returning, seasoned = judged
        self._cache = None
        cusums, self._cusum_cache = self._cusum_cache, None
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
            self.shift._reset()
        elif self.prev_delta is not None:
            self.prev_left -= 1
            if self.prev_left <= 0:
                self.prev_delta = None

        if cusums is not None and cusums[0] is judged:   # score_one's, for this very judgement
            _, up, down, point_volume = cusums
        else:
            up, down = self._cusum_next(z)
            point_volume = self._volume(x, mu, n)
        if self.sequential_seasoned and not seasoned:   # as in score_one: no run builds up (nor freezes)
            up = down = 0.0
        self.evidence_up = self.evidence_up + point_volume if up > 0 else 0.0
        self.evidence_down = self.evidence_down + point_volume if down > 0 else 0.0
        recent = self.recent
        recent.append(x)
        del recent[:-5]
        young = self.n_learned < self.learn_freely
        if young:
            up = down = 0.0
        self.cusum_up, self.cusum_down = up, down
        peak = down if down > up else up              # max(up, down)
        slow = peak >= self.slow_at
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
        z_clipped = z if z < clip_z else clip_z       # max(-clip_z, min(clip_z, z))
        z_clipped = z_clipped if z_clipped > low else low
        self.ac_cross = keep * self.ac_cross + alpha_var * z_clipped * self.last_z
        self.ac_square = keep * self.ac_square + alpha_var * z_clipped * z_clipped
        self.ac_mean = keep * self.ac_mean + alpha_var * z_clipped
        self.last_z = z_clipped
        sd = math.sqrt(var_total)
        e = x - mu
        high, low = clip_z * sd, -clip_z * sd
        e_clipped = e if e < high else high           # max(-clip_z * sd, min(clip_z * sd, e))
        e_clipped = e_clipped if e_clipped > low else low
        factor = 1.0
        if seasoned and self.alpha_seasoned is not None:
            factor = self.alpha_seasoned / self.alpha
        if abs(z) >= clip_z:
            # out of band: barely move until Page-Hinkley says the shift lasts, so an incident
            # keeps looking like one (and its end is not a new incident)
            factor *= 0.25
        if slow:
            # evidence of a blip may be building: learn it slowly, so the blip is not absorbed
            # before it can be confirmed
            factor *= 0.1
        self._update_level(mu, n, e_clipped, factor)
        if peak < self.slow_at:
            # a blip in the making must not widen the bands that should catch it; otherwise the
            # noise sees up to twice the learning clip, so heavy-tailed series get wider bands
            high, low = 2.0 * clip_z * sd, -2.0 * clip_z * sd
            e_noise = e if e < high else high         # max(-2.0 * clip_z * sd, min(2.0 * clip_z * sd, e))
            e_noise = e_noise if e_noise > low else low
            sample = self._noise_sample(e_noise, mu, n, z * sd)
            self.extra_sum = keep * self.extra_sum + sample
            self.extra_weight = keep * self.extra_weight + 1.0
        self.volume_mean += alpha_var * (n - self.volume_mean)
        self.t_last = t
        self.n_learned += 1

        clip = self.relevel_clip
        low = -clip
        clipped = z if z < clip else clip             # max(-clip, min(clip, z))
        shift = self.shift
        shift.update(clipped if clipped > low else low)
        if shift.drift_detected and not returning:
            self._relevel_to_recent()
        self._commit_profile(t, x)

    def _follow_profile(self, t: float) -> None:
        """Move the level by the daily profile's step from the last point's bin to ``t``'s."""
        step = self._profile_step(t)
        if step:   # None (unseen) or 0.0 (same bin): nothing to move
            self.level = self._clamp(self._moved(self.level, step))

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
        self.evidence_up = self.evidence_down = 0.0
        self.frozen_run = 0
        self.shift._reset()

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

    def _commit_profile(self, t: float, x: float | None) -> None:
        """Accumulate (clipped) observations per bin; at a bin change fold the bin into the profile.
        ``x`` None: only move on to ``t``'s bin (a point not learned)."""
        b = self._bins.get(t)
        if b is None:
            b = self._bin(t)
        if b != self.bin_current:
            if self.bin_count:
                i = self.bin_current
                mean = self.bin_sum / self.bin_count
                if self.profile_days[i]:
                    gamma = max(self.season_gamma, 1.0 / (1 + self.profile_days[i]))
                    self.profile[i] += gamma * (mean - self.profile[i])
                else:
                    self.profile[i] = mean
                self.profile_days[i] = min(self.profile_days[i] + 1, 1000)
            self.bin_current, self.bin_sum, self.bin_count = b, 0.0, 0
        if x is not None:
            # _profile_key(x), written out
            self.bin_sum += (math.log(0.5 if 0.5 > x else x) if self.multiplicative else x) - self.offset   # max(x, 0.5)
            self.bin_count += 1

    # --- state -------------------------------------------------------------------------------

    _STATE_FIELDS = ("n_learned", "t_last", "level", "trend", "volume_mean", "extra_sum",
                     "extra_weight", "profile", "profile_days", "bin_current", "bin_sum",
                     "bin_count", "offset", "recent", "prev_delta", "prev_left", "cusum_up",
                     "cusum_down", "pool_prev", "evidence_up", "evidence_down", "frozen_run", "last_z", "ac_cross", "ac_square", "ac_mean")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_learned={self.n_learned}, level={self.level:.6g})"


class ValueDetector(SeriesDetector):
    """Means and other real values (order value, NAB series); ``denominator`` = observations.

    The noise is learned from the residuals; a window with fewer observations than usual is
    weaker evidence, one with more is not taken as stronger (a busy evening stays quiet).

    >>> det = ValueDetector()
    >>> for minute in range(300):
    ...     t = minute * 60.0
    ...     value = 50.0 + (minute % 7) * 0.5     # a noisy but steady order value
    ...     _ = det.score_one(t, value, denominator=40)
    ...     det.learn_one(t, value, denominator=40)
    >>> det.score_one(300 * 60.0, 51.0, denominator=40).is_anomaly
    False
    >>> drop = det.score_one(300 * 60.0, 30.0, denominator=40)
    >>> drop.is_anomaly, drop.direction
    (True, 'down')
    """

    kind = "value"

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        return e * e * min(n / self.volume_mean, 1.0) if self.volume_mean > 0 else e * e

    def _extra_var(self, mu: float, n: float) -> float:
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return est * max(self.volume_mean / n, 1.0)

    def _start_noise(self, x: float) -> None:
        # nothing is known about the noise of a new value series: assume 10 % of the first
        # value, worth two points, so the second point is not a one-in-a-billion event
        self.extra_sum, self.extra_weight = 2.0 * (0.1 * x) ** 2, 2.0

    def _floor_var(self, mu: float) -> float:
        # a perfectly flat series must not turn every rounding error into an alert
        return (1e-3 * abs(mu)) ** 2 + 1e-12

    # --- empirical calibration (kind "value" only) --------------------------------------------

    _STATE_FIELDS = SeriesDetector._STATE_FIELDS + (
        "calib_bins", "calib_total", "calib_unit")

    def _reset(self) -> None:
        super()._reset()
        self.calib_bins: list[list[float]] = []   # [bin, weight] sorted by bin: decayed histogram of log2|residual|
        self.calib_total = 0.0        # sum of the weights
        self.calib_unit = 1.0         # weight of the next residual (weights grow instead of decaying)
        self._extra_cache: tuple | None = None

    def _calib_bin(self, e: float) -> int:
        a = abs(e)
        if a < 1e-300:
            return -1_000_000
        return math.floor(self.calibrate_bins * math.log2(a))

    def _calibrated(self, t, value, numerator, denominator, scored: Scored) -> tuple[float, int | None]:
        """The score of one point, the less rare of the noise model and the residual history,
        and the residual's histogram bin (None: no residual)."""
        key = (t, value, numerator, denominator)
        if self._extra_cache is not None and self._extra_cache[0] == key:
            return self._extra_cache[1]
        score, b = scored.score, None
        if scored.expected is not None and scored.value is not None and math.isfinite(scored.value):
            b = self._calib_bin(scored.value - scored.expected)
            if self.calibrate_memory > 0 and self.calib_total > 0:
                p_model = 10.0 ** (-10.0 * score)
                # the residuals' exceedance curve, made to fall no faster than a power law
                # (|r| / |e|)^calibrate_tail: a residual a little beyond the largest seen is nearly
                # as common as it was, one many times larger is news
                pos = self.calibrate_bins * math.log2(max(abs(scored.value - scored.expected), 1e-300))
                gamma = self.calibrate_tail / self.calibrate_bins
                above = best = 0.0
                for k, w in reversed(self.calib_bins):
                    if k > b:
                        above += w
                        best = above
                        continue
                    if k == b:     # residuals spread evenly (in log) within their bin
                        v = above + w * (k + 1 - pos)
                        best = v if v > best else best      # max(best, v)
                    above += w
                    if above > self.calibrate_top * self.calib_total:
                        break      # the power law extends the top of the histogram only
                    share = 2.0 ** (gamma * (k - pos))
                    v = above * share
                    best = v if v > best else best          # max(best, v)
                    if self.calib_total * share <= best:
                        break
                prior = self.calibrate_prior * self.calib_unit
                p_emp = (best + prior * p_model) / (self.calib_total + prior)
                score = min(score, max(0.0, -math.log10(max(p_emp, 1e-300)) / 10.0))
        result = (score, b)
        self._extra_cache = (key, result)
        return result

    def score_one(self, t, value, numerator=None, denominator=None) -> Scored:
        scored = super().score_one(t, value, numerator, denominator)
        if not self.calibrate_memory:
            return scored
        final, _ = self._calibrated(t, value, numerator, denominator, scored)
        return Scored(scored.value, scored.expected, scored.lower, scored.upper, final, scored.direction,
                      final >= self.threshold, scored.z, scored.volume)

    def learn_one(self, t, value, numerator=None, denominator=None) -> None:
        if self.calibrate_memory:
            cache = self._extra_cache
            if cache is not None and cache[0] == (t, value, numerator, denominator):
                b = cache[1][1]   # score_one's: _calibrated would return it without reading a Scored
            else:
                scored = super().score_one(t, value, numerator, denominator)
                _, b = self._calibrated(t, value, numerator, denominator, scored)
            self._extra_cache = None
            if b is not None:
                self._learn_calibration(b)
        super().learn_one(t, value, numerator, denominator)

    def _learn_calibration(self, b: int) -> None:
        if self.calibrate_memory > 0:
            bins = self.calib_bins
            i = len(bins)
            while i > 0 and bins[i - 1][0] > b:
                i -= 1
            if i > 0 and bins[i - 1][0] == b:
                bins[i - 1][1] += self.calib_unit
            else:
                bins.insert(i, [b, self.calib_unit])
            self.calib_total += self.calib_unit
            self.calib_unit /= 1.0 - 1.0 / self.calibrate_memory
            if self.calib_unit > 1e30:    # rescale; drop bins that no longer weigh anything
                scale = 1.0 / self.calib_unit
                self.calib_bins = [[k, w * scale] for k, w in bins if w * scale > 1e-9]
                self.calib_total = sum(w for _, w in self.calib_bins)
                self.calib_unit = 1.0


class CountDetector(SeriesDetector):
    """Counts per window (events, complaints): Poisson noise plus learned over-dispersion,
    a multiplicative daily profile.

    >>> import random
    >>> rng = random.Random(1)
    >>> det = CountDetector()
    >>> def poisson(lam):
    ...     k, p, limit = 0, 1.0, math.exp(-lam)
    ...     while True:
    ...         p *= rng.random()
    ...         if p < limit:
    ...             return k
    ...         k += 1
    >>> for minute in range(600):
    ...     t = minute * 60.0
    ...     count = poisson(20)
    ...     _ = det.score_one(t, count)
    ...     det.learn_one(t, count)
    >>> det.score_one(600 * 60.0, 26).is_anomaly
    False
    >>> surge = det.score_one(600 * 60.0, 80)
    >>> surge.is_anomaly, surge.direction
    (True, 'up')
    """

    kind = "count"
    multiplicative = True

    def _observe(self, value, numerator, denominator):
        if value is None or not math.isfinite(value) or value < 0:
            return None
        return float(value), 1.0

    def _clamp(self, mu: float) -> float:
        # Jeffreys-like floor: zeros all night do not make one event a miracle
        low = 0.5 * self.alpha
        return low if low > mu else mu              # max(mu, 0.5 * self.alpha)

    def _sampling_var(self, mu: float, n: float) -> float:
        return mu

    def _extra_var(self, mu: float, n: float) -> float:
        # quasi-Poisson: events come in clusters (a session makes several), so the variance is
        # a multiple of the mean, not Poisson's mean itself
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return max(est, 0.0) * mu

    def _var_total(self, mu: float, n: float) -> float:
        # _variance(mu, n)[1] with the hooks written out (sampling mu, floor 0.0), same operations
        weight = self.extra_weight
        est = self.extra_sum / weight if weight > 0 else 0.0
        extra = (0.0 if 0.0 > est else est) * mu     # max(est, 0.0) * mu
        extra *= 1.0 + 4.0 / (weight + 1.0)
        return mu + extra + 0.0

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        return (e * e - mu) / mu

    def _noise_sample(self, e: float, mu: float, n: float, residual: float) -> float:
        # _dispersion_sample with the sampling variance (mu) written out
        deviance_z = residual / math.sqrt(mu)
        clip = 2.0 * self.clip_z
        low = -clip
        deviance_z = deviance_z if deviance_z < clip else clip    # max(-clip, min(clip, deviance_z))
        deviance_z = deviance_z if deviance_z > low else low
        return deviance_z * deviance_z - 1.0

    def _residual_z(self, x: float, mu: float, n: float, var_total: float) -> float:
        xlogy = 0.0 if x <= 0.0 else x * math.log(x / mu)   # _xlogy(x, mu)
        deviance = 2.0 * (xlogy - (x - mu))
        z = math.copysign(math.sqrt(0.0 if 0.0 > deviance else deviance), x - mu)   # max(deviance, 0.0)
        return z * math.sqrt(mu / var_total)

    def _volume(self, x: float, mu: float, n: float) -> float:
        return mu if mu > x else x                  # max(x, mu)

    def _pool(self, prev: list[float], x: float, n: float, mu: float) -> tuple[float, float, float]:
        return prev[0] + x, 1.0, prev[2] + mu

    def _bounds(self, mu: float, half: float) -> tuple[float, float]:
        lower = mu - half
        return (lower if lower > 0.0 else 0.0), mu + half   # max(0.0, mu - half)


class RateDetector(SeriesDetector):
    """Rates = numerator / denominator (cart abandonment, payment failures): binomial noise in
    the denominator plus a learned extra variance; volume-weighted learning.

    >>> det = RateDetector()
    >>> for minute in range(300):
    ...     t = minute * 60.0
    ...     carts = 4000
    ...     abandoned = 2800 + (minute % 5 - 2) * 20     # ~70 % abandonment
    ...     _ = det.score_one(t, abandoned / carts, abandoned, carts)
    ...     det.learn_one(t, abandoned / carts, abandoned, carts)
    >>> det.score_one(300 * 60.0, 4 / 4, 4, 4).is_anomaly           # 4 of 4 carts: weak evidence
    False
    >>> det.score_one(300 * 60.0, 3600 / 4000, 3600, 4000).is_anomaly  # 90 % of 4,000: strong
    True
    """

    kind = "rate"
    _STATE_FIELDS = SeriesDetector._STATE_FIELDS + ("ew_num", "ew_den")

    def _reset(self) -> None:
        super()._reset()
        self.ew_num = 0.0   # exponentially weighted sums of numerators and denominators: the
        self.ew_den = 0.0   # level is their ratio, so every trial weighs the same (volume-weighted)

    def _estimate(self) -> float:
        # Jeffreys-style half a success in one trial: a new or quiet series is not certain of
        # a rate of exactly 0 or 1 (0 of 1 cart at night must not make the next abandon a miracle)
        return (self.ew_num + 0.5) / (self.ew_den + 1.0)

    def _start_level(self, x: float, n: float) -> None:
        self.ew_num, self.ew_den = x * n, n
        self.level = self._clamp(self._estimate())

    def _update_level(self, mu: float, n: float, e_clipped: float, factor: float) -> None:
        keep = (1.0 - self.alpha) ** factor
        self.ew_num = keep * self.ew_num + factor * (mu + e_clipped) * n
        self.ew_den = keep * self.ew_den + factor * n
        self.level = self._clamp(self._estimate())

    def _apply_relevel(self, delta: float) -> None:
        super()._apply_relevel(delta)
        self.ew_num = self.level * self.ew_den

    def _observe(self, value, numerator, denominator):
        if numerator is not None and denominator is not None:
            if denominator <= 0 or numerator < 0:
                return None
            x = float(numerator) / float(denominator)
            x = 0.0 if 0.0 > x else x                   # min(max(x, 0.0), 1.0)
            return (1.0 if 1.0 < x else x), float(denominator)
        if value is None or not math.isfinite(value):
            return None
        return min(max(float(value), 0.0), 1.0), float(denominator) if denominator else 1.0

    def _clamp(self, mu: float) -> float:
        mu = 1e-6 if 1e-6 > mu else mu                  # min(max(mu, 1e-6), 1.0 - 1e-6)
        return (1.0 - 1e-6) if (1.0 - 1e-6) < mu else mu

    def _sampling_var(self, mu: float, n: float) -> float:
        return mu * (1.0 - mu) / n

    def _extra_var(self, mu: float, n: float) -> float:
        # quasi-binomial: trials come in clusters (a session's page views, a customer's retries),
        # so the extra variance is a multiple of the binomial one at every volume
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return max(est, 0.0) * self._sampling_var(mu, n)

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        sampling = self._sampling_var(mu, n)
        return (e * e - sampling) / sampling

    def _noise_sample(self, e: float, mu: float, n: float, residual: float) -> float:
        # _dispersion_sample with the sampling variance written out
        deviance_z = residual / math.sqrt(mu * (1.0 - mu) / n)
        clip = 2.0 * self.clip_z
        low = -clip
        deviance_z = deviance_z if deviance_z < clip else clip    # max(-clip, min(clip, deviance_z))
        deviance_z = deviance_z if deviance_z > low else low
        return deviance_z * deviance_z - 1.0

    def _floor_var(self, mu: float) -> float:
        # the level itself is uncertain when few trials back it
        return mu * (1.0 - mu) / (self.ew_den + 1.0)

    def _var_total(self, mu: float, n: float) -> float:
        # _variance(mu, n)[1] with the hooks written out, same operations
        sampling = mu * (1.0 - mu) / n
        weight = self.extra_weight
        est = self.extra_sum / weight if weight > 0 else 0.0
        extra = (0.0 if 0.0 > est else est) * sampling     # max(est, 0.0) * sampling
        extra *= 1.0 + 4.0 / (weight + 1.0)
        return sampling + extra + mu * (1.0 - mu) / (self.ew_den + 1.0)

    def _residual_z(self, x: float, mu: float, n: float, var_total: float) -> float:
        k = x * n
        # _xlogy(k, n * mu) + _xlogy(n - k, n * (1.0 - mu)), written out
        rest = n - k
        deviance = 2.0 * ((0.0 if k <= 0.0 else k * math.log(k / (n * mu)))
                          + (0.0 if rest <= 0.0 else rest * math.log(rest / (n * (1.0 - mu)))))
        z = math.copysign(math.sqrt(0.0 if 0.0 > deviance else deviance), x - mu)   # max(deviance, 0.0)
        return z * math.sqrt(mu * (1.0 - mu) / n / var_total)

    def _bounds(self, mu: float, half: float) -> tuple[float, float]:
        lower, upper = mu - half, mu + half            # max(0.0, mu - half), min(1.0, mu + half)
        return (lower if lower > 0.0 else 0.0), (upper if upper < 1.0 else 1.0)


class MeanDetector(ValueDetector):
    """Means over a window's observations (average order value); ``denominator`` = observations.

    The level is the ratio of exponentially weighted sums (sum of values / number of values),
    so every observation weighs the same and a window of 2 orders cannot drag it; the noise is
    the per-observation variance, so a window's band narrows with its number of observations.

    >>> det = MeanDetector()
    >>> for minute in range(300):
    ...     t = minute * 60.0
    ...     mean = 50.0 + (minute % 7 - 3) * 1.5     # the mean of 40 orders
    ...     _ = det.score_one(t, mean, denominator=40)
    ...     det.learn_one(t, mean, denominator=40)
    >>> det.score_one(300 * 60.0, 52.0, denominator=40).is_anomaly
    False
    >>> for minute in range(300, 310):           # orders at half price, window after window
    ...     drop = det.score_one(minute * 60.0, 25.0, denominator=40)
    ...     det.learn_one(minute * 60.0, 25.0, denominator=40)
    >>> drop.is_anomaly, drop.direction
    (True, 'down')
    """

    kind = "mean"
    # the calibration fields of ValueDetector are not used by means (their settings keep it off)
    _STATE_FIELDS = SeriesDetector._STATE_FIELDS + ("ew_num", "ew_den")

    def _reset(self) -> None:
        super()._reset()
        self.ew_num = 0.0
        self.ew_den = 0.0

    def _start_level(self, x: float, n: float) -> None:
        self.ew_num, self.ew_den = x * n, n
        self.level = x

    def _start_noise(self, x: float) -> None:
        # per-observation spread unknown: assume half the first mean, worth two points
        self.extra_sum, self.extra_weight = 2.0 * (0.5 * x) ** 2, 2.0

    def _update_level(self, mu: float, n: float, e_clipped: float, factor: float) -> None:
        keep = (1.0 - self.alpha) ** factor
        self.ew_num = keep * self.ew_num + factor * (mu + e_clipped) * n
        self.ew_den = keep * self.ew_den + factor * n
        if self.ew_den > 0:
            self.level = self.ew_num / self.ew_den

    def _apply_relevel(self, delta: float) -> None:
        super()._apply_relevel(delta)
        self.ew_num = self.level * self.ew_den

    def _extra_sample(self, e: float, mu: float, n: float) -> float:
        return e * e * n          # a window mean of n values: n e^2 estimates one value's variance

    def _extra_var(self, mu: float, n: float) -> float:
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return max(est, 0.0) / n

    def _floor_var(self, mu: float) -> float:
        est = self.extra_sum / self.extra_weight if self.extra_weight > 0 else 0.0
        return max(est, 0.0) / (self.ew_den + 1.0) + (1e-3 * abs(mu)) ** 2 + 1e-12

    def _var_total(self, mu: float, n: float) -> float:
        # _variance(mu, n)[1] with the hooks written out (sampling 0.0), same operations
        weight = self.extra_weight
        est = self.extra_sum / weight if weight > 0 else 0.0
        est = 0.0 if 0.0 > est else est               # max(est, 0.0)
        extra = est / n
        extra *= 1.0 + 4.0 / (weight + 1.0)
        return 0.0 + extra + (est / (self.ew_den + 1.0) + (1e-3 * abs(mu)) ** 2 + 1e-12)



_KIND_CLASSES = {"rate": RateDetector, "count": CountDetector, "mean": MeanDetector, "value": ValueDetector}


def make_detector(kind: str, settings: Mapping[str, Any] | None = None) -> SeriesDetector:
    """A fresh detector for a series of ``kind`` ("rate", "count" or "value").

    ``settings`` is the YAML ``detector`` section: flat keys for every kind and/or one mapping
    per kind (``{"threshold": 0.6, "rate": {"alpha": 0.03}}``); None means the defaults.

    >>> make_detector("count").score_one(0.0, 5).expected is None   # nothing seen yet
    True
    """
    if kind not in _KIND_CLASSES:
        raise SettingsError(f"unknown detector kind {kind!r}; use one of {', '.join(KINDS)}")
    return _KIND_CLASSES[kind](settings)

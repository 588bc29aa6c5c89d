"""Detector settings: the defaults of every kind, and their validation.

A metric's YAML ``detector:`` section is either knobs of our detectors (flat keys and/or one
mapping per kind) or ``model:`` naming a River model (see :mod:`blipwatch.detectors.river_models`).

>>> resolve_settings("rate", {"threshold": 0.7, "count": {"alpha": 0.2}})["threshold"]
0.7
>>> resolve_settings("count", {"alfa": 1})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
blipwatch.detectors.settings.SettingsError: unknown detector setting 'alfa'; known: adopt_after, alpha, ...
"""

from __future__ import annotations

from typing import Any, Mapping

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
    "end_share": 0.25,       # a point that does not lean a CUSUM's way by half a sigma halves it; once the CUSUM is
                             # at freeze_at, one that does not lean by this share of its run's shift (at the point's
                             # volume) does too: windows 1-2 sigma off after a 20-sigma drop are its end (0: off)
    "pool_windows": 1,       # 2: also judge the last two windows pooled (their counts added up), on the
                             # same tail scale as one point: a blip in a few events per window (5 of 7
                             # payments failing, then 7 of 9) is rare over two windows before one is
    "guard_k": 0.5,          # learning guard: a CUSUM of reference guard_k sigma that never alerts; while it is
    "guard_at": 4.0,         # above guard_at (p ~ 1 %) the level learns slowly, as above slow_at (0: off). A
                             # shift of ~1 sigma a window (a tracking drop on a few events a window) never
                             # builds the k=1 CUSUM, and was learned away within the hour
    "freeze_at": 4.0,        # while a CUSUM is above this (p ~ 1e-4), the level and noise do not learn
    "slow_at": 2.0,          # while a CUSUM is above this (p ~ 0.6 %), the level learns at a tenth of its rate
    "hold_after": 10,        # a point as rare as a CUSUM at freeze_at holds all learning for this many points
    "adopt_after": 120,      # points of frozen learning after which the recent level is adopted as the new normal
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
    "change_memory": 0,      # value: points of memory of the level change's own histogram (0: off)
    "change_fast": 0.1,      # value: ... the fast means' rate per point
    "change_slow": 0.01,     # value: ... the slow means' rate per point
    "breakout_margin": 0.0,  # value: a value beyond the learned range by this share of it scores 1e-5 (0: off)
    "seasonal_memory": 0,    # value: points of memory of the distance from the daily profile's own histogram (0: off)
    "news_decay": 0.0,       # value: a score counts only above the recent scores, a reference that
                             # falls by this per point (0: off)
}

KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    # rates: ratios of same-time counts, so traffic's daily swing cancels out; their profile bins
    # (a few trials each on small segments) are noise that would drag the level around
    "rate": {"alpha": 0.02, "beta": 0.0, "season_bins": 1, "pool_windows": 2,
             # an incident's end: a window half-way to normal halves its CUSUM (means, whose few
             # heavy-tailed values have windows near normal inside a real shift, keep a quarter)
             "end_share": 0.5},
    # counts follow the daily curve with the level alone on the first day (alpha 0.1, ~10 min);
    # once the profile knows the time of day it carries the curve, and a level that still chased
    # every 10 minutes would absorb a surge (3x complaints) before its evidence could add up
    # and before that, a run of residuals of one sign is mostly the level lagging the curve: on
    # its first day a count alerts on one rare point only (a tracking drop, a 10x surge)
    "count": {"alpha_seasoned": 0.03, "sequential_seasoned": 1, "pool_windows": 2, "end_share": 0.5},
    # means of a window's observations (order value): volume-weighted like rates, and no daily
    # profile (a handful of orders per bin is noise, not a season)
    "mean": {"alpha": 0.02, "beta": 0.0, "season_bins": 1, "pool_windows": 2, "cusum_clip": 3.0, "cusum_k": 0.5, "cusum_cap": 20.0,
             # order values are heavy-tailed (one big basket): one window above the level is judged
             # with t(4), so only a run of windows can be rare; below it, with the normal tail
             "tail_dof": 4},
    # generic values (NAB-like machine metrics) are strongly autocorrelated and often noiseless:
    # they are judged one point at a time, with Page-Hinkley re-levelling
    "value": {"sequential": 0, "calibrate_memory": 2000, "change_memory": 2000, "news_decay": 0.005,
              "breakout_margin": 0.03, "seasonal_memory": 2000},
}

#: The keys of a ``detector:`` section that names a River model instead of our knobs.
MODEL_KEYS = ("model", "params", "threshold", "calibrate_memory")


class SettingsError(ValueError):
    """A detector or policy setting is unknown or out of range; the message says which."""


def resolve_settings(kind: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults for ``kind`` overlaid with ``settings`` (flat keys, and/or a per-kind mapping).

    With a ``model`` key, the checked River model settings instead (``river_models.model_settings``).
    """
    if kind not in KINDS:
        raise SettingsError(f"unknown detector kind {kind!r}; use one of {', '.join(KINDS)}")
    if settings is not None and isinstance(settings, Mapping) and "model" in settings:
        from blipwatch.detectors.river_models import model_settings

        return model_settings(settings)
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
    if not 0.0 <= merged["end_share"] <= 1.0:
        raise SettingsError(f"detector setting 'end_share' must be in [0, 1], not {merged['end_share']}")
    if not 0.0 < merged["threshold"] <= 1.0:
        raise SettingsError(f"detector setting 'threshold' must be in (0, 1], not {merged['threshold']}")
    if merged["season_bins"] < 1 or merged["clip_z"] <= 0 or merged["relevel_threshold"] <= 0:
        raise SettingsError("season_bins, clip_z and relevel_threshold must be positive")
    return merged

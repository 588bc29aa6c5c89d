"""One detector per series: :func:`make_detector` builds the one a metric's config asks for."""

from __future__ import annotations

from typing import Any, Mapping

from blipwatch.detectors.base import SeriesDetector
from blipwatch.detectors.count import CountDetector
from blipwatch.detectors.mean import MeanDetector
from blipwatch.detectors.rate import RateDetector
from blipwatch.detectors.settings import KINDS, SettingsError
from blipwatch.detectors.value import ValueDetector

KIND_CLASSES: dict[str, type[SeriesDetector]] = {
    "rate": RateDetector, "count": CountDetector, "mean": MeanDetector, "value": ValueDetector}


def make_detector(kind: str, settings: Mapping[str, Any] | None = None):
    """A fresh detector for a series of ``kind``: "rate", "count", "mean" or "value".

    ``settings`` is the YAML ``detector`` section: flat keys for every kind and/or one mapping
    per kind (``{"threshold": 0.6, "rate": {"alpha": 0.03}}``); None means the defaults. With a
    ``model`` key (``{"model": "anomaly.HalfSpaceTrees", "params": {...}}``) it is that River
    model, its raw scores calibrated to the same rarity scale
    (:mod:`blipwatch.detectors.river_models`).

    >>> make_detector("count").judge_one({"t": 0.0, "value": 5}).expected is None   # nothing seen yet
    True
    >>> make_detector("mean")
    MeanDetector(n_learned=0, level=0)
    >>> make_detector("gauge")
    Traceback (most recent call last):
    ...
    blipwatch.detectors.settings.SettingsError: unknown detector kind 'gauge'; use one of rate, count, mean, value
    """
    if kind not in KIND_CLASSES:
        raise SettingsError(f"unknown detector kind {kind!r}; use one of {', '.join(KINDS)}")
    if settings is not None and isinstance(settings, Mapping) and "model" in settings:
        from blipwatch.detectors.river_models import make_model_detector

        return make_model_detector(kind, settings)
    return KIND_CLASSES[kind](settings)

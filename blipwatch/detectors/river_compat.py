"""Everything in blipwatch that depends on how River behaves inside, in one place.

Our detectors store only our own fields (``page_hinkley`` replaced the River Page-Hinkley whose
private fields the state used to hold). What remains depends on River's version, each with a test
in ``tests/unit/test_river_compat.py`` that fails when a River upgrade changes it:

* a River model named in the config is stored as River's own pickle, tagged with River's version:
  River's pickles are not compatible across versions (0.24 -> 0.25 broke them), so a state written
  by another River version is refused and the series re-warms;
* ``time_series.HoltWinters`` cannot forecast before it has seen ``max(2, seasonality)`` values
  (its documented initialisation; ``forecast`` raises IndexError before that).

>>> from river import time_series
>>> forecast_ready(time_series.HoltWinters(0.3, 0.1, 0.6, seasonality=24), 23)
False
"""

from __future__ import annotations

import pickle
from typing import Any

import river
from river import time_series

RIVER_VERSION = river.__version__


class RiverVersionError(ValueError):
    """A stored River model was written by another River version: re-warm the series."""


def dump_model(model: Any) -> list:
    """[River version, pickle] of a River model."""
    return [RIVER_VERSION, pickle.dumps(model, protocol=5)]


def load_model(stored: list) -> Any:
    """The River model stored by :func:`dump_model`, if written by this River version."""
    version, blob = stored
    if version != RIVER_VERSION:
        raise RiverVersionError(f"River model stored by River {version}, this is River {RIVER_VERSION}")
    return pickle.loads(blob)


def forecast_ready(model: Any, n_learned: int) -> bool:
    """Whether a River forecaster that has learned ``n_learned`` values can forecast."""
    if isinstance(model, time_series.HoltWinters):
        return n_learned >= max(2, model.seasonality)
    return n_learned >= 1

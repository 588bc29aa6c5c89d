"""What blipwatch assumes about River's insides (detectors/river_compat.py), one test per assumption.

A River upgrade that changes one of these fails here, naming what to revisit.
"""

from __future__ import annotations

import pytest
import river
from river import anomaly, preprocessing, time_series

from blipwatch.detectors.river_compat import (
    RIVER_VERSION,
    RiverVersionError,
    dump_model,
    forecast_ready,
    load_model,
)


def test_a_pickled_river_model_comes_back_scoring_the_same():
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=2)
    for i in range(300):
        model.learn_one({"value": float(i % 17)})
    stored = dump_model(model)
    assert stored[0] == river.__version__ == RIVER_VERSION
    copy = load_model(stored)
    for i in range(50):
        x = {"value": float(i % 23)}
        assert copy.score_one(x) == model.score_one(x)
        copy.learn_one(x)
        model.learn_one(x)


def test_a_river_model_pickled_by_another_river_version_is_refused():
    version, blob = dump_model(time_series.SNARIMAX(p=1, d=0, q=0))
    with pytest.raises(RiverVersionError, match="River 0.24.0"):
        load_model(["0.24.0", blob])


def test_holt_winters_forecasts_only_after_its_documented_initialisation():
    """River's HoltWinters initialises on max(2, seasonality) values and cannot forecast before
    (IndexError). If this fails, River changed that: revisit ``forecast_ready``."""
    for seasonality in (0, 1, 5, 12):
        model = time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.5 if seasonality else None,
                                         seasonality=seasonality)
        k = max(2, seasonality)
        for i in range(k - 1):
            model.learn_one(float(10 + i % 3))
        assert not forecast_ready(model, k - 1)
        with pytest.raises(IndexError):
            model.forecast(horizon=1)
        model.learn_one(11.0)
        assert forecast_ready(model, k)
        assert len(model.forecast(horizon=1)) == 1


def test_other_forecasters_forecast_after_one_value():
    model = time_series.SNARIMAX(p=2, d=1, q=1)
    model.learn_one(3.0)
    assert forecast_ready(model, 1) and len(model.forecast(horizon=1)) == 1

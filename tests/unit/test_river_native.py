"""Our detectors are River anomaly detectors, and River's models are blipwatch detectors.

River's filters, pipelines and progressive evaluation take ours as they take HalfSpaceTrees; a
metric's config can name a River anomaly model or forecaster, whose raw scores land on the same
rarity scale as ours, and a wrong name or parameter is refused when the config is loaded.
"""

from __future__ import annotations

import copy
import math
import random

import pytest
from river import anomaly, base, compose, evaluate, metrics, stream

from blipwatch.detectors import SettingsError, make_detector
from blipwatch.detectors.river_models import RiverModelDetector
from blipwatch.pipeline.catalogue import Catalogue, CatalogueError, default_config_dict


def labelled_stream(seed: int = 1, n: int = 1500):
    """(x, is_anomaly): a noisy value on a slow wave, with a spike every ~100 points."""
    rng = random.Random(seed)
    for minute in range(n):
        spike = minute > 300 and rng.random() < 0.01
        value = 100.0 + 10.0 * math.sin(minute / 100.0) + rng.gauss(0.0, 2.0) + (40.0 if spike else 0.0)
        yield {"t": minute * 60.0, "value": value}, spike


@pytest.mark.parametrize("kind", ["rate", "count", "mean", "value"])
def test_every_kind_is_a_river_anomaly_detector_scoring_a_float(kind):
    detector = make_detector(kind)
    assert isinstance(detector, base.AnomalyDetector)
    x = {"t": 0.0, "value": 5.0, "numerator": 5, "denominator": 10}
    assert detector.score_one(x) == 0.0
    detector.learn_one(x)
    assert isinstance(detector.score_one({"t": 60.0, "value": 6.0, "numerator": 6, "denominator": 10}), float)


def test_a_threshold_filter_over_ours_flags_the_spikes_and_protects_the_detector():
    # River's protection never shows the detector a flagged point: the value kind's level change
    # (change_memory) would then judge every later point against means that no longer learn
    # (docs/detectors.md); the filter takes the residual's score alone
    detector = make_detector("value", {"change_memory": 0})
    flagged = anomaly.ThresholdFilter(detector, threshold=0.6)
    hits = false_alarms = spikes = 0
    for x, is_spike in labelled_stream():
        is_anomaly = flagged.classify(flagged.score_one(x))
        flagged.learn_one(x)                     # an anomaly is not learned (protect_anomaly_detector)
        spikes += is_spike
        hits += is_spike and is_anomaly
        false_alarms += is_anomaly and not is_spike
    assert spikes >= 8 and hits >= spikes - 2 and false_alarms <= 3


def test_a_pipeline_feeds_ours_a_renamed_feature_and_missing_keys_take_defaults():
    model = compose.FuncTransformer(lambda x: {"value": x["cpu"]}) | make_detector("value")
    for minute in range(300):
        model.learn_one({"cpu": 50.0 + minute % 3})          # no t: one minute after the last point
    assert model.score_one({"cpu": 51.0}) < 0.3
    assert model.score_one({"cpu": 500.0}) >= 0.6


def test_progressive_validation_rocauc_ranks_spikes_above_normal_points():
    # ROC AUC ranks every point; news_decay scores a spike 0 when a rarer one came shortly before
    # (one detection per incident, by design), so every point's score is ranked without it
    dataset = list(labelled_stream())
    auc = evaluate.progressive_val_score(dataset, make_detector("value", {"news_decay": 0}), metrics.ROCAUC())
    assert auc.get() > 0.9


def test_a_river_model_named_in_the_config_is_calibrated_to_our_rarity_scale():
    """Normal points of a river model score like ours: about one in 1,000 reaches 0.3."""
    for settings in ({"model": "preprocessing.MinMaxScaler | anomaly.HalfSpaceTrees", "params": {"seed": 1}},
                     {"model": "time_series.SNARIMAX", "params": {"p": 1, "d": 0, "q": 0}}):
        detector = make_detector("value", settings)
        assert isinstance(detector, RiverModelDetector) and isinstance(detector, base.AnomalyDetector)
        rng = random.Random(4)
        scores = []
        for minute in range(6000):
            x = {"t": minute * 60.0, "value": 100.0 + rng.gauss(0.0, 2.0)}
            scores.append(detector.score_one(x))
            detector.learn_one(x)
        late = scores[1000:]
        assert sum(s >= 0.3 for s in late) / len(late) < 0.01, settings["model"]
        assert sum(s >= 0.1 for s in late) / len(late) > 0.02, settings["model"]   # not all zeros
    spike = detector.judge_one({"t": 6000 * 60.0, "value": 160.0})
    assert spike.is_anomaly and spike.direction == "up" and spike.lower < 100.0 < spike.upper


def test_a_stream_of_river_datasets_runs_through_a_threshold_filter_of_a_river_model_from_config():
    detector = make_detector("value", {"model": "time_series.HoltWinters",
                                       "params": {"alpha": 0.3, "beta": 0.1, "gamma": 0.5, "seasonality": 12}})
    flagged = anomaly.ThresholdFilter(detector, threshold=0.6)
    for x, _ in stream.iter_array([[v] for v in range(200)], feature_names=["value"]):
        flagged.score_one(x)
        flagged.learn_one(x)
    assert detector.n_learned == 200


@pytest.mark.parametrize("section, message", [
    ({"model": "anomaly.HalfSpaceTree"}, "River has no anomaly.HalfSpaceTree; use one of anomaly.HalfSpaceTrees"),
    ({"model": "anomaly.HalfSpaceTrees", "params": {"n_tree": 3}}, "unexpected keyword argument 'n_tree'"),
    ({"model": "time_series.HoltWinters"}, "missing 1 required positional argument: 'alpha'"),
    ({"model": "anomaly.HalfSpaceTrees", "alpha": 0.1}, "'alpha' does not apply to a River model"),
    ({"model": "anomaly.ThresholdFilter"}, "River has no anomaly.ThresholdFilter"),
    ({"model": "preprocessing.MinMaxScaler | time_series.SNARIMAX", "params": {"p": 1, "d": 0, "q": 0}},
     "takes no preprocessing steps"),
])
def test_a_wrong_model_or_parameter_is_refused_at_config_load_in_one_line(section, message):
    document = copy.deepcopy(default_config_dict())
    document["metrics"]["cart_abandonment_rate"]["detector"] = section
    with pytest.raises(CatalogueError) as error:
        Catalogue(document)
    text = str(error.value)
    assert text.startswith("metrics.cart_abandonment_rate.detector: ") and message in text
    assert "\n" not in text
    with pytest.raises(SettingsError):
        make_detector("rate", section)

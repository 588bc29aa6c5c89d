"""River's own models as blipwatch detectors, named in a metric's config.

``detector: {model: anomaly.HalfSpaceTrees, params: {n_trees: 10, seed: 1}}`` gives that
metric's series a River anomaly detector; ``model: time_series.SNARIMAX`` (or ``HoltWinters``) a
River forecaster, judged by its one-step forecast error. Preprocessing steps may come first:
``model: preprocessing.MinMaxScaler | anomaly.HalfSpaceTrees`` (``params`` are the last step's).
The model sees ``{"value": ...}`` (a rate's numerator / denominator when no value is given).

Their raw scores are put on our rarity scale by :class:`~blipwatch.detectors.rarity.RankCalibration`
over the last ``calibrate_memory`` points, so ``threshold`` means the same rarity as for our
detectors. No score before ``WARMUP`` raw scores are known. Forecasters give expected values and
bounds (where the forecast error reaches the threshold); for anomaly models the expected value is
the values' running mean (no bounds), and the direction is the value's side of it.

>>> det = make_model_detector("value", {"model": "time_series.SNARIMAX", "params": {"p": 1, "d": 0, "q": 0},
...                                     "calibrate_memory": 200})
>>> for minute in range(600):
...     x = {"t": minute * 60.0, "value": 50.0 + (minute % 5)}
...     _ = det.score_one(x)
...     det.learn_one(x)
>>> spike = det.judge_one({"t": 600 * 60.0, "value": 90.0})
>>> spike.is_anomaly, spike.direction, spike.expected is not None
(True, 'up', True)
>>> model_settings({"model": "anomaly.HalfSpaceTree"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
blipwatch.detectors.settings.SettingsError: detector model 'anomaly.HalfSpaceTree': River has no anomaly.HalfSpaceTree; use one of anomaly.HalfSpaceTrees, anomaly.LODA, ...
>>> model_settings({"model": "anomaly.HalfSpaceTrees", "params": {"n_tree": 3}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
blipwatch.detectors.settings.SettingsError: detector params of anomaly.HalfSpaceTrees are wrong: ...unexpected keyword argument 'n_tree'
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from river import anomaly, base, compose, preprocessing, time_series

from blipwatch.detectors.rarity import RankCalibration
from blipwatch.detectors.river_compat import dump_model, forecast_ready, load_model
from blipwatch.detectors.scored import Scored
from blipwatch.detectors.settings import MODEL_KEYS, SettingsError
from blipwatch.detectors.tails import p_of_score, score_of_p

WARMUP = 30
_MODULES = {"anomaly": anomaly, "time_series": time_series, "preprocessing": preprocessing}


def _choices(module_name: str, kind: type) -> list[str]:
    module = _MODULES[module_name]
    return sorted(f"{module_name}.{name}" for name in dir(module)
                  if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), kind)
                  and not issubclass(getattr(module, name), base.AnomalyFilter))


def _step_class(spec: str, name: str, last: bool) -> type:
    module_name, _, class_name = name.partition(".")
    wanted = ("anomaly", "time_series") if last else ("preprocessing",)
    kind = {"anomaly": base.AnomalyDetector, "time_series": time_series.base.Forecaster,
            "preprocessing": base.Transformer}
    if module_name not in wanted:
        role = "the last step" if last else "a step before the model"
        raise SettingsError(f"detector model {spec!r}: {role} must be one of {', '.join(m + '.X' for m in wanted)}")
    cls = getattr(_MODULES[module_name], class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, kind[module_name])) or issubclass(cls, base.AnomalyFilter):
        choices = _choices(module_name, kind[module_name])
        raise SettingsError(f"detector model {spec!r}: River has no {name}; use one of {', '.join(choices)}")
    return cls


def _build(spec: str, params: Mapping[str, Any]):
    names = [part.strip() for part in spec.split("|")]
    classes = [_step_class(spec, name, i == len(names) - 1) for i, name in enumerate(names)]
    if len(classes) > 1 and issubclass(classes[-1], time_series.base.Forecaster):
        raise SettingsError(f"detector model {spec!r}: a time_series forecaster takes no preprocessing steps")
    try:
        last = classes[-1](**params)
    except Exception as exc:   # River's own message says which parameter is wrong
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError(f"detector params of {names[-1]} are wrong: {message}") from None
    steps = [cls() for cls in classes[:-1]] + [last]
    return steps[0] if len(steps) == 1 else compose.Pipeline(*steps)


def model_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The checked settings of a River model detector (the model is built once to check its params)."""
    unknown = set(settings) - set(MODEL_KEYS)
    if unknown:
        raise SettingsError(f"detector setting {sorted(unknown)[0]!r} does not apply to a River model; "
                            f"use {', '.join(MODEL_KEYS)}")
    spec, params = settings["model"], settings.get("params") or {}
    if not isinstance(spec, str) or not spec.strip():
        raise SettingsError("detector model must name a River model, e.g. anomaly.HalfSpaceTrees")
    if not isinstance(params, Mapping):
        raise SettingsError(f"detector params of {spec} must be a mapping of parameter to value")
    threshold, memory = settings.get("threshold", 0.6), settings.get("calibrate_memory", 1000)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise SettingsError(f"detector setting 'threshold' must be in (0, 1], not {threshold!r}")
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 2 * WARMUP:
        raise SettingsError(f"detector setting 'calibrate_memory' must be a whole number >= {2 * WARMUP}")
    _build(spec, params)
    return {"model": spec, "params": dict(params), "threshold": float(threshold), "calibrate_memory": memory}


class RiverModelDetector(base.AnomalyDetector):
    """A River anomaly model or forecaster as a blipwatch detector (see the module docstring)."""

    _STATE_FIELDS = ("n_learned", "t_last", "value_mean")

    def __init__(self, kind: str, settings: Mapping[str, Any]) -> None:
        self.kind = kind
        self.settings = model_settings(settings)
        self.threshold = self.settings["threshold"]
        self.model = _build(self.settings["model"], self.settings["params"])
        self.forecaster = isinstance(self.model, time_series.base.Forecaster)
        self.calibration = RankCalibration(self.settings["calibrate_memory"])
        self.n_learned = 0
        self.t_last: float | None = None
        self.value_mean: float | None = None   # EW mean of the values: an anomaly model's expected value
        self._cache: tuple | None = None

    def __repr__(self) -> str:
        return f"RiverModelDetector({self.settings['model']!r}, n_learned={self.n_learned})"

    @staticmethod
    def _value(x: Mapping[str, Any]) -> float | None:
        value = x.get("value")
        if value is None and x.get("numerator") is not None and x.get("denominator"):
            value = x["numerator"] / x["denominator"]
        return float(value) if value is not None and math.isfinite(value) else None

    def _volume(self, x: Mapping[str, Any], value: float | None, expected: float | None) -> float:
        """The evidence behind the point, as our kinds count it (the policy's ``min_volume``)."""
        if value is None:
            return 0.0
        if self.kind == "count":
            return max(value, expected or 0.0)
        denominator = x.get("denominator")
        return float(denominator) if denominator else 1.0

    def _judge(self, x: Mapping[str, Any]) -> tuple[Scored, float | None]:
        """(the judgement, the raw score to learn); the raw score is None without a value."""
        value = self._value(x)
        key = (x.get("t"), value)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        expected = lower = upper = raw = None
        direction, score = None, 0.0
        calibration = self.calibration
        if self.forecaster:
            if forecast_ready(self.model, self.n_learned):
                expected = float(self.model.forecast(horizon=1)[0])
                if len(calibration) >= WARMUP:
                    half = calibration.raw_at(p_of_score(self.threshold))
                    if half is not None:
                        lower, upper = expected - half, expected + half
                if value is not None:
                    raw = abs(value - expected)
                    direction = "up" if value > expected else "down" if value < expected else None
        else:
            expected = self.value_mean
            if value is not None:
                raw = float(self.model.score_one({"value": value}))
                if expected is not None:
                    direction = "up" if value > expected else "down" if value < expected else None
        if raw is not None and len(calibration) >= WARMUP:
            score = score_of_p(calibration.p(raw))
        result = (Scored(value, expected, lower, upper, score, direction, score >= self.threshold,
                         0.0, self._volume(x, value, expected)), raw)
        self._cache = (key, result)
        return result

    def judge_one(self, x: Mapping[str, Any]) -> Scored:
        return self._judge(x)[0]

    def score_one(self, x: Mapping[str, Any]) -> float:
        return self._judge(x)[0].score

    def learn_one(self, x: Mapping[str, Any]) -> None:
        _, raw = self._judge(x)
        self._cache = None
        value = self._value(x)
        if value is None:
            return
        if raw is not None:
            self.calibration.learn(raw)
        if self.forecaster:
            self.model.learn_one(value)
        else:
            self.model.learn_one({"value": value})
        self.value_mean = value if self.value_mean is None else self.value_mean + 0.02 * (value - self.value_mean)
        self.n_learned += 1
        self.t_last = x.get("t", self.t_last)

    # --- state (blipwatch.detectors.state) ----------------------------------------------------

    def state(self) -> list:
        return [[getattr(self, name) for name in self._STATE_FIELDS], list(self.calibration.history),
                dump_model(self.model)]

    def restore(self, state: list) -> None:
        fields, history, model = state
        for name, value in zip(self._STATE_FIELDS, fields, strict=True):
            setattr(self, name, value)
        self.calibration.restore(history)
        self.model = load_model(model)


def make_model_detector(kind: str, settings: Mapping[str, Any]) -> RiverModelDetector:
    """A detector for a series of ``kind`` running the River model ``settings`` name."""
    return RiverModelDetector(kind, settings)

"""Pure detection logic: per-series online detectors, the alert policy, their state.

No Kafka, no Faust, no I/O: the stream, ``replay`` and ``score-series`` run this same code.
Every detector is a River anomaly detector (``learn_one(x)``, ``score_one(x) -> float``) on a
dict with ``t``, ``value``, ``numerator`` and ``denominator``; ``judge_one(x)`` says more.

>>> from blipwatch.detectors import make_detector, AlertPolicy, dump_state, load_state
>>> det, policy = make_detector("rate"), AlertPolicy(warmup=30)
>>> for minute in range(60):
...     carts = 1000
...     abandoned = 700 if minute < 50 else 950          # the rate jumps at minute 50
...     x = {"t": minute * 60.0, "numerator": abandoned, "denominator": carts}
...     scored = det.judge_one(x)                        # expected, bounds, score, direction
...     det.learn_one(x)
...     transition = policy.update(x["t"], scored, carts)
...     if transition:
...         print(transition.status, transition.direction, transition.severity, minute)
firing up critical 50
>>> det = load_state(dump_state(det))   # versioned bytes; a series keeps detector + policy in one (dump_series)

Modules: ``settings`` (defaults, validation), ``tails`` (the rarity scale), ``base`` (the shared
detector), ``profile`` (daily profile), ``sequential`` (CUSUM, pooled windows), ``learning``
(robust learning, re-levels), ``page_hinkley``, ``calibration`` (value series' residual history),
one module per kind (``rate``, ``count``, ``mean``, ``value``), ``river_models`` (River models
named in the config), ``river_compat`` (what depends on River's version), ``policy``, ``state``.
"""

from blipwatch.detectors.base import SeriesDetector
from blipwatch.detectors.count import CountDetector
from blipwatch.detectors.kinds import make_detector
from blipwatch.detectors.mean import MeanDetector
from blipwatch.detectors.policy import AlertPolicy, Transition
from blipwatch.detectors.rate import RateDetector
from blipwatch.detectors.scored import Scored
from blipwatch.detectors.settings import COMMON_DEFAULTS, KIND_DEFAULTS, KINDS, SettingsError, resolve_settings
from blipwatch.detectors.state import FORMAT_VERSION, StateVersionError, dump_state, load_state
from blipwatch.detectors.value import ValueDetector

__all__ = [
    "AlertPolicy", "Transition", "Scored", "SeriesDetector", "RateDetector", "CountDetector",
    "MeanDetector", "ValueDetector", "make_detector", "resolve_settings", "SettingsError", "dump_state",
    "load_state", "StateVersionError", "FORMAT_VERSION", "COMMON_DEFAULTS", "KIND_DEFAULTS", "KINDS",
]

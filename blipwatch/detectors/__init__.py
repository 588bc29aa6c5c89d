"""Pure detection logic: per-series online detectors, the alert policy, their state.

No Kafka, no Faust, no I/O: the stream, ``replay`` and ``score-series`` run this same code.

>>> from blipwatch.detectors import make_detector, AlertPolicy, dump_state, load_state
>>> det, policy = make_detector("rate"), AlertPolicy(warmup=30)
>>> for minute in range(60):
...     t, carts = minute * 60.0, 1000
...     abandoned = 700 if minute < 50 else 950          # the rate jumps at minute 50
...     scored = det.score_one(t, abandoned / carts, abandoned, carts)
...     det.learn_one(t, abandoned / carts, abandoned, carts)
...     transition = policy.update(t, scored, carts)
...     if transition:
...         print(transition.status, transition.direction, transition.severity, minute)
firing up critical 50
>>> det = load_state(dump_state(det))   # versioned bytes; a series keeps detector + policy in one (dump_series)
"""

from blipwatch.detectors.policy import AlertPolicy, Transition
from blipwatch.detectors.series import (
    COMMON_DEFAULTS,
    KIND_DEFAULTS,
    KINDS,
    CountDetector,
    RateDetector,
    Scored,
    SeriesDetector,
    SettingsError,
    ValueDetector,
    make_detector,
    resolve_settings,
)
from blipwatch.detectors.state import FORMAT_VERSION, StateVersionError, dump_state, load_state

__all__ = [
    "AlertPolicy", "Transition", "Scored", "SeriesDetector", "RateDetector", "CountDetector",
    "ValueDetector", "make_detector", "resolve_settings", "SettingsError", "dump_state",
    "load_state", "StateVersionError", "FORMAT_VERSION", "COMMON_DEFAULTS", "KIND_DEFAULTS", "KINDS",
]

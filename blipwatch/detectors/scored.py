"""What a detector says about one point, beyond River's one float: :class:`Scored`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, init=False)
class Scored:
    """What a detector says about one point (``judge_one``); ``score_one`` returns its ``score``.

    ``expected``, ``lower`` and ``upper`` are None until the series has been seen (and for River
    anomaly models, which predict no value); the bounds are where ``score`` would reach the
    detector's threshold. ``score`` is on the rarity scale of :mod:`blipwatch.detectors.tails`.
    ``z`` is the signed evidence in sigma, ``volume`` the evidence behind the point (rates:
    denominator; counts: the larger of observed and expected; means: the number of observations,
    1 if not given; a run of windows for a sequential score).

    >>> Scored(12.0, 5.0, 3.0, 7.0, 0.7, "up", True, 5.2, 100.0).direction
    'up'
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

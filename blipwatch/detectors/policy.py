"""The alert policy: turns scored points of one series into firing / update / resolved.

Composable like River's filters: a detector knows nothing about alerting, the policy knows
nothing about how a score was made. It only reads ``score``, ``direction`` and the volume.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from blipwatch.detectors.scored import Scored
from blipwatch.detectors.settings import SettingsError

DIRECTIONS = ("up", "down", "both")


@dataclass(frozen=True)
class Transition:
    """A change in the alert state of one series.

    ``status`` is "firing" (a new incident), "update" (its severity rose) or "resolved".
    ``started_at`` is the window start of the incident's first anomalous point and, with the
    series key, makes a stable dedup key. ``t`` is the window start of the point that caused
    this transition; ``score``/``observed``/``expected``/``lower``/``upper`` describe it.
    ``peak_score`` and ``points`` (anomalous points so far) describe the whole incident.
    """

    status: str
    started_at: float
    t: float
    direction: str
    severity: str
    score: float
    peak_score: float
    points: int
    observed: float | None
    expected: float | None
    lower: float | None
    upper: float | None


@dataclass
class AlertPolicy:
    """Warm-up, minimum volume, threshold, direction, hysteresis, cooldown, resolve after K.

    A series fires when one point scores at least ``threshold`` (default 0.6: a one-in-a-
    million point) or ``confirm_points`` consecutive points in the same direction score at
    least ``confirm_threshold`` (default 0.6 twice, i.e. off; a ``confirm_threshold`` above
    ``threshold`` is lowered to it, so lowering ``threshold`` alone has its effect). While
    firing, a point still counts as anomalous down to ``threshold - hysteresis``;
    ``resolve_after`` normal points in a row resolve the incident, after which no new incident
    may fire for ``cooldown`` points. The first ``warmup`` points and points with less than
    ``min_volume`` evidence are ignored (neither anomalous nor normal), except while firing:
    then such a point that is not anomalous, or a window with no value at all, counts towards
    resolving (a segment with a few trials a window must not stay firing for good). ``direction`` keeps only rises
    ("up"), falls ("down") or both. ``critical_threshold`` separates warning from critical.

    >>> from blipwatch.detectors.scored import Scored
    >>> policy = AlertPolicy(warmup=0, resolve_after=2, cooldown=0)
    >>> def point(score, direction="up"):
    ...     return Scored(12.0, 5.0, 3.0, 7.0, score, direction, score >= 0.6, 0.0, 100.0)
    >>> [policy.update(t, point(s), 100.0) for t, s in enumerate([0.1, 0.7, 0.5, 0.1])]
    ... # doctest: +ELLIPSIS
    [None, Transition(status='firing', started_at=1, ...), None, None]
    >>> policy.update(4, point(0.0), 100.0).status
    'resolved'
    """

    warmup: int = 120
    min_volume: float = 5.0
    threshold: float = 0.6
    confirm_threshold: float = 0.6
    confirm_points: int = 2
    critical_threshold: float = 0.9
    direction: str = "both"
    hysteresis: float = 0.2
    cooldown: int = 10
    resolve_after: int = 5
    # running state (not settings)
    seen: int = 0
    firing: bool = False
    incident_direction: str | None = None
    started_at: float | None = None
    severity: str | None = None
    peak_score: float = 0.0
    points: int = 0
    normal_run: int = 0
    cooldown_left: int = 0
    run_direction: str | None = None
    run_length: int = 0
    run_started_at: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise SettingsError(f"policy direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}")
        for name in ("threshold", "confirm_threshold", "critical_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise SettingsError(f"policy {name} must be in (0, 1], not {getattr(self, name)}")
        for name in ("warmup", "confirm_points", "cooldown", "resolve_after"):
            if getattr(self, name) < (1 if name in ("confirm_points", "resolve_after") else 0):
                raise SettingsError(f"policy {name} must be a non-negative whole number")
        if self.confirm_threshold > self.threshold:
            # a run starts at confirm_threshold: above threshold it would hide a lowered threshold
            self.confirm_threshold = self.threshold

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> "AlertPolicy":
        """From a YAML mapping, with a clear error for an unknown key."""
        known = settings_names()
        for key in settings or {}:
            if key not in known:
                raise SettingsError(f"unknown policy setting {key!r}; known: {', '.join(known)}")
        return cls(**(settings or {}))

    def _wanted(self, direction: str | None) -> bool:
        return direction is not None and self.direction in ("both", direction)

    def _transition(self, status: str, t: float, scored: Scored) -> Transition:
        return Transition(status, self.started_at, t, self.incident_direction, self.severity,
                          scored.score, self.peak_score, self.points, scored.value,
                          scored.expected, scored.lower, scored.upper)

    def _normal(self, t: float, scored: Scored) -> Transition | None:
        """A normal point while firing: ``resolve_after`` in a row resolve the incident."""
        self.normal_run += 1
        if self.normal_run >= self.resolve_after:
            self.firing = False
            self.cooldown_left = self.cooldown
            self.run_length = 0
            return self._transition("resolved", t, scored)
        return None

    def update(self, t: float, scored: Scored, volume: float | None = None) -> Transition | None:
        """Feed one scored point (in time order); returns a transition or None.

        ``volume`` is the evidence behind the point (e.g. the denominator of a rate); None
        uses the detector's own ``scored.volume``.
        """
        self.seen = seen = self.seen + 1
        if seen <= self.warmup:
            return None
        volume = scored.volume if volume is None else volume
        if scored.value is None or scored.expected is None or volume < self.min_volume:
            if not self.firing:
                return None
            # while firing, a window without evidence of the incident (no value, or too little
            # volume to judge) is not the incident either: it counts towards resolving
            anomalous = scored.value is not None and scored.direction == self.incident_direction \
                and scored.score >= self.threshold - self.hysteresis
            return None if anomalous else self._normal(t, scored)
        wanted = self._wanted(scored.direction)
        if self.firing:
            if wanted and scored.direction == self.incident_direction and \
                    scored.score >= self.threshold - self.hysteresis:
                self.normal_run = 0
                self.points += 1
                self.peak_score = max(self.peak_score, scored.score)
                if self.severity == "warning" and scored.score >= self.critical_threshold:
                    self.severity = "critical"
                    return self._transition("update", t, scored)
                return None
            return self._normal(t, scored)

        if wanted and scored.score >= self.confirm_threshold:
            if self.run_length and self.run_direction == scored.direction:
                self.run_length += 1
            else:
                self.run_direction, self.run_length, self.run_started_at = scored.direction, 1, t
        else:
            self.run_length = 0
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return None
        if self.run_length and (scored.score >= self.threshold or self.run_length >= self.confirm_points):
            self.firing = True
            self.incident_direction = scored.direction
            self.started_at = self.run_started_at
            self.points = self.run_length
            self.peak_score = scored.score
            self.normal_run = 0
            self.severity = "critical" if scored.score >= self.critical_threshold else "warning"
            return self._transition("firing", t, scored)
        return None


def settings_names() -> list[str]:
    """The policy's settings (the rest of its fields are running state)."""
    return [f.name for f in fields(AlertPolicy)][:10]

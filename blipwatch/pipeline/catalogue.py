"""The metric catalogue: metric definitions as data (the YAML config, compiled).

A metric is one of three kinds over selected events:

- ``count``: the number of matching events per window;
- ``rate``:  numerator events / denominator events per window (both counts are kept, so
  detectors can weigh the volume behind the rate);
- ``mean``:  the mean of a numeric property over matching events (sum and count are kept).

Each metric is computed for the segment ``all`` and for each value of every dimension in
``segments.dimensions`` (by default channel, country, device). The events are counted into
these series by ``blipwatch.pipeline.preaggregate.PartialAggregate``.

>>> catalogue = Catalogue.from_dict(default_config_dict())
>>> [m.name for m in catalogue.metrics][:3]
['event_volume', 'cart_abandonment_rate', 'checkout_conversion_rate']
>>> catalogue.by_name["cart_abandonment_rate"].kind
'rate'
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml


METRIC_KINDS = {"count": "count", "rate": "rate", "mean": "mean"}  # metric kind -> detector kind
DIRECTIONS = ("up", "down", "both")
DIMENSIONS = ("channel", "country", "device")
_OPERATORS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
              ">": operator.gt, ">=": operator.ge}
_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$")


class CatalogueError(ValueError):
    """The metric/detector config is wrong; the message names the key and what to do."""


def default_config_dict() -> dict[str, Any]:
    """The shipped default config (``blipwatch/default_config.yaml``) as a dict."""
    text = resources.files("blipwatch").joinpath("default_config.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def merge_with_defaults(document: dict[str, Any] | None) -> dict[str, Any]:
    """A user's config over the defaults: each top-level section given replaces the default
    one, except ``window`` and ``segments``, whose keys are merged one by one."""
    merged = default_config_dict()
    for key, value in (document or {}).items():
        if key in ("window", "segments") and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Selector:
    """Which events a metric counts: event types (None = all) and an optional property filter."""

    event_types: frozenset[str] | None
    where: tuple[str, Any, Any] | None = None  # (property, operator function, value)
    property: str | None = None
    where_text: str | None = None

    def matches(self, properties: dict) -> bool:
        if self.where is None:
            return True
        name, compare, value = self.where
        if name not in properties:
            return False
        try:
            return bool(compare(properties[name], value))
        except TypeError:  # e.g. "abc" < 3: the event does not match
            return False


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    kind: str                       # count | rate | mean
    direction: str                  # up | down | both
    numerator: Selector             # count: the counted events; mean: the events whose property is averaged
    denominator: Selector | None    # rate only
    detector: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def detector_kind(self) -> str:
        return METRIC_KINDS[self.kind]


def _parse_selector(metric: str, key: str, raw: Any, need_property: bool = False) -> Selector:
    where_at = f"metrics.{metric}.{key}"
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where_at} must be a mapping like {{event_types: [purchase]}}")
    unknown = set(raw) - {"event_types", "where", "property"}
    if unknown:
        raise CatalogueError(f"{where_at} has unknown keys {sorted(unknown)}: use event_types, where, property")
    types = raw.get("event_types")
    if types == "*" or types == ["*"]:
        event_types = None
    elif isinstance(types, list) and types and all(isinstance(t, str) and t for t in types):
        event_types = frozenset(types)
    elif isinstance(types, str) and types:
        event_types = frozenset([types])
    else:
        raise CatalogueError(f"{where_at}.event_types must be a list of event types or \"*\"")
    where = None
    where_text = raw.get("where")
    if where_text is not None:
        match = _WHERE.match(str(where_text))
        if not match:
            raise CatalogueError(f"{where_at}.where={where_text!r}: write it as 'PROPERTY OP VALUE', "
                                 f"OP one of {' '.join(_OPERATORS)}, e.g. 'results_count == 0'")
        value = yaml.safe_load(match.group(3))
        where = (match.group(1), _OPERATORS[match.group(2)], value)
    prop = raw.get("property")
    if need_property and not (isinstance(prop, str) and prop):
        raise CatalogueError(f"{where_at}.property must name the numeric property to average, e.g. order_value")
    if prop is not None and not need_property:
        raise CatalogueError(f"{where_at}.property only applies to mean metrics")
    return Selector(event_types, where, prop, where_text)


def _parse_metric(name: str, raw: Any) -> MetricDefinition:
    if not isinstance(raw, dict):
        raise CatalogueError(f"metrics.{name} must be a mapping with kind, direction and selectors")
    kind = raw.get("kind")
    if kind not in METRIC_KINDS:
        raise CatalogueError(f"metrics.{name}.kind={kind!r}: use one of {', '.join(METRIC_KINDS)}")
    direction = raw.get("direction", "both")
    if direction not in DIRECTIONS:
        raise CatalogueError(f"metrics.{name}.direction={direction!r}: use one of {', '.join(DIRECTIONS)}")
    allowed = {"kind", "direction", "detector", "policy", {"count": "count", "rate": "numerator",
                                                            "mean": "mean"}[kind]}
    if kind == "rate":
        allowed.add("denominator")
    unknown = set(raw) - allowed
    if unknown:
        raise CatalogueError(f"metrics.{name} has keys {sorted(unknown)} that a {kind} metric does not take; "
                             f"allowed: {sorted(allowed)}")
    if not re.match(r"^[a-z][a-z0-9_]*$", name):
        raise CatalogueError(f"metric name {name!r} must be lower_snake_case (it is a Prometheus label value)")
    for section in ("detector", "policy"):
        if not isinstance(raw.get(section, {}), dict):
            raise CatalogueError(f"metrics.{name}.{section} must be a mapping")
    if kind == "count":
        numerator, denominator = _parse_selector(name, "count", raw.get("count")), None
    elif kind == "rate":
        numerator = _parse_selector(name, "numerator", raw.get("numerator"))
        denominator = _parse_selector(name, "denominator", raw.get("denominator"))
    else:
        numerator, denominator = _parse_selector(name, "mean", raw.get("mean"), need_property=True), None
    return MetricDefinition(name, kind, direction, numerator, denominator,
                            dict(raw.get("detector") or {}), dict(raw.get("policy") or {}))


def _positive_number(section: dict, key: str, where: str, minimum: float = 0) -> float:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise CatalogueError(f"{where}.{key}={value!r} must be a number >= {minimum}")
    return value


class Catalogue:
    """The compiled config: windows, segments, metrics, detector and policy settings."""

    def __init__(self, document: dict[str, Any]):
        known = {"window", "segments", "metrics", "detector", "policy"}
        unknown = set(document) - known
        if unknown:
            raise CatalogueError(f"unknown top-level keys {sorted(unknown)}: use {sorted(known)}")
        window = document.get("window") or {}
        self.window_ms = int(_positive_number(window, "seconds", "window", 1) * 1000)
        self.lateness_ms = int(_positive_number(window, "allowed_lateness_seconds", "window") * 1000)
        self.idle_ms = int(_positive_number(window, "idle_partition_seconds", "window", 0.1) * 1000)
        segments = document.get("segments") or {}
        dimensions = segments.get("dimensions", list(DIMENSIONS))
        if not isinstance(dimensions, list) or not set(dimensions) <= set(DIMENSIONS):
            raise CatalogueError(f"segments.dimensions={dimensions!r}: a list drawn from {list(DIMENSIONS)}")
        self.dimensions = tuple(dimensions)
        self.max_series_per_metric = int(_positive_number(segments, "max_series_per_metric", "segments", 1))
        metrics = document.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise CatalogueError("metrics must be a mapping of metric name to its definition")
        self.metrics = [_parse_metric(name, raw) for name, raw in metrics.items()]
        self.by_name = {m.name: m for m in self.metrics}
        detector = document.get("detector") or {}
        if not isinstance(detector, dict):
            raise CatalogueError("detector must be a mapping of kind (rate, count, value) to settings")
        self.detector_settings = detector
        policy = document.get("policy") or {}
        if not isinstance(policy, dict):
            raise CatalogueError("policy must be a mapping of alert policy settings")
        self.policy_settings = policy
        self._contributions: dict[str, list[tuple[int, int, Selector]]] = {}

    @classmethod
    def from_dict(cls, document: dict[str, Any] | None) -> "Catalogue":
        return cls(merge_with_defaults(document))

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> "Catalogue":
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CatalogueError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if document is not None and not isinstance(document, dict):
            raise CatalogueError(f"{source} must be a YAML mapping at the top level")
        return cls.from_dict(document)

    def detector_settings_for(self, metric: MetricDefinition) -> dict[str, Any]:
        kind_settings = self.detector_settings.get(metric.detector_kind) or {}
        return {**kind_settings, **metric.detector}

    def policy_settings_for(self, metric: MetricDefinition) -> dict[str, Any]:
        settings = {**self.policy_settings, **metric.policy}
        settings.setdefault("direction", metric.direction)
        return settings

    def contributions(self, event_type: str) -> list[tuple[int, int, Selector]]:
        """(metric index, role 0=numerator/1=denominator, selector) for each metric the type feeds."""
        found = self._contributions.get(event_type)
        if found is None:
            found = []
            for index, metric in enumerate(self.metrics):
                for role, selector in ((0, metric.numerator), (1, metric.denominator)):
                    if selector is not None and (selector.event_types is None or event_type in selector.event_types):
                        found.append((index, role, selector))
            if len(self._contributions) < 10_000:  # unknown types are open-ended: keep the cache bounded
                self._contributions[event_type] = found
        return found


def metric_of(series: str) -> str:
    return series.split("|", 1)[0]


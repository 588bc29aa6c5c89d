"""The metric catalogue: metric definitions as data (the YAML config, compiled).

A metric is one of three kinds over selected events:

- ``count``: the number of matching events per window;
- ``rate``:  numerator events / denominator events per window (both counts are kept, so
  detectors can weigh the volume behind the rate);
- ``mean``:  the mean of a numeric property over matching events (sum and count are kept);
- ``funnel``: journeys that a ``start`` event opens and a ``success`` event within ``within``
  converts, counted in the window of their start (``blipwatch.pipeline.journeys`` computes them).

Each metric is computed for the segment ``all``, for each value of every dimension in
``segments.dimensions`` (by default channel, country, device) and for each pair of values of
the dimension pairs in ``segments.pairs`` (by default channel x country: ``channel=web,country=DE``).
The events are counted into these series by ``blipwatch.pipeline.preaggregate.PartialAggregate``.

>>> catalogue = Catalogue.from_dict(default_config_dict())
>>> [m.name for m in catalogue.metrics][:3]
['event_volume', 'cart_abandonment_rate', 'checkout_conversion_rate']
>>> catalogue.by_name["cart_abandonment_rate"].kind
'funnel'
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from blipwatch.detectors.settings import KINDS, SettingsError, resolve_settings
from blipwatch.detectors.significance import MinChangeError, min_change_for

METRIC_KINDS = {"count": "count", "rate": "rate", "mean": "mean", "funnel": "rate"}  # metric kind -> detector kind
#: what a funnel's value counts: journeys that converted, or those that did not
FUNNEL_OUTCOMES = ("success", "failure")
#: the longest ``within`` of a funnel: its open journeys are held in memory that long
MAX_FUNNEL_WITHIN_MS = 24 * 3600 * 1000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
DIRECTIONS = ("up", "down", "both")
DIMENSIONS = ("channel", "country", "device")
#: the two-dimension segments when the config names none (those whose dimensions are configured)
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (("channel", "country"),)
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
    one, except ``window`` and ``segments``, whose keys are merged one by one. A ``segments``
    section that lists its ``dimensions`` without ``pairs`` keeps the default pairs of those
    dimensions only.

    >>> merge_with_defaults({"segments": {"dimensions": ["channel", "device"]}})["segments"]["pairs"]
    []
    """
    merged = default_config_dict()
    for key, value in (document or {}).items():
        if key in ("window", "segments") and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
            if key == "segments" and "dimensions" in value and "pairs" not in value \
                    and isinstance(value["dimensions"], list):
                merged[key]["pairs"] = [list(pair) for pair in merged[key].get("pairs") or []
                                        if isinstance(pair, list) and set(pair) <= set(value["dimensions"])]
        else:
            merged[key] = value
    return merged


def _parse_pairs(raw: Any, dimensions: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``segments.pairs``: two-dimension segments, e.g. ``[[channel, country]]``; each pair's
    dimensions must be listed in ``segments.dimensions``.

    >>> _parse_pairs([["country", "channel"], ["channel", "device"]], DIMENSIONS)
    (('country', 'channel'), ('channel', 'device'))
    """
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CatalogueError(f"segments.pairs={raw!r}: a list of dimension pairs, e.g. [[channel, country]]")
    pairs: list[tuple[str, str]] = []
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(d, str) for d in pair)
                and pair[0] != pair[1]):
            raise CatalogueError(f"segments.pairs: {pair!r} must be two different dimensions, e.g. [channel, country]")
        missing = [d for d in pair if d not in dimensions]
        if missing:
            raise CatalogueError(f"segments.pairs: {pair!r} names {', '.join(missing)}, not in segments.dimensions "
                                 f"{list(dimensions)}")
        if any(set(pair) == set(seen) for seen in pairs):
            raise CatalogueError(f"segments.pairs: {pair!r} is listed twice")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


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
class Funnel:
    """A funnel metric's journeys: ``start`` types open one, ``success`` types within ``within_ms``
    convert it; the value counts the journeys whose outcome is ``outcome``, over all started."""

    start: frozenset[str]
    success: frozenset[str]
    within_ms: int
    outcome: str = "success"


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    kind: str                       # count | rate | mean | funnel
    direction: str                  # up | down | both
    numerator: Selector | None      # count: the counted events; mean: the events whose property is averaged
    denominator: Selector | None    # rate only
    detector: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    funnel: Funnel | None = None    # funnel only (then no selectors: the journey stage feeds it)
    #: the smallest change worth a page (``detectors.significance``); None: every rare point counts
    min_change: Any = None

    @property
    def detector_kind(self) -> str:
        return METRIC_KINDS[self.kind]


def where_value(text: str) -> Any:
    """The VALUE of ``PROPERTY OP VALUE``: a JSON number, ``true``/``false``/``null`` or "quoted"
    text; anything else is the text itself ('quotes' removed). YAML 1.1 read ``1e3`` as the string
    '1e3' and ``no`` as False.

    >>> [where_value(t) for t in ("1e3", "0", "-2.5", "no", "true", "'DE'", '"web"', "NaN")]
    [1000.0, 0, -2.5, 'no', True, 'DE', 'web', 'NaN']
    """
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        value = json.loads(text, parse_constant=str)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


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
        value = where_value(match.group(3))
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
    allowed = {"kind", "direction", "detector", "policy", "min_change", {"count": "count", "rate": "numerator",
                                                            "mean": "mean", "funnel": "start"}[kind]}
    if kind == "rate":
        allowed.add("denominator")
    elif kind == "funnel":
        allowed |= {"success", "within", "outcome"}
    unknown = set(raw) - allowed
    if unknown:
        raise CatalogueError(f"metrics.{name} has keys {sorted(unknown)} that a {kind} metric does not take; "
                             f"allowed: {sorted(allowed)}")
    if not re.match(r"^[a-z][a-z0-9_]*$", name):
        raise CatalogueError(f"metric name {name!r} must be lower_snake_case (it is a Prometheus label value)")
    for section in ("detector", "policy"):
        if not isinstance(raw.get(section, {}), dict):
            raise CatalogueError(f"metrics.{name}.{section} must be a mapping")
    funnel = None
    if kind == "funnel":
        numerator = denominator = None
        funnel = _parse_funnel(name, raw)
    elif kind == "count":
        numerator, denominator = _parse_selector(name, "count", raw.get("count")), None
    elif kind == "rate":
        numerator = _parse_selector(name, "numerator", raw.get("numerator"))
        denominator = _parse_selector(name, "denominator", raw.get("denominator"))
    else:
        numerator, denominator = _parse_selector(name, "mean", raw.get("mean"), need_property=True), None
    try:
        min_change = min_change_for(name, METRIC_KINDS[kind], raw.get("min_change"))
    except MinChangeError as exc:
        raise CatalogueError(f"metrics.{exc}") from None
    return MetricDefinition(name, kind, direction, numerator, denominator,
                            dict(raw.get("detector") or {}), dict(raw.get("policy") or {}), funnel, min_change)


def parse_duration_ms(value: Any, where: str) -> int:
    """``30m``, ``90s``, ``1h``, ``500ms`` or a number of seconds, to milliseconds.

    >>> parse_duration_ms("30m", "within"), parse_duration_ms(90, "within")
    (1800000, 90000)
    """
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)):
        millis = value * 1000
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if not match:
            raise CatalogueError(f"{where}={value!r}: write a duration like 30m, 90s, 1h or a number of seconds")
        millis = float(match.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[match.group(2) or "s"]
    if not 0 < millis <= MAX_FUNNEL_WITHIN_MS:
        raise CatalogueError(f"{where}={value!r} must be more than 0 and at most 24h")
    return int(millis)


def _parse_funnel(name: str, raw: dict) -> Funnel:
    steps = {}
    for key in ("start", "success"):
        types = raw.get(key)
        if isinstance(types, str) and types and types != "*":
            types = [types]
        if not (isinstance(types, list) and types and all(isinstance(t, str) and t and t != "*" for t in types)):
            raise CatalogueError(f"metrics.{name}.{key} must be a list of event types, e.g. [add_to_cart]")
        steps[key] = frozenset(types)
    both = steps["start"] & steps["success"]
    if both:
        raise CatalogueError(f"metrics.{name}: {sorted(both)} cannot both start and convert a journey")
    if "within" not in raw:
        raise CatalogueError(f"metrics.{name}.within is missing: how long a journey may take, e.g. 30m")
    within_ms = parse_duration_ms(raw["within"], f"metrics.{name}.within")
    outcome = raw.get("outcome", "success")
    if outcome not in FUNNEL_OUTCOMES:
        raise CatalogueError(f"metrics.{name}.outcome={outcome!r}: use success (converted journeys over started) "
                             f"or failure (journeys not converted within {raw['within']} over started)")
    return Funnel(steps["start"], steps["success"], within_ms, outcome)


def _positive_number(section: dict, key: str, where: str, minimum: float = 0) -> float:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise CatalogueError(f"{where}.{key}={value!r} must be a number >= {minimum}")
    return value


class Catalogue:
    """The compiled config: windows, segments, metrics, detector and policy settings."""

    def __init__(self, document: dict[str, Any]):
        known = {"window", "segments", "metrics", "detector", "policy", "input"}
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
        #: two-dimension segments, e.g. (("channel", "country"),): series ``channel=web,country=DE``
        self.pairs = _parse_pairs(segments.get("pairs", [list(p) for p in DEFAULT_PAIRS
                                                         if set(p) <= set(self.dimensions)]), self.dimensions)
        self.max_series_per_metric = int(_positive_number(segments, "max_series_per_metric", "segments", 1))
        metrics = document.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise CatalogueError("metrics must be a mapping of metric name to its definition")
        self.metrics = [_parse_metric(name, raw) for name, raw in metrics.items()]
        self.by_name = {m.name: m for m in self.metrics}
        detector = document.get("detector") or {}
        if not isinstance(detector, dict):
            raise CatalogueError("detector must be a mapping: settings for every kind and/or one mapping per "
                                 f"kind ({', '.join(KINDS)})")
        for kind in KINDS:
            if not isinstance(detector.get(kind) or {}, dict):
                raise CatalogueError(f"detector.{kind} must be a mapping of settings")
        self.detector_settings = detector
        for metric in self.metrics:   # a wrong setting or River model fails here, not at its first window
            try:
                resolve_settings(metric.detector_kind, self.detector_settings_for(metric))
            except SettingsError as exc:
                raise CatalogueError(f"metrics.{metric.name}.detector: {exc}") from None
        policy = document.get("policy") or {}
        if not isinstance(policy, dict):
            raise CatalogueError("policy must be a mapping of alert policy settings")
        self.policy_settings = policy
        self.input_preset = _parse_input(document.get("input"))
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
        """The top-level ``detector:`` section's flat keys, then its mapping for the metric's kind,
        then the metric's own ``detector:`` (flat keys, then its mapping for the kind), later wins.

        >>> catalogue = Catalogue.from_dict({"detector": {"adopt_after": 90, "rate": {"alpha": 0.05}}})
        >>> settings = resolve_settings("rate", catalogue.detector_settings_for(catalogue.by_name["error_rate"]))
        >>> settings["adopt_after"], settings["alpha"]
        (90, 0.05)
        """
        kind, top, own = metric.detector_kind, self.detector_settings, metric.detector
        if "model" in own:   # a River model: only its own settings (and the kind's) apply
            return {**(top.get(kind) or {}), **own}
        settings = {key: value for key, value in top.items() if key not in KINDS}
        settings.update(top.get(kind) or {})
        settings.update((key, value) for key, value in own.items() if key not in KINDS)
        if own.get(kind):
            settings[kind] = own[kind]
        return settings

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


def _parse_input(section: Any) -> str | None:
    """``input: {preset: NAME}``: the format of the events topic (blipwatch.schemas.presets)."""
    from blipwatch.schemas.presets import PRESETS

    if section is None:
        return None
    if not isinstance(section, dict) or set(section) - {"preset"}:
        raise CatalogueError("input must be a mapping like {preset: segment}")
    preset = section.get("preset")
    if isinstance(preset, str):
        preset = preset.lower()
    if preset is not None and preset not in PRESETS:
        raise CatalogueError(f"input.preset={preset!r}: use one of {', '.join(PRESETS)}")
    return preset


def metric_of(series: str) -> str:
    return series.split("|", 1)[0]


"""The metric catalogue: metric definitions as data, and the local pre-aggregation of
events into per-series, per-window partial counts.

A metric is one of three kinds over selected events:

- ``count``: the number of matching events per window;
- ``rate``:  numerator events / denominator events per window (both counts are kept, so
  detectors can weigh the volume behind the rate);
- ``mean``:  the mean of a numeric property over matching events (sum and count are kept).

Each metric is computed for the segment ``all`` and for each value of every dimension in
``segments.dimensions`` (by default channel, country, device).

>>> catalogue = Catalogue.from_dict(default_config_dict())
>>> [m.name for m in catalogue.metrics][:3]
['event_volume', 'cart_abandonment_rate', 'checkout_conversion_rate']
>>> aggregate = PartialAggregate(catalogue)
>>> from blipwatch.schemas import CustomerEvent
>>> aggregate.add(CustomerEvent("e1", "cart_abandoned", 1767643505000, channel="web"))
>>> aggregate.add(CustomerEvent("e2", "purchase", 1767643510000, channel="web", properties={"order_value": 10}))
>>> partials = aggregate.drain()
>>> partials["cart_abandonment_rate|channel=web"][1767643500000]
[1.0, 2.0]
>>> partials["average_order_value|all"][1767643500000]
[10.0, 1.0]
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from blipwatch.detectors.settings import SettingsError, resolve_settings
from blipwatch.schemas.events import CustomerEvent

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
        for metric in self.metrics:   # a wrong setting or River model fails here, not at its first window
            try:
                resolve_settings(metric.detector_kind, self.detector_settings_for(metric))
            except SettingsError as exc:
                raise CatalogueError(f"metrics.{metric.name}.detector: {exc}") from None
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


_UNSEEN = object()


class PartialAggregate:
    """Local pre-aggregation of events into ``{series key: {window start ms: [n, d]}}``.

    For a count, n is the count (d unused, 0); for a rate, n and d are numerator and denominator
    counts; for a mean, n is the sum of the property and d the number of values. Series beyond
    ``max_series_per_metric`` for a metric are dropped and counted in ``dropped``.

    Two stages, so that an event costs a few dictionary updates, not one per series it feeds (each
    event feeds ~2-6 metrics x 4 segments): ``add`` counts events per (type, window, outcome of
    each ``where``) and, within that, per value of each dimension (the "margins": all the counts
    and rates need), and keeps the sums and counts of a mean's property per (type, segment values,
    window, outcomes) as before; ``drain`` fans those out to every metric and segment they feed.

    The partials are the same as when every event was fanned out by itself, in the same order
    (series, then windows, in the order an event first fed them) and with the same floats: counts
    are whole numbers, so their sums do not depend on the order; the means' sums are added per
    combination in the same order as before. The series cap admits series in the order an event
    first fed them, as before: ``drain`` replays, in event order, what each event fed first.
    """

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.window_ms = catalogue.window_ms
        self.dimensions = tuple(catalogue.dimensions)
        #: (type, window start, where outcomes) -> [count, {value of dimension 0: count}, {dimension 1...}, ...]
        self.margins: dict[tuple, list] = {}
        #: means only: (type, segment values, window start, where outcomes) -> [sum, n, sum, n, ...] per mean
        self.combos: dict[tuple, list[float]] = {}
        #: in event order, each event that fed a margin or a mean's combination first:
        #: (type, window start, outcomes, segment values, dimensions first fed (-1: all), mean cell or None)
        self._firsts: list[tuple] = []
        self.series_seen: list[set[str]] = [set() for _ in catalogue.metrics]
        self.dropped: dict[str, int] = {}
        self._labels: dict[tuple[str, str], str] = {}
        #: per event type: the contributions with a ``where`` and those reading a property (means)
        self._plans: dict[str, tuple[list, list, list[Selector]]] = {}
        self._fan_plans: dict[str, list[tuple[int, int, int, int]]] = {}
        #: segment values -> their segment labels; per metric, segment label -> series key (None: dropped)
        self._segments_by: dict[tuple, list[str]] = {}
        self._metric_keys: list[dict[str, str | None]] = [{} for _ in catalogue.metrics]
        #: an event's segment values, a tuple in the order of ``dimensions``
        self._values = (operator.attrgetter(*self.dimensions) if len(self.dimensions) > 1
                        else (lambda event, name=self.dimensions[0]: (getattr(event, name),)) if self.dimensions
                        else (lambda event: ()))

    def _plan(self, event_type: str) -> tuple[list, list, list[Selector]]:
        plan = self._plans.get(event_type)
        if plan is None:
            contributions = self.catalogue.contributions(event_type)
            plan = (contributions,
                    [selector for _, _, selector in contributions if selector.where is not None],
                    [selector for _, _, selector in contributions if selector.property is not None])
            if len(self._plans) < 10_000:  # unknown types are open-ended: keep the cache bounded
                self._plans[event_type] = plan
        return plan

    def _fan_plan(self, event_type: str) -> list[tuple[int, int, int, int]]:
        """Per contribution of the type: (metric index, role, its place among the ``where`` outcomes
        or -1, its place among the means or -1)."""
        steps = []
        wheres = means = 0
        for metric_index, role, selector in self._plan(event_type)[0]:
            where_slot = mean_slot = -1
            if selector.where is not None:
                where_slot, wheres = wheres, wheres + 1
            if selector.property is not None:
                mean_slot, means = means, means + 1
            steps.append((metric_index, role, where_slot, mean_slot))
        if len(self._fan_plans) < 10_000:  # unknown types are open-ended: keep the cache bounded
            self._fan_plans[event_type] = steps
        return steps

    def _segments(self, values: tuple) -> list[str]:
        labels = ["all"]
        for dimension, value in zip(self.dimensions, values):
            if value is not None:
                label = self._labels.get((dimension, value))
                if label is None:
                    label = self._labels[(dimension, value)] = f"{dimension}={value}"
                labels.append(label)
        return labels

    def _series(self, metric_index: int, segment: str) -> str | None:
        keys = self._metric_keys[metric_index]
        key = keys.get(segment, _UNSEEN)
        if key is _UNSEEN:
            key = None
            metric = self.catalogue.metrics[metric_index]
            seen = self.series_seen[metric_index]
            if len(seen) < self.catalogue.max_series_per_metric or segment == "all":
                key = f"{metric.name}|{segment}"
                seen.add(key)
            keys[segment] = key
        return key

    def add(self, event: CustomerEvent) -> None:
        self.add_fields(event, event.occurred_at_ms)

    def add_fields(self, event: Any, occurred_at_ms: int) -> None:
        """``add`` for anything with an event's ``event_type``, segment dimensions and
        ``properties`` attributes (the ingest passes its decoded wire struct: no CustomerEvent)."""
        self.add_to_window(event, occurred_at_ms - occurred_at_ms % self.window_ms)

    def add_to_window(self, event: Any, window_start: int) -> None:
        """``add_fields`` given the start of the event's window (the ingest knows it: it has just
        checked the window's lateness)."""
        event_type = event.event_type
        plan = self._plans.get(event_type)
        if plan is None:
            plan = self._plan(event_type)
        contributions, filtered, averaged = plan
        if not contributions:
            return
        properties = event.properties
        matched = tuple([selector.matches(properties) for selector in filtered]) if filtered else ()
        values = self._values(event)
        margin_key = (event_type, window_start, matched)
        margin = self.margins.get(margin_key)
        if margin is None:
            margin = self.margins[margin_key] = [1.0, *[{} for _ in values]]
            fed_first = [-1]
        else:
            margin[0] += 1.0
            fed_first = None
        for index, value in enumerate(values, 1):
            if value is not None:
                counts = margin[index]
                count = counts.get(value)
                if count is None:
                    counts[value] = 1.0
                    if fed_first is None:
                        fed_first = [index - 1]
                    else:
                        fed_first.append(index - 1)
                else:
                    counts[value] = count + 1.0
        mean_cell = None
        if averaged:
            key = (event_type, values, window_start, matched)
            cell = self.combos.get(key)
            if cell is None:
                cell = mean_cell = self.combos[key] = [0.0] * (2 * len(averaged))
            for i, selector in enumerate(averaged):
                value = properties.get(selector.property)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                    continue
                cell[2 * i] += value
                cell[1 + 2 * i] += 1.0
        if fed_first is not None or mean_cell is not None:
            self._firsts.append((event_type, window_start, matched, values, fed_first or (), mean_cell))

    def _fan_out(self) -> dict[str, dict[int, list[float]]]:
        partials: dict[str, dict[int, list[float]]] = {}
        fan_plans = self._fan_plans
        margins = self.margins
        metric_keys = self._metric_keys
        label = self._label
        # In event order, what each event fed first: its new margins (a count or rate series' cell is
        # created, and its series admitted, by the first event that feeds it) and its new mean
        # combination; per event, metric by metric, segment by segment (the order of the partials).
        for event_type, window_start, matched, values, fed_first, mean_cell in self._firsts:
            steps = fan_plans.get(event_type)
            if steps is None:
                steps = self._fan_plan(event_type)
            fed = None  # (segment, count) of each margin fed first
            for metric_index, role, where_slot, mean_slot in steps:
                if where_slot >= 0 and not matched[where_slot]:
                    continue
                if mean_slot >= 0:  # mean: the values' sum and how many there were
                    if mean_cell is not None and mean_cell[2 * mean_slot + 1]:
                        self._fan_out_mean(partials, metric_index, values, window_start,
                                           mean_cell[2 * mean_slot], mean_cell[2 * mean_slot + 1])
                    continue
                if fed is None:
                    margin = margins[(event_type, window_start, matched)]
                    fed = []
                    for dimension in fed_first:
                        if dimension < 0:
                            fed.append(("all", margin[0]))
                        else:
                            value = values[dimension]
                            fed.append((label(dimension, value), margin[dimension + 1][value]))
                keys = metric_keys[metric_index]
                for segment, count in fed:
                    key = keys.get(segment, _UNSEEN)
                    if key is _UNSEEN:
                        key = self._series(metric_index, segment)
                    if key is None:
                        self._drop(metric_index, count)
                        continue
                    windows = partials.get(key)
                    if windows is None:
                        windows = partials[key] = {}
                    series_cell = windows.get(window_start)
                    if series_cell is None:  # the first event to feed it: [count, 0.0] or [0.0, count]
                        windows[window_start] = [count, 0.0] if role == 0 else [0.0, count]
                    else:
                        series_cell[role] += count
        return partials

    def _fan_out_mean(self, partials: dict[str, dict[int, list[float]]], metric_index: int, values: tuple,
                      window_start: int, add_numerator: float, add_denominator: float) -> None:
        """One combination's sum and count of a mean's property, to each of its segments."""
        segments = self._segments_by.get(values)
        if segments is None:
            segments = self._segments(values)
            if len(self._segments_by) < 100_000:  # segment values are open-ended: keep the cache bounded
                self._segments_by[values] = segments
        keys = self._metric_keys[metric_index]
        for segment in segments:
            key = keys.get(segment, _UNSEEN)
            if key is _UNSEEN:
                key = self._series(metric_index, segment)
            if key is None:
                self._drop(metric_index, add_denominator)
                continue
            windows = partials.get(key)
            if windows is None:
                windows = partials[key] = {}
            series_cell = windows.get(window_start)
            if series_cell is None:
                windows[window_start] = [0.0 + add_numerator, 0.0 + add_denominator]
            else:
                series_cell[0] += add_numerator
                series_cell[1] += add_denominator

    def _label(self, dimension_index: int, value: str) -> str:
        dimension = self.dimensions[dimension_index]
        label = self._labels.get((dimension, value))
        if label is None:
            label = self._labels[(dimension, value)] = f"{dimension}={value}"
        return label

    def _drop(self, metric_index: int, n: float) -> None:
        name = self.catalogue.metrics[metric_index].name
        self.dropped[name] = self.dropped.get(name, 0) + int(n)

    def drain(self) -> dict[str, dict[int, list[float]]]:
        """The partials gathered since the last drain (and forget them)."""
        partials = self._fan_out()
        self.margins, self.combos, self._firsts = {}, {}, []
        return partials

    def drain_dropped(self) -> dict[str, int]:
        dropped, self.dropped = self.dropped, {}
        return dropped


def metric_of(series: str) -> str:
    return series.split("|", 1)[0]


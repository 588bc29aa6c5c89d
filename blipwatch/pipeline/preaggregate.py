"""Local pre-aggregation of events into per-series, per-window partial counts: what the ingest
sends on the partials topic, and what ``blipwatch replay`` merges into its series.

>>> from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
>>> from blipwatch.schemas import CustomerEvent
>>> aggregate = PartialAggregate(Catalogue.from_dict(default_config_dict()))
>>> aggregate.add(CustomerEvent("e1", "payment_failed", 1767643505000, channel="web"))
>>> aggregate.add(CustomerEvent("e2", "purchase", 1767643510000, channel="web", properties={"order_value": 10}))
>>> partials = aggregate.drain()
>>> partials["payment_failure_rate|channel=web"][1767643500000]
[1.0, 2.0]
>>> partials["average_order_value|all"][1767643500000]
[10.0, 1.0]
"""

from __future__ import annotations

import operator
from typing import Any

from blipwatch.pipeline.catalogue import Catalogue, Selector
from blipwatch.schemas.events import CustomerEvent

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

    Two-dimension segments (``segments.pairs``, e.g. ``channel=web,country=DE``): ``add`` also
    counts each margin's events per combination of segment values (the "joint" counts, one more
    dictionary update per event whatever the number of pairs), and ``drain`` fans the pairs out
    after every single-dimension segment of the flush, so under ``max_series_per_metric`` a flush
    admits its single dimensions first; among the pairs, in the order an event first fed them.
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
        #: two-dimension segments: (index of one dimension, index of the other, label template)
        self.pairs = tuple(self._pair(a, b) for a, b in catalogue.pairs)
        #: pairs only: in event order, each event whose combination of segment values was first
        #: seen in its margin: (type, window start, outcomes, segment values)
        self._pair_firsts: list[tuple] = []
        #: (pair index, value, value) -> the pair's segment label
        self._pair_labels: dict[tuple, str] = {}

    def _pair(self, first: str, second: str) -> tuple[int, int, str]:
        # the label lists the dimensions in name order, as ``schemas.outputs.segment_label`` does
        i, j = self.dimensions.index(first), self.dimensions.index(second)
        if second < first:
            i, j = j, i
        return i, j, f"{self.dimensions[i]}={{}},{self.dimensions[j]}={{}}"

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
            # the last dictionary (pairs only) counts the combinations of segment values
            margin = self.margins[margin_key] = [1.0, *[{} for _ in values], {}]
            fed_first = [-1]
        else:
            margin[0] += 1.0
            fed_first = None
        if self.pairs:
            joint = margin[-1]
            count = joint.get(values)
            if count is None:
                joint[values] = 1.0
                self._pair_firsts.append((event_type, window_start, matched, values))
            else:
                joint[values] = count + 1.0
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
        if self._pair_firsts:
            self._fan_out_pairs(partials)
        return partials

    def _fan_out_pairs(self, partials: dict[str, dict[int, list[float]]]) -> None:
        """The two-dimension segments, after every single one: in event order, each combination
        of segment values first seen in its margin feeds the pairs it holds. A count or rate
        series takes the margin's whole count of the pair from the first combination holding it;
        a mean takes each combination's sum and count."""
        fan_plans = self._fan_plans
        margins = self.margins
        combos = self.combos
        metric_keys = self._metric_keys
        pairs = self.pairs
        pair_labels = self._pair_labels
        totals_by_margin: dict[tuple, dict[tuple, float]] = {}
        for event_type, window_start, matched, values in self._pair_firsts:
            margin_key = (event_type, window_start, matched)
            totals = totals_by_margin.get(margin_key)
            if totals is None:  # the margin's count of each pair of values, over its combinations
                totals = totals_by_margin[margin_key] = {}
                for combination, count in margins[margin_key][-1].items():
                    for p, (i, j, _) in enumerate(pairs):
                        a, b = combination[i], combination[j]
                        if a is not None and b is not None:
                            totals[(p, a, b)] = totals.get((p, a, b), 0.0) + count
            fed = []  # (segment label, the margin's count of it, or None when an earlier combination fed it)
            fresh = False
            for p, (i, j, template) in enumerate(pairs):
                a, b = values[i], values[j]
                if a is None or b is None:
                    continue
                pair = (p, a, b)
                label = pair_labels.get(pair)
                if label is None:
                    label = pair_labels[pair] = template.format(a, b)
                count = totals.pop(pair, None)
                if count is not None:
                    fresh = True
                fed.append((label, count))
            if not fresh and (not fed or not self._plan(event_type)[2]):
                continue  # its pairs were fed by earlier combinations, and the type feeds no mean
            steps = fan_plans.get(event_type)
            if steps is None:
                steps = self._fan_plan(event_type)
            mean_cell = None
            for metric_index, role, where_slot, mean_slot in steps:
                if where_slot >= 0 and not matched[where_slot]:
                    continue
                keys = metric_keys[metric_index]
                if mean_slot >= 0:
                    if mean_cell is None:
                        mean_cell = combos[(event_type, values, window_start, matched)]
                    add_denominator = mean_cell[2 * mean_slot + 1]
                    if not add_denominator:
                        continue
                    add_numerator = mean_cell[2 * mean_slot]
                    for segment, _ in fed:
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
                    continue
                for segment, count in fed:
                    if count is None:
                        continue
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
                    if series_cell is None:
                        windows[window_start] = [count, 0.0] if role == 0 else [0.0, count]
                    else:
                        series_cell[role] += count

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
        self.margins, self.combos, self._firsts, self._pair_firsts = {}, {}, [], []
        return partials

    def drain_dropped(self) -> dict[str, int]:
        dropped, self.dropped = self.dropped, {}
        return dropped


__all__ = ["PartialAggregate"]

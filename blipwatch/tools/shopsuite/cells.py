"""The random shops' window counts: per metric, numerator and denominator per (segment, window),
as the pipeline's partials add them up (``Cells``), funnels as the journey stage counts them
(``journeys``). ``tests/unit/test_random_shops.py`` checks them against ``Replay`` reading the
shops' events.
"""

from __future__ import annotations

import numpy as np

from blipwatch.schemas.outputs import segment_label
from blipwatch.tools.shopsuite.generator import (DEVICES, T, VALUE_PROPERTY, WINDOW_MS, Events, Shop, SuiteError,
                                                 generate)


def _selected(selector, events: Events) -> np.ndarray:
    if selector.event_types is None:
        mask = np.ones(len(events), dtype=bool)
    else:
        codes = [T[name] for name in selector.event_types if name in T]
        mask = np.isin(events.type, codes)
    if selector.where is not None:
        name, compare, value = selector.where
        readable = [code for code, prop in VALUE_PROPERTY.items() if prop == name]
        if not readable:
            raise SuiteError(f"where on {name!r}: the random shops only carry {sorted(VALUE_PROPERTY.values())}")
        mask &= np.isin(events.type, readable) & compare(events.value, value)
    return mask


def segment_labels(shop: Shop, dimensions, pairs=()) -> list[tuple[str, dict]]:
    """Every segment the pipeline makes for this shop: (label, segment dict); a pair's segments
    with the first dimension's value outer (as ``Cells.add`` counts them)."""
    values = {"channel": shop.channels, "country": shop.countries, "device": DEVICES}
    out = [("all", {})]
    for dim in dimensions:
        out += [(f"{dim}={v}", {dim: v}) for v in values[dim]]
    for a, b in pairs:
        out += [(segment_label({a: va, b: vb}), {a: va, b: vb}) for va in values[a] for vb in values[b]]
    return out


def segment_mask(shop: Shop, events: Events, segment: dict) -> np.ndarray:
    mask = np.ones(len(events), dtype=bool)
    for dim, value in segment.items():
        if dim == "channel":
            mask &= events.channel == (shop.channels.index(value) if value in shop.channels else -1)
        elif dim == "country":
            mask &= events.country == (shop.countries.index(value) if value in shop.countries else -1)
        else:
            mask &= events.device == DEVICES.index(value)
    return mask


#: what a funnel may start with here: the start event's type and the session timeline it follows
FUNNEL_STARTS = {"add_to_cart": "cart", "checkout_start": "checkout"}


def check_funnel(metric) -> None:
    """A funnel the random shops can count: started by ``add_to_cart`` or ``checkout_start``,
    converted by ``purchase`` (their sessions make one journey each)."""
    funnel = metric.funnel
    if len(funnel.start) != 1 or next(iter(funnel.start)) not in FUNNEL_STARTS or set(funnel.success) != {"purchase"}:
        raise SuiteError(f"{metric.name}: the random shops count funnels from add_to_cart or checkout_start "
                         f"to purchase only, not {sorted(funnel.start)} to {sorted(funnel.success)}")


def journeys(funnel, events: Events, end_ms: int) -> Events:
    """A funnel metric's journeys in these events, as the journey stage (``pipeline.journeys``)
    makes them: a session's first ``start`` event opens one, and it converts when a ``success``
    event of the session comes at or after it and within ``within_ms`` (a session here makes one
    journey: nothing follows a purchase). One row per journey, at its start (where it counts), its
    ``value`` 1 when the outcome is the metric's (converted, or not for ``outcome: failure``).
    Journeys still undecided at ``end_ms`` are left out, as the stream has not scored them.
    ``events`` must hold every event of its sessions (``generate`` yields whole sessions)."""
    starts = np.flatnonzero(np.isin(events.type, [T[name] for name in funnel.start]))
    order = np.lexsort((events.t[starts], events.session[starts]))
    starts = starts[order]
    session = events.session[starts]
    first = np.ones(len(starts), dtype=bool)
    first[1:] = session[1:] != session[:-1]
    starts = starts[first]
    session, t_start = events.session[starts], events.t[starts]
    converted = np.zeros(len(starts), dtype=bool)
    successes = np.flatnonzero(np.isin(events.type, [T[name] for name in funnel.success]))
    if len(starts) and len(successes):
        at = np.minimum(np.searchsorted(session, events.session[successes]), len(starts) - 1)
        t = events.t[successes]
        hit = (session[at] == events.session[successes]) & (t >= t_start[at]) & (t - t_start[at] <= funnel.within_ms)
        converted[at[hit]] = True
    outcome = converted if funnel.outcome == "success" else ~converted
    found = events.take(starts)
    found.value = outcome.astype(float)
    return found.take(t_start + funnel.within_ms < end_ms)


class Cells:
    """Per metric: numerator and denominator per (segment, window), as the pipeline's partials add
    up; a funnel's are its journeys (started, with the metric's outcome) in the window they started."""

    def __init__(self, shop: Shop, catalogue, extra_segments: list[dict] = ()):
        self.shop = shop
        self.catalogue = catalogue
        self.segments = segment_labels(shop, catalogue.dimensions, catalogue.pairs)
        for segment in extra_segments:
            label = segment_label(segment)
            if label not in [s[0] for s in self.segments]:
                self.segments.append((label, dict(segment)))
        self.index = {label: i for i, (label, _) in enumerate(self.segments)}
        shape = (len(self.segments), shop.windows)
        self.num = {m.name: np.zeros(shape) for m in catalogue.metrics}
        self.den = {m.name: np.zeros(shape) for m in catalogue.metrics}
        self.seen = {m.name: np.zeros(shape, dtype=bool) for m in catalogue.metrics}
        for metric in catalogue.metrics:
            if metric.kind == "mean" and metric.numerator.property not in VALUE_PROPERTY.values():
                raise SuiteError(f"{metric.name}: the random shops carry no {metric.numerator.property!r}")
            if metric.kind == "funnel":
                check_funnel(metric)
        self.last_ms: int | None = None

    def add(self, events: Events) -> None:
        if not len(events):
            return
        shop = self.shop
        last = int(events.t.max())
        self.last_ms = last if self.last_ms is None else max(self.last_ms, last)
        layout = self._layout(events)
        for metric in self.catalogue.metrics:
            if metric.kind == "funnel":
                found = journeys(metric.funnel, events, shop.end_ms)
                if len(found):
                    self._count(metric.name, self._layout(found),
                                [(self.num[metric.name], found.value > 0, None),
                                 (self.den[metric.name], np.ones(len(found), dtype=bool), None)])
                continue
            roles = [(self.num[metric.name], _selected(metric.numerator, events), None)]
            if metric.kind == "rate":
                roles.append((self.den[metric.name], _selected(metric.denominator, events), None))
            elif metric.kind == "mean":
                has = _selected(metric.numerator, events)
                has &= np.isin(events.type, [c for c, p in VALUE_PROPERTY.items() if p == metric.numerator.property])
                roles = [(self.num[metric.name], has, events.value), (self.den[metric.name], has, None)]
            self._count(metric.name, layout, roles)

    def _layout(self, events: Events):
        """Each event's window; per dimension (then pair) its segments' codes and first row (in
        the order of segment_labels); then the extra segments' masks."""
        shop = self.shop
        w = (events.t - shop.start_ms) // WINDOW_MS
        codes = {"channel": (events.channel, len(shop.channels)), "country": (events.country, len(shop.countries)),
                 "device": (events.device, len(DEVICES))}
        blocks = [(None, 0, 1)]
        row = 1
        for dim in self.catalogue.dimensions:
            blocks.append((codes[dim][0], row, codes[dim][1]))
            row += codes[dim][1]
        for a, b in self.catalogue.pairs:
            (code_a, n_a), (code_b, n_b) = codes[a], codes[b]
            blocks.append((code_a * n_b + code_b, row, n_a * n_b))
            row += n_a * n_b
        extra = [(i, segment_mask(shop, events, seg)) for i, (_, seg) in enumerate(self.segments) if i >= row]
        return w, blocks, extra

    def _count(self, name: str, layout, roles) -> None:
        """Adds up ``roles`` (target, which events, their weights or None) by window and segment."""
        w, blocks, extra = layout
        windows = self.shop.windows
        seen = self.seen[name]
        for target, mask, weights in roles:
            if not mask.any():
                continue
            wm = w[mask]
            weight = None if weights is None else weights[mask]
            for code, first_row, rows in blocks:
                index = wm if code is None else code[mask] * windows + wm
                target[first_row:first_row + rows] += np.bincount(
                    index, weights=weight, minlength=rows * windows).reshape(rows, windows)
                seen[first_row:first_row + rows] |= np.bincount(
                    index, minlength=rows * windows).reshape(rows, windows) > 0
            for i, seg in extra:
                m = mask & seg
                if m.any():
                    target[i] += np.bincount(w[m], weights=None if weights is None else weights[m],
                                             minlength=windows)
                    seen[i] |= np.bincount(w[m], minlength=windows) > 0


def count_cells(shop: Shop, catalogue, extra_segments: list[dict] = (), chunk_minutes: int = 60) -> Cells:
    cells = Cells(shop, catalogue, extra_segments)
    for events in generate(shop, chunk_minutes):
        cells.add(events)
    return cells

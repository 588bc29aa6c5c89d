"""The true expected numerator and denominator of every series of a random shop, per window.

Expected events of a type in minute m = sum over session-start minutes m' of lambda(m') x (events
of that type per session, closed form from the funnel) x P(the event comes m - m' minutes after its
session's start) — the last from session timelines drawn at random (outcomes never move time, so
every timeline counts, however rare the event), normalised: only its shape is estimated.
"""

from __future__ import annotations

import math

import numpy as np

from blipwatch.tools.shopsuite.cells import FUNNEL_STARTS
from blipwatch.tools.shopsuite.generator import (
    DEVICES, MAX_LAG_MINUTES, PRE_ROLL_MINUTES, T, WINDOW_MS, Funnel, Shop, ShopIncident, SuiteError,
    _funnel_arrays, _timelines,
)

TIMELINE_SAMPLES = 20_000


def _modified(funnel: Funnel, incident: ShopIncident | None) -> Funnel:
    if incident is None:
        return funnel
    f = incident.factor
    kind = incident.kind
    if kind == "abandonment_up":
        return Funnel(**{**funnel.__dict__, "p_checkout": min(0.99, funnel.p_checkout * f)})
    if kind == "conversion_down":
        return Funnel(**{**funnel.__dict__, "p_dropout": 1.0 - (1.0 - funnel.p_dropout) * f})
    if kind == "payment_failures_up":
        return Funnel(**{**funnel.__dict__, "p_fail": min(0.95, funnel.p_fail * f)})
    if kind == "zero_results_up":
        return Funnel(**{**funnel.__dict__, "p_zero": min(0.95, funnel.p_zero * f)})
    if kind == "errors_up":
        return Funnel(**{**funnel.__dict__, "p_error": min(0.95, funnel.p_error * f)})
    if kind == "complaints_up":
        return Funnel(**{**funnel.__dict__, "p_complaint": min(0.95, funnel.p_complaint * f)})
    return funnel


def parts(shop: Shop, funnel: Funnel, horizons: dict | None = None) -> list[tuple[str, float, str]]:
    """(event key, expected events per session, timeline it follows) for one channel's funnel.

    With ``horizons`` ({(start timeline, within ms): P(attempt i comes within it of the start),
    for the three attempts}), also the journeys of funnel metrics, where they count (at their
    start): ``journeys:cart`` (sessions with a cart) or ``journeys:checkout``, and
    ``converted:<start>:<within ms>``, those whose purchase comes within the horizon."""
    nb = 1.0 + funnel.browse
    search = nb * funnel.p_search
    page = nb * (1.0 - funnel.p_search - funnel.p_product)
    cart = funnel.p_cart
    checkout = cart * funnel.p_checkout
    paying = checkout * (1.0 - funnel.p_dropout)
    f, retry = funnel.p_fail, funnel.p_retry
    reach = [1.0, f * retry, (f * retry) ** 2]
    out = [("session_start", 1.0, "start"), ("search", search, "browse"),
           ("search_zero", search * funnel.p_zero, "browse"), ("product_view", nb * funnel.p_product, "browse"),
           ("page_view", page, "browse"), ("error", page * funnel.p_error, "browse"),
           ("add_to_cart", cart * (1.0 + shop.extra_items), "cart"), ("checkout_start", checkout, "checkout"),
           ("cart_abandoned", cart * (1.0 - funnel.p_checkout), "abandon_cart"),
           ("cart_abandoned", checkout * funnel.p_dropout, "abandon_checkout"),
           ("complaint", funnel.p_complaint, "complaint")]
    for i in range(3):
        out.append(("payment_failed", paying * reach[i] * f, f"attempt{i}"))
        out.append(("purchase", paying * reach[i] * (1.0 - f), f"attempt{i}"))
        gave_up = paying * reach[i] * f * ((1.0 - retry) if i < 2 else 1.0)
        out.append(("cart_abandoned", gave_up, f"abandon_attempt{i}"))
    for start in sorted({start for start, _ in (horizons or {})}):
        out.append((f"journeys:{start}", cart if start == "cart" else checkout, start))
    for (start, within), within_p in (horizons or {}).items():
        bought = sum(paying * reach[i] * (1.0 - f) * within_p[i] for i in range(3))
        out.append((f"converted:{start}:{within}", bought, start))
    return out


def funnel_keys(metric) -> tuple[str, str, str]:
    """The truth's keys of a funnel metric: (journeys, converted, outcome)."""
    start = FUNNEL_STARTS[next(iter(metric.funnel.start))]
    return f"journeys:{start}", f"converted:{start}:{metric.funnel.within_ms}", metric.funnel.outcome


def journey_spans(shop: Shop, channel: int, start: str, samples: int, salt: int) -> list[np.ndarray]:
    """Per payment attempt, the time from a journey's start (its ``cart`` or ``checkout``
    timeline) to it, over ``samples`` session timelines of ``channel`` drawn with ``salt``."""
    rng = np.random.default_rng([shop.seed, shop.index, salt, channel])
    tl = _timelines(rng, shop, _funnel_arrays(shop), np.zeros(samples, dtype=np.int64), np.full(samples, channel))
    began = tl["t_cart"] if start == "cart" else tl["t_checkout"]
    return [ta - began for ta in tl["attempts"]]


def within_shares(shop: Shop, channel: int, horizons, samples: int = TIMELINE_SAMPLES) -> dict:
    """Per (start timeline, within ms): P(payment attempt i comes within it of the journey's start)."""
    spans = {start: journey_spans(shop, channel, start, samples, 47) for start in {start for start, _ in horizons}}
    return {(start, within): [float(np.mean(span <= within)) for span in spans[start]] for start, within in horizons}


def lag_shapes(shop: Shop, channel: int, samples: int = TIMELINE_SAMPLES) -> dict[str, np.ndarray]:
    """Per timeline: P(lag = k minutes) between a session's start minute and the event's minute."""
    rng = np.random.default_rng([shop.seed, shop.index, 41, channel])
    f = _funnel_arrays(shop)
    t0 = rng.integers(0, WINDOW_MS, samples).astype(np.int64)
    tl = _timelines(rng, shop, f, t0, np.full(samples, channel))
    lag = tl["abandon_lag"]
    times = {"start": t0, "browse": tl["browse_t"], "cart": tl["t_cart"], "checkout": tl["t_checkout"],
             "complaint": tl["t_complaint"], "abandon_cart": tl["t_cart_end"] + lag,
             "abandon_checkout": tl["t_checkout"] + lag}
    for i, ta in enumerate(tl["attempts"]):
        times[f"attempt{i}"] = ta
        times[f"abandon_attempt{i}"] = ta + lag
    shapes = {}
    for key, t in times.items():
        minutes = np.minimum(t // WINDOW_MS, MAX_LAG_MINUTES - 1)
        shapes[key] = np.bincount(minutes, minlength=MAX_LAG_MINUTES) / len(t)
    return shapes


def order_value_moments(shop: Shop) -> tuple[float, float]:
    """Mean and variance of one order's value (1 + Poisson items, lognormal prices)."""
    m, s2 = shop.price_mu, shop.price_sigma ** 2
    price_mean = math.exp(m + s2 / 2)
    price_var = (math.exp(s2) - 1) * math.exp(2 * m + s2)
    items_mean, items_var = 1.0 + shop.extra_items, shop.extra_items
    return items_mean * price_mean, items_mean * price_var + items_var * price_mean ** 2


class Truth:
    """Expected events per window of a shop, by event key (type, ``search_zero``), for any segment."""

    def __init__(self, shop: Shop, horizons=()):
        """``horizons``: the (start timeline, within ms) of the funnel metrics to give the truth of."""
        self.shop = shop
        self.horizons = [within_shares(shop, c, horizons) for c in range(len(shop.channels))] if horizons else None
        first = shop.start_ms // WINDOW_MS - PRE_ROLL_MINUTES
        self.rate = shop.session_rate(first, PRE_ROLL_MINUTES + shop.windows)
        self.shapes = [lag_shapes(shop, c) for c in range(len(shop.channels))]
        self._conv: dict[tuple[int, str], np.ndarray] = {}
        self.order_mean, self.order_var = order_value_moments(shop)

    def _spread(self, channel: int, timeline: str) -> np.ndarray:
        key = (channel, timeline)
        if key not in self._conv:
            full = np.convolve(self.rate, self.shapes[channel][timeline])[:len(self.rate)]
            self._conv[key] = full[PRE_ROLL_MINUTES:]
        return self._conv[key]

    def channel_weights(self, segment: dict) -> np.ndarray:
        """P(a session is in ``segment`` and of channel c), per channel."""
        shop = self.shop
        weights = np.array(shop.channel_shares, dtype=float)
        for dim, value in segment.items():
            if dim == "channel":
                weights = weights * np.array([c == value for c in shop.channels], dtype=float)
            elif dim == "country":
                share = shop.country_shares[shop.countries.index(value)] if value in shop.countries else 0.0
                weights = weights * share
            elif dim == "device":
                weights = weights * shop.device_shares[:, DEVICES.index(value)]
            else:
                raise SuiteError(f"segments by {dim!r} are not drawn by the random shops")
        return weights

    def expected(self, segment: dict, incident: ShopIncident | None = None) -> dict[str, np.ndarray]:
        """Expected events per window, by key, from the sessions in ``segment`` (with ``incident``'s
        changed funnel everywhere: mix with the baseline by window with :meth:`with_incident`)."""
        weights = self.channel_weights(segment)
        out: dict[str, np.ndarray] = {}
        keep = incident.factor if incident is not None and incident.kind == "tracking_drop" else 1.0
        for c, weight in enumerate(weights):
            if weight <= 0:
                continue
            horizons = self.horizons[c] if self.horizons else None
            for key, mass, timeline in parts(self.shop, _modified(self.shop.funnels[c], incident), horizons):
                # a converted journey needs its start and its purchase both tracked
                kept = keep * keep if key.startswith("converted:") else keep
                add = (weight * mass * kept) * self._spread(c, timeline)
                out[key] = out[key] + add if key in out else add.copy()
        zeros = np.zeros(self.shop.windows)
        for key in ("session_start", "search", "search_zero", "product_view", "page_view", "error", "add_to_cart",
                    "checkout_start", "payment_failed", "purchase", "cart_abandoned", "complaint"):
            out.setdefault(key, zeros)
        return out

    def with_incident(self, segment: dict, incident: ShopIncident, everywhere: bool = False) -> dict[str, np.ndarray]:
        """Expected events per window of a series whose segment contains the incident's: the
        baseline, plus the change in the incident's segment while it lasts (abandoned carts a
        little later: they are flagged ``abandon_minutes`` after the last action), or in every
        window (``everywhere``: the shifted hypothesis an oracle tests at any time)."""
        base = self.expected(segment)
        before = self.expected(incident.segment)
        after = self.expected(incident.segment, incident)
        start = (incident.onset_ms - self.shop.start_ms) // WINDOW_MS
        end = (incident.end_ms - self.shop.start_ms) // WINDOW_MS
        out = {}
        for key in base:
            shift = int(round(self.shop.abandon_minutes)) if key == "cart_abandoned" else 0
            inside = np.full(self.shop.windows, everywhere)
            inside[min(start + shift, len(inside)):min(end + shift, len(inside))] = True
            out[key] = base[key] + np.where(inside, after[key] - before[key], 0.0)
        return out


def selector_expectation(selector, expected: dict[str, np.ndarray]) -> np.ndarray:
    """Expected events per window that a metric's selector counts."""
    keys = [k for k in expected if k in T] if selector.event_types is None else \
        [k for k in selector.event_types if k in T]
    if selector.where is not None:
        name, compare, value = selector.where
        if name != "results_count" or value != 0 or compare(1, 0) or not compare(0, 0):
            raise SuiteError(f"the random shops' truth knows 'results_count == 0' only, not {selector.where_text!r}")
        keys = ["search_zero"] if "search" in keys else []
    total = np.zeros(len(next(iter(expected.values()))))
    for key in keys:
        total = total + expected[key]
    return total


def volume_dispersion(shop: Shop, weights: np.ndarray, samples: int = 4000) -> float:
    """Variance over mean of a window's event count (all types): a session makes several events,
    often in the same minute, so counts are over-dispersed against Poisson by this factor."""
    from dataclasses import replace

    from blipwatch.tools.shopsuite.generator import session_events

    quiet = replace(shop, incidents=[])
    first = second = 0.0
    for c, weight in enumerate(weights):
        if weight <= 0:
            continue
        rng = np.random.default_rng([shop.seed, shop.index, 43, c])
        t0 = rng.integers(0, WINDOW_MS, samples).astype(np.int64)
        zeros = np.zeros(samples, dtype=np.int64)
        events = session_events(rng, quiet, t0, np.full(samples, c), zeros, zeros)
        _, counts = np.unique(events.session * MAX_LAG_MINUTES * 4 + events.t // WINDOW_MS, return_counts=True)
        first += weight * counts.sum() / samples
        second += weight * (counts.astype(float) ** 2).sum() / samples
    return second / first if first > 0 else 1.0

"""Shops drawn at random and their events (their window counts: ``shopsuite.cells``; the true
value of every series: ``shopsuite.truth``).

Independent of ``tools.simulator`` (another funnel: a Poisson number of browse actions, one cart
decision per session, up to three payment attempts, an abandoned cart flagged ``abandon_minutes``
after the last action, complaints as a per-session chance), and vectorised with NumPy so a shop of
3,000 sessions a minute is generated in seconds. Everything is drawn from ``(seed, shop index)``:
the same arguments give the same shop, the same events and the same truth.

The truth of a series is its expected numerator and denominator per window given the shop's
session rate (``lambda`` per minute, known exactly): per channel, the expected number of events of
each type per session (closed form) spread over the minutes after the session's start by the
lag distribution of that event type (Monte Carlo over session timelines, normalised, so only its
shape is estimated). ``truth`` gives it without incidents; ``incident_truth`` with one incident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np


TYPES = ("session_start", "page_view", "product_view", "search", "add_to_cart", "checkout_start",
         "payment_failed", "purchase", "cart_abandoned", "error", "complaint")
T = {name: code for code, name in enumerate(TYPES)}
CHANNELS = ("web", "app", "email", "store", "call_center", "chat", "social")
COUNTRY_POOL = ("DE", "FR", "GB", "NL", "ES", "IT", "BE", "AT", "CH", "US", "PL", "SE", "DK", "IE", "PT", "CZ")
DEVICES = ("desktop", "mobile", "tablet", "other")
#: runs start on a Monday at midnight UTC plus a random number of days (the weekday matters)
BASE_START = datetime(2026, 3, 2, tzinfo=timezone.utc)
WINDOW_MS = 60_000
PRE_ROLL_MINUTES = 90          # sessions start this long before the run, so it opens mid-stream
MAX_LAG_MINUTES = 100          # no session event comes later than this after its start
#: the property a ``where`` or a mean can read, per event type
VALUE_PROPERTY = {T["search"]: "results_count", T["purchase"]: "order_value"}
#: incident kinds: the funnel parameter they change, the metric they are about, and what else moves
#: (a tracking drop loses purchases too, so the funnels' journeys convert less while it lasts)
KINDS = {
    "tracking_drop": ("keep", "event_volume", ("checkout_conversion_rate", "cart_abandonment_rate",
                                               "checkout_unconverted_5m")),
    "abandonment_up": ("p_checkout", "cart_abandonment_rate", ()),
    "conversion_down": ("p_dropout", "checkout_conversion_rate", ("cart_abandonment_rate", "checkout_unconverted_5m")),
    "payment_failures_up": ("p_fail", "payment_failure_rate", ("checkout_conversion_rate", "cart_abandonment_rate",
                                                               "checkout_unconverted_5m")),
    "zero_results_up": ("p_zero", "search_zero_results_rate", ()),
    "errors_up": ("p_error", "error_rate", ()),
    "complaints_up": ("p_complaint", "complaint_count", ()),
    "order_value_shift": ("order_value", "average_order_value", ()),
}
DIRECTION = {"event_volume": "down", "cart_abandonment_rate": "up", "checkout_conversion_rate": "down",
             "checkout_unconverted_5m": "up",
             "payment_failure_rate": "up", "search_zero_results_rate": "up", "error_rate": "up",
             "complaint_count": "up"}


@dataclass(frozen=True)
class Funnel:
    """How the sessions of one channel behave."""

    browse: float         # mean browse actions after the landing one (Poisson)
    p_search: float       # a browse action is a search ...
    p_product: float      # ... or a product view (else a page view)
    p_zero: float         # a search finds nothing
    p_error: float        # a page view fails
    p_cart: float         # a session fills a cart
    p_checkout: float     # a cart goes to checkout
    p_dropout: float      # a checkout is left before paying
    p_fail: float         # a payment attempt fails
    p_retry: float        # a failed attempt is retried (at most three attempts)
    p_complaint: float    # a session ends with a complaint
    gap_s: float          # mean gap between a session's actions (plus half a second)


@dataclass(frozen=True)
class ShopIncident:
    name: str
    kind: str
    metrics: tuple[str, ...]          # the metrics whose true value moves; the first is the one aimed at
    directions: tuple[str, ...]
    segment: dict
    onset_ms: int
    end_ms: int
    factor: float                     # multiplies the parameter (p_dropout: the chance of paying)


@dataclass
class Shop:
    seed: int
    index: int
    hours: float
    start_ms: int
    sessions_per_minute: float
    amplitude: float
    peak_hour: float
    amplitude2: float
    peak2_hour: float
    weekday: tuple[float, ...]        # traffic by weekday, Monday first
    channels: tuple[str, ...]
    channel_shares: np.ndarray
    countries: tuple[str, ...]
    country_shares: np.ndarray
    device_shares: np.ndarray         # [channel, device]
    funnels: tuple[Funnel, ...]       # per channel
    abandon_minutes: float
    price_mu: float
    price_sigma: float
    extra_items: float                # items in a cart: 1 + Poisson(extra_items)
    incidents: list[ShopIncident] = field(default_factory=list)

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(round(self.hours * 60)) * WINDOW_MS

    @property
    def windows(self) -> int:
        return int(round(self.hours * 60))

    def describe(self) -> str:
        return (f"shop {self.seed}/{self.index}: {self.sessions_per_minute:.0f} sessions/min, daily amplitude "
                f"{self.amplitude:.0%} peak {self.peak_hour:.1f}h, {len(self.channels)} channels, "
                f"{len(self.countries)} countries, {len(self.incidents)} incidents")

    # --- traffic ---------------------------------------------------------------------------

    def session_rate(self, first_minute: int, minutes: int) -> np.ndarray:
        """Expected session starts in each minute (epoch minutes) from ``first_minute``."""
        m = np.arange(first_minute, first_minute + minutes)
        hour = (m % 1440) / 60.0
        daily = (1.0 + self.amplitude * np.cos(2 * np.pi * (hour - self.peak_hour) / 24)
                 + self.amplitude2 * np.cos(4 * np.pi * (hour - self.peak2_hour) / 24))
        day = m // 1440
        week = np.asarray(self.weekday)
        into = m % 1440
        # the weekday's effect blends over three hours either side of midnight: no step at 00:00
        w_prev = np.maximum(0.0, 0.5 - into / 360.0)
        w_next = np.maximum(0.0, 0.5 - (1440 - into) / 360.0)
        weekly = (w_prev * week[(day + 2) % 7] + w_next * week[(day + 4) % 7]
                  + (1.0 - w_prev - w_next) * week[(day + 3) % 7])      # 1970-01-01 was a Thursday
        return self.sessions_per_minute * daily * weekly


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_shop(seed: int, index: int, hours: float = 30.0) -> Shop:
    """One shop at random, with its incidents (in the last part of the run, after a day of learning)."""
    rng = np.random.default_rng([seed, index, 17])
    n_channels = int(rng.integers(2, len(CHANNELS) + 1))
    channels = tuple(sorted(rng.choice(len(CHANNELS), n_channels, replace=False).tolist()))
    n_countries = int(rng.integers(1, 11))
    countries = tuple(sorted(rng.choice(len(COUNTRY_POOL), n_countries, replace=False).tolist()))
    base = {
        "browse": _loguniform(rng, 1.0, 10.0), "p_search": rng.uniform(0.0, 0.35),
        "p_product": rng.uniform(0.2, 0.6), "p_zero": _loguniform(rng, 0.01, 0.2),
        "p_error": _loguniform(rng, 0.002, 0.03), "p_cart": _loguniform(rng, 0.04, 0.5),
        "p_checkout": rng.uniform(0.2, 0.85), "p_dropout": rng.uniform(0.05, 0.4),
        "p_fail": _loguniform(rng, 0.01, 0.12), "p_retry": rng.uniform(0.3, 0.8),
        "p_complaint": _loguniform(rng, 0.0005, 0.03), "gap_s": _loguniform(rng, 5.0, 60.0),
    }
    funnels = []
    for _ in channels:   # each channel varies around the shop's funnel
        jitter = {k: v * math.exp(rng.normal(0.0, 0.3)) for k, v in base.items()}
        for k in ("p_search", "p_product"):
            jitter[k] = min(jitter[k], 0.45)
        for k in ("p_zero", "p_error", "p_cart", "p_checkout", "p_dropout", "p_fail", "p_retry", "p_complaint"):
            jitter[k] = min(jitter[k], 0.9)
        funnels.append(Funnel(**jitter))
    weekday = np.exp(rng.normal(0.0, 0.05, 7))
    weekday[5:] *= math.exp(rng.uniform(-0.3, 0.3))
    amplitude = float(rng.uniform(0.0, 0.9))
    shop = Shop(
        seed=seed, index=index, hours=float(hours),
        start_ms=int((BASE_START.timestamp() + 86400 * int(rng.integers(0, 7))) * 1000),
        sessions_per_minute=_loguniform(rng, 10.0, 3000.0),
        amplitude=amplitude, peak_hour=float(rng.uniform(0, 24)),
        amplitude2=float(rng.uniform(0.0, 0.5) * min(amplitude, 1.0 - amplitude)), peak2_hour=float(rng.uniform(0, 24)),
        weekday=tuple(float(w) for w in weekday),
        channels=tuple(CHANNELS[i] for i in channels), channel_shares=rng.dirichlet(np.full(n_channels, 1.5)),
        countries=tuple(COUNTRY_POOL[i] for i in countries), country_shares=rng.dirichlet(np.full(n_countries, 1.2)),
        device_shares=rng.dirichlet(np.full(len(DEVICES), 0.8), n_channels),
        funnels=tuple(funnels), abandon_minutes=float(rng.uniform(1.0, 30.0)),
        price_mu=float(rng.uniform(2.5, 5.0)), price_sigma=float(rng.uniform(0.3, 1.0)),
        extra_items=float(rng.uniform(0.0, 1.5)),
    )
    shop.incidents = _draw_incidents(rng, shop)
    return shop


def _draw_incidents(rng: np.random.Generator, shop: Shop) -> list[ShopIncident]:
    # after a day of learning when the run is long enough, else after 60 % of it
    zone_start = 24 * 60.0 if shop.hours >= 26 else 0.6 * shop.hours * 60
    zone_end = shop.hours * 60 - 30.0
    incidents = []
    t = zone_start + float(rng.uniform(0, 30))
    number = 0
    while True:
        duration = round(_loguniform(rng, 5.0, 90.0))
        onset = int(t)
        if onset + duration > zone_end:
            break
        kind = str(rng.choice(list(KINDS)))
        roll = rng.random()
        segment: dict = {}
        dims = {"channel": shop.channels, "country": shop.countries, "device": DEVICES}
        if roll >= 0.2:
            names = ["channel", "country", "device"]
            first = names[int(rng.integers(0, 3))]
            segment[first] = str(rng.choice(dims[first]))
            if roll >= 0.7:
                second = [n for n in names if n != first][int(rng.integers(0, 2))]
                segment[second] = str(rng.choice(dims[second]))
        param, metric, others = KINDS[kind]
        if kind == "tracking_drop":
            factor = _loguniform(rng, 0.05, 0.9)
        elif kind in ("abandonment_up", "conversion_down"):
            factor = _loguniform(rng, 0.1, 0.95)
        elif kind == "order_value_shift":
            factor = _loguniform(rng, 0.4, 0.9) if rng.random() < 0.6 else _loguniform(rng, 1.1, 2.5)
        else:
            factor = _loguniform(rng, 1.3, 15.0)
        metrics = (metric, *others)
        directions = tuple(DIRECTION.get(m, "down" if factor < 1 else "up") for m in metrics)
        number += 1
        incidents.append(ShopIncident(
            f"{kind}-{number}", kind, metrics, directions, segment,
            shop.start_ms + onset * WINDOW_MS, shop.start_ms + (onset + duration) * WINDOW_MS, factor))
        t = onset + duration + float(rng.uniform(20, 60))
    return incidents


# --- sessions -------------------------------------------------------------------------------

def _funnel_arrays(shop: Shop) -> dict[str, np.ndarray]:
    return {name: np.array([getattr(f, name) for f in shop.funnels]) for name in Funnel.__dataclass_fields__}


@dataclass
class Events:
    """Events as columns: time (epoch ms), type code, channel, country and device indexes, value
    (``results_count`` of a search, ``order_value`` of a purchase, else 0), session number."""

    t: np.ndarray
    type: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    device: np.ndarray
    value: np.ndarray
    session: np.ndarray

    def take(self, keep: np.ndarray) -> "Events":
        return Events(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list["Events"]) -> "Events":
        return Events(*(np.concatenate([getattr(p, name) for p in parts]) for name in Events.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.t)


def _in_incident(shop: Shop, incidents: list[tuple[ShopIncident, np.ndarray]], kind: str,
                 session: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The product of the factors of the incidents of ``kind`` active at ``t`` for these sessions."""
    factor = np.ones(len(t))
    for incident, member in incidents:
        if incident.kind == kind:
            active = member[session] & (t >= incident.onset_ms) & (t < incident.end_ms)
            factor = np.where(active, factor * incident.factor, factor)
    return factor


def _timelines(rng: np.random.Generator, shop: Shop, f: dict, t0: np.ndarray, ch: np.ndarray) -> dict:
    """When each session's actions happen, whatever their outcome (outcomes never move time)."""
    n = len(t0)
    gap = f["gap_s"][ch] * 1000.0
    nb = 1 + rng.poisson(f["browse"][ch])
    sess = np.repeat(np.arange(n), nb)
    steps = 500 + rng.exponential(gap[sess]).astype(np.int64)
    cs = np.cumsum(steps)
    first = np.cumsum(nb) - nb
    before = np.concatenate([[0], cs])[first]
    browse_t = t0[sess] + cs - before[sess]
    last_browse = browse_t[first + nb - 1]
    items = 1 + rng.poisson(shop.extra_items, n)
    t_cart = last_browse + 500 + rng.exponential(gap).astype(np.int64)
    t_cart_end = t_cart + (items - 1) * 700
    t_checkout = t_cart_end + 500 + rng.exponential(gap).astype(np.int64)
    attempts = [t_checkout + 2000 + rng.exponential(gap).astype(np.int64)]
    for _ in range(2):
        attempts.append(attempts[-1] + 2000 + rng.exponential(gap).astype(np.int64))
    t_complaint = last_browse + 500 + rng.exponential(gap).astype(np.int64)
    abandon_lag = int(shop.abandon_minutes * 60_000) + rng.integers(0, 60_000, n)
    return {"nb": nb, "sess": sess, "browse_t": browse_t, "items": items, "t_cart": t_cart,
            "t_cart_end": t_cart_end, "t_checkout": t_checkout, "attempts": attempts,
            "t_complaint": t_complaint, "abandon_lag": abandon_lag}


def session_events(rng: np.random.Generator, shop: Shop, t0: np.ndarray, ch: np.ndarray, co: np.ndarray,
                   dev: np.ndarray, first_session: int = 0) -> Events:
    """The events of these sessions (starts ``t0``, channel/country/device indexes), incidents included."""
    f = _funnel_arrays(shop)
    n = len(t0)
    members = []
    for incident in shop.incidents:
        member = np.ones(n, dtype=bool)
        for dim, value in incident.segment.items():
            if dim == "channel":
                member &= ch == shop.channels.index(value) if value in shop.channels else False
            elif dim == "country":
                member &= co == shop.countries.index(value) if value in shop.countries else False
            else:
                member &= dev == DEVICES.index(value)
        members.append((incident, member))
    tl = _timelines(rng, shop, f, t0, ch)
    sess, bt = tl["sess"], tl["browse_t"]
    out_t, out_type, out_sess, out_value = [t0], [np.full(n, T["session_start"])], [np.arange(n)], [np.zeros(n)]

    def add(t, code, s, value=None):
        out_t.append(t)
        out_type.append(np.full(len(t), code))
        out_sess.append(s)
        out_value.append(np.zeros(len(t)) if value is None else value)

    u = rng.random(len(sess))
    ps, pp = f["p_search"][ch[sess]], f["p_product"][ch[sess]]
    search, product = u < ps, (u >= ps) & (u < ps + pp)
    page = ~(search | product)
    p_zero = np.minimum(0.95, f["p_zero"][ch[sess]] * _in_incident(shop, members, "zero_results_up", sess, bt))
    zero = rng.random(len(sess)) < p_zero
    results = np.where(zero, 0, 1 + rng.exponential(40.0, len(sess)).astype(np.int64)).astype(float)
    add(bt[search], T["search"], sess[search], results[search])
    add(bt[product], T["product_view"], sess[product])
    add(bt[page], T["page_view"], sess[page])
    p_error = np.minimum(0.95, f["p_error"][ch[sess]] * _in_incident(shop, members, "errors_up", sess, bt))
    error = page & (rng.random(len(sess)) < p_error)
    add(bt[error] + 200, T["error"], sess[error])

    idx = np.arange(n)
    cart = rng.random(n) < f["p_cart"][ch]
    items = tl["items"]
    cart_sess = np.repeat(idx[cart], items[cart])
    within = np.arange(len(cart_sess)) - np.repeat(np.cumsum(items[cart]) - items[cart], items[cart])
    prices = rng.lognormal(shop.price_mu, shop.price_sigma, len(cart_sess))
    add(tl["t_cart"][cart_sess] + within * 700, T["add_to_cart"], cart_sess)
    cart_value = np.bincount(cart_sess, weights=prices, minlength=n)
    tk = tl["t_checkout"]
    p_co = np.minimum(0.99, f["p_checkout"][ch] * _in_incident(shop, members, "abandonment_up", idx, tk))
    checkout = cart & (rng.random(n) < p_co)
    add(tk[checkout], T["checkout_start"], idx[checkout])
    pay = 1.0 - f["p_dropout"][ch]
    pay = pay * _in_incident(shop, members, "conversion_down", idx, tk)
    paying = checkout & (rng.random(n) < pay)
    last_action = np.where(checkout, tk, tl["t_cart_end"])
    purchased = np.zeros(n, dtype=bool)
    trying = paying.copy()
    for attempt, ta in enumerate(tl["attempts"]):
        p_fail = np.minimum(0.95, f["p_fail"][ch] * _in_incident(shop, members, "payment_failures_up", idx, ta))
        fail = trying & (rng.random(n) < p_fail)
        success = trying & ~fail
        add(ta[fail], T["payment_failed"], idx[fail])
        value = np.round(cart_value * _in_incident(shop, members, "order_value_shift", idx, ta), 2)
        add(ta[success], T["purchase"], idx[success], value[success])
        purchased |= success
        last_action = np.where(fail, ta, last_action)
        trying = fail & (rng.random(n) < f["p_retry"][ch]) if attempt < 2 else fail & False
    abandoned = cart & ~purchased
    add(last_action[abandoned] + tl["abandon_lag"][abandoned], T["cart_abandoned"], idx[abandoned])
    tc = tl["t_complaint"]
    p_complaint = np.minimum(0.95, f["p_complaint"][ch] * _in_incident(shop, members, "complaints_up", idx, tc))
    complaint = rng.random(n) < p_complaint
    add(tc[complaint], T["complaint"], idx[complaint])

    s = np.concatenate(out_sess)
    events = Events(np.concatenate(out_t).astype(np.int64), np.concatenate(out_type).astype(np.int8),
                    ch[s], co[s], dev[s], np.concatenate(out_value), s + first_session)
    keep = np.ones(len(events), dtype=bool)
    for incident, member in members:    # a tracking drop: events vanish before they reach us
        if incident.kind == "tracking_drop":
            hit = member[s] & (events.t >= incident.onset_ms) & (events.t < incident.end_ms)
            keep &= ~hit | (rng.random(len(events)) < incident.factor)
    return events.take(keep) if not keep.all() else events


def generate(shop: Shop, chunk_minutes: int = 60):
    """The shop's events, one chunk of session starts at a time (``Events`` in no particular order;
    a session's events may fall after the chunk). Only events inside the run are kept."""
    first = shop.start_ms // WINDOW_MS - PRE_ROLL_MINUTES
    last = shop.end_ms // WINDOW_MS
    rng = np.random.default_rng([shop.seed, shop.index, 29])
    device_cumulative = np.cumsum(shop.device_shares, axis=1)
    device_cumulative[:, -1] = 1.0 + 1e-9
    sessions = 0
    for chunk in range(first, last, chunk_minutes):
        minutes = min(chunk_minutes, last - chunk)
        counts = rng.poisson(shop.session_rate(chunk, minutes))
        total = int(counts.sum())
        t0 = np.repeat((np.arange(chunk, chunk + minutes) * WINDOW_MS).astype(np.int64), counts) \
            + rng.integers(0, WINDOW_MS, total)
        ch = rng.choice(len(shop.channels), total, p=shop.channel_shares)
        co = rng.choice(len(shop.countries), total, p=shop.country_shares)
        dev = (rng.random(total)[:, None] >= device_cumulative[ch]).sum(axis=1)
        events = session_events(rng, shop, t0, ch, co, dev, sessions)
        sessions += total
        inside = (events.t >= shop.start_ms) & (events.t < shop.end_ms)
        yield events.take(inside)


# --- events in the contract -------------------------------------------------------------------

def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event_dicts(shop: Shop, events: Events) -> list[dict]:
    """The events as customer-event dicts (blipwatch/schemas/customer_event.schema.json), in time order."""
    order = np.lexsort((events.session, events.t))
    out = []
    for i in order.tolist():
        code = int(events.type[i])
        properties: dict = {}
        if code == T["search"]:
            properties = {"results_count": int(events.value[i])}
        elif code == T["purchase"]:
            properties = {"order_value": float(events.value[i]), "currency": "EUR"}
        session = int(events.session[i])
        out.append({
            "event_id": f"r{shop.seed}-{shop.index}-{session}-{i}", "event_type": TYPES[code],
            "occurred_at": _iso(int(events.t[i])), "session_id": f"r{shop.seed}-{shop.index}-{session}",
            "channel": shop.channels[events.channel[i]], "country": shop.countries[events.country[i]],
            "device": DEVICES[events.device[i]], "properties": properties,
        })
    return out


class SuiteError(ValueError):
    """The metric config asks for something the random shops cannot count; the message says what."""

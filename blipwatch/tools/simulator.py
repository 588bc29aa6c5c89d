"""Realistic customer-behaviour events with labelled incidents (``blipwatch simulate``).

Sessions walk a shop funnel (session start, page and product views, searches, cart,
checkout, payment, purchase or abandoned cart, errors, complaints) across channels,
countries and devices. Traffic follows a daily and weekly rhythm with day-to-day and
minute-to-minute noise. Named incident scenarios change one behaviour in one segment for
a while; :func:`scenario_labels` says what was injected, where and when, in the metric
names of the default catalogue, so ``blipwatch evaluate`` can score a detector against it.

Everything is seeded: the same arguments give the same events, byte for byte.
``tools.trackers.tracker_encoder`` writes them as a tracker sends them (Segment, GA4, Snowplow: see
blipwatch.schemas.presets), without the outcome events (``cart_abandoned``) no tracker sends.

>>> events = list(generate_events("none", hours=0.05, sessions_per_minute=20))
>>> events[0]["occurred_at"][:16], events[-1]["occurred_at"][:16]
('2026-01-05T00:00', '2026-01-05T00:02')
>>> sorted({event["channel"] for event in events}) <= sorted(CHANNELS)
True
>>> [label["name"] for label in scenario_labels("demo")]
['cart_abandonment_spike']
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Iterator

import numpy as np

from blipwatch.schemas.times import format_time, parse_time  # noqa: F401 - also imported from here

#: Runs start here unless told otherwise: a Monday, in the past, so runs are reproducible.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc)
#: Mean session starts per minute over a day (the evening peak is ~1.6x, 04:00 ~0.2x): a mid-size
#: shop, ~690k sessions and ~6M events a day (~70 events/s). Smaller shops are simulated with
#: --sessions-per-minute; at 60 a France-only payment outage is one or two payments a minute,
#: which no test tells from noise within two one-minute windows (docs/simulator.md).
DEFAULT_SESSIONS_PER_MINUTE = 480.0

CHANNELS = ("web", "app", "email", "store", "call_center", "chat", "social")
CHANNEL_SHARES = (0.42, 0.30, 0.06, 0.06, 0.04, 0.05, 0.07)
COUNTRIES = ("DE", "FR", "GB", "NL", "ES", "IT", "BE", "AT", "CH", "US")
COUNTRY_SHARES = (0.24, 0.15, 0.13, 0.09, 0.09, 0.09, 0.06, 0.05, 0.04, 0.06)
#: Currency and its value of one euro, so order values are comparable across countries.
CURRENCIES = {"GB": ("GBP", 0.86), "CH": ("CHF", 0.94), "US": ("USD", 1.08)}
DEVICES = ("desktop", "mobile", "tablet", "other")
DEVICE_SHARES = {  # per channel, in DEVICES order
    "web": (0.52, 0.38, 0.09, 0.01),
    "app": (0.0, 0.86, 0.14, 0.0),
    "email": (0.35, 0.57, 0.08, 0.0),
    "store": (0.0, 0.10, 0.30, 0.60),
    "call_center": (0.0, 0.0, 0.0, 1.0),
    "chat": (0.45, 0.48, 0.07, 0.0),
    "social": (0.10, 0.85, 0.05, 0.0),
}
EVENT_TYPES = (
    "session_start", "page_view", "product_view", "search", "add_to_cart", "remove_from_cart",
    "checkout_start", "payment_failed", "purchase", "cart_abandoned", "error", "complaint",
)
#: Relative traffic by UTC hour of day (mostly European customers): night trough, evening peak.
HOURLY_TRAFFIC = (
    0.55, 0.38, 0.27, 0.22, 0.20, 0.24, 0.38, 0.60, 0.80, 0.92, 1.00, 1.05,
    1.12, 1.08, 1.02, 1.00, 1.02, 1.10, 1.28, 1.50, 1.62, 1.55, 1.25, 0.85,
)
#: Relative traffic by weekday, Monday first: Sunday is the shopping day.
WEEKDAY_TRAFFIC = (1.0, 0.98, 0.97, 1.0, 0.95, 1.04, 1.15)
DAY_LEVEL_SD = 0.08          # day-to-day traffic level (log scale)
WANDER_SD = 0.06             # slow minute-to-minute wander of the level (log scale, stationary)
WANDER_MINUTES = 45.0        # its correlation time
GUEST_SHARE = 0.3            # sessions without a customer id
#: The shop flags a cart abandoned after this much inactivity (shops often wait 30 min;
#: two keeps the abandonment rate close in time to what caused it).
ABANDON_AFTER_MS = 120_000
P_ZERO_RESULTS = 0.07
P_ERROR = 0.010              # per page view
P_PAYMENT_FAILURE = 0.035    # per payment attempt
P_PAYMENT_RETRY = 0.55       # after a failed attempt (at most 3 attempts)
PRE_ROLL_MS = 30 * 60_000    # sessions start this long before the run, so it opens mid-stream

PAGES = ("home", "category", "category", "category", "deals", "account", "help", "content")
ERROR_CODES = ("HTTP_500", "HTTP_502", "HTTP_504", "JS_ERROR", "JS_ERROR", "TIMEOUT")
PAYMENT_FAILURE_REASONS = ("card_declined", "card_declined", "insufficient_funds", "3ds_failed",
                           "provider_error")
COMPLAINT_REASONS = ("late_delivery", "late_delivery", "damaged_item", "wrong_item", "refund_delay",
                     "billing", "service")


@dataclass(frozen=True)
class Behaviour:
    """How sessions of one channel walk the funnel."""

    steps_mean: float        # browsing steps after session start (geometric-ish)
    p_search: float          # share of steps that are searches
    p_product: float         # share of steps that are product views (the rest: page views)
    p_cart: float            # a session that viewed products adds to cart
    p_checkout: float        # a cart goes to checkout
    p_dropout: float         # a checkout is left before paying
    p_complaint: float       # a session ends with a complaint
    gap_seconds: float       # mean time between a session's events


BEHAVIOURS = {
    "web": Behaviour(7, 0.15, 0.40, 0.32, 0.42, 0.27, 0.002, 25),
    "app": Behaviour(8, 0.18, 0.42, 0.34, 0.46, 0.25, 0.002, 18),
    "email": Behaviour(4, 0.05, 0.55, 0.28, 0.40, 0.28, 0.010, 25),
    "store": Behaviour(2, 0.0, 0.90, 0.50, 0.60, 0.08, 0.010, 40),
    "call_center": Behaviour(3, 0.30, 0.50, 0.35, 0.65, 0.12, 0.080, 45),
    "chat": Behaviour(4, 0.20, 0.40, 0.22, 0.45, 0.26, 0.060, 30),
    "social": Behaviour(3, 0.05, 0.50, 0.18, 0.34, 0.32, 0.003, 20),
}


def true_funnel_rates(channel: str) -> dict[str, float]:
    """The default funnels' rates as ``channel``'s parameters make them, outside incidents: the
    expectation a sample's rates scatter around with binomial noise (``docs/simulator.md``).

    A cart goes to checkout with ``p_checkout``; a checkout is left with ``p_dropout``, else paid in
    up to 3 attempts (each failing with ``P_PAYMENT_FAILURE``, retried with ``P_PAYMENT_RETRY``). The
    purchase follows its checkout by a few of the channel's gaps, so ``within: 30m`` misses none and
    ``within: 5m`` less than 0.3 % (counted as converted here).

    >>> {name: round(rate, 4) for name, rate in true_funnel_rates("web").items()}
    {'checkout_conversion_rate': 0.7183, 'checkout_unconverted_5m': 0.2817, 'cart_abandonment_rate': 0.6983}
    """
    behaviour = BEHAVIOURS[channel]
    fail, retry = P_PAYMENT_FAILURE, P_PAYMENT_RETRY
    paid = sum((1 - fail) * (fail * retry) ** attempt for attempt in range(3))
    converted = (1 - behaviour.p_dropout) * paid
    return {"checkout_conversion_rate": converted, "checkout_unconverted_5m": 1 - converted,
            "cart_abandonment_rate": 1 - behaviour.p_checkout * converted}


@dataclass(frozen=True)
class Incident:
    """A change in customer behaviour (or in what reaches us) in one segment for a while.

    ``effect`` multiplies generator parameters while the incident is active, for sessions in
    ``segment``: ``p_checkout``, ``p_dropout``, ``p_payment_failure``, ``p_zero_results``,
    ``p_error``, ``complaints``, ``order_value``, ``kept_events`` (base 1), ``traffic``.
    """

    name: str
    description: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]          # one per metric: "up" or "down"
    segment: dict
    offset_hours: float                  # onset, from the start of the run
    duration_minutes: float
    effect: dict
    expect_alert: bool = True
    subtle: bool = False


INCIDENTS = {
    incident.name: incident for incident in (
        Incident("tracking_drop", "the app's tracking SDK loses most events after a release",
                 ("event_volume",), ("down",), {"channel": "app"}, 31.5, 40, {"kept_events": 0.15}),
        Incident("payment_outage", "a payment provider used in France declines most payments",
                 ("payment_failure_rate", "checkout_conversion_rate", "checkout_unconverted_5m", "cart_abandonment_rate"),
                 ("up", "down", "up", "up"), {"country": "FR"}, 33.0, 40, {"p_payment_failure": 18.0}),
        Incident("search_zero_results", "the search index is half empty after a bad reindex",
                 ("search_zero_results_rate",), ("up",), {}, 34.5, 45, {"p_zero_results": 7.0}),
        Incident("cart_abandonment_spike", "the web checkout's address form fails for most customers",
                 ("cart_abandonment_rate",), ("up",), {"channel": "web"}, 36.0, 45,
                 {"p_checkout": 0.3}),
        Incident("order_value_drop", "a pricing bug sells everything at about half price",
                 ("average_order_value",), ("down",), {}, 37.5, 60, {"order_value": 0.55}),
        Incident("complaint_surge", "a carrier's delays make customers complain",
                 ("complaint_count",), ("up",), {}, 39.5, 45, {"complaints": 6.0}),
        Incident("error_spike", "an app release fails on many page loads",
                 ("error_rate",), ("up",), {"channel": "app"}, 41.0, 40, {"p_error": 8.0}),
        Incident("busy_evening", "a TV ad brings more visitors who behave as usual (must not alert)",
                 ("event_volume",), ("up",), {}, 42.5, 180, {"traffic": 1.45}, expect_alert=False),
        Incident("subtle_conversion_dip", "a slower checkout page loses a few more buyers",
                 ("checkout_conversion_rate", "checkout_unconverted_5m"), ("down", "up"), {}, 46.0, 60, {"p_dropout": 1.35},
                 subtle=True),
    )
}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    incidents: tuple[Incident, ...]
    hours: float
    start: datetime = DEFAULT_START


def _single(incident: Incident) -> Scenario:
    end_hours = incident.offset_hours + incident.duration_minutes / 60
    return Scenario(incident.name, f"a normal day, then {incident.description}", (incident,),
                    hours=max(36.0, math.ceil(end_hours + 2)))


_DEMO_SPIKE = Incident("cart_abandonment_spike", "the web checkout button breaks",
                       ("cart_abandonment_rate",), ("up",), {"channel": "web"}, 2.0, 30,
                       {"p_checkout": 0.06})

SCENARIOS: dict[str, Scenario] = {
    "none": Scenario("none", "normal traffic only", (), hours=24.0),
    **{name: _single(incident) for name, incident in INCIDENTS.items()},
    "all": Scenario("all", "a normal day, then every incident at a different time of the second day",
                    tuple(INCIDENTS.values()), hours=48.0),
    "demo": Scenario("demo", "two hours of normal evening traffic, then a cart-abandonment spike on "
                     "channel=web", (_DEMO_SPIKE,), hours=3.0, start=DEFAULT_START + timedelta(hours=17)),
}


class ScenarioError(ValueError):
    """An unknown scenario or impossible run parameters; the message says what to do."""


# --- time ------------------------------------------------------------------------------------

def _epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(round(value.timestamp() * 1000))


_MILLIS = [f"{millis:03d}Z" for millis in range(1000)]


class _Clock:
    """Formats event times fast: the text up to the second is cached."""

    def __init__(self):
        self._seconds: dict[int, str] = {}

    def __call__(self, epoch_ms: int) -> str:
        second, millis = divmod(epoch_ms, 1000)
        prefix = self._seconds.get(second)
        if prefix is None:
            if len(self._seconds) > 65536:
                self._seconds.clear()
            prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            self._seconds[second] = prefix
        return prefix + _MILLIS[millis]


# --- the run -------------------------------------------------------------------------------

@dataclass
class _Run:
    scenario: Scenario
    start_ms: int
    end_ms: int
    incidents: list[tuple[Incident, int, int]] = field(default_factory=list)   # with onset/end in ms


def _plan(scenario: str, start: datetime | str | None, hours: float | None,
          incident_offset_hours: float | None) -> _Run:
    try:
        spec = SCENARIOS[scenario]
    except KeyError:
        raise ScenarioError(f"unknown scenario {scenario!r}: use one of {', '.join(SCENARIOS)}") from None
    if isinstance(start, str):
        try:
            start = parse_time(start)
        except ValueError:
            raise ScenarioError(f"start {start!r} is not an ISO 8601 time, e.g. 2026-01-05T00:00:00Z") from None
    start = spec.start if start is None else start
    hours = spec.hours if hours is None else float(hours)
    if not hours > 0:
        raise ScenarioError(f"hours must be more than 0, not {hours}")
    if incident_offset_hours is not None and len(spec.incidents) != 1:
        raise ScenarioError(f"scenario {scenario!r} has {len(spec.incidents)} incidents; "
                            "an incident offset needs a scenario with exactly one")
    run = _Run(spec, _epoch_ms(start), _epoch_ms(start) + int(hours * 3_600_000))
    for incident in spec.incidents:
        offset = incident.offset_hours if incident_offset_hours is None else incident_offset_hours
        onset = run.start_ms + int(offset * 3_600_000)
        if onset >= run.end_ms:
            continue
        run.incidents.append((incident, onset, min(run.end_ms, onset + int(incident.duration_minutes * 60_000))))
    return run


def scenario_labels(scenario: str = "none", start: datetime | str | None = None, hours: float | None = None,
                    seed: int = 0, sessions_per_minute: float | None = None,
                    incident_offset_hours: float | None = None) -> list[dict]:
    """What ``generate_events`` with the same arguments injects: one dict per incident.

    Incidents that would start after the end of the run are left out, and ones that would end
    after it are cut at the end. ``seed`` and ``sessions_per_minute`` do not move incidents;
    they are accepted so both functions take the same arguments.
    """
    run = _plan(scenario, start, hours, incident_offset_hours)
    labels = []
    for incident, onset, end in run.incidents:
        labels.append({
            "name": incident.name,
            "description": incident.description,
            "metrics": list(incident.metrics),
            "segment": dict(incident.segment),
            "direction": incident.directions[0],
            "directions": dict(zip(incident.metrics, incident.directions)),
            "start": format_time(onset),
            "end": format_time(end),
            "expect_alert": incident.expect_alert,
            "subtle": incident.subtle,
        })
    return labels


def run_labels(scenario: str = "none", start: datetime | str | None = None, hours: float | None = None,
               seed: int = 0, sessions_per_minute: float | None = None,
               incident_offset_hours: float | None = None) -> dict:
    """The labels file: the run (scenario, seed, start, end) and its incidents."""
    run = _plan(scenario, start, hours, incident_offset_hours)
    return {
        "scenario": scenario,
        "description": run.scenario.description,
        "seed": seed,
        "sessions_per_minute": DEFAULT_SESSIONS_PER_MINUTE if sessions_per_minute is None else sessions_per_minute,
        "start": format_time(run.start_ms),
        "end": format_time(run.end_ms),
        "hours": (run.end_ms - run.start_ms) / 3_600_000,
        "incidents": scenario_labels(scenario, start, hours, seed, sessions_per_minute, incident_offset_hours),
    }


def generate_events(scenario: str = "none", start: datetime | str | None = None, hours: float | None = None,
                    seed: int = 0, sessions_per_minute: float | None = None,
                    incident_offset_hours: float | None = None) -> Iterator[dict]:
    """Customer events in ``occurred_at`` order (to the millisecond), as the customer event contract (schemas/customer_event.schema.json).

    scenario: a name from :data:`SCENARIOS` (``blipwatch simulate --list-scenarios``).
    start: the first event time (default: the scenario's, Monday 2026-01-05 00:00 UTC for most).
    hours: how much event time to generate (default: the scenario's).
    seed: the same seed and arguments give the same events.
    sessions_per_minute: mean session starts per minute over a day (default 480, ~9 events each).
    incident_offset_hours: move a single-incident scenario's onset to this long after ``start``.

    >>> first = next(generate_events("payment_outage", seed=3))
    >>> first == next(generate_events("payment_outage", seed=3))
    True
    """
    rate = DEFAULT_SESSIONS_PER_MINUTE if sessions_per_minute is None else float(sessions_per_minute)
    if not rate > 0:
        raise ScenarioError(f"sessions per minute must be more than 0, not {rate}")
    run = _plan(scenario, start, hours, incident_offset_hours)
    return _Generator(run, seed, rate).events()


class _Generator:
    def __init__(self, run: _Run, seed: int, sessions_per_minute: float):
        self.run = run
        self.seed = seed
        self.sessions_per_minute = sessions_per_minute
        self.numbers = np.random.default_rng(seed)       # bulk draws: session counts and attributes
        self.random = random.Random(seed)                # the per-session walk
        self.clock = _Clock()
        self.buckets: dict[int, list] = {}               # minute -> [(epoch_ms, event)]
        self.sessions = 0
        self.wander = 0.0
        self.day_levels: dict[int, float] = {}
        self.local_incidents = [(inc, onset, end) for inc, onset, end in run.incidents
                                if "traffic" not in inc.effect]
        self.device_cumulative = np.array([np.cumsum(DEVICE_SHARES[c]) for c in CHANNELS])
        self.device_cumulative[:, -1] = 1.0 + 1e-9
        self.channel_cumulative = np.cumsum(CHANNEL_SHARES)
        self.channel_cumulative[-1] = 1.0 + 1e-9
        self.country_cumulative = np.cumsum(COUNTRY_SHARES)
        self.country_cumulative[-1] = 1.0 + 1e-9

    # -- traffic level -------------------------------------------------------------------

    def _day_level(self, day: int) -> float:
        # drawn from a generator of its own, so the level of a day does not depend on the run's start
        if day not in self.day_levels:
            self.day_levels[day] = math.exp(np.random.default_rng([self.seed, day]).normal(0, DAY_LEVEL_SD))
        return self.day_levels[day]

    def _session_rates(self, first_minute: int, minutes: int) -> np.ndarray:
        """Expected session starts for each minute (epoch minutes) of a chunk."""
        epoch_minutes = np.arange(first_minute, first_minute + minutes)
        hour = (epoch_minutes % 1440) / 60.0
        low = np.floor(hour).astype(int)
        frac = hour - low
        daily = np.array(HOURLY_TRAFFIC)
        # interpolate between hour midpoints so the curve has no steps
        shifted = frac - 0.5
        neighbour = np.where(shifted >= 0, (low + 1) % 24, (low - 1) % 24)
        daily_value = daily[low] + np.abs(shifted) * (daily[neighbour] - daily[low])
        daily_value /= np.mean(HOURLY_TRAFFIC)
        days = epoch_minutes // 1440
        weekday = (days + 3) % 7            # 1970-01-01 was a Thursday
        weekly = np.array(WEEKDAY_TRAFFIC)[weekday]
        levels = np.array([self._day_level(int(day)) for day in days])
        phi = math.exp(-1.0 / WANDER_MINUTES)
        steps = self.numbers.normal(0.0, WANDER_SD * math.sqrt(1 - phi * phi), minutes)
        wander = np.empty(minutes)
        state = self.wander
        for i in range(minutes):
            state = phi * state + steps[i]
            wander[i] = state
        self.wander = state
        return self.sessions_per_minute * daily_value * weekly * levels * np.exp(wander)

    def _extra_rates(self, first_minute: int, rates: np.ndarray) -> np.ndarray:
        """Expected extra session starts per minute from traffic incidents (a busy evening)."""
        extra = np.zeros_like(rates)
        middle = (np.arange(first_minute, first_minute + len(rates)) * 60_000 + 30_000).astype(float)
        for incident, onset, end in self.run.incidents:
            factor = incident.effect.get("traffic")
            if factor is None:
                continue
            inside = (middle >= onset) & (middle < end)
            phase = (middle - onset) / max(1, end - onset)
            bump = (factor - 1) * 0.5 * (1 - np.cos(2 * np.pi * phase))   # rises and falls smoothly
            extra += np.where(inside, rates * bump, 0.0)
        return extra

    def _draw_sessions(self, numbers: np.random.Generator, rates: np.ndarray):
        """Session counts per minute, and each session's offset, channel, country, device, customer."""
        counts = numbers.poisson(rates)
        total = int(counts.sum())
        offsets = numbers.integers(0, 60_000, total).tolist()
        channels = np.searchsorted(self.channel_cumulative, numbers.random(total), side="right")
        countries = np.searchsorted(self.country_cumulative, numbers.random(total), side="right")
        devices = (numbers.random(total)[:, None] >= self.device_cumulative[channels]).sum(axis=1)
        customers = [None if guest else f"c{country}{number:05d}" for guest, country, number in zip(
            (numbers.random(total) < GUEST_SHARE).tolist(), countries.tolist(),
            numbers.integers(0, 60_000, total).tolist())]
        sessions = zip(offsets, [CHANNELS[i] for i in channels.tolist()], [COUNTRIES[i] for i in countries.tolist()],
                       [DEVICES[i] for i in devices.tolist()], customers)
        return counts.tolist(), list(sessions)

    # -- the stream ----------------------------------------------------------------------

    def events(self) -> Iterator[dict]:
        run = self.run
        first_minute = (run.start_ms - PRE_ROLL_MS) // 60_000
        last_minute = (run.end_ms - 1) // 60_000
        chunk = 60
        # extra visitors come from a generator of their own, so traffic before them stays as it was
        extra_numbers = np.random.default_rng([self.seed, 1])
        for chunk_start in range(first_minute, last_minute + 1, chunk):
            minutes = min(chunk, last_minute + 1 - chunk_start)
            rates = self._session_rates(chunk_start, minutes)
            counts, sessions = self._draw_sessions(self.numbers, rates)
            extra_counts, extra_sessions = self._draw_sessions(extra_numbers, self._extra_rates(chunk_start, rates))
            index = extra_index = 0
            for minute_offset in range(minutes):
                minute = chunk_start + minute_offset
                count, extra = counts[minute_offset], extra_counts[minute_offset]
                for offset, channel, country, device, customer in (
                        sessions[index:index + count] + extra_sessions[extra_index:extra_index + extra]):
                    self._session(minute * 60_000 + offset, channel, country, device, customer)
                index += count
                extra_index += extra
                bucket = self.buckets.pop(minute, None)
                if not bucket:
                    continue
                bucket.sort(key=itemgetter(0))
                for epoch_ms, event in bucket:
                    if run.start_ms <= epoch_ms < run.end_ms:
                        yield event

    def _active(self, incidents, epoch_ms: int, name: str) -> float:
        factor = 1.0
        for incident, onset, end in incidents:
            if onset <= epoch_ms < end:
                factor *= incident.effect.get(name, 1.0)
        return factor

    def _session(self, t: int, channel: str, country: str, device: str, customer: str | None) -> None:
        behaviour = BEHAVIOURS[channel]
        self.sessions += 1
        # each session draws from its own seed: an incident changes the sessions it touches, no others
        self.random.seed((self.seed << 40) | self.sessions)
        rnd = self.random.random
        log = math.log
        incidents = ()
        if self.local_incidents:
            incidents = [
                (incident, onset, end) for incident, onset, end in self.local_incidents
                if onset < t + 7_200_000 and end > t
                and all({"channel": channel, "country": country, "device": device}.get(k) == v
                        for k, v in incident.segment.items())
            ]
        active = self._active
        session_id = f"s{self.seed}-{self.sessions:07d}"
        gap_ms = behaviour.gap_seconds * 1000
        steps: list[tuple[int, str, dict]] = [(t, "session_start", {})]
        add = steps.append
        products = 0
        for _ in range(1 + int(-behaviour.steps_mean * log(1.0 - rnd()))):
            t += 500 + int(-gap_ms * log(1.0 - rnd()))
            u = rnd()
            if u < behaviour.p_search:
                p_zero = P_ZERO_RESULTS * (active(incidents, t, "p_zero_results") if incidents else 1.0)
                results = 0 if rnd() < p_zero else 1 + int(-60 * log(1.0 - rnd()))
                add((t, "search", {"results_count": results}))
            elif u < behaviour.p_search + behaviour.p_product:
                products += 1
                add((t, "product_view", {"product_id": f"p{int(rnd() * 8000):04d}"}))
            else:
                add((t, "page_view", {"page": PAGES[int(rnd() * 8)]}))
                p_error = P_ERROR * (active(incidents, t, "p_error") if incidents else 1.0)
                if rnd() < p_error:
                    add((t + 200, "error", {"code": ERROR_CODES[int(rnd() * 6)]}))
        if products and rnd() < behaviour.p_cart:
            t = self._cart(t, behaviour, country, incidents, steps)
        p_complaint = behaviour.p_complaint * (active(incidents, t, "complaints") if incidents else 1.0)
        if rnd() < p_complaint:
            t += 500 + int(-gap_ms * log(1.0 - rnd()))
            add((t, "complaint", {"reason": COMPLAINT_REASONS[int(rnd() * 7)]}))
        if incidents:   # a tracking drop: events vanish before they reach us
            kept = []
            for step in steps:
                keep = active(incidents, step[0], "kept_events")
                if keep >= 1.0 or rnd() < keep:
                    kept.append(step)
            steps = kept
        common = {"session_id": session_id, "channel": channel, "country": country, "device": device}
        if customer is not None:
            common = {"customer_id": customer, **common}
        clock = self.clock
        buckets = self.buckets
        number = 0
        for epoch_ms, event_type, properties in steps:
            number += 1
            event = {"event_id": f"{session_id}-{number}", "event_type": event_type,
                     "occurred_at": clock(epoch_ms), **common, "properties": properties}
            minute = epoch_ms // 60_000
            bucket = buckets.get(minute)
            if bucket is None:
                buckets[minute] = [(epoch_ms, event)]
            else:
                bucket.append((epoch_ms, event))

    def _cart(self, t: int, behaviour: Behaviour, country: str, incidents, steps: list) -> int:
        """Adds the cart's steps to ``steps``; returns the time of the customer's last action."""
        rnd = self.random.random
        lognormal = self.random.lognormvariate
        log = math.log
        active = self._active
        gap_ms = behaviour.gap_seconds * 1000
        add = steps.append
        currency, per_euro = CURRENCIES.get(country, ("EUR", 1.0))
        prices = []
        for _ in range(1 + (rnd() < 0.35) + (rnd() < 0.12)):
            t += 500 + int(-gap_ms * log(1.0 - rnd()))
            price = round(lognormal(3.55, 0.6) * per_euro, 2)
            prices.append(price)
            add((t, "add_to_cart", {"product_id": f"p{int(rnd() * 8000):04d}", "quantity": 1,
                                    "price": price, "currency": currency}))
        if len(prices) > 1 and rnd() < 0.15:
            t += 500 + int(-gap_ms * log(1.0 - rnd()))
            add((t, "remove_from_cart", {"price": prices.pop()}))
        t += 500 + int(-gap_ms * log(1.0 - rnd()))
        purchased = False
        p_checkout = behaviour.p_checkout * (active(incidents, t, "p_checkout") if incidents else 1.0)
        if rnd() < p_checkout:
            add((t, "checkout_start", {"items": len(prices)}))
            p_dropout = behaviour.p_dropout * (active(incidents, t, "p_dropout") if incidents else 1.0)
            if rnd() >= p_dropout:
                for _ in range(3):
                    t += 2000 + int(-gap_ms * log(1.0 - rnd()))
                    p_failure = P_PAYMENT_FAILURE * (active(incidents, t, "p_payment_failure") if incidents else 1.0)
                    if rnd() < p_failure:
                        add((t, "payment_failed", {"reason": PAYMENT_FAILURE_REASONS[int(rnd() * 5)]}))
                        if rnd() >= P_PAYMENT_RETRY:
                            break
                        continue
                    value = sum(prices) * (active(incidents, t, "order_value") if incidents else 1.0)
                    add((t, "purchase", {"order_value": round(value, 2), "currency": currency,
                                         "items": len(prices)}))
                    purchased = True
                    break
        if not purchased:
            add((t + ABANDON_AFTER_MS + int(rnd() * 60_000), "cart_abandoned",
                 {"cart_value": round(sum(prices), 2), "currency": currency}))
        return t

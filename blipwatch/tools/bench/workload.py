"""The bench's workload (not timed): ``simulator.generate_events`` (the ``demo`` scenario: a
cart-abandonment spike on ``channel=web`` after 36 minutes of a one-hour run) sized to N events.

To make S series exist, events' ``country`` is spread over up to 676 two-letter codes (round robin
per event type, so rare types reach as many countries as they can) and, past what the default
catalogue can hold, per-event-type ``count`` metrics are added to a generated config
(``policy: {warmup: 30}`` so the spike alerts). The same ingest code the worker runs
(``IngestBatch``) is run offline over the events to know exactly how many series and scored windows
to expect. With ``--shop-rate R`` the hour's event times are squeezed into N / R seconds: the same
events from a shop of R events a second, which closes a window per series every 60 R events
instead of every N / 60.

The default catalogue's funnel metrics (journeys) are on unless ``journeys=False`` (then the
catalogue has none, and the ingest runs no journey stage); their windows close ``within`` later
than the others, which the expected counts of scored windows take into account. ``journey_cost``
times the worker's ingest code over the workload with and without the journey stage.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from blipwatch.tools.bench import PARTITIONS, BenchError, Progress, quiet

#: Event time the workload spans; the spike starts at 36 min, after the 30-window warm-up.
RUN_HOURS = 1.0
INCIDENT_OFFSET_HOURS = 0.6
EVENTS_PER_SESSION_MINUTE = 705  # demo scenario over one hour: events per unit of sessions_per_minute
COUNTRY_CODES = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
#: Per-type counts added to the catalogue when S needs more metrics, most frequent types first.
EXTRA_COUNT_TYPES = ("product_view", "page_view", "search", "session_start", "add_to_cart",
                     "cart_abandoned", "checkout_start", "purchase", "error", "remove_from_cart")
#: --shop-rate: the shortest span of event time in which a window (60 s + 30 s lateness, the
#: default config) closes before the input goes idle, with some to spare
MIN_SPAN_S = 100.0
SEGMENT_BASE = 1 + 7 + 4   # series per metric before countries: all, channels, devices
#: the journey stage's cost is timed over at most this many of the messages (best of 5, both ways)
COST_EVENTS = 1_000_000


@dataclass
class Workload:
    messages: list[tuple[bytes, bytes, int]]      # key, value, partition
    config: dict[str, Any]
    series: int                                    # series the worker will track
    points_before_idle: int                        # windows the events' own watermark closes
    points_total: int                              # ... plus those closed by the idle flush
    countries: int
    span_s: float = RUN_HOURS * 3600               # event time the events span
    journeys: bool = True                          # the catalogue's funnel metrics are on
    #: microseconds per event of the worker's ingest code, offline: with and without the journey stage
    ingest_us: dict[str, float] | None = None
    #: with ``compare``: the same messages under the catalogue without funnel metrics
    without_journeys: "Workload | None" = None


def _series_by_country_count(type_counts: Counter, metrics: dict[str, Any], base: int, countries: int,
                             span_ms: float = math.inf) -> int:
    """Series the metrics make of these event types; a funnel's only if its journeys are decided
    within ``span_ms`` of event time (else the run ends before any of its windows closes)."""
    from blipwatch.pipeline.catalogue import parse_duration_ms

    total = 0
    for definition in metrics.values():
        share = 1.0   # of the starts, those in windows decided before the run ends
        if definition.get("kind") == "funnel":
            decided_ms = span_ms - parse_duration_ms(definition["within"], "within") - 90_000
            if decided_ms <= 0:
                continue
            share = min(1.0, decided_ms / span_ms)
        types: set[str] = set()
        for key in ("count", "numerator", "denominator", "mean"):
            selector = definition.get(key)
            if selector:
                chosen = selector.get("event_types")
                types |= set(type_counts) if chosen in ("*", ["*"]) else set(chosen)
        types |= set(definition.get("start") or ())   # a funnel's segments are its starts
        reach = int(share * max((type_counts.get(t, 0) for t in types), default=0))
        total += base + min(countries, reach)
    return total


def spread_series(generated: list[dict], series: int, journeys: bool = True) -> tuple[dict[str, Any], int]:
    """Make about ``series`` series exist over these events (their ``country`` is rewritten in
    place): ``country`` spread round robin per event type over up to 676 codes and, past what the
    default catalogue holds, per-event-type ``count`` metrics. Returns the config and the number of
    countries (0: the simulator's own countries were kept). Shared by the backlog and live phases."""
    from blipwatch.pipeline.catalogue import default_config_dict

    type_counts = Counter(event["event_type"] for event in generated)
    metrics = {name: definition for name, definition in default_config_dict()["metrics"].items()
               if journeys or definition.get("kind") != "funnel"}
    span_ms = _span_ms(generated)
    countries = 0
    if _series_by_country_count(type_counts, metrics, SEGMENT_BASE, 10, span_ms) < series:
        for event_type in EXTRA_COUNT_TYPES:
            if _series_by_country_count(type_counts, metrics, SEGMENT_BASE, len(COUNTRY_CODES), span_ms) >= series:
                break
            metrics[f"{event_type}_count"] = {"kind": "count", "count": {"event_types": [event_type]},
                                              "direction": "both"}
        countries = next((c for c in range(10, len(COUNTRY_CODES) + 1)
                          if _series_by_country_count(type_counts, metrics, SEGMENT_BASE, c, span_ms) >= series),
                         len(COUNTRY_CODES))
        nth: Counter = Counter()
        for event in generated:
            kind = event["event_type"]
            event["country"] = COUNTRY_CODES[nth[kind] % countries]
            nth[kind] += 1
    config = {"metrics": metrics, "policy": {"warmup": 30},
              "segments": {"max_series_per_metric": max(200, len(COUNTRY_CODES) + 20), "pairs": []}}
    return config, countries


def most_series(generated: list[dict]) -> int:
    """About how many series ``spread_series`` can make of these events at most."""
    from blipwatch.pipeline.catalogue import default_config_dict

    metrics = dict(default_config_dict()["metrics"])
    for event_type in EXTRA_COUNT_TYPES:
        metrics[f"{event_type}_count"] = {"count": {"event_types": [event_type]}}
    type_counts = Counter(event["event_type"] for event in generated)
    return _series_by_country_count(type_counts, metrics, SEGMENT_BASE, len(COUNTRY_CODES), _span_ms(generated))


def _span_ms(generated: list[dict]) -> float:
    from blipwatch.schemas.events import parse_timestamp_ms

    if not generated:
        return math.inf
    return parse_timestamp_ms(generated[-1]["occurred_at"]) - parse_timestamp_ms(generated[0]["occurred_at"])


@dataclass
class OfflineIngest:
    messages: list[tuple[bytes, bytes, int]]       # key, value, partition
    partials: dict[str, dict[int, list[float]]]    # series -> window -> counts, all events
    newest_by_partition: dict[int, int]
    window_ms: int
    lateness_ms: int
    #: series -> how much later than others its windows close (a funnel's ``within``)
    delay_ms: dict[str, int] | None = None

    def closable(self, watermark: int) -> int:
        """Start of the newest window a watermark closes."""
        last = watermark - self.window_ms - self.lateness_ms
        return last - last % self.window_ms

    def points_until(self, last_window: int) -> int:
        """Points published when every window up to ``last_window`` has closed (a funnel's up to
        ``within`` before it)."""
        delay = self.delay_ms or {}
        return sum(max(0, (last_window - delay.get(series, 0) - min(windows)) // self.window_ms + 1)
                   for series, windows in self.partials.items())


def ingest_offline(generated: list[dict], config: dict[str, Any]) -> OfflineIngest:
    """Encode the events as the bench sends them and run the worker's own ingest code over them."""
    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.stream_app.ingest import IngestBatch

    catalogue = Catalogue.from_dict(config)
    batch = IngestBatch(catalogue, 65536)
    within = {metric.name: metric.funnel.within_ms for metric in catalogue.metrics if metric.funnel is not None}
    messages = []
    newest_by_partition: dict[int, int] = {}
    for event in generated:
        key = (event.get("customer_id") or event["session_id"]).encode()
        # a copy of exact size: orjson 3.13's bytes keep the ~4 KB they were written into, which
        # for millions of events held in memory here was 4 KB an event (22 GB at 5M: OOM-killed)
        value = memoryview(orjson.dumps(event)).tobytes()
        partition = zlib.crc32(key) % PARTITIONS
        messages.append((key, value, partition))
        event_ms = batch.add(key, value, "", None)
        if event_ms is not None and event_ms > newest_by_partition.get(partition, -1):
            newest_by_partition[partition] = event_ms
    # the funnel counts the worker releases by its idle flush: windows whose `within` has passed by then
    newest = max(newest_by_partition.values(), default=0)
    idle_flush = newest - newest % catalogue.window_ms + catalogue.window_ms + catalogue.lateness_ms
    partials = batch.advance_journeys({0: idle_flush}, batch.aggregate.drain())
    delay = {series: within[series.split("|", 1)[0]] for series in partials if series.split("|", 1)[0] in within}
    return OfflineIngest(messages, partials, newest_by_partition, catalogue.window_ms, catalogue.lateness_ms, delay)


class _Record:
    __slots__ = ("key", "value", "offset")

    def __init__(self, key: bytes, value: bytes, offset: int):
        self.key, self.value, self.offset = key, value, offset


def journey_cost(messages: list[tuple[bytes, bytes, int]], config: dict[str, Any], repeat: int = 5) -> dict[str, float]:
    """Microseconds per event of ``IngestBatch.add_records`` (the worker's per-event path) over
    these messages by partition, with the journey stage and without (best of ``repeat``), and
    their difference: what the journey stage costs an event on this machine."""
    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.stream_app.ingest import IngestBatch

    catalogue = Catalogue.from_dict(config)
    by_partition: dict[int, list[_Record]] = {}
    for key, value, partition in messages:
        records = by_partition.setdefault(partition, [])
        records.append(_Record(key, value, len(records)))
    seconds = {True: float("inf"), False: float("inf")}
    for _ in range(repeat):   # interleaved: a shared machine's load weighs on both alike
        for journeys in (True, False):
            batch = IngestBatch(catalogue, 65536, journeys=journeys)
            began = time.perf_counter()
            for partition, records in by_partition.items():
                for start in range(0, len(records), 10_000):   # the worker's fetches
                    batch.add_records(records[start:start + 10_000], "", None, partition)
            seconds[journeys] = min(seconds[journeys], time.perf_counter() - began)
    best = {"with_journeys": seconds[True] * 1e6 / max(1, len(messages)),
            "without_journeys": seconds[False] * 1e6 / max(1, len(messages))}
    best["journey_stage"] = best["with_journeys"] - best["without_journeys"]
    return {name: round(value, 3) for name, value in best.items()}


def plan_workload(events: int, series: int, progress: Progress = quiet, seed: int = 0,
                  shop_rate: float | None = None, journeys: bool = True, compare: bool = False) -> Workload:
    """N simulated events and a config under which about S series are tracked (exact count returned).
    With ``compare`` (and ``journeys``), also the same messages under the catalogue without its
    funnel metrics (``without_journeys``), to run the worker both ways on one topic.

    The events span one hour of event time, or, with ``shop_rate``, N ÷ rate seconds: the hour's
    events with their times squeezed into that span, a shop of that many events a second (the
    incident still starts at 60% of the span)."""
    from blipwatch.tools.simulator import generate_events

    span_s = RUN_HOURS * 3600 if shop_rate is None else events / shop_rate
    if span_s < MIN_SPAN_S:
        raise BenchError(f"{events:,} events at --shop-rate {shop_rate:,.0f} span {span_s:.0f} s of event time; a "
                         f"window must close before the input goes idle for there to be anything to time end to end: "
                         f"give them at least {MIN_SPAN_S:.0f} s (--events {math.ceil(MIN_SPAN_S * shop_rate):,})")
    rate = events / EVENTS_PER_SESSION_MINUTE * 1.05
    progress(f"generating {events:,} events")
    generated = []
    for event in generate_events("demo", hours=RUN_HOURS, seed=seed, sessions_per_minute=rate,
                                 incident_offset_hours=INCIDENT_OFFSET_HOURS):
        generated.append(event)
        if len(generated) >= events:
            break
    if shop_rate is not None:
        compress_time(generated, span_s)
    config, countries = spread_series(generated, series, journeys)

    progress("encoding and checking the workload offline")
    workload = _checked(generated, config, countries, span_s, journeys)
    if compare and journeys:
        progress("checking the workload offline without funnel metrics")
        off = dict(config, metrics={name: definition for name, definition in config["metrics"].items()
                                    if definition.get("kind") != "funnel"})
        workload.without_journeys = _checked(generated, off, countries, span_s, False)
    progress("timing the ingest code with and without journeys")
    funnels = {name: definition for name, definition in spread_series([], 0)[0]["metrics"].items()
               if definition.get("kind") == "funnel"}
    with_journeys = dict(config, metrics={**config["metrics"], **funnels})
    workload.ingest_us = journey_cost(workload.messages[:COST_EVENTS], with_journeys)
    return workload


def _checked(generated: list[dict], config: dict[str, Any], countries: int, span_s: float,
             journeys: bool) -> Workload:
    """The workload of these events under ``config``, its series and windows counted offline."""
    from blipwatch.pipeline.windows import closes_at

    offline = ingest_offline(generated, config)
    window = offline.window_ms
    before_idle = offline.closable(min(offline.newest_by_partition.values()))
    newest = max(offline.newest_by_partition.values())
    after_idle = offline.closable(closes_at(newest - newest % window, window, offline.lateness_ms))
    return Workload(offline.messages, config, len(offline.partials), offline.points_until(before_idle),
                    offline.points_until(after_idle), countries, span_s, journeys)


def compress_time(generated: list[dict], span_s: float) -> None:
    """Event times squeezed (in place) so that the first and the last are ``span_s`` apart: the same
    events, in the same order, from a busier shop."""
    from blipwatch.schemas.events import parse_timestamp_ms
    from blipwatch.tools.simulator import format_time

    times = [parse_timestamp_ms(event["occurred_at"]) for event in generated]
    first = times[0]
    factor = span_s * 1000 / max(max(times) - first, 1)
    for event, at in zip(generated, times):
        event["occurred_at"] = format_time(first + int((at - first) * factor))

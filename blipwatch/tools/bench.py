"""``blipwatch bench``: end-to-end events/s through a real worker beside a bare consumer, one run.

The run, on the embedded broker (free port, memory only):

1. **Workload** (not timed): ``simulator.generate_events`` (the ``demo`` scenario: a cart-abandonment
   spike on ``channel=web`` after 36 minutes of a one-hour run) sized to N events. To make S series
   exist, events' ``country`` is spread over up to 676 two-letter codes (round robin per event type,
   so rare types reach as many countries as they can) and, past what the default catalogue can
   hold, per-event-type ``count`` metrics are added to a generated config (``policy: {warmup: 30}``
   so the spike alerts). The same ingest code the worker runs (``IngestBatch``) is run offline over
   the events to know exactly how many series and scored windows to expect. With ``--shop-rate R``
   the hour's event times are squeezed into N / R seconds: the same events from a shop of R events
   a second, which closes a window per series every 60 R events instead of every N / 60.
2. **Load** (not timed): an aiokafka producer writes the events, keyed by customer, to a 4-partition
   events topic in batches.
3. **Bare consumer** (the ceiling): aiokafka ``getmany`` + ``orjson.loads`` of every event, in a
   process of its own (the bench's holds the whole workload), GC set as the worker sets it; best of 3.
4. **Worker**: ``blipwatch worker`` as a subprocess (its own app id and topics, free web port,
   ``BLIPWATCH_EMBEDDED_BROKER=1``). Clock starts when its log says ``ingest: consuming`` (with
   ``--workers`` above 1, the first worker's; the group settles a moment later); then
   the broker is asked for the ingest group's committed offsets (every event counted, its partials
   acknowledged: "ingest only") and the points topic is read (every window that the events' own
   watermark closes scored: the end-to-end figure; the last window or two close only after the
   input has been idle 10 s, which is reported apart and never counted as processing time). The
   worker's ``/metrics`` is read only at the end: rendering it costs the worker.

5. **Live** (``--live-seconds``, default 60; 0 skips it): a fresh worker on fresh topics, and the
   ``demo`` scenario sent *paced*, event time at ``--live-speed`` times the wall clock (default 60:
   a one-minute window closes every second), spread over about S series as in step 1 (the same
   helper; the shop's sessions are raised only when the span has too few events to make S series).
   For every point and alert the seconds from the window's close (end + allowed lateness, as the
   events sent passed it) to the moment a consumer beside the sender reads its record: what on call
   sees (the producer timestamp is reported too). A point takes the path its alert would; alerts
   alone are too few for a p99. Every series closes a window at the same instant, so each close is
   a burst of S windows, whatever the speed; the speed sets how often (S x speed / 60 windows a
   second).

Figures: events/s for both and their ratio, the worker's peak RSS (``VmHWM``), detector-state
bytes per series (latest record per series in the detector-state changelog), and p50/p99 seconds
from window close to alert published: live (step 5) when it ran, and in any case while draining
the backlog (``blipwatch_alert_latency_seconds``, interpolated within its buckets as Prometheus'
``histogram_quantile`` does) — the latter is the scoring stage's lag behind ingest.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
import yaml

from blipwatch.stream_app.embedded_broker import EmbeddedBroker, free_port

PARTITIONS = 4
#: Event time the workload spans; the spike starts at 36 min, after the 30-window warm-up.
RUN_HOURS = 1.0
INCIDENT_OFFSET_HOURS = 0.6
EVENTS_PER_SESSION_MINUTE = 705  # demo scenario over one hour: events per unit of sessions_per_minute
COUNTRY_CODES = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
#: Per-type counts added to the catalogue when S needs more metrics, most frequent types first.
EXTRA_COUNT_TYPES = ("product_view", "page_view", "search", "session_start", "add_to_cart",
                     "cart_abandoned", "checkout_start", "purchase", "error", "remove_from_cart")
IDLE_SECONDS = 10.0  # the default config's idle_partition_seconds: the final flush waits this long
LIVE_SPEED = 60.0     # live phase: event seconds per wall second (a one-minute window a second)
LIVE_SESSIONS_PER_MINUTE = 150.0
#: --shop-rate: the shortest span of event time in which a window (60 s + 30 s lateness, the
#: default config) closes before the input goes idle, with some to spare
MIN_SPAN_S = 100.0
SEGMENT_BASE = 1 + 7 + 4   # series per metric before countries: all, channels, devices

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --- workload --------------------------------------------------------------------------------

@dataclass
class Workload:
    messages: list[tuple[bytes, bytes, int]]      # key, value, partition
    config: dict[str, Any]
    series: int                                    # series the worker will track
    points_before_idle: int                        # windows the events' own watermark closes
    points_total: int                              # ... plus those closed by the idle flush
    countries: int
    span_s: float = RUN_HOURS * 3600               # event time the events span


def _series_by_country_count(type_counts: Counter, metrics: dict[str, Any], base: int, countries: int) -> int:
    total = 0
    for definition in metrics.values():
        types: set[str] = set()
        for key in ("count", "numerator", "denominator", "mean"):
            selector = definition.get(key)
            if selector:
                chosen = selector.get("event_types")
                types |= set(type_counts) if chosen in ("*", ["*"]) else set(chosen)
        reach = max((type_counts.get(t, 0) for t in types), default=0)
        total += base + min(countries, reach)
    return total


def spread_series(generated: list[dict], series: int) -> tuple[dict[str, Any], int]:
    """Make about ``series`` series exist over these events (their ``country`` is rewritten in
    place): ``country`` spread round robin per event type over up to 676 codes and, past what the
    default catalogue holds, per-event-type ``count`` metrics. Returns the config and the number of
    countries (0: the simulator's own countries were kept). Shared by the backlog and live phases."""
    from blipwatch.pipeline.catalogue import default_config_dict

    type_counts = Counter(event["event_type"] for event in generated)
    metrics = dict(default_config_dict()["metrics"])
    countries = 0
    if _series_by_country_count(type_counts, metrics, SEGMENT_BASE, 10) < series:
        for event_type in EXTRA_COUNT_TYPES:
            if _series_by_country_count(type_counts, metrics, SEGMENT_BASE, len(COUNTRY_CODES)) >= series:
                break
            metrics[f"{event_type}_count"] = {"kind": "count", "count": {"event_types": [event_type]},
                                              "direction": "both"}
        countries = next((c for c in range(10, len(COUNTRY_CODES) + 1)
                          if _series_by_country_count(type_counts, metrics, SEGMENT_BASE, c) >= series),
                         len(COUNTRY_CODES))
        nth: Counter = Counter()
        for event in generated:
            kind = event["event_type"]
            event["country"] = COUNTRY_CODES[nth[kind] % countries]
            nth[kind] += 1
    config = {"metrics": metrics, "policy": {"warmup": 30},
              "segments": {"max_series_per_metric": max(200, len(COUNTRY_CODES) + 20)}}
    return config, countries


def most_series(generated: list[dict]) -> int:
    """About how many series ``spread_series`` can make of these events at most."""
    from blipwatch.pipeline.catalogue import default_config_dict

    metrics = dict(default_config_dict()["metrics"])
    for event_type in EXTRA_COUNT_TYPES:
        metrics[f"{event_type}_count"] = {"count": {"event_types": [event_type]}}
    type_counts = Counter(event["event_type"] for event in generated)
    return _series_by_country_count(type_counts, metrics, SEGMENT_BASE, len(COUNTRY_CODES))


@dataclass
class _Offline:
    messages: list[tuple[bytes, bytes, int]]       # key, value, partition
    partials: dict[str, dict[int, list[float]]]    # series -> window -> counts, all events
    newest_by_partition: dict[int, int]
    window_ms: int
    lateness_ms: int

    def closable(self, watermark: int) -> int:
        """Start of the newest window a watermark closes."""
        last = watermark - self.window_ms - self.lateness_ms
        return last - last % self.window_ms

    def points_until(self, last_window: int) -> int:
        """Points published when every window up to ``last_window`` has closed."""
        return sum(max(0, (last_window - min(windows)) // self.window_ms + 1) for windows in self.partials.values())


def _offline(generated: list[dict], config: dict[str, Any]) -> _Offline:
    """Encode the events as the bench sends them and run the worker's own ingest code over them."""
    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.stream_app.ingest import IngestBatch

    catalogue = Catalogue.from_dict(config)
    batch = IngestBatch(catalogue, 65536)
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
    return _Offline(messages, batch.aggregate.drain(), newest_by_partition, catalogue.window_ms,
                    catalogue.lateness_ms)


def plan_workload(events: int, series: int, progress: Progress = _quiet, seed: int = 0,
                  shop_rate: float | None = None) -> Workload:
    """N simulated events and a config under which about S series are tracked (exact count returned).

    The events span one hour of event time, or, with ``shop_rate``, N ÷ rate seconds: the hour's
    events with their times squeezed into that span, a shop of that many events a second (the
    incident still starts at 60% of the span)."""
    from blipwatch.pipeline.windows import closes_at
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
    config, countries = spread_series(generated, series)

    progress("encoding and checking the workload offline")
    offline = _offline(generated, config)
    window = offline.window_ms
    before_idle = offline.closable(min(offline.newest_by_partition.values()))
    newest = max(offline.newest_by_partition.values())
    after_idle = offline.closable(closes_at(newest - newest % window, window, offline.lateness_ms))
    return Workload(offline.messages, config, len(offline.partials), offline.points_until(before_idle),
                    offline.points_until(after_idle), countries, span_s)


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


async def _load(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, int]], progress: Progress) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value, partition in messages:
            by_partition.setdefault(partition, []).append((key, value))
        sent = 0
        pending = []
        for partition, records in by_partition.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                sent += 1
                if sent % 50_000 == 0:
                    await asyncio.gather(*pending)
                    pending.clear()
                    progress(f"loading {sent:,}/{len(messages):,} events")
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
        progress(f"loaded {len(messages):,} events")
    finally:
        await producer.stop()


# --- the bare consumer -----------------------------------------------------------------------

async def _bare_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Seconds for a group-less aiokafka consumer to read and orjson-decode ``expected`` events."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        loads = orjson.loads
        seen = 0
        started = time.perf_counter()
        deadline = started + 120
        while seen < expected:
            if time.perf_counter() > deadline:
                raise BenchError(f"the bare consumer read only {seen:,} of {expected:,} events in 120 s")
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def bare_consume(bootstrap: str, topic: str, expected: int) -> float:
    """``_bare_consume`` in a process of its own, as the worker runs in one.

    In the bench's process it would share a heap holding the whole workload (3M events: ~1.5 GB
    of messages), which the garbage collector walks while the consumer allocates: 275-315k
    events/s there against 450-500k in a fresh process, same broker, same topic. The child sets
    the garbage collector as the worker does (``commands.worker.tune_gc``), so the ceiling is not
    lowered by what the worker tunes away (~+3% here)."""
    done = subprocess.run([sys.executable, "-m", "blipwatch.tools.bench", "bare", bootstrap, topic,
                           str(expected)], capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BenchError(f"the bare consumer failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


# --- the worker ------------------------------------------------------------------------------

class BenchError(RuntimeError):
    """The benchmark could not complete; the message says where it stopped."""


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _total(samples: dict, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper bound, count)`` pairs.

    >>> histogram_quantile(0.5, [(0.1, 0), (0.25, 10), (0.5, 20), (math.inf, 20)])
    0.25
    >>> histogram_quantile(0.99, [(0.1, 0), (math.inf, 0)]) is None
    True
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def _peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class _Worker:
    process: subprocess.Popen
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class WorkerRun:
    workers: int
    ready_s: float                    # start to ingest assigned (all workers, none holding another's partitions)
    ingest_s: float                   # the first ingest assignment to every event counted
    scored_s: float                   # the first ingest assignment to every window the events' watermark closes scored
    all_scored_s: float | None        # the first ingest assignment to the last window scored (includes the idle wait)
    settle_s: float                   # the first worker's ingest assignment to the group settled (0 for one worker)
    peak_rss_bytes: list[int] = field(default_factory=list)
    series_tracked: int = 0
    windows_scored: int = 0
    alerts: int = 0
    events_late: int = 0              # valid events whose window had closed: counted, not scored
    events_invalid: int = 0
    alert_latency_p50_s: float | None = None
    alert_latency_p99_s: float | None = None
    state_bytes_per_series: float | None = None
    #: per worker: its ingest partitions when all were ready, events it counted, windows it scored
    per_worker: list[dict[str, Any]] = field(default_factory=list)


def _worker_env(broker: EmbeddedBroker, stem: str, events_topic: str, config: dict[str, Any],
                workdir: Path) -> dict[str, str]:
    """A worker's environment: its own app id, topics and config, on the embedded broker."""
    config_path = workdir / f"{stem}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLIPWATCH_")}
    env.update({
        "BLIPWATCH_BROKER": broker.url, "BLIPWATCH_EMBEDDED_BROKER": "1", "PYTHONUNBUFFERED": "1",
        "BLIPWATCH_EVENTS_TOPIC": events_topic, "BLIPWATCH_APP_ID": stem,
        "BLIPWATCH_DLQ_TOPIC": f"{stem}-dlq", "BLIPWATCH_ALERTS_TOPIC": f"{stem}-alerts",
        "BLIPWATCH_POINTS_TOPIC": f"{stem}-points", "BLIPWATCH_PARTIALS_TOPIC": f"{stem}-partials",
        "BLIPWATCH_PARTITIONS": str(PARTITIONS), "BLIPWATCH_CONFIG": str(config_path),
        "BLIPWATCH_LOG_LEVEL": "info",
    })
    return env


def _start_worker(env: dict[str, str], workdir: Path, stem: str, number: int) -> _Worker:
    port = free_port()
    log_path = workdir / f"{stem}-worker{number}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "blipwatch.stream_app.cli", "worker"],
            env=dict(env, BLIPWATCH_WEB_PORT=str(port), BLIPWATCH_DATA_DIR=str(workdir / f"{stem}-{number}")),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return _Worker(process, port, log_path)


def run_workers(broker: EmbeddedBroker, events_topic: str, workload: Workload, workdir: Path,
                workers: int = 1, progress: Progress = _quiet, timeout: float = 600) -> WorkerRun:
    """Start ``workers`` blipwatch workers in one group on the loaded events topic and time them."""
    stem = f"bench-{uuid.uuid4().hex[:8]}"
    env = _worker_env(broker, stem, events_topic, workload.config, workdir)
    running: list[_Worker] = []
    try:
        started = time.perf_counter()
        for number in range(workers):
            running.append(_start_worker(env, workdir, stem, number))
        progress(f"starting {workers} worker{'s' if workers > 1 else ''}")
        deadline = time.monotonic() + 90
        # The clock starts when the first ingest consumer has partitions: nothing is read before. With
        # several workers the group settles a little later (each holds partitions, none holds
        # another's); until then the first ones read alone, which the figures include (so they
        # understate a group by that much; settle_s says how long it was). The workers' counters
        # are not scraped at that moment: /metrics is served by the busy worker's event loop, so the
        # answer would come late and count events read after it.
        first_assigned = None
        while True:
            for worker in running:
                if worker.process.poll() is not None:
                    raise BenchError(f"the worker exited with {worker.process.returncode}:\n{worker.log()[-2000:]}")
            logs = [worker.log() for worker in running]
            if first_assigned is None and any("ingest: consuming" in text for text in logs):
                first_assigned = time.perf_counter()
            if all("ingest: consuming" in text for text in logs):
                assigned = [_last_assignment(text) for text in logs]
                # all partitions held, none by two workers: the group has settled
                if len({p for a in assigned for p in a}) == sum(len(a) for a in assigned) == PARTITIONS:
                    break
            if time.monotonic() > deadline:
                raise BenchError("the worker did not get its partitions within 90 s:\n" + logs[0][-2000:])
            time.sleep(0.02)
        ready = time.perf_counter()
        # points are counted from their topic, not /metrics: a scrape renders every series' gauges
        # and polling it often cost the worker 13% of its time (py-spy)
        committed = _Committed(broker.bootstrap, f"{stem}-ingest", events_topic)
        points = _PointCounter(broker.bootstrap, f"{stem}-points",
                               (workload.points_before_idle, workload.points_total))
        points.start()
        expected = len(workload.messages)
        ingest_done = None
        counted = 0
        deadline = time.monotonic() + timeout
        last_note = 0.0
        try:
            while time.monotonic() < deadline and points.reached[1] is None:
                for worker in running:
                    if worker.process.poll() is not None:
                        raise BenchError(f"the worker exited with {worker.process.returncode}:\n"
                                         f"{worker.log()[-2000:]}")
                if ingest_done is None:
                    counted = committed.offsets()
                    if counted >= expected:
                        ingest_done = time.perf_counter()
                now = time.perf_counter()
                if now - last_note > 2:
                    last_note = now
                    progress(f"worker: {int(counted):,}/{expected:,} events, {points.count:,}/"
                             f"{workload.points_total:,} windows scored")
                time.sleep(0.1)
        finally:
            points.stop()
            committed.close()
        scored_done, all_scored = points.reached
        samples = [_safe_scrape(w.port) for w in running]
        if ingest_done is None or scored_done is None or all_scored is None:
            late = sum(_total(s, "blipwatch_events_late_total") for s in samples)
            raise BenchError(f"the worker did not finish within {timeout:.0f} s (events counted "
                             f"{int(counted):,}/{expected:,}, of them late {int(late):,}; points "
                             f"{points.count:,}, expected {workload.points_before_idle:,} before the idle flush "
                             f"and {workload.points_total:,} after); worker log:\n{running[0].log()[-1500:]}")
        buckets: dict[float, float] = {}
        for sample in samples:
            for labels, value in sample.get("blipwatch_alert_latency_seconds_bucket", []):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
        result = WorkerRun(
            workers=workers, ready_s=ready - started, ingest_s=ingest_done - first_assigned,
            scored_s=scored_done - first_assigned,
            all_scored_s=None if all_scored is None else all_scored - first_assigned,
            settle_s=ready - first_assigned,
            peak_rss_bytes=[_peak_rss(w.process.pid) for w in running],
            series_tracked=int(sum(_total(s, "blipwatch_series_tracked") for s in samples)),
            windows_scored=int(sum(_total(s, "blipwatch_windows_scored_total") for s in samples)),
            alerts=int(sum(_total(s, "blipwatch_alerts_total") for s in samples)),
            events_late=int(sum(_total(s, "blipwatch_events_late_total") for s in samples)),
            events_invalid=int(sum(_total(s, "blipwatch_events_invalid_total") for s in samples)),
            alert_latency_p50_s=histogram_quantile(0.5, list(buckets.items())),
            alert_latency_p99_s=histogram_quantile(0.99, list(buckets.items())),
            per_worker=[{"partitions": partitions,
                         "events": int(_total(sample, "blipwatch_events_total")),
                         "windows_scored": int(_total(sample, "blipwatch_windows_scored_total"))}
                        for partitions, sample in zip(assigned, samples)],
        )
        progress("reading the detector-state changelog")
        sizes = asyncio.run(_latest_sizes(broker.bootstrap, f"{stem}-detector-state-changelog"))
        if sizes:
            result.state_bytes_per_series = sum(sizes.values()) / len(sizes)
        return result
    finally:
        for worker in running:
            worker.stop()


class _PointCounter(threading.Thread):
    """Counts the records of the points topic as they arrive; notes when each target is reached."""

    def __init__(self, bootstrap: str, topic: str, targets: tuple[int, int]):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.targets = bootstrap, topic, targets
        self.count = 0
        self.reached: list[float | None] = [None] * len(targets)
        self.stopping = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_bytes=32 * 1024 * 1024)
        try:
            partitions = None
            while not partitions and not self.stopping.is_set():
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    time.sleep(0.1)
            if not partitions:
                return
            consumer.assign([TopicPartition(self.topic, p) for p in partitions])
            while not self.stopping.is_set():
                batch = consumer.poll(timeout_ms=100, max_records=100_000)
                now = time.perf_counter()
                self.count += sum(len(records) for records in batch.values())
                for index, target in enumerate(self.targets):
                    if self.reached[index] is None and self.count >= target:
                        self.reached[index] = now
                if self.reached[-1] is not None:
                    return
        finally:
            consumer.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class _Committed:
    """How far the ingest group has committed on the events topic, summed over partitions: the
    ingest commits after its flush is acknowledged, so this reaching the events loaded means every
    event was counted and its partials are on their way. Asked from the broker, not the worker's
    /metrics: rendering a scrape (every series' gauges) cost the worker 8% of its samples at 3M
    events with the bench polling every 0.25 s (py-spy)."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        from kafka import KafkaAdminClient

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        self.group, self.topic = group, topic

    def offsets(self) -> int:
        try:
            found = self.admin.list_group_offsets(self.group).get(self.group, {})
        except Exception:  # not coordinated yet, or a rebalance: ask again next time
            return 0
        return sum(max(0, meta.offset) for tp, meta in found.items() if tp.topic == self.topic)

    def close(self) -> None:
        self.admin.close()


def _safe_scrape(port: int) -> dict:
    try:
        return _scrape(port)
    except OSError:   # the web server is not up yet
        return {}


def _last_assignment(log: str) -> list[int]:
    line = [line for line in log.splitlines() if "ingest: consuming" in line][-1]
    inside = line.rsplit("[", 1)[-1].split("]", 1)[0]
    return [int(p) for p in inside.split(",") if p.strip()]


async def _latest_sizes(bootstrap: str, topic: str) -> dict[bytes, int]:
    """Bytes of the latest record per key in a (compacted) topic, read to the fetch high watermark."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    sizes: dict[bytes, int] = {}
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()   # noqa: SLF001 - a fresh client has no metadata yet
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in partitions]
        if not assigned:
            return sizes
        consumer.assign(assigned)
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 60
        quiet = 0
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300, max_records=50_000)
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        sizes.pop(record.key, None)
                    else:
                        sizes[record.key] = len(record.value)
            done = True
            for tp in assigned:
                highwater = consumer.highwater(tp)
                if highwater is None or await consumer.position(tp) < highwater:
                    done = False
            quiet = 0 if batches else quiet + 1
            if done or quiet > 10:
                break
        return sizes
    finally:
        await consumer.stop()


# --- live, paced traffic ----------------------------------------------------------------------

@dataclass
class LiveRun:
    seconds: float
    events: int
    records: int                      # points and alerts whose window closed while events flowed
    alerts: int
    p50_s: float | None               # window close to the record read by a consumer (what on call sees)
    p99_s: float | None
    max_s: float | None
    speed: float = LIVE_SPEED         # event seconds per wall second
    series_expected: int = 0          # series the events make (the worker's own ingest code, offline)
    series_tracked: int = 0           # the worker's blipwatch_series_tracked at the end
    records_expected: int = 0         # points the events' own watermark closes (alerts come on top)
    windows_per_s: float = 0.0        # windows the worker must close per wall second: series x speed / window
    sessions_per_minute: float = LIVE_SESSIONS_PER_MINUTE
    stamped_p50_s: float | None = None  # the same, to the record's producer timestamp (set when the
    stamped_p99_s: float | None = None  # worker hands it to its producer, before the send)

    def as_dict(self) -> dict[str, Any]:
        return {"speed": self.speed, "seconds": self.seconds, "events": self.events,
                "sessions_per_minute": round(self.sessions_per_minute, 1),
                "series_expected": self.series_expected, "series_tracked": self.series_tracked,
                "windows_closed_per_s": round(self.windows_per_s, 1), "records": self.records,
                "records_expected": self.records_expected, "alerts": self.alerts,
                "p50_s": _round(self.p50_s), "p99_s": _round(self.p99_s), "max_s": _round(self.max_s),
                "stamped_p50_s": _round(self.stamped_p50_s), "stamped_p99_s": _round(self.stamped_p99_s)}


@dataclass
class LivePlan:
    timed: list[tuple[int, bytes, bytes, int]]   # event ms, key, value, partition; in event-time order
    config: dict[str, Any]
    series: int
    points: int                                  # points the events' own watermark closes
    last_window: int                             # start of the newest window it closes
    lateness_ms: int
    window_ms: int
    sessions_per_minute: float


def plan_live(seconds: float, speed: float, series: int, progress: Progress = _quiet) -> LivePlan:
    """The ``demo`` scenario over ``seconds x speed`` of event time, spread over about ``series``
    series as ``plan_workload`` does. The shop's traffic is raised above ``LIVE_SESSIONS_PER_MINUTE``
    only when that span has too few events of some type to make ``series`` series."""
    from blipwatch.schemas.events import parse_timestamp_ms
    from blipwatch.tools.simulator import generate_events

    hours = seconds * speed / 3600
    rate = LIVE_SESSIONS_PER_MINUTE
    for _ in range(12):
        generated = list(generate_events("demo", hours=hours, seed=1, sessions_per_minute=rate,
                                         incident_offset_hours=min(INCIDENT_OFFSET_HOURS, hours * 0.6)))
        if most_series(generated) >= series * 1.02:
            break
        rate *= 1.5
    progress(f"live: {len(generated):,} events ({rate:,.0f} sessions a minute), checking them offline")
    config, _ = spread_series(generated, series)
    offline = _offline(generated, config)
    last_window = offline.closable(min(offline.newest_by_partition.values()))
    timed = [(parse_timestamp_ms(event["occurred_at"]), key, value, partition)
             for event, (key, value, partition) in zip(generated, offline.messages)]
    return LivePlan(timed, config, len(offline.partials), offline.points_until(last_window), last_window,
                    offline.lateness_ms, offline.window_ms, rate)


async def _send_paced(bootstrap: str, topic: str, timed: list[tuple[int, bytes, bytes, int]], speed: float,
                      started: asyncio.Future | None = None) -> float:
    """Send (event ms, key, value, partition) so that event time runs ``speed`` times the wall clock
    from the first one's; returns the wall time the first was due."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    try:
        event_t0 = timed[0][0]
        wall_t0 = time.time()
        if started is not None:
            started.set_result(wall_t0)
        pending = []
        for event_ms, key, value, partition in timed:
            delay = wall_t0 + (event_ms - event_t0) / 1000 / speed - time.time()
            if delay > 0.002:
                if pending:
                    await asyncio.gather(*pending)
                    pending.clear()
                await asyncio.sleep(delay)
            pending.append(await producer.send(topic, value, key=key, partition=partition))
        await asyncio.gather(*pending)
        return wall_t0
    finally:
        await producer.stop()


async def _create_topics(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in topics])
    finally:
        await admin.close()


async def _live_traffic(bootstrap: str, stem: str, plan: LivePlan, speed: float, wait_s: float
                        ) -> tuple[float, list[tuple[float, float, str, bytes]]]:
    """Send the events paced while reading the points and alerts topics as they are written.

    Returns the wall time the first event was due and, per record read, (time read, producer
    timestamp, topic, value). Reads until every expected point has come, or ``wait_s`` after the
    last event was sent. The reader is a consumer beside the sender (fetch wait 20 ms): a point
    counts when a consumer has it, not when the worker handed it to its producer."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    points_topic, alerts_topic = f"{stem}-points", f"{stem}-alerts"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=20,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    found: list[tuple[float, float, str, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for topic in (points_topic, alerts_topic)
                         for p in range(PARTITIONS)])
        started: asyncio.Future = asyncio.get_running_loop().create_future()
        sender = asyncio.ensure_future(_send_paced(bootstrap, f"{stem}-events", plan.timed, speed, started))
        points = 0
        sent_at = None
        while True:
            batches = await consumer.getmany(timeout_ms=50, max_records=20_000)
            now = time.time()
            for tp, records in batches.items():
                found.extend((now, record.timestamp / 1000, tp.topic, record.value) for record in records)
                if tp.topic == points_topic:
                    points += len(records)
            if sender.done():
                sender.result()  # raises what the sender raised
                sent_at = sent_at or time.monotonic()
                if points >= plan.points or time.monotonic() - sent_at > wait_s:
                    break
        return started.result(), found
    finally:
        await consumer.stop()


def run_live(broker: EmbeddedBroker, workdir: Path, seconds: float, progress: Progress = _quiet,
             speed: float = LIVE_SPEED, series: int = 0) -> LiveRun:
    """A fresh worker tracking about ``series`` series (0: the demo config's own few hundred), the
    events sent paced at ``speed``; seconds from window close to the record read from the topic."""
    from blipwatch.schemas.events import parse_timestamp_ms

    plan = plan_live(seconds, speed, series, progress)
    stem = f"live-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_topics(broker.bootstrap, [f"{stem}-events", f"{stem}-points", f"{stem}-alerts"]))
    env = _worker_env(broker, stem, f"{stem}-events", plan.config, workdir)
    worker = _start_worker(env, workdir, stem, 0)
    try:
        deadline = time.monotonic() + 90
        while "ingest: consuming" not in worker.log():
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the live-phase worker did not start:\n{worker.log()[-2000:]}")
            time.sleep(0.05)
        windows_per_s = plan.series * speed * 1000 / plan.window_ms
        progress(f"live: sending {len(plan.timed):,} events paced at {speed:g}x for {seconds:.0f} s "
                 f"({plan.series:,} series: {windows_per_s:,.0f} windows closed a second)")
        wall_t0, found = asyncio.run(_live_traffic(broker.bootstrap, stem, plan, speed, max(30.0, seconds)))
        series_tracked = int(_total(_safe_scrape(worker.port), "blipwatch_series_tracked"))
    finally:
        worker.stop()
    event_t0 = plan.timed[0][0]
    seen, stamped, alerts = [], [], 0
    window_of: dict[str, int] = {}   # window_end text -> close ms (a few dozen distinct values)
    for read_at, stamp, topic, value in found:
        document = orjson.loads(value)
        if topic.endswith("-alerts"):
            alerts += 1
        end = document["window_end"]
        close_ms = window_of.get(end)
        if close_ms is None:
            close_ms = window_of[end] = parse_timestamp_ms(end) + plan.lateness_ms
        # windows closed by the idle flush after the last event: left out
        if close_ms - plan.lateness_ms - plan.window_ms <= plan.last_window:
            due = wall_t0 + (close_ms - event_t0) / 1000 / speed
            seen.append(read_at - due)
            stamped.append(stamp - due)
    seen.sort()
    stamped.sort()
    return LiveRun(seconds, len(plan.timed), len(seen), alerts, _at(seen, 0.5), _at(seen, 0.99),
                   seen[-1] if seen else None, speed=speed, series_expected=plan.series,
                   series_tracked=series_tracked, records_expected=plan.points, windows_per_s=windows_per_s,
                   sessions_per_minute=plan.sessions_per_minute, stamped_p50_s=_at(stamped, 0.5),
                   stamped_p99_s=_at(stamped, 0.99))


def _at(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


# --- the whole run ---------------------------------------------------------------------------

@dataclass
class BenchReport:
    events: int
    series_asked: int
    workload: Workload
    bare_seconds: list[float]
    worker: WorkerRun
    live: LiveRun | None = None           # the first live run (the figures of the top-level keys)
    live_runs: list[LiveRun] = field(default_factory=list)   # one per --live-speed, in order

    @property
    def bare_events_per_s(self) -> float:
        return self.events / min(self.bare_seconds)

    @property
    def worker_events_per_s(self) -> float:
        """End to end: every event through ingest, partials, windows and scoring."""
        return self.events / self.worker.scored_s

    def as_dict(self) -> dict[str, Any]:
        worker = self.worker
        return {
            "bare_events_per_s": round(self.bare_events_per_s, 1),
            "worker_events_per_s": round(self.worker_events_per_s, 1),
            "ratio": round(self.worker_events_per_s / self.bare_events_per_s, 4),
            "worker_peak_rss_bytes": max(worker.peak_rss_bytes),
            "state_bytes_per_series": None if worker.state_bytes_per_series is None
            else round(worker.state_bytes_per_series, 1),
            # live traffic when the live phase ran; else while draining the backlog
            "alert_latency_p50_s": _round(self.live.p50_s if self.live else worker.alert_latency_p50_s),
            "alert_latency_p99_s": _round(self.live.p99_s if self.live else worker.alert_latency_p99_s),
            # context for the figures above
            "alert_latency_measured": "live" if self.live else "backlog",
            "live_records": self.live.records if self.live else None,
            "live_latency_max_s": _round(self.live.max_s) if self.live else None,
            "live_speed": self.live.speed if self.live else None,
            "live_series_tracked": self.live.series_tracked if self.live else None,
            "live_windows_closed_per_s": round(self.live.windows_per_s, 1) if self.live else None,
            "live_runs": [run.as_dict() for run in self.live_runs],
            "backlog_alert_latency_p50_s": _round(worker.alert_latency_p50_s),
            "backlog_alert_latency_p99_s": _round(worker.alert_latency_p99_s),
            "events": self.events,
            "shop_events_per_s": round(self.events / self.workload.span_s, 1),
            "windows_per_event": round(self.workload.points_before_idle / self.events, 6),
            "series_tracked": worker.series_tracked,
            "series_expected": self.workload.series,
            "worker_ingest_events_per_s": round(self.events / worker.ingest_s, 1),
            "ingest_ratio": round(self.events / worker.ingest_s / self.bare_events_per_s, 4),
            "windows_scored_per_s": round(self.workload.points_before_idle / worker.scored_s, 1),
            "worker_ready_s": round(worker.ready_s, 2),
            "group_settle_s": round(worker.settle_s, 2),
            "worker_scored_s": round(worker.scored_s, 2),
            "worker_last_window_s": None if worker.all_scored_s is None else round(worker.all_scored_s, 2),
            "idle_wait_s": IDLE_SECONDS,
            "windows_scored": worker.windows_scored,
            "alerts": worker.alerts,
            "events_late": worker.events_late,
            "events_invalid": worker.events_invalid,
            "bare_seconds": [round(s, 3) for s in self.bare_seconds],
            "workers": worker.workers,
            "per_worker": worker.per_worker,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def run_bench(events: int, series: int, progress: Progress = _quiet, workers: int = 1,
              bare_repeats: int = 3, live_seconds: float = 60.0,
              live_speeds: tuple[float, ...] = (LIVE_SPEED,), shop_rate: float | None = None) -> BenchReport:
    workload = plan_workload(events, series, progress, shop_rate=shop_rate)
    workdir = Path(tempfile.mkdtemp(prefix="blipwatch-bench-"))
    try:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            topic = f"bench-events-{uuid.uuid4().hex[:8]}"
            asyncio.run(_load(broker.bootstrap, topic, workload.messages, progress))
            bare = []
            for attempt in range(bare_repeats):
                progress(f"bare consumer, run {attempt + 1} of {bare_repeats}")
                bare.append(bare_consume(broker.bootstrap, topic, len(workload.messages)))
            worker = run_workers(broker, topic, workload, workdir, workers=workers, progress=progress)
            lives = [run_live(broker, workdir, live_seconds, progress, speed=speed, series=series)
                     for speed in (live_speeds if live_seconds > 0 else ())]
            return BenchReport(len(workload.messages), series, workload, bare, worker,
                               lives[0] if lives else None, lives)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def format_report(report: BenchReport) -> str:
    figures = report.as_dict()
    worker = report.worker
    bp50, bp99 = figures["backlog_alert_latency_p50_s"], figures["backlog_alert_latency_p99_s"]
    state = figures["state_bytes_per_series"]
    lines = [
        f"blipwatch bench: {report.events:,} events, {worker.series_tracked:,} series tracked "
        f"(asked {report.series_asked:,}), {worker.workers} worker(s), embedded broker",
        f"  the simulated shop                {report.events / report.workload.span_s:>12,.0f} events/s  "
        f"({report.workload.span_s / 60:.1f} minutes of event time)",
        f"  bare aiokafka consumer + orjson   {figures['bare_events_per_s']:>12,.0f} events/s  "
        f"(best of {len(report.bare_seconds)}: {', '.join(f'{s:.2f}' for s in report.bare_seconds)} s)",
        f"  blipwatch worker, end to end      {figures['worker_events_per_s']:>12,.0f} events/s  "
        f"({worker.scored_s:.2f} s from the first ingest assignment to every window the events close scored)",
        f"  ratio                             {figures['ratio']:>12.2f}",
        f"  worker ingest only                {figures['worker_ingest_events_per_s']:>12,.0f} events/s  "
        f"({worker.ingest_s:.2f} s to every event counted)",
        f"  windows scored per second         {figures['windows_scored_per_s']:>12,.0f}  "
        f"({report.workload.points_before_idle / report.events:.3g} windows per event in this workload)",
        f"  last window scored after          {worker.all_scored_s or float('nan'):>12.2f} s  "
        f"(includes the {IDLE_SECONDS:.0f} s idle wait before the final flush)",
        f"  worker peak RSS                   {max(worker.peak_rss_bytes) / 2**20:>12.1f} MiB",
        f"  detector state per series         {state if state is not None else float('nan'):>12,.0f} bytes",
        f"  alert latency p50 / p99, backlog  "
        f"{'n/a' if bp50 is None else f'{bp50:.3f}':>12} / {'n/a' if bp99 is None else f'{bp99:.3f}'} s  "
        f"({worker.alerts} alert messages, window close to published while the backlog drains)",
        f"  windows scored                    {worker.windows_scored:>12,}  (expected {report.workload.points_total:,}; "
        f"events late {worker.events_late:,}, invalid {worker.events_invalid:,})",
    ]
    if len(worker.per_worker) > 1:
        for number, share in enumerate(worker.per_worker, 1):
            lines.append(f"    worker {number}: ingest partitions {share['partitions']}, {share['events']:,} events, "
                         f"{share['windows_scored']:,} windows scored")
        lines.append(f"    (the group settled {worker.settle_s:.2f} s after the first worker had partitions; until "
                     f"then the first read alone, which the rates above include)")
    for live in report.live_runs:
        if live.p50_s is None:
            lines.append(f"  alert latency, live at {live.speed:g}x          no point came out")
            continue
        lines.append(f"  alert latency p50 / p99, live     {live.p50_s:>12.3f} / {live.p99_s:.3f} s  "
                     f"(max {live.max_s:.3f} s over {live.records:,} points and alerts, {live.records_expected:,} "
                     f"points expected; window close to record read from the topic)")
        lines.append(f"    at {live.speed:g}x: {live.events:,} events paced for {live.seconds:.0f} s "
                     f"({live.sessions_per_minute:,.0f} sessions a minute), {live.series_tracked:,} series tracked "
                     f"(expected {live.series_expected:,}): {live.windows_per_s:,.0f} windows closed a second, "
                     f"{live.series_expected:,} at each window close; to the producer timestamp "
                     f"{live.stamped_p50_s:.3f} / {live.stamped_p99_s:.3f} s")
    return "\n".join(lines)


if __name__ == "__main__":  # the bare consumer's own process (bare_consume)
    if len(sys.argv) != 5 or sys.argv[1] != "bare":
        sys.exit("usage: python -m blipwatch.tools.bench bare BOOTSTRAP TOPIC EVENTS")
    from blipwatch.stream_app.commands.worker import tune_gc

    tune_gc()
    try:
        print(asyncio.run(_bare_consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    except BenchError as exc:
        sys.exit(str(exc))

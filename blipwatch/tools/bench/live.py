"""The bench's live phase (``--live-seconds``, default 60; 0 skips it): a fresh worker on fresh
topics, and the ``demo`` scenario sent *paced*, event time at ``--live-speed`` times the wall clock
(default 60: a one-minute window closes every second), spread over about S series as the backlog
is (``workload.spread_series``; the shop's sessions are raised only when the span has too few
events to make S series).

For every point and alert the seconds from the window's close (end + allowed lateness, as the
events sent passed it) to the moment a consumer beside the sender reads its record: what on call
sees (the producer timestamp is reported too). A point takes the path its alert would; alerts
alone are too few for a p99. Every series closes a window at the same instant, so each close is a
burst of S windows, whatever the speed; the speed sets how often (S x speed / 60 windows a second).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from blipwatch.stream_app.embedded_broker import EmbeddedBroker
from blipwatch.tools.bench import PARTITIONS, BenchError, Progress, quiet
from blipwatch.tools.bench.figures import quantile_at, rounded, safe_scrape, total
from blipwatch.tools.bench.topics import create_topics
from blipwatch.tools.bench.worker import start_worker, worker_env
from blipwatch.tools.bench.workload import INCIDENT_OFFSET_HOURS, ingest_offline, most_series, spread_series

LIVE_SPEED = 60.0     # event seconds per wall second (a one-minute window a second)
LIVE_SESSIONS_PER_MINUTE = 150.0


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
                "p50_s": rounded(self.p50_s), "p99_s": rounded(self.p99_s), "max_s": rounded(self.max_s),
                "stamped_p50_s": rounded(self.stamped_p50_s), "stamped_p99_s": rounded(self.stamped_p99_s)}


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


def plan_live(seconds: float, speed: float, series: int, progress: Progress = quiet) -> LivePlan:
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
    offline = ingest_offline(generated, config)
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


def run_live(broker: EmbeddedBroker, workdir: Path, seconds: float, progress: Progress = quiet,
             speed: float = LIVE_SPEED, series: int = 0) -> LiveRun:
    """A fresh worker tracking about ``series`` series (0: the demo config's own few hundred), the
    events sent paced at ``speed``; seconds from window close to the record read from the topic."""
    from blipwatch.schemas.events import parse_timestamp_ms

    plan = plan_live(seconds, speed, series, progress)
    stem = f"live-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics(broker, [f"{stem}-events", f"{stem}-points", f"{stem}-alerts"]))
    env = worker_env(broker, stem, f"{stem}-events", plan.config, workdir)
    worker = start_worker(env, workdir, stem, 0)
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
        series_tracked = int(total(safe_scrape(worker.port), "blipwatch_series_tracked"))
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
    return LiveRun(seconds, len(plan.timed), len(seen), alerts, quantile_at(seen, 0.5), quantile_at(seen, 0.99),
                   seen[-1] if seen else None, speed=speed, series_expected=plan.series,
                   series_tracked=series_tracked, records_expected=plan.points, windows_per_s=windows_per_s,
                   sessions_per_minute=plan.sessions_per_minute, stamped_p50_s=quantile_at(stamped, 0.5),
                   stamped_p99_s=quantile_at(stamped, 0.99))

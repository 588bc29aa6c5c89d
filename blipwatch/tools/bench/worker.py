"""The bench's timed phase: ``blipwatch worker`` subprocesses (their own app id and topics, free
web ports, ``BLIPWATCH_EMBEDDED_BROKER=1``) on the loaded events topic.

The clock starts when a worker's log says ``ingest: consuming`` (with ``--workers`` above 1, the
first worker's; the group settles a moment later); then the broker is asked for the ingest group's
committed offsets (every event counted, its partials acknowledged: "ingest only") and the points
topic is read (every window that the events' own watermark closes scored: the end-to-end figure;
the last window or two close only after the input has been idle 10 s, which is reported apart and
never counted as processing time). The workers' ``/metrics`` is read only at the end: rendering it
costs the worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blipwatch.stream_app.embedded_broker import EmbeddedBroker, free_port
from blipwatch.tools.bench import PARTITIONS, BenchError, Progress, quiet
from blipwatch.tools.bench.figures import histogram_quantile, peak_rss, safe_scrape, total
from blipwatch.tools.bench.topics import latest_sizes
from blipwatch.tools.bench.workload import Workload


@dataclass
class WorkerProcess:
    """One ``blipwatch worker`` subprocess, in a process group of its own, logging to a file."""

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
    journeys_evicted: int = 0         # open journeys the cap (BLIPWATCH_MAX_OPEN_JOURNEYS) evicted
    alert_latency_p50_s: float | None = None
    alert_latency_p99_s: float | None = None
    state_bytes_per_series: float | None = None
    #: per worker: its ingest partitions when all were ready, events it counted, windows it scored
    per_worker: list[dict[str, Any]] = field(default_factory=list)


def worker_env(broker: EmbeddedBroker, stem: str, events_topic: str, config: dict[str, Any],
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


def start_worker(env: dict[str, str], workdir: Path, stem: str, number: int) -> WorkerProcess:
    port = free_port()
    log_path = workdir / f"{stem}-worker{number}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "blipwatch.stream_app.cli", "worker"],
            env=dict(env, BLIPWATCH_WEB_PORT=str(port), BLIPWATCH_DATA_DIR=str(workdir / f"{stem}-{number}")),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return WorkerProcess(process, port, log_path)


def run_workers(broker: EmbeddedBroker, events_topic: str, workload: Workload, workdir: Path,
                workers: int = 1, progress: Progress = quiet, timeout: float = 600) -> WorkerRun:
    """Start ``workers`` blipwatch workers in one group on the loaded events topic and time them."""
    stem = f"bench-{uuid.uuid4().hex[:8]}"
    env = worker_env(broker, stem, events_topic, workload.config, workdir)
    running: list[WorkerProcess] = []
    try:
        started = time.perf_counter()
        for number in range(workers):
            running.append(start_worker(env, workdir, stem, number))
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
                assigned = [last_assignment(text) for text in logs]
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
        samples = [safe_scrape(w.port) for w in running]
        if ingest_done is None or scored_done is None or all_scored is None:
            late = sum(total(s, "blipwatch_events_late_total") for s in samples)
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
            peak_rss_bytes=[peak_rss(w.process.pid) for w in running],
            series_tracked=int(sum(total(s, "blipwatch_series_tracked") for s in samples)),
            windows_scored=int(sum(total(s, "blipwatch_windows_scored_total") for s in samples)),
            alerts=int(sum(total(s, "blipwatch_alerts_total") for s in samples)),
            events_late=int(sum(total(s, "blipwatch_events_late_total") for s in samples)),
            events_invalid=int(sum(total(s, "blipwatch_events_invalid_total") for s in samples)),
            journeys_evicted=int(sum(value for s in samples for labels, value in s.get("blipwatch_journeys_total", [])
                                     if labels.get("outcome") == "evicted")),
            alert_latency_p50_s=histogram_quantile(0.5, list(buckets.items())),
            alert_latency_p99_s=histogram_quantile(0.99, list(buckets.items())),
            per_worker=[{"partitions": partitions,
                         "events": int(total(sample, "blipwatch_events_total")),
                         "windows_scored": int(total(sample, "blipwatch_windows_scored_total"))}
                        for partitions, sample in zip(assigned, samples)],
        )
        progress("reading the detector-state changelog")
        sizes = latest_sizes(broker, f"{stem}-detector-state-changelog")
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


def last_assignment(log: str) -> list[int]:
    line = [line for line in log.splitlines() if "ingest: consuming" in line][-1]
    inside = line.rsplit("[", 1)[-1].split("]", 1)[0]
    return [int(p) for p in inside.split(",") if p.strip()]

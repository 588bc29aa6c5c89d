"""The whole bench run, its phases in order on one embedded broker, and its report.

Figures: events/s for both the bare consumer and the worker and their ratio, the worker's peak RSS
(``VmHWM``), detector-state bytes per series (latest record per series in the detector-state
changelog), and p50/p99 seconds from window close to alert published: live (``live``) when it
ran, and in any case while draining the backlog (``blipwatch_alert_latency_seconds``, interpolated
within its buckets as Prometheus' ``histogram_quantile`` does) — the latter is the scoring stage's
lag behind ingest.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blipwatch.stream_app.embedded_broker import EmbeddedBroker
from blipwatch.tools.bench import Progress, quiet
from blipwatch.tools.bench.bare import bare_consume
from blipwatch.tools.bench.figures import rounded
from blipwatch.tools.bench.live import LIVE_SPEED, LiveRun, run_live
from blipwatch.tools.bench.topics import load_events
from blipwatch.tools.bench.worker import WorkerRun, run_workers
from blipwatch.tools.bench.workload import Workload, plan_workload

IDLE_SECONDS = 10.0  # the default config's idle_partition_seconds: the final flush waits this long


@dataclass
class BenchReport:
    events: int
    series_asked: int
    workload: Workload
    bare_seconds: list[float]
    worker: WorkerRun
    live: LiveRun | None = None           # the first live run (the figures of the top-level keys)
    live_runs: list[LiveRun] = field(default_factory=list)   # one per --live-speed, in order
    #: ``--journeys both``: the worker on the same topic with the catalogue's funnel metrics removed
    worker_without_journeys: WorkerRun | None = None

    @property
    def bare_events_per_s(self) -> float:
        return self.events / min(self.bare_seconds)

    @property
    def worker_events_per_s(self) -> float:
        """End to end: every event through ingest, partials, windows and scoring."""
        return self.events / self.worker.scored_s

    def as_dict(self) -> dict[str, Any]:
        worker = self.worker
        off = self.worker_without_journeys
        return {
            "bare_events_per_s": round(self.bare_events_per_s, 1),
            "worker_events_per_s": round(self.worker_events_per_s, 1),
            "ratio": round(self.worker_events_per_s / self.bare_events_per_s, 4),
            "worker_peak_rss_bytes": max(worker.peak_rss_bytes),
            "state_bytes_per_series": None if worker.state_bytes_per_series is None
            else round(worker.state_bytes_per_series, 1),
            # live traffic when the live phase ran; else while draining the backlog
            "alert_latency_p50_s": rounded(self.live.p50_s if self.live else worker.alert_latency_p50_s),
            "alert_latency_p99_s": rounded(self.live.p99_s if self.live else worker.alert_latency_p99_s),
            # context for the figures above
            "alert_latency_measured": "live" if self.live else "backlog",
            "live_records": self.live.records if self.live else None,
            "live_latency_max_s": rounded(self.live.max_s) if self.live else None,
            "live_speed": self.live.speed if self.live else None,
            "live_series_tracked": self.live.series_tracked if self.live else None,
            "live_windows_closed_per_s": round(self.live.windows_per_s, 1) if self.live else None,
            "live_runs": [run.as_dict() for run in self.live_runs],
            "backlog_alert_latency_p50_s": rounded(worker.alert_latency_p50_s),
            "backlog_alert_latency_p99_s": rounded(worker.alert_latency_p99_s),
            "journeys": self.workload.journeys,
            "journeys_evicted": worker.journeys_evicted,
            # --journeys both: the same events through a worker without funnel metrics, same bare consumer
            "worker_events_per_s_without_journeys": None if off is None else round(self.events / off.scored_s, 1),
            "ratio_without_journeys": None if off is None
            else round(self.events / off.scored_s / self.bare_events_per_s, 4),
            "ingest_ratio_without_journeys": None if off is None
            else round(self.events / off.ingest_s / self.bare_events_per_s, 4),
            "worker_peak_rss_bytes_without_journeys": None if off is None else max(off.peak_rss_bytes),
            # the worker's ingest code offline over the same events: with and without the journey stage
            "ingest_us_per_event_with_journeys": (self.workload.ingest_us or {}).get("with_journeys"),
            "ingest_us_per_event_without_journeys": (self.workload.ingest_us or {}).get("without_journeys"),
            "journey_stage_us_per_event": (self.workload.ingest_us or {}).get("journey_stage"),
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


def run_bench(events: int, series: int, progress: Progress = quiet, workers: int = 1,
              bare_repeats: int = 3, live_seconds: float = 60.0,
              live_speeds: tuple[float, ...] = (LIVE_SPEED,), shop_rate: float | None = None,
              journeys: bool = True, compare_journeys: bool = False) -> BenchReport:
    """Every phase in order, on one embedded broker started here and stopped at the end; with
    ``compare_journeys``, the worker a second time on the same topic without funnel metrics."""
    workload = plan_workload(events, series, progress, shop_rate=shop_rate, journeys=journeys,
                             compare=compare_journeys)
    workdir = Path(tempfile.mkdtemp(prefix="blipwatch-bench-"))
    try:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            topic = f"bench-events-{uuid.uuid4().hex[:8]}"
            asyncio.run(load_events(broker, topic, workload.messages, progress))
            bare = []
            for attempt in range(bare_repeats):
                progress(f"bare consumer, run {attempt + 1} of {bare_repeats}")
                bare.append(bare_consume(broker, topic, len(workload.messages)))
            worker = run_workers(broker, topic, workload, workdir, workers=workers, progress=progress)
            off = None
            if workload.without_journeys is not None:
                progress("the worker again, without funnel metrics")
                off = run_workers(broker, topic, workload.without_journeys, workdir, workers=workers,
                                  progress=progress)
            lives = [run_live(broker, workdir, live_seconds, progress, speed=speed, series=series)
                     for speed in (live_speeds if live_seconds > 0 else ())]
            return BenchReport(len(workload.messages), series, workload, bare, worker,
                               lives[0] if lives else None, lives, off)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def format_report(report: BenchReport) -> str:
    """The report as the table ``blipwatch bench`` prints (``--json`` prints ``as_dict``)."""
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
        f"  ratio                             {figures['ratio']:>12.2f}  "
        f"(journeys {'on' if report.workload.journeys else 'off: no funnel metrics'})",
        f"  worker ingest only                {figures['worker_ingest_events_per_s']:>12,.0f} events/s  "
        f"({worker.ingest_s:.2f} s to every event counted)",
    ]
    off = report.worker_without_journeys
    if off is not None:
        lines += [
            f"  worker without journeys           {figures['worker_events_per_s_without_journeys']:>12,.0f} events/s  "
            f"(the same events, no funnel metrics; {off.scored_s:.2f} s, {off.series_tracked:,} series)",
            f"  ratio without journeys            {figures['ratio_without_journeys']:>12.2f}  "
            f"(ingest only {figures['ingest_ratio_without_journeys']:.2f}, with journeys {figures['ingest_ratio']:.2f})",
        ]
    lines += [
        f"  journey stage                     {figures['journey_stage_us_per_event'] or float('nan'):>12.2f} µs/event  "
        f"(the ingest code offline, best of 5: {figures['ingest_us_per_event_with_journeys'] or float('nan'):.2f} "
        f"with journeys, {figures['ingest_us_per_event_without_journeys'] or float('nan'):.2f} without; "
        f"{worker.journeys_evicted:,} journeys evicted by the cap)",
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

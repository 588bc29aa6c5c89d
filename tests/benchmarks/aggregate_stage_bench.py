"""The worker's aggregate stage alone, per partials message, without Kafka: CPU µs per window.

    git archive main blipwatch | tar -x -C /tmp/base
    .venv/bin/python tests/benchmarks/aggregate_stage_bench.py --baseline /tmp/base [--events 300000] [--rounds 3]

``score_path_bench.py`` times the trackers (merge, close, score, learn, policy, ``to_json``). This
times what the agent ``aggregate_one`` does around them for the same windows, in the order it does
it: ``decode_partials`` of the partials messages the worker's own ingest code makes of
``blipwatch bench``'s workload (``plan_workload(events, 1000)``, flushed every ``--flush-events``
events, then once more with every partition idle), ``PartitionAggregator`` admit / merge /
watermark / close, the points and alerts as (key, value) records, the per-series Prometheus
gauges and counters, the records into aiokafka record batches (``kafka.batches.build_batches``, the
producer's partitioner: ``kafka.partitioner.KeyHashCache``), the detector state of the series closed
(``to_bytes``, once per ``--state-every`` messages, as ``StateWriter`` batches them), the
acknowledgements and the per-message gauges.

Per phase (``decode``, ``merge``, ``close_score``, ``records``: points, alerts and metrics,
``batches``, ``state``, ``ack``) the µs a window of the best round are printed too.

Each tree runs in a subprocess of its own (``PYTHONPATH``), the trees taking turns round by round.
A tree that has ``aggregate.publish_closed`` (this branch) is run through it; an older one through
a copy of ``app.aggregate_one``'s loop as it was. Every tree must print the same md5 (the points'
bytes and the alerts' count) for the figures to compare the same work.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
TREE = HERE.parents[2]
PARTITIONS = 4


def capture(events: int, series: int, flush_events: int, out: str) -> None:
    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.pipeline.windows import LocalWatermark
    from blipwatch.tools.bench.workload import plan_workload
    from blipwatch.schemas.partials import partial_messages
    from blipwatch.stream_app.ingest import IngestBatch

    workload = plan_workload(events, series)
    catalogue = Catalogue.from_dict(workload.config)
    batch = IngestBatch(catalogue, 65536)
    watermark = LocalWatermark(catalogue.window_ms, catalogue.lateness_ms, catalogue.idle_ms)
    watermark.assign(set(range(PARTITIONS)), 0)
    messages: list[tuple[int, bytes]] = []

    def flush(now_ms: int) -> None:
        report = watermark.report(now_ms)
        messages.extend(partial_messages(batch.aggregate.drain(), report, PARTITIONS, PARTITIONS,
                                         "ingest-bench", observed_at=1.0))

    current = watermark.value(0)
    for i, (key, value, partition) in enumerate(workload.messages, 1):
        event_ms = batch.add(key, value, "", current)
        if event_ms is not None:
            watermark.observe(partition, event_ms, 0)
        if i % flush_events == 0:
            flush(0)
            current = watermark.value(0)
    flush(0)
    flush(10 ** 12)   # every partition idle: the last windows close
    with open(out, "wb") as f:
        pickle.dump((workload.config, messages), f)


def measure(record: str, state_every: int) -> None:
    import gc
    import time

    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.pipeline.attribution import IncidentBook
    from blipwatch.stream_app import aggregate as aggregate_module
    from blipwatch.stream_app import metrics
    from blipwatch.stream_app.aggregate import PartitionAggregator
    try:
        from blipwatch.schemas.partials import decode_partials
    except ImportError:  # a tree from before the partials codec
        from blipwatch.stream_app.aggregate import decode_partials
    try:
        from blipwatch.kafka.batches import build_batches
        from blipwatch.kafka.partitioner import KeyHashCache
    except ImportError:  # a tree from before the kafka package held them
        from blipwatch.stream_app.app import KeyHashCache
        from blipwatch.stream_app.produce import build_batches

    with open(record, "rb") as f:
        config, messages = pickle.load(f)
    catalogue = Catalogue.from_dict(config)
    incidents = IncidentBook()
    aggregators: dict[int, PartitionAggregator] = {}
    partitioner = KeyHashCache()
    all_partitions = list(range(PARTITIONS))
    publish_closed = getattr(aggregate_module, "publish_closed", None)

    def publish(tracker, window, observed_at, points, alerts) -> None:   # app.publish before this branch
        point = window.point
        points.append((point.series.encode(), point.to_json()))
        alert = window.alert
        if alert is None:
            return
        incidents.note(tracker.series, alert)
        alert.published_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        alerts.append((alert.dedup_key.encode(), alert.to_json()))
        metrics.ALERTS.labels(alert.metric, alert.status, alert.severity).inc()
        metrics.ALERT_LATENCY.observe(max(0.0, time.time() - observed_at))

    def send(records) -> None:
        build_batches(((partitioner(key, all_partitions, all_partitions), key, value) for key, value in records),
                      1_000_000)

    digest = hashlib.md5()
    hashing = 0.0
    windows = alert_count = 0
    dirty: dict[str, object] = {}
    state_bytes = 0
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)   # as the worker (commands.worker.tune_gc)
    phases = dict.fromkeys(("decode", "merge", "close_score", "records", "batches", "state", "ack"), 0.0)
    clock = time.process_time
    started = clock()
    for offset, (partition, value) in enumerate(messages):
        t0 = clock()
        report, total, observed_at, series_partials = decode_partials(value)
        t1 = clock()
        phases["decode"] += t1 - t0
        aggregator = aggregators.get(partition)
        if aggregator is None:
            aggregator = aggregators[partition] = PartitionAggregator(partition, catalogue, lambda series: None)
        aggregator.merge(series_partials, lambda: None)
        t0 = clock()
        phases["merge"] += t0 - t1
        aggregator.watermark.update(report, total)
        watermark = aggregator.watermark.value()
        closed_series = aggregator.close(watermark)
        t1 = clock()
        phases["close_score"] += t1 - t0
        points: list = []
        alerts: list = []
        if publish_closed is not None:
            for tracker, closed in closed_series:
                publish_closed(tracker, closed, observed_at, points, alerts, incidents)
        else:
            for tracker, closed in closed_series:
                for window in closed:
                    publish(tracker, window, observed_at, points, alerts)
                last = closed[-1]
                point = last.point
                metrics.WINDOWS_SCORED.labels(point.metric).inc(len(closed))
                metrics.observe_point(point.metric, tracker.segment_label, point.value, point.expected,
                                      point.lower, point.upper, point.score, last.firing)
        t0 = clock()
        phases["records"] += t0 - t1
        if points:
            send(points)
            if alerts:
                send(alerts)
        t1 = clock()
        phases["batches"] += t1 - t0
        t0 = clock()
        for _, point_bytes in points:   # not timed (taken off below)
            digest.update(point_bytes)
        t1 = clock()
        hashing += t1 - t0
        windows += len(points)
        alert_count += len(alerts)
        for tracker, _ in closed_series:
            dirty[tracker.series] = (partition, tracker)
        if offset % state_every == state_every - 1 or offset == len(messages) - 1:
            blobs = [(p, tracker.series.encode(), tracker.to_bytes()) for p, tracker in dirty.values()]
            build_batches(blobs, 1_000_000)
            state_bytes += sum(len(blob) for _, _, blob in blobs)
            dirty = {}
        t0 = clock()
        phases["state"] += t0 - t1
        aggregator.acknowledge_until(watermark)
        label = str(partition)
        metrics.PENDING_PARTIALS.labels(label).set(len(aggregator.pending))
        if watermark is not None:
            metrics.WATERMARK.labels(label).set(watermark / 1000)
        metrics.SERIES_TRACKED.set(sum(len(a.trackers) for a in aggregators.values()))
        phases["ack"] += clock() - t0
    elapsed = clock() - started - hashing
    print(f"{elapsed / windows * 1e6:.2f} {windows} {alert_count} {digest.hexdigest()} {len(messages)} "
          + " ".join(f"{name}={seconds / windows * 1e6:.2f}" for name, seconds in phases.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="append", default=[], help="another tree (its blipwatch package's parent)")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--flush-events", type=int, default=40_000,
                        help="events per ingest flush (the worker flushes every 0.5 s: ~40-80k events in the bench)")
    parser.add_argument("--state-every", type=int, default=4, help="partials messages per detector-state write")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)   # internal: one timed pass over a record
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.state_every)
        return 0
    from blipwatch.tools.bench import measured   # the parent's tree (a --baseline child imports another)

    trees = [str(TREE)] + [str(Path(b).resolve()) for b in args.baseline]
    with tempfile.TemporaryDirectory() as tmp:
        record = os.path.join(tmp, "record.pkl")
        capture(args.events, args.series, args.flush_events, record)
        results: dict[str, list[list[str]]] = {tree: [] for tree in trees}
        for _ in range(args.rounds):
            for tree in trees:
                # run from the temporary folder so that `-m`/the script's folder cannot shadow PYTHONPATH
                output = measured([sys.executable, str(HERE), "--measure", record, "--state-every",
                                   str(args.state_every)], f"measuring {tree}", cwd=tmp,
                                  env=dict(os.environ, PYTHONPATH=tree)).split()
                results[tree].append(output)
    print(f"{'tree':50} {'us/window (best, all rounds)':36} windows alerts messages md5")
    for tree, rows in results.items():
        runs = ", ".join(r[0] for r in rows)
        _, windows, alerts, md5, count = rows[0][:5]
        same = "" if len({r[3] for r in rows}) == 1 else "  (md5 differs between rounds!)"
        best = min(rows, key=lambda r: float(r[0]))
        print(f"{tree:50} {float(best[0]):6.2f}  ({runs}){'':8} {windows} {alerts} {count} {md5}{same}")
        print(f"{'':50} phases of the best round, µs a window: {' '.join(best[5:])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

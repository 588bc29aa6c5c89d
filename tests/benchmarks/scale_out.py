"""Scale-out: one worker, then two in one consumer group, on the same events in the same run.

    .venv/bin/python tests/benchmarks/scale_out.py [--events 400000] [--series 1000]

Each run has its own app id (so both read every event from the start); the two workers share
one, get distinct web ports, and split the 4 partitions of the events and partials topics.
Prints events/s end to end (every window the events close scored) and ingest-only for both.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path

from blipwatch.stream_app.embedded_broker import EmbeddedBroker
from blipwatch.tools.bench.topics import load_events
from blipwatch.tools.bench.worker import run_workers
from blipwatch.tools.bench.workload import plan_workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--series", type=int, default=1_000)
    args = parser.parse_args()
    workload = plan_workload(args.events, args.series, print)
    workdir = Path(tempfile.mkdtemp(prefix="blipwatch-scale-"))
    try:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            topic = f"bench-events-{uuid.uuid4().hex[:8]}"
            asyncio.run(load_events(broker, topic, workload.messages, print))
            rows = []
            for workers in (1, 2, 1, 2):
                run = run_workers(broker, topic, workload, workdir, workers=workers)
                events = len(workload.messages)
                rows.append((workers, events / run.scored_s, events / run.ingest_s, run.settle_s,
                             [rss // 2**20 for rss in run.peak_rss_bytes]))
                print(f"workers={workers}: end to end {rows[-1][1]:,.0f} events/s, ingest {rows[-1][2]:,.0f} "
                      f"events/s, group settled {run.settle_s:.2f} s after the first assignment (included), "
                      f"peak RSS MiB {rows[-1][4]}", flush=True)
                for number, share in enumerate(run.per_worker, 1):
                    print(f"  worker {number}: ingest partitions {share['partitions']}, {share['events']:,} events, "
                          f"{share['windows_scored']:,} windows scored", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

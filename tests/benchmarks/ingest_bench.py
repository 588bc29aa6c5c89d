"""Per-event cost of the ingest stage: decode + validate, and the whole ``IngestBatch.add`` path.

    .venv/bin/python tests/benchmarks/ingest_bench.py [--events 60000] [--repeat 5]
    # the same figures for another tree (e.g. main) in the same run, side by side:
    git archive main blipwatch | tar -x -C /tmp/base
    .venv/bin/python tests/benchmarks/ingest_bench.py --baseline /tmp/base

Three workloads: ``bench`` (the messages and config ``blipwatch bench --series 1000`` sends: the demo
scenario, countries spread over ~170 codes, so nearly every event is its own combination),
``all`` (``blipwatch simulate --scenario all``, default config) and ``all, no pairs`` (the same with
``segments.pairs: []``: what the two-dimension segments cost). Rows, microseconds per event (best
of --repeat passes over every message):

- ``orjson.loads``: parsing alone, the floor of any decoder built on a JSON parser;
- ``decode (reference)``: ``orjson.loads`` + ``validate_event`` — the precise path, which every
  invalid message still takes (absent from trees that predate it: then ``decode_event`` is it);
- ``decode_event``: what the worker calls;
- ``IngestBatch.add``: decode, the too-far-ahead and lateness checks, counts, pre-aggregation,
  and the partials fanned out every 2,000 events (as ``replay`` does; the worker drains every
  0.5 s) — the whole ingest cost per event;
- ``add, reference decode``: the same with the reference decoder swapped in;
- ``IngestBatch.add_records``: what the worker calls, one fetched partition's records at a time
  (here 2,000 records per call, then the drain), same outcome as ``add`` message by message (absent
  from trees that predate it).

The garbage collector is set as the worker sets it (``--default-gc``: Python's defaults). The
machine is shared, so the figures are the best of --rounds rounds, and with --baseline the two
trees take turns (baseline, this tree, baseline, ...).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any, Callable

DRAIN_EVERY = 2000


def workloads(events: int) -> dict[str, tuple[dict | None, list[tuple[bytes, bytes]]]]:
    import orjson

    from blipwatch.tools.bench.workload import plan_workload
    from blipwatch.tools.simulator import generate_events

    bench = plan_workload(events, 1000)
    simulated = []
    for event in generate_events("all", hours=6, seed=0, sessions_per_minute=60):
        simulated.append(((event.get("customer_id") or event["session_id"]).encode(), orjson.dumps(event)))
        if len(simulated) >= events:
            break
    return {"bench": (bench.config, [(key, value) for key, value, _ in bench.messages]),
            "all": (None, simulated),
            # the per-event path without two-dimension segments (a tree without them ignores the key)
            "all, no pairs": ({"segments": {"pairs": []}}, simulated)}


def best(run: Callable[[], None], repeat: int, n: int) -> float:
    """Microseconds per event, best of ``repeat``."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times) / n * 1e6


def measure(events: int, repeat: int, worker_gc: bool = True) -> dict[str, dict[str, float]]:
    import orjson

    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.schemas import events as events_module
    from blipwatch.stream_app import ingest

    decode_event = events_module.decode_event
    reference = getattr(events_module, "decode_event_reference", None)
    results: dict[str, dict[str, float]] = {}
    loads_of_work = workloads(events)
    if worker_gc:  # as `blipwatch worker` runs (commands/worker.py: tune_gc), not Python's default
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
    for name, (config, messages) in loads_of_work.items():
        values = [value for _, value in messages]
        catalogue = Catalogue.from_dict(config)
        n = len(values)
        rows: dict[str, float] = {}

        def loads() -> None:
            for value in values:
                orjson.loads(value)

        def decoding(decoder: Callable[..., Any]) -> Callable[[], None]:
            def run() -> None:
                for value in values:
                    decoder(value, 65536)
            return run

        def adding() -> None:
            batch = ingest.IngestBatch(catalogue, 65536)
            add = batch.add
            for i, (key, value) in enumerate(messages):
                add(key, value, "customer-events/0/1234567", None)
                if i % DRAIN_EVERY == DRAIN_EVERY - 1:
                    batch.aggregate.drain()
            batch.aggregate.drain()

        class Record:
            __slots__ = ("key", "value", "offset")

            def __init__(self, key: bytes, value: bytes, offset: int):
                self.key, self.value, self.offset = key, value, offset

        records = [Record(key, value, offset) for offset, (key, value) in enumerate(messages)]

        def adding_records() -> None:
            batch = ingest.IngestBatch(catalogue, 65536)
            add_records = batch.add_records
            for start in range(0, len(records), DRAIN_EVERY):
                add_records(records[start:start + DRAIN_EVERY], "customer-events/0/", None)
                batch.aggregate.drain()

        rows["orjson.loads"] = best(loads, repeat, n)
        if reference is not None:
            rows["decode (reference)"] = best(decoding(reference), repeat, n)
        rows["decode_event"] = best(decoding(decode_event), repeat, n)
        rows["IngestBatch.add"] = best(adding, repeat, n)
        if hasattr(ingest.IngestBatch, "add_records"):
            rows["IngestBatch.add_records"] = best(adding_records, repeat, n)
        if reference is not None:
            # the name the ingest decodes with: decode_event_fields since it exists, decode_event before
            patched = "decode_event_fields" if hasattr(ingest, "decode_event_fields") else "decode_event"
            fast = getattr(ingest, patched)

            def reference_fields(raw: Any, max_bytes: int) -> Any:
                event = reference(raw, max_bytes)
                return event, event.occurred_at_ms

            setattr(ingest, patched, reference_fields if patched == "decode_event_fields" else reference)
            try:
                rows["add, reference decode"] = best(adding, repeat, n)
            finally:
                setattr(ingest, patched, fast)
        rows["events"] = n
        results[name] = rows
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000, help="events per workload (default 60000)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per figure and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best figure is kept (default 3)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="a tree holding another blipwatch/ (e.g. `git archive main blipwatch | tar -x -C DIR`):"
                             " measure it too, in a subprocess, and print both")
    parser.add_argument("--default-gc", action="store_true",
                        help="keep Python's default GC thresholds (the default is the worker's: gc.freeze(), "
                             "generation 0 at 50,000)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the subprocess's output
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.events, args.repeat, not args.default_gc)))
        return
    columns: dict[str, dict[str, dict[str, float]]] = {}

    def keep(name: str, results: dict[str, dict[str, float]]) -> None:
        column = columns.setdefault(name, {})
        for workload, rows in results.items():
            kept = column.setdefault(workload, {})
            for label, value in rows.items():
                kept[label] = min(kept.get(label, value), value)

    for _ in range(args.rounds):
        if args.baseline:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(args.baseline)}
            from blipwatch.tools.bench import measured   # this tree's (the child imports the baseline's)

            out = measured([sys.executable, __file__, "--json", "--events", str(args.events), "--repeat",
                            str(args.repeat)] + (["--default-gc"] if args.default_gc else []),
                           f"measuring {args.baseline}", env=env)
            keep("baseline", json.loads(out))
        keep("this tree", measure(args.events, args.repeat, not args.default_gc))
    for workload in columns["this tree"]:
        n = int(columns["this tree"][workload]["events"])
        print(f"\nworkload {workload!r}, {n:,} events: us per event (best of {args.rounds} x {args.repeat})")
        print(f"{'':24}" + "".join(f"{name:>12}" for name in columns))
        labels = [label for label in columns["this tree"][workload] if label != "events"]
        for label in labels:
            cells = []
            for name in columns:
                value = columns[name].get(workload, {}).get(label)
                cells.append(f"{value:12.2f}" if value is not None else f"{'-':>12}")
            print(f"{label:24}" + "".join(cells))


if __name__ == "__main__":
    main()

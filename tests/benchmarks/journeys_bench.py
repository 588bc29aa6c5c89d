"""Cost of the journey stage: microseconds per event and bytes per open journey.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/journeys_bench.py [--hours 1] [--repeat 3] [--open 100000]

The simulator's traffic (its default shop, 480 sessions a minute) through a ``JourneyStage`` with
the intended default funnels (cart abandonment and checkout conversion within 30 minutes, checkouts
not converted within 5 minutes), the watermark advanced every 5,000 events as a flush would.
Decoding the same events (``decode_event_fields``) is timed too, for scale on a shared machine.
Memory: the stage's allocations (tracemalloc) with ``--open`` journeys open (the simulator's
sessions again and again under new ids, never advanced), over their number; and the snapshot's
bytes per open journey.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import orjson

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.pipeline.journeys import JourneyStage
from blipwatch.schemas.events import decode_event_fields
from blipwatch.tools.simulator import generate_events

FUNNELS = {
    "cart_abandonment_rate": {"kind": "funnel", "start": ["add_to_cart"], "success": ["purchase"],
                              "within": "30m", "outcome": "failure", "direction": "up"},
    "checkout_conversion_rate": {"kind": "funnel", "start": ["checkout_start"], "success": ["purchase"],
                                 "within": "30m", "direction": "down"},
    "checkout_unconverted_5m": {"kind": "funnel", "start": ["checkout_start"], "success": ["purchase"],
                                "within": "5m", "outcome": "failure", "direction": "up"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--open", type=int, default=100_000, help="open journeys to measure memory over")
    args = parser.parse_args()
    catalogue = Catalogue.from_dict({"metrics": FUNNELS})
    # the ingest's decoded wire structs, as the stage will get them
    messages = [orjson.dumps(event) for event in generate_events("none", hours=args.hours, seed=0)]
    events = [decode_event_fields(value) for value in messages]
    decode_best = float("inf")
    for _ in range(args.repeat):  # for scale: the ingest's decode of the same events (this machine, now)
        began = time.perf_counter()
        for value in messages:
            decode_event_fields(value)
        decode_best = min(decode_best, time.perf_counter() - began)
    best = float("inf")
    for _ in range(args.repeat):
        stage = JourneyStage(catalogue)
        add, advance = stage.add, stage.advance
        began = time.perf_counter()
        for i, (fields, at_ms) in enumerate(events):
            add(fields, at_ms)
            if i % 5000 == 4999:
                advance(at_ms)
        best = min(best, time.perf_counter() - began)
    print(f"{len(events):,} events, {stage.counts['started']:,} journeys: {best / len(events) * 1e6:.2f} us/event "
          f"(best of {args.repeat}; decoding them: {decode_best / len(events) * 1e6:.2f} us/event), "
          f"{stage.open_journeys:,} open at the end")

    # the simulator's sessions again and again under new ids, until --open journeys are open
    sessions = [event for event in generate_events("none", hours=args.hours, seed=1)]
    tracemalloc.start()
    stage = JourneyStage(catalogue, max_open=10**9)
    before = tracemalloc.get_traced_memory()[0]
    copy = 0
    while stage.open_journeys < args.open:
        for event in sessions:
            renamed = dict(event, session_id=f"{event['session_id']}-{copy}")
            if renamed.get("customer_id"):
                renamed["customer_id"] = f"{renamed['customer_id']}-{copy}"
            fields, at_ms = decode_event_fields(orjson.dumps(renamed))
            stage.add(fields, at_ms)
            if stage.open_journeys >= args.open:
                break
        copy += 1
    del fields, renamed
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    snapshot = stage.snapshot()
    print(f"{stage.open_journeys:,} open journeys in {len(stage.open):,} sessions: "
          f"{held / stage.open_journeys:.0f} bytes/journey in memory ({held / 2**20:.1f} MiB), "
          f"{len(snapshot) / stage.open_journeys:.0f} bytes/journey in a snapshot")

if __name__ == "__main__":
    main()

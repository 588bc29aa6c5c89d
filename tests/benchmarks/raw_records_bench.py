"""What a ``ConsumerRecord`` per record costs: a bare consumer (``ingest_stage_bench.bare``: aiokafka
``getmany`` + ``orjson.loads``, as the bench's ceiling) with aiokafka's records as they are
(``raw_records``) and with ConsumerRecords, in turns, each in a fresh process, on one topic of the
bench's workload on the embedded broker.

    .venv/bin/python tests/benchmarks/raw_records_bench.py [--events 1000000] [--rounds 3]

Prints wall and CPU µs per event for both, per round, then the best of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest_stage_bench  # noqa: E402  (its bare consumer, with the consumer options given here)


def child(bootstrap: str, topic: str, expected: int, raw: bool) -> None:
    from blipwatch.kafka.raw_records import RAW_RECORDS, install

    install()
    options = {"value_deserializer": RAW_RECORDS} if raw else {}
    print(json.dumps(asyncio.run(ingest_stage_bench.bare(bootstrap, topic, expected, **options))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        bootstrap, topic, expected, raw = args.child
        child(bootstrap, topic, int(expected), raw == "raw")
        return

    from blipwatch.tools.bench import measured
    from blipwatch.tools.bench.topics import load_events
    from blipwatch.tools.bench.workload import plan_workload
    from blipwatch.stream_app.embedded_broker import EmbeddedBroker

    messages = plan_workload(args.events, 1000).messages
    n = len(messages)
    best: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="blipwatch-raw-records-") as workdir, \
            EmbeddedBroker(log_path=Path(workdir) / "broker.log") as broker:
        topic = f"raw-records-{uuid.uuid4().hex[:8]}"
        asyncio.run(load_events(broker, topic, messages, lambda _: None))
        for round_ in range(args.rounds):
            for kind in ("ConsumerRecord", "raw"):
                out = measured([sys.executable, __file__, "--child", broker.bootstrap, topic, str(n), kind],
                               f"the {kind} consumer", timeout=300)
                wall, cpu = json.loads(out)
                print(f"round {round_ + 1} {kind:15} {wall / n * 1e6:5.2f} µs wall / {cpu / n * 1e6:5.2f} µs CPU "
                      "an event", flush=True)
                kept = best.setdefault(kind, [wall, cpu])
                best[kind] = [min(kept[0], wall), min(kept[1], cpu)]
    print(f"\n{n:,} events, best of {args.rounds}, µs an event (wall / CPU):")
    for kind, (wall, cpu) in best.items():
        print(f"  {kind:15} {wall / n * 1e6:5.2f} / {cpu / n * 1e6:5.2f}")


if __name__ == "__main__":
    main()

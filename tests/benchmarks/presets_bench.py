"""Cost of an input preset: microseconds per event to map a tracker's bytes onto the contract.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/presets_bench.py [--events 50000] [--repeat 5]

The simulator's traffic (one hour at its default shop) in each preset's format, decoded with the
preset's ``decode`` as the ingest would (bytes in; the contract's fields and event time out).
``blipwatch`` is the contract's own decoder, for comparison. Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import itertools
import time

from blipwatch.schemas.presets import PRESETS
from blipwatch.tools.simulator import generate_events
from blipwatch.tools.trackers import tracker_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = list(itertools.islice(generate_events("none", hours=1, seed=0), args.events))
    print(f"{'preset':10} {'events':>7} {'bytes/event':>11} {'us/event':>9}")
    for name, preset in PRESETS.items():
        encode = tracker_encoder(name)
        messages = [value for value in map(encode, events) if value is not None]
        decode = preset.decode
        best = float("inf")
        for _ in range(args.repeat):
            began = time.perf_counter()
            for value in messages:
                decode(value, 65536)
            best = min(best, time.perf_counter() - began)
        size = sum(map(len, messages)) / len(messages)
        print(f"{name:10} {len(messages):>7} {size:>11.0f} {best / len(messages) * 1e6:>9.2f}")


if __name__ == "__main__":
    main()

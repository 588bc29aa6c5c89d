"""The scoring path alone: CPU microseconds per closed window, and an md5 of what it publishes.

    .venv/bin/blipwatch simulate --scenario all --hours 48 --seed 1 --sessions-per-minute 120 --out /tmp/all48.jsonl
    git archive main blipwatch | tar -x -C /tmp/base
    .venv/bin/python tests/benchmarks/score_path_bench.py /tmp/all48.jsonl --baseline /tmp/base [--rounds 3]

Replays the events file once (the replay's own ingest) and records what reached the trackers:
the partials drained at each merge and the watermark after it. Then, for this tree and each
``--baseline`` tree in turn (one subprocess each, taking turns round by round), it feeds that
record to fresh ``SeriesTracker``s and times, in CPU time, the merges, ``close_until`` (score,
learn, policy, point and alert) and the points' and alerts' ``to_json`` — what the aggregate
stage does per window, without Kafka. Every tree must print the same md5 (points and alerts,
byte for byte) for the figures to compare the same work.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
TREE = HERE.parents[2]


def capture(events: str, out: str) -> None:
    from blipwatch.stream_app.config import Settings, load_catalogue
    from blipwatch.stream_app.replay import Replay

    settings = Settings.from_env()
    replay = Replay(load_catalogue(settings, None), lambda p: None, lambda a: None, settings.max_event_bytes)
    steps = []

    def merge_and_close() -> None:
        drained = replay.batch.aggregate.drain()
        steps.append(({s: {w: list(c) for w, c in ws.items()} for s, ws in drained.items()},
                      replay.watermark.value(0)))

    replay._merge_and_close = merge_and_close
    with open(events, "rb") as f:
        replay.feed(f)
    merge_and_close()
    steps.append(({}, replay.watermark.report(now_ms=2**62).get(0)))   # the end of the file flushes
    with open(out, "wb") as f:
        pickle.dump(steps, f)


def measure(record: str) -> None:
    import gc

    from blipwatch.pipeline.catalogue import metric_of
    from blipwatch.pipeline.attribution import IncidentBook
    from blipwatch.pipeline.tracker import SeriesTracker
    from blipwatch.stream_app.config import Settings, load_catalogue

    with open(record, "rb") as f:
        steps = pickle.load(f)
    catalogue = load_catalogue(Settings.from_env(), None)
    trackers: dict[str, SeriesTracker] = {}
    book = IncidentBook()
    digest = hashlib.md5()
    windows = alerts = 0
    gc.collect()
    started = time.process_time()
    for partials, watermark in steps:
        for series, cells in partials.items():
            tracker = trackers.get(series)
            if tracker is None:
                tracker = trackers[series] = SeriesTracker(series, catalogue.by_name[metric_of(series)], catalogue)
            for window, (numerator, denominator) in cells.items():
                tracker.merge(window, numerator, denominator)
        if watermark is None:
            continue
        for tracker in trackers.values():
            close_at = tracker.next_close_at()
            if close_at is not None and close_at <= watermark:
                for closed in tracker.close_until(watermark):
                    windows += 1
                    digest.update(closed.point.to_json())
                    if closed.alert is not None:
                        alerts += 1
                        digest.update(book.note(tracker.series, closed.alert).to_json())
    elapsed = time.process_time() - started
    print(f"{elapsed / windows * 1e6:.2f} {windows} {alerts} {digest.hexdigest()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="?", help="events file (JSON lines) to replay and record")
    parser.add_argument("--baseline", action="append", default=[], help="another tree (its blipwatch package's parent)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)   # internal: one timed pass over a record
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return 0
    if not args.events:
        parser.error("an events file is needed")
    from blipwatch.tools.bench import measured   # the parent's tree (a --baseline child imports another)

    trees = [str(TREE)] + [str(Path(b).resolve()) for b in args.baseline]
    with tempfile.TemporaryDirectory() as tmp:
        record = os.path.join(tmp, "record.pkl")
        capture(args.events, record)
        results: dict[str, list[tuple[float, str, str, str]]] = {tree: [] for tree in trees}
        for _ in range(args.rounds):
            for tree in trees:
                # run from the temporary folder so that `-m`/the script's folder cannot shadow PYTHONPATH
                output = measured([sys.executable, str(HERE), "--measure", record], f"measuring {tree}",
                                  cwd=tmp, env=dict(os.environ, PYTHONPATH=tree)).split()
                results[tree].append((float(output[0]), output[1], output[2], output[3]))
    print(f"{'tree':50} {'us/window (best, all rounds)':36} windows alerts md5")
    for tree, rows in results.items():
        runs = ", ".join(f"{r[0]:.2f}" for r in rows)
        _, windows, alerts, md5 = rows[0]
        same = "" if len({r[3] for r in rows}) == 1 else "  (md5 differs between rounds!)"
        print(f"{tree:50} {min(r[0] for r in rows):6.2f}  ({runs}){'':8} {windows} {alerts} {md5}{same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

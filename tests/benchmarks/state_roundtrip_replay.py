"""`blipwatch replay` with every series taken over after every close: each tracker that closed
windows is replaced by ``SeriesTracker.from_bytes(tracker.to_bytes())`` (what a new owner of its
partition does), so the output must be byte-identical to a plain replay's. Replay itself never
touches the state; this is the end-to-end check of the state codec on a whole simulated shop.

    blipwatch simulate --scenario all --hours 48 --seed 0 --out /tmp/x48.jsonl
    blipwatch replay /tmp/x48.jsonl --alerts a.jsonl --points p.jsonl --quiet
    .venv/bin/python tests/benchmarks/state_roundtrip_replay.py replay /tmp/x48.jsonl \
        --alerts a_rt.jsonl --points p_rt.jsonl --quiet
    cmp a.jsonl a_rt.jsonl && cmp p.jsonl p_rt.jsonl

Only for the default config (replay without --config).
"""
import sys

from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
from blipwatch.pipeline.tracker import SeriesTracker
from blipwatch.stream_app.cli import main

CATALOGUE = Catalogue.from_dict(default_config_dict())

orig = SeriesTracker.close_until
count = [0, 0]


def close_until(self, watermark):
    out = orig(self, watermark)
    if out:
        blob = self.to_bytes()
        other = SeriesTracker.from_bytes(blob, self.series, self.metric, CATALOGUE)
        assert not other.rewarmed, self.series
        assert other.to_bytes() == blob
        self.detector, self.policy = other.detector, other.policy
        self.incident, self.last_closed = other.incident, other.last_closed
        count[0] += 1
        count[1] += len(blob)
    return out


if __name__ == "__main__":
    SeriesTracker.close_until = close_until
    rc = main(sys.argv[1:])
    print(f"round-tripped {count[0]} states, {count[1] / max(count[0], 1):.0f} bytes each on average",
          file=sys.stderr)
    sys.exit(rc)

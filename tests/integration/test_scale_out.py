"""Scale-out: two workers in one consumer group split the partitions and, between them,
score every window exactly as ``replay`` does. How fast two are against one is a benchmark
(``tests/benchmarks/scale_out.py``, ``blipwatch bench --workers 2``), not a timed test."""

from __future__ import annotations

import pytest

from blipwatch.tools.bench.worker import last_assignment
from tests.helpers import Worker, base_env, produce, wait_for
from tests.integration.test_pipeline_stream import (  # noqa: F401  (scenario is a fixture)
    assert_same_points, point_content, scenario, stream_output)
from tests.integration.test_reliability import distinct_points

pytestmark = [pytest.mark.integration, pytest.mark.soak]

PARTITIONS = 4  # tests.conftest's unique topics and the worker's default


def total(worker: Worker, name: str) -> float:
    """A counter summed over all its labels."""
    return sum(value for (sample, _), value in worker.metrics().items() if sample == name)


def test_two_workers_split_the_partitions_and_together_score_every_window(broker, unique_topics, tmp_path,
                                                                         scenario):
    reference, messages = scenario["points"], scenario["messages"]
    env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(scenario["config"]))
    first, second = Worker(env, tmp_path, name="first").start(), Worker(env, tmp_path, name="second").start()
    try:
        first.wait_ready(90)
        second.wait_ready(90)

        def split():
            assigned = [set(last_assignment(w.log())) for w in (first, second)]
            return assigned if all(assigned) and assigned[0] | assigned[1] == set(range(PARTITIONS)) \
                and not assigned[0] & assigned[1] else None

        assigned = wait_for(split, 60, message="the two ingest consumers holding disjoint partitions, all of them")
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages)
        points, _ = stream_output(broker, unique_topics, len(reference), timeout=180, reference=reference,
                                  worker=second)
        events = [total(w, "blipwatch_events_total") for w in (first, second)]
        scored = [total(w, "blipwatch_windows_scored_total") for w in (first, second)]
        assert first.process.poll() is None and second.process.poll() is None
    finally:
        first.stop()
        second.stop()
    assert all(n > 0 for n in events), f"each worker ingests its share of the events: {events}"
    assert sum(events) >= len(messages), f"every event counted (at least once): {events} of {len(messages)}"
    assert all(n > 0 for n in scored), f"each worker scores the series of its partials partitions: {scored}"
    distinct = distinct_points(points)  # a rebalance may re-publish a window: identical content
    assert_same_points(list(distinct.values()), [point_content(p) for p in reference])
    print(f"scale-out: partitions {sorted(assigned[0])} / {sorted(assigned[1])}, events {events[0]:.0f} / "
          f"{events[1]:.0f} of {len(messages)}, windows scored {scored[0]:.0f} / {scored[1]:.0f} "
          f"(reference {len(reference)}, {len(points)} point messages)")

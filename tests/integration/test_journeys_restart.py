"""Open journeys survive a SIGKILL and a failover: a worker killed mid-journey (carts and
checkouts open, their 30 minutes not over), its partitions taken over by a second worker, then the
killed one restarted and given partitions back; the funnel points equal ``replay``'s over the same
events: every journey counted once, in the window where it started."""

from __future__ import annotations

import signal

import pytest

from tests.helpers import Worker, base_env, produce, wait_for
from tests.integration.test_pipeline_stream import (  # noqa: F401  (scenario is a fixture)
    assert_same_points, point_content, point_identity, same_content, scenario, stream_output)

pytestmark = [pytest.mark.integration, pytest.mark.soak]  # kills and a failover: minutes

FUNNELS = ("cart_abandonment_rate", "checkout_conversion_rate", "checkout_unconverted_5m")


def index_of(messages, stamp: bytes) -> int:
    return next(i for i, (_, line) in enumerate(messages) if b'"' + stamp in line)


def test_a_worker_killed_mid_journey_then_restarted_gives_replays_funnel_points(broker, unique_topics, tmp_path,
                                                                                scenario):
    reference, messages = scenario["points"], scenario["messages"]
    funnel_reference = [p for p in reference if p["metric"] in FUNNELS]
    assert len({p["metric"] for p in funnel_reference}) == 3 and all(
        p["denominator"] is not None for p in funnel_reference), "the reference replay has every funnel"
    assert sum(p["denominator"] or 0 for p in funnel_reference if p["segment"] == {}) > 500
    env = base_env(broker, unique_topics, BLIPWATCH_CONFIG=str(scenario["config"]))
    victim, survivor = Worker(env, tmp_path, name="victim").start(), Worker(env, tmp_path, name="survivor").start()
    restarted = Worker(env, tmp_path, name="restarted")
    try:
        victim.wait_ready(90)
        survivor.wait_ready(90)
        wait_for(lambda: "ingest: consuming" in victim.log() and "ingest: consuming" in survivor.log(), 60,
                 message="both ingest consumers assigned")
        first_cut, second_cut = index_of(messages, b"2026-01-05T17:50"), index_of(messages, b"2026-01-05T18:20")
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages[:first_cut])
        # journeys open on the victim: started, and its snapshots written with its flushes
        wait_for(lambda: victim.metric("blipwatch_journeys_total", outcome="started") > 200
                 and victim.metric("blipwatch_journeys_open") > 20, 120, message="journeys open on the victim")
        wait_for(lambda: victim.metric("blipwatch_events_total", event_type="page_view")
                 + survivor.metric("blipwatch_events_total", event_type="page_view") > 0.9 * sum(
                     b'"page_view"' in line for _, line in messages[:first_cut]), 120,
                 message="the first part read")
        victim.stop(signal.SIGKILL)
        # failover: the survivor takes every partition over, from the victim's snapshots
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages[first_cut:second_cut])
        wait_for(lambda: "journey snapshot" in survivor.log() or survivor.metric("blipwatch_journeys_open") > 0,
                 120, message="the survivor holding journeys")
        # the killed worker back: partitions move again (a clean hand-over, snapshots on revoke)
        restarted.start()
        restarted.wait_ready(90)
        produce(broker, unique_topics["BLIPWATCH_EVENTS_TOPIC"], messages[second_cut:])
        points, _ = stream_output(broker, unique_topics, len(reference), timeout=240, reference=reference,
                                  worker=survivor)
    finally:
        victim.stop(signal.SIGKILL)
        survivor.stop()
        restarted.stop()
    distinct = {}
    for point in points:  # at-least-once: a re-published point carries the same identity and content
        content = point_content(point)
        assert same_content(distinct.setdefault(point_identity(point), content), content), "duplicate point differs"
    funnel_points = [c for c in distinct.values() if c[0].split("|")[0] in FUNNELS]
    assert_same_points(funnel_points, [point_content(p) for p in funnel_reference])
    assert_same_points(list(distinct.values()), [point_content(p) for p in reference])
    restored = survivor.log().count("journey snapshot of partition") + restarted.log().count("journey snapshot of partition")
    text = survivor.log() + restarted.log()
    for key, _ in messages[:2000]:
        assert key.decode() not in text, "a customer or session id leaked into the logs"
    print(f"journeys across a SIGKILL, a failover and a restart: {len(funnel_points)} funnel points equal replay's "
          f"({sum(c[2][1] or 0 for c in funnel_points if c[0].endswith('|all'))} journeys on 'all'); "
          f"{restored} restore lines")

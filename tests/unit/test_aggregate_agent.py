"""The aggregate agent's logic alone, without a Faust worker: partials messages in (the ingest's own
encoding of real events), points, alerts and detector state out to the embedded broker, and each
message acknowledged only once every window it fed has closed and its state is delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import faust
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from blipwatch.kafka.partitioner import KeyHashCache
from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.schemas.partials import partial_messages, partition_for
from blipwatch.stream_app.aggregate_agent import AggregateAgent
from blipwatch.stream_app.config import Settings
from blipwatch.stream_app.ingest import IngestBatch
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

BASE_MS = 1_767_643_200_000  # 2026-01-05T20:00:00Z, a window start
PARTITIONS = 2


def events(minutes: int, per_minute: int = 30) -> list[bytes]:
    return [orjson.dumps({"event_id": f"e{m}-{i}", "event_type": ["page_view", "purchase"][i % 2],
                          "occurred_at": BASE_MS + m * 60_000 + i * 1000, "channel": "web"})
            for m in range(minutes) for i in range(per_minute)]


def flush(catalogue: Catalogue, values: list[bytes], watermark: int | None) -> list[tuple[int, bytes]]:
    batch = IngestBatch(catalogue, 65536)
    for value in values:
        batch.add(None, value, "t/0/", None, 0)
    return partial_messages(batch.aggregate.drain(), {0: watermark}, 1, PARTITIONS, "ingest-test")


async def run_agent(bootstrap: str, stem: str, flushes: list[list[tuple[int, bytes]]], redeliver: bool = False):
    """Each flush's messages handed to one agent, in order, at consecutive offsets per partition
    (with ``redeliver``, every message then comes again at its offset, as after a seek back)."""
    settings = dataclasses.replace(Settings.from_env({"BLIPWATCH_BROKER": f"kafka://{bootstrap}"}),
                                   points_topic=f"{stem}-points", alerts_topic=f"{stem}-alerts",
                                   partials_topic=f"{stem}-partials", partitions=PARTITIONS)
    changelog = f"{stem}-state"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in
                                   (settings.points_topic, settings.alerts_topic, changelog)])
    finally:
        await admin.close()
    app = faust.App(stem, broker=f"kafka://{bootstrap}", store="memory://")
    table = app.Table("detector-state", partitions=PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=-1, partitioner=KeyHashCache(),
                                enable_idempotence=False)
    await producer.start()
    acked: list[tuple[int, int]] = []
    try:
        agent = AggregateAgent(settings, Catalogue.from_dict(None), table, changelog,
                               producer=lambda: producer, consumer=lambda: app.consumer)
        for partition in range(PARTITIONS):   # positioned at offset 0, as Faust's assignment would
            agent.aggregator_for(partition).next_offset = 0
        offsets = [0] * PARTITIONS
        acked_after_each: list[set] = []
        for messages in flushes:
            for partition, value in messages:
                offset = offsets[partition]
                offsets[partition] += 1
                await agent.handle(value, TopicPartition(settings.partials_topic, partition), offset,
                                   lambda p=partition, o=offset: acked.append((p, o)))
            acked_after_each.append(set(acked))
        if redeliver:
            offsets_again = [0] * PARTITIONS
            for messages in flushes:
                for partition, value in messages:
                    offset = offsets_again[partition]
                    offsets_again[partition] += 1
                    await agent.handle(value, TopicPartition(settings.partials_topic, partition), offset,
                                       lambda: pytest.fail("a message merged twice was acknowledged twice"))
        await agent.writer.write()
        return settings, changelog, table, acked_after_each, set(acked), offsets
    finally:
        await producer.stop()


def test_closed_windows_become_points_and_state_and_their_messages_are_acknowledged_after_both(broker):
    catalogue = Catalogue.from_dict(None)
    window, lateness = catalogue.window_ms, catalogue.lateness_ms
    first = flush(catalogue, events(3), watermark=BASE_MS + 3 * 60_000 - 1)   # closes nothing yet
    second = flush(catalogue, [], watermark=BASE_MS + 3 * window + lateness)   # closes the three windows
    stem = "agent-" + uuid.uuid4().hex[:6]
    settings, changelog, table, acked_after, acked, offsets = asyncio.run(
        run_agent(broker.bootstrap, stem, [first, second]))

    assert acked_after[0] == set(), "no message is acknowledged while a window it fed is open"
    assert acked == {(p, o) for p in range(PARTITIONS) for o in range(offsets[p])}
    points = [orjson.loads(r.value) for r in read_topic(broker, settings.points_topic, timeout=20)]
    series = {key for _, value in first for key in orjson.loads(value)["s"]}
    assert {(p["series"], p["window_start"]) for p in points} == {
        (key, f"2026-01-05T20:0{m}:00Z") for key in series for m in range(3)}
    volume = sorted((p["window_start"], p["value"]) for p in points if p["series"] == "event_volume|all")
    assert [value for _, value in volume] == [30.0, 30.0, 30.0]
    state = read_topic(broker, changelog, timeout=20)
    assert {r.key.decode() for r in state} == series == {key.decode() for key in table.keys()}
    assert all(r.partition == partition_for(r.key.decode(), PARTITIONS) for r in state)
    for record in state:
        assert table.get(record.key) == record.value


def test_a_message_delivered_again_after_it_was_merged_is_not_counted_twice(broker):
    catalogue = Catalogue.from_dict(None)
    messages = flush(catalogue, events(1), watermark=BASE_MS + catalogue.window_ms + catalogue.lateness_ms)
    stem = "agent-" + uuid.uuid4().hex[:6]
    settings, *_ = asyncio.run(run_agent(broker.bootstrap, stem, [messages], redeliver=True))
    points = [orjson.loads(r.value) for r in read_topic(broker, settings.points_topic, timeout=20)]
    assert [p["value"] for p in points if p["series"] == "event_volume|all"] == [30.0]


def test_the_first_offset_served_from_an_offset_is_read_from_the_broker(broker):
    """``first_offset_from`` (how the agent tells a hole in the partials log from a message Faust
    dropped): the offset itself where a message is there, None past the end."""
    from blipwatch.stream_app.aggregate_agent import first_offset_from

    topic = "holes-" + uuid.uuid4().hex[:6]

    async def scenario():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=-1, enable_idempotence=False)
        await producer.start()
        try:
            for i in range(3):
                await (await producer.send(topic, f"m{i}".encode(), partition=0))
        finally:
            await producer.stop()
        tp = TopicPartition(topic, 0)
        connection = {"bootstrap_servers": broker.bootstrap}
        return (await first_offset_from(connection, tp, 1), await first_offset_from(connection, tp, 0),
                await first_offset_from(connection, tp, 3, seconds=1.0))

    assert asyncio.run(scenario()) == (1, 0, None)

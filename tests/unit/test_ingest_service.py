"""The ingest service alone (no aggregate agent, no Faust worker) on the embedded broker: events in,
partials covering every valid event and dead letters with their reasons out, offsets committed
only after both were delivered; and its topic keeper creating what is missing."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

import faust
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from blipwatch.kafka.clients import stop_quietly
from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.schemas.partials import decode_partials, sent_header
from blipwatch.stream_app.config import Settings
from blipwatch.stream_app.embedded_broker import free_port
from blipwatch.stream_app.ingest_service import IngestService
from blipwatch.stream_app.topic_keeper import TopicKeeper
from tests.helpers import read_topic, wait_for

pytestmark = pytest.mark.integration

BASE_MS = 1_767_643_200_000  # 2026-01-05T20:00:00Z
PARTITIONS = 2


def settings_for(bootstrap: str, stem: str) -> Settings:
    return dataclasses.replace(
        Settings.from_env({"BLIPWATCH_BROKER": f"kafka://{bootstrap}"}), app_id=stem, partitions=PARTITIONS,
        events_topic=f"{stem}-events", partials_topic=f"{stem}-partials", dlq_topic=f"{stem}-dlq",
        points_topic=f"{stem}-points", alerts_topic=f"{stem}-alerts")


def test_events_become_partials_and_dead_letters_and_are_committed_after_them(broker):
    stem = "ing-" + uuid.uuid4().hex[:6]
    settings = settings_for(broker.bootstrap, stem)
    valid = [orjson.dumps({"event_id": f"e{i}", "event_type": "page_view", "occurred_at": BASE_MS + i * 100,
                           "channel": "web"}) for i in range(200)]
    invalid = [b"not json", orjson.dumps({"event_type": "page_view", "occurred_at": BASE_MS})]

    async def scenario():
        app = faust.App(stem, broker=f"kafka://{broker.bootstrap}", store="memory://", topic_partitions=PARTITIONS)
        events_topic = app.topic(settings.events_topic, partitions=PARTITIONS, key_serializer="raw",
                                 value_serializer="raw")
        topics = TopicKeeper(settings.broker, settings.aiokafka_kwargs(), PARTITIONS,
                             [settings.events_topic, settings.partials_topic, settings.dlq_topic])
        await app.producer.start()
        ingest = IngestService(app, settings, Catalogue.from_dict(None), events_topic, topics)
        await ingest.start()
        try:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=-1, enable_idempotence=False)
            await producer.start()
            try:
                for i, value in enumerate(valid + invalid):
                    await producer.send(settings.events_topic, value, key=b"c%d" % (i % 5),
                                        partition=i % PARTITIONS)
                await producer.flush()
            finally:
                await producer.stop()
            committed = AIOKafkaConsumer(group_id=f"{stem}-ingest", enable_auto_commit=False,
                                         **settings.aiokafka_kwargs())
            await committed.start()
            try:
                tps = [TopicPartition(settings.events_topic, p) for p in range(PARTITIONS)]
                for _ in range(150):
                    offsets = {tp.partition: await committed.committed(tp) for tp in tps}
                    if sum(offset or 0 for offset in offsets.values()) == len(valid) + len(invalid):
                        break
                    await asyncio.sleep(0.1)
                return offsets
            finally:
                await committed.stop()
        finally:
            await ingest.stop()
            await app.producer.stop()

    offsets = asyncio.run(scenario())
    assert offsets == {0: 101, 1: 101}
    partials = read_topic(broker, settings.partials_topic, timeout=20)
    volume = sum(n for r in partials for window in decode_partials(r.value)[3].get("event_volume|all", [])
                 for _, n, _ in [window])
    assert volume == len(valid)
    furthest: dict[int, int] = {}
    for record in partials:
        for partition, offset in sent_header(record.value).to.items():
            furthest[partition] = max(furthest.get(partition, 0), offset)
    assert furthest == offsets, "the partials say how far they cover each input partition, up to the commit"
    letters = wait_for(lambda: read_topic(broker, settings.dlq_topic, expected=2, timeout=10), 30, message="dead letters")
    assert sorted(r.value for r in letters) == sorted(invalid)
    assert sorted(dict(r.headers)["blipwatch.reason"] for r in letters) == [b"missing_field", b"not_json"]


def test_the_topic_keeper_creates_missing_topics_and_warns_when_they_vanish_or_kafka_is_away(broker, caplog):
    stem = "keep-" + uuid.uuid4().hex[:6]

    async def scenario():
        keeper = TopicKeeper(broker.url, {"bootstrap_servers": broker.bootstrap}, 3, [f"{stem}-a", f"{stem}-b"],
                             compacted=[f"{stem}-b"])
        await keeper.ensure()
        keeper.topics.append(f"{stem}-c")       # as if the broker came back without it
        await keeper.ensure()
        await keeper.close()
        reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await reader.start()
        try:
            found = {topic: reader.partitions_for_topic(topic) for topic in keeper.topics}
        finally:
            await stop_quietly(reader)
        away = TopicKeeper("kafka://127.0.0.1:%d" % free_port(),
                           {"bootstrap_servers": "127.0.0.1:%d" % free_port()}, 1, ["x"])
        await away.ensure()
        return found, away.admin, away.kafka_down_since

    with caplog.at_level(logging.INFO, logger="blipwatch"):
        found, admin, down_since = asyncio.run(scenario())
    assert found == {f"{stem}-{name}": {0, 1, 2} for name in "abc"}
    messages = [r.getMessage() for r in caplog.records if r.name == "blipwatch"]
    assert f"blipwatch: creating topics {stem}-a, {stem}-b (replication factor 1, min.insync.replicas 1)" in messages
    assert any(f"topics {stem}-c are missing" in m and "creating them" in m for m in messages)
    assert admin is None and down_since is not None
    assert any("is unreachable for 0 s" in m and "retrying, state is kept" in m for m in messages)

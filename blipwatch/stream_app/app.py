"""The blipwatch Faust app, read top to bottom as the data flow of DESIGN.md:

    customer-events ──ingest (batched consumer)──> blipwatch-metric-partials (+ customer-events-dlq)
    blipwatch-metric-partials ──aggregate (agent)──> blipwatch-metric-points, anomaly-alerts

``create_app(settings, catalogue)`` builds it; ``blipwatch worker`` runs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import TopicPartition
from faust.sensors.prometheus import setup_prometheus_sensors
from mode import Service

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.pipeline.tracker import IncidentBook
from blipwatch.pipeline.windows import LocalWatermark
from blipwatch.stream_app import metrics
from blipwatch.stream_app.aggregate import PartitionAggregator, StateWriter, publish_closed
from blipwatch.stream_app.config import Settings
from blipwatch.schemas.partials import decode_partials, partial_messages, partition_for, sent_positions
from blipwatch.stream_app.ingest import IngestBatch
from blipwatch.stream_app.produce import BatchSender, track_topics
from blipwatch.kafka.raw_records import RAW_RECORDS
from blipwatch.kafka.raw_records import install as install_raw_records

log = logging.getLogger("blipwatch")

#: How often the ingest stage flushes partials (and its watermark): the floor of alert latency...
FLUSH_SECONDS = 0.5
#: ... except that a caught-up ingest flushes as soon as its watermark closes a window, this long at
#: least after the last flush (live 10k series at 10x: the close waited 0-0.5 s for the next flush).
MIN_FLUSH_SECONDS = 0.05
MAX_BATCH = 10_000
#: Points (and their alerts) are sent every this many while a partials message's closed windows are
#: published, not all at its end: a backlog message can close 60,000 windows at 10k series (peak
#: RSS 0.9-1.3 GiB against 0.5 with them all held), and a send lets the producer and ingest run.
PUBLISH_CHUNK = 2_000
#: How often the worker checks that its topics exist and Kafka answers (a restarted broker may
#: come back without them); also the pace of the "cannot reach Kafka" warning while it is down.
TOPIC_CHECK_SECONDS = 5.0


async def stop_quietly(client) -> None:
    """Stop a short-lived aiokafka client. aiokafka 0.14 re-raises CancelledError from a group-less
    consumer's stop() when it is stopped before its internal task ran (seen right after a broker
    restart); raised inside a rebalance callback it killed the ingest consumer's group coordination."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class KeyHashCache:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client), remembering the hash
    of the keys it has seen. Every series sends a point per window under the same key, and the
    pure-Python murmur2 was ~3% of a worker; the partition chosen is the same as before."""

    def __init__(self, max_keys: int = 65_536):
        self.default = DefaultPartitioner()
        self.max_keys = max_keys
        self.hashes: dict[bytes, int] = {}

    def __call__(self, key, all_partitions, available):
        if key is None or not isinstance(key, bytes):
            return self.default(key, all_partitions, available)
        hashed = self.hashes.get(key)
        if hashed is None:
            if len(self.hashes) >= self.max_keys:  # e.g. dead letters keyed by customer: never unbounded
                self.hashes.clear()
            hashed = self.hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def create_app(settings: Settings, catalogue: Catalogue) -> faust.App:
    app = faust.App(
        settings.app_id,
        **settings.faust_kwargs(),
        datadir=str(settings.data_path),
        store="memory://",
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=1,
        # a 6 s session: joins in ~3 s on the embedded broker (TANSU.md), and a dead worker's
        # partitions move within seconds on any Kafka
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        # open windows are held un-acknowledged until they close: a rebalance must not wait for them
        stream_wait_empty=False,
        # they are also older than Faust's livelock warning expects
        broker_commit_livelock_soft_timeout=3600,
        producer_acks=-1,
        producer_partitioner=KeyHashCache(),
        logging_config=None,
    )
    fetch_wait: dict[str, int] = {}
    if settings.embedded_broker:
        from blipwatch.kafka import tansu_compat

        tansu_compat.install(app, settings)
        fetch_wait["fetch_max_wait_ms"] = tansu_compat.FETCH_MAX_WAIT_MS

    # --- topics --------------------------------------------------------------------------
    events_topic = app.topic(settings.events_topic, partitions=settings.partitions,
                             key_serializer="raw", value_serializer="raw")
    partials_topic = app.topic(settings.partials_topic, partitions=settings.partitions, internal=True,
                               key_serializer="raw", value_serializer="raw")
    # the DLQ, points and alerts are written with app.producer.send (no Faust Topic per message);
    # every topic is created below with the others (our_topics)

    # --- tables --------------------------------------------------------------------------
    # detector + policy state per series, written when a window closes; a restarted or
    # rebalanced worker continues from here (standby replicas keep a warm copy)
    # the changelog topic is declared here because Table derives its codecs from key_type/value_type
    # (json by default), while the state is versioned bytes of its own
    changelog_name = f"{settings.app_id}-detector-state-changelog"
    detector_state = app.Table(
        "detector-state", partitions=settings.partitions,
        changelog_topic=app.topic(changelog_name, partitions=settings.partitions,
                                  key_serializer="raw", value_serializer="raw", compacting=True,
                                  internal=True, acks=False),
    )
    detector_state.key_serializer = detector_state.value_serializer = "raw"
    our_topics = [settings.events_topic, settings.partials_topic, settings.dlq_topic, settings.points_topic,
                  settings.alerts_topic, changelog_name]

    # --- stage 1: ingest (batched consumer inside the app) ------------------------------
    @app.service
    class Ingest(Service):
        """Batched consumer of customer-events: decode, validate, DLQ, pre-aggregate, send partials,
        then commit (at-least-once). Faust's per-message path costs ~80 µs an event; this ~4."""

        def __post_init__(self) -> None:
            self.consumer: AIOKafkaConsumer | None = None
            self.batch = IngestBatch(catalogue, settings.max_event_bytes)
            self.watermark = LocalWatermark(catalogue.window_ms, catalogue.lateness_ms, catalogue.idle_ms)
            self.positions: dict[TopicPartition, int] = {}
            self.source = f"ingest-{uuid.uuid4().hex[:8]}"
            self.total_partitions = 0
            self.last_flush = time.monotonic()
            self.flushed_closes: int | None = None  # windows the watermark had closed at the last flush
            self.admin: AIOKafkaAdminClient | None = None
            self.kafka_down_since: float | None = None
            self.topics_checked = False

        async def on_start(self) -> None:
            # create the input topic if it is missing, so a fresh cluster works without admin steps
            await events_topic.maybe_declare()
            # every topic we write exists, and the producer's metadata covers it, before anything is
            # sent (produce.track_topics)
            await self.ensure_topics()
            await track_topics(app.producer._ensure_producer(),  # noqa: SLF001
                               [topic for topic in our_topics if topic != settings.events_topic])
            install_raw_records()
            self.consumer = AIOKafkaConsumer(
                group_id=f"{settings.app_id}-ingest",
                value_deserializer=RAW_RECORDS,  # aiokafka's records, no ConsumerRecord each: raw_records.py
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                max_partition_fetch_bytes=4 * 1024 * 1024,
                fetch_max_bytes=32 * 1024 * 1024,
                **fetch_wait,
                **settings.aiokafka_kwargs(),
            )
            await self.consumer.start()
            self.consumer.subscribe([settings.events_topic], listener=_Rebalance(self))
            self.add_future(self.run())

        async def on_stop(self) -> None:
            if self.consumer is not None:
                try:
                    await self.flush()
                except Exception:  # shutting down: the uncommitted tail is re-read by the next owner
                    log.exception("ingest: final flush failed")
                await self.consumer.stop()
            if self.admin is not None:
                await self.admin.close()

        async def run(self) -> None:
            assert self.consumer is not None
            while not self.should_stop:
                try:
                    await self.step()
                except asyncio.CancelledError:
                    # aiokafka cancels a pending fetch or commit when its group is reset (e.g. the
                    # broker came back without our membership); only a cancel of this task ends it
                    current = asyncio.current_task()
                    if self.should_stop or (current is not None and current.cancelling()):
                        raise
                    log.warning("ingest: a Kafka request was cancelled by a group reset; continuing")
                    await asyncio.sleep(0.5)

        async def step(self) -> None:
            try:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            except Exception as exc:  # broker gone: aiokafka reconnects by itself
                log.warning("ingest: cannot fetch from %s (%s); retrying", settings.broker, exc)
                await asyncio.sleep(1.0)
                return
            if batches:
                self.process(batches)
            since = time.monotonic() - self.last_flush
            if since >= FLUSH_SECONDS or (since >= MIN_FLUSH_SECONDS and self.closes_a_window(batches)):
                try:
                    await self.flush()
                except Exception as exc:
                    log.warning("ingest: flush failed (%s); will retry", exc)
                    await asyncio.sleep(1.0)

        @Service.timer(TOPIC_CHECK_SECONDS)
        async def check_kafka(self) -> None:
            await self.ensure_topics()

        async def ensure_topics(self) -> None:
            """Say clearly when Kafka is unreachable, and re-create our topics when a broker comes
            back without them (a memory-only broker restarted, or topics deleted), so the worker
            resumes without manual steps. Also at start: outputs nobody has written to yet are
            created here (settings.partitions, compaction for the changelog), not by a metadata
            request that happens to auto-create them (a broker's default partition count)."""
            try:
                if self.admin is None:
                    self.admin = AIOKafkaAdminClient(request_timeout_ms=4000, **settings.aiokafka_kwargs())
                    await self.admin.start()
                existing = set(await asyncio.wait_for(self.admin.list_topics(), TOPIC_CHECK_SECONDS))
                missing = [topic for topic in our_topics if topic not in existing]
                if missing and self.topics_checked:
                    log.warning("blipwatch: topics %s are missing on %s (broker restarted or topics deleted); "
                                "creating them", ", ".join(missing), settings.broker)
                elif missing:  # a fresh cluster: outputs nobody has written to yet
                    log.info("blipwatch: creating topics %s", ", ".join(missing))
                if missing:
                    await self.admin.create_topics([NewTopic(topic, settings.partitions, 1, topic_configs=(
                        {"cleanup.policy": "compact"} if topic == changelog_name else {})) for topic in missing])
                self.topics_checked = True
            except Exception as exc:
                if self.kafka_down_since is None:
                    self.kafka_down_since = time.monotonic()
                down = time.monotonic() - self.kafka_down_since
                log.warning("blipwatch: Kafka at %s is unreachable for %.0f s (%s); retrying, state is kept",
                            settings.broker, down, type(exc).__name__)
                admin, self.admin = self.admin, None
                if admin is not None:
                    try:
                        await admin.close()
                    except Exception:  # already broken: nothing to release
                        pass
                return
            if self.kafka_down_since is not None:
                log.warning("blipwatch: Kafka at %s is reachable again after %.0f s", settings.broker,
                            time.monotonic() - self.kafka_down_since)
                self.kafka_down_since = None

        def closes_a_window(self, batches) -> bool:
            """Caught up (the fetch was not full) and the watermark closed a window since the last
            flush. A backlog keeps the FLUSH_SECONDS cadence: its watermark closes windows all the
            time, and fewer, larger partials messages are cheaper to score."""
            if sum(len(records) for records in batches.values()) >= MAX_BATCH:
                return False
            return self._closes(int(time.time() * 1000)) != self.flushed_closes

        def _closes(self, now_ms: int) -> int | None:
            """How many windows the local watermark has closed (a count that only grows)."""
            watermark = self.watermark.value(now_ms)
            if watermark is None:
                return None
            return (watermark - catalogue.lateness_ms) // catalogue.window_ms

        def process(self, batches) -> None:
            started = time.perf_counter()
            now_ms = int(time.time() * 1000)
            watermark = self.watermark.value(now_ms)
            add_records = self.batch.add_records
            for tp, records in batches.items():
                newest = add_records(records, f"{tp.topic}/{tp.partition}/", watermark)
                if newest is not None:
                    self.watermark.observe(tp.partition, newest, now_ms)
                elif records:
                    self.watermark.last_active[tp.partition] = now_ms
                self.positions[tp] = records[-1].offset + 1
            metrics.INGEST_BATCH_SECONDS.observe(time.perf_counter() - started)

        async def flush(self) -> None:
            """Send partials + dead letters, wait for the broker's acks, then commit offsets."""
            assert self.consumer is not None
            self.last_flush = time.monotonic()
            now_ms = int(time.time() * 1000)
            if not self.total_partitions:
                found = self.consumer.partitions_for_topic(settings.events_topic)
                self.total_partitions = len(found) if found else 0
            self.watermark.assign({tp.partition for tp in self.consumer.assignment()}, now_ms)
            report = self.watermark.report(now_ms)
            self.flushed_closes = self._closes(now_ms)
            partials = self.batch.aggregate.drain()
            letters = self.batch.drain_dead_letters()
            futures = []
            offsets, self.positions = dict(self.positions), {}
            if self.total_partitions and (report or partials):
                covered = {tp.partition: offset for tp, offset in offsets.items()}
                for partition, value in partial_messages(partials, report, self.total_partitions,
                                                         settings.partitions, self.source, sent_to=covered):
                    futures.append(await app.producer.send(settings.partials_topic, None, value, partition,
                                                           None, None))
            for letter in letters:
                futures.append(await app.producer.send(settings.dlq_topic, letter.key, letter.value or b"",
                                                       None, None, letter.headers()))
            if futures:
                await asyncio.gather(*futures)
            self._count()
            if offsets:
                await self.consumer.commit(offsets)
            await self._report_lag()

        def _count(self) -> None:
            counts = self.batch.counts
            for label, n in counts.valid.items():
                metrics.EVENTS.labels(label).inc(n)
            for reason, n in counts.invalid.items():
                metrics.EVENTS_INVALID.labels(reason).inc(n)
            if counts.late:
                metrics.EVENTS_LATE.inc(counts.late)
            for metric, n in self.batch.aggregate.drain_dropped().items():
                metrics.SERIES_DROPPED.labels(metric).inc(n)
            counts.clear()

        async def _report_lag(self) -> None:
            """Consumer lag per events partition: the fetch's high watermark minus our position
            (the fetch's high watermark is right even on the embedded broker, see TANSU.md)."""
            assert self.consumer is not None
            for tp in self.consumer.assignment():
                highwater = self.consumer.highwater(tp)
                if highwater is None:
                    continue
                try:
                    position = await self.consumer.position(tp)
                except Exception:  # mid-rebalance: the partition is gone or not yet positioned
                    continue
                metrics.INGEST_LAG.labels(str(tp.partition)).set(max(0, highwater - position))

    class _Rebalance(ConsumerRebalanceListener):
        def __init__(self, ingest: "Ingest"):
            self.ingest = ingest

        async def on_partitions_revoked(self, revoked) -> None:
            # hand over cleanly: what was read is sent and committed before another worker takes it
            if revoked and self.ingest.consumer is not None:
                try:
                    await self.ingest.flush()
                except Exception as exc:
                    log.warning("ingest: flush on rebalance failed (%s); the next owner re-reads", exc)

        async def on_partitions_assigned(self, assigned) -> None:
            self.ingest.watermark.assign({tp.partition for tp in assigned}, int(time.time() * 1000))
            if assigned:
                await self.skip_sent(assigned)
            log.info("ingest: consuming %s partitions %s", settings.events_topic,
                     sorted(tp.partition for tp in assigned))

        async def skip_sent(self, assigned) -> None:
            """A previous owner killed between sending its partials and committing left events that
            are already counted: start after them, or their counts would be added twice. The
            partials' tail says how far each input partition was sent."""
            consumer = self.ingest.consumer
            try:
                sent = await sent_offsets({tp.partition for tp in assigned})
            except Exception as exc:  # never block consumption on this: at-least-once still holds
                log.warning("ingest: cannot read how far the partials cover %s (%s); re-reading from the "
                            "committed offsets", settings.events_topic, exc)
                return
            for tp in assigned:
                committed = await consumer.committed(tp)
                if tp.partition in sent and sent[tp.partition] > (committed or 0):
                    log.info("ingest: partition %d was sent up to offset %d but committed at %s: resuming "
                             "after what was sent", tp.partition, sent[tp.partition], committed)
                    consumer.seek(tp, sent[tp.partition])

    async def sent_offsets(input_partitions: set[int], tail: int = 200) -> dict[int, int]:
        """How far the newest flushes in the partials topic cover each input partition."""
        reader = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **settings.aiokafka_kwargs())
        await reader.start()
        try:
            found = reader.partitions_for_topic(settings.partials_topic) or set()
            tps = [TopicPartition(settings.partials_topic, p) for p in found]
            if not tps:
                return {}
            reader.assign(tps)
            ends = await reader.end_offsets(tps)
            pending = set()
            for tp in tps:
                if ends[tp]:
                    reader.seek(tp, max(0, ends[tp] - tail))
                    pending.add(tp)
            values = []
            deadline = time.monotonic() + 10
            while pending and time.monotonic() < deadline:
                batches = await reader.getmany(*pending, timeout_ms=200, max_records=5000)
                for records in batches.values():
                    values.extend(record.value for record in records)
                for tp in list(pending):
                    highwater = reader.highwater(tp)  # from the fetch: right even where end_offsets is not
                    if highwater is not None and await reader.position(tp) >= highwater:
                        pending.discard(tp)
            return sent_positions(values, input_partitions)
        finally:
            await stop_quietly(reader)

    # --- stage 2: aggregate, score, alert (Faust agent over the partials) ----------------
    aggregators: dict[int, PartitionAggregator] = {}
    incidents = IncidentBook()  # the series firing on this worker, for alerts' `related`

    def aggregator_for(partition: int) -> PartitionAggregator:
        aggregator = aggregators.get(partition)
        if aggregator is None:
            def load(series: str) -> bytes | None:
                return detector_state.get(series.encode())

            aggregator = aggregators[partition] = PartitionAggregator(partition, catalogue, load)
            known = [key.decode() for key in list(detector_state.keys())
                     if partition_for(key.decode(), settings.partitions) == partition]
            aggregator.adopt(known)
        return aggregator

    # Set while the agent is between a message and its last effect (points, state, acks).
    processing = asyncio.Event()

    # points, alerts and detector state go to aiokafka as record batches of our own (produce.py):
    # one future per batch instead of one per record through app.producer.send
    batches = BatchSender(lambda: app.producer._ensure_producer())  # noqa: SLF001  (Faust's AIOKafkaProducer)

    async def send_state(records: list[tuple[int, bytes, bytes]]) -> list:
        # Straight to the producer, as the points are: Table.send_changelog's path (send_soon's
        # buffer, one publish_message per record from one task, FutureMessage and callback) was
        # ~10% of a live worker at 10k series. Its callback only records the persisted offset,
        # which the memory store does not keep (recovery reads the changelog from its start).
        return await batches.send_to(changelog_name, records)

    def store_state(key: bytes, blob: bytes) -> None:
        detector_state.data[key] = blob  # the store only: the changelog record is sent by send_state

    writer = StateWriter(aggregators, send_state, store_state, processing.is_set)

    @app.task
    async def write_state_when_quiet() -> None:
        await writer.run()

    async def finish_then_commit(consumer, logger) -> None:
        """On stop, before Faust stops the tables: let the message in hand finish and commit what
        it acknowledged, so a restart re-publishes nothing. (Faust's own wait, stream_wait_empty,
        waits for every unacknowledged message — here those are open windows, which never end.)"""
        deadline = time.monotonic() + 15
        while processing.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        try:
            # the state of what closed is written (and what it covers acknowledged) before the commit;
            # not as the agent: should a message still be in hand (the wait above ran out), wait for it
            await asyncio.wait_for(writer.write(), max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # the next owner re-reads from the last commit: duplicates, not loss
            log.warning("aggregate: writing the detector state on stop failed (%s)", exc)
        try:
            await consumer.commit()
        except Exception as exc:  # the next owner re-reads from the last commit: duplicates, not loss
            log.warning("aggregate: final commit failed (%s); the next worker re-publishes the last windows", exc)

    app._consumer_wait_empty = finish_then_commit  # noqa: SLF001  (Faust calls it on stop, before tables stop)

    @app.agent(partials_topic)
    async def aggregate(stream):
        async for event in stream.noack().events():
            if writer.failure is not None:
                raise writer.failure  # points or state not delivered: as when they were awaited here
            processing.set()
            try:
                await aggregate_one(event)
            finally:
                processing.clear()

    async def aggregate_one(event) -> None:
        """Merge one partials message, close what its watermark closes, publish, store, acknowledge."""
        report, total, observed_at, series_partials = decode_partials(event.value)
        partition, offset = event.message.partition, event.message.offset
        fresh = partition not in aggregators
        aggregator = aggregator_for(partition)
        if fresh:
            aggregator.next_offset = await resume_offset(event.message.tp)
            log.info("aggregate: %s partition %d resumes at offset %d (first delivered %d) with %d series "
                     "from the detector state", settings.partials_topic, partition, aggregator.next_offset,
                     offset, len(aggregator.trackers))
        if not await in_order(aggregator, event.message.tp, offset):
            return
        # points and alerts first, delivered; then the state that says "closed". Stopped or
        # killed in between, the windows are closed again from the partials after a restart and
        # re-published identical (same detector state in, same point out): never skipped.
        # `writer` (aggregate.StateWriter) writes the state once the points are delivered, off the
        # path of the next partials message, and only then acknowledges the messages: the state is
        # *delivered* before the messages that fed it are acknowledged (Faust's commit flushes its
        # producer buffer for at most 0.1 s per record, so a commit could pass state still buffered).
        writer.in_hand = True
        try:
            aggregator.merge(series_partials, event.ack)
            aggregator.watermark.update(report, total)
            watermark = aggregator.watermark.value()
            closed_series = aggregator.close(watermark)
            points: list[tuple[bytes, bytes]] = []
            alerts: list[tuple[bytes, bytes]] = []
            deliveries = []
            for tracker, closed in closed_series:
                publish_closed(tracker, closed, observed_at, points, alerts, incidents)
                if len(points) >= PUBLISH_CHUNK:
                    deliveries.extend(await send_points(points, alerts))
                    points, alerts = [], []
            if points:
                deliveries.extend(await send_points(points, alerts))
            if closed_series or deliveries:
                writer.closed(partition, [tracker for tracker, _ in closed_series], deliveries)
        finally:
            writer.in_hand = False
            writer.last_busy = time.monotonic()
        if writer.idle():
            aggregator.acknowledge_until(watermark)
        elif writer.due():
            await writer.write(in_agent=True)   # a backlog never goes quiet: write it now
        else:
            writer.acknowledge_later()
        label = str(partition)
        metrics.PENDING_PARTIALS.labels(label).set(len(aggregator.pending))
        if watermark is not None:
            metrics.WATERMARK.labels(label).set(watermark / 1000)
        metrics.SERIES_TRACKED.set(sum(len(a.trackers) for a in aggregators.values()))

    async def resume_offset(tp) -> int:
        """Where this partition's partials must be read from: the committed offset, else the start."""
        committed = getattr(app.consumer, "_committed_offset", {}).get(tp)  # set by Faust's seek on assignment
        if committed:
            return committed
        earliest = await app.consumer.earliest_offsets(tp)
        return earliest.get(tp) or 0

    async def in_order(aggregator: PartitionAggregator, tp, offset: int) -> bool:
        """Whether to process this message (see ``PartitionAggregator.admit``); seeks back on a jump."""
        decision = aggregator.admit(offset)
        if decision == "seek":
            log.warning("aggregate: %s partition %d delivered offset %d where %d was expected: seeking back",
                        settings.partials_topic, tp.partition, offset, aggregator.next_offset)
            # seek_wait runs the seek on the consumer's own thread and event loop (Consumer.seek calls
            # aiokafka from this thread: the fetcher was not woken and nothing came again)
            await app.consumer.seek_wait({tp: aggregator.next_offset})
            # Faust counts offsets it saw skipped as acknowledged ("gaps", meant for compacted
            # topics): these are not, they come again
            gaps = getattr(app.consumer, "_gap", {}).get(tp)
            if gaps is not None:
                gaps.clear()
        return decision == "process"

    async def send_points(points: list, alerts: list) -> list:
        """Points, then the alerts of those points: an alert is never queued ahead of its point."""
        deliveries = await batches.send(settings.points_topic, points)
        if alerts:
            deliveries.extend(await batches.send(settings.alerts_topic, alerts))
        return deliveries

    @app.on_partitions_revoked.connect
    async def forget_partitions(app_, revoked, **kwargs) -> None:
        # Faust revokes every partition in a rebalance and seeks what it gets back to the committed
        # offset: trackers and open windows are rebuilt from the table and the partials topic
        aggregators.clear()
        writer.forget()

    # --- optional: alerts to Alertmanager in-process (BLIPWATCH_ALERTMANAGER_URL) -------------
    from blipwatch.stream_app.alertmanager_bridge import run_in_worker

    run_in_worker(app, settings)

    setup_prometheus_sensors(app, name_prefix="blipwatch_faust")
    return app

"""Stage 1 of the worker: a batched consumer of customer-events inside the Faust app.

Decode, validate, dead-letter, pre-aggregate (``ingest.IngestBatch``), send the partials and the
dead letters, then commit: at-least-once. Faust's per-message path costs ~80 µs an event; this ~4.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from mode import Service

from blipwatch.kafka import faust_compat
from blipwatch.kafka.batches import track_topics
from blipwatch.kafka.raw_records import RAW_RECORDS
from blipwatch.kafka.raw_records import install as install_raw_records
from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.pipeline.windows import LocalWatermark
from blipwatch.schemas.partials import partial_messages
from blipwatch.stream_app import metrics
from blipwatch.stream_app.config import Settings, input_preset
from blipwatch.stream_app.ingest import IngestBatch
from blipwatch.stream_app.journey_state import JourneyState, journeys_topic
from blipwatch.stream_app.rebalance import IngestRebalance
from blipwatch.stream_app.topic_keeper import TopicKeeper

log = logging.getLogger("blipwatch")

#: How often the ingest stage flushes partials (and its watermark): the floor of alert latency...
FLUSH_SECONDS = 0.5
#: ... except that a caught-up ingest flushes as soon as its watermark closes a window, this long at
#: least after the last flush (live 10k series at 10x: the close waited 0-0.5 s for the next flush).
MIN_FLUSH_SECONDS = 0.05
MAX_BATCH = 10_000
#: A partition whose last fetch answer is older than this is not being read (the broker away, its
#: data still buffered, paused): it may have events to come, so it does not turn idle meanwhile.
UNANSWERED_MS = 3_000
#: How often the worker checks that its topics exist and Kafka answers (a restarted broker may
#: come back without them); also the pace of the "cannot reach Kafka" warning while it is down.
TOPIC_CHECK_SECONDS = 5.0
#: A partition taken over is read up to where its previous owner had sent partials for at most this
#: long before the ingest goes on without that bound.
BOUND_SECONDS = 30.0
#: Fault tests only: the worker exits at once (as if killed) in its Nth flush with partial counts,
#: once the first of that flush's partials messages that carries counts is delivered and before the
#: others are sent; ``journeys``: in its first flush with funnel counts, once the first message
#: carrying funnel counts is delivered (tests/integration/test_delivery_faults.py).
EXIT_MID_FLUSH_ENV = "BLIPWATCH_TEST_EXIT_MID_FLUSH"
EXIT_AT_FUNNELS = ("journeys", "before-snapshot")


class IngestService(Service):
    """Reads ``settings.events_topic`` in batches; every flush sends one partials message per
    partials partition (``schemas.partials``) and the dead letters, waits for their acks, commits.

    ``app`` is the Faust app whose producer sends (started before this service: ``app.service``);
    ``events_topic`` its Faust topic of events (declared at start if missing); ``topics`` keeps the
    worker's topics present; ``consumer_options`` go to the aiokafka consumer."""

    def __init__(self, app: Any, settings: Settings, catalogue: Catalogue, events_topic: Any,
                 topics: TopicKeeper, consumer_options: dict[str, Any] | None = None, **kwargs: Any):
        self.app = app
        self.settings = settings
        self.catalogue = catalogue
        self.events_topic = events_topic
        self.topics = topics
        self.consumer: AIOKafkaConsumer | None = None
        self.batch = IngestBatch(catalogue, settings.max_event_bytes, preset=input_preset(settings, catalogue),
                                 max_open_journeys=settings.max_open_journeys)
        #: the journey stages' snapshots (``<app_id>-journeys``), when the catalogue has funnels
        self.journeys = JourneyState(self.batch, settings.aiokafka_kwargs(), journeys_topic(settings.app_id),
                                     settings.partitions) if self.batch.funnels else None
        self.watermark = LocalWatermark(catalogue.window_ms, catalogue.lateness_ms, catalogue.idle_ms)
        self.positions: dict[TopicPartition, int] = {}
        #: the first offset read per partition since the last flush (a partials message's "from")
        self.starts: dict[TopicPartition, int] = {}
        #: a flush that failed: its partials messages, dead letters and offsets, sent again (first,
        #: identical) by the next flush; the aggregate skips what it merged already
        self.unsent: tuple[list[tuple[int, bytes]], list[Any], dict[TopicPartition, int]] = ([], [], {})
        #: input partition -> offset a previous owner sent its partials up to but did not commit
        #: (``IngestRebalance``): read up to there, flushed alone, before anything else is read
        self.bounds: dict[TopicPartition, int] = {}
        #: input partition -> how far the flush that sent up to its bound decided its journeys
        self.bound_journeys: dict[int, int] = {}
        self.bounded_since = 0.0
        self.resume_after_flush = False
        self.source = f"ingest-{uuid.uuid4().hex[:8]}"
        self.total_partitions = 0
        self.last_flush = time.monotonic()
        #: wall clock (ms) when ``not_being_read`` last looked (a longer gap: the flush loop stalled)
        self.read_checked_ms: int | None = None
        self.flushed_closes: int | None = None  # windows the watermark had closed at the last flush
        #: aiokafka consumer options beside the connection (the embedded broker's shorter fetch wait)
        self.consumer_options = consumer_options or {}
        exit_mid_flush = os.environ.get(EXIT_MID_FLUSH_ENV) or "0"
        #: series name prefixes of the funnel metrics, when the fault test exits in a flush carrying them
        self.exit_at_funnels = [f'"{metric.name}|'.encode() for metric in catalogue.metrics
                                if metric.kind == "funnel"] if exit_mid_flush in EXIT_AT_FUNNELS else []
        #: "before-snapshot": exit once a flush with funnel counts is delivered, before its journey snapshots
        self.exit_before_snapshot = exit_mid_flush == "before-snapshot"
        self.exit_mid_flush = 0 if exit_mid_flush in EXIT_AT_FUNNELS else int(exit_mid_flush)
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        settings = self.settings
        # create the input topic if it is missing, so a fresh cluster works without admin steps
        await self.events_topic.maybe_declare()
        if self.journeys is not None and self.journeys.topic not in self.topics.topics:
            self.topics.topics.append(self.journeys.topic)   # compacted: one snapshot per input partition
            self.topics.compacted.add(self.journeys.topic)
        # every topic we write exists, and the producer's metadata covers it, before anything is
        # sent (batches.track_topics)
        await self.topics.ensure()
        await track_topics(faust_compat.aiokafka_producer(self.app),
                           [topic for topic in self.topics.topics if topic != settings.events_topic])
        install_raw_records()
        self.consumer = AIOKafkaConsumer(
            group_id=f"{settings.app_id}-ingest",
            value_deserializer=RAW_RECORDS,  # aiokafka's records, no ConsumerRecord each: kafka/raw_records.py
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            **self.consumer_options,
            **settings.aiokafka_kwargs(),
        )
        await self.consumer.start()
        self.consumer.subscribe([settings.events_topic], listener=IngestRebalance(
            self.consumer, self.watermark, self.handover, settings, bound=self.bounded, discard=self.discard,
            journeys=self.journeys))
        self.add_future(self.run())

    async def on_stop(self) -> None:
        if self.consumer is not None:
            try:
                await self.flush()
            except Exception:  # shutting down: the uncommitted tail is re-read by the next owner
                log.exception("ingest: final flush failed")
            await self.consumer.stop()
        await self.topics.close()

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
            log.warning("ingest: cannot fetch from %s (%s); retrying", self.settings.broker, exc)
            await asyncio.sleep(1.0)
            return
        if batches:
            self.process(batches)
        since = time.monotonic() - self.last_flush
        if since >= FLUSH_SECONDS or (since >= MIN_FLUSH_SECONDS and self.closes_a_window(batches)):
            try:
                await self.flush()
            except Exception as exc:
                messages, letters, _ = self.unsent
                if messages or letters:
                    log.warning("ingest: flush failed (%s: %s); its partials and dead letters are kept and sent "
                                "again (%d partials messages, %d with counts; %d dead letters)", type(exc).__name__,
                                exc, len(messages), sum(b'"s":{}' not in value for _, value in messages), len(letters))
                else:   # delivered; the journey snapshots or the commit failed
                    log.warning("ingest: flush failed (%s: %s) after its partials were delivered; the next flush "
                                "commits them", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    @Service.timer(TOPIC_CHECK_SECONDS)
    async def check_kafka(self) -> None:
        await self.topics.ensure()

    def closes_a_window(self, batches) -> bool:
        """Caught up (the fetch was not full) and the watermark closed a window since the last
        flush. A backlog keeps the FLUSH_SECONDS cadence: its watermark closes windows all the
        time, and fewer, larger partials messages are cheaper to score."""
        if sum(len(records) for records in batches.values()) >= MAX_BATCH:
            return False
        return self.closes(int(time.time() * 1000)) != self.flushed_closes

    def closes(self, now_ms: int) -> int | None:
        """How many windows the local watermark has closed (a count that only grows)."""
        watermark = self.watermark.value(now_ms)
        if watermark is None:
            return None
        return (watermark - self.catalogue.lateness_ms) // self.catalogue.window_ms

    def process(self, batches) -> None:
        """One fetch (partition -> records) into the pre-aggregation and the watermark."""
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        # a partition delivering records is not idle, however long since its last ones: after an
        # outage longer than the idle timeout its events would otherwise meet a watermark that
        # had jumped past their window. Only one with progress: one never read stays unknown no
        # longer than the idle timeout, so a partition of nothing but dead letters cannot hold
        # the watermark unknown for good
        progress = self.watermark.progress
        self.watermark.hold({tp.partition for tp, records in batches.items() if records and tp.partition in progress},
                            now_ms)
        watermark = self.watermark.value(now_ms)
        add_records = self.batch.add_records
        journeys = self.journeys
        for tp, records in batches.items():
            bound = self.bounds.get(tp)
            if bound is not None and records and records[-1].offset >= bound:
                records = [record for record in records if record.offset < bound]
                self.consumer.seek(tp, bound)   # what lies past the bound is read after its flush
                self.consumer.pause(tp)
                if not records:
                    continue
            if journeys is not None:
                journeys_only, counts_only, records_both = journeys.split(tp.partition, records)
                if journeys_only:   # sent by the previous owner, not in its journey snapshot
                    journeys.catch_up(tp.partition, journeys_only, watermark)
                newest = add_records(counts_only, f"{tp.topic}/{tp.partition}/", watermark, tp.partition,
                                     journeys=False) if counts_only else None
                if records_both:
                    newest_both = add_records(records_both, f"{tp.topic}/{tp.partition}/", watermark, tp.partition)
                    if newest_both is not None and (newest is None or newest_both > newest):
                        newest = newest_both
                journeys.positions[tp.partition] = records[-1].offset + 1
                counted = records[len(journeys_only):]
            else:
                newest = add_records(records, f"{tp.topic}/{tp.partition}/", watermark, tp.partition)
                counted = records
            if newest is not None:
                self.watermark.observe(tp.partition, newest, now_ms)
            elif records:
                self.watermark.last_active[tp.partition] = now_ms
            if counted:   # records for the journeys only were committed by the previous owner: not covered again
                if tp not in self.starts:
                    self.starts[tp] = counted[0].offset
                self.positions[tp] = counted[-1].offset + 1
        metrics.INGEST_BATCH_SECONDS.observe(time.perf_counter() - started)

    def bounded(self, bounds: dict[TopicPartition, int], journey_watermarks: dict[int, int]) -> None:
        """Read the partitions in ``bounds`` up to their bound, flush that alone, then the rest: a
        flush covering both offsets a killed owner had sent (some partials partitions have them)
        and offsets it had not could not be skipped by the aggregate, nor merged, without error.
        That flush decides their journeys up to ``journey_watermarks`` (input partition -> ms), as
        the killed owner's flush did (its ``jw``), so it carries the same funnel counts; a
        partition without one waits (that flush decided none of its journeys)."""
        assert self.consumer is not None
        self.bounds = dict(bounds)
        self.bound_journeys = dict(journey_watermarks)
        self.bounded_since = time.monotonic()
        self.resume_after_flush = True
        others = [tp for tp in self.consumer.assignment() if tp not in bounds]
        if others:
            self.consumer.pause(*others)

    async def bounds_reached(self) -> bool:
        assert self.consumer is not None
        for tp, bound in list(self.bounds.items()):
            if tp not in self.consumer.assignment():
                del self.bounds[tp]
                continue
            try:
                if await self.consumer.position(tp) < bound:
                    return False
            except Exception:  # not positioned yet
                return False
        return True

    def discard(self) -> None:
        """Partitions handed over with a flush not delivered: the next owner reads them again from the
        committed offsets, so nothing of it is sent or counted here."""
        self.unsent = ([], [], {})
        self.batch.aggregate.drain()
        self.batch.drain_dead_letters()
        self.batch.counts.clear()
        self.batch.aggregate.drain_dropped()
        self.positions, self.starts, self.bounds, self.bound_journeys = {}, {}, {}, {}

    async def handover(self) -> None:
        """Partitions revoked: flush and commit, unless a bounded read is under way (a flush now would
        cross its bound): then the next owner reads it all again from the committed offsets."""
        if self.bounds and not await self.bounds_reached():
            log.info("ingest: partitions revoked before their bounded read ended; the next owner re-reads them")
            self.discard()
            return
        await self.flush()

    async def flush(self) -> None:
        """Send partials + dead letters, wait for the broker's acks, then commit offsets."""
        assert self.consumer is not None
        settings, producer = self.settings, self.app.producer
        bounded_flush = False
        if self.bounds:
            if not await self.bounds_reached():
                if time.monotonic() - self.bounded_since < BOUND_SECONDS:
                    return   # no flush across a bound (see ``bounded``)
                log.warning("ingest: partitions %s not read up to where the previous owner had sent them "
                            "within %.0f s; going on (their events may count twice)",
                            sorted(tp.partition for tp in self.bounds), BOUND_SECONDS)
            else:
                log.info("ingest: partitions %s read up to where the previous owner had sent them",
                         sorted(tp.partition for tp in self.bounds))
                bounded_flush = True
            self.bounds = {}
        self.last_flush = time.monotonic()
        now_ms = int(time.time() * 1000)
        if not self.total_partitions:
            found = self.consumer.partitions_for_topic(settings.events_topic)
            self.total_partitions = len(found) if found else 0
        self.watermark.assign({tp.partition for tp in self.consumer.assignment()}, now_ms)
        self.watermark.hold(self.not_being_read(now_ms), now_ms)
        report = self.watermark.report(now_ms)
        self.flushed_closes = self.closes(now_ms)
        partials = self.batch.aggregate.drain()
        snapshots = []
        decided: dict[int, int] = {}   # input partition -> how far this flush decides its journeys (``jw``)
        if self.journeys is not None:   # funnel counts now decided; the snapshot matches these offsets
            watermarks = dict(self.bound_journeys) if bounded_flush else self.journey_watermarks(report, now_ms)
            if bounded_flush and watermarks:
                log.info("ingest: journeys of partitions %s decided as far as the previous owner's flush had "
                         "decided them", sorted(watermarks))
            decided = {p: w for p, w in watermarks.items()
                       if w is not None and p not in self.journeys.journeys_only_until}
            self.journeys.advance(watermarks, partials)
            snapshots = self.journeys.records()
        self.bound_journeys = {}
        letters = self.batch.drain_dead_letters()
        futures = []
        offsets, self.positions = dict(self.positions), {}
        starts, self.starts = self.starts, {}
        messages: list[tuple[int, bytes]] = []
        if self.total_partitions and (report or partials):
            covered = {tp.partition: offset for tp, offset in offsets.items()}
            messages = partial_messages(partials, report, self.total_partitions, settings.partitions, self.source,
                                        sent_to=covered, sent_from={tp.partition: o for tp, o in starts.items()},
                                        journey_watermarks=decided)
        # a failed flush's messages go first, identical (the aggregate skips those it merged)
        unsent_messages, unsent_letters, unsent_offsets = self.unsent
        messages, letters, offsets = unsent_messages + messages, unsent_letters + letters, {**unsent_offsets, **offsets}
        if self.exit_mid_flush and partials:
            self.exit_mid_flush -= 1
            if not self.exit_mid_flush:
                await self.exit_after_first(messages, lambda value: b'"s":{}' not in value)
        def funnel(value: bytes) -> bool:
            return any(prefix in value for prefix in self.exit_at_funnels)
        if self.exit_at_funnels and not self.exit_before_snapshot and any(funnel(value) for _, value in messages):
            await self.exit_after_first(messages, funnel)
        try:
            for partition, value in messages:
                futures.append(await producer.send(settings.partials_topic, None, value, partition, None, None))
            for letter in letters:
                futures.append(await producer.send(settings.dlq_topic, letter.key, letter.kept_value(),
                                                   None, None, letter.headers()))
            if futures:
                await asyncio.gather(*futures)
        except Exception:
            self.unsent = (messages, letters, offsets)
            metrics.DELIVERY_FAILURES.labels("ingest").inc()
            raise
        self.unsent = ([], [], {})
        if snapshots:   # after the partials: a snapshot never covers more than what was sent
            if self.exit_before_snapshot and any(funnel(value) for _, value in messages):
                self.exit_now(f"exiting after the {len(messages)} partials messages of this flush, "
                              "before its journey snapshots")
            try:
                await asyncio.gather(*[await producer.send(self.journeys.topic, key, value, partition, None, None)
                                       for partition, key, value in snapshots])
            except Exception:
                self.unsent = ([], [], offsets)   # partials delivered: the next flush writes the snapshots, commits
                metrics.DELIVERY_FAILURES.labels("ingest").inc()
                raise
            self.journeys.delivered()
        self.count()
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except Exception:
                self.unsent = ([], [], offsets)   # delivered: only the commit is owed
                raise
        if self.resume_after_flush and not self.bounds:
            self.resume_after_flush = False
            self.consumer.resume(*self.consumer.assignment())
        await self.report_lag()

    def not_being_read(self, now_ms: int) -> set[int]:
        """Assigned partitions paused, or without a fetch answer for ``UNANSWERED_MS``: idleness is
        time without events while the partition is read, not while Kafka is away (a watermark
        that jumped during an outage would call the events producers held back late)."""
        consumer = self.consumer
        checked, self.read_checked_ms = self.read_checked_ms, now_ms
        if checked is not None and now_ms - checked > UNANSWERED_MS:
            # the flush loop itself stalled (a delivery waiting out an outage): nobody saw the
            # partitions read meanwhile, so none has been idle. A fetch answered just after the
            # stall says only that reading is back (the first answer after a 40 s cut, before the
            # producers' backlog, turned every partition idle and closed the open window)
            return {tp.partition for tp in consumer.assignment()}
        held = {tp.partition for tp in consumer.paused()}
        for tp in consumer.assignment():
            try:
                answered = consumer.last_poll_timestamp(tp)
            except (AssertionError, KeyError):   # mid-rebalance: not assigned any more
                answered = None
            if answered is None or now_ms - answered > UNANSWERED_MS:
                held.add(tp.partition)
        return held

    def journey_watermarks(self, report: dict[int, int | None], now_ms: int) -> dict[int, int | None]:
        """Per input partition, how far its journeys may be decided: its own progress; an idle
        partition follows the local watermark; an unknown one waits."""
        local = None
        watermarks = {}
        for partition in self.batch.journeys:
            if partition not in report:
                continue
            value = report[partition]
            if value is None:
                if local is None:
                    local = self.watermark.value(now_ms)
                value = local
            watermarks[partition] = value
        return watermarks

    async def exit_after_first(self, messages: list[tuple[int, bytes]], wanted: Callable[[bytes], bool]) -> None:
        """Fault tests only (``EXIT_MID_FLUSH_ENV``): deliver the messages up to the first ``wanted``
        one, then exit."""
        for partition, value in messages:
            future = await self.app.producer.send(self.settings.partials_topic, None, value, partition, None, None)
            if wanted(value):
                await future
                self.exit_now(f"exiting after 1 of {len(messages)} partials messages of this flush")

    @staticmethod
    def exit_now(what: str) -> None:
        """Fault tests only: say what was done, exit as a SIGKILL would leave it."""
        log.warning("ingest: %s: %s", EXIT_MID_FLUSH_ENV, what)
        logging.shutdown()
        os._exit(137)

    def count(self) -> None:
        if self.journeys is not None:
            for outcome, n in self.journeys.new_counts().items():
                metrics.JOURNEYS.labels(outcome).inc(n)
            metrics.OPEN_JOURNEYS.set(self.batch.open_journeys())
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

    async def report_lag(self) -> None:
        """Consumer lag per events partition: the fetch's high watermark minus our position
        (the fetch's high watermark is right even on the embedded broker, where ListOffsets is not)."""
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


__all__ = ["IngestService", "FLUSH_SECONDS", "MIN_FLUSH_SECONDS", "MAX_BATCH", "TOPIC_CHECK_SECONDS"]

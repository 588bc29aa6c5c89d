"""Stage 2 of the worker: what the Faust agent over the partials topic does with each message.

Merge its partial counts into the windows of its partition (``aggregate.PartitionAggregator``),
close what its watermark closes, score and publish the points and alerts, then let the
``StateWriter`` write the detector state and acknowledge. The agent itself, in ``app.py``, only
hands each message over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from faust.exceptions import ProducerSendError

from blipwatch.kafka import faust_compat
from blipwatch.kafka.batches import BatchSender
from blipwatch.kafka.clients import stop_quietly
from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.pipeline.feedback import FeedbackBook
from blipwatch.pipeline.attribution import IncidentBook
from blipwatch.schemas.partials import decode_covered, partition_for
from blipwatch.stream_app import metrics
from blipwatch.stream_app.aggregate import PartitionAggregator, StateWriter, publish_closed
from blipwatch.stream_app.config import Settings

log = logging.getLogger("blipwatch")

#: Points (and their alerts) are sent every this many while a partials message's closed windows are
#: published, not all at its end: a backlog message can close 60,000 windows at 10k series (peak
#: RSS 0.9-1.3 GiB against 0.5 with them all held), and a send lets the producer and ingest run.
PUBLISH_CHUNK = 2_000
#: Windows wait at most this long at startup for the feedback and calendar topics to be read (a
#: planned event must not page because the worker started before it had read the calendar).
FEEDBACK_WAIT_SECONDS = 10.0


class AggregateAgent:
    """The aggregate stage of one worker, over the partials partitions assigned to it.

    ``table``: the detector-state table (``get``, ``keys``, and ``data``, its local store), whose
    changelog topic is ``changelog_topic``; ``producer``: the running ``AIOKafkaProducer``;
    ``consumer``: Faust's consumer of the partials topic (where a partition resumes, seeks back)."""

    def __init__(self, settings: Settings, catalogue: Catalogue, table: Any, changelog_topic: str,
                 producer: Callable[[], Any], consumer: Callable[[], Any]):
        self.settings = settings
        self.catalogue = catalogue
        self.table = table
        self.changelog_topic = changelog_topic
        self.consumer = consumer
        self.aggregators: dict[int, PartitionAggregator] = {}
        self.incidents = IncidentBook()  # the series firing on this worker, for alerts' `related`
        #: set while a message is between its arrival and its last effect (points, state, acks)
        self.processing = asyncio.Event()
        # points, alerts and detector state go to aiokafka as record batches of our own
        # (kafka/batches.py): one future per batch instead of one per record through app.producer.send
        self.batches = BatchSender(producer)
        self.writer = StateWriter(self.aggregators, self.send_state, self.store_state, self.processing.is_set)
        #: what people said (``stream_app.feedback_follower`` fills it); ``feedback_ready`` set once read
        self.book = FeedbackBook()
        metrics.FEEDBACK.book = self.book
        self.feedback_ready: asyncio.Event | None = None
        self._feedback_deadline: float | None = None

    async def handle(self, value: bytes, tp: Any, offset: int, ack: Callable[[], Any]) -> None:
        """One partials message (its bytes, topic partition and offset; ``ack`` acknowledges it)."""
        if self.writer.failure is not None:
            self.recover(self.writer.failure)
        ready = self.feedback_ready
        if ready is not None and not ready.is_set():
            await self.wait_for_feedback(ready)
        self.processing.set()
        try:
            await self.aggregate_one(value, tp, offset, ack)
        except (KafkaError, ProducerSendError) as exc:  # a send refused, or a delivery awaited here failed
            self.recover(exc)
        finally:
            self.processing.clear()

    def recover(self, exc: BaseException) -> None:
        """Points, alerts or detector state were not delivered (a non-retriable produce error, a
        partition without a leader for longer than the producer's request timeout). Nothing after
        the failure is acknowledged; start again from what is known to be safe: every aggregator is
        dropped, rebuilt from the table (its local copy holds only state whose points were delivered)
        and fed again from the committed offsets (``in_order`` seeks back: the next message is past
        the expected one). Windows whose points did not leave are closed again and re-published."""
        metrics.DELIVERY_FAILURES.labels("aggregate").inc()
        log.error("aggregate: delivering points or detector state failed (%s: %s); rebuilding the "
                  "aggregators from the detector state and re-reading the partials from the committed offsets",
                  type(exc).__name__, exc)
        self.writer.failure = None
        self.forget_partitions()

    async def aggregate_one(self, value: bytes, tp: Any, offset: int, ack: Callable[[], Any]) -> None:
        """Merge one partials message, close what its watermark closes, publish, store, acknowledge."""
        report, total, observed_at, series_partials, coverage = decode_covered(value)
        partition = tp.partition
        writer = self.writer
        fresh = partition not in self.aggregators
        aggregator = self.aggregator_for(partition)
        if fresh:
            aggregator.next_offset = await self.resume_offset(tp)
            log.info("aggregate: %s partition %d resumes at offset %d (first delivered %d) with %d series "
                     "from the detector state", self.settings.partials_topic, partition, aggregator.next_offset,
                     offset, len(aggregator.trackers))
        if fresh and self.book.verdicts:
            await self.act_on_takeover(aggregator)
        if not await self.in_order(aggregator, tp, offset):
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
            if aggregator.already_merged(coverage):   # sent again: acknowledged in order, not merged
                series_partials, report = {}, {}
            aggregator.merge(series_partials, ack)
            aggregator.watermark.update(report, total)
            watermark = aggregator.watermark.value()
            closed_series = aggregator.close(watermark)
            points: list[tuple[bytes, bytes]] = []
            alerts: list[tuple[bytes, bytes]] = []
            deliveries = []
            for tracker, closed in closed_series:
                publish_closed(tracker, closed, observed_at, points, alerts, self.incidents)
                if len(points) >= PUBLISH_CHUNK:
                    deliveries.extend(await self.send_points(points, alerts))
                    points, alerts = [], []
            if points:
                deliveries.extend(await self.send_points(points, alerts))
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
        metrics.SERIES_TRACKED.set(sum(len(a.trackers) for a in self.aggregators.values()))

    def aggregator_for(self, partition: int) -> PartitionAggregator:
        """The partition's aggregator, made on first use with the series the table knows there."""
        aggregator = self.aggregators.get(partition)
        if aggregator is None:
            table = self.table

            def load(series: str) -> bytes | None:
                return table.get(series.encode())

            aggregator = self.aggregators[partition] = PartitionAggregator(partition, self.catalogue, load,
                                                                           book=self.book)
            known = [key.decode() for key in list(table.keys())
                     if partition_for(key.decode(), self.settings.partitions) == partition]
            aggregator.adopt(known)
        return aggregator

    # --- feedback ------------------------------------------------------------------------------

    async def wait_for_feedback(self, ready: asyncio.Event) -> None:
        if self._feedback_deadline is None:
            self._feedback_deadline = time.monotonic() + FEEDBACK_WAIT_SECONDS
        try:
            await asyncio.wait_for(ready.wait(), max(0.0, self._feedback_deadline - time.monotonic()))
        except asyncio.TimeoutError:
            log.warning("feedback: the feedback and calendar topics were not read within %.0f s; scoring without "
                        "waiting for them", FEEDBACK_WAIT_SECONDS)
            self.feedback_ready = None
            asyncio.ensure_future(self._act_once_read(ready))

    async def _act_once_read(self, ready: asyncio.Event) -> None:
        """Verdicts read after the wait gave up are not announced one by one: act on all of them."""
        await ready.wait()
        for aggregator in list(self.aggregators.values()):
            await self.act_on_takeover(aggregator)

    def on_verdict(self, feedback: Any) -> None:
        """A new or changed verdict (``FeedbackFollower``): acted on by this worker if it owns the series."""
        series = feedback.series_key()
        if series is None:
            return
        aggregator = self.aggregators.get(partition_for(series, self.settings.partitions))
        if aggregator is None:
            return   # another worker's series (it acts on it), or a partition not yet taken
        asyncio.ensure_future(self.act(aggregator, [feedback]))

    async def act_on_takeover(self, aggregator: PartitionAggregator) -> None:
        """A partition taken over: every verdict on its series (idempotent: ``acted`` is series state)."""
        partitions = self.settings.partitions
        mine = [f for f in list(self.book.verdicts.values())
                if (s := f.series_key()) is not None and partition_for(s, partitions) == aggregator.partition]
        if mine:
            await self.act(aggregator, sorted(mine, key=lambda f: (f.started_ms() or 0, f.dedup_key)))

    async def act(self, aggregator: PartitionAggregator, verdicts: list) -> None:
        """Apply verdicts to their series: resolved alerts published at once, the state written after."""
        changed, alerts = [], []
        for feedback in verdicts:
            tracker = aggregator.tracker(feedback.series_key())
            if tracker is None:
                continue
            acted_before = dict(tracker.feedback.acted)
            alert = tracker.act(feedback)
            if tracker.feedback.acted == acted_before:
                continue   # acted on already
            changed.append(tracker)
            metrics.FEEDBACK_ACTIONS.labels(feedback.verdict, "resolved" if alert is not None else "kept").inc()
            if alert is not None:
                self.incidents.note(tracker.series, alert)
                alert.published_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                alerts.append((alert.dedup_key.encode(), alert.to_json()))
                metrics.ALERTS.labels(alert.metric, alert.status, alert.severity).inc()
                log.info("alert resolved: %s: %s", alert.dedup_key, alert.summary)
        if not changed:
            return
        deliveries = await self.batches.send(self.settings.alerts_topic, alerts) if alerts else []
        if self.aggregators.get(aggregator.partition) is aggregator:
            self.writer.closed(aggregator.partition, changed, deliveries)

    async def resume_offset(self, tp: Any) -> int:
        """Where this partition's partials must be read from: the committed offset, else the start."""
        consumer = self.consumer()
        committed = faust_compat.committed_offset(consumer, tp)  # set by Faust's seek on assignment
        if committed:
            return committed
        earliest = await consumer.earliest_offsets(tp)
        return earliest.get(tp) or 0

    async def in_order(self, aggregator: PartitionAggregator, tp: Any, offset: int) -> bool:
        """Whether to process this message (see ``PartitionAggregator.admit``); seeks back on a jump."""
        decision = aggregator.admit(offset)
        if decision == "seek":
            log.warning("aggregate: %s partition %d delivered offset %d where %d was expected: seeking back",
                        self.settings.partials_topic, tp.partition, offset, aggregator.next_offset)
            expected = aggregator.next_offset
            found = await first_offset_from(self.settings.aiokafka_kwargs(), tp, expected)
            if found is not None and found > expected:
                # a hole in the log, not a message Faust dropped: seen on the embedded broker after a
                # restart, where a produce failed with AlreadyExists yet used its offset; waiting for
                # it stopped scoring for good
                log.warning("aggregate: %s partition %d has no message at offsets %d..%d; going on from %d",
                            self.settings.partials_topic, tp.partition, expected, found - 1, found)
                aggregator.next_offset = found
            consumer = self.consumer()
            # seek_wait runs the seek on the consumer's own thread and event loop (Consumer.seek calls
            # aiokafka from this thread: the fetcher was not woken and nothing came again)
            await consumer.seek_wait({tp: aggregator.next_offset})
            # the offsets skipped were taken as acknowledged by Faust: they are not, they come again
            faust_compat.forget_gaps(consumer, tp)
        return decision == "process"

    async def send_points(self, points: list, alerts: list) -> list:
        """Points, then the alerts of those points: an alert is never queued ahead of its point."""
        deliveries = await self.batches.send(self.settings.points_topic, points)
        if alerts:
            deliveries.extend(await self.batches.send(self.settings.alerts_topic, alerts))
        return deliveries

    async def send_state(self, records: list[tuple[int, bytes, bytes]]) -> list:
        # Straight to the producer, as the points are: Table.send_changelog's path (send_soon's
        # buffer, one publish_message per record from one task, FutureMessage and callback) was
        # ~10% of a live worker at 10k series. Its callback only records the persisted offset,
        # which the memory store does not keep (recovery reads the changelog from its start).
        return await self.batches.send_to(self.changelog_topic, records)

    def store_state(self, key: bytes, blob: bytes) -> None:
        self.table.data[key] = blob  # the store only: the changelog record is sent by send_state

    async def write_state_when_quiet(self) -> None:
        await self.writer.run()

    async def finish_then_commit(self, consumer: Any, logger: Any) -> None:
        """On stop, before Faust stops the tables: let the message in hand finish and commit what
        it acknowledged, so a restart re-publishes nothing. (Faust's own wait, stream_wait_empty,
        waits for every unacknowledged message — here those are open windows, which never end.)"""
        deadline = time.monotonic() + 15
        while self.processing.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        try:
            # the state of what closed is written (and what it covers acknowledged) before the commit;
            # not as the agent: should a message still be in hand (the wait above ran out), wait for it
            await asyncio.wait_for(self.writer.write(), max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # the next owner re-reads from the last commit: duplicates, not loss
            log.warning("aggregate: writing the detector state on stop failed (%s)", exc)
        try:
            await consumer.commit()
        except Exception as exc:  # the next owner re-reads from the last commit: duplicates, not loss
            log.warning("aggregate: final commit failed (%s); the next worker re-publishes the last windows", exc)

    def forget_partitions(self) -> None:
        """Faust revokes every partition in a rebalance and seeks what it gets back to the committed
        offset: trackers and open windows are rebuilt from the table and the partials topic."""
        self.aggregators.clear()
        self.writer.forget()


async def first_offset_from(connection: dict[str, Any], tp: Any, offset: int, seconds: float = 5.0) -> int | None:
    """The offset of the first message at or after ``offset`` in ``tp`` as the broker serves it (a
    consumer of its own), or None when none came within ``seconds``."""
    partition = TopicPartition(tp.topic, tp.partition)
    reader = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **connection)
    try:
        await reader.start()
        reader.assign([partition])
        reader.seek(partition, offset)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await reader.getmany(partition, timeout_ms=200, max_records=1)
            for records in batches.values():
                if records:
                    return records[0].offset
        return None
    except KafkaError as exc:
        log.warning("aggregate: cannot read %s partition %d at offset %d (%s)", tp.topic, tp.partition, offset, exc)
        return None
    finally:
        await stop_quietly(reader)


__all__ = ["AggregateAgent", "PUBLISH_CHUNK", "first_offset_from"]

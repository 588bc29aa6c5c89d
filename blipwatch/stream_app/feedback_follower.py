"""The worker's view of what people on call said: the feedback and calendar topics, followed into a
``FeedbackBook`` (``pipeline.feedback``) within a poll of being written.

Every worker reads both topics whole, from the start, without a consumer group (they are small and
every worker needs every calendar entry; a verdict is acted on by the worker that owns its series),
and keeps following them. ``on_verdict`` is called with each new or changed verdict once the
follower has caught up, so a restart replays the topic into the book without re-announcing old
verdicts (whether one was acted on already is the series' own state, ``SeriesFeedback``).

    follower = FeedbackFollower(settings, on_verdict=lambda feedback: ...)
    await follower.start()
    await follower.caught_up.wait()       # the book holds everything written before start
    ...
    await follower.stop()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from blipwatch.pipeline.feedback import FeedbackBook
from blipwatch.schemas.feedback import CalendarEntry, Feedback
from blipwatch.stream_app.config import Settings

log = logging.getLogger("blipwatch.feedback")


class FeedbackFollower:
    """Follows ``settings.feedback_topic`` and ``settings.calendar_topic`` into ``book``."""

    def __init__(self, settings: Settings, book: FeedbackBook | None = None,
                 on_verdict: Callable[[Feedback], None] | None = None,
                 on_calendar: Callable[[CalendarEntry | None], None] | None = None, poll_ms: int = 500):
        self.settings = settings
        self.book = book if book is not None else FeedbackBook()
        self.on_verdict = on_verdict
        self.on_calendar = on_calendar
        self.poll_ms = poll_ms
        self.caught_up = asyncio.Event()
        self._consumer = None
        self._task: asyncio.Task | None = None
        self._pending: set = set()
        #: undecodable records skipped, per topic kind ("feedback", "calendar")
        self.rejected = {"feedback": 0, "calendar": 0}

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topics = (self.settings.feedback_topic, self.settings.calendar_topic)
        await self._ensure_topics(topics)
        consumer = AIOKafkaConsumer(**self.settings.aiokafka_kwargs(), group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id="blipwatch-feedback")
        await consumer.start()
        try:
            assigned = []
            for topic in topics:
                partitions = consumer.partitions_for_topic(topic)
                while not partitions:   # a fresh client (or a topic just created) has no metadata for it yet
                    await consumer.topics()   # a metadata request for every topic
                    partitions = consumer.partitions_for_topic(topic)
                    if not partitions:
                        await asyncio.sleep(0.1)
                assigned += [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            # an empty partition is read; the others are read once a fetch's high watermark is reached
            # (ListOffsets is too low on the embedded broker after a batched produce, never 0 when not empty)
            ends = await consumer.end_offsets(assigned)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._pending = {tp for tp in assigned if ends.get(tp)}
        if not self._pending:
            self.caught_up.set()
        self._task = asyncio.create_task(self._follow(), name="blipwatch-feedback-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _ensure_topics(self, topics: tuple[str, ...]) -> None:
        """Create the topics compacted with one partition if missing, as ``blipwatch feedback`` and
        ``calendar`` do: an auto-created one would be neither."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(**self.settings.aiokafka_kwargs(), request_timeout_ms=10_000)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                try:
                    await admin.create_topics([NewTopic(t, 1, 1, topic_configs={"cleanup.policy": "compact"})
                                               for t in missing])
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()

    async def _follow(self) -> None:
        consumer = self._consumer
        feedback_topic = self.settings.feedback_topic
        while True:
            batches = await consumer.getmany(timeout_ms=self.poll_ms)
            for tp, records in batches.items():
                for record in records:
                    before = self.book.rejected
                    if tp.topic == feedback_topic:
                        verdict = self.book.apply_feedback(record.key, record.value)
                        if verdict is not None and self.caught_up.is_set() and self.on_verdict is not None:
                            self.on_verdict(verdict)
                    else:
                        entry = self.book.apply_calendar(record.key, record.value)
                        if self.caught_up.is_set() and self.on_calendar is not None:
                            self.on_calendar(entry)
                    if self.book.rejected > before:
                        self.rejected["feedback" if tp.topic == feedback_topic else "calendar"] += 1
            if self._pending:
                for tp in list(self._pending):
                    highwater = consumer.highwater(tp)
                    if highwater is not None and await consumer.position(tp) >= highwater:
                        self._pending.discard(tp)
                if not self._pending:
                    log.info("feedback: %d verdicts, %d calendar entries", len(self.book.verdicts),
                             len(self.book.calendar))
                    self.caught_up.set()


def run_in_worker(app, settings: Settings, aggregation) -> FeedbackFollower:
    """The follower as a service of the Faust ``app``, feeding ``aggregation``'s book (an
    ``AggregateAgent``): its windows wait for the topics to be read, its series act on new verdicts."""
    from mode import Service

    from blipwatch.stream_app import metrics

    follower = FeedbackFollower(settings, book=aggregation.book, on_verdict=aggregation.on_verdict)
    aggregation.feedback_ready = follower.caught_up
    counted = {"feedback": 0, "calendar": 0}
    for topic in counted:
        metrics.FEEDBACK_REJECTED.labels(topic)

    def count_rejected() -> None:
        for topic, seen in follower.rejected.items():
            if seen > counted[topic]:
                metrics.FEEDBACK_REJECTED.labels(topic).inc(seen - counted[topic])
                counted[topic] = seen

    async def follow() -> None:
        # not in on_start: a broker not reachable yet must not stop the worker from starting (the
        # windows wait FEEDBACK_WAIT_SECONDS at most, then score without and act once it is read)
        failures = 0
        while True:
            try:
                await follower.start()
                return
            except Exception as exc:  # noqa: BLE001 - retried; the worker goes on
                failures += 1
                (log.warning if failures in (1, 2) or failures % 10 == 0 else log.debug)(
                    "feedback: cannot read %s and %s yet (%s); retrying", settings.feedback_topic,
                    settings.calendar_topic, exc or type(exc).__name__)
                await asyncio.sleep(min(10.0, 0.5 * 2 ** failures))

    @app.service
    class FeedbackFollowerService(Service):
        async def on_start(self) -> None:
            self.add_future(follow())

        @Service.task
        async def _count(self) -> None:
            while not self.should_stop:
                count_rejected()
                await self.sleep(5.0)

        async def on_stop(self) -> None:
            await follower.stop()

    return follower

"""Compatibility layer for the embedded Tansu broker — isolated here, installed only when
``BLIPWATCH_EMBEDDED_BROKER=1`` (``blipwatch demo``, ``bench`` and the tests set it).

Tansu 0.6's ListOffsets(latest) returns the base offset of the last record batch + 1, ignoring the
rest of that batch, while Fetch responses carry the correct high watermark (docs/architecture.md,
"The embedded broker").
Faust reads end offsets to know where changelog recovery stops, so on Tansu it stops early and
loses table updates. Here Faust's end-offset lookup is replaced by one that takes the reported
end offset, fetches from end - 1 with a throw-away consumer and uses that fetch's high watermark.

Tansu also holds a Fetch request for its full ``max_wait`` even when records arrive meanwhile (a
Kafka broker answers as soon as ``fetch_min_bytes`` are there). Faust's consumer asks for 1.5 s,
so every hop through the partials topic took up to 1.5 s here (produce-to-consume, 12 samples:
median 0.48 s, max 1.23 s at 1.5 s; 0.011 / 0.036 s at 100 ms). ``FETCH_MAX_WAIT_MS`` is used for
Faust's consumer and for the ingest consumer (``fetch_max_wait_ms``).

Production Kafka needs none of this. Faust internals replaced here (tests/unit/test_kafka_compat.py
checks each): ``AIOKafkaConsumerThread._highwaters(partitions)`` and
``AIOKafkaConsumerThread._create_worker_consumer(transport)``, and the aiokafka consumer's
``_fetch_max_wait_ms``, read when it starts.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from blipwatch.kafka.clients import stop_quietly

log = logging.getLogger(__name__)
_installed = False
#: Fetch wait on the embedded broker (see above); Kafka's long poll makes the default right elsewhere.
FETCH_MAX_WAIT_MS = 100


async def true_end_offsets(partitions: list, connection: dict[str, Any],
                           reported: Mapping[Any, int]) -> dict[Any, int]:
    """End offsets corrected with the high watermark of a fetch at reported end - 1."""
    corrected = dict(reported)
    # Faust's TP is its own namedtuple; aiokafka insists on its TopicPartition
    wanted = {TopicPartition(tp.topic, tp.partition): tp for tp in partitions if reported.get(tp)}
    if not wanted:
        return corrected
    probe = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **connection)
    await probe.start()
    try:
        probe.assign(list(wanted))
        for tp, original in wanted.items():
            probe.seek(tp, max(0, reported[original] - 1))
        pending = set(wanted)
        for _ in range(20):
            if not pending:
                break
            await probe.getmany(*pending, timeout_ms=250, max_records=1)
            for tp in list(pending):
                highwater = probe.highwater(tp)
                if highwater is not None:
                    original = wanted[tp]
                    corrected[original] = max(reported[original], highwater)
                    pending.discard(tp)
        if pending:
            log.warning("tansu_compat: no high watermark for %s; using the reported end offsets", sorted(pending))
    finally:
        await stop_quietly(probe)
    return corrected


def install(app: Any, settings: Any) -> None:
    """Patch Faust's end-offset lookup (process-wide; only ever called for the embedded broker)."""
    global _installed
    if _installed:
        return
    _installed = True
    connection = settings.aiokafka_kwargs()
    original = faust_aiokafka.AIOKafkaConsumerThread._highwaters

    async def _highwaters(self, partitions):
        reported = await original(self, partitions)
        return await true_end_offsets(list(partitions), connection, reported)

    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters

    create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self, *args, **kwargs):
        consumer = create_worker_consumer(self, *args, **kwargs)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # Faust passes a fixed 1500; read at start()
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    log.info("tansu_compat: end offsets are corrected and fetches wait %d ms on the embedded broker",
             FETCH_MAX_WAIT_MS)

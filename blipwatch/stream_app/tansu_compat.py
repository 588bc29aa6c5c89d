"""Compatibility layer for the embedded Tansu broker — isolated here, installed only when
``BLIPWATCH_EMBEDDED_BROKER=1`` (``blipwatch demo``, ``bench`` and the tests set it).

Tansu 0.6's ListOffsets(latest) returns the base offset of the last record batch + 1, ignoring the
rest of that batch, while Fetch responses carry the correct high watermark (shared TANSU.md).
Faust reads end offsets to know where changelog recovery stops, so on Tansu it stops early and
loses table updates. Here Faust's end-offset lookup is replaced by one that takes the reported
end offset, fetches from end - 1 with a throw-away consumer and uses that fetch's high watermark.
Production Kafka needs none of this.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)
_installed = False


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
        from blipwatch.stream_app.app import stop_quietly

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
    log.info("tansu_compat: end offsets are corrected for the embedded broker")

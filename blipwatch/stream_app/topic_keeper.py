"""The worker's topics exist, and Kafka answers: said clearly when it does not."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from blipwatch.stream_app.replication import Replication

log = logging.getLogger("blipwatch")

#: How long one check waits for the broker's topic list.
CHECK_TIMEOUT_SECONDS = 5.0


class TopicKeeper:
    """Creates the worker's topics that are missing, with the worker's partition count (and
    compaction where asked), so a fresh cluster works without admin steps and a broker that comes
    back without them (a memory-only broker restarted, or topics deleted) is repaired without
    manual steps. Says once when Kafka is unreachable, and when it is back, with for how long.

    Topics are created here, not by a metadata request that happens to auto-create them (with
    the broker's default partition count)."""

    def __init__(self, broker: str, connection: dict[str, Any], partitions: int, topics: Iterable[str],
                 compacted: Iterable[str] = (), replication: Replication | None = None):
        self.broker = broker                 # for the log lines: the user's BLIPWATCH_BROKER
        self.connection = connection         # aiokafka connection settings (bootstrap, security)
        self.partitions = partitions
        self.topics = list(topics)
        self.compacted = set(compacted)
        self.replication = replication or Replication(1, 1)
        self.admin: AIOKafkaAdminClient | None = None
        self.kafka_down_since: float | None = None
        self.checked = False                 # a check has succeeded once: later misses are losses

    async def ensure(self) -> None:
        """Create what is missing; on failure log and keep going (the next check retries)."""
        try:
            if self.admin is None:
                self.admin = AIOKafkaAdminClient(request_timeout_ms=4000, **self.connection)
                await self.admin.start()
            existing = set(await asyncio.wait_for(self.admin.list_topics(), CHECK_TIMEOUT_SECONDS))
            missing = [topic for topic in self.topics if topic not in existing]
            if missing and self.checked:
                log.warning("blipwatch: topics %s are missing on %s (broker restarted or topics deleted); "
                            "creating them", ", ".join(missing), self.broker)
            elif missing:  # a fresh cluster: outputs nobody has written to yet
                log.info("blipwatch: creating topics %s (replication factor %d, min.insync.replicas %d)",
                         ", ".join(missing), self.replication.factor, self.replication.min_insync)
            if missing:
                await self.admin.create_topics([
                    NewTopic(topic, self.partitions, self.replication.factor, topic_configs={
                        **self.replication.topic_configs,
                        **({"cleanup.policy": "compact"} if topic in self.compacted else {})})
                    for topic in missing])
            self.checked = True
        except Exception as exc:
            if self.kafka_down_since is None:
                self.kafka_down_since = time.monotonic()
            down = time.monotonic() - self.kafka_down_since
            log.warning("blipwatch: Kafka at %s is unreachable for %.0f s (%s); retrying, state is kept",
                        self.broker, down, type(exc).__name__)
            await self.close()
            return
        if self.kafka_down_since is not None:
            log.warning("blipwatch: Kafka at %s is reachable again after %.0f s", self.broker,
                        time.monotonic() - self.kafka_down_since)
            self.kafka_down_since = None

    async def close(self) -> None:
        admin, self.admin = self.admin, None
        if admin is not None:
            try:
                await admin.close()
            except Exception:  # already broken: nothing to release
                pass


__all__ = ["TopicKeeper"]

"""How many copies of each topic the worker creates, and how many must acknowledge a write.

The partials topic holds the only copy of open windows and the changelog the only copy of detector
state: on a real cluster each needs replicas on other brokers. ``BLIPWATCH_REPLICATION_FACTOR``
(default 3) and ``BLIPWATCH_MIN_INSYNC_REPLICAS`` (default: the factor minus one, at least 1, at
most 2) apply to every topic the worker creates, Faust's included. Left at its default, the factor
is lowered to the number of brokers when the cluster has fewer (the embedded broker, a one-node
compose stack), with a log line saying so; set explicitly, it is used as given and a cluster too
small for it refuses the topics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from blipwatch.stream_app.config import Settings

log = logging.getLogger("blipwatch")

DEFAULT_FACTOR = 3


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int

    @property
    def topic_configs(self) -> dict[str, str]:
        """Topic settings for every topic the worker creates."""
        return {"min.insync.replicas": str(self.min_insync)}


def decide(settings: Settings, brokers: int | None) -> Replication:
    """The replication for ``settings`` on a cluster of ``brokers`` (None: not known).

    >>> decide(Settings(), 5), decide(Settings(), 1)
    (Replication(factor=3, min_insync=2), Replication(factor=1, min_insync=1))
    >>> decide(Settings(replication_factor=2), 1), decide(Settings(replication_factor=3, min_insync_replicas=3), 5)
    (Replication(factor=2, min_insync=1), Replication(factor=3, min_insync=3))
    >>> decide(Settings(embedded_broker=True), None)
    Replication(factor=1, min_insync=1)
    """
    factor = settings.replication_factor
    if not factor:
        factor = 1 if settings.embedded_broker else DEFAULT_FACTOR
        if brokers is not None and brokers < factor:
            factor = max(1, brokers)
    min_insync = settings.min_insync_replicas or max(1, min(2, factor - 1))
    return Replication(factor, min(min_insync, factor))


def count_brokers(settings: Settings, timeout_s: float = 10.0) -> int | None:
    """The number of brokers in the cluster, or None when it cannot be asked now."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(**settings.kafka_python_kwargs(), request_timeout_ms=int(timeout_s * 1000),
                                 bootstrap_timeout_ms=int(timeout_s * 1000), client_id=f"{settings.app_id}-replication")
    except Exception:  # noqa: BLE001 - unreachable: the worker reports and retries Kafka itself
        return None
    try:
        return len(admin.describe_cluster().get("brokers") or []) or None
    except Exception:  # noqa: BLE001
        return None
    finally:
        admin.close()


def for_cluster(settings: Settings) -> Replication:
    """``decide`` for the cluster ``settings`` point to, saying so when the default is lowered."""
    brokers = None
    if not settings.replication_factor and not settings.embedded_broker:
        brokers = count_brokers(settings)
        if brokers is None:
            log.warning("blipwatch: cannot count the brokers at %s; creating topics with replication factor %d",
                        settings.broker, DEFAULT_FACTOR)
    replication = decide(settings, brokers)
    if brokers is not None and replication.factor < DEFAULT_FACTOR:
        log.warning("blipwatch: the cluster at %s has %d broker(s): topics get replication factor %d instead of %d "
                    "(set BLIPWATCH_REPLICATION_FACTOR to choose)", settings.broker, brokers, replication.factor,
                    DEFAULT_FACTOR)
    log.info("blipwatch: topics are created with replication factor %d, min.insync.replicas %d",
             replication.factor, replication.min_insync)
    return replication

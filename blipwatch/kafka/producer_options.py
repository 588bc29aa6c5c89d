"""The producer's delivery settings beyond Faust's: idempotence where the broker has it.

Faust enables ``enable_idempotence`` only inside transactions. Without it, a batch whose request
timed out but was written is retried and written twice: the aggregate would merge those partials
twice. A real Kafka (0.11 and later) de-duplicates retries of an idempotent producer; the
embedded broker (Tansu 0.6) refuses aiokafka's InitProducerId, so it keeps the plain producer.
One decision, here; ``faust_compat.add_producer_options`` hands it to Faust's producer."""

from __future__ import annotations

from typing import Any


def producer_options(embedded_broker: bool) -> dict[str, Any]:
    """aiokafka producer options for the worker: idempotent unless the broker is the embedded one."""
    if embedded_broker:
        return {}
    return {"enable_idempotence": True}


def describe(options: dict[str, Any]) -> str:
    return "idempotent producer" if options.get("enable_idempotence") else \
        "plain producer (the embedded broker has no idempotent producer)"


__all__ = ["describe", "producer_options"]

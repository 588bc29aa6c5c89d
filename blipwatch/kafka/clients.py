"""Short-lived aiokafka clients: stopping them without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio


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


__all__ = ["stop_quietly"]

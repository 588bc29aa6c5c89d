"""What the worker reaches inside Faust 0.15 that Faust does not offer publicly.

- ``aiokafka_producer``: the ``AIOKafkaProducer`` behind ``app.producer`` (its private
  ``_ensure_producer``), for record batches of our own (``batches.BatchSender``) and for its
  metadata (``batches.track_topics``).
- ``before_tables_stop``: Faust calls ``App._consumer_wait_empty(consumer, logger)`` on stop, after
  its fetcher stopped and before its tables stop; the worker replaces it to finish the message in
  hand and commit (Faust's own, ``stream_wait_empty``, waits for every unacknowledged message:
  here open windows, which never end).
- ``committed_offset``: the offset Faust's consumer seeked a partition to on assignment
  (``Consumer._committed_offset``), where the aggregate resumes.
- ``forget_gaps``: Faust counts offsets it saw skipped as acknowledged (``Consumer._gap``, meant
  for compacted topics); after the aggregate seeks back, those offsets come again and are not.
- ``add_producer_options``: Faust builds its aiokafka producer from ``Producer._settings_extra()``
  (only ``enable_idempotence`` inside transactions); the worker adds its own options there
  (``producer_options``: the idempotent producer on a real Kafka).

Each is checked by tests/unit/test_kafka_compat.py, which names the internal when an upgrade moves it
(``add_producer_options`` by tests/unit/test_producer_options.py).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable


def aiokafka_producer(app: Any) -> Any:
    """The running ``aiokafka.AIOKafkaProducer`` of ``app.producer`` (Faust may replace it: ask each time)."""
    return app.producer._ensure_producer()  # noqa: SLF001


def add_producer_options(app: Any, options: dict[str, Any]) -> None:
    """Give Faust's aiokafka producer (built lazily, and again if Faust replaces it) ``options``."""
    if not options:
        return
    producer = app.producer
    base = producer._settings_extra  # noqa: SLF001

    def settings_extra() -> dict[str, Any]:
        return {**base(), **options}

    producer._settings_extra = settings_extra  # noqa: SLF001


def before_tables_stop(app: Any, callback: Callable[[Any, Any], Awaitable[None]]) -> None:
    """Run ``await callback(consumer, logger)`` when the app stops, instead of Faust's wait for empty streams."""
    app._consumer_wait_empty = callback  # noqa: SLF001


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The committed offset Faust's consumer set for ``tp`` on assignment (None if it set none)."""
    return getattr(consumer, "_committed_offset", {}).get(tp)


def forget_gaps(consumer: Any, tp: Any) -> None:
    """Forget the offsets of ``tp`` Faust took as skipped, so that they count once they come again."""
    gaps = getattr(consumer, "_gap", {}).get(tp)
    if gaps is not None:
        gaps.clear()


__all__ = ["add_producer_options", "aiokafka_producer", "before_tables_stop", "committed_offset", "forget_gaps"]

"""The alerts topic as a person follows it: read without a consumer group (``follow_alerts``), each
alert one readable line (``format_alert``).

``blipwatch alerts tail`` prints these lines and ``blipwatch demo`` builds its alert view from the
same pieces, so what a user sees in the demo is what on call sees later.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

from blipwatch.schemas.outputs import segment_label


# --- the line a person reads -------------------------------------------------------------------

def format_number(value: float | None) -> str:
    """Short and readable: rates with 2-3 decimals, counts as whole numbers.

    >>> format_number(0.7076), format_number(0.0123), format_number(1234.6), format_number(None)
    ('0.71', '0.012', '1,235', '?')
    """
    if value is None:
        return "?"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 0.1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.2g}" if size >= 0.001 else f"{value:.1e}"


def format_minute(text: str | None) -> str:
    """``2026-01-05T19:03:00Z`` as ``2026-01-05 19:03Z`` (alerts carry event time, in UTC)."""
    if not text:
        return "?"
    return text[:10] + " " + text[11:16] + "Z"


def observed_vs_expected(alert: dict[str, Any]) -> str:
    band = ""
    if alert.get("lower") is not None or alert.get("upper") is not None:
        band = f" ({format_number(alert.get('lower'))}–{format_number(alert.get('upper'))})"
    return f"observed {format_number(alert.get('observed'))} vs expected {format_number(alert.get('expected'))}{band}"


def format_alert(alert: dict[str, Any]) -> str:
    """One alert as one line: when, status, severity, what, where, how far off, and the summary.

    >>> print(format_alert({"status": "firing", "severity": "warning", "metric": "cart_abandonment_rate",
    ...     "segment": {"channel": "web"}, "window_end": "2026-01-05T19:03:00Z", "observed": 1.0,
    ...     "expected": 0.7076, "lower": 0.35, "upper": 1.0, "summary": "Cart abandonment rate is up"}))
    2026-01-05 19:03Z  FIRING    warning   cart_abandonment_rate  channel=web  observed 1.00 vs expected 0.71 (0.35–1.00)  Cart abandonment rate is up
    """
    return (f"{format_minute(alert.get('window_end'))}  {str(alert.get('status', '?')).upper():8}  "
            f"{alert.get('severity', '?'):8}  {alert.get('metric', '?')}  {segment_label(alert.get('segment') or {})}  "
            f"{observed_vs_expected(alert)}  {alert.get('summary', '')}")


# --- reading the topic ------------------------------------------------------------------------

class KafkaUnreachable(RuntimeError):
    """No broker answered at the configured address."""


def follow_alerts(settings, from_beginning: bool, stop: threading.Event | None = None,
                  poll_seconds: float = 0.2, connect_seconds: float = 10.0) -> Iterator[tuple[bytes, dict | None]]:
    """Yield ``(raw value, decoded alert or None)`` from the alerts topic until ``stop`` is set.

    No consumer group: partitions are assigned directly (no group join to wait for, no committed
    offsets). Waits for the topic to exist. Yields ``(b"", None)`` after every empty poll so the
    caller can check its own deadlines. A broker that does not answer within ``connect_seconds``
    raises :class:`KafkaUnreachable`.
    """
    import orjson
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    stop = stop or threading.Event()
    try:
        consumer = KafkaConsumer(**settings.kafka_python_kwargs(), group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest" if from_beginning else "latest",
                                 bootstrap_timeout_ms=max(int(connect_seconds * 1000), 1))
    except KafkaError:   # kafka-python 3 raises a timeout when it cannot bootstrap
        raise KafkaUnreachable(f"cannot reach Kafka at {settings.broker}: start it (e.g. `blipwatch broker`) "
                               "or set BLIPWATCH_BROKER") from None
    try:
        partitions = None
        while not partitions and not stop.is_set():
            partitions = consumer.partitions_for_topic(settings.alerts_topic)
            if not partitions:
                yield b"", None
                stop.wait(poll_seconds)
        if stop.is_set():
            return
        assigned = [TopicPartition(settings.alerts_topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if from_beginning:
            consumer.seek_to_beginning()
        else:
            consumer.seek_to_end()
        # The embedded broker's end offset can point inside the last record batch; its first
        # fetch's high watermark is right, so older records are skipped up to there.
        new_from: dict | None = {} if settings.embedded_broker and not from_beginning else None
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=int(poll_seconds * 1000))
            records = sorted((r for rs in batch.values() for r in rs), key=lambda r: (r.timestamp, r.offset))
            if new_from is not None:
                for partition in assigned:
                    if partition not in new_from and consumer.highwater(partition) is not None:
                        new_from[partition] = consumer.highwater(partition)
                records = [r for r in records
                           if r.offset >= new_from.get(TopicPartition(r.topic, r.partition), float("inf"))]
            if not records:
                yield b"", None
            for record in records:
                try:
                    alert = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    alert = None
                yield record.value, alert if isinstance(alert, dict) else None
    finally:
        consumer.close()

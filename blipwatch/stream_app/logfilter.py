"""Keep the worker's log readable while Kafka is away.

With the broker down, aiokafka and Faust log the same error for every retry of every connection,
fetch and commit — about 350 lines a second here. ``RepeatFilter`` lets the first of each kind
through and then at most one per ``interval`` seconds, with how many were held back; blipwatch's
own one-line warnings ("Kafka at ... is unreachable for N s") say what is going on.
"""

from __future__ import annotations

import logging
import time

#: Loggers whose retry chatter is throttled; blipwatch's own lines are never held back.
NOISY = ("aiokafka", "kafka", "faust.transport", "faust.tables", "mode")


class RepeatFilter(logging.Filter):
    """Let one record per (logger, message template) through per ``interval`` seconds.

    >>> f = RepeatFilter(interval=60)
    >>> record = lambda: logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, "Unable connect to node %s", (1,), None)
    >>> [f.filter(record()) for _ in range(3)]
    [True, False, False]
    """

    def __init__(self, interval: float = 30.0, noisy: tuple[str, ...] = NOISY):
        super().__init__()
        self.interval = interval
        self.noisy = noisy
        self.seen: dict[tuple[str, str], list[float]] = {}  # key -> [last let through, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.noisy):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        entry = self.seen.get(key)
        if entry is None or now - entry[0] >= self.interval:
            held = int(entry[1]) if entry else 0
            self.seen[key] = [now, 0]
            if len(self.seen) > 1000:  # bounded: message templates are few, but never grow forever
                self.seen = {key: self.seen[key]}
            if held:
                record.msg = f"{record.msg} [{held} more like this in the last {self.interval:.0f} s not shown]"
            record.exc_info = record.exc_info if not held else None
            return True
        entry[1] += 1
        return False


def install(logger: logging.Logger | None = None, interval: float = 30.0) -> RepeatFilter:
    """Add one shared filter to every handler of ``logger`` (the root logger by default)."""
    logger = logger or logging.getLogger()
    repeat = RepeatFilter(interval)
    for handler in logger.handlers:
        handler.addFilter(repeat)
    return repeat

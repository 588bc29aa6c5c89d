"""The partials message: what the ingest stage sends the aggregate stage on the internal topic
``blipwatch-metric-partials`` (``partials.schema.json`` describes it for other languages).

One ingest flush is one message per partials partition (several, in order, when one would be too
big for a Kafka record). A message carries the partial counts of the series routed to its
partition and the ingest's watermark report, so the aggregate stage sees event-time progress
even when a partition had no data::

    {"wm": {"0": 1767643560000, "1": null},   input partition -> its watermark (null: none yet)
     "total": 4,                              partitions of the input topic
     "at": 1767643561.25,                     the ingest's clock at the flush (alert latency)
     "src": "ingest-3f2a9c1d",                the ingest that sent it
     "from": {"0": 1100, "1": 850},           input partition -> first offset this flush covers
     "to": {"0": 1200, "1": 877},             input partition -> next offset this flush covers
     "jw": {"0": 1767643500000},              input partition -> watermark its journeys were decided to
     "part": 0,                               which piece of a flush split over several messages
     "s": {"event_volume|all": [[1767643500000, 42.0, 0.0], ...]}}   series -> [window, n, d]

``from`` and ``to`` are absent when the flush covered no offsets. Every piece of a split flush
carries them (the aggregate skips a piece it has merged already: ``Coverage``), with ``part``
its index; only the last carries the watermark report (``wm`` is ``{}`` on the others), so no
window closes before every piece of the flush is merged. ``jw`` (with funnel metrics only) says how
far this flush decided each input partition's journeys: a worker re-reading a killed owner's flush
decides them to the same point, so the funnel counts it adds equal the ones that flush had sent.

>>> [(partition, value)] = partial_messages({"event_volume|all": {1767643500000: [3.0, 0.0]}},
...                                         {0: 1767643560000}, 1, 1, "ingest-1", observed_at=1.5,
...                                         sent_to={0: 3})
>>> value
b'{"wm":{"0":1767643560000},"total":1,"at":1.5,"src":"ingest-1","to":{"0":3},"s":{"event_volume|all":[[1767643500000,3.0,0.0]]}}'
>>> decode_partials(value)
({0: 1767643560000}, 1, 1.5, {'event_volume|all': [[1767643500000, 3.0, 0.0]]})
>>> decode_covered(value)[4]
Coverage(start={}, end={0: 3}, part=0)
>>> sent_positions(sent_headers([value]), {0})
{0: 3}
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Largest partials message (bytes of JSON) before a flush splits a partition's series over several;
#: aiokafka refuses records over its max_request_size (1 MiB by default).
MAX_PARTIALS_BYTES = 512 * 1024

#: series key -> window start (ms) -> [numerator, denominator], as ``PartialAggregate.drain`` gives them
Partials = dict[str, dict[int, list[float]]]
#: series key -> [[window start, numerator, denominator], ...], as a message carries them
SeriesPartials = dict[str, list[list[float]]]


def partition_for(series: str, partitions: int) -> int:
    """Stable routing of a series to a partials partition (crc32: same in every process and run)."""
    return zlib.crc32(series.encode()) % partitions


def partial_messages(partials: Partials, report: dict[int, int | None], total_input_partitions: int,
                     partitions: int, source: str, observed_at: float | None = None,
                     sent_to: dict[int, int] | None = None,
                     max_bytes: int = MAX_PARTIALS_BYTES,
                     sent_from: dict[int, int] | None = None,
                     journey_watermarks: dict[int, int] | None = None) -> list[tuple[int, bytes]]:
    """One flush as ``(partials partition, message)``: one message per partition, or several, in
    order, when one would exceed ``max_bytes``.

    ``sent_to`` (input partition -> next offset) says which input offsets this flush covers, so a
    worker taking over an input partition knows what was sent but not committed, and the aggregate
    skips a message it has merged already; ``sent_from`` (input partition -> first offset) is
    where the flush starts; ``journey_watermarks`` (input partition -> ms) how far it decided the
    journeys of each input partition."""
    by_partition: list[SeriesPartials] = [{} for _ in range(partitions)]
    for series, windows in partials.items():
        by_partition[partition_for(series, partitions)][series] = [
            [window, cell[0], cell[1]] for window, cell in windows.items()]
    header: dict[str, Any] = {
        "wm": {str(p): v for p, v in report.items()},
        "total": total_input_partitions,
        "at": observed_at if observed_at is not None else time.time(),
        "src": source,
    }
    if sent_to:
        if sent_from:
            header["from"] = {str(p): offset for p, offset in sent_from.items()}
        header["to"] = {str(p): offset for p, offset in sent_to.items()}
    if journey_watermarks:
        header["jw"] = {str(p): watermark for p, watermark in journey_watermarks.items()}
    messages = []
    for p, series in enumerate(by_partition):
        value = orjson.dumps({**header, "s": series})
        if len(value) <= max_bytes or len(series) < 2:
            messages.append((p, value))
            continue
        # Too big for one Kafka record (the producer refuses > 1 MiB: the flush failed and its
        # partials were lost; seen with 10,000 series). Split the series over several messages in
        # the same partition, in order; only the last carries the watermark report, so no window
        # closes before every chunk of this flush is merged. Each carries the coverage and its
        # index ("part"): the aggregate skips a chunk it merged already when the flush is sent again.
        pieces = -(-len(value) // max_bytes) + 1
        items = list(series.items())
        step = -(-len(items) // pieces)
        chunks = [dict(items[i:i + step]) for i in range(0, len(items), step)]
        lead = {**header, "wm": {}}
        for part, chunk in enumerate(chunks[:-1]):
            messages.append((p, orjson.dumps({**lead, "part": part, "s": chunk})))
        messages.append((p, orjson.dumps({**header, "part": len(chunks) - 1, "s": chunks[-1]})))
    return messages


@dataclass
class Coverage:
    """Which input offsets one partials message carries the counts of: per input partition
    ``[start, end)`` (``start`` may be unknown: ``{}``), and its piece of a split flush (``part``).

    One input partition is read by one ingest at a time, in offset order, so per input partition
    the messages of a partials partition come in increasing ``(end, part)``; a flush sent again
    (after a failed send, or by the next owner of the input partition re-reading what a killed
    worker had sent) repeats ``(end, part)`` values already seen."""

    start: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)
    part: int = 0

    def merged_in(self, merged: "dict[int, tuple[int, int]]") -> bool:
        """Every input partition it covers is covered already by ``merged`` (input partition ->
        the highest ``(end, part)`` merged); False for a message covering nothing (a report)."""
        part = self.part
        return bool(self.end) and all(
            (end, part) <= merged.get(partition, (-1, -1)) for partition, end in self.end.items())

    def overlaps(self, merged: "dict[int, tuple[int, int]]") -> bool:
        """Part of it merged already and part not: the counts of both halves cannot be told apart."""
        return any(self.start.get(partition, end) < merged.get(partition, (-1, -1))[0] < end
                   for partition, end in self.end.items())

    def add_to(self, merged: "dict[int, tuple[int, int]]") -> None:
        part = self.part
        for partition, end in self.end.items():
            if (end, part) > merged.get(partition, (-1, -1)):
                merged[partition] = (end, part)


def decode_covered(value: bytes) -> tuple[dict[int, int | None], int, float, SeriesPartials, Coverage]:
    """``decode_partials`` and the message's ``Coverage``."""
    document = orjson.loads(value)
    report = {int(p): v for p, v in document.get("wm", {}).items()}
    coverage = Coverage({int(p): int(o) for p, o in (document.get("from") or {}).items()},
                        {int(p): int(o) for p, o in (document.get("to") or {}).items()},
                        int(document.get("part", 0)))
    return (report, int(document.get("total", 0)), float(document.get("at", 0.0)), document.get("s", {}),
            coverage)


def decode_partials(value: bytes) -> tuple[dict[int, int | None], int, float, SeriesPartials]:
    """What the aggregate stage reads of a message: watermark report (input partition ->
    watermark), input partitions, the flush's clock, and the series' ``[window, n, d]``."""
    return decode_covered(value)[:4]


@dataclass(frozen=True)
class SentHeader:
    """What a takeover reads of one partials message, keys as input partitions: the next offset
    its flush covered (``to``), the event-time progress it reported (``wm``; idle partitions, which
    report nothing, are absent) and how far it decided journeys (``jw``)."""

    to: dict[int, int]
    wm: dict[int, int]
    jw: dict[int, int]


def sent_header(value: bytes) -> SentHeader | None:
    """The header of a partials message, decoded once; None for bytes that are not one (a
    takeover never stops on a foreign record)."""
    try:
        document = orjson.loads(value)
        return SentHeader({int(p): int(o) for p, o in (document.get("to") or {}).items()},
                          {int(p): int(w) for p, w in (document.get("wm") or {}).items() if w is not None},
                          {int(p): int(w) for p, w in (document.get("jw") or {}).items() if w is not None})
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None


def sent_headers(values: list[bytes]) -> list[SentHeader]:
    """The headers of those of ``values`` that are partials messages, in order."""
    return [header for header in map(sent_header, values) if header is not None]


def sent_positions(headers: list[SentHeader], input_partitions: set[int]) -> dict[int, int]:
    """Per input partition, the furthest offset any flush among these partials messages covered."""
    furthest: dict[int, int] = {}
    for header in headers:
        for partition, offset in header.to.items():
            if partition in input_partitions and offset > furthest.get(partition, -1):
                furthest[partition] = offset
    return furthest


def sent_journey_watermarks(headers: list[SentHeader], bounds: dict[int, int]) -> dict[int, int]:
    """Per input partition in ``bounds`` (partition -> offset), how far the flush that covered it up
    to that offset decided its journeys (``jw``); absent where no such message says.

    >>> [(_, value)] = partial_messages({}, {0: 5}, 1, 1, "ingest-1", sent_to={0: 9}, journey_watermarks={0: 7})
    >>> sent_journey_watermarks(sent_headers([value]), {0: 9}), sent_journey_watermarks(sent_headers([value]), {0: 12})
    ({0: 7}, {})
    """
    found: dict[int, int] = {}
    for header in headers:
        for partition, offset in bounds.items():
            watermark = header.jw.get(partition)
            if watermark is not None and header.to.get(partition) == offset:
                found[partition] = max(watermark, found.get(partition, watermark))
    return found


def reported_progress(headers: list[SentHeader], input_partitions: set[int]) -> dict[int, int]:
    """Per input partition, the furthest event-time progress any of these partials messages
    reported for it (``wm``; idle reports say nothing): how far its previous owners had read.

    >>> [(_, value)] = partial_messages({}, {0: 5, 1: None}, 2, 1, "ingest-1")
    >>> reported_progress(sent_headers([value, b"not json"]), {0, 1})
    {0: 5}
    """
    found: dict[int, int] = {}
    for header in headers:
        for partition, watermark in header.wm.items():
            if partition in input_partitions:
                found[partition] = max(watermark, found.get(partition, watermark))
    return found


__all__ = ["MAX_PARTIALS_BYTES", "Coverage", "SentHeader", "decode_covered", "decode_partials",
           "partial_messages", "partition_for", "reported_progress", "sent_header", "sent_headers",
           "sent_journey_watermarks", "sent_positions"]

"""The ingest's consumer gets aiokafka's own records, not a ``ConsumerRecord`` built for each.

For every record it returns, aiokafka (0.14, pinned) builds a ``ConsumerRecord`` of eleven fields
in Python (``PartitionRecords._consumer_record``): ~0.4 µs of CPU an event, a tenth of what the
whole ingest costs an event (tests/benchmarks/raw_records_bench.py). The ingest reads three of
those fields, ``key``, ``value`` and ``offset``, and the record aiokafka decoded from the fetch
(its C ``DefaultRecord``, or the pure-Python one without the extension) has them already.

A consumer asks for that by passing ``value_deserializer=RAW_RECORDS``; every other consumer in
the process (Faust's, the bench's, ``alerts tail``'s) keeps getting ``ConsumerRecord``s. The
choice is made once per fetched partition, where aiokafka builds its ``PartitionRecords``: only
that name in ``aiokafka.consumer.fetcher`` is replaced, by ``install()``. Positions, commits and
transaction markers stay aiokafka's: they read the batch and ``next_fetch_offset``, never the
records handed out. Recheck on an aiokafka upgrade (tests/integration/test_raw_records.py fails if the
hook no longer takes).
"""

from __future__ import annotations

from aiokafka.consumer import fetcher


def RAW_RECORDS(value: bytes | None) -> bytes | None:  # noqa: N802  (a marker, named as a constant)
    """The marker a consumer passes as ``value_deserializer`` to get aiokafka's records as they are.
    aiokafka never calls it (those records are not passed through a deserializer)."""
    return value


_STANDARD = fetcher.PartitionRecords


class _RawPartitionRecords(_STANDARD):
    def _consumer_record(self, tp, record):
        return record

    def __iter__(self):
        # FetchResult.getall iterates over this object: hand it aiokafka's generator itself, so
        # each record skips the Python-level __next__ around it (~0.1 µs). __next__ (getone) is
        # unchanged; a generator that has finished lets go of its frame, so no cycle is left.
        records = self._records_iterator
        return records if records is not None else iter(())


def _partition_records(tp, records, aborted_transactions, fetch_offset, key_deserializer, value_deserializer,
                       check_crcs, isolation_level):
    kind = _RawPartitionRecords if value_deserializer is RAW_RECORDS else _STANDARD
    return kind(tp, records, aborted_transactions, fetch_offset, key_deserializer, value_deserializer,
                check_crcs, isolation_level)


def install() -> None:
    """Make consumers created with ``value_deserializer=RAW_RECORDS`` return aiokafka's records."""
    fetcher.PartitionRecords = _partition_records

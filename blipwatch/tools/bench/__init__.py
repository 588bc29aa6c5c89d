"""``blipwatch bench``: end-to-end events/s through a real worker beside a bare consumer, one run.

The run, on the embedded broker (free port, memory only), one module per phase:

1. ``workload``: N simulated events spread over about S series, checked offline with the worker's
   own ingest code (how many series and windows to expect). Not timed.
2. ``topics``: the events written to a 4-partition topic. Not timed.
3. ``bare``: the ceiling, an aiokafka consumer decoding every event in a process of its own.
4. ``worker``: ``blipwatch worker`` subprocesses timed from their first ingest assignment to every
   event counted and every window the events close scored.
5. ``live``: a fresh worker, the demo scenario sent paced, seconds from window close to alert read.

``run`` runs them in order and writes the report; ``figures`` turns what is read off a worker
(``/metrics``, ``/proc``) into numbers. Every Kafka client here talks only to the embedded broker
the run starts.
"""

from __future__ import annotations

from typing import Callable

#: Partitions of every topic the bench creates (and of the workers' own, BLIPWATCH_PARTITIONS).
PARTITIONS = 4

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A ``Progress`` that says nothing."""


class BenchError(RuntimeError):
    """The benchmark could not complete; the message says where it stopped."""

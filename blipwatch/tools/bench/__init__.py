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

import subprocess
from typing import Callable

#: Partitions of every topic the bench creates (and of the workers' own, BLIPWATCH_PARTITIONS).
PARTITIONS = 4

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A ``Progress`` that says nothing."""


class BenchError(RuntimeError):
    """The benchmark could not complete; the message says where it stopped."""


#: how much of a failed subprocess's stderr the error carries (its end: the traceback's last lines)
STDERR_TAIL = 4000


def measured(command: list[str], what: str, error: type[BaseException] = SystemExit, **options) -> str:
    """Run one measuring subprocess (a child of a benchmark, maybe under another tree) and return
    its stdout. When it fails, or outlasts its ``timeout``, raise ``error`` saying ``what`` failed,
    ending with the end of its stderr: a bare ``CalledProcessError`` loses why (a ``--baseline``
    tree without a module the child imports, say). The default, ``SystemExit``, ends a benchmark
    script with that message on stderr and status 1, no traceback (brokers and temporary folders
    are still closed on the way out); ``blipwatch bench`` passes ``BenchError``. ``options`` go to
    ``subprocess.run``. A script whose children run an older tree imports this in the parent only.

    >>> import sys
    >>> measured([sys.executable, "-c", "print(6 * 7)"], "the answer")
    '42\\n'
    """
    try:
        done = subprocess.run(command, capture_output=True, text=True, **options)
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise error(f"{what} did not finish within {exc.timeout:g} s; its stderr:\n{said[-STDERR_TAIL:]}") from None
    if done.returncode != 0:
        raise error(f"{what} failed (exit status {done.returncode}); its stderr:\n{done.stderr[-STDERR_TAIL:]}")
    return done.stdout

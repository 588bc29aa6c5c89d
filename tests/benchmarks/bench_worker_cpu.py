"""``blipwatch bench``, also printing each worker's CPU time (utime + stime from /proc, all its
threads) when the bench stops it: start-up and the 10 s idle wait included, so compare trees, not
absolute figures. On a shared machine the wall-clock figures of ``bench`` move a lot; CPU moves less.

    cd /tmp && PYTHONPATH=/tmp/tree $REPO/.venv/bin/python $REPO/tests/benchmarks/bench_worker_cpu.py --events 300000 --live-seconds 0

Run from outside the repository: ``PYTHONPATH`` picks the tree (bench and worker alike).
"""

from __future__ import annotations

import os
import sys

from blipwatch.tools.bench import worker
from blipwatch.stream_app.cli import main

original_stop = worker.WorkerProcess.stop


def stop(self) -> None:
    try:
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        print(f"  worker CPU time at stop              {cpu:8.2f} s  ({worker.__file__})", flush=True)
    except OSError as exc:
        print(f"  worker CPU time: not read ({exc})", flush=True)
    original_stop(self)


worker.WorkerProcess.stop = stop

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

"""A benchmark's measuring subprocess that fails says why: ``tools.bench.measured`` carries the end
of its stderr into the error (a script's exit, or ``BenchError`` for ``blipwatch bench``), and a
benchmark run against a broken ``--baseline`` tree ends with that message, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blipwatch.tools.bench import STDERR_TAIL, BenchError, measured

ROOT = Path(__file__).resolve().parents[2]


def test_a_failed_child_ends_the_script_with_its_stderr():
    with pytest.raises(SystemExit) as raised:
        measured([sys.executable, "-c", "import sys; print('half a figure'); sys.exit('no module blipwatch.x')"],
                 "measuring /tmp/old")
    message = str(raised.value.code)
    assert message.startswith("measuring /tmp/old failed (exit status 1)") and message.endswith("no module blipwatch.x\n")


def test_blipwatch_bench_gets_a_bench_error_and_only_the_end_of_a_long_stderr():
    noise = "x" * (3 * STDERR_TAIL)
    with pytest.raises(BenchError) as raised:
        measured([sys.executable, "-c", f"import sys; sys.stderr.write('{noise}'); raise KeyError('last words')"],
                 "the bare consumer", BenchError)
    message = str(raised.value)
    assert "KeyError: 'last words'" in message and len(message) < STDERR_TAIL + 200


def test_a_child_that_outlasts_its_timeout_is_stopped_and_says_so():
    script = "import sys, time; sys.stderr.write('waiting for the broker'); sys.stderr.flush(); time.sleep(60)"
    with pytest.raises(BenchError, match=r"did not finish within 1 s; its stderr:\nwaiting for the broker"):
        measured([sys.executable, "-c", script], "the consumer", BenchError, timeout=1)


def test_a_benchmark_against_a_broken_baseline_tree_says_why(tmp_path):
    (tmp_path / "blipwatch").mkdir()
    (tmp_path / "blipwatch" / "__init__.py").write_text("raise ImportError('this tree is broken')\n")
    done = subprocess.run([sys.executable, str(ROOT / "tests/benchmarks/ingest_bench.py"), "--baseline",
                           str(tmp_path), "--events", "100", "--repeat", "1", "--rounds", "1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert f"measuring {tmp_path} failed (exit status 1)" in done.stderr
    assert "ImportError: this tree is broken" in done.stderr and "Traceback" in done.stderr
    # the child's traceback, not the script's own
    assert done.stderr.count("Traceback") == 1 and "CalledProcessError" not in done.stderr

"""The worker's import graph holds only what the worker runs: nothing from ``blipwatch.tools`` (the
bench, the demo, the simulator, the evaluation, the dashboards' generator).

Checked in a fresh interpreter, where ``sys.modules`` starts empty of blipwatch: the command line
as ``blipwatch worker`` builds it, the app module, and every module of the packages the worker is
made of (what a lazy import inside a function would load later).
"""

from __future__ import annotations

import json
import subprocess
import sys

WORKER_PACKAGES = ("blipwatch.stream_app", "blipwatch.pipeline", "blipwatch.detectors", "blipwatch.kafka",
                   "blipwatch.schemas")

PROBE = """
import importlib, json, pkgutil, sys
from blipwatch.stream_app import cli
cli.build_parser()   # every command module, as `blipwatch worker` starts
import blipwatch.stream_app.app, blipwatch.stream_app.commands.worker
loaded = set(sys.modules)
for name in %r:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
print(json.dumps({"worker": sorted(m for m in loaded if m.startswith("blipwatch")),
                  "all": sorted(m for m in sys.modules if m.startswith("blipwatch"))}))
""" % (WORKER_PACKAGES,)


def _modules() -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_worker_imports_nothing_from_the_tools():
    modules = _modules()
    assert "blipwatch.stream_app.app" in modules["worker"] and "blipwatch.detectors" in modules["all"]
    assert [m for m in modules["worker"] if m.startswith("blipwatch.tools")] == []
    # nor does any module of the worker's packages, loaded in full
    assert [m for m in modules["all"] if m.startswith("blipwatch.tools")] == []

"""``blipwatch demo``: the whole service on one machine, for a user's first minute.

Starts the embedded broker, one ``blipwatch worker`` (logs to a temp dir, not the screen) and a
simulator thread sending a scenario's events to Kafka, paced so that hours of event time pass in
a couple of wall-clock minutes. Shows a live status line read from the worker's ``/metrics`` and
every alert from the alerts topic as it fires and resolves. Then stops sending, waits for the
worker's idle flush to close the last windows, prints a summary (was the injected incident caught,
and how many windows after its onset), stops everything it started, and returns 0.

Every child runs in its own process group and is stopped in a ``finally``: Ctrl-C (or SIGTERM)
at any moment leaves nothing behind.

The parts: ``traffic`` (what is sent, and the thread that sends it paced), ``readings`` (the
worker's numbers), ``screen`` (the status line and the lines above it), ``run`` (the run itself,
its alert view and its summary).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Why these differ from the service's defaults is printed at the start of every demo.
DEMO_SESSIONS_PER_MINUTE = 150.0   # ~30 web carts per window: the spike is caught within ~5 windows (replay, seeds 0-3)
DEMO_WARMUP_WINDOWS = 30           # the shipped policy waits 120 windows (2 h of event time) before alerting
#: the demo's traffic is a real tracker's format: funnels come from journeys, no outcome events are sent
DEMO_TRACKER = "segment"


class DemoError(RuntimeError):
    """The demo could not run; the message says what went wrong and where to look."""


@dataclass
class Options:
    scenario: str = "demo"
    duration: float = 150.0          # wall-clock seconds, start to summary
    rate: float | None = None        # events per second; default: paced to fit the event time into duration
    sessions_per_minute: float = DEMO_SESSIONS_PER_MINUTE
    seed: int = 0
    warmup: int = DEMO_WARMUP_WINDOWS
    tracker: str = DEMO_TRACKER      # the events' format (the worker's BLIPWATCH_INPUT_PRESET)
    keep: bool = False

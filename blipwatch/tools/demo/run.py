"""The demo's run: services started, traffic sent and watched, alerts shown as they come, the
summary, and everything it started stopped (``run``)."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from blipwatch.schemas.outputs import segment_label
from blipwatch.stream_app.config import Settings
from blipwatch.stream_app.embedded_broker import EmbeddedBroker, free_port
from blipwatch.tools.alert_feed import follow_alerts, observed_vs_expected
from blipwatch.tools.demo import DemoError, Options
from blipwatch.tools.demo.readings import Reading, scrape
from blipwatch.tools.demo.screen import Screen, hhmm, short
from blipwatch.tools.demo.traffic import Sender, plan
from blipwatch.tools.simulator import DEFAULT_SESSIONS_PER_MINUTE

IDLE_FLUSH_SECONDS = 12.0          # the worker flushes every window after 10 s without input
WORKER_READY_SECONDS = 90.0
WORKER_STOP_SECONDS = 8.0
PACE_SHARE = 0.85                  # of the sending time the event time is paced to fill


class Demo:
    def __init__(self, options: Options, out: TextIO = sys.stdout):
        self.options = options
        self.screen = Screen(out)
        self.began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="blipwatch-demo-"))
        self.stop = threading.Event()
        self.broker: EmbeddedBroker | None = None
        self.worker: subprocess.Popen | None = None
        self.worker_log = self.workdir / "worker.log"
        self.sender: Sender | None = None
        self.alerts: list[dict] = []
        self.alert_queue: queue.Queue = queue.Queue()
        self.reading = Reading()
        self.previous = Reading()
        self.failed = False
        self.keep_logs = False
        self.interrupted = False

    # the whole run ----------------------------------------------------------------------------

    def run(self) -> int:
        from blipwatch.tools.simulator import ScenarioError, run_labels

        options = self.options
        try:
            arguments = plan(options.scenario, options.sessions_per_minute, options.seed)
            self.labels = run_labels(**arguments)
        except ScenarioError as exc:
            raise DemoError(str(exc)) from None
        try:
            self._introduce(arguments)
            settings = self._start_services()
            self._send_and_watch(settings, arguments)
            self._drain()
            self.screen.clear_status()
            self._summarise()
            return 0
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        except BaseException:
            self.failed = True   # keep the logs: they say why
            raise
        finally:
            self.screen.clear_status()
            self._shutdown()

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def _introduce(self, arguments: dict[str, Any]) -> None:
        options, labels, say = self.options, self.labels, self.screen.line
        hours = labels["hours"]
        say(f"blipwatch demo: scenario {options.scenario!r}: {labels['description']}")
        say(f"  event time {labels['start'][:16].replace('T', ' ')}Z .. {hhmm(labels['end'])}, {hours:g} h "
            f"of simulated traffic, sent in about {self._send_budget_estimate():.0f} s of wall-clock time")
        for incident in labels["incidents"]:
            say(f"  injected: {incident['name']} on {segment_label(incident['segment'] or {})} at "
                f"{hhmm(incident['start'])}..{hhmm(incident['end'])} ({incident['description']}); "
                f"watch {', '.join(incident['metrics'])}")
        say("  demo settings (the service's defaults differ):")
        if options.warmup != 120:
            say(f"    - alert warm-up {options.warmup} windows instead of 120 (BLIPWATCH_CONFIG policy.warmup), "
                f"so detectors may alert after {options.warmup} simulated minutes")
        if options.sessions_per_minute != DEFAULT_SESSIONS_PER_MINUTE:
            say(f"    - {options.sessions_per_minute:g} sessions/min instead of the simulator's "
                f"{DEFAULT_SESSIONS_PER_MINUTE:g}, so hours of event time fit into the run and one worker on "
                "this machine keeps up")
        say("    - simulated time runs much faster than the clock; windows close on event time, as in production")
        if options.tracker != "blipwatch":
            say(f"  events are sent as {options.tracker} sends them (BLIPWATCH_INPUT_PRESET={options.tracker}): no "
                "cart_abandoned event; cart abandonment and checkout conversion come from journeys, each point "
                "scored once its 30 minutes have passed (checkout_unconverted_5m: 5 minutes)")
        say()

    def _send_budget_estimate(self) -> float:
        return max(10.0, self.options.duration - 10.0 - IDLE_FLUSH_SECONDS - 5.0)

    def _start_services(self) -> Settings:
        say = self.screen.line
        config = self.workdir / "demo-config.yaml"
        config.write_text(f"# written by blipwatch demo\npolicy:\n  warmup: {self.options.warmup}\n")
        self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log")   # assigned first: Ctrl-C may come mid-start
        self.broker.start()
        web_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLIPWATCH_")}
        env.update(BLIPWATCH_BROKER=self.broker.url, BLIPWATCH_EMBEDDED_BROKER="1",
                   BLIPWATCH_WEB_PORT=str(web_port), BLIPWATCH_DATA_DIR=str(self.workdir / "worker-data"),
                   BLIPWATCH_CONFIG=str(config), BLIPWATCH_INPUT_PRESET=self.options.tracker, PYTHONUNBUFFERED="1")
        settings = Settings.from_env(env)
        say(f"started the embedded broker at {self.broker.url}")
        with open(self.worker_log, "ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "blipwatch.stream_app.cli", "worker"], env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.metrics_url = f"http://127.0.0.1:{web_port}/metrics"
        deadline = time.monotonic() + WORKER_READY_SECONDS
        while True:
            self._check_worker()
            text = self.worker_log.read_text(errors="replace")
            if "ingest: consuming" in text and "Worker ready" in text:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"the worker was not ready within {WORKER_READY_SECONDS:.0f} s; "
                                f"its log: {self.worker_log}")
            self.screen.set_status(f"starting a worker ({self.elapsed():.0f} s) ...")
            time.sleep(0.2)
        self.screen.clear_status()
        say(f"started a worker (ready in {self.elapsed():.0f} s; metrics {self.metrics_url}, "
            f"log {self.worker_log})")
        threading.Thread(target=self._read_alerts, args=(settings,), name="demo-alerts", daemon=True).start()
        return settings

    def _send_and_watch(self, settings: Settings, arguments: dict[str, Any]) -> None:
        options = self.options
        budget = options.duration - self.elapsed() - IDLE_FLUSH_SECONDS - 5.0
        if budget < 5:
            raise DemoError(f"--duration {options.duration:g} leaves no time to send events after "
                            f"{self.elapsed():.0f} s of start-up: give it at least 60")
        event_seconds = self.labels["hours"] * 3600
        # aim to finish early: on 2 busy cores the sender falls behind its pace now and then
        speed = None if options.rate else event_seconds / (budget * PACE_SHARE)
        self.sender = Sender(settings, arguments, self.stop, time.monotonic() + budget, speed=speed, rate=options.rate,
                             tracker=options.tracker)
        pace = f"{options.rate:,.0f} events/s" if options.rate else f"{speed:,.0f}x real time"
        self.screen.line(f"sending {options.scenario!r} to {settings.events_topic} at {pace} "
                         f"(for at most {budget:.0f} s)")
        self.screen.line()
        self.sender.start()
        while self.sender.is_alive():
            self._tick()
            time.sleep(0.25)
        if self.sender.error is not None:
            raise DemoError(f"sending events failed: {self.sender.error!r}")

    def _drain(self) -> None:
        """Until the worker has read everything and its idle flush has closed the last windows."""
        sender = self.sender
        hard_deadline = time.monotonic() + max(30.0, IDLE_FLUSH_SECONDS * 2.5)
        stable_since, windows = time.monotonic(), -1.0
        while time.monotonic() < hard_deadline:
            self._tick(phase="waiting for the last windows to close")
            caught_up = self.reading.events >= sender.sent
            if self.reading.windows != windows:
                windows, stable_since = self.reading.windows, time.monotonic()
            idle_long_enough = time.monotonic() - sender.finished_at >= IDLE_FLUSH_SECONDS
            if caught_up and idle_long_enough and time.monotonic() - stable_since >= 1.5:
                break
            time.sleep(0.25)
        time.sleep(0.5)   # the last alert's way from the worker to the alerts topic to us
        self._tick()

    # the live view ------------------------------------------------------------------------------

    def _tick(self, phase: str = "") -> None:
        self._check_worker()
        while True:
            try:
                alert = self.alert_queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(alert, str):
                self.screen.line(alert)
                continue
            self.alerts.append(alert)
            self._show_alert(alert)
        if time.monotonic() - self.reading.at >= 1.0:
            try:
                reading = scrape(self.metrics_url)
            except OSError:
                reading = None
            if reading is not None:
                self.previous, self.reading = self.reading, reading
        self.screen.set_status(self._status(phase))

    def _status(self, phase: str) -> str:
        reading, previous, sender = self.reading, self.previous, self.sender
        rate = 0.0
        if previous.at and reading.at > previous.at:
            rate = (reading.events - previous.events) / (reading.at - previous.at)
        fired = int(reading.alerts.get("firing", 0))
        resolved = int(reading.alerts.get("resolved", 0))
        text = (f"[{self.elapsed():4.0f} s] event time {hhmm(sender.event_time) if sender else '--:--'}  "
                f"{rate:6,.0f} events/s  {short(reading.windows)} windows scored  {reading.series:,.0f} series  "
                f"alerts: {fired} fired, {resolved} resolved  {short(reading.events)} events")
        return f"{text}  ({phase})" if phase else text

    def _show_alert(self, alert: dict) -> None:
        status = alert.get("status", "?")
        when = hhmm(alert.get("window_end") or "")
        if status == "firing":
            head = self.screen.color(f"ALERT FIRING   {when}", "1;31")
        else:
            head = self.screen.color(f"ALERT RESOLVED {when}", "1;32")
        what = f"{alert.get('metric')} on {segment_label(alert.get('segment') or {})} ({alert.get('severity')})"
        self.screen.line(f"{head}  {what}")
        self.screen.line(f"    {alert.get('summary', '')}")
        line = f"    {observed_vs_expected(alert)}"
        if alert.get("numerator") is not None and alert.get("denominator") is not None:
            line += f"; {alert['numerator']:,.0f} of {alert['denominator']:,.0f} in the window"
        for incident in self.labels["incidents"]:
            if status == "firing" and alert.get("metric") in incident["metrics"]:
                onset = _ms(incident["start"])
                end = _ms(alert.get("window_end") or "")
                if onset is not None and end is not None and end > onset:
                    windows = (end - onset) / 60_000
                    line += f"; {windows:.0f} window{'' if windows == 1 else 's'} after {incident['name']} began"
        self.screen.line(line)

    def _read_alerts(self, settings: Settings) -> None:
        try:
            for raw, alert in follow_alerts(settings, from_beginning=True, stop=self.stop):
                if alert is not None:
                    self.alert_queue.put(alert)
        except Exception as exc:  # the demo still runs; the status line has the worker's counters
            self.alert_queue.put(f"cannot read the alerts topic: {exc!r}")

    def _check_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is not None:
            tail = self.worker_log.read_text(errors="replace").splitlines()[-15:]
            raise DemoError(f"the worker exited with code {self.worker.returncode}; the end of its log "
                            f"({self.worker_log}):\n" + "\n".join(tail))

    # the end ------------------------------------------------------------------------------------

    def _summarise(self) -> None:
        from blipwatch.tools.evaluation import evaluate

        say, sender, reading, labels = self.screen.line, self.sender, self.reading, self.labels
        say()
        say(self.screen.color("Summary", "1"))
        reached = (sender.event_time or labels["start"]) if sender.cut_short or sender.stop.is_set() else labels["end"]
        say(f"  sent      {sender.sent:,} events, event time {hhmm(labels['start'])}..{hhmm(reached)}"
            + (" (the --duration ran out first)" if sender.cut_short else ""))
        say(f"  worker    {reading.events:,.0f} events, {reading.windows:,.0f} windows scored, "
            f"{reading.series:,.0f} series, {reading.alert_messages} alert messages "
            f"({int(reading.alerts.get('firing', 0))} firing, {int(reading.alerts.get('resolved', 0))} resolved)")
        if reading.events < sender.sent:
            self.keep_logs = True
            say(f"  WARNING   the worker read only {reading.events:,.0f} of the {sender.sent:,} events sent; "
                f"its log is kept: {self.worker_log}")
        report = evaluate(self.alerts, labels)
        for result in report["incidents"]:
            where = f"{result['name']} on {segment_label(result['segment'] or {})} at {hhmm(result['start'])}"
            if result["start"] > reached:
                say(f"  incident  {where}: not reached (sending stopped at {hhmm(reached)})")
            elif not result.get("expect_alert", True):
                count = result.get("false_alerts_during") or 0
                say(f"  incident  {where}: must not alert; {count} alerts fired during it")
            elif result.get("detected"):
                first = result.get("first_alert") or {}
                delay = result["delay_windows"]
                say(f"  incident  {where}: " + self.screen.color("CAUGHT", "1;32") +
                    f" {delay:g} window{'' if delay == 1 else 's'} after onset, by {first.get('metric')} "
                    f"{first.get('direction', '')} on {segment_label(first.get('segment') or {})}")
            else:
                say(f"  incident  {where}: " + self.screen.color("MISSED", "1;31") +
                    " (no alert on " + ", ".join(result["metrics"]) + ")")
        false_alerts = report.get("false_alert_list") or []
        if false_alerts:
            say(f"  other     {len(false_alerts)} alerts matching no injected incident: " + "; ".join(
                f"{a.get('metric')} on {segment_label(a.get('segment') or {})}" for a in false_alerts[:5]))
        say(f"  took      {self.elapsed():.0f} s; more: `blipwatch simulate --list-scenarios`, "
            "`blipwatch demo --scenario NAME`, `blipwatch alerts tail`")

    def _shutdown(self) -> None:
        self.stop.set()
        # a second Ctrl-C must not cut the clean-up short and leave children behind
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._stop_children()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_children(self) -> None:
        stopped = []
        worker, self.worker = self.worker, None
        if worker is not None:
            stop_process_group(worker, 3.0 if self.failed or self.interrupted else WORKER_STOP_SECONDS)
            stopped.append("worker")
        if self.broker is not None:
            self.broker.stop(timeout=3.0)
            self.broker = None
            stopped.append("broker")
        if self.sender is not None:
            self.sender.join(timeout=2)
        kept = self.options.keep or self.keep_logs or (self.failed and self.worker_log.exists())
        if kept:
            shutil.rmtree(self.workdir / "worker-data", ignore_errors=True)
            where = f"; logs kept in {self.workdir}"
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
            where = ""
        if stopped:
            self.screen.line(f"stopped the {' and the '.join(stopped)}{where}")


def _ms(text: str) -> float | None:
    from blipwatch.schemas.outputs import ms_from_iso

    try:
        return ms_from_iso(text)
    except ValueError:
        return None


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to the child's process group, SIGKILL after ``timeout``; leaves no member behind."""
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        group = None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if group is not None:
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                return
        try:
            process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if group is not None:   # anything the worker itself started
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(options: Options, out: TextIO = sys.stdout) -> int:
    """Runs the demo; SIGTERM and SIGHUP stop it like Ctrl-C does."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    demo = Demo(options, out)
    try:
        return demo.run()
    except KeyboardInterrupt:
        out.write("\nblipwatch demo: interrupted; everything it started is stopped\n")
        out.flush()
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

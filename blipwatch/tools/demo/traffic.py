"""The demo's traffic: a scenario cut to its incident (``plan``) and the thread that sends its
events to Kafka, paced by event time or by a rate (``Sender``)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from blipwatch.stream_app.config import Settings

LEAD_HOURS = 2.0                   # normal traffic before a scenario's incident
AFTER_HOURS = 0.5                  # and after its end, to see it resolve


def plan(scenario: str, sessions_per_minute: float, seed: int) -> dict[str, Any]:
    """``generate_events`` arguments: for a one-incident scenario, the incident with LEAD_HOURS of
    normal traffic before it and AFTER_HOURS after it (not the scenario's 36 h); otherwise the
    whole scenario.

    >>> p = plan("demo", 400, 0)
    >>> p["start"].isoformat(), p["hours"], p["incident_offset_hours"]
    ('2026-01-05T17:00:00+00:00', 3.0, 2.0)
    """
    from blipwatch.tools.simulator import parse_time, scenario_labels

    arguments: dict[str, Any] = dict(scenario=scenario, seed=seed, sessions_per_minute=sessions_per_minute)
    labels = scenario_labels(scenario)
    if len(labels) == 1:
        onset, end = parse_time(labels[0]["start"]), parse_time(labels[0]["end"])
        arguments.update(start=onset - timedelta(hours=LEAD_HOURS), incident_offset_hours=LEAD_HOURS,
                         hours=LEAD_HOURS + (end - onset).total_seconds() / 3600 + AFTER_HOURS)
    return arguments


class Sender(threading.Thread):
    """Sends the planned events to the events topic, paced by event time (``speed``, simulated
    seconds per wall second) or by ``rate`` (events per second), until done, ``stop`` or ``deadline``."""

    def __init__(self, settings: Settings, arguments: dict[str, Any], stop: threading.Event, deadline: float,
                 speed: float | None = None, rate: float | None = None, tracker: str = "blipwatch"):
        super().__init__(name="demo-sender", daemon=True)
        self.tracker = tracker   # the format sent (blipwatch.schemas.presets)
        self.settings, self.arguments, self.stop, self.deadline = settings, arguments, stop, deadline
        self.speed, self.rate = speed, rate
        self.sent = 0
        self.event_time = ""         # occurred_at of the last event sent
        self.cut_short = False       # the deadline came before the last event
        self.finished_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._send()
        except BaseException as exc:   # reported by the main thread
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def _send(self) -> None:
        from kafka import KafkaProducer

        from blipwatch.tools.simulator import generate_events, parse_time
        from blipwatch.tools.trackers import tracker_encoder

        # as `blipwatch simulate --kafka` (see its notes)
        producer = KafkaProducer(
            **self.settings.kafka_python_kwargs(), enable_idempotence=False, acks=1, linger_ms=20,
            batch_size=256 * 1024, max_block_ms=15_000, compression_type="gzip")
        failures: list[Exception] = []
        topic, encode = self.settings.events_topic, tracker_encoder(self.tracker)
        began = time.monotonic()
        first_seconds = None
        try:
            for event in generate_events(**self.arguments):
                if self.cut_short and event["occurred_at"][:16] != self.event_time[:16]:
                    break   # the window under way is complete: a half-sent one would look like a traffic drop
                value = encode(event)
                if value is None:
                    continue   # an event this tracker does not send (cart_abandoned, session_start)
                key = (event.get("customer_id") or event["session_id"]).encode()
                producer.send(topic, key=key, value=value).add_errback(failures.append)
                self.sent += 1
                self.event_time = event["occurred_at"]
                if self.cut_short:
                    continue
                if self.sent % 50 == 1:
                    if self.stop.is_set() or failures:
                        break
                    now = time.monotonic()
                    if now >= self.deadline:
                        self.cut_short = True
                        continue
                    if self.rate is not None:
                        ahead = began + self.sent / self.rate - now
                    else:
                        seconds = parse_time(event["occurred_at"]).timestamp()
                        first_seconds = seconds if first_seconds is None else first_seconds
                        ahead = began + (seconds - first_seconds) / self.speed - now
                    if ahead > 0.002:
                        self.stop.wait(ahead)
            if not self.stop.is_set():
                producer.flush(timeout=30)
        finally:
            producer.close(timeout=0 if self.stop.is_set() else 10)
        if failures:
            raise failures[0]

"""The Alertmanager bridge: anomaly alerts from Kafka to Alertmanager's v2 API.

It consumes the alerts topic in its own consumer group and keeps, per ``dedup_key``, only the
latest state of each incident. A sender task posts what changed to ``POST /api/v2/alerts`` and
re-sends firing incidents every ``resend_interval`` seconds (Alertmanager wants 30 s to 3 min),
each time with ``endsAt`` a few minutes ahead, so that if the bridge dies its alerts expire instead
of firing forever. A resolved incident is sent once with ``endsAt`` = its resolve time, then
forgotten.

Alertmanager down: the sender retries with capped exponential backoff; consuming never waits for
it, and since only the latest state per incident is kept, memory stays bounded and nothing but
superseded states is dropped.

Offsets: per partition the bridge commits the offset of the oldest message that still defines a
live incident (firing, or not yet delivered), so a restarted bridge re-reads exactly what it needs
to rebuild its state (at-least-once; Alertmanager dedups by labels).

Run it as ``blipwatch alertmanager-bridge --url http://127.0.0.1:9093``, or in-process::

    bridge = bridge_from_env(settings)      # None unless BLIPWATCH_ALERTMANAGER_URL is set
    if bridge is not None:
        await bridge.run()                  # until cancelled; or start() ... stop()
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from blipwatch.stream_app.alertmanager_http import FINAL_REFUSALS, HttpAccess, check_url, split_credentials
from blipwatch.stream_app.alertmanager_mapping import SKIPPED, BadAlert, decode_alert, labels_for, rfc3339, to_alertmanager
from blipwatch.stream_app.config import ConfigError, Settings

log = logging.getLogger("blipwatch.alertmanager_bridge")

DEFAULT_GROUP_ID = "blipwatch-alertmanager-bridge"
#: A dead-lettered record keeps at most this much of its value (header ``truncated_from`` says so).
DEAD_LETTER_MAX_BYTES = 64 * 1024




# --- the bridge ------------------------------------------------------------------------------


@dataclass
class Incident:
    """The latest known state of one incident, and where it stands with Alertmanager."""

    alert: dict[str, Any]
    partition: Any  # aiokafka TopicPartition the state came from
    offset: int  # offset of the message holding ``alert``
    delivered: bool = False
    last_sent: float = 0.0  # monotonic time of the last successful post
    #: label sets Alertmanager has firing for this incident (two after a severity change, until
    #: the next post resolves the old one); shared by an incident's successive states
    sent_labels: list[dict[str, str]] = field(default_factory=list)

    @property
    def firing(self) -> bool:
        return self.alert.get("status") != "resolved"


class AlertmanagerBridge:
    """Consumes ``settings.alerts_topic`` and keeps Alertmanager at ``url`` in step with it.

    ``await start()`` / ``await stop()``, or ``await run()`` until cancelled. ``resend_interval``:
    how often firing incidents are re-posted; ``firing_ttl``: how far ahead their ``endsAt`` is;
    ``max_backoff``: the cap of the retry delay while Alertmanager is unreachable.
    """

    def __init__(self, settings: Settings, url: str, *, dashboard_url: str | None = None,
                 group_id: str = DEFAULT_GROUP_ID, resend_interval: float = 60.0, firing_ttl: float = 300.0,
                 max_backoff: float = 30.0, request_timeout: float = 10.0, auth: "HttpAccess | None" = None,
                 dead_letter_topic: str | None = "", silence_interval: float | None = 10.0):
        self.settings = settings
        access = auth or HttpAccess()
        self.url, url_credentials = split_credentials(check_url(url, "Alertmanager URL"))
        self.authorization = access.authorization or url_credentials
        self.tls = access
        self.dashboard_url = check_url(dashboard_url, "dashboard URL") if dashboard_url else None
        self.group_id = group_id
        for name, value, low in (("resend interval", resend_interval, 0.05), ("max backoff", max_backoff, 0.05),
                                 ("request timeout", request_timeout, 0.1), ("firing TTL", firing_ttl, 1.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
                raise ConfigError(f"alertmanager bridge: the {name} must be a number of seconds >= {low:g}, "
                                  f"got {value!r}")
        if silence_interval is not None and not (isinstance(silence_interval, (int, float))
                                                 and math.isfinite(silence_interval) and silence_interval >= 0.05):
            raise ConfigError(f"alertmanager bridge: the silence interval must be a number of seconds >= 0.05 "
                              f"(or 0 for never), got {silence_interval!r}")
        self.resend_interval = resend_interval
        self.firing_ttl = max(firing_ttl, 2 * resend_interval)
        self.max_backoff = max_backoff
        self.request_timeout = request_timeout
        #: records that cannot be posted are copied here ("" = the default name, None = nowhere)
        self.dead_letter_topic = (f"{settings.alerts_topic}-bridge-dlq" if dead_letter_topic == ""
                                  else dead_letter_topic)
        self.skipped = 0  # records skipped as unmappable, for logs and tests
        self._dead_letters = None
        self.incidents: dict[str, Incident] = {}
        self.positions: dict[Any, int] = {}  # next offset to read, per assigned partition
        self.posted = 0  # alerts Alertmanager accepted, for logs and tests
        self._consumer = None
        self._session = None
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()
        self._committed: dict[Any, int] = {}
        self._failures = 0
        #: how often silences are read for verdicts (``silence_feedback``); None: never
        self.silence_interval = silence_interval
        self._follower = None      # the feedback topic, read whole: what was said already
        self.verdicts_given = 0    # verdicts written from silences, for logs and tests

    # lifecycle

    async def start(self) -> None:
        import aiohttp
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        bridge = self

        class ForgetRevoked(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                await bridge._commit()
                bridge._forget(set(revoked))

            async def on_partitions_assigned(self, assigned):
                pass

        self._consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_kwargs(),
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            # a new group reads the whole topic: incidents fired before the bridge existed still page
            auto_offset_reset="earliest",
            # short session: fast joins and takeovers (docs/architecture.md, the embedded broker; fine for Kafka too)
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            metadata_max_age_ms=10_000,
        )
        self._consumer.subscribe([self.settings.alerts_topic], listener=ForgetRevoked())
        try:
            await self._consumer.start()
        except BaseException:
            await self._consumer.stop()
            self._consumer = None
            raise
        if self.dead_letter_topic:
            from aiokafka import AIOKafkaProducer

            self._dead_letters = AIOKafkaProducer(**self.settings.aiokafka_kwargs(), acks="all",
                                                  client_id=self.group_id + "-dlq")
            try:
                await self._dead_letters.start()
            except BaseException:
                await self._dead_letters.stop()
                await self._consumer.stop()
                self._consumer = self._dead_letters = None
                raise
        headers = {"Authorization": self.authorization} if self.authorization else None
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout), headers=headers,
            connector=aiohttp.TCPConnector(ssl=self.tls.ssl_context()) if self.url.startswith("https:") else None)
        self._tasks = [asyncio.create_task(self._consume(), name="alertmanager-bridge-consume"),
                       asyncio.create_task(self._send_forever(), name="alertmanager-bridge-send")]
        if self.silence_interval:
            self._tasks.append(asyncio.create_task(self._silences_forever(), name="alertmanager-bridge-silences"))
        log.info("alertmanager bridge: consuming %s (group %s), posting to %s",
                 self.settings.alerts_topic, self.group_id, self.url)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            try:  # one last, short attempt so a clean stop does not delay a resolve by a restart
                await asyncio.wait_for(self._send_due(), timeout=2)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort at shutdown
                pass
        if self._consumer is not None:
            try:
                await self._commit()
            except Exception as exc:  # noqa: BLE001 - the group may be gone already
                log.warning("alertmanager bridge: final offset commit failed: %s", exc)
            await self._consumer.stop()
            self._consumer = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._dead_letters is not None:
            await self._dead_letters.stop()
            self._dead_letters = None
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None

    async def run(self) -> None:
        """Start, run until cancelled (or a task fails), stop."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    # consuming

    def apply(self, alert: dict[str, Any], partition: Any, offset: int) -> None:
        """Take one alert message as the latest state of its incident."""
        key = str(alert["dedup_key"])
        previous = self.incidents.get(key)
        incident = Incident(alert=alert, partition=partition, offset=offset)
        if previous is not None:
            incident.last_sent = previous.last_sent
            incident.sent_labels = previous.sent_labels
        self.incidents[key] = incident
        self._wake.set()

    async def _consume(self) -> None:
        consumer = self._consumer
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for partition, records in batches.items():
                for record in records:
                    try:
                        alert = decode_alert(record.value)
                    except BadAlert as exc:
                        await self._skip(record, exc.reason, str(exc))
                    else:
                        self.apply(alert, partition, record.offset)
                    self.positions[partition] = record.offset + 1
            await self._commit()

    async def _skip(self, record, reason: str, detail: str) -> None:
        """Count, log and dead-letter a record that cannot be posted; its offset is committed with
        the batch, so a restart does not meet it again."""
        self.skipped += 1
        SKIPPED.labels(reason).inc()
        log.error("alertmanager bridge: skipping alert record at %s:%s offset %s (%s): %s%s",
                  record.topic, record.partition, record.offset, reason, detail,
                  f"; copied to {self.dead_letter_topic}" if self._dead_letters is not None else "")
        if self._dead_letters is None:
            return
        value = record.value or b""
        headers = [("reason", reason.encode()), ("error", detail[:500].encode("utf-8", "replace")),
                   ("source", f"{record.topic}:{record.partition}:{record.offset}".encode())]
        if len(value) > DEAD_LETTER_MAX_BYTES:
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:DEAD_LETTER_MAX_BYTES]
        try:
            await asyncio.wait_for(self._dead_letters.send_and_wait(
                self.dead_letter_topic, value=value, key=record.key, headers=headers), timeout=10)
        except Exception as exc:  # noqa: BLE001 - the skip is counted and logged; paging goes on
            log.warning("alertmanager bridge: cannot write the dead letter to %s: %s",
                        self.dead_letter_topic, exc or type(exc).__name__)

    def commit_offsets(self) -> dict[Any, int]:
        """Per partition: the oldest offset still needed to rebuild live incidents, else the position."""
        offsets = dict(self.positions)
        for incident in self.incidents.values():
            if incident.partition in offsets and (incident.firing or not incident.delivered):
                offsets[incident.partition] = min(offsets[incident.partition], incident.offset)
        return offsets

    async def _commit(self) -> None:
        offsets = {tp: offset for tp, offset in self.commit_offsets().items()
                   if self._committed.get(tp) != offset}
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - e.g. mid-rebalance; the next batch commits again
            log.warning("alertmanager bridge: offset commit failed, will retry: %s", exc)
            return
        self._committed.update(offsets)

    def _forget(self, partitions: set) -> None:
        """Another member owns these partitions now; it rebuilds their incidents from our commits."""
        self.incidents = {key: incident for key, incident in self.incidents.items()
                          if incident.partition not in partitions}
        for partition in partitions:
            self.positions.pop(partition, None)
            self._committed.pop(partition, None)

    # silences -> feedback

    async def _silences_forever(self) -> None:
        """Every ``silence_interval``: a silence on one incident whose comment starts with a verdict
        becomes that verdict on the feedback topic, unless the topic says so already."""
        from blipwatch.stream_app.feedback_follower import FeedbackFollower

        failures = 0
        while True:
            try:
                if self._follower is None:
                    follower = FeedbackFollower(self.settings)
                    await follower.start()
                    self._follower = follower
                if self._follower.caught_up.is_set():
                    await self.give_verdicts_from_silences()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - Alertmanager or Kafka away: paging goes on
                failures += 1
                (log.warning if failures in (1, 2) or failures % 10 == 0 else log.debug)(
                    "alertmanager bridge: cannot read silences for feedback (%s); retrying", exc or type(exc).__name__)
            await asyncio.sleep(self.silence_interval)

    async def _follower_ready(self) -> None:
        """Until the feedback topic has been read (the silences are compared with it from then on)."""
        while self._follower is None:
            await asyncio.sleep(0.05)
        await self._follower.caught_up.wait()

    async def give_verdicts_from_silences(self) -> int:
        """One pass: returns how many verdicts were written."""
        from blipwatch.stream_app.feedback_topics import publish
        from blipwatch.stream_app.silence_feedback import feedback_from_silence

        async with self._session.get(self.url + "/api/v2/silences") as response:
            if response.status >= 300:
                raise ConnectionError(f"HTTP {response.status}")
            silences = await response.json(content_type=None)
        book = self._follower.book
        records = []
        for silence in silences if isinstance(silences, list) else []:
            if not isinstance(silence, dict) or (silence.get("status") or {}).get("state") != "active":
                continue
            feedback = feedback_from_silence(silence)
            if feedback is None:
                continue
            known = book.verdict(feedback.dedup_key)
            if known is not None and (known.verdict, known.note) == (feedback.verdict, feedback.note):
                continue
            records.append((feedback.key, feedback.to_json()))
            book.apply_feedback(feedback.key, feedback.to_json())   # not twice while the topic catches up
        if records:
            await asyncio.to_thread(publish, self.settings, self.settings.feedback_topic, records)
            self.verdicts_given += len(records)
            log.info("alertmanager bridge: %d verdicts from silences written to %s", len(records),
                     self.settings.feedback_topic)
        return len(records)

    # sending

    def due(self, now: float) -> list[str]:
        return [key for key, incident in self.incidents.items()
                if not incident.delivered or (incident.firing and now - incident.last_sent >= self.resend_interval)]

    async def _send_forever(self) -> None:
        while True:
            try:
                await self._send_due()
            except Exception as exc:  # noqa: BLE001 - Alertmanager down, refused, timed out ...
                self._failures += 1
                delay = min(self.max_backoff, 0.5 * 2 ** (self._failures - 1)) * random.uniform(0.8, 1.2)
                log_at = log.warning if self._failures in (1, 2) or self._failures % 10 == 0 else log.debug
                log_at("alertmanager bridge: cannot post to %s (%s); %d incidents kept, retry %d in %.1f s",
                       self.url, exc or type(exc).__name__, len(self.incidents), self._failures, delay)
                await asyncio.sleep(delay)
                continue
            if self._failures:
                log.info("alertmanager bridge: %s reachable again after %d failed attempts", self.url, self._failures)
                self._failures = 0
            self._wake.clear()
            next_resend = min((i.last_sent + self.resend_interval for i in self.incidents.values() if i.firing),
                              default=time.monotonic() + self.resend_interval)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, next_resend - time.monotonic()))
            except asyncio.TimeoutError:
                pass

    async def _send_due(self) -> None:
        started = time.monotonic()
        keys = self.due(started)
        if not keys:
            return
        now = datetime.now(timezone.utc)
        sent = {key: self.incidents[key] for key in keys}
        payload = []
        for incident in sent.values():
            alert = to_alertmanager(incident.alert, now, dashboard_url=self.dashboard_url, firing_ttl=self.firing_ttl)
            payload.append(alert)
            for labels in incident.sent_labels:
                if labels != alert["labels"]:  # e.g. warning escalated to critical: end the old one
                    payload.append({**alert, "labels": labels, "endsAt": rfc3339(now)})
        async with self._session.post(self.url + "/api/v2/alerts", json=payload) as response:
            body = await response.text()
            if response.status in FINAL_REFUSALS:
                # Alertmanager keeps the valid alerts of a batch and names the others: retrying won't help
                log.error("alertmanager bridge: Alertmanager refused some alerts (HTTP %d): %s",
                          response.status, body.strip()[:500])
            elif response.status >= 300:
                # 401/403 (credentials), 404 (wrong path or proxy), 429, 5xx ...: nothing is delivered
                raise ConnectionError(f"HTTP {response.status}: {body.strip()[:200]}")
        self.posted += len(payload)
        for key, incident in sent.items():
            # in place: a newer state of the incident shares this list
            incident.sent_labels[:] = [labels_for(incident.alert)] if incident.firing else []
            if self.incidents.get(key) is not incident:
                continue  # a newer state arrived meanwhile: it is still due
            incident.delivered = True
            incident.last_sent = started
            if not incident.firing:
                del self.incidents[key]


def bridge_from_env(settings: Settings, env: Mapping[str, str] | None = None) -> AlertmanagerBridge | None:
    """The bridge the worker runs in-process: set ``BLIPWATCH_ALERTMANAGER_URL`` to enable it,
    ``BLIPWATCH_DASHBOARD_URL`` (Grafana's base URL) for dashboard links. None when unset.

    >>> bridge_from_env(Settings(), {}) is None
    True
    >>> bridge_from_env(Settings(), {"BLIPWATCH_ALERTMANAGER_URL": "http://am:9093/"}).url
    'http://am:9093'
    """
    env = os.environ if env is None else env
    url = env.get("BLIPWATCH_ALERTMANAGER_URL", "").strip()
    if not url:
        return None
    dashboard_url = env.get("BLIPWATCH_DASHBOARD_URL", "").strip() or None
    return AlertmanagerBridge(settings, url, dashboard_url=dashboard_url, auth=HttpAccess.from_env(env))


def run_in_worker(app, settings: Settings, env: Mapping[str, str] | None = None) -> AlertmanagerBridge | None:
    """With ``BLIPWATCH_ALERTMANAGER_URL`` set, run the bridge as a service of the Faust ``app``:
    it starts and stops with the worker, and a bridge that fails crashes the worker instead of
    silently no longer paging anyone. Returns the bridge, or None when the variable is unset."""
    bridge = bridge_from_env(settings, env)
    if bridge is None:
        return None
    from mode import Service

    @app.service
    class AlertmanagerBridgeService(Service):
        async def on_start(self) -> None:
            self.add_future(bridge.run())  # cancelled on stop: run() then posts once more and commits

    return bridge

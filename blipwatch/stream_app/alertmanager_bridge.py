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
import json
import logging
import math
import os
import random
import re
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from blipwatch.schemas import times
from blipwatch.schemas.outputs import segment_label
from blipwatch.stream_app.config import ConfigError, Settings

log = logging.getLogger("blipwatch.alertmanager_bridge")

ALERTNAME = "CustomerBehaviourBlip"
DEFAULT_GROUP_ID = "blipwatch-alertmanager-bridge"
#: The uid of the generated "blips" dashboard (``tools/dashboards.py``), for the dashboard link.
BLIPS_DASHBOARD_PATH = "/d/blipwatch-blips/blipwatch-blips"
RESERVED_LABELS = frozenset({"alertname", "metric", "severity", "dedup_key"})
#: A dead-lettered record keeps at most this much of its value (header ``truncated_from`` says so).
DEAD_LETTER_MAX_BYTES = 64 * 1024


# --- the mapping: one alert message -> one Alertmanager alert (pure) ---------------------------


def optional_time(value: Any) -> datetime | None:
    """``schemas.times.parse_time``, None when absent (a bad value raises ``ValueError``)."""
    return None if value is None or value == "" else times.parse_time(value)


def rfc3339(moment: datetime) -> str:
    return times.format_time(round(moment.timestamp() * 1000))


def label_name(dimension: str) -> str:
    """A segment dimension as a valid Alertmanager label name that cannot clash with ours."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", dimension) or "_"
    if name[0].isdigit():
        name = "_" + name
    return f"segment_{name}" if name in RESERVED_LABELS or name.startswith("__") else name


def number(value: Any) -> str:
    """A figure for a human: 4 significant digits. ``number(0.123456) == '0.1235'``"""
    if value is None:
        return "n/a"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def dashboard_link(base_url: str, alert: Mapping[str, Any]) -> str:
    """The blips dashboard for this alert's metric and segment, an hour either side of its window."""
    params = {"var-metric": alert.get("metric", ""), "var-segment": segment_label(alert.get("segment") or {})}
    start, end = optional_time(alert.get("window_start")), optional_time(alert.get("window_end"))
    if start and end:
        params["from"] = str(int((start - timedelta(hours=1)).timestamp() * 1000))
        params["to"] = str(int((end + timedelta(hours=1)).timestamp() * 1000))
    return base_url.rstrip("/") + BLIPS_DASHBOARD_PATH + "?" + urllib.parse.urlencode(params)


def labels_for(alert: Mapping[str, Any]) -> dict[str, str]:
    """Alertmanager labels: what identifies the incident and what routing needs, nothing that changes
    while it fires except ``severity`` (an escalation is sent as a new alert; see ``AlertmanagerBridge``).

    ``dedup_key`` is a label so that two incidents on one series never overwrite each other in
    Alertmanager (e.g. an old one's resolution replayed after a restart); it has one value per
    incident, and Alertmanager forgets resolved alerts, so it does not accumulate.
    """
    labels = {
        "alertname": ALERTNAME,
        "metric": str(alert["metric"]),
        "severity": str(alert.get("severity") or "warning"),
        "dedup_key": str(alert["dedup_key"]),
    }
    for dimension, value in sorted((alert.get("segment") or {}).items()):
        labels[label_name(str(dimension))] = str(value)
    return labels


def to_alertmanager(alert: Mapping[str, Any], now: datetime, *, dashboard_url: str | None = None,
                    firing_ttl: float = 300.0) -> dict[str, Any]:
    """One blipwatch alert message as one alert for ``POST /api/v2/alerts``.

    Firing: ``endsAt`` is ``firing_ttl`` seconds from ``now`` (re-sent before then while firing).
    Resolved: ``endsAt`` is the end of the window that resolved it, never later than ``now`` nor
    earlier than ``startsAt``.

    >>> alert = {"alert_id": "a1", "dedup_key": "cart_abandonment_rate|channel=web|1", "status": "firing",
    ...          "severity": "critical", "metric": "cart_abandonment_rate", "segment": {"channel": "web"},
    ...          "direction": "up", "window_start": "2025-03-01T12:00:00Z", "window_end": "2025-03-01T12:01:00Z",
    ...          "started_at": "2025-03-01T12:00:00Z", "observed": 0.61, "expected": 0.3, "lower": 0.22,
    ...          "upper": 0.38, "score": 0.999, "numerator": 61, "denominator": 100,
    ...          "summary": "Cart abandonment on web rose to 61% (expected 30%).", "detector": "rate", "related": []}
    >>> now = optional_time("2025-03-01T12:01:05Z")
    >>> out = to_alertmanager(alert, now, dashboard_url="http://grafana:3000")
    >>> out["labels"]
    {'alertname': 'CustomerBehaviourBlip', 'metric': 'cart_abandonment_rate', 'severity': 'critical', 'dedup_key': 'cart_abandonment_rate|channel=web|1', 'channel': 'web'}
    >>> out["startsAt"], out["endsAt"]
    ('2025-03-01T12:00:00.000Z', '2025-03-01T12:06:05.000Z')
    >>> out["annotations"]["observed"], out["annotations"]["bounds"], out["annotations"]["dashboard"].split("&")[:2]
    ('0.61', '[0.22, 0.38]', ['http://grafana:3000/d/blipwatch-blips/blipwatch-blips?var-metric=cart_abandonment_rate', 'var-segment=channel%3Dweb'])
    >>> to_alertmanager({**alert, "status": "resolved", "window_end": "2025-03-01T12:09:00Z"}, now)["endsAt"]
    '2025-03-01T12:01:05.000Z'
    """
    starts_at = optional_time(alert.get("started_at")) or optional_time(alert.get("window_start")) or now
    starts_at = min(starts_at, now)  # a producer clock ahead of ours must not make Alertmanager refuse it
    if alert.get("status") == "resolved":
        ends_at = min(optional_time(alert.get("window_end")) or now, now)
        ends_at = max(ends_at, starts_at + timedelta(milliseconds=1))
    else:
        ends_at = now + timedelta(seconds=firing_ttl)
    segment = alert.get("segment") or {}
    related = ", ".join(f"{item.get('metric')}[{segment_label(item.get('segment') or {})}]"
                        for item in alert.get("related") or [])
    annotations = {
        "summary": str(alert.get("summary") or f"{alert.get('metric')} blip on {segment_label(segment)}"),
        "observed": number(alert.get("observed")),
        "expected": number(alert.get("expected")),
        "bounds": f"[{number(alert.get('lower'))}, {number(alert.get('upper'))}]",
        "score": number(alert.get("score")),
        "direction": str(alert.get("direction") or ""),
        "segment": segment_label(segment),
        "window": f"{alert.get('window_start')} .. {alert.get('window_end')}",
        "volume": f"{number(alert.get('numerator'))} / {number(alert.get('denominator'))}",
        "detector": str(alert.get("detector") or ""),
        "alert_id": str(alert.get("alert_id") or ""),
    }
    if related:
        annotations["related"] = related
    result: dict[str, Any] = {
        "labels": labels_for(alert),
        "annotations": annotations,
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at),
    }
    if dashboard_url:
        annotations["dashboard"] = result["generatorURL"] = dashboard_link(dashboard_url, alert)
    return result


class BadAlert(ValueError):
    """An alerts-topic record the bridge cannot map; ``reason`` is a short label for the metric."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


#: Why a record was skipped: the label values of ``blipwatch_alertmanager_bridge_skipped_total``.
SKIP_REASONS = ("not_json", "too_deep", "not_an_alert", "bad_field")


def decode_alert(value: bytes | str | None, now: datetime | None = None) -> dict[str, Any]:
    """One alerts-topic record as an alert the bridge can post, or ``BadAlert``; never another error.

    >>> decode_alert(b'{"dedup_key": "k", "metric": "m", "status": "firing"}')["metric"]
    'm'
    >>> for raw in (b"{not json", b"[" * 100_000, b'{"dedup_key": ["k"], "metric": "m"}',
    ...             b'{"dedup_key": "k", "metric": "m", "started_at": Infinity}',
    ...             b'{"dedup_key": "k", "metric": "m", "window_end": -1e20, "status": "resolved"}'):
    ...     try:
    ...         decode_alert(raw)
    ...     except BadAlert as exc:
    ...         print(exc.reason)
    not_json
    too_deep
    not_an_alert
    bad_field
    bad_field
    """
    try:
        alert = json.loads(value)
    except RecursionError:
        raise BadAlert("too_deep", "JSON nested too deep") from None
    except (ValueError, TypeError) as exc:
        raise BadAlert("not_json", f"not JSON ({str(exc)[:100]})") from None
    if not isinstance(alert, dict) or not isinstance(alert.get("dedup_key"), str) \
            or not isinstance(alert.get("metric"), str):
        raise BadAlert("not_an_alert", "not an alert object with dedup_key and metric strings")
    segment = alert.get("segment")
    if segment is not None and (not isinstance(segment, dict) or not all(
            isinstance(v, (str, int, float, bool)) for v in segment.values())):
        raise BadAlert("bad_field", "segment is not an object of plain values")
    try:
        # the same mapping the sender runs later, and its JSON: a record that fails either would
        # fail every batch it is posted in
        json.dumps(to_alertmanager(alert, now or datetime.now(timezone.utc), dashboard_url="http://x"),
                   allow_nan=False)
    except Exception as exc:  # noqa: BLE001 - RecursionError, OverflowError, ...: whatever it is, skip it
        raise BadAlert("bad_field", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return alert


def _skipped_counter():
    from prometheus_client import REGISTRY, Counter

    name = "blipwatch_alertmanager_bridge_skipped"
    existing = REGISTRY._names_to_collectors.get(name + "_total")  # this module imported twice (doctests)
    if existing is not None:
        return existing
    counter = Counter(name, "Alerts-topic records the Alertmanager bridge could not map and skipped, by reason",
                      ["reason"])
    for reason in SKIP_REASONS:
        counter.labels(reason)
    return counter


SKIPPED = _skipped_counter()


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


#: Answers that mean "these alerts are wrong", not "try again": the bridge logs them and moves on.
FINAL_REFUSALS = frozenset({400, 422})


def redact(url: str | None) -> str:
    """The URL with any user-info replaced, for logs and messages.

    >>> redact("https://admin:s3cret@am.example:9093/x"), redact("http://127.0.0.1:9093")
    ('https://***@am.example:9093/x', 'http://127.0.0.1:9093')
    """
    parsed = urllib.parse.urlsplit(url or "")
    if "@" not in parsed.netloc:
        return url or ""
    return urllib.parse.urlunsplit(parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]))


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without user-info, and that user-info as a basic ``Authorization`` header value.

    >>> split_credentials("http://user:p%40ss@am:9093")
    ('http://am:9093', 'Basic dXNlcjpwQHNz')
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.username is None:
        return url, None
    clean = urllib.parse.urlunsplit(parsed._replace(netloc=parsed.netloc.rpartition("@")[2]))
    return clean, basic_header(urllib.parse.unquote(parsed.username), urllib.parse.unquote(parsed.password or ""))


def basic_header(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def check_url(url: str | None, what: str) -> str:
    parsed = urllib.parse.urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{what} {redact(url)!r} is not an http(s) URL like http://127.0.0.1:9093")
    return url.rstrip("/")


@dataclass(frozen=True)
class HttpAccess:
    """How the bridge authenticates to Alertmanager (or the proxy in front of it) and trusts it.

    ``authorization``: the ``Authorization`` header value (``Bearer ...`` or ``Basic ...``);
    ``ca_file``: the CA that signed Alertmanager's certificate; ``client_cert``/``client_key``:
    a client certificate for mutual TLS. ``from_env`` reads them from ``BLIPWATCH_ALERTMANAGER_*``.
    """

    authorization: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, bearer_token_file: str | None = None,
                 basic_auth_file: str | None = None, ca_file: str | None = None, client_cert: str | None = None,
                 client_key: str | None = None) -> "HttpAccess":
        """Secrets from a file (``--bearer-token-file``, ``--basic-auth-file`` or ``..._FILE``
        variables) or a variable (``BLIPWATCH_ALERTMANAGER_BEARER_TOKEN``, ``..._BASIC_AUTH`` as
        ``user:password``); at most one of the two kinds.

        >>> HttpAccess.from_env({"BLIPWATCH_ALERTMANAGER_BEARER_TOKEN": "abc"}).authorization
        'Bearer abc'
        >>> HttpAccess.from_env({"BLIPWATCH_ALERTMANAGER_BASIC_AUTH": "u:p"}).authorization
        'Basic dTpw'
        """
        env = os.environ if env is None else env

        def value(name: str, path: str | None) -> str | None:
            path = path or env.get(f"BLIPWATCH_ALERTMANAGER_{name}_FILE", "").strip() or None
            if path:
                try:
                    return Path(path).read_text(encoding="utf-8").strip() or None
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read the Alertmanager {name.lower().replace('_', ' ')} file "
                                      f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
            return env.get(f"BLIPWATCH_ALERTMANAGER_{name}", "").strip() or None

        token, basic = value("BEARER_TOKEN", bearer_token_file), value("BASIC_AUTH", basic_auth_file)
        if token and basic:
            raise ConfigError("Alertmanager: give a bearer token or basic auth, not both")
        if basic and ":" not in basic:
            raise ConfigError("Alertmanager basic auth must be user:password")
        authorization = f"Bearer {token}" if token else basic_header(*basic.split(":", 1)) if basic else None
        paths = {"CA_FILE": ca_file, "CLIENT_CERT": client_cert, "CLIENT_KEY": client_key}
        for name in paths:
            paths[name] = paths[name] or env.get(f"BLIPWATCH_ALERTMANAGER_{name}", "").strip() or None
            if paths[name] and not Path(paths[name]).is_file():
                raise ConfigError(f"Alertmanager {name.lower().replace('_', ' ')} {paths[name]!r} does not exist")
        if paths["CLIENT_KEY"] and not paths["CLIENT_CERT"]:
            raise ConfigError("Alertmanager client key given without a client certificate")
        access = cls(authorization, paths["CA_FILE"], paths["CLIENT_CERT"], paths["CLIENT_KEY"])
        access.ssl_context()  # a wrong file is a clear error now, not at the first post
        return access

    def ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.client_cert:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigError(f"Alertmanager TLS files ({self.ca_file or 'system CAs'}, "
                              f"{self.client_cert or 'no client cert'}): {reason}") from None
        return context


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

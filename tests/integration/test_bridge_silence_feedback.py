"""The Alertmanager bridge turns a silence in the real Alertmanager into feedback on the embedded
broker: a silence on one blip's dedup_key with comment "false_positive: ..." is a verdict on the
feedback topic within a poll, written once (the topic already says so on the next polls), and a
changed comment writes the new verdict."""

from __future__ import annotations

import asyncio
import time

import pytest

from blipwatch.schemas.feedback import Feedback
from blipwatch.stream_app.alertmanager_bridge import AlertmanagerBridge
from blipwatch.stream_app.config import Settings
from tests.helpers import read_topic
from tests.integration.test_silence_feedback import GAP, silence
from tests.services import Alertmanager, http_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_a_verdict_silence_in_alertmanager_becomes_feedback_once(broker, unique_topics, tmp_path):
    stem = unique_topics["BLIPWATCH_APP_ID"].removesuffix("-app")
    settings = Settings.from_env({"BLIPWATCH_BROKER": broker.url, "BLIPWATCH_EMBEDDED_BROKER": "1",
                                  "BLIPWATCH_ALERTS_TOPIC": unique_topics["BLIPWATCH_ALERTS_TOPIC"],
                                  "BLIPWATCH_FEEDBACK_TOPIC": f"{stem}-feedback",
                                  "BLIPWATCH_CALENDAR_TOPIC": f"{stem}-calendar"})

    def verdicts() -> list[Feedback]:
        return [Feedback.from_json(r.value) for r in read_topic(broker, settings.feedback_topic, timeout=10)]

    with Alertmanager(tmp_path) as am:
        async def scenario():
            bridge = AlertmanagerBridge(settings, am.url, silence_interval=0.3, group_id=f"{stem}-bridge")
            await bridge.start()
            try:
                await asyncio.wait_for(bridge._follower_ready(), 30)
                given = time.monotonic()
                first = await asyncio.to_thread(silence, am, [{"name": "dedup_key", "value": GAP}],
                                                "false_positive: nightly tracking gap", "alice")
                await asyncio.to_thread(silence, am, [{"name": "dedup_key", "value": GAP + "x"}], "looking into it")
                while bridge.verdicts_given < 1:
                    assert time.monotonic() - given < 20, "no verdict from the silence"
                    await asyncio.sleep(0.1)
                took = time.monotonic() - given
                written = await asyncio.to_thread(verdicts)
                await asyncio.sleep(1.5)                          # several more polls: nothing new
                assert bridge.verdicts_given == 1
                # the person changes their mind: expire the silence, silence again as "expected"
                await asyncio.to_thread(http_json, f"{am.url}/api/v2/silence/{first}", method="DELETE")
                await asyncio.to_thread(silence, am, [{"name": "dedup_key", "value": GAP}], "expected: planned", "bob")
                while bridge.verdicts_given < 2:
                    assert time.monotonic() - given < 40, "no verdict from the changed silence"
                    await asyncio.sleep(0.1)
                return took, written
            finally:
                await bridge.stop()

        took, written = asyncio.run(scenario())
    assert [(f.dedup_key, f.verdict, f.note, f.by, f.source) for f in written] == \
        [(GAP, "false_positive", "nightly tracking gap", "alice", "alertmanager")]
    latest = {f.dedup_key: f for f in verdicts()}
    assert (latest[GAP].verdict, latest[GAP].by) == ("expected", "bob")
    assert took < 5, took
    print(f"\nsilence -> verdict on the feedback topic in {took:.2f} s")

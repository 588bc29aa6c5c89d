"""The worker's FeedbackFollower on the embedded broker: catches up on what was written before it
started, then hands over each new verdict within a poll, and follows calendar changes."""

from __future__ import annotations

import asyncio
import time

import pytest

from blipwatch.schemas.feedback import CalendarEntry, Feedback
from blipwatch.schemas.outputs import ms_from_iso
from blipwatch.stream_app.config import Settings
from blipwatch.stream_app.feedback_follower import FeedbackFollower
from blipwatch.stream_app.feedback_topics import publish

pytestmark = pytest.mark.integration

GAP = "event_volume|channel=app@2026-01-05T02:00:00Z"
SURGE = "complaint_count|all@2026-01-05T19:00:00Z"


def settings_for(broker, unique_topics) -> Settings:
    stem = unique_topics["BLIPWATCH_APP_ID"].removesuffix("-app")
    return Settings.from_env({"BLIPWATCH_BROKER": broker.url, "BLIPWATCH_EMBEDDED_BROKER": "1",
                              "BLIPWATCH_FEEDBACK_TOPIC": f"{stem}-feedback",
                              "BLIPWATCH_CALENDAR_TOPIC": f"{stem}-calendar"})


def verdict(key: str, kind: str) -> tuple[bytes, bytes]:
    feedback = Feedback(key, kind, "2026-01-05T08:00:00Z", "kafka")
    return feedback.key, feedback.to_json()


async def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_the_follower_catches_up_quietly_then_announces_new_verdicts_within_a_second(broker, unique_topics):
    settings = settings_for(broker, unique_topics)
    publish(settings, settings.feedback_topic, [verdict(GAP, "expected"), verdict(GAP, "false_positive"),
                                                verdict(SURGE, "confirmed"), (b"junk", b"{")])
    sale = CalendarEntry("sale", "2026-03-20T00:00:00Z", "2026-03-23T00:00:00Z", "spring sale", segment={})
    publish(settings, settings.calendar_topic, [(sale.key, sale.to_json())])

    async def scenario() -> tuple[list, float, list]:
        announced, calendar_changes = [], []
        follower = FeedbackFollower(settings, on_verdict=announced.append, on_calendar=calendar_changes.append,
                                    poll_ms=100)
        await follower.start()
        try:
            await asyncio.wait_for(follower.caught_up.wait(), 20)
            book = follower.book
            assert book.verdict(GAP).verdict == "false_positive" and book.counts()["confirmed"] == 1
            assert book.rejected == 1 and announced == []          # the history is state, not news
            at = ms_from_iso("2026-03-21T00:00:00Z")
            assert book.calendar_for("event_volume", {}, at, at + 60_000).reason == "spring sale"

            sent = time.monotonic()
            await asyncio.to_thread(publish, settings, settings.feedback_topic, [verdict(SURGE, "false_positive")])
            await wait_for(lambda: announced, 10)
            delay = time.monotonic() - sent
            await asyncio.to_thread(publish, settings, settings.feedback_topic, [verdict(SURGE, "false_positive")])
            await asyncio.to_thread(publish, settings, settings.calendar_topic, [(b"sale", None)])
            await wait_for(lambda: calendar_changes, 10)
            assert not book.calendar and book.calendar_for("event_volume", {}, at, at + 60_000) is None
            return announced, delay, calendar_changes
        finally:
            await follower.stop()

    announced, delay, calendar_changes = asyncio.run(scenario())
    assert [(f.dedup_key, f.verdict) for f in announced] == [(SURGE, "false_positive")]   # the repeat is not news
    assert delay < 3.0, delay   # the publish itself (a producer's bootstrap) is most of it
    assert calendar_changes == [None]


def test_on_empty_topics_the_follower_is_caught_up_at_once(broker, unique_topics):
    settings = settings_for(broker, unique_topics)

    async def scenario() -> bool:
        follower = FeedbackFollower(settings)
        await follower.start()
        try:
            return follower.caught_up.is_set()
        finally:
            await follower.stop()

    assert asyncio.run(scenario())

"""`blipwatch feedback` and `blipwatch calendar` against the embedded broker: what a person on call
types, what lands on the compacted topics, and what a worker's FeedbackBook reads back from them."""

from __future__ import annotations

import subprocess
import time

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from blipwatch.pipeline.feedback import FeedbackBook, load_records
from blipwatch.schemas.feedback import Feedback
from blipwatch.schemas.outputs import ms_from_iso
from blipwatch.stream_app.embedded_broker import free_port
from tests.helpers import BLIPWATCH, base_env, produce, read_topic

pytestmark = pytest.mark.integration

GAP = "event_volume|channel=app@2026-01-05T02:00:00Z"
SURGE = "complaint_count|all@2026-01-05T19:00:00Z"


@pytest.fixture
def topics(unique_topics):
    stem = unique_topics["BLIPWATCH_APP_ID"].removesuffix("-app")
    return {**unique_topics, "BLIPWATCH_FEEDBACK_TOPIC": f"{stem}-feedback",
            "BLIPWATCH_CALENDAR_TOPIC": f"{stem}-calendar"}


def cli(broker, topics, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BLIPWATCH, *args], env=base_env(broker, topics, USER="oncall", **env),
                          capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def compaction_policy(broker, topic: str) -> str | None:
    admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    finally:
        admin.close()
    return configs["topic"][topic].get("cleanup.policy", {}).get("value")


def test_verdicts_go_to_a_compacted_topic_and_list_shows_the_latest_per_incident(broker, topics):
    feedback_topic = topics["BLIPWATCH_FEEDBACK_TOPIC"]
    assert "no verdicts" in cli(broker, topics, "feedback", "list").stderr
    assert compaction_policy(broker, feedback_topic) == "compact"   # created compacted, even by a read
    ok(cli(broker, topics, "feedback", GAP, "--verdict", "expected"))
    out = ok(cli(broker, topics, "feedback", GAP, "--verdict", "false_positive", "--note", "nightly tracking gap"))
    assert out.strip() == f"false_positive recorded for {GAP} on {feedback_topic}"
    # another tool writes the same contract straight to Kafka; a broken record is skipped, not fatal
    other = Feedback(SURGE, "confirmed", "2026-01-05T19:30:00Z", "kafka", by="carrier-bot")
    produce(broker, feedback_topic, [(other.key, other.to_json()), (b"junk", b"{not json")])

    lines = ok(listing := cli(broker, topics, "feedback", "list")).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("2026-01-05 19:30Z  confirmed") and SURGE in lines[0] and "kafka carrier-bot" in lines[0]
    assert "false_positive" in lines[1] and GAP in lines[1] and lines[1].endswith("cli oncall  nightly tracking gap")
    assert "1 record(s)" in listing.stderr and "skipped" in listing.stderr
    as_json = [orjson.loads(line) for line in ok(cli(broker, topics, "feedback", "list", "--json")).splitlines()]
    assert {d["dedup_key"]: d["verdict"] for d in as_json} == {GAP: "false_positive", SURGE: "confirmed"}

    records = read_topic(broker, feedback_topic)
    assert [r.key for r in records].count(GAP.encode()) == 2       # both verdicts were written, keyed by dedup_key
    book = load_records(FeedbackBook(), [(r.key, r.value) for r in records])
    assert book.verdict(GAP).verdict == "false_positive" and book.verdict(GAP).note == "nightly tracking gap"
    assert book.counts() == {"false_positive": 1, "expected": 0, "confirmed": 1} and book.rejected == 1


def test_a_wrong_verdict_is_one_line_and_writes_nothing(broker, topics):
    for args, message in [(("feedback", "not-a-key", "--verdict", "expected"), "not an incident's dedup_key"),
                          (("feedback", GAP), "give a verdict"),
                          (("feedback", GAP, "--verdict", "expected", "--note", "n" * 2001), "--note is longer")]:
        result = cli(broker, topics, *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr
    result = cli(broker, topics, "feedback", GAP, "--verdict", "maybe")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert "no verdicts" in cli(broker, topics, "feedback", "list").stderr


def test_calendar_entries_are_added_loaded_listed_and_removed(broker, topics, tmp_path):
    calendar_topic = topics["BLIPWATCH_CALENDAR_TOPIC"]
    out = ok(cli(broker, topics, "calendar", "add", "--from", "2026-03-20", "--to", "3d", "--segment", "channel=web",
                 "--metric", "event_volume", "--metric", "average_order_value", "--reason", "spring sale"))
    assert out.strip() == ("added spring-sale-20260320t0000z  2026-03-20 00:00Z .. 2026-03-23 00:00Z  "
                           "event_volume,average_order_value on channel=web  spring sale")
    assert compaction_policy(broker, calendar_topic) == "compact"
    campaigns = tmp_path / "campaigns.yaml"
    campaigns.write_text("- {reason: newsletter, from: 2026-03-25 08:00, for: 6h, metric: event_volume, segment: all}\n"
                         "- {id: db-maintenance, reason: database maintenance, from: 2026-03-28T01:00:00Z, "
                         "to: 2026-03-28T03:00:00Z}\n")
    assert "checked" in ok(cli(broker, topics, "calendar", "load", str(campaigns), "--dry-run"))
    assert len(ok(cli(broker, topics, "calendar", "list")).splitlines()) == 1    # a dry run writes nothing
    assert ok(cli(broker, topics, "calendar", "load", str(campaigns))).count("added") == 2
    ids = [line.split()[0] for line in ok(cli(broker, topics, "calendar", "list")).splitlines()]
    assert ids == ["spring-sale-20260320t0000z", "newsletter-20260325t0800z", "db-maintenance"]

    book = load_records(FeedbackBook(), calendar=[(r.key, r.value) for r in read_topic(broker, calendar_topic)])
    sale = ms_from_iso("2026-03-21T12:00:00Z")
    assert book.calendar_for("average_order_value", {"channel": "web"}, sale, sale + 60_000).reason == "spring sale"
    assert book.calendar_for("average_order_value", {"channel": "app"}, sale, sale + 60_000) is None
    night = ms_from_iso("2026-03-28T02:00:00Z")
    assert book.calendar_for("error_rate", {"country": "FR"}, night, night + 60_000).id == "db-maintenance"

    assert ok(cli(broker, topics, "calendar", "remove", "db-maintenance")).strip() == "removed db-maintenance"
    listed = [orjson.loads(line) for line in ok(cli(broker, topics, "calendar", "list", "--json")).splitlines()]
    assert [d["id"] for d in listed] == ["spring-sale-20260320t0000z", "newsletter-20260325t0800z"]
    assert listed[1]["segment"] == {} and listed[1]["by"] == "oncall"
    gone = cli(broker, topics, "calendar", "remove", "db-maintenance")
    assert gone.returncode == 2 and "no entry 'db-maintenance'" in gone.stderr


def test_a_bad_calendar_file_writes_none_of_its_entries(broker, topics, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {reason: fine, from: 2026-03-20, for: 1d}\n- {reason: typo, from: 2026-03-20, for: 1d, "
                   "metric: conversion}\n")
    result = cli(broker, topics, "calendar", "load", str(bad))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "entry 2: metric 'conversion' is not in the catalogue" in result.stderr
    assert "no entries" in cli(broker, topics, "calendar", "list").stderr


@pytest.mark.soak  # waits out both timeouts (~16 s)
def test_without_kafka_both_commands_say_so_in_one_line_within_their_timeout(broker, topics):
    nowhere = f"kafka://127.0.0.1:{free_port()}"
    for args in (("feedback", "list"), ("feedback", GAP, "--verdict", "expected"), ("calendar", "list"),
                 ("calendar", "add", "--from", "now", "--to", "1h", "--reason", "x")):
        started = time.monotonic()
        result = cli(broker, topics, *args, "--timeout", "3", BLIPWATCH_BROKER=nowhere)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines()[-1] == \
            f"blipwatch {args[0]}: cannot reach Kafka at {nowhere}: start it (e.g. `blipwatch broker`) " \
            "or set BLIPWATCH_BROKER"
        assert time.monotonic() - started < 20

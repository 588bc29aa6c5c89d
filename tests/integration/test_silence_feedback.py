"""Silences on the real Alertmanager: one on a blip's dedup_key with a verdict comment is feedback, others are not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from blipwatch.stream_app.alertmanager_mapping import to_alertmanager
from blipwatch.stream_app.silence_feedback import feedback_from_silence
from tests.services import Alertmanager, http_json

pytestmark = pytest.mark.integration

GAP = "event_volume|channel=app@2026-01-05T02:00:00Z"
SURGE = "complaint_count|all@2026-01-05T19:00:00Z"


def blip(dedup_key: str, metric: str, segment: dict) -> dict:
    return {"alert_id": f"{dedup_key}#firing", "dedup_key": dedup_key, "status": "firing", "severity": "warning",
            "metric": metric, "segment": segment, "direction": "down", "window_start": "2026-01-05T02:00:00Z",
            "window_end": "2026-01-05T02:01:00Z", "started_at": "2026-01-05T02:00:00Z", "observed": 0.0,
            "expected": 120.0, "lower": 90.0, "upper": 150.0, "score": 1.0, "numerator": 0, "denominator": None,
            "summary": "s", "detector": "count", "related": []}


def silence(am: Alertmanager, matchers: list[dict], comment: str, by: str = "alice") -> str:
    now = datetime.now(timezone.utc)
    body = {"matchers": [{"isEqual": True, "isRegex": False, **m} for m in matchers], "comment": comment,
            "createdBy": by, "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
    return http_json(am.url + "/api/v2/silences", method="POST", body=body)["silenceID"]


def test_only_an_exact_silence_on_one_dedup_key_with_a_verdict_comment_is_feedback(tmp_path):
    with Alertmanager(tmp_path) as am:
        now = datetime.now(timezone.utc)
        am.post_alerts([to_alertmanager(blip(GAP, "event_volume", {"channel": "app"}), now),
                        to_alertmanager(blip(SURGE, "complaint_count", {}), now)])
        wanted = silence(am, [{"name": "dedup_key", "value": GAP}], "false_positive: nightly tracking gap")
        silence(am, [{"name": "dedup_key", "value": SURGE}], "looking into it")                  # no verdict
        silence(am, [{"name": "dedup_key", "value": "complaint_count.*", "isRegex": True}], "expected")   # broad
        silence(am, [{"name": "dedup_key", "value": SURGE, "isEqual": False}], "expected")      # every other blip
        silence(am, [{"name": "metric", "value": "complaint_count"}], "expected: carrier delays")  # no dedup_key

        silences = http_json(am.url + "/api/v2/silences")
        assert len(silences) == 5
        feedback = [f for f in map(feedback_from_silence, silences) if f is not None]
        assert [(f.dedup_key, f.verdict, f.note, f.by, f.source) for f in feedback] == \
            [(GAP, "false_positive", "nightly tracking gap", "alice", "alertmanager")]
        assert next(s for s in silences if s["id"] == wanted)["status"]["state"] == "active"
        # the silence silences that blip in Alertmanager, and only it
        silenced = {a["labels"]["dedup_key"]: a["status"]["state"] for a in am.alerts()}
        assert silenced[GAP] == "suppressed"


def test_the_amtool_command_in_docs_ops_gives_the_verdict(tmp_path):
    import subprocess

    from tests.services import find_binary

    with Alertmanager(tmp_path) as am:
        result = subprocess.run([find_binary("amtool"), f"--alertmanager.url={am.url}", "silence", "add",
                                 f'dedup_key="{GAP}"', "--author", "alice",
                                 "--comment", "false_positive: nightly tracking gap"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        (feedback,) = [f for f in map(feedback_from_silence, http_json(am.url + "/api/v2/silences")) if f]
        assert (feedback.dedup_key, feedback.verdict, feedback.note, feedback.by) == \
            (GAP, "false_positive", "nightly tracking gap", "alice")

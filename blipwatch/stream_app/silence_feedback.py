"""An Alertmanager silence on one incident, with a verdict in its comment, as feedback (pure).

A person on call silences one blip in Alertmanager's UI (or with ``amtool silence add
dedup_key="..." --comment "false_positive: nightly tracking gap"``): the silence names the
incident by the ``dedup_key`` label the bridge puts on every alert, and its comment starts with a
verdict word. ``feedback_from_silence`` turns such a silence (an item of ``GET /api/v2/silences``)
into the ``Feedback`` record the bridge writes to the feedback topic; any other silence (a regex
or a negative matcher on ``dedup_key``, no ``dedup_key`` matcher, a comment without a verdict) is
an ordinary silence and gives None. The same silence read twice gives the same record, and a
repeated verdict changes nothing downstream (the topic is compacted by ``dedup_key``).

>>> silence = {"id": "5b0e", "status": {"state": "active"}, "updatedAt": "2026-01-05T08:12:03.52Z",
...            "createdBy": "alice", "comment": "False positive: nightly tracking gap",
...            "matchers": [{"name": "alertname", "value": "CustomerBehaviourBlip", "isRegex": False},
...                         {"name": "dedup_key", "value": "event_volume|channel=app@2026-01-05T02:00:00Z",
...                          "isRegex": False, "isEqual": True}]}
>>> feedback = feedback_from_silence(silence)
>>> feedback.verdict, feedback.note, feedback.by, feedback.source, feedback.at
('false_positive', 'nightly tracking gap', 'alice', 'alertmanager', '2026-01-05T08:12:03.520Z')
>>> feedback_from_silence({**silence, "comment": "deploying, ignore"}) is None
True
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping

from blipwatch.schemas.feedback import MAX_NOTE_LENGTH, Feedback
from blipwatch.schemas.outputs import InvalidDocument

DEDUP_LABEL = "dedup_key"

_VERDICT = re.compile(r"^\s*(false[\s_-]?positive|expected|confirmed)\b[\s:;,.!-]*(.*)$", re.IGNORECASE | re.DOTALL)


def verdict_of(comment: str) -> tuple[str, str | None] | None:
    """The verdict a comment starts with, and the rest as the note.

    >>> verdict_of("expected - spring sale"), verdict_of("CONFIRMED"), verdict_of("false-positive:gap")
    (('expected', 'spring sale'), ('confirmed', None), ('false_positive', 'gap'))
    >>> verdict_of("not expected at all") is None, verdict_of("expectedly") is None
    (True, True)
    """
    match = _VERDICT.match(comment or "")
    if not match:
        return None
    word = re.sub(r"[\s_-]+", "_", match.group(1).lower())
    note = " ".join(match.group(2).split())[:MAX_NOTE_LENGTH] or None
    return word, note


def incident_key(matchers: Any) -> str | None:
    """The one ``dedup_key`` an exact, positive matcher names; None for anything broader."""
    if not isinstance(matchers, list):
        return None
    keys = [m.get("value") for m in matchers if isinstance(m, Mapping) and m.get("name") == DEDUP_LABEL]
    exact = [m for m in matchers if isinstance(m, Mapping) and m.get("name") == DEDUP_LABEL
             and not m.get("isRegex", False) and m.get("isEqual", True)]
    if len(keys) != 1 or len(exact) != 1 or not isinstance(exact[0].get("value"), str):
        return None
    return exact[0]["value"]


def _utc(text: Any) -> str | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def feedback_from_silence(silence: Mapping[str, Any]) -> Feedback | None:
    """The feedback a silence gives, or None for an ordinary silence (see the module docstring)."""
    key = incident_key(silence.get("matchers"))
    parsed = verdict_of(str(silence.get("comment") or ""))
    at = _utc(silence.get("updatedAt") or silence.get("startsAt"))
    if key is None or parsed is None or at is None:
        return None
    verdict, note = parsed
    try:
        return Feedback.from_dict({"dedup_key": key, "verdict": verdict, "at": at, "source": "alertmanager",
                                   "note": note, "by": str(silence.get("createdBy") or "").strip()[:128] or None})
    except InvalidDocument:
        return None

"""The measured effect of feedback (a harmless pattern that pages every night, a campaign).

Counts per window go through ``Replay`` (the stream's trackers, gate, policy and verdict handling;
no ingest, so a week of two channels takes a second or two): the app channel loses its tracking
for ten minutes every night from the third day, and on the sixth day the app really loses 80 % of
its events at 03:10, an hour after the gap."""

from __future__ import annotations

import math
import random

from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
from blipwatch.pipeline.feedback import FeedbackBook
from blipwatch.schemas.feedback import CalendarEntry, Feedback
from blipwatch.schemas.outputs import ms_from_iso
from blipwatch.stream_app.replay import Replay

START = ms_from_iso("2026-01-05T00:00:00Z")
MINUTE = 60_000
APP = "event_volume|channel=app"
WEB = "event_volume|channel=web"
GAP = (120, 130)             # 02:00-02:10, every night from day GAP_FROM
GAP_FROM = 2
REAL = (5, 190, 215)         # day 5, 03:10-03:35: the app really loses most events


def counts(days: int, campaign: tuple[int, int] | None = None, seed: int = 1):
    rnd = random.Random(seed)
    for m in range(days * 1440):
        day, minute = divmod(m, 1440)
        base = 1 + 0.6 * math.sin(2 * math.pi * (minute / 1440 - 0.375))
        out = {}
        for channel, scale in (("app", 150), ("web", 400)):
            lam = scale * base
            if channel == "app" and day >= GAP_FROM and GAP[0] <= minute < GAP[1]:
                lam = 0.0
            if channel == "app" and day == REAL[0] and REAL[1] <= minute < REAL[2]:
                lam *= 0.2
            if channel == "web" and campaign and campaign[0] <= m < campaign[1]:
                lam *= 0.35      # a campaign that moves web traffic elsewhere: it would page
            out[channel] = max(0, round(rnd.gauss(lam, math.sqrt(lam)))) if lam > 0 else 0
        yield START + m * MINUTE, out


def replay(days: int = 7, verdicts=(), book: FeedbackBook | None = None, campaign=None):
    catalogue = Catalogue.from_dict({
        "window": {"seconds": 60, "allowed_lateness_seconds": 30}, "segments": {"dimensions": ["channel"]},
        "metrics": {"event_volume": default_config_dict()["metrics"]["event_volume"]}})
    points, alerts = [], []
    run = Replay(catalogue, points.append, alerts.append, book=book, verdicts=verdicts)
    for t, out in counts(days, campaign):
        run.merge_windows({f"event_volume|channel={channel}": [(t, n, 0.0)] for channel, n in out.items()})
        run.advance(t + 2 * MINUTE)
    return points, alerts


def incidents(alerts, series: str) -> list[str]:
    """The start of each incident paged on ``series`` (its first firing message)."""
    return [a.started_at for a in alerts if a.dedup_key.startswith(series + "@") and a.status == "firing"
            and "#firing@" in a.alert_id]


def test_one_false_positive_quiets_the_nightly_gap_and_a_real_drop_an_hour_later_still_pages():
    _, before = replay()
    nightly = [s for s in incidents(before, APP) if "T02:" in s]
    assert len(nightly) >= 3, nightly            # without feedback the gap pages night after night
    first = f"{APP}@{nightly[0]}"
    verdict = Feedback(first, "false_positive", "2026-01-07T08:00:00Z", "cli", note="nightly tracking gap")
    points, after = replay(verdicts=[verdict])
    assert [s for s in incidents(after, APP) if "T02:" in s] == [nightly[0]]   # the following nights are quiet
    real = [s for s in incidents(after, APP) if s.startswith("2026-01-10T03:1")]
    assert real, incidents(after, APP)           # the genuine drop an hour later on the same series pages
    said = {p.suppressed for p in points if p.series == APP and p.suppressed}
    assert f"false_positive: {first}" in said    # and the quiet nights say why


def test_a_verdict_while_the_incident_fires_resolves_it_at_once():
    _, before = replay(days=3)
    first = incidents(before, APP)[0]
    key = f"{APP}@{first}"
    # given two minutes into the gap: the incident resolves then, not when the gap ends
    at = "2026-01-07T02:03:00Z"
    _, after = replay(days=3, verdicts=[Feedback(key, "false_positive", at, "cli", note="known gap")])
    resolved = [a for a in after if a.dedup_key == key and a.status == "resolved"]
    assert len(resolved) == 1 and resolved[0].summary == "Resolved by feedback: false_positive (known gap)"
    assert resolved[0].window_end <= "2026-01-07T02:05:00Z"


def test_a_campaign_in_a_calendar_pages_nothing_and_leaves_expected_where_it_was():
    campaign = (3 * 1440 + 600, 3 * 1440 + 900)       # day 3, 10:00-15:00
    _, plain = replay(days=4, campaign=campaign)
    assert incidents(plain, WEB), "the campaign pages without a calendar"
    book = FeedbackBook()
    entry = CalendarEntry("campaign", "2026-01-08T10:00:00Z", "2026-01-08T15:00:00Z", "spring campaign",
                          segment={"channel": "web"})
    book.apply_calendar(entry.key, entry.to_json())
    points, alerts = replay(days=4, book=book, campaign=campaign)
    assert incidents(alerts, WEB) == []
    inside = [p for p in points if p.series == WEB and "2026-01-08T10:00" <= p.window_start < "2026-01-08T15:00"]
    assert inside and all(p.suppressed == "calendar: spring campaign" for p in inside)
    # after it ends, expected is what it is when nothing happened at all
    quiet, _ = replay(days=4)
    def expected_after(pts):
        return [p.expected for p in pts if p.series == WEB and "2026-01-08T15:00" <= p.window_start < "2026-01-08T15:30"]
    for got, normal in zip(expected_after(points), expected_after(quiet)):
        assert abs(got - normal) <= 0.05 * normal, (got, normal)
    assert not [p for p in points if p.series == APP and p.suppressed and p.suppressed.startswith("calendar")]

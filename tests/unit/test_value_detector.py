"""Kind ``value``: the level change judged by its own history, and news-only scores."""

from __future__ import annotations

import random

from blipwatch.detectors import make_detector
from blipwatch.detectors.state import dump_state, load_state


def _noise(det, rng, start, stop, level=100.0, sd=1.0):
    scores = []
    for minute in range(start, stop):
        x = {"t": minute * 60.0, "value": level + rng.gauss(0, sd)}
        scores.append(det.score_one(x))
        det.learn_one(x)
    return scores


def test_a_step_of_two_sigma_is_caught_at_its_onset_only_with_the_level_change():
    caught = {}
    for change_memory in (0, 2000):
        rng = random.Random(3)
        det = make_detector("value", {"change_memory": change_memory, "breakout_margin": 0})
        _noise(det, rng, 0, 1500)
        scores = _noise(det, rng, 1500, 1560, level=102.0)
        caught[change_memory] = max(scores[:10])
    assert caught[2000] >= 0.3 > caught[0]


def test_news_scores_an_incident_once_not_at_every_point():
    rng = random.Random(5)
    det = make_detector("value")
    _noise(det, rng, 0, 1500)
    scores = _noise(det, rng, 1500, 1530, level=110.0)   # a 10-sigma shift that lasts
    flagged = [i for i, s in enumerate(scores) if s >= 0.3]
    assert flagged and flagged[0] == 0
    assert len(flagged) <= 3
    plain = make_detector("value", {"news_decay": 0})
    rng = random.Random(5)
    _noise(plain, rng, 0, 1500)
    assert sum(s >= 0.3 for s in _noise(plain, rng, 1500, 1530, level=110.0)) > len(flagged)


def test_a_series_that_wanders_all_the_time_does_not_alert_on_wandering():
    rng = random.Random(7)
    det = make_detector("value")
    level, scores = 100.0, []
    for minute in range(4000):
        level += rng.gauss(0, 0.5)                       # a random walk: its changes are its normal
        x = {"t": minute * 60.0, "value": level + rng.gauss(0, 1)}
        scores.append(det.score_one(x))
        det.learn_one(x)
    assert sum(s >= 0.6 for s in scores[1000:]) <= 3


def test_the_change_and_news_state_round_trips_and_scores_identically():
    rng = random.Random(11)
    det = make_detector("value")
    _noise(det, rng, 0, 800)
    restored = load_state(dump_state(det))
    for minute in range(800, 900):
        x = {"t": minute * 60.0, "value": 100.0 + (8.0 if minute > 850 else 0.0) + rng.gauss(0, 1)}
        assert restored.score_one(x) == det.score_one(x)
        det.learn_one(x)
        restored.learn_one(x)
    assert (restored.chg_hist, restored.news_ref) == (det.chg_hist, det.news_ref)


def _square_day(det, rng, days, skip_day_part_on=None):
    """A day part at 50 from 08:00 to 16:00, 10 otherwise, 5-minute points; the scores of the last day."""
    scores = []
    for minute in range(0, days * 1440, 5):
        day_part = 480 <= minute % 1440 < 960 and minute // 1440 != skip_day_part_on
        x = {"t": minute * 60.0, "value": (50.0 if day_part else 10.0) + rng.gauss(0, 1)}
        if minute >= (days - 1) * 1440:
            scores.append(det.score_one(x))
        det.learn_one(x)
    return scores


def test_a_daily_jump_that_does_not_come_is_seen_only_with_the_profile_distance():
    caught = {}
    for memory in (0, 2000):
        det = make_detector("value", {"seasonal_memory": memory})
        caught[memory] = _square_day(det, random.Random(4), 6, skip_day_part_on=5)
    # 08:00 on the last day: the level stays at 10 where every day before jumped to 50
    assert max(caught[2000][96:100]) >= 0.25 > max(caught[0][96:100])
    # on a day like the others the profile distance adds no alert
    usual = _square_day(make_detector("value"), random.Random(4), 6)
    assert max(usual) < 0.3


def test_a_jump_to_a_new_extreme_breaks_out_a_steady_climb_does_not():
    rng = random.Random(6)
    det, plain = make_detector("value"), make_detector("value", {"breakout_margin": 0})
    for minute in range(600):                    # a heavy-tailed series: spikes to 80 are its normal
        v = 40.0 + rng.gauss(0, 3) + (40.0 if rng.random() < 0.05 else 0.0)
        for d in (det, plain):
            d.learn_one({"t": minute * 60.0, "value": v})
    jump = {"t": 600 * 60.0, "value": 100.0}     # a third beyond the range seen
    assert det.score_one(jump) >= 0.5 > plain.score_one(jump)
    climb = make_detector("value")
    scores = []
    for minute in range(2000):                   # a slow climb with noise: always at a new high
        x = {"t": minute * 60.0, "value": 10.0 + 0.05 * minute + rng.gauss(0, 0.2)}
        scores.append(climb.score_one(x))
        climb.learn_one(x)
    assert max(scores[400:]) < 0.5


def test_the_range_and_the_profile_distance_round_trip_and_score_identically():
    rng = random.Random(12)
    det = make_detector("value")
    _square_day(det, rng, 3)
    restored = load_state(dump_state(det))
    assert restored.seas_seen == det.seas_seen > 330
    for minute in range(3 * 1440, 4 * 1440, 5):
        x = {"t": minute * 60.0, "value": (10.0 if minute % 1440 < 600 else 70.0) + rng.gauss(0, 1)}
        assert restored.score_one(x) == det.score_one(x)
        det.learn_one(x)
        restored.learn_one(x)
    assert (restored.range_low, restored.range_high, restored.seas_hist) == \
        (det.range_low, det.range_high, det.seas_hist)

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

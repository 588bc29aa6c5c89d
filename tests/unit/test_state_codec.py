"""The series state codec (detectors/state.py, format 6): a restored tracker scores byte-identically,
floats round-trip bit for bit, and anything else re-warms the series on purpose."""

from __future__ import annotations

import base64
import logging
import math
import struct

import numpy as np
import orjson
import pytest

from blipwatch.detectors import AlertPolicy, StateVersionError, dump_state, load_state, make_detector
from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
from blipwatch.detectors.state import FORMAT_VERSION, LAYOUT, dump_series, load_series
from blipwatch.pipeline.tracker import SeriesTracker

CATALOGUE = Catalogue.from_dict(default_config_dict())
START = 1767225600000  # 2026-01-01 00:00 UTC


def windows(metric, n, seed, spike_at=None):
    """(window start, numerator, denominator) of a daily-shaped series from ``spike_at`` 5x what it
    was (a fifth for the two metrics that alert on drops only)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        daily = 1.0 + 0.8 * math.sin(2 * math.pi * i / 1440)
        boost = 1.0
        if spike_at is not None and i >= spike_at:
            boost = 0.2 if metric.name in ("event_volume", "checkout_conversion_rate") else 5.0
        if metric.detector_kind == "rate":   # a funnel is scored as a rate
            den = int(rng.poisson(60 * daily)) + 1
            num = int(rng.binomial(den, min(0.2 * boost, 1.0)))
        elif metric.detector_kind == "count":
            num, den = int(rng.poisson(200 * daily * boost)), 0
        else:
            den = int(rng.poisson(20 * daily)) + 1
            num = float(rng.normal(50 * boost, 5, den).sum())
        out.append((START + i * CATALOGUE.window_ms, float(num), float(den)))
    return out


def run(tracker, feed):
    points = []
    for start, num, den in feed:
        tracker.merge(start, num, den)
        # a funnel's windows close `within` later (tracker.lateness_ms holds it)
        for closed in tracker.close_until(start + CATALOGUE.window_ms + tracker.lateness_ms):
            points.append((closed.point.to_json(), closed.alert and closed.alert.to_json(), closed.firing))
    return points


@pytest.mark.parametrize("name", [m.name for m in CATALOGUE.metrics])
def test_a_restored_tracker_scores_identically_to_the_original(name):
    metric = CATALOGUE.by_name[name]
    feed = windows(metric, 2400, seed=3, spike_at=1500)
    original = SeriesTracker(f"{name}|all", metric, CATALOGUE)
    run(original, feed[:1510])   # warm, and mid-incident where the policy fires
    blob = original.to_bytes()
    assert blob.startswith(f"blipwatch-state/{FORMAT_VERSION} {LAYOUT}\n".encode())
    assert len(blob) <= 20_000
    copy = SeriesTracker.from_bytes(blob, f"{name}|all", metric, CATALOGUE)
    assert not copy.rewarmed
    assert copy.last_closed == original.last_closed and copy.incident == original.incident
    assert copy.to_bytes() == blob
    assert run(copy, feed[1510:]) == run(original, feed[1510:])
    assert copy.to_bytes() == original.to_bytes()


def test_an_incident_in_progress_is_kept():
    for metric in CATALOGUE.metrics:
        tracker = SeriesTracker(f"{metric.name}|all", metric, CATALOGUE)
        run(tracker, windows(metric, 1510, seed=3, spike_at=1500))
        assert tracker.incident is not None, metric.name
        restored = SeriesTracker.from_bytes(tracker.to_bytes(), f"{metric.name}|all", metric, CATALOGUE)
        assert restored.incident == tracker.incident and restored.policy == tracker.policy


def bits(x):
    return struct.pack("<d", x)


def test_nan_inf_and_negative_zero_round_trip_bit_for_bit():
    det = make_detector("value")
    for minute in range(50):
        det.learn_one({"t": minute * 60.0, "value": 10.0 + minute % 3})
    odd = [math.nan, math.inf, -math.inf, -0.0, 5e-324, struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0]]
    det.level, det.trend, det.cusum_up, det.cusum_down, det.last_z, det.offset = odd
    det.profile[:len(odd)] = odd
    state = load_series(dump_series(None, None, det, AlertPolicy()))
    for name in ("level", "trend", "cusum_up", "cusum_down", "last_z", "offset"):
        assert bits(getattr(state.detector, name)) == bits(getattr(det, name)), name
    assert [bits(x) for x in state.detector.profile] == [bits(x) for x in det.profile]
    assert dump_state(state.detector) == dump_state(det)


def test_numpy_scalars_are_stored_as_the_numbers_they_equal():
    det = make_detector("count")
    det.level, det.n_learned = np.float64(0.1), np.int64(7)
    restored = load_state(dump_state(det))
    assert type(restored.level) is float and bits(restored.level) == bits(0.1)
    assert type(restored.n_learned) is int and restored.n_learned == 7


def test_the_layout_is_pinned():
    # Changed the running-state fields of a detector, Page-Hinkley or the policy? Bump
    # FORMAT_VERSION in detectors/state.py, then update both values here.
    assert (FORMAT_VERSION, LAYOUT) == (16, "351e950f")


def test_a_format_5_state_holding_river_page_hinkley_fields_is_refused_and_rewarms():
    blob = dump_state(make_detector("rate"))
    old = blob.replace(f"blipwatch-state/{FORMAT_VERSION} ".encode(), b"blipwatch-state/5 ", 1)
    with pytest.raises(StateVersionError, match="format version 5"):
        load_state(old)


def test_a_river_model_detector_round_trips_and_scores_identically():
    det = make_detector("count", {"model": "preprocessing.MinMaxScaler | anomaly.HalfSpaceTrees",
                                  "params": {"seed": 3, "n_trees": 5}})
    points = [{"t": m * 60.0, "value": float(20 + (m * 7) % 11)} for m in range(300)]
    for x in points[:200]:
        det.learn_one(x)
    copy = load_series(dump_series(None, None, det, AlertPolicy())).detector
    for x in points[200:]:
        assert repr(copy.judge_one(x)) == repr(det.judge_one(x))
        copy.learn_one(x)
        det.learn_one(x)
    assert copy.n_learned == det.n_learned == 300
    assert list(copy.calibration.history) == list(det.calibration.history)


def test_a_river_model_stored_by_another_river_version_rewarms():
    det = make_detector("value", {"model": "time_series.SNARIMAX", "params": {"p": 1, "d": 0, "q": 0}})
    det.learn_one({"t": 0.0, "value": 1.0})
    fields, history, (version, model) = det.state()
    det.state = lambda: [fields, history, ["0.0.1", model]]
    with pytest.raises(StateVersionError, match="RiverVersionError"):
        load_state(dump_state(det))


def test_a_state_of_another_layout_is_refused_like_an_old_version():
    blob = dump_state(make_detector("rate"))
    other = blob.replace(LAYOUT.encode(), b"00000000", 1)
    with pytest.raises(StateVersionError, match="layout 00000000"):
        load_state(other)


def test_the_series_record_and_a_single_object_are_not_confused():
    series = dump_series(None, None, make_detector("rate"), AlertPolicy())
    with pytest.raises(StateVersionError, match="series record"):
        load_state(series)
    with pytest.raises(StateVersionError, match="damaged"):
        load_series(dump_state(make_detector("rate")))


def format_4_record():
    """A series record as blipwatch wrote it before format 5 (orjson, base64 JSON + zlib blobs)."""
    return orjson.dumps({"v": 1, "last_closed": START, "incident": None,
                         "detector": base64.b64encode(b"blipwatch-state/4\nx\x9c...").decode(),
                         "policy": base64.b64encode(b"blipwatch-state/4\nx\x9c...").decode()})


@pytest.mark.parametrize("blob", [
    format_4_record(),
    b"",
    b"\x80\x04river pickle from 0.24",
    dump_series(START, None, make_detector("rate"), AlertPolicy())[:-7],          # truncated
    dump_series(START, None, make_detector("rate"), AlertPolicy()) + b"\x00",     # trailing bytes
    f"blipwatch-state/{FORMAT_VERSION} {LAYOUT}\n".encode() + b"\x93\xa6series\x01\x02",
    f"blipwatch-state/{FORMAT_VERSION} {LAYOUT}\n".encode() + b"\xc1",
], ids=["format-4 record", "empty", "pickle", "truncated", "trailing", "short array", "bad msgpack"])
def test_an_unreadable_series_state_is_rewarmed_and_logged(blob, caplog):
    metric = CATALOGUE.by_name["cart_abandonment_rate"]
    with caplog.at_level(logging.WARNING, logger="blipwatch.pipeline.tracker"):
        tracker = SeriesTracker.from_bytes(blob, "cart_abandonment_rate|all", metric, CATALOGUE)
    assert tracker.rewarmed and tracker.last_closed is None and tracker.detector.n_learned == 0
    assert "re-warming it from scratch" in caplog.text


def test_a_stored_setting_unknown_to_this_blipwatch_rewarms():
    det = make_detector("rate")
    det.settings = {**det.settings, "alfa": 0.1}
    with pytest.raises(StateVersionError, match="damaged"):
        load_state(dump_state(det))


def test_a_setting_added_since_takes_its_default():
    det = make_detector("rate", {"alpha": 0.05})
    del det.settings["calibrate_tail"]
    restored = load_state(dump_state(det))
    assert restored.settings["alpha"] == 0.05
    assert restored.settings["calibrate_tail"] == make_detector("rate").settings["calibrate_tail"]

"""min_change: parsed with clear errors, measured in the wanted direction, defaults for every shipped metric."""

from __future__ import annotations

import pytest

from blipwatch.detectors.significance import (DEFAULT_MIN_CHANGE, MinChangeError, min_change_for,
                                              parse_min_change, significant)
from blipwatch.pipeline.catalogue import METRIC_KINDS, Catalogue


def test_every_metric_of_the_default_catalogue_has_a_default_that_parses_for_its_kind():
    catalogue = Catalogue.from_dict(None)
    assert set(DEFAULT_MIN_CHANGE) == set(catalogue.by_name)
    for metric in catalogue.metrics:
        assert min_change_for(metric.name, METRIC_KINDS[metric.kind]) is not None, metric.name


@pytest.mark.parametrize("text, kind, amount, relative", [
    ("10%", "mean", 0.10, True), ("10 %", "count", 0.10, True), ("2.5%", "rate", 0.025, True),
    ("2 points", "rate", 0.02, False), ("1 point", "rate", 0.01, False), ("2pp", "rate", 0.02, False),
    ("0.5 percentage points", "rate", 0.005, False), ("0.02", "rate", 0.02, False), (".02", "rate", 0.02, False),
    ("5", "count", 5.0, False), (5, "count", 5.0, False), (0.02, "rate", 0.02, False), ("12.5", "mean", 12.5, False),
])
def test_relative_points_and_absolute_rules_read_as_written(text, kind, amount, relative):
    rule = parse_min_change(text, kind)
    assert (rule.amount, rule.relative) == (pytest.approx(amount), relative)


@pytest.mark.parametrize("value", [None, 0, 0.0, "0", "off", "OFF", "0%", False])
def test_zero_or_off_means_no_rule(value):
    assert parse_min_change(value, "rate") is None


@pytest.mark.parametrize("value, kind, message", [
    ("2 points", "count", "only rates have"), ("2 points", "mean", "only rates have"),
    ("2", "rate", "did you mean '2 points'"), (1.5, "rate", "did you mean"), ("-5%", "count", "write a relative"),
    (-1, "count", "0 or more"), (float("nan"), "mean", "finite"), ("ten percent", "rate", "write a relative"),
    ("5000%", "count", "nothing would ever page"), ([5], "count", "write a relative"), (True, "rate", "write a"),
    ("10%", "gauge", "unknown metric kind"),
])
def test_a_bad_rule_is_one_line_that_says_what_to_write(value, kind, message):
    with pytest.raises(MinChangeError, match=message) as caught:
        parse_min_change(value, kind, "some_metric")
    assert "\n" not in str(caught.value)


def test_a_tiny_but_certain_change_on_a_big_shop_is_not_significant_and_a_real_one_is():
    rule = min_change_for("checkout_conversion_rate", "rate")
    assert not significant(0.717, 0.720, rule, "down")     # 0.3 points: certain on 100k checkouts, not news
    assert significant(0.64, 0.73, rule, "down")            # the simulator's subtle dip: ~9 points
    assert significant(0.70, 0.72, rule, "down")            # exactly 2 points counts (float noise aside)
    assert not significant(0.79, 0.72, rule, "down")        # a rise is not what this metric pages on


def test_direction_both_measures_either_way_and_relative_scales_with_expected():
    rule = parse_min_change("10%", "mean")
    assert [significant(v, 100.0, rule, "both") for v in (89.0, 91.0, 109.0, 111.0)] == [True, False, False, True]
    assert significant(9.0, 10.0, rule, "down") and not significant(9.5, 10.0, rule, "down")
    with pytest.raises(ValueError, match="direction"):
        significant(9.0, 10.0, rule, "sideways")


def test_with_a_rule_an_unknown_value_or_expectation_is_never_significant_and_without_one_always():
    rule = parse_min_change("30%", "count")
    assert not significant(None, 10.0, rule, "up") and not significant(10.0, None, rule, "up")
    assert significant(None, None, None, "up") and significant(10.0, 10.0, None, "down")


def test_a_configured_rule_wins_over_the_default_and_off_turns_it_off():
    assert str(min_change_for("event_volume", "count", "50%")) == "50%"
    assert min_change_for("event_volume", "count", 0) is None
    assert str(min_change_for("a_new_rate", "rate")) == "2 points" and min_change_for("cpu", "value") is None

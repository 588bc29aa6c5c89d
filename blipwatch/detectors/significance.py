"""Practical significance: the smallest change worth a page, per metric (``min_change``).

A detector says how *rare* a point is; on a big shop a conversion rate 0.3 points below normal
can be one in a billion and still not worth waking anyone. ``min_change`` is the other half of
the question: how *large* a change must be. It is written in the user's words and parsed once:

- ``"10%"``: relative, ``|observed - expected| >= 10 % of expected``;
- ``"2 points"`` (or ``"2 pp"``): absolute, in percentage points, for rates only (0.02);
- ``"0.02"`` or ``0.02``, ``"5"``: absolute, in the metric's own unit (a rate's is 0 to 1);
- ``0``, ``"0"``, ``"off"`` or nothing: no rule, every statistically rare point counts.

Only the change in the direction the point moved is measured, and only if that direction is one
the caller asks about (``direction``: the metric's ``up``, ``down`` or ``both``).

>>> rule = parse_min_change("2 points", kind="rate", metric="checkout_conversion_rate")
>>> significant(0.705, 0.72, rule, "down"), significant(0.69, 0.72, rule, "down")
(False, True)
>>> significant(0.80, 0.72, rule, "down")   # a rise, but only falls page for this metric
False
>>> aov = parse_min_change("10%", kind="mean")
>>> significant(62.0, 66.0, aov, "both"), significant(58.0, 66.0, aov, "both"), significant(75.0, 66.0, aov, "both")
(False, True, True)
>>> significant(58.0, 66.0, None, "both")   # no rule: the detector's score decides alone
True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

KINDS = ("rate", "count", "mean", "value")
DIRECTIONS = ("up", "down", "both")

#: The shipped rule per metric of the default catalogue (docs/detectors.md, "Practical significance"),
#: and per kind for a metric the catalogue adds without one.
DEFAULT_MIN_CHANGE: dict[str, str] = {
    "event_volume": "30%",
    "cart_abandonment_rate": "5 points",
    "checkout_conversion_rate": "2 points",
    "checkout_unconverted_5m": "3 points",
    "payment_failure_rate": "2 points",
    "search_zero_results_rate": "3 points",
    "error_rate": "1 point",
    "complaint_count": "50%",
    "average_order_value": "10%",
}
DEFAULT_MIN_CHANGE_BY_KIND: dict[str, str] = {"rate": "2 points", "count": "30%", "mean": "10%", "value": "0"}

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_RELATIVE = re.compile(rf"^{_NUMBER}\s*%$")
_POINTS = re.compile(rf"^{_NUMBER}\s*(?:points?|pts?|pp|percentage points?)$", re.IGNORECASE)
_ABSOLUTE = re.compile(rf"^{_NUMBER}$")


class MinChangeError(ValueError):
    """A ``min_change`` that cannot be read; the message says what to write instead."""


@dataclass(frozen=True)
class MinChange:
    """A parsed rule: ``amount`` is a fraction of expected (``relative``) or an absolute change."""

    amount: float
    relative: bool
    text: str

    def smallest_change(self, expected: float) -> float:
        """The smallest |observed - expected| that counts, around ``expected``.

        >>> MinChange(0.1, True, "10%").smallest_change(66.0), MinChange(0.02, False, "2 points").smallest_change(0.7)
        (6.6000000000000005, 0.02)
        """
        return self.amount * abs(expected) if self.relative else self.amount

    def __str__(self) -> str:
        return self.text


def parse_min_change(value: Any, kind: str, metric: str = "") -> MinChange | None:
    """A ``min_change`` setting as a rule, None for "no rule"; ``MinChangeError`` names what is wrong.

    >>> parse_min_change("10%", "count"), parse_min_change("2 points", "rate").amount
    (MinChange(amount=0.1, relative=True, text='10%'), 0.02)
    >>> parse_min_change(0.5, "mean"), parse_min_change("off", "rate"), parse_min_change(0, "rate")
    (MinChange(amount=0.5, relative=False, text='0.5'), None, None)
    >>> def error(value, kind, metric):
    ...     try:
    ...         parse_min_change(value, kind, metric)
    ...     except MinChangeError as exc:
    ...         return str(exc)
    >>> error("2 points", "count", "complaint_count")[:80]
    "complaint_count: min_change '2 points' is in percentage points, which only rates"
    >>> error("2", "rate", "error_rate")[-24:]
    "did you mean '2 points'?"
    """
    where = f"{metric}: min_change" if metric else "min_change"
    if kind not in KINDS:
        raise MinChangeError(f"{where}: unknown metric kind {kind!r}; use one of {', '.join(KINDS)}")
    if value is None or value is False:
        return None
    if isinstance(value, bool) or (not isinstance(value, (str, int, float))):
        raise MinChangeError(f"{where} {value!r}: write a relative change like '10%', percentage points like "
                             "'2 points' (rates), or an absolute change like '0.02'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise MinChangeError(f"{where} {value!r} must be a finite number of 0 or more")
        text, amount, relative = f"{value:g}", float(value), False
    else:
        text = " ".join(value.split())
        if text.lower() in ("off", "none", "0", "0%", "0 points"):
            return None
        if match := _RELATIVE.match(text):
            amount, relative = float(match.group(1)) / 100.0, True
            if amount > 10:
                raise MinChangeError(f"{where} {text!r} is more than 1000%: nothing would ever page")
        elif match := _POINTS.match(text):
            if kind != "rate":
                raise MinChangeError(f"{where} {text!r} is in percentage points, which only rates have; write a "
                                     "relative change like '10%' or an absolute one like '5'")
            amount, relative = float(match.group(1)) / 100.0, False
        elif match := _ABSOLUTE.match(text):
            amount, relative = float(match.group(1)), False
        else:
            raise MinChangeError(f"{where} {text!r}: write a relative change like '10%', percentage points like "
                                 "'2 points' (rates), or an absolute change like '0.02'")
    if amount == 0:
        return None
    if kind == "rate" and not relative and amount >= 1:
        raise MinChangeError(f"{where} {text!r} is more than a rate can change (0 to 1): did you mean "
                             f"'{text} points'?")
    return MinChange(amount, relative, text)


def min_change_for(metric: str, kind: str, configured: Any = None) -> MinChange | None:
    """The rule for one metric: its configured ``min_change`` if set (``0``/``"off"`` turns it off),
    else the shipped default for that metric, else the default for its kind.

    >>> str(min_change_for("checkout_conversion_rate", "rate")), str(min_change_for("signups", "count"))
    ('2 points', '30%')
    >>> min_change_for("checkout_conversion_rate", "rate", "off") is None
    True
    """
    if configured is None:
        configured = DEFAULT_MIN_CHANGE.get(metric, DEFAULT_MIN_CHANGE_BY_KIND.get(kind))
    return parse_min_change(configured, kind, metric)


def significant(value: float | None, expected: float | None, rule: MinChange | None, direction: str) -> bool:
    """Is the change from ``expected`` to ``value`` large enough to page, in a wanted ``direction``?

    ``direction`` is the metric's (``up``, ``down`` or ``both``). No rule: True (the score decides
    alone). With a rule, an unknown value or expectation: False (there is no change to measure).
    The boundary counts as significant.

    >>> rule = parse_min_change("30%", "count")
    >>> [significant(value, 100.0, rule, "down") for value in (70.0, 71.0, None)]
    [True, False, False]
    >>> significant(3.0, 0.0, rule, "up")   # from nothing, any rise is a relative change
    True
    """
    if rule is None:
        return True
    if value is None or expected is None:
        return False
    change = value - expected
    if direction == "up":
        moved = change
    elif direction == "down":
        moved = -change
    elif direction == "both":
        moved = abs(change)
    else:
        raise ValueError(f"direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    if not moved > 0:
        return False
    # a hair of tolerance: 0.69 vs 0.72 is 3 points even though 0.72 - 0.69 is 0.0299999...
    return moved >= rule.smallest_change(expected) * (1 - 1e-9)

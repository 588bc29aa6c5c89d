"""What people on call taught the worker, as state: verdicts, calendars and learned patterns.

Pure: no Kafka, no clock. Two objects, because they live in two places:

- ``FeedbackBook``, one per worker, the same on every worker: the latest verdict per incident
  (``blipwatch-feedback``) and every calendar entry (``blipwatch-calendar``), both compacted and
  read whole, like a global table. It answers "is this series/window inside a planned event?"
  (``calendar_for``) and "what verdict applies to this incident?" (``verdict``).
- ``SeriesFeedback``, one per series, kept with the series' detector state (it moves with the
  partition): which verdicts this series has already acted on (so a restart or a re-read of the
  topic never learns an incident twice) and the patterns a ``false_positive`` taught it.

``gate_window`` puts both together (and ``min_change``) for one closed window: what its point says
(``suppressed``), whether the policy may count it as anomalous, and whether the detector learns it.

Why a pattern and not the incident's windows learned after the fact: by the time a verdict comes
the detector has moved on, and windows learned out of time order drag today's level towards the
blip (``pipeline.tracker.LEARN_PAST_WINDOWS``, off); and even learned in time, a daily profile moves
only ``season_gamma`` (a quarter) of the way to one day's value, so a nightly 10-minute tracking gap
that went to 0 would still be expected at 75 % of normal the next night, and page again. So a
``false_positive`` leaves a pattern on its series, learned as normal (in order) each time it recurs: the same time of day (± ``tolerance``), the
same direction, no larger than ``larger_than_seen`` times the change that was called harmless, or
(the blip still going on past its taught end) within ``tolerance`` of a window it last suppressed. A
point that fits is suppressed (``suppressed: "false_positive: KEY"``); a pattern not seen again for
``keep_days`` is forgotten. A genuine incident an hour later, the other way, or much larger, pages.

>>> book = FeedbackBook()
>>> sale = CalendarEntry("spring-sale", "2026-03-20T00:00:00Z", "2026-03-23T00:00:00Z", "spring sale",
...                      metrics=("event_volume",), segment={"channel": "web"})
>>> book.apply_calendar(sale.key, sale.to_json()).reason
'spring sale'
>>> start = ms_from_iso("2026-03-21T12:00:00Z")
>>> book.calendar_for("event_volume", {"channel": "web"}, start, start + 60_000).id
'spring-sale'
>>> book.calendar_for("event_volume", {}, start, start + 60_000) is None    # the overall series is not covered
True
>>> book = FeedbackBook.from_bytes(book.to_bytes()); sorted(book.calendar)
['spring-sale']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import orjson

from blipwatch.detectors.significance import MinChange, significant
from blipwatch.schemas.feedback import CalendarEntry, Feedback
from blipwatch.schemas.outputs import InvalidDocument, ms_from_iso

DAY_MS = 86_400_000
#: A false alarm longer than this many windows is learned from its last ones only.
MAX_LEARN_WINDOWS = 24 * 60

BOOK_HEADER = b"blipwatch-feedback-book/1\n"
SERIES_HEADER = b"blipwatch-series-feedback/1\n"


class FeedbackStateError(ValueError):
    """A stored feedback state of another version or damaged: rebuild it (from the topics, or empty)."""


def suppressed_text(cause: str, detail: str) -> str:
    """The ``suppressed`` field of a metric point: why a rare point did not alert (and, for a
    calendar, was not learned). ``cause`` is ``calendar``, ``expected``, ``false_positive`` or
    ``min_change``.

    >>> suppressed_text("calendar", "spring sale"), suppressed_text("min_change", "2 points")
    ('calendar: spring sale', 'min_change: 2 points')
    """
    return f"{cause}: {detail}"


def segment_matches(wanted: dict[str, str] | None, segment: dict[str, str]) -> bool:
    """Does a calendar entry's ``segment`` cover a series' segment?

    >>> segment_matches(None, {"channel": "web"}), segment_matches({}, {}), segment_matches({}, {"channel": "web"})
    (True, True, False)
    >>> segment_matches({"channel": "web"}, {"channel": "web"}), segment_matches({"channel": "web"}, {"channel": "app"})
    (True, False)
    """
    if wanted is None:
        return True
    if not wanted:
        return not segment
    return all(segment.get(key) == value for key, value in wanted.items())


class FeedbackBook:
    """The latest verdict per ``dedup_key`` and every calendar entry by id.

    Fed with the records of the two compacted topics (``apply_feedback``, ``apply_calendar``: a
    ``None`` value is a tombstone); ``to_bytes``/``from_bytes`` keep it across restarts.
    """

    def __init__(self) -> None:
        self.verdicts: dict[str, Feedback] = {}
        self.calendar: dict[str, CalendarEntry] = {}
        #: (start ms, end ms, entry) in start order, for ``calendar_for`` (asked once per closed window
        #: of every series, so the times are parsed once, when the calendar changes)
        self._entries: list[tuple[int, int, CalendarEntry]] = []
        #: records that could not be decoded (for a counter and a log line; never a crash)
        self.rejected = 0

    # --- input ---------------------------------------------------------------------------------

    def apply_feedback(self, key: bytes | None, value: bytes | None) -> Feedback | None:
        """One record of the feedback topic; returns the verdict when it is new or changed (the
        caller acts on it), None for a repeat, a tombstone or an undecodable record."""
        if value is None:
            if key is not None:
                self.verdicts.pop(key.decode(errors="replace"), None)
            return None
        try:
            feedback = Feedback.from_json(value)
        except InvalidDocument:
            self.rejected += 1
            return None
        if key is not None and key != feedback.key:
            self.rejected += 1   # compaction would keep the wrong record: refuse it
            return None
        previous = self.verdicts.get(feedback.dedup_key)
        self.verdicts[feedback.dedup_key] = feedback
        if previous is not None and previous.verdict == feedback.verdict and previous.ended_at == feedback.ended_at:
            return None
        return feedback

    def apply_calendar(self, key: bytes | None, value: bytes | None) -> CalendarEntry | None:
        """One record of the calendar topic; returns the entry when added or changed."""
        if value is None:
            if key is not None and self.calendar.pop(key.decode(errors="replace"), None) is not None:
                self._reindex()
            return None
        try:
            entry = CalendarEntry.from_json(value)
        except InvalidDocument:
            self.rejected += 1
            return None
        if key is not None and key != entry.key:
            self.rejected += 1
            return None
        if self.calendar.get(entry.id) == entry:
            return None
        self.calendar[entry.id] = entry
        self._reindex()
        return entry

    def _reindex(self) -> None:
        self._entries = sorted(((e.start_ms, e.end_ms, e) for e in self.calendar.values()),
                               key=lambda item: (item[0], item[2].id))

    # --- questions -----------------------------------------------------------------------------

    def verdict(self, dedup_key: str) -> Feedback | None:
        return self.verdicts.get(dedup_key)

    def verdicts_for(self, series: str) -> list[Feedback]:
        """Every verdict on incidents of one series, oldest incident first."""
        found = [f for f in self.verdicts.values() if f.series_key() == series]
        return sorted(found, key=lambda f: (f.started_ms() or 0, f.dedup_key))

    def calendar_for(self, metric: str, segment: dict[str, str], window_start_ms: int,
                     window_end_ms: int) -> CalendarEntry | None:
        """The planned event covering this series' window (overlapping it), earliest first; None."""
        for start_ms, end_ms, entry in self._entries:
            if start_ms >= window_end_ms:
                break
            if end_ms > window_start_ms and (entry.metrics is None or metric in entry.metrics) \
                    and segment_matches(entry.segment, segment):
                return entry
        return None

    def active(self, window_start_ms: int, window_end_ms: int) -> list[CalendarEntry]:
        """Entries overlapping a window, for a gauge and for a worker that checks many series at once."""
        return [e for start_ms, end_ms, e in self._entries if start_ms < window_end_ms and end_ms > window_start_ms]

    def counts(self) -> dict[str, int]:
        """Verdicts by kind, for ``blipwatch_feedback_verdicts`` in /metrics.

        >>> FeedbackBook().counts()
        {'false_positive': 0, 'expected': 0, 'confirmed': 0}
        """
        counts = {"false_positive": 0, "expected": 0, "confirmed": 0}
        for feedback in self.verdicts.values():
            counts[feedback.verdict] += 1
        return counts

    # --- state ---------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return BOOK_HEADER + orjson.dumps({
            "verdicts": [f.to_dict() for _, f in sorted(self.verdicts.items())],
            "calendar": [e.to_dict() for _, e in sorted(self.calendar.items())],
        })

    @classmethod
    def from_bytes(cls, blob: bytes) -> "FeedbackBook":
        if not blob.startswith(BOOK_HEADER):
            raise FeedbackStateError(f"not a feedback book of this version (starts {blob[:32]!r})")
        try:
            document = orjson.loads(blob[len(BOOK_HEADER):])
            book = cls()
            book.verdicts = {f.dedup_key: f for f in map(Feedback.from_dict, document["verdicts"])}
            book.calendar = {e.id: e for e in map(CalendarEntry.from_dict, document["calendar"])}
        except (orjson.JSONDecodeError, InvalidDocument, KeyError, TypeError) as exc:
            raise FeedbackStateError(f"damaged feedback book: {exc}") from None
        book._reindex()
        return book


def windows_of(started_ms: int, ended_ms: int, window_ms: int) -> list[int]:
    """Window starts from the incident's first window up to (not including) ``ended_ms``, the
    last ``MAX_LEARN_WINDOWS`` of them.

    >>> windows_of(120_000, 300_000, 60_000)
    [120000, 180000, 240000]
    """
    first = started_ms - started_ms % window_ms
    first = max(first, ended_ms - MAX_LEARN_WINDOWS * window_ms)
    return list(range(first, ended_ms, window_ms))


@dataclass
class Pattern:
    """A harmless shape a ``false_positive`` taught one series (times of day in ms since midnight UTC)."""

    start_tod: int
    end_tod: int
    direction: str
    deviation: float | None     # the largest relative change that was called harmless, if known
    seen_ms: int                # event time it was last seen (taught or matched)
    dedup_key: str

    def covers(self, t_ms: int, tolerance_ms: int) -> bool:
        tod = t_ms % DAY_MS
        low, high = (self.start_tod - tolerance_ms) % DAY_MS, (self.end_tod + tolerance_ms) % DAY_MS
        if (self.end_tod - self.start_tod) % DAY_MS + 2 * tolerance_ms >= DAY_MS:
            return True
        return low <= tod < high if low < high else (tod >= low or tod < high)


@dataclass(frozen=True)
class Action:
    """What a series does with a verdict: resolve its incident now, learn these windows as normal."""

    verdict: str
    resolve: bool
    learn: tuple[int, ...]


@dataclass
class SeriesFeedback:
    """Per series: the verdicts acted on and the patterns learned (kept with the detector state).

    >>> series = SeriesFeedback()
    >>> gap = Feedback("event_volume|channel=app@2026-01-05T02:00:00Z", "false_positive", "2026-01-05T08:00:00Z", "cli")
    >>> night = ms_from_iso("2026-01-05T02:00:00Z")
    >>> action = series.act(gap, ended_ms=night + 600_000, window_ms=60_000, direction="down", firing=True,
    ...                     deviation=1.0)
    >>> action.verdict, action.resolve, len(action.learn), action.learn[0] == night
    ('false_positive', True, 10, True)
    >>> series.act(gap, ended_ms=night + 600_000, window_ms=60_000, direction="down", firing=False) is None  # once
    True
    >>> series.recurs(night + DAY_MS + 120_000, "down", 1.0).dedup_key       # the next night: suppressed
    'event_volume|channel=app@2026-01-05T02:00:00Z'
    >>> series.recurs(night + DAY_MS + 3_600_000, "down", 1.0) is None      # an hour later: pages
    True
    >>> [series.recurs(night + DAY_MS + m * 60_000, "down", 1.0) is not None   # unless the blip went on
    ...  for m in (20, 34, 48)]
    [True, True, True]
    """

    #: dedup_key -> (the verdict acted on, whether its windows were learned), oldest first
    acted: dict[str, tuple[str, bool]] = field(default_factory=dict)
    patterns: list[Pattern] = field(default_factory=list)
    tolerance_ms: int = 15 * 60_000
    keep_days: float = 14.0
    larger_than_seen: float = 1.5

    #: verdicts remembered per series (the oldest are forgotten: their incidents are long over)
    MAX_ACTED = 32
    MAX_PATTERNS = 8

    def act(self, feedback: Feedback, ended_ms: int | None, window_ms: int, direction: str | None,
            firing: bool, deviation: float | None = None) -> Action | None:
        """The action for a verdict on an incident of this series, once (None when acted on already).

        ``ended_ms``: the end of the incident's last anomalous window (not the normal windows that
        resolved it, which were learned already; while it still fires, the end of the last closed
        window); ``firing``: it still fires on this series; ``direction`` and ``deviation``: its
        direction and largest relative change, for the pattern a ``false_positive`` leaves.
        """
        key = feedback.dedup_key
        verdict, learned = self.acted.get(key, (None, False))
        if verdict == feedback.verdict:
            return None
        started = feedback.started_ms()
        ended = feedback.ended_ms() or ended_ms
        learn: tuple[int, ...] = ()
        if feedback.verdict == "false_positive" and started is not None and ended is not None and ended > started:
            # learned once: a verdict changed back and forth must not feed the detector the same windows twice
            learn = () if learned else tuple(windows_of(started, ended, window_ms))
            learned = True
            if direction in ("up", "down"):
                self.patterns = [p for p in self.patterns if p.dedup_key != key]
                self.patterns.append(Pattern(started % DAY_MS, ended % DAY_MS, direction, deviation, ended, key))
                del self.patterns[:-self.MAX_PATTERNS]
        elif feedback.verdict == "expected":
            self.patterns = [p for p in self.patterns if p.dedup_key != key]
        self.acted.pop(key, None)
        self.acted[key] = (feedback.verdict, learned)
        while len(self.acted) > self.MAX_ACTED:
            del self.acted[next(iter(self.acted))]
        return Action(feedback.verdict, firing and feedback.verdict != "confirmed", learn)

    def recurs(self, t_ms: int, direction: str | None, deviation: float | None = None) -> Pattern | None:
        """The learned harmless pattern this window fits (and marks seen), or None: it may page."""
        if not self.patterns or direction is None:
            return None
        keep_ms = self.keep_days * DAY_MS
        self.patterns = [p for p in self.patterns if t_ms - p.seen_ms <= keep_ms]
        for pattern in self.patterns:
            # the blip called harmless, still going on past its taught end: the same blip
            continuing = 0 <= t_ms - pattern.seen_ms <= self.tolerance_ms
            if pattern.direction != direction or not (continuing or pattern.covers(t_ms, self.tolerance_ms)):
                continue
            if pattern.deviation is not None and deviation is not None and \
                    deviation > pattern.deviation * self.larger_than_seen:
                continue
            pattern.seen_ms = max(pattern.seen_ms, t_ms)
            return pattern
        return None

    def to_bytes(self) -> bytes:
        return SERIES_HEADER + orjson.dumps({
            "acted": [[key, verdict, learned] for key, (verdict, learned) in self.acted.items()],
            "patterns": [[p.start_tod, p.end_tod, p.direction, p.deviation, p.seen_ms, p.dedup_key]
                         for p in self.patterns],
        })

    @classmethod
    def from_bytes(cls, blob: bytes) -> "SeriesFeedback":
        if not blob.startswith(SERIES_HEADER):
            raise FeedbackStateError(f"not a series feedback state of this version (starts {blob[:32]!r})")
        try:
            document = orjson.loads(blob[len(SERIES_HEADER):])
            return cls(acted={str(k): (str(v), bool(learned)) for k, v, learned in document["acted"]},
                       patterns=[Pattern(int(a), int(b), str(c), None if d is None else float(d), int(e), str(f))
                                 for a, b, c, d, e, f in document["patterns"]])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FeedbackStateError(f"damaged series feedback state: {exc}") from None


def relative_change(value: float | None, expected: float | None) -> float | None:
    """|value - expected| / |expected|, the ``deviation`` a pattern remembers (None if unknown).

    >>> relative_change(0.0, 120.0), relative_change(150.0, 100.0), relative_change(1.0, 0.0)
    (1.0, 0.5, None)
    """
    if value is None or expected is None or expected == 0:
        return None
    return abs(value - expected) / abs(expected)


def load_records(book: FeedbackBook, feedback: Iterable[tuple[bytes | None, bytes | None]] = (),
                 calendar: Iterable[tuple[bytes | None, bytes | None]] = ()) -> FeedbackBook:
    """Feed ``(key, value)`` records of both topics in offset order (e.g. a restart's read to the end)."""
    for key, value in feedback:
        book.apply_feedback(key, value)
    for key, value in calendar:
        book.apply_calendar(key, value)
    return book


@dataclass(frozen=True)
class Gate:
    """What people said about one closed window of one series, before the policy sees it.

    ``suppressed``: the point's ``suppressed`` field (None: nothing to say). ``may_alert``: the
    policy may count the point as anomalous (pass it as its ``wanted``; False counts as a normal
    point towards resolving). ``learn``: ``"normal"`` (the detector decides, as without feedback),
    ``"skip"`` (not learned: a planned event) or ``"force"`` (learned as normal even if the detector
    would freeze: a pattern called harmless).
    """

    suppressed: str | None
    may_alert: bool
    learn: str


OPEN = Gate(None, True, "normal")


def gate_window(book: FeedbackBook, series: SeriesFeedback | None, metric: str, segment: dict[str, str],
                window_start_ms: int, window_end_ms: int, value: float | None, expected: float | None,
                point_direction: str | None, rare: bool, rule: MinChange | None, metric_direction: str) -> Gate:
    """The gate for one window, in order: a planned event, a pattern a false positive taught the
    series, a change too small to matter (``min_change``), else open. ``rare``: the detector flagged
    the point (``is_anomaly``); a point that is not rare is only ever gated by a calendar.

    >>> book, series = FeedbackBook(), SeriesFeedback()
    >>> t = ms_from_iso("2026-01-06T02:03:00Z")
    >>> from blipwatch.detectors.significance import parse_min_change
    >>> gate_window(book, series, "event_volume", {"channel": "app"}, t, t + 60_000, 70.0, 100.0, "down", True,
    ...             parse_min_change("50%", "count"), "down")
    Gate(suppressed='min_change: 50%', may_alert=False, learn='normal')
    >>> gate_window(book, series, "event_volume", {"channel": "app"}, t, t + 60_000, 0.0, 100.0, "down", True,
    ...             parse_min_change("50%", "count"), "down") == OPEN
    True
    """
    if book.calendar:
        entry = book.calendar_for(metric, segment, window_start_ms, window_end_ms)
        if entry is not None:
            return Gate(suppressed_text("calendar", entry.reason), False, "skip")
    if not rare or (point_direction is not None and metric_direction not in ("both", point_direction)):
        return OPEN     # nothing to say: the policy does not count it anyway
    if series is not None and series.patterns:
        pattern = series.recurs(window_start_ms, point_direction, relative_change(value, expected))
        if pattern is not None:
            return Gate(suppressed_text("false_positive", pattern.dedup_key), False, "force")
    if rule is not None and not significant(value, expected, rule, metric_direction):
        return Gate(suppressed_text("min_change", rule.text), False, "normal")
    return OPEN

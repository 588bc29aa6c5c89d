"""Which segments explain a blip: each series' recent excess over its expected value, and, when
an alert fires, the share of a broader segment's blip a narrower one accounts for. The alert names
the most specific segment that explains it (``related`` and ``summary``), in the stream, from the
windows of the incident so far. The stream and ``blipwatch replay`` both keep one ``IncidentBook``.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from blipwatch.schemas.outputs import AnomalyAlert, MetricPoint, ms_from_iso, segment_label, series_key, spoken_segment


def window_excess(value: float | None, expected: float | None, volume: float | None) -> float | None:
    """What one window has beyond what was expected, in the metric's own units of volume:
    ``(observed - expected) x volume``. For a rate, the numerator events beyond the expected rate
    of its trials; for a count (no volume), the events beyond the expected count; for a mean, the
    sum beyond the expected mean of its values. None when nothing was expected; 0 for a window
    without trials. These add up over segments: a segment's excess is, up to the difference
    between its children's expected values and its own, the sum of its children's.

    >>> window_excess(0.9, 0.6, 50), window_excess(14, 10, None), window_excess(None, 0.6, 0), window_excess(3, None, 4)
    (15.000000000000002, 4, 0.0, None)
    """
    if expected is None or expected != expected:
        return None
    if value is None:
        return 0.0
    return value - expected if volume is None else (value - expected) * volume


def attribution_share(narrower: list[float], broader: list[float], direction: str) -> float | None:
    """The share of a broader segment's blip that a narrower one accounts for, from their excesses
    (``window_excess``) over the same windows: sum(narrower) / sum(broader), counted in the blip's
    direction, at most 1 (other parts of the broader segment moved the other way). None when
    either did not move in that direction.

    >>> attribution_share([14.0, 15.0], [15.0, 16.0], "up")             # web x DE of web's rise
    0.9354838709677419
    >>> attribution_share([-3.0, -2.0], [-10.0, -10.0], "down")         # 25% of a drop
    0.25
    >>> attribution_share([5.0], [4.0], "up"), attribution_share([5.0], [-1.0], "up")
    (1.0, None)
    """
    sign = -1.0 if direction == "down" else 1.0
    part, whole = sign * sum(narrower), sign * sum(broader)
    if part <= 0 or whole <= 0:
        return None
    return min(1.0, part / whole)


def attribution_clause(own: dict[str, str], cause: dict | None, explained: list[dict], direction: str) -> str:
    """The end of a firing alert's summary: the most specific segment that explains the blip
    (``cause``), and the broader segments whose blip this one explains (``explained``), each a
    ``related`` entry (``segment``, ``share``).

    >>> web_de = {"segment": {"channel": "web", "country": "DE"}, "share": 0.95}
    >>> attribution_clause({"channel": "web"}, web_de, [{"segment": {}, "share": 0.9}], "up")
    '; channel=web × country=DE accounts for 95% of the rise; channel=web accounts for 90% of the rise overall'
    >>> attribution_clause({"channel": "web", "country": "DE"}, None, [{"segment": {"channel": "web"}, "share": 0.95},
    ...                    {"segment": {"country": "DE"}, "share": 0.8}, {"segment": {}, "share": 0.7}], "down")
    '; it accounts for 95% of the drop on channel=web, 80% on country=DE and 70% overall'
    """
    change = "drop" if direction == "down" else "rise"
    clauses = []
    if cause is not None:
        clauses.append(f"{spoken_segment(segment_label(cause['segment']))} accounts for "
                       f"{cause['share']:.0%} of the {change}")
    if explained:
        places = [("overall" if not entry["segment"] else f"on {spoken_segment(segment_label(entry['segment']))}",
                   f"{entry['share']:.0%}") for entry in explained]
        said = [f"{places[0][1]} of the {change} {places[0][0]}"] + [f"{share} {where}" for where, share in places[1:]]
        listed = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
        subject = spoken_segment(segment_label(own)) if cause is not None else "it"
        clauses.append(f"{subject} accounts for {listed}")
    return "".join(f"; {clause}" for clause in clauses)


#: how many recent windows of each series the book keeps to attribute a blip to segments
ATTRIBUTION_WINDOWS = 30
#: a narrower segment explains a broader one's blip when it accounts for at least this share of it
EXPLAINS_SHARE = 0.5
#: the fewest windows a share is computed over (an incident's first window alone is mostly noise)
MIN_ATTRIBUTION_WINDOWS = 3


class IncidentBook:
    """The series firing right now, so an alert can name the others firing with it (``related``):
    a global spike and the segment that drives it belong together.

    It also keeps each series' excess over its expected value (``window_excess``) for the last
    ``ATTRIBUTION_WINDOWS`` windows (``observe``, every closed window), so that a firing alert says
    which segments of the same metric explain it: over the windows of its incident so far (at least
    ``MIN_ATTRIBUTION_WINDOWS``; when the other series has not closed the newest yet, as many of
    the newest windows both have, one of the incident's at least), the share of the broader
    segment's excess that the narrower accounts for (``attribution_share``). In ``related``, a
    narrower segment (``relation: child``) carries the share of this alert's blip it accounts for,
    and the most specific one accounting for at least ``EXPLAINS_SHARE`` of it is the ``cause``; a
    broader segment (``relation: parent``) carries the share of its blip this alert's segment
    accounts for, listed whether it fires or not. The summary says both. It sees the series scored
    on this worker (all of them with one worker)."""

    def __init__(self) -> None:
        self.firing: dict[str, dict[str, Any]] = {}
        #: series -> window start (as in the point) -> excess, the newest ATTRIBUTION_WINDOWS
        self.recent: dict[str, dict[str, float]] = {}
        #: metric -> series -> its segment's (dimension, value) pairs
        self.segments: dict[str, dict[str, frozenset]] = {}
        #: the firing series whose messages named a cause (``follow_up`` asks the others each window)
        self.named: set[str] = set()

    def observe(self, series: str, point: MetricPoint) -> None:
        """A closed window of a series (before its alert, if any, is noted)."""
        expected = point.expected
        if expected is None or expected != expected:
            return
        value = point.value
        volume = point.denominator
        recent = self.recent.get(series)
        if recent is None:
            recent = self.recent[series] = {}
            self.segments.setdefault(point.metric, {})[series] = frozenset(point.segment.items())
        # window_excess written out: this runs for every closed window
        recent[point.window_start] = (0.0 if value is None else value - expected if volume is None
                                      else (value - expected) * volume)
        if len(recent) > ATTRIBUTION_WINDOWS:
            del recent[next(iter(recent))]

    def note(self, series: str, alert: AnomalyAlert) -> AnomalyAlert:
        """Fill in ``related`` and the summary's attribution of an alert about to be published."""
        if alert.status == "firing":
            self.firing.setdefault(series, {"metric": alert.metric, "segment": alert.segment})
        related = {key: {**other, "firing": True} for key, other in self.firing.items() if key != series}
        if alert.status == "firing":
            cause, explained = self._attribute(series, alert, related)
            alert.summary += attribution_clause(alert.segment, cause, explained, alert.direction)
            if cause is not None:
                self.named.add(series)
        alert.related = [dict(entry) for _, entry in sorted(related.items())]
        if alert.status == "resolved":
            self.firing.pop(series, None)
            self.named.discard(series)
        return alert

    def closed(self, tracker: Any, window: Any) -> AnomalyAlert | None:
        """Observe a ``ClosedWindow`` of ``tracker`` (a ``SeriesTracker``) and return the alert to
        publish for it: its own, noted, or the update naming its incident's cause (``follow_up``),
        or None. The stream's aggregate stage and replay both publish what this returns."""
        series = tracker.series
        self.observe(series, window.point)
        if window.alert is None and not window.firing:
            return None
        self.restore(tracker)
        alert = self.note(series, window.alert) if window.alert is not None else self.follow_up(tracker, window)
        if alert is not None and series in self.named and tracker.incident is not None:
            tracker.incident["named"] = True     # kept in the series' state: a restart does not name it again
        return alert

    def restore(self, tracker: Any) -> None:
        """A series whose incident fired before this book existed (the worker restarted, or the
        series' partition moved here): the book learns it fires at its first window with an
        alert or firing, and whether one of its messages named a cause from the incident
        (``named``, in the series' state), so it gets the update naming the cause if none did,
        and only then."""
        series = tracker.series
        if series in self.firing or tracker.incident is None:
            return
        self.firing[series] = {"metric": tracker.metric.name, "segment": dict(tracker.segment)}
        if tracker.incident.get("named"):
            self.named.add(series)

    def follow_up(self, tracker: Any, window: Any) -> AnomalyAlert | None:
        """The update that names a firing incident's cause once it is known, or None.

        ``window`` is a ``ClosedWindow`` of ``tracker`` (a ``SeriesTracker``) that brought no alert,
        observed already. A broader segment's first message often cannot name its cause: the
        narrower series close the same windows a little later. While the incident fires and none of
        its messages named a cause, each window asks again; the first time a narrower segment
        explains it, the tracker's ``cause_update`` (same ``dedup_key``, its severity as it is)
        says so, once. A series without narrower segments (a pair, say) is never asked."""
        series = tracker.series
        if not window.firing or series in self.named or series not in self.firing:
            return None
        segment = frozenset(tracker.segment.items())
        if not any(items > segment for items in (self.segments.get(tracker.metric.name) or {}).values()):
            return None
        alert = tracker.cause_update(window.point)
        if alert is None:
            return None
        self.note(series, alert)
        return alert if series in self.named else None

    def _attribute(self, series: str, alert: AnomalyAlert,
                   related: dict[str, dict[str, Any]]) -> tuple[dict | None, list[dict]]:
        """Add the shares to ``related``; (the cause's entry or None, the explained parents' entries)."""
        own = self.recent.get(series)
        if not own:
            return None, []
        first, last = ms_from_iso(alert.started_at), ms_from_iso(alert.window_start)
        times = {w: ms_from_iso(w) for w in own}
        upto = [w for w in own if times[w] <= last]           # oldest first
        span = sum(1 for w in upto if times[w] >= first)
        if not span:
            return None, []
        segment = frozenset(alert.segment.items())
        direction = alert.direction

        def share(other: str, narrower: bool) -> tuple[float | None, float]:
            """(the share, the narrower segment's excess in the blip's direction)"""
            # the incident's windows (at least MIN_ATTRIBUTION_WINDOWS), the newest both series
            # have: the other may not have closed the newest yet (it is scored later in the same
            # step, or on another partition); when it has closed none of the incident's, unknown
            theirs = self.recent.get(other) or {}
            common = [w for w in upto if w in theirs][-max(span, MIN_ATTRIBUTION_WINDOWS):]
            if not common or times[common[-1]] < first:
                return None, 0.0
            mine, their = [own[w] for w in common], [theirs[w] for w in common]
            if narrower:
                mine, their = their, mine
            return attribution_share(mine, their, direction), (-1.0 if direction == "down" else 1.0) * sum(mine)

        def entry(other: str, items: frozenset, relation: str, value: float) -> dict[str, Any]:
            found = related.get(other)
            if found is None:
                found = related[other] = {"metric": alert.metric, "segment": dict(sorted(items)), "firing": False}
            found.update(relation=relation, share=round(value, 3))
            return found

        explained = []
        for size in range(len(segment) - 1, -1, -1):   # broader segments, the nearest first
            for items in combinations(sorted(segment), size):
                other = series_key(alert.metric, dict(items))
                value = share(other, narrower=False)[0] if other in self.recent else None
                if value is not None:
                    found = entry(other, frozenset(items), "parent", value)
                    if value >= EXPLAINS_SHARE:
                        explained.append(found)
        # the cause: of the narrower segments that explain it, the most specific; among those, the
        # one with the largest excess (segments of one dimension split the broader one: noise can
        # give two of them most of a small blip, never most of the excess)
        best = None
        for other, items in (self.segments.get(alert.metric) or {}).items():
            if not items > segment:
                continue
            value, excess = share(other, narrower=True)
            if value is None:
                continue
            if other in related:    # a narrower segment firing too
                entry(other, items, "child", value)
            if value >= EXPLAINS_SHARE and (best is None or (len(items), excess) > best[0]):
                best = ((len(items), excess), other, items, value)
        cause = None
        if best is not None:
            cause = entry(best[1], best[2], "child", best[3])
            cause["cause"] = True
        return cause, explained

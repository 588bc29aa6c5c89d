"""Cross segments and the most specific cause: the attribution arithmetic of ``IncidentBook``, and a
replay where a blip only on channel=web x country=DE is named as the cause of the rise on
channel=web and on country=DE."""

import random

import orjson
import pytest

from blipwatch.pipeline.attribution import IncidentBook, attribution_share, window_excess
from blipwatch.schemas.outputs import AnomalyAlert, MetricPoint, iso_from_ms, ms_from_iso, segment_from_label

MINUTE = 60_000
T0 = 1_767_600_000_000 - 1_767_600_000_000 % MINUTE
METRIC = "payment_failure_rate"


def point(label: str, window: int, numerator: float, denominator: float, expected: float) -> MetricPoint:
    return MetricPoint(f"{METRIC}|{label}", METRIC, segment_from_label(label), iso_from_ms(T0 + window * MINUTE),
                       iso_from_ms(T0 + (window + 1) * MINUTE), numerator, denominator,
                       numerator / denominator if denominator else None, expected, None, None, 0.0, False, None)


def alert(label: str, window: int, started: int, direction: str = "up") -> AnomalyAlert:
    series = f"{METRIC}|{label}"
    return AnomalyAlert(f"{series}@x#firing", f"{series}@{iso_from_ms(T0 + started * MINUTE)}", "firing", "warning",
                        METRIC, segment_from_label(label), direction, iso_from_ms(T0 + window * MINUTE),
                        iso_from_ms(T0 + (window + 1) * MINUTE), 0.9, 0.6, None, None, 0.8, 36.0, 40.0,
                        iso_from_ms(T0 + started * MINUTE), "Cart abandonment rate is up")


def test_excess_and_share_arithmetic():
    # a rate: numerator events beyond the expected rate of its trials
    assert window_excess(36 / 40, 0.6, 40) == pytest.approx(12.0)
    # a count: events beyond the expected count; a mean: the sum beyond the expected mean of its values
    assert window_excess(30.0, 20.0, None) == 10.0
    assert window_excess(55.0, 50.0, 8) == pytest.approx(40.0)
    assert window_excess(None, 0.6, 0.0) == 0.0 and window_excess(0.9, None, 40) is None
    # web x DE rose by 12 + 11 abandoned carts, web as a whole by 13 + 12: 23 / 25 of it
    assert attribution_share([12.0, 11.0], [13.0, 12.0], "up") == pytest.approx(0.92)
    # a drop is counted downwards; what moved the other way gives no share
    assert attribution_share([-4.0], [-5.0], "down") == pytest.approx(0.8)
    assert attribution_share([4.0], [5.0], "down") is None and attribution_share([-1.0], [5.0], "up") is None
    # the rest of the broader segment fell: the narrower one accounts for all of its rise, not more
    assert attribution_share([12.0], [9.0], "up") == 1.0


def book_with_a_blip_on_web_de() -> IncidentBook:
    """Windows 0-9 of five series at an expected 0.6; from window 6 on, web x DE abandons 36 of 40
    carts (12 more than expected), web x FR stays normal (a little noise), app x DE too."""
    book = IncidentBook()
    for window in range(10):
        blip = window >= 6
        cells = {"channel=web,country=DE": (36.0 if blip else 24.0, 40.0),
                 "channel=web,country=FR": (25.0 if blip else 24.0, 40.0),
                 "channel=app,country=DE": (12.0, 20.0)}
        web = [sum(cells[k][i] for k in cells if "web" in k) for i in (0, 1)]
        de = [sum(cells[k][i] for k in cells if "DE" in k) for i in (0, 1)]
        every = [sum(cell[i] for cell in cells.values()) for i in (0, 1)]
        for label, (n, d) in [("all", every), ("channel=web", web), ("country=DE", de), *cells.items()]:
            book.observe(f"{METRIC}|{label}", point(label, window, n, d, 0.6))
    return book


def test_the_pair_alert_names_the_broader_segments_whose_rise_it_explains():
    book = book_with_a_blip_on_web_de()
    noted = book.note(f"{METRIC}|channel=web,country=DE", alert("channel=web,country=DE", 9, 6))
    by_segment = {tuple(sorted(e["segment"].items())): e for e in noted.related}
    # web rose by 12 + 1 a window, DE by 12, everything by 13: web x DE is 12/13, 12/12, 12/13 of them
    assert by_segment[(("channel", "web"),)] == {"metric": METRIC, "segment": {"channel": "web"}, "firing": False,
                                                 "relation": "parent", "share": round(12 / 13, 3)}
    assert by_segment[(("country", "DE"),)]["share"] == 1.0
    assert by_segment[()]["share"] == round(12 / 13, 3)
    assert not any(e.get("cause") for e in noted.related)
    assert noted.summary == ("Cart abandonment rate is up; it accounts for 92% of the rise on channel=web, "
                             "100% on country=DE and 92% overall")
    # nothing else fires: only same-metric segments that its rise explains are listed
    assert len(noted.related) == 3


def test_a_broader_alert_names_the_most_specific_segment_that_explains_it_as_its_cause():
    book = book_with_a_blip_on_web_de()
    book.note(f"{METRIC}|channel=web,country=DE", alert("channel=web,country=DE", 8, 6))   # fires first
    noted = book.note(f"{METRIC}|channel=web", alert("channel=web", 9, 7))
    cause = [e for e in noted.related if e.get("cause")]
    assert cause == [{"metric": METRIC, "segment": {"channel": "web", "country": "DE"}, "firing": True,
                      "relation": "child", "share": round(12 / 13, 3), "cause": True}]
    parent = [e for e in noted.related if e.get("relation") == "parent"]
    assert parent == [{"metric": METRIC, "segment": {}, "firing": False, "relation": "parent", "share": 1.0}]
    assert noted.summary == ("Cart abandonment rate is up; channel=web × country=DE accounts for 92% of the rise; "
                             "channel=web accounts for 100% of the rise overall")
    # the overall alert: the pair is more specific than channel=web, and explains it as well
    noted = book.note(f"{METRIC}|all", alert("all", 9, 7))
    assert [e["segment"] for e in noted.related if e.get("cause")] == [{"channel": "web", "country": "DE"}]
    # web x FR, which did not explain it, is not listed; web x DE and web are (firing)
    assert sorted(e["segment"].get("country", "-") + e["segment"].get("channel", "-") for e in noted.related) == \
        ["-web", "DEweb"]


def test_only_the_windows_of_the_incident_count_and_a_resolved_alert_carries_no_share():
    book = book_with_a_blip_on_web_de()
    # an incident that started at window 0 also counts the normal windows before the blip: still explained
    noted = book.note(f"{METRIC}|channel=web", alert("channel=web", 9, 0))
    assert [e["share"] for e in noted.related if e.get("cause")] == [round(48 / 52, 3)]
    resolved = alert("channel=web", 9, 0)
    resolved.status = "resolved"
    noted = book.note(f"{METRIC}|channel=web", resolved)
    assert noted.related == [] and noted.summary == "Cart abandonment rate is up"


class Tracker:
    """What ``IncidentBook.follow_up`` reads of a ``SeriesTracker``: its series, segment, metric and
    the update message of its incident in progress."""

    def __init__(self, label: str, started: int):
        from types import SimpleNamespace

        self.series, self.segment = f"{METRIC}|{label}", segment_from_label(label)
        self.metric = SimpleNamespace(name=METRIC)
        self.started = started

    def cause_update(self, p: MetricPoint) -> AnomalyAlert:
        window = (ms_from_iso(p.window_start) - T0) // MINUTE
        a = alert(self.series.split("|", 1)[1], window, self.started)
        a.alert_id = f"{a.dedup_key}#cause@{p.window_start}"
        return a


def test_an_incident_whose_cause_was_unknown_gets_one_update_naming_it():
    from types import SimpleNamespace

    book = IncidentBook()
    cells = {"channel=web,country=DE": (24.0, 40.0), "channel=web,country=FR": (24.0, 40.0)}
    web, pair = Tracker("channel=web", 6), Tracker("channel=web,country=DE", 6)

    def close(window: int, blip: bool) -> dict:
        cells["channel=web,country=DE"] = (36.0 if blip else 24.0, 40.0)
        points = {label: point(label, window, n, d, 0.6) for label, (n, d) in cells.items()}
        points["channel=web"] = point("channel=web", window, sum(n for n, _ in cells.values()), 80.0, 0.6)
        return points

    follow_ups = []
    for window in range(12):
        points = close(window, window >= 6)
        # channel=web closes its window first; the pair a little later (as on a worker)
        book.observe(web.series, points["channel=web"])
        closed = SimpleNamespace(point=points["channel=web"], firing=window >= 6, alert=None)
        if window == 6:   # fires before the pair closed window 6: no cause yet
            assert not any(e.get("cause") for e in book.note(web.series, alert("channel=web", 6, 6)).related)
        elif window > 6:
            follow_ups.append(book.follow_up(web, closed))
        # the pair fires too, and is never asked: nothing is narrower than it
        pair_closed = SimpleNamespace(point=points["channel=web,country=DE"], firing=window >= 6, alert=None)
        book.observe(pair.series, points["channel=web,country=DE"])
        book.observe("payment_failure_rate|channel=web,country=FR", points["channel=web,country=FR"])
        if window == 6:
            book.note(pair.series, alert("channel=web,country=DE", 6, 6))
        elif window > 6:
            assert book.follow_up(pair, pair_closed) is None
    # the next window, once the pair has closed one of the incident's, names it, once
    sent = [a for a in follow_ups if a is not None]
    assert len(sent) == 1 and follow_ups[0] is sent[0], [a and a.summary for a in follow_ups]
    update = sent[0]
    assert update.alert_id.startswith(f"{web.series}@") and "#cause@" in update.alert_id
    assert [e["segment"] for e in update.related if e.get("cause")] == [{"channel": "web", "country": "DE"}]
    assert "channel=web × country=DE accounts for 100% of the rise" in update.summary
    # after the incident resolves, the next one is asked again
    resolved = alert("channel=web", 12, 6)
    resolved.status = "resolved"
    book.note(web.series, resolved)
    assert web.series not in book.named
    assert book.follow_up(web, SimpleNamespace(point=close(12, True)["channel=web"], firing=True, alert=None)) is None


def replay_events(seed: int, minutes: int, blip: range) -> list[bytes]:
    """Payments on web and app in DE, FR and GB, each failed (p 0.62) or bought; during ``blip``
    web x DE fails 0.90 of them. ~45 payments a minute per cell."""
    rng = random.Random(seed)
    lines = []
    for minute in range(minutes):
        for channel in ("web", "app"):
            for country in ("DE", "FR", "GB"):
                p = 0.90 if minute in blip and (channel, country) == ("web", "DE") else 0.62
                for i in range(rng.randint(40, 50)):
                    abandoned = rng.random() < p
                    event = {"event_id": f"{minute}-{channel}-{country}-{i}",
                             "event_type": "payment_failed" if abandoned else "purchase",
                             "occurred_at": T0 + minute * MINUTE + rng.randrange(MINUTE),
                             "channel": channel, "country": country, "device": "desktop"}
                    if not abandoned:
                        event["properties"] = {"order_value": round(rng.uniform(20, 80), 2)}
                    lines.append(event)
    lines.sort(key=lambda e: e["occurred_at"])
    return [orjson.dumps(e) for e in lines]


def test_replay_a_blip_only_on_web_de_is_named_as_the_cause_of_the_rise_on_web_and_on_de():
    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.stream_app.replay import Replay

    blip = range(200, 225)                       # 25 minutes, after the warm-up of 120 windows
    alerts: list[AnomalyAlert] = []
    replay = Replay(Catalogue.from_dict({"segments": {"pairs": [["channel", "country"]]}}), lambda point: None, alerts.append)
    replay.feed(replay_events(7, 240, blip))
    replay.finish()
    blip_start, blip_end = iso_from_ms(T0 + blip.start * MINUTE), iso_from_ms(T0 + (blip.stop + 10) * MINUTE)
    during = [a for a in alerts if a.metric == METRIC and a.status == "firing"
              and blip_start <= a.window_start <= blip_end]
    pair = [a for a in during if a.segment == {"channel": "web", "country": "DE"}]
    assert pair, [a.summary for a in alerts]
    first = pair[0]
    shares = {tuple(sorted(e["segment"].items())): e["share"] for e in first.related
              if e.get("relation") == "parent"}
    assert shares[(("channel", "web"),)] >= 0.7 and shares[(("country", "DE"),)] >= 0.7, first.related
    assert "on channel=web × country=DE is" in first.summary
    assert "of the rise on channel=web" in first.summary and "on country=DE" in first.summary, first.summary
    # a broader segment's alert names web x DE as its cause once web x DE has closed windows of its
    # incident (replay closes series one after the other every 2,000 events: channel=web's first
    # message came before web x DE had closed 11:23), never another; an update names it as soon as
    # it is known, whatever the severity (it used to wait for the update at critical, 17 windows on)
    broader = [a for a in during if len(a.segment) < 2 and a.segment.items() <= first.segment.items()]
    named = {}
    for other in broader:
        causes = [e["segment"] for e in other.related if e.get("cause")]
        assert causes in ([], [{"channel": "web", "country": "DE"}]), (other.summary, other.related)
        if causes:
            assert "channel=web × country=DE accounts for" in other.summary
            named.setdefault(tuple(other.segment.items()), other)
    web = named.get((("channel", "web"),))
    assert web is not None, [a.summary for a in broader]
    assert iso_from_ms(ms_from_iso(web.started_at) + 5 * MINUTE) >= web.window_start, web.summary
    # one message names it: no update repeats the cause unless the severity rose
    for key in {a.dedup_key for a in broader}:
        messages = [a for a in alerts if a.dedup_key == key and a.status == "firing"]
        naming = [a for a in messages if any(e.get("cause") for e in a.related)]
        rises = sum(1 for a, b in zip(messages, messages[1:]) if (a.severity, b.severity) == ("warning", "critical"))
        assert len(naming) <= 1 + rises, [a.summary for a in messages]
    # and no other segment fires on this metric: not web x FR, app x DE, ...
    assert {tuple(sorted(a.segment.items())) for a in during} <= {(), (("channel", "web"),), (("country", "DE"),),
                                                                  (("channel", "web"), ("country", "DE"))}
    # every message matches the contract; a pair's labels in Alertmanager are its two dimensions
    import json
    from pathlib import Path

    import jsonschema

    from blipwatch.schemas.outputs import AnomalyAlert as Alert
    from blipwatch.stream_app.alertmanager_mapping import optional_time, to_alertmanager

    schema = json.loads((Path(__file__).parents[2] / "blipwatch/schemas/anomaly_alert.schema.json").read_text())
    for message in alerts:
        document = orjson.loads(message.to_json())
        jsonschema.validate(document, schema)
        assert Alert.from_dict(document) == message
    forwarded = to_alertmanager(orjson.loads(first.to_json()), optional_time(first.window_end))
    assert forwarded["labels"]["channel"] == "web" and forwarded["labels"]["country"] == "DE"
    assert forwarded["annotations"]["segment"] == "channel=web,country=DE"
    assert first.dedup_key == f"{METRIC}|channel=web,country=DE@{first.started_at}"
    # nothing fired before the blip on any metric
    assert not [a for a in alerts if a.status == "firing" and a.window_start < blip_start], \
        [a.summary for a in alerts if a.window_start < blip_start]


def test_observe_stores_what_window_excess_says():
    """``IncidentBook.observe`` writes ``window_excess`` out by hand (it runs for every closed window)."""
    rng = random.Random(3)
    book = IncidentBook()
    for window in range(200):
        kind = rng.choice(["rate", "count", "mean"])
        denominator = None if kind == "count" else float(rng.choice([0, 1, 7, 40]))
        value = (None if denominator == 0 else rng.uniform(0, 1) if kind == "rate" else rng.uniform(0, 90))
        expected = rng.choice([None, float("nan"), rng.uniform(0, 1), rng.uniform(0, 90)])
        label = f"channel={kind}"
        p = MetricPoint(f"{METRIC}|{label}", METRIC, {"channel": kind}, iso_from_ms(T0 + window * MINUTE),
                        iso_from_ms(T0 + (window + 1) * MINUTE), value, denominator, value, expected,
                        None, None, 0.0, False, None)
        book.observe(p.series, p)
        assert book.recent.get(p.series, {}).get(p.window_start) == window_excess(value, expected, denominator)
    assert all(len(windows) <= 30 for windows in book.recent.values())


def test_the_tracker_update_belongs_to_the_incident_in_progress_at_that_window():
    """``close_until`` may close a resolve and a new incident in one call: a window of the old
    incident closed before them gets no update carrying the new incident's key."""
    from blipwatch.pipeline.catalogue import Catalogue, default_config_dict
    from blipwatch.pipeline.tracker import SeriesTracker

    catalogue = Catalogue.from_dict(default_config_dict())
    tracker = SeriesTracker(f"{METRIC}|channel=web", catalogue.by_name[METRIC], catalogue)
    assert tracker.cause_update(point("channel=web", 10, 30.0, 40.0, 0.6)) is None   # quiet
    tracker.incident = {"dedup_key": f"{METRIC}|channel=web@{iso_from_ms(T0 + 12 * MINUTE)}",
                        "started_at": T0 + 12 * MINUTE, "direction": "up"}
    assert tracker.cause_update(point("channel=web", 10, 30.0, 40.0, 0.6)) is None   # before it began
    update = tracker.cause_update(point("channel=web", 14, 30.0, 40.0, 0.6))
    assert update.status == "firing" and update.dedup_key == tracker.incident["dedup_key"]
    assert update.alert_id == f"{update.dedup_key}#cause@{iso_from_ms(T0 + 14 * MINUTE)}"
    assert update.severity == "warning" and update.started_at == iso_from_ms(T0 + 12 * MINUTE)



@pytest.mark.parametrize("restart_minute", [208, 215], ids=["before-the-cause-is-named", "after"])
def test_a_restarted_worker_names_the_cause_of_an_incident_that_fired_before_it_once(restart_minute):
    """The incident book lives in the worker's memory; the series' state does not. A worker that
    restarts mid-incident (here: every tracker through its state bytes, an empty book) learns which
    series fire from their first firing window, and from the state whether a cause was named: the
    update naming it comes if none did, and never twice. channel=web and country=DE fire at 11:23
    and are named at 11:26; replay closes windows every 2,000 events (~7 minutes here), so events
    before 11:28 have sent the first, before 11:35 both."""
    from blipwatch.pipeline.catalogue import Catalogue
    from blipwatch.pipeline.tracker import SeriesTracker
    from blipwatch.stream_app.replay import Replay

    catalogue = Catalogue.from_dict({"segments": {"pairs": [["channel", "country"]]}})
    lines = replay_events(7, 240, range(200, 225))
    restart_ms = T0 + restart_minute * MINUTE
    restart_at = next(i for i, line in enumerate(lines) if orjson.loads(line)["occurred_at"] >= restart_ms)

    def run(restart: bool) -> tuple[list[AnomalyAlert], list[str]]:
        alerts: list[AnomalyAlert] = []
        replay = Replay(catalogue, lambda point: None, alerts.append)
        replay.feed(lines[:restart_at])
        firing_at_restart = []
        if restart:
            for series, old in list(replay.trackers.items()):
                new = SeriesTracker.from_bytes(old.to_bytes(), series, old.metric, catalogue)
                new.open = old.open   # open windows come back from the partials topic
                replay.trackers[series] = new
                if new.incident is not None:
                    firing_at_restart.append(series)
            replay.incidents = IncidentBook()
        sent_before = len(alerts)
        replay.feed(lines[restart_at:])
        replay.finish()
        return [a for a in alerts[sent_before:] if a.metric == METRIC], firing_at_restart

    reference, _ = run(False)
    restarted, firing = run(True)
    web = f"{METRIC}|channel=web"
    assert web in firing and f"{METRIC}|country=DE" in firing, firing
    # the update naming the cause, once, if no message had named it before the restart; none if
    # one had (which window carries it depends on when the new book has seen the narrower
    # segment's windows of the incident)
    causes = sorted(a.dedup_key for a in restarted if "#cause@" in a.alert_id)
    expected = sorted(a.dedup_key for a in reference if "#cause@" in a.alert_id)
    assert causes == expected and len(causes) == (2 if restart_minute == 208 else 0), (causes, expected)
    # a firing series' messages after the restart list the others firing with it again
    after = [a for a in restarted if a.dedup_key.startswith(web + "@") and a.status == "firing"]
    assert after and all(a.related for a in after), [a.summary for a in after]


def test_after_a_restart_an_update_of_an_incident_already_named_brings_no_second_cause_update():
    """A new book's first message of a restored incident may be its update (a severity rise)
    before the narrower series closed a window on this worker: it names no cause, and the
    windows after it must not send the update naming one, which a message did before."""
    from types import SimpleNamespace

    web, pair = Tracker("channel=web", 6), Tracker("channel=web,country=DE", 6)
    web.incident = {"dedup_key": f"{web.series}@{iso_from_ms(T0 + 6 * MINUTE)}", "started_at": T0 + 6 * MINUTE,
                    "direction": "up", "named": True}
    book = IncidentBook()
    update = alert("channel=web", 10, 6)
    update.alert_id = f"{update.dedup_key}#update@{iso_from_ms(T0 + 10 * MINUTE)}"
    first = book.closed(web, SimpleNamespace(point=point("channel=web", 10, 60.0, 80.0, 0.6), firing=True,
                                             alert=update))
    assert first is update and not any(e.get("cause") for e in first.related)
    sent = []
    for window in range(11, 16):
        book.observe(pair.series, point("channel=web,country=DE", window, 36.0, 40.0, 0.6))
        sent.append(book.closed(web, SimpleNamespace(point=point("channel=web", window, 60.0, 80.0, 0.6),
                                                     firing=True, alert=None)))
    assert sent == [None] * 5, [a and a.summary for a in sent]
    # a book that did not know it was named would have named it (the same windows, no restart flag)
    web.incident["named"] = False
    fresh = IncidentBook()
    fresh.closed(web, SimpleNamespace(point=point("channel=web", 10, 60.0, 80.0, 0.6), firing=True, alert=update))
    again = []
    for window in range(11, 16):
        fresh.observe(pair.series, point("channel=web,country=DE", window, 36.0, 40.0, 0.6))
        again.append(fresh.closed(web, SimpleNamespace(point=point("channel=web", window, 60.0, 80.0, 0.6),
                                                       firing=True, alert=None)))
    assert [a for a in again if a is not None], "the check above could not fail"

"""The randomized-shop evaluation: many random shops through the real pipeline, against the oracle.

For each shop: its window counts (``cells.count_cells``), the pipeline over them
(``CellReplay``: ``Replay``'s trackers, detectors, policy and alerts, fed the same partials its
ingest would make from the events), ``blipwatch evaluate``'s matching for detections, delays and
false alerts, and per incident the oracle's delay at the same false-alarm budget. The report
(``summarise``) has recall by the oracle's delay, delay ratios, false alerts, resolution, the
bias of ``expected`` against the truth, and whether incidents are learned.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
import orjson

from blipwatch.pipeline.catalogue import Catalogue, merge_with_defaults
from blipwatch.pipeline.tracker import ClosedWindow, SeriesTracker
from blipwatch.stream_app.replay import Replay
from blipwatch.schemas.outputs import segment_label
from blipwatch.tools import evaluation
from blipwatch.tools.shopsuite import oracle
from blipwatch.tools.shopsuite.cells import FUNNEL_STARTS, Cells, check_funnel, count_cells, segment_labels
from blipwatch.tools.shopsuite.generator import WINDOW_MS, Shop, SuiteError, _iso, draw_shop
from blipwatch.tools.shopsuite.truth import Truth, funnel_keys, journey_spans, selector_expectation, volume_dispersion

#: oracle classes by its median delay, in windows
CLASSES = (("<=2", 2.0), ("3-5", 5.0), ("6-10", 10.0), (">10", float("inf")), ("undetectable", None))
RESOLVE_WITHIN = 10     # windows after an incident's end by which its alerts should have resolved
WARMUP_WINDOWS = 120    # windows before the bias of ``expected`` is measured


class CellReplay(Replay):
    """``Replay`` fed window counts instead of event lines: the trackers, detectors, policy,
    incident book and alerts are Replay's own; what changes is only how the partials are made
    (``Cells`` counts what ``IngestBatch`` + ``PartialAggregate`` count, tested equal on events).
    Keeps every point's expected value, value and score by series and window."""

    def __init__(self, catalogue: Catalogue, windows: int, start_ms: int):
        super().__init__(catalogue, lambda point: None, self._keep_alert)
        self.start_ms = start_ms
        self.n_windows = windows
        self.alert_dicts: list[dict] = []
        self.expected: dict[str, np.ndarray] = {}
        self.score: dict[str, np.ndarray] = {}

    def _keep_alert(self, alert) -> None:
        self.alert_dicts.append(orjson.loads(alert.to_json()))

    def _emit(self, tracker: SeriesTracker, window: ClosedWindow) -> None:
        w = (window.closed_at_ms - self.catalogue.window_ms - tracker.lateness_ms - self.start_ms) \
            // self.catalogue.window_ms
        expected = self.expected.get(tracker.series)
        if expected is None:
            expected = self.expected[tracker.series] = np.full(self.n_windows, np.nan)
            self.score[tracker.series] = np.zeros(self.n_windows)
        if 0 <= w < self.n_windows:
            point = window.point
            expected[w] = np.nan if point.expected is None else point.expected
            self.score[tracker.series][w] = point.score
        super()._emit(tracker, window)

    def feed_cells(self, cells: Cells) -> None:
        if self.catalogue.window_ms != WINDOW_MS:
            raise evaluation.EvaluationError("the random shops are counted in one-minute windows")
        pipeline_rows = len(segment_labels(cells.shop, self.catalogue.dimensions, self.catalogue.pairs))
        labels = [label for label, _ in cells.segments[:pipeline_rows]]
        metrics = [m.name for m in self.catalogue.metrics]
        for w in range(cells.shop.windows):
            window_start = self.start_ms + w * WINDOW_MS
            fed = False
            for name in metrics:
                rows = np.flatnonzero(cells.seen[name][:pipeline_rows, w])
                if not len(rows):
                    continue
                fed = True
                num, den = cells.num[name], cells.den[name]
                for row in rows.tolist():
                    tracker = self._tracker(f"{name}|{labels[row]}")
                    if tracker is not None:
                        tracker.merge(window_start, float(num[row, w]), float(den[row, w]))
            if fed:
                self.watermark.observe(0, window_start + WINDOW_MS - 1, 0)
            self._close(self.watermark.value(0))


@dataclass
class ShopResult:
    shop: str
    sessions_per_minute: float
    days: float
    series: int
    false_alerts: int
    false_alerts_day2: int
    incidents: list[dict] = field(default_factory=list)
    bias: list[dict] = field(default_factory=list)
    false_alert_list: list[dict] = field(default_factory=list)   # metric, segment, window, values
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def lag_minutes(shop: Shop, metric) -> int:
    """How much later than it happens ``metric`` shows an incident: a cart is flagged abandoned
    ``abandon_minutes`` after its last action, so a metric counting ``cart_abandoned`` stays
    shifted that long after the incident (the truth, :meth:`Truth.with_incident`, says the same)."""
    types = {t for part in (metric.numerator, metric.denominator) for t in (getattr(part, "event_types", None) or ())}
    return int(round(shop.abandon_minutes)) if "cart_abandoned" in types else 0


def lead_minutes(shop: Shop, metric) -> int:
    """How much earlier than it happens a funnel shows an incident: a journey counts in the window
    it started, so one begun before the onset whose payment would have come after it has the
    incident's outcome. Up to the time from a journey's start to its last payment attempt (the
    99th percentile over the shop's sessions), at most ``within``; 0 for other kinds."""
    if metric.kind != "funnel":
        return 0
    start = FUNNEL_STARTS[next(iter(metric.funnel.start))]
    spans = [journey_spans(shop, channel, start, 2000, 53)[-1] for channel in range(len(shop.channels))]
    span = min(float(np.quantile(np.concatenate(spans), 0.99)), metric.funnel.within_ms)
    return int(math.ceil(span / WINDOW_MS))


def _lags_and_leads(shop: Shop, catalogue: Catalogue) -> tuple[dict[str, int], dict[str, int]]:
    """Every metric's lag and lead in minutes, worked out once per shop (a lead samples timelines)."""
    return ({m.name: lag_minutes(shop, m) for m in catalogue.metrics},
            {m.name: lead_minutes(shop, m) for m in catalogue.metrics})


def labels_of(shop: Shop, catalogue: Catalogue, lags_and_leads=None) -> dict:
    """The shop's incidents as ``blipwatch evaluate`` labels, each metric's lag in ``lags`` and
    lead in ``leads`` (``_lags_and_leads``, worked out here unless given)."""
    lags, leads = lags_and_leads or _lags_and_leads(shop, catalogue)

    def by_metric(incident, minutes) -> dict:
        return {name: minutes[name] * 60 for name in incident.metrics if minutes.get(name)}

    return {"start": _iso(shop.start_ms), "end": _iso(shop.end_ms), "incidents": [
        {"name": i.name, "metrics": list(i.metrics), "segment": dict(i.segment), "direction": i.directions[0],
         "directions": dict(zip(i.metrics, i.directions)), "start": _iso(i.onset_ms), "end": _iso(i.end_ms),
         "lags": by_metric(i, lags), "leads": by_metric(i, leads), "expect_alert": True, "subtle": False} for i in shop.incidents]}


def _supersets(segment: dict, pipeline_labels: set[str]) -> list[dict]:
    """The incident's segment and every segment the pipeline has that contains it."""
    out = [dict(segment)]
    if segment:
        out.append({})
    if len(segment) > 1:
        out += [{k: v} for k, v in segment.items() if f"{k}={v}" in pipeline_labels]
    return out


def _label(segment: dict) -> str:
    return segment_label(segment)


def _trials(metric, expected: dict) -> tuple[np.ndarray, np.ndarray]:
    """A rate's (or a funnel's) expected numerator and denominator per window."""
    if metric.kind == "funnel":
        journeys, converted, outcome = funnel_keys(metric)
        den = expected[journeys]
        return (expected[converted] if outcome == "success" else den - expected[converted]), den
    return selector_expectation(metric.numerator, expected), selector_expectation(metric.denominator, expected)


def horizons(catalogue: Catalogue) -> list[tuple[str, int]]:
    """The (start timeline, within ms) of the catalogue's funnels, for :class:`Truth`."""
    return sorted({(FUNNEL_STARTS[next(iter(m.funnel.start))], m.funnel.within_ms)
                   for m in catalogue.metrics if m.kind == "funnel"})


def _hypothesis(metric, truth: Truth, segment: dict, incident, dispersion_cache: dict):
    """The oracle's test on one series: its true baseline against the incident's shift, the
    shift as it would be in every window (the CUSUM looks for it at any time; its null days are
    the windows before the incident)."""
    base = truth.expected(segment)
    shifted = truth.with_incident(segment, incident, everywhere=True)
    if metric.detector_kind == "rate":
        num0, den0 = _trials(metric, base)
        num1, den1 = _trials(metric, shifted)
        return oracle.RateHypothesis(num0 / np.maximum(den0, 1e-12), num1 / np.maximum(den1, 1e-12), den0, den1)
    if metric.kind == "count":
        mu0, mu1 = selector_expectation(metric.numerator, base), selector_expectation(metric.numerator, shifted)
        d = 1.0
        if metric.numerator.event_types is None or len(metric.numerator.event_types) > 1:
            key = _label(segment)
            if key not in dispersion_cache:
                dispersion_cache[key] = volume_dispersion(truth.shop, truth.channel_weights(segment))
            d = dispersion_cache[key]
        return oracle.CountHypothesis(mu0, mu1, d)
    orders0 = base["purchase"]
    orders1 = shifted["purchase"]
    m0, v0 = truth.order_mean, truth.order_var
    f = incident.factor if incident.kind == "order_value_shift" else 1.0
    in_segment = truth.with_incident(incident.segment, incident, everywhere=True)["purchase"]
    share = in_segment / np.maximum(orders1, 1e-12)
    m1 = m0 * (1 + (f - 1) * share)
    second = share * f * f * (v0 + m0 * m0) + (1 - share) * (v0 + m0 * m0)
    ones = np.ones(truth.shop.windows)
    return oracle.MeanHypothesis(m0 * ones, v0 * ones, m1, np.maximum(second - m1 * m1, 1e-9), orders0, orders1)


def _observed(metric, cells: Cells, row: int):
    num, den = cells.num[metric.name][row], cells.den[metric.name][row]
    if metric.kind == "count":
        return num, np.ones_like(num)
    if metric.kind == "mean":
        return np.where(den > 0, num / np.maximum(den, 1), 0.0), den
    return num, den


def oracle_tests(incident, shop: Shop, truth: Truth, catalogue: Catalogue, alpha: float,
                 pipeline_labels: set[str], cache: dict):
    """The oracle's tests of an incident: ``(metric, segment, hypothesis, model threshold, rng)``
    for each of its metrics on every series that contains its segment, the model's threshold
    calibrated on the day before the incident (``rng`` is then the test's own, for its delays)."""
    onset = (incident.onset_ms - shop.start_ms) // WINDOW_MS
    null_days = np.arange(max(0, onset - oracle.DAY_WINDOWS), onset)
    null_days = np.resize(null_days, oracle.DAY_WINDOWS)       # a short run: its windows, cyclically
    for number, name in enumerate(incident.metrics):
        metric = catalogue.by_name.get(name)
        if metric is None:
            continue
        for segment in _supersets(incident.segment, pipeline_labels):
            hypothesis = _hypothesis(metric, truth, segment, incident, cache)
            rng = np.random.default_rng([shop.seed, shop.index, onset, number, len(segment)])
            yield metric, segment, hypothesis, oracle.calibrate(hypothesis, null_days, alpha, rng), rng


def quiet_windows(shop: Shop) -> np.ndarray:
    """Windows known to be normal: before every incident, less half an hour (a funnel's lead)."""
    return np.arange(0, max(0, min(i.onset_ms for i in shop.incidents) - shop.start_ms) // WINDOW_MS - 30)


def held_threshold(hypothesis, model: float, quiet: np.ndarray, x: np.ndarray, n: np.ndarray,
                   alpha: float) -> float:
    """The oracle's threshold on one series: the model's, held to its budget on the series' real
    normal windows ``quiet`` too (its noise model is ideal: a session's events are not independent,
    order values are heavy-tailed). It raises no alarm there, and is at least where the tail of its
    CUSUM's excursions there puts its budget (the peak alone left it at 7.5 times its budget on
    fresh normal days, event volume at 70 times: docs/detectors.md)."""
    floor = max(_above_peak(hypothesis, quiet, x, n),
                oracle.tail_threshold(hypothesis, quiet, x[quiet], n[quiet], alpha))
    return floor if floor > model else model


def _above_peak(hypothesis, quiet: np.ndarray, x: np.ndarray, n: np.ndarray) -> float:
    """Just above the peak of the CUSUM over ``quiet``: the least threshold raising no alarm there."""
    return oracle.peak(hypothesis, quiet, x[quiet], n[quiet]) * (1 + 1e-9) + 1e-9


def oracle_for(incident, shop: Shop, cells: Cells, truth: Truth, catalogue: Catalogue, alpha: float,
               pipeline_labels: set[str], cache: dict) -> dict:
    """The oracle's best over the incident's metrics and the series that contain its segment."""
    onset = (incident.onset_ms - shop.start_ms) // WINDOW_MS
    end = (incident.end_ms - shop.start_ms) // WINDOW_MS
    best_expected, best_realised, best_where = float("inf"), None, None
    best_model = float("inf")
    quiet = quiet_windows(shop)   # the oracle's false alarms on real data
    null_alarms, quiet_days, series, raised = 0, 0.0, 0, 0
    for metric, segment, hypothesis, model, rng in oracle_tests(incident, shop, truth, catalogue, alpha,
                                                                pipeline_labels, cache):
        x, n = _observed(metric, cells, cells.index[_label(segment)])
        threshold = model
        if np.isfinite(model) and len(quiet):
            null_alarms += oracle.alarms(hypothesis, quiet, x[quiet], n[quiet], model)
            quiet_days += len(quiet) / oracle.DAY_WINDOWS
            threshold = held_threshold(hypothesis, model, quiet, x, n, alpha)
            series += 1
            raised += threshold > model
        during = np.arange(onset, end)
        expected = oracle.expected_delay(hypothesis, during, threshold, rng)
        model_expected = expected if threshold == model else oracle.expected_delay(hypothesis, during, model, rng)
        windows = np.arange(max(0, onset - 60), end)
        realised = oracle.delay(hypothesis, windows, x[windows], n[windows], threshold, onset)
        best_model = min(best_model, model_expected)
        if expected < best_expected or best_where is None:
            best_expected, best_where = expected, f"{metric.name} on {_label(segment)}"
        if realised is not None and (best_realised is None or realised < best_realised):
            best_realised = realised
    return {"oracle_delay": best_expected, "oracle_realised_delay": best_realised, "oracle_series": best_where,
            "oracle_model_delay": best_model, "oracle_null_alarms": null_alarms,
            "oracle_null_budget": round(quiet_days * alpha, 4), "oracle_series_tested": series,
            "oracle_raised": raised}


def oracle_budget(seed: int, index: int, hours: float, catalogue: Catalogue) -> list[dict]:
    """The oracle's false alarms out of sample. Its tests and thresholds as :func:`oracle_for` sets
    them for the suite's shop (30 hours), then its CUSUMs (restarted after each alarm) over the same
    shop's traffic with every incident switched off, for ``hours`` in all, after the normal windows
    it was held to. One row per test: its budget (alarms a day x days) and its alarms at the model's
    threshold, at the normal windows' peak alone, and at the threshold the suite uses."""
    real = draw_shop(seed, index, 30.0)
    null = replace(draw_shop(seed, index, hours), incidents=[])
    cells = count_cells(null, catalogue, [i.segment for i in real.incidents if len(i.segment) > 1])
    truth = Truth(null, horizons(catalogue))
    labels = {label for label, _ in segment_labels(null, catalogue.dimensions, catalogue.pairs)}
    cap = catalogue.max_series_per_metric
    alpha = 1.0 / (len(catalogue.metrics) * min(len(labels), cap))   # every metric on every segment
    quiet = quiet_windows(real)
    fresh = np.arange(len(quiet) + 30, null.windows)
    days = len(fresh) / oracle.DAY_WINDOWS
    rows, cache = [], {}
    for incident in real.incidents:
        for metric, segment, hypothesis, model, _ in oracle_tests(incident, null, truth, catalogue, alpha,
                                                                  labels, cache):
            if not np.isfinite(model) or not len(quiet):
                continue
            x, n = _observed(metric, cells, cells.index[_label(segment)])
            peak = _above_peak(hypothesis, quiet, x, n)
            rows.append({"shop": f"{seed}/{index}", "metric": metric.name, "segment": _label(segment),
                         "kind": "event_volume" if metric.name == "event_volume" else metric.kind,
                         "incident": incident.kind, "days": days, "budget": alpha * days, **{
                             f"alarms_{name}": oracle.alarms(hypothesis, fresh, x[fresh], n[fresh], threshold)
                             for name, threshold in (("model", model), ("peak", max(model, peak)),
                                                     ("held", held_threshold(hypothesis, model, quiet, x, n, alpha)))}})
    return rows


def _class(oracle_delay: float) -> str:
    if not np.isfinite(oracle_delay):
        return "undetectable"
    for name, limit in CLASSES:
        if limit is not None and oracle_delay <= limit:
            return name
    return ">10"


def _truth_series(metric, truth: Truth, segment: dict) -> tuple[np.ndarray, np.ndarray]:
    """(true value per window, its volume: trials of a rate, the count, orders of a mean)."""
    base = truth.expected(segment)
    if metric.detector_kind == "rate":
        num, den = _trials(metric, base)
        return num / np.maximum(den, 1e-12), den
    if metric.kind == "count":
        mu = selector_expectation(metric.numerator, base)
        return mu, mu
    return np.full(truth.shop.windows, truth.order_mean), base["purchase"]


def run_shop(shop: Shop, catalogue: Catalogue) -> ShopResult:
    started, cpu = time.perf_counter(), time.process_time()
    extra = [i.segment for i in shop.incidents if len(i.segment) > 1]
    cells = count_cells(shop, catalogue, extra)
    replay = CellReplay(catalogue, shop.windows, shop.start_ms)
    replay.feed_cells(cells)
    replay.finish()
    lags, leads = _lags_and_leads(shop, catalogue)
    labels = labels_of(shop, catalogue, (lags, leads))
    report = evaluation.evaluate(replay.alert_dicts, labels)
    truth = Truth(shop, horizons(catalogue))
    n_series = len(replay.trackers)
    alpha = 1.0 / max(1, n_series)
    pipeline_labels = {label for label, _ in segment_labels(shop, catalogue.dimensions, catalogue.pairs)}
    day2_ms = shop.start_ms + 1440 * WINDOW_MS
    false_day2 = sum(1 for a in report["false_alert_list"]
                     if evaluation.epoch_seconds(a["window_start"], "alert") * 1000 >= day2_ms)
    result = ShopResult(f"{shop.seed}/{shop.index}", shop.sessions_per_minute, shop.hours / 24, n_series,
                        report["false_alerts"], false_day2)
    result.false_alert_list = [{"metric": a["metric"], "segment": segment_label(a["segment"]),
                                "window_start": a["window_start"], "direction": a["direction"],
                                "observed": a["observed"], "expected": a["expected"],
                                "after_day1": evaluation.epoch_seconds(a["window_start"], "alert") * 1000 >= day2_ms}
                               for a in report["false_alert_list"]]

    # episodes: first firing and resolution, to see which end
    episodes: dict[str, dict] = {}
    messages = evaluation._firing(replay.alert_dicts)
    for alert in replay.alert_dicts:
        episode = episodes.setdefault(alert["dedup_key"], {"resolved": None})
        if alert["status"] == "resolved":
            episode["resolved"] = evaluation.epoch_seconds(alert["window_end"], "alert")
    incidents = evaluation._incidents(labels)
    matched = [{m["key"] for m in messages if evaluation.matches(m, label, 3 * 60.0)} for label in incidents]
    # an episode is late when it resolves more than RESOLVE_WITHIN windows after its series is
    # back to normal: the end of the last incident it matches, plus its metric's lag (abandoned carts)
    lag_of = {m["key"]: 60 * lags[m["metric"]] for m in messages}
    ends: dict[str, float] = {}
    for incident, keys in zip(shop.incidents, matched):
        for k in keys:
            end = incident.end_ms / 1000 + lag_of[k]
            ends[k] = max(ends.get(k, end), end)
    cache: dict = {}
    for incident, label, row, keys in zip(shop.incidents, incidents, report["incidents"], matched):
        found = oracle_for(incident, shop, cells, truth, catalogue, alpha, pipeline_labels, cache)
        late = [k for k in keys if episodes[k]["resolved"] is None
                or episodes[k]["resolved"] > ends[k] + RESOLVE_WITHIN * 60]
        never = [k for k in keys if episodes[k]["resolved"] is None]
        primary = catalogue.by_name.get(incident.metrics[0])
        learned = _learned(primary, incident, shop, truth, replay, pipeline_labels) if primary else None
        base = _truth_series(primary, truth, incident.segment)[0] if primary else None
        shifted = None
        if primary is not None:
            onset = (incident.onset_ms - shop.start_ms) // WINDOW_MS
            end = (incident.end_ms - shop.start_ms) // WINDOW_MS
            hyp = _hypothesis(primary, truth, incident.segment, incident, cache)
            after = hyp.p1 if primary.detector_kind == "rate" else hyp.mu1 if primary.kind == "count" else hyp.m1
            shifted = float(np.mean(after[onset:end]) / max(np.mean(base[onset:end]), 1e-12) - 1)
        result.incidents.append({
            "shop": result.shop, "name": incident.name, "metric": incident.metrics[0],
            "segment": _label(incident.segment), "minutes": (incident.end_ms - incident.onset_ms) // WINDOW_MS,
            "onset_hour": round(((incident.onset_ms // 1000) % 86400) / 3600, 2), "factor": round(incident.factor, 3),
            "true_change": None if shifted is None else round(shifted, 4),
            "detected": row["detected"], "delay": row["delay_windows"],
            "first_alert": None if not row["detected"] else
            f"{row['first_alert']['metric']} on {segment_label(row['first_alert']['segment'])}",
            **found, "class": _class(found["oracle_delay"]), "model_class": _class(found["oracle_model_delay"]), "episodes": len(keys), "episode_keys": sorted(keys), "late_resolved": len(late),
            "late": [[k, None if episodes[k]["resolved"] is None else round((episodes[k]["resolved"] - ends[k]) / 60)]
                     for k in sorted(late)],
            "never_resolved": len(never), "learned": learned,
        })
    result.bias = _bias(shop, truth, replay, catalogue, leads)
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    return result


def _most_specific(segment: dict, pipeline_labels: set[str], truth: Truth) -> dict:
    if _label(segment) in pipeline_labels:
        return dict(segment)
    parents = [{k: v} for k, v in segment.items() if f"{k}={v}" in pipeline_labels]
    if not parents:
        return {}
    return min(parents, key=lambda s: float(truth.channel_weights(s).sum()))


def _learned(metric, incident, shop: Shop, truth: Truth, replay: CellReplay, pipeline_labels) -> float | None:
    """How far ``expected`` moved during the incident from its pre-incident value (moved along the
    true baseline), as the largest relative change: 0 = not learned at all."""
    segment = _most_specific(incident.segment, pipeline_labels, truth)
    expected = replay.expected.get(f"{metric.name}|{_label(segment)}")
    if expected is None:
        return None
    base, _ = _truth_series(metric, truth, segment)
    onset = (incident.onset_ms - shop.start_ms) // WINDOW_MS
    end = (incident.end_ms - shop.start_ms) // WINDOW_MS
    before = slice(max(0, onset - 5), onset)
    pre = np.nanmean(expected[before]) if np.isfinite(expected[before]).any() else np.nan
    if not np.isfinite(pre) or pre <= 0:
        return None
    predicted = pre * base[onset:end] / max(float(np.mean(base[before])), 1e-12)
    during = expected[onset:end]
    ok = np.isfinite(during) & (predicted > 0)
    if not ok.any():
        return None
    return round(float(np.max(np.abs(during[ok] / predicted[ok] - 1))), 4)


def _bias(shop: Shop, truth: Truth, replay: CellReplay, catalogue: Catalogue, leads: dict[str, int]) -> list[dict]:
    """Per series: the mean relative bias of ``expected`` against the truth, on day 1 (after the
    warm-up) and after it, outside incidents on that metric (and an hour after them)."""
    rows = []
    segments = dict(segment_labels(shop, catalogue.dimensions, catalogue.pairs))
    blocked = {m.name: np.zeros(shop.windows, dtype=bool) for m in catalogue.metrics}
    for incident in shop.incidents:
        onset = (incident.onset_ms - shop.start_ms) // WINDOW_MS
        end = (incident.end_ms - shop.start_ms) // WINDOW_MS
        for name in incident.metrics + ("event_volume",):
            if name in blocked:
                blocked[name][max(0, onset - leads[name]):end + 60] = True
    for series, expected in replay.expected.items():
        name, label = series.split("|", 1)
        metric = catalogue.by_name[name]
        value, volume = _truth_series(metric, truth, segments[label])
        row = {"series": series, "kind": metric.detector_kind, "volume": round(float(np.mean(volume)), 3)}
        for period, window in (("day1", slice(WARMUP_WINDOWS, min(1440, shop.windows))),
                               ("later", slice(1440, shop.windows))):
            e, v = expected[window], value[window]
            ok = np.isfinite(e) & (v > 0) & ~blocked[name][window]
            row[period] = round(float(np.mean(e[ok] / v[ok] - 1)), 4) if ok.sum() >= 30 else None
        rows.append(row)
    return rows


def countable(document: dict | None = None, log=sys.stderr) -> Catalogue:
    """The catalogue (the defaults, or ``document`` over them) as the random shops can count it:
    funnels from ``add_to_cart`` or ``checkout_start`` to ``purchase`` are counted as the journey
    stage counts them (``cells.journeys``), other funnels are left out (said on ``log``).
    Two-dimension series (``segments.pairs``) are counted; an incident on a pair the pipeline has no
    series for is seen through the series that contain it."""
    catalogue = Catalogue(merge_with_defaults(document))
    left_out = []
    for metric in catalogue.metrics:
        if metric.kind == "funnel":
            try:
                check_funnel(metric)
            except SuiteError:
                left_out.append(metric.name)
    if not left_out:
        return catalogue
    if log is not None:
        print(f"random shops: funnel metrics not counted: {', '.join(left_out)}", file=log)
    merged = merge_with_defaults(document)
    merged["metrics"] = {name: raw for name, raw in merged["metrics"].items() if name not in left_out}
    return Catalogue(merged)


def shop_spec(text: str) -> tuple[int, int]:
    """``SEED/INDEX`` (e.g. ``2/15``), as a shop is named in the progress lines and results."""
    seed, sep, index = text.partition("/")
    if not (sep and seed.isdigit() and index.isdigit()):
        raise argparse.ArgumentTypeError(f"a shop is SEED/INDEX, such as 2/15, not {text!r}")
    return int(seed), int(index)


def run_suite(seeds, shops: int, hours: float, catalogue: Catalogue | None = None, log=sys.stderr,
              keep=None, only: list[tuple[int, int]] | None = None) -> dict:
    """Every shop of every seed, or only the shops ``only`` names as (seed, index): the shops of
    a few misses and false alerts, to try a change on them before the whole suite. ``keep(result)``
    is called with each shop's result as it is done."""
    catalogue = catalogue or countable(log=log)
    plan = list(only) if only else [(seed, index) for seed in seeds for index in range(shops)]
    results = []
    started = time.perf_counter()
    for seed, index in plan:
        shop = draw_shop(seed, index, hours)
        result = run_shop(shop, catalogue)
        results.append(result)
        if keep is not None:
            keep(result)
        caught = sum(1 for i in result.incidents if i["detected"])
        if log is not None:
            print(f"[{len(results)}/{len(plan)}] {shop.describe()}: {caught}/{len(result.incidents)} caught, "
                  f"{result.false_alerts} false alerts, {result.seconds:.0f}s ({result.cpu_seconds:.0f}s CPU) "
                  f"({time.perf_counter() - started:.0f}s in all)", file=log, flush=True)
    if only:
        return summarise(results, sorted({seed for seed, _ in plan}), len(plan), hours,
                         chosen=[f"{seed}/{index}" for seed, index in plan])
    return summarise(results, seeds, shops, hours)


def _median(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return round(statistics.median(values), 2) if values else None


def summarise(results: list[ShopResult], seeds, shops: int, hours: float, chosen: list[str] | None = None) -> dict:
    """The report of ``results``: ``shops`` a seed, or, with ``chosen``, those shops (seed/index) alone."""
    incidents = [i for r in results for i in r.incidents]
    by_class = {}
    for name, _ in CLASSES:
        rows = [i for i in incidents if i["class"] == name]
        detected = [i for i in rows if i["detected"]]
        ratios = [i["delay"] / i["oracle_delay"] for i in detected if np.isfinite(i["oracle_delay"])]
        by_class[name] = {"incidents": len(rows), "detected": len(detected),
                          "recall": round(len(detected) / len(rows), 3) if rows else None,
                          "median_delay": _median([i["delay"] for i in detected]),
                          "median_oracle_delay": _median([i["oracle_delay"] for i in rows]),
                          "median_delay_ratio": _median(ratios)}
    within10 = [i for i in incidents if i["class"] in ("<=2", "3-5", "6-10")]
    caught10 = [i for i in within10 if i["detected"]]
    model10 = [i for i in incidents if i.get("model_class", i["class"]) in ("<=2", "3-5", "6-10")]
    days = sum(r.days for r in results)
    later_days = sum(max(0.0, r.days - 1) for r in results)
    # an episode matching two incidents (one blip seen through another's related series) counts once
    episodes = len({(i["shop"], k) for i in incidents for k in i["episode_keys"]})
    late = {(i["shop"], k): after for i in incidents for k, after in i["late"]}
    rate_bias = [b for r in results for b in r.bias if b["kind"] == "rate" and b["volume"] >= 1]
    count_bias = [b for r in results for b in r.bias if b["kind"] == "count"]
    mean_bias = [b for r in results for b in r.bias if b["kind"] == "mean"]

    def within(rows, period, limit):
        values = [abs(b[period]) for b in rows if b[period] is not None]
        return {"series": len(values), "within": sum(1 for v in values if v <= limit),
                "median_abs": _median(values), "median": _median([b[period] for b in rows if b[period] is not None])}

    learned = [i["learned"] for i in within10 if i["learned"] is not None]
    return {
        "seeds": list(seeds), "shops": shops, "chosen": chosen, "hours": hours, "shop_days": round(days, 2),
        "incidents": len(incidents), "by_class": by_class,
        "oracle_within_10": {"incidents": len(within10), "detected": len(caught10),
                             "recall": round(len(caught10) / len(within10), 3) if within10 else None,
                             "median_delay_ratio": _median([i["delay"] / i["oracle_delay"] for i in caught10])},
        "model_oracle_within_10": {"incidents": len(model10), "detected": sum(1 for i in model10 if i["detected"]),
                                   "recall": round(sum(1 for i in model10 if i["detected"]) / len(model10), 3)
                                   if model10 else None},
        "oracle_series_tested": sum(i.get("oracle_series_tested", 0) for i in incidents),
        "oracle_raised": sum(i.get("oracle_raised", 0) for i in incidents),
        "oracle_null_alarms": sum(i.get("oracle_null_alarms", 0) for i in incidents),
        "oracle_null_budget": round(sum(i.get("oracle_null_budget", 0.0) for i in incidents), 2),
        "false_alerts": sum(r.false_alerts for r in results),
        "false_alerts_per_shop_day": round(sum(r.false_alerts for r in results) / days, 3) if days else None,
        "false_alerts_per_shop_day_after_day1": round(sum(r.false_alerts_day2 for r in results) / later_days, 3)
        if later_days else None,
        "shops_over_1_false_alert_a_day": sum(1 for r in results if r.false_alerts / r.days > 1),
        "alert_episodes_on_incidents": episodes,
        "resolved_late": len(late),
        "never_resolved": sum(1 for after in late.values() if after is None),
        "rate_bias_day1": within(rate_bias, "day1", 0.02), "rate_bias_later": within(rate_bias, "later", 0.02),
        "count_bias_day1": within(count_bias, "day1", 0.10), "count_bias_later": within(count_bias, "later", 0.10),
        "mean_bias_day1": within(mean_bias, "day1", 0.05), "mean_bias_later": within(mean_bias, "later", 0.05),
        "learned": {"incidents": len(learned), "within_10pct": sum(1 for v in learned if v <= 0.10),
                    "median": _median(learned)},
        "seconds_per_shop": _median([r.seconds for r in results]),
        "cpu_seconds": round(sum(r.cpu_seconds for r in results), 1),
        "incident_list": incidents,
        "shop_list": [{k: getattr(r, k) for k in ("shop", "sessions_per_minute", "series", "false_alerts",
                                                   "false_alerts_day2", "seconds", "cpu_seconds")}
                      for r in results],
        "bias_list": [b for r in results for b in r.bias],
    }


def format_table(summary: dict) -> str:
    chosen = summary.get("chosen")
    shops = (f"{len(chosen)} chosen shops ({', '.join(chosen)})" if chosen else
             f"{len(summary['seeds'])} seed(s) {summary['seeds']} x {summary['shops']} shops")
    lines = [f"{shops} x {summary['hours']:g} h = {summary['shop_days']} shop-days, {summary['incidents']} incidents", "",
             "| oracle delay (windows) | incidents | detected | recall | median delay | median oracle delay "
             "| median delay / oracle |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in summary["by_class"].items():
        def show(v):
            return "-" if v is None else f"{v:g}"
        lines.append(f"| {name} | {row['incidents']} | {row['detected']} | {show(row['recall'])} | "
                     f"{show(row['median_delay'])} | {show(row['median_oracle_delay'])} | "
                     f"{show(row['median_delay_ratio'])} |")
    w = summary["oracle_within_10"]
    m = summary.get("model_oracle_within_10", {})
    lines += ["", f"oracle within 10 windows: recall {w['recall']} ({w['detected']}/{w['incidents']}), "
                  f"median delay / oracle {w['median_delay_ratio']}",
              f"the oracle's model threshold raised {summary['oracle_null_alarms']} alarms on the real windows "
              f"before the incidents (its budget there: {summary['oracle_null_budget']}); held to none there, "
              f"its threshold rose on {summary.get('oracle_raised', 0)} of {summary.get('oracle_series_tested', 0)} "
              f"series; against the model threshold alone: recall {m.get('recall')} "
              f"({m.get('detected')}/{m.get('incidents')}) within 10 windows",
              f"false alerts: {summary['false_alerts']} = {summary['false_alerts_per_shop_day']} per shop-day "
              f"({summary['false_alerts_per_shop_day_after_day1']} after the first day); "
              f"shops over 1 a day: {summary['shops_over_1_false_alert_a_day']}",
              f"alert episodes on incidents: {summary['alert_episodes_on_incidents']}, resolved later than "
              f"{RESOLVE_WITHIN} windows after the end (or never): {summary['resolved_late']}, never: "
              f"{summary['never_resolved']}"]
    for key, limit in (("rate_bias", "2%"), ("count_bias", "10%"), ("mean_bias", "5%")):
        for period in ("day1", "later"):
            b = summary[f"{key}_{period}"]
            lines.append(f"{key.replace('_', ' ')} ({period}): {b['within']}/{b['series']} series within {limit}, "
                         f"median {b['median']}, median |bias| {b['median_abs']}")
    learned = summary["learned"]
    lines.append(f"expected during incidents (oracle <= 10 windows): {learned['within_10pct']}/{learned['incidents']} "
                 f"within 10% of pre-incident, median largest move {learned['median']}")
    lines.append(f"CPU: {summary['cpu_seconds']} s in all")
    return "\n".join(lines)

"""Settings and config files a user gets wrong: one clear line and exit code 2, never a traceback,
and checked when they are loaded, not when the first series is built."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blipwatch.pipeline.catalogue import Catalogue
from blipwatch.stream_app.config import ConfigError, Settings, load_catalogue


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BLIPWATCH_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "blipwatch.stream_app.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("yaml_text, message", [
    ("window:\n  seconds: .nan\n", "window.seconds=nan"),
    ("window:\n  seconds: .inf\n", "window.seconds=inf"),
    ("window:\n  allowed_lateness_seconds: .inf\n", "window.allowed_lateness_seconds=inf"),
    ("segments:\n  max_series_per_metric: .inf\n", "segments.max_series_per_metric=inf"),
    ("segments:\n  pairs: channel\n", "segments.pairs='channel': a list of dimension pairs"),
    ("segments:\n  pairs: [[channel, channel]]\n", "must be two different dimensions"),
    ("segments:\n  pairs: [[channel, country, device]]\n", "must be two different dimensions"),
    ("segments:\n  dimensions: [channel, device]\n  pairs: [[channel, country]]\n",
     "names country, not in segments.dimensions"),
    ("segments:\n  pairs: [[channel, country], [country, channel]]\n", "is listed twice"),
    ("detector:\n  rate:\n    treshold: 0.5\n", "unknown detector setting 'treshold'"),
    ("detector:\n  treshold: 0.5\n", "unknown detector setting 'treshold'"),
    ("detector:\n  rate: 0.5\n", "detector.rate must be a mapping"),
    ("detector: [rate]\n", "detector must be a mapping"),
    ("detector:\n  count:\n    alpha: 7\n", "'alpha' must be in (0, 1]"),
    ("detector:\n  end_share: 2\n", "'end_share' must be in [0, 1]"),
    ("policy:\n  warmpu: 3\n", "unknown policy setting 'warmpu'"),
    ("policy:\n  threshold: 1.5\n", "policy threshold must be in (0, 1]"),
    ("policy:\n  min_volume: .nan\n", "'min_volume'=nan must be finite"),
])
def test_a_bad_config_file_is_refused_at_load(tmp_path, yaml_text, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_catalogue(path=str(path))
    assert message in str(raised.value), str(raised.value)


def test_the_worker_refuses_an_unknown_detector_setting_before_it_starts(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("detector:\n  rate:\n    treshold: 0.5\n")
    result = run_cli("worker", "--config", str(path), env={"BLIPWATCH_BROKER": "kafka://127.0.0.1:9"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"blipwatch: configuration error: {path}: metrics.cart_abandonment_rate.detector: unknown detector setting "
        "'treshold'; known: " + result.stderr.split("known: ", 1)[1].strip()]


@pytest.mark.parametrize("env, message", [
    ({"BLIPWATCH_BROKER": "nonsense"}, "BLIPWATCH_BROKER='nonsense': 'nonsense' is not host:port"),
    ({"BLIPWATCH_BROKER": "http://a:9092"}, "use kafka://host:port, not http://"),
    ({"BLIPWATCH_BROKER": "kafka://a:99999"}, "is not host:port"),
    ({"BLIPWATCH_LOG_LEVEL": "verbose"}, "BLIPWATCH_LOG_LEVEL='verbose': use one of debug, info"),
])
def test_bad_environment_settings_are_one_line_from_every_command(env, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert message in str(raised.value)
    result = run_cli("worker", env=env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("where, event, matched", [
    ("order_value > 1e3", {"order_value": 1500}, True),    # YAML 1.1: compared with the string '1e3'
    ("order_value > 1e3", {"order_value": 999}, False),
    ("coupon == no", {"coupon": "no"}, True),               # YAML 1.1: compared with False
    ("coupon == no", {"coupon": False}, False),
    ("coupon == false", {"coupon": False}, True),
    ("country == 'NO'", {"country": "NO"}, True),
])
def test_where_values_are_json_scalars_or_text_not_yaml_1_1(where, event, matched):
    catalogue = Catalogue.from_dict({"metrics": {"big_orders": {
        "kind": "count", "count": {"event_types": ["purchase"], "where": where}}}})
    assert catalogue.by_name["big_orders"].numerator.matches(event) is matched


@pytest.mark.parametrize("args, message", [
    (["--max-backoff", "-5"], "--max-backoff -5 must be between 0.1 and 3600 s"),
    (["--max-backoff", "nan"], "--max-backoff nan must be between"),
    (["--resend-interval", "inf"], "--resend-interval inf must be between 1 and 180"),
    (["--bearer-token-file", "/nonexistent/token"], "cannot read the Alertmanager bearer token file"),
    (["--ca-file", "/nonexistent/ca.pem"], "Alertmanager ca file '/nonexistent/ca.pem' does not exist"),
])
def test_bad_bridge_options_are_one_line(args, message):
    result = run_cli("alertmanager-bridge", "--url", "http://127.0.0.1:9", *args,
                     env={"BLIPWATCH_BROKER": "kafka://127.0.0.1:9"})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_a_password_in_the_alertmanager_url_is_never_printed():
    result = run_cli("alertmanager-bridge", "--url", "ftp://admin:hunter2@am:9093",
                     env={"BLIPWATCH_BROKER": "kafka://127.0.0.1:9"})
    assert result.returncode == 2 and "hunter2" not in result.stderr and "***@am:9093" in result.stderr


def test_an_unknown_log_level_on_the_command_line_is_one_line_too():
    result = run_cli("worker", "--loglevel", "verbose", env={"BLIPWATCH_BROKER": "kafka://127.0.0.1:9"})
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "blipwatch: configuration error: log level 'verbose': use one of debug, info, warning, error, critical"]


def test_detector_settings_for_every_kind_apply_under_the_kinds_and_the_metrics_own():
    """A flat key of the top-level ``detector:`` is for every kind (it used to be dropped without a
    word); a kind's mapping overrides it, and a metric's own settings override both."""
    from blipwatch.detectors.settings import resolve_settings
    from blipwatch.pipeline.catalogue import default_config_dict

    metrics = default_config_dict()["metrics"]
    metrics["error_rate"] = {**metrics["error_rate"], "detector": {"cusum_cap": 8.0, "rate": {"alpha": 0.3}}}
    catalogue = Catalogue.from_dict({"metrics": metrics, "detector": {
        "adopt_after": 120, "alpha": 0.2, "cusum_cap": 9.0, "rate": {"alpha": 0.05}, "count": {"adopt_after": 30}}})

    def settings(name: str) -> dict:
        metric = catalogue.by_name[name]
        return resolve_settings(metric.detector_kind, catalogue.detector_settings_for(metric))

    assert [settings("payment_failure_rate")[k] for k in ("adopt_after", "alpha", "cusum_cap")] == [120, 0.05, 9.0]
    assert [settings("error_rate")[k] for k in ("adopt_after", "alpha", "cusum_cap")] == [120, 0.3, 8.0]
    assert [settings("complaint_count")[k] for k in ("adopt_after", "alpha")] == [30, 0.2]
    assert settings("average_order_value")["adopt_after"] == 120

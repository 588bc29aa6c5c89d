"""A running worker's web port and the topics it creates, against the embedded broker."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import Worker, base_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def status(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_the_web_port_serves_metrics_and_a_health_check_and_no_router_or_table_routes(broker, unique_topics, tmp_path):
    with Worker(base_env(broker, unique_topics), tmp_path) as worker:
        worker.wait_ready()
        seen = {path: status(worker.port, path)[0] for path in (
            "/metrics", "/", "/router/", "/router/detector-state/", "/table/", "/table/detector-state/",
            "/table/detector-state/some-key/", "/graph/", "/assignment/", "/performance/")}
        print("GET status by path:", seen)
        assert seen["/metrics"] == 200
        assert seen["/"] == 200 and json.loads(status(worker.port, "/")[1]) == {"status": "OK"}
        assert {path: code for path, code in seen.items() if path not in ("/metrics", "/")} == {
            path: 404 for path in seen if path not in ("/metrics", "/")}
        assert "replication factor 1, min.insync.replicas 1" in worker.log()


def test_the_default_replication_factor_is_lowered_to_the_brokers_there_are_and_says_so(broker, caplog):
    from blipwatch.stream_app.config import Settings
    from blipwatch.stream_app.replication import Replication, count_brokers, for_cluster

    # not flagged as the embedded broker: the default 3 is checked against the cluster itself
    settings = Settings.from_env({"BLIPWATCH_BROKER": broker.url})
    assert count_brokers(settings) == 1
    with caplog.at_level(logging.INFO, logger="blipwatch"):
        assert for_cluster(settings) == Replication(factor=1, min_insync=1)
    assert "has 1 broker(s): topics get replication factor 1 instead of 3" in caplog.text
    explicit = Settings.from_env({"BLIPWATCH_BROKER": broker.url, "BLIPWATCH_REPLICATION_FACTOR": "3"})
    assert for_cluster(explicit) == Replication(factor=3, min_insync=2)  # as asked: a small cluster refuses it


def test_an_unreachable_cluster_is_given_up_on_within_the_timeout_asked():
    from blipwatch.stream_app.config import Settings
    from blipwatch.stream_app.embedded_broker import free_port
    from blipwatch.stream_app.replication import count_brokers

    settings = Settings.from_env({"BLIPWATCH_BROKER": f"kafka://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    assert count_brokers(settings, timeout_s=2.0) is None
    assert time.monotonic() - started < 8   # not kafka-python's 30 s bootstrap: the worker starts sooner

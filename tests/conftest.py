"""Shared fixtures: one embedded broker per test session, real processes, free ports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from blipwatch.stream_app.embedded_broker import EmbeddedBroker

REPO = Path(__file__).resolve().parent.parent
BLIPWATCH = [sys.executable, "-m", "blipwatch.stream_app.cli"]


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """The embedded Tansu broker on a free loopback port, shared by the session's integration tests.

    Tests that share it use their own topic names (see ``unique_topics``) so they cannot see each
    other's data.
    """
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def unique_topics(request):
    """``BLIPWATCH_*`` topic and app-id variables unique to this test."""
    stem = "t" + str(abs(hash(request.node.nodeid)) % 10**8)
    return {
        "BLIPWATCH_EVENTS_TOPIC": f"{stem}-events",
        "BLIPWATCH_DLQ_TOPIC": f"{stem}-dlq",
        "BLIPWATCH_ALERTS_TOPIC": f"{stem}-alerts",
        "BLIPWATCH_POINTS_TOPIC": f"{stem}-points",
        "BLIPWATCH_PARTIALS_TOPIC": f"{stem}-partials",
        "BLIPWATCH_APP_ID": f"{stem}-app",
    }


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLIPWATCH_")}
    env.update(extra)
    return env

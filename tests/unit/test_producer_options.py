"""Item 5 of issue 16: the idempotent producer on a real Kafka, the plain one on the embedded broker.

The decision is ``kafka.producer_options``; these tests check it and what reaches Faust's producer
and the aiokafka producer Faust builds from it (built, not started: no broker needed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import faust
import pytest

from blipwatch.kafka import faust_compat
from blipwatch.kafka.producer_options import producer_options


def test_the_decision_is_idempotent_unless_the_broker_is_the_embedded_one():
    assert producer_options(embedded_broker=False) == {"enable_idempotence": True}
    assert producer_options(embedded_broker=True) == {}


@pytest.mark.parametrize("embedded", [False, True])
def test_faust_builds_its_aiokafka_producer_with_the_decision(embedded):
    app = faust.App(f"t-idempotence-{embedded}", broker="kafka://127.0.0.1:9", producer_acks=-1)
    faust_compat.add_producer_options(app, producer_options(embedded))
    extra = app.producer._settings_extra()  # what Faust's _new_producer passes beside its defaults
    assert extra.get("enable_idempotence", False) is (not embedded)

    async def build():
        return app.producer._new_producer()

    producer = asyncio.run(build())
    # aiokafka keeps a transaction manager (producer id, sequence numbers) only when idempotent
    assert (producer._txn_manager is not None) is (not embedded)


@pytest.mark.parametrize("embedded", ["", "1"])
def test_the_worker_app_passes_the_decision_to_faust(embedded):
    # its own process: create_app registers Prometheus collectors once per process
    code = ("from blipwatch.stream_app.app import create_app\n"
            "from blipwatch.stream_app.config import Settings, load_catalogue\n"
            f"s = Settings.from_env({{'BLIPWATCH_BROKER': 'kafka://127.0.0.1:9', 'BLIPWATCH_EMBEDDED_BROKER': '{embedded}'}})\n"
            "app = create_app(s, load_catalogue(s))\n"
            "print(app.producer._settings_extra().get('enable_idempotence', False))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(not embedded)

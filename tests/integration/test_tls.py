"""Secured Kafka for real: TLS terminated by Debian's stunnel4 in front of the embedded
broker, which advertises the proxy's port. The worker and `blipwatch simulate --kafka` work with
BLIPWATCH_KAFKA_SECURITY_PROTOCOL=SSL and a CA file; against a certificate it cannot trust the
worker fails fast with one clear line and a non-zero exit, not a hang or a wall of tracebacks."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from blipwatch.stream_app.embedded_broker import EmbeddedBroker, free_port, wait_for_port
from tests.helpers import BLIPWATCH, Worker, base_env, wait_for

pytestmark = pytest.mark.integration

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_broker(tmp_path):
    """The embedded broker behind a TLS proxy; yields (broker advertising the proxy, CA file)."""
    if STUNNEL is None:
        pytest.fail("stunnel4 is missing: run scripts/ensure-services.sh (make test does)")
    cert, key = self_signed(tmp_path, "blipwatch-test-ca")
    proxy_port, broker_port = free_port(), free_port()
    config = tmp_path / "stunnel.conf"
    config.write_text(f"foreground = yes\npid =\nsyslog = no\noutput = {tmp_path / 'stunnel.log'}\n"
                      f"[kafka]\naccept = 127.0.0.1:{proxy_port}\nconnect = 127.0.0.1:{broker_port}\n"
                      f"cert = {cert}\nkey = {key}\n")
    broker = EmbeddedBroker(port=broker_port, advertised_port=proxy_port, log_path=tmp_path / "tansu.log").start()
    proxy = subprocess.Popen([STUNNEL, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        assert wait_for_port("127.0.0.1", proxy_port, 10), (tmp_path / "stunnel.log").read_text()
        yield broker, cert
    finally:
        proxy.terminate()
        proxy.wait(10)
        broker.stop()


@pytest.mark.soak  # a worker and the simulator over TLS: ~16 s; the failures below stay in make test
def test_worker_and_simulator_work_over_tls_with_the_ca_file(tls_broker, unique_topics, tmp_path):
    broker, ca = tls_broker
    env = base_env(broker, unique_topics, BLIPWATCH_KAFKA_SECURITY_PROTOCOL="SSL", BLIPWATCH_KAFKA_SSL_CAFILE=str(ca))
    with Worker(env, tmp_path) as worker:
        worker.wait_ready(90)
        simulate = subprocess.run([*BLIPWATCH, "simulate", "--scenario", "search_zero_results", "--hours", "0.25",
                                   "--sessions-per-minute", "20", "--seed", "7", "--kafka", "--quiet"],
                                  env=env, capture_output=True, text=True, timeout=120)
        assert simulate.returncode == 0, simulate.stderr
        sent = int(simulate.stderr.split(" events")[0].replace(",", "").split()[-1])
        counted = wait_for(lambda: (lambda n: n if n >= sent else None)(
            sum(v for (name, _), v in worker.metrics().items() if name == "blipwatch_events_total")), 60,
            message=f"{sent} events counted over TLS")
        assert worker.process.poll() is None
    print(f"TLS: simulate sent {sent} events through stunnel, the worker counted {counted:.0f}")
    assert "Traceback" not in worker.log(), worker.log()[-3000:]


@pytest.mark.parametrize("cafile", ["none", "wrong"])
def test_worker_fails_fast_with_one_clear_line_against_an_untrusted_certificate(tls_broker, unique_topics,
                                                                                tmp_path, cafile):
    broker, _ = tls_broker
    env = base_env(broker, unique_topics, BLIPWATCH_KAFKA_SECURITY_PROTOCOL="SSL", BLIPWATCH_WEB_PORT=str(free_port()),
                   BLIPWATCH_DATA_DIR=str(tmp_path / "data"))
    if cafile == "wrong":
        env["BLIPWATCH_KAFKA_SSL_CAFILE"] = str(self_signed(tmp_path, "someone-else")[0])
    started = time.monotonic()
    result = subprocess.run([*BLIPWATCH, "worker"], env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    (tmp_path / "worker.stderr").write_text(result.stderr)
    print(f"untrusted certificate ({cafile} CA file): exit {result.returncode} after {elapsed:.1f} s; "
          f"stderr {len(result.stderr.splitlines())} lines, last: {result.stderr.strip().splitlines()[-1:]}")
    assert result.returncode != 0
    assert elapsed < 30
    assert "certificate" in result.stderr.lower() and "BLIPWATCH_KAFKA_SSL_CAFILE" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]

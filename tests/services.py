"""Real Prometheus and Alertmanager for tests: free loopback ports, a temp data dir, ready-waits,
their HTTP APIs, and a clean stop.

Both come from Debian packages (``scripts/ensure-services.sh``, run by ``make test``). Use them as
context managers so the process is stopped even when a test fails::

    with Alertmanager(tmp_path) as am:
        am.alerts()                      # GET /api/v2/alerts
    with Prometheus(tmp_path, targets=["127.0.0.1:6066"]) as prom:
        prom.query("up")                 # GET /api/v1/query
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from blipwatch.stream_app.embedded_broker import free_port


class ServiceError(RuntimeError):
    """A real service could not be found, started, or answered badly."""


def find_binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise ServiceError(f"none of {', '.join(names)} is installed: run `make services` (scripts/ensure-services.sh)")


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; return it, or raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout} s" + (f" (last error: {last_error})" if last_error else ""))


class _Server:
    """A child process serving HTTP on 127.0.0.1:port, logging to a file under ``workdir``."""

    name = "server"
    ready_path = "/-/ready"

    def __init__(self, workdir: str | Path, port: int | None = None):
        self.workdir = Path(workdir) / f"{self.name}-{id(self):x}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> "_Server":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as response:
                    if response.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"{self.name} not ready on {self.url} within {timeout} s: {self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        return http_json(self.url + path + (f"?{query}" if query else ""))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class WebhookReceiver:
    """An HTTP endpoint on a free loopback port that records Alertmanager webhook notifications."""

    def __init__(self):
        self.notifications: list[dict] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self, status: str | None = None) -> list[dict]:
        """Every alert in every notification so far, optionally only those with ``status``."""
        return [alert for note in list(self.notifications) for alert in note.get("alerts", [])
                if status is None or alert.get("status") == status]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


#: Minimal Alertmanager routing: everything to one receiver, grouped per incident, fast flushes.
def alertmanager_config(webhook_url: str | None = None) -> dict:
    receiver: dict[str, Any] = {"name": "blipwatch-test"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    return {
        "route": {
            "receiver": "blipwatch-test",
            "group_by": ["alertname", "dedup_key"],
            "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h",
        },
        "receivers": [receiver],
    }


class Alertmanager(_Server):
    """``prometheus-alertmanager`` on a free loopback port, clustering off, state in a temp dir.

    ``webhook_url``: a receiver that gets every notification, resolved ones included.
    """

    name = "alertmanager"

    def __init__(self, workdir: str | Path, port: int | None = None, webhook_url: str | None = None,
                 config: dict | None = None):
        super().__init__(workdir, port)
        self.config = config or alertmanager_config(webhook_url)

    def command(self) -> list[str]:
        config_path = self.workdir / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(self.config))
        (self.workdir / "data").mkdir(exist_ok=True)
        return [
            find_binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # empty: no gossip port, no peers
            "--log.level=debug",
        ]

    def alerts(self, **filters: str) -> list[dict]:
        """Active (firing, incl. silenced/inhibited) alerts, optionally filtered by label equality.

        Alertmanager's API never lists resolved alerts: a resolved alert is one that is gone from
        here (its resolution is visible in notifications, see ``WebhookReceiver``).
        """
        matchers = [f'{name}="{value}"' for name, value in filters.items()]
        return self.get("/api/v2/alerts", filter=matchers)

    def post_alerts(self, alerts: list[dict]) -> None:
        http_json(self.url + "/api/v2/alerts", method="POST", body=alerts)


class Prometheus(_Server):
    """``prometheus`` on a free loopback port scraping ``targets`` every ``scrape_interval``.

    ``rule_files``: paths to rule files to load (``promtool``-checked by Prometheus at start).
    """

    name = "prometheus"

    def __init__(self, workdir: str | Path, targets: list[str] = (), port: int | None = None,
                 scrape_interval: str = "1s", rule_files: list[str | Path] = ()):
        super().__init__(workdir, port)
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.rule_files = [str(path) for path in rule_files]

    def command(self) -> list[str]:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{"job_name": "blipwatch", "static_configs": [{"targets": self.targets}]}],
            "rule_files": self.rule_files,
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        return [
            find_binary("prometheus"),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def query(self, expr: str, time_: float | None = None) -> dict:
        """``/api/v1/query``: the ``data`` part; raises ``ServiceError`` with Prometheus' message on error."""
        params = {"query": expr}
        if time_ is not None:
            params["time"] = str(time_)
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode(params)
        try:
            body = http_json(url)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise ServiceError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def targets_up(self) -> bool:
        active = self.get("/api/v1/targets")["data"]["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)

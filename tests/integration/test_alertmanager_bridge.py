"""The Alertmanager bridge against a real Alertmanager and the embedded broker.

Each test produces alert messages (the anomaly-alerts contract) to its own topic, runs the real
``blipwatch alertmanager-bridge`` process, and looks at what Alertmanager shows through its API and
sends to a webhook receiver.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import BLIPWATCH, child_env
from tests.helpers import scrape
from tests.services import Alertmanager, WebhookReceiver, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DASHBOARD = "http://grafana.test:3000"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def alert_message(dedup_key: str, status: str = "firing", **overrides) -> dict:
    """A cart-abandonment spike on the web channel in Germany, as the worker publishes it."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    message = {
        "alert_id": str(uuid.uuid4()), "dedup_key": dedup_key, "status": status, "severity": "critical",
        "metric": "cart_abandonment_rate", "segment": {"channel": "web", "country": "DE"}, "direction": "up",
        "window_start": rfc3339(now - timedelta(minutes=1)), "window_end": rfc3339(now),
        "started_at": rfc3339(now - timedelta(minutes=1)),
        "observed": 0.612, "expected": 0.301, "lower": 0.22, "upper": 0.38, "score": 0.9991,
        "numerator": 153, "denominator": 250,
        "summary": "Cart abandonment on web in DE rose to 61% (expected 30%, 153 of 250 carts).",
        "detector": "beta_binomial", "related": [{"metric": "cart_abandonment_rate", "segment": {}}],
    }
    message.update(overrides)
    return message


@pytest.fixture
def produce(broker, unique_topics):
    from kafka import KafkaProducer

    from blipwatch.stream_app.config import Settings

    settings = Settings.from_env({"BLIPWATCH_BROKER": broker.url, **unique_topics})
    producer = KafkaProducer(**settings.kafka_python_kwargs(), acks="all", enable_idempotence=False)

    def send(message: dict | bytes, key: str = "") -> None:
        value = message if isinstance(message, bytes) else json.dumps(message).encode()
        key = key or message["dedup_key"]
        producer.send(settings.alerts_topic, key=key.encode(), value=value).get(timeout=10)

    yield send
    producer.close(timeout=5)


@pytest.fixture
def bridge(broker, unique_topics, tmp_path):
    """Starts ``blipwatch alertmanager-bridge`` processes; stops them all at the end."""
    processes = []

    @contextmanager
    def run(url: str, *extra: str):
        log_path = tmp_path / f"bridge-{len(processes)}.log"
        env = child_env(BLIPWATCH_BROKER=broker.url, BLIPWATCH_LOG_LEVEL="debug", **unique_topics)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*BLIPWATCH, "alertmanager-bridge", "--url", url, "--dashboard-url", DASHBOARD,
                 "--group-id", unique_topics["BLIPWATCH_APP_ID"] + "-bridge", *extra],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        processes.append(process)
        try:
            yield process
        except BaseException:
            print(f"--- bridge log ---\n{log_path.read_text(errors='replace')[-4000:]}")
            raise
        finally:
            stop(process)

    def stop(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    yield run
    for process in processes:
        stop(process)


def test_incident_is_active_in_alertmanager_with_labels_and_annotations_then_resolved(
        tmp_path, produce, bridge):
    key = f"cart_abandonment_rate|channel=web,country=DE|{uuid.uuid4().hex[:8]}"
    firing = alert_message(key)
    produce(firing)
    with WebhookReceiver() as webhook, Alertmanager(tmp_path, webhook_url=webhook.url) as am, \
            bridge(am.url, "--resend-interval", "1"):
        [active] = wait_until(lambda: am.alerts(dedup_key=key), timeout=30, what="alert active in Alertmanager")
        print("Alertmanager GET /api/v2/alerts, firing:", json.dumps(active, indent=1))
        assert active["status"]["state"] == "active"
        assert active["labels"] == {
            "alertname": "CustomerBehaviourBlip", "metric": "cart_abandonment_rate", "severity": "critical",
            "dedup_key": key, "channel": "web", "country": "DE",
        }
        annotations = active["annotations"]
        assert annotations["summary"] == firing["summary"]
        assert (annotations["observed"], annotations["expected"], annotations["bounds"]) == \
            ("0.612", "0.301", "[0.22, 0.38]")
        assert annotations["dashboard"].startswith(DASHBOARD + "/d/blipwatch-blips/")
        assert "var-metric=cart_abandonment_rate" in annotations["dashboard"]
        assert active["startsAt"].startswith(firing["started_at"].rstrip("Z"))
        # endsAt a few minutes ahead, pushed forward by each re-send while firing
        ends_at = active["endsAt"]
        assert datetime.fromisoformat(ends_at.replace("Z", "+00:00")) > datetime.now(timezone.utc) + timedelta(minutes=2)
        wait_until(lambda: am.alerts(dedup_key=key)[0]["endsAt"] > ends_at, timeout=10, what="re-sent while firing")

        wait_until(lambda: webhook.alerts("firing"), timeout=15, what="firing notification")
        resolved = alert_message(key, "resolved", observed=0.31, summary="Cart abandonment on web in DE is back to 31%.")
        produce(resolved)
        wait_until(lambda: not am.alerts(dedup_key=key), timeout=30, what="alert no longer active")
        [notified] = wait_until(lambda: webhook.alerts("resolved"), timeout=15, what="resolved notification")
        print("Alertmanager webhook notification, resolved:", json.dumps(notified, indent=1))
        assert notified["labels"]["dedup_key"] == key
        assert notified["endsAt"].startswith(resolved["window_end"].rstrip("Z"))
        # the bridge forgot it: no re-send resurrects the resolved alert
        time.sleep(2.5)
        assert am.alerts(dedup_key=key) == []


def test_alertmanager_down_at_start_still_gets_the_latest_state_once_it_is_up_bad_messages_skipped(tmp_path, produce, bridge):
    key = f"payment_failure_rate|all|{uuid.uuid4().hex[:8]}"
    am = Alertmanager(tmp_path)  # port chosen, not started yet
    with bridge(am.url, "--max-backoff", "2") as process:
        produce(b"{not json", key=key)  # skipped with an error line, never retried
        produce(alert_message(key + "-bad", started_at="yesterday"))
        produce(alert_message(key, metric="payment_failure_rate", segment={}, severity="warning", observed=0.2))
        produce(alert_message(key, metric="payment_failure_rate", segment={}, severity="critical", observed=0.45))
        time.sleep(4)  # the bridge has consumed both and is retrying against nothing
        assert process.poll() is None, "the bridge must keep running while Alertmanager is down"
        with am:
            [active] = wait_until(lambda: am.alerts(dedup_key=key), timeout=20, what="alert after Alertmanager start")
            assert am.alerts(dedup_key=key + "-bad") == []
        assert active["labels"]["severity"] == "critical"
        assert active["labels"]["metric"] == "payment_failure_rate"
        assert active["annotations"]["observed"] == "0.45"
        assert "channel" not in active["labels"]


def test_a_severity_escalation_replaces_the_warning_alert(tmp_path, produce, bridge):
    key = f"error_rate|device=mobile|{uuid.uuid4().hex[:8]}"
    with Alertmanager(tmp_path) as am, bridge(am.url):
        produce(alert_message(key, metric="error_rate", segment={"device": "mobile"}, severity="warning"))
        wait_until(lambda: am.alerts(dedup_key=key, severity="warning"), timeout=30, what="warning alert")
        produce(alert_message(key, metric="error_rate", segment={"device": "mobile"}, severity="critical"))

        def only_critical():
            alerts = am.alerts(dedup_key=key)
            return alerts if [alert["labels"]["severity"] for alert in alerts] == ["critical"] else None

        [active] = wait_until(only_critical, timeout=30, what="only the critical alert active")
        assert active["labels"]["device"] == "mobile"


@pytest.mark.soak  # a restart under a live incident (~22 s): fault injection
def test_a_restarted_bridge_keeps_re_sending_an_incident_that_is_still_firing(tmp_path, produce, bridge):
    key = f"event_volume|country=FR|{uuid.uuid4().hex[:8]}"
    produce(alert_message(key, metric="event_volume", segment={"country": "FR"}, direction="down"))
    with Alertmanager(tmp_path) as am:
        with bridge(am.url):
            [first] = wait_until(lambda: am.alerts(dedup_key=key), timeout=30, what="alert from the first bridge")
        time.sleep(0.5)
        with bridge(am.url):
            # the committed offset still covers the live incident, so the new bridge re-reads and re-posts it
            wait_until(lambda: am.alerts(dedup_key=key)[0]["updatedAt"] > first["updatedAt"], timeout=30,
                       what="re-posted by the restarted bridge")


@pytest.mark.soak  # hostile records and a restart (~20 s): fault injection
def test_poison_records_are_skipped_counted_and_dead_lettered_and_a_restart_does_not_meet_them_again(
        tmp_path, produce, bridge, broker, unique_topics):
    from kafka import KafkaConsumer

    from blipwatch.stream_app.embedded_broker import free_port

    key = f"checkout_conversion_rate|all|{uuid.uuid4().hex[:8]}"
    deep = ('{"a":' * 5000 + "1" + "}" * 5000).encode()  # RecursionError in json.loads
    poison = [deep,
              json.dumps(alert_message(key + "-inf", started_at=float("inf"))).encode(),  # Infinity: OverflowError
              json.dumps(alert_message(key + "-big", started_at=1e30)).encode(),
              json.dumps(alert_message(key + "-neg", "resolved", window_end=-1e20)).encode()]  # OSError
    for value in poison:
        produce(value, key=key + "-poison")
    produce(alert_message(key, metric="checkout_conversion_rate", segment={}))
    port = free_port()
    with Alertmanager(tmp_path) as am:
        with bridge(am.url, "--metrics-port", str(port)) as process:
            wait_until(lambda: am.alerts(dedup_key=key), timeout=30, what="the good alert after the poison")
            assert process.poll() is None, "the bridge must survive poison records"

            def skipped_by_reason() -> dict:
                return {dict(labels)["reason"]: value for (name, labels), value in scrape(port).items()
                        if name == "blipwatch_alertmanager_bridge_skipped_total"}

            # the good alert has its own key, so its partition may be read before all of the poison's
            wait_until(lambda: sum(skipped_by_reason().values()) >= 4, timeout=30, what="the four poison records skipped")
            skipped = skipped_by_reason()
            print("skipped by reason:", skipped)
            assert skipped == {"not_json": 0, "too_deep": 1, "not_an_alert": 0, "bad_field": 3}
        first_log = (tmp_path / "bridge-0.log").read_text()
        assert first_log.count("skipping alert record") == 4
        assert "Traceback" not in first_log
        consumer = KafkaConsumer(unique_topics["BLIPWATCH_ALERTS_TOPIC"] + "-bridge-dlq",
                                 bootstrap_servers=broker.url.split("://")[-1], auto_offset_reset="earliest",
                                 consumer_timeout_ms=5000)
        letters = list(consumer)
        consumer.close()
        assert sorted(record.value for record in letters) == sorted(poison)
        assert {dict(record.headers)["reason"] for record in letters} == {b"too_deep", b"bad_field"}
        with bridge(am.url) as process:
            # the commit went past the poison: the restarted bridge re-posts the live incident only
            before = am.alerts(dedup_key=key)[0]["updatedAt"]
            wait_until(lambda: am.alerts(dedup_key=key)[0]["updatedAt"] > before, timeout=30, what="re-posted")
            assert process.poll() is None
        assert "skipping alert record" not in (tmp_path / "bridge-1.log").read_text()


class BasicAuthAlertmanager(Alertmanager):
    """The real Alertmanager with ``--web.config.file`` requiring basic auth (bcrypt via libcrypt)."""

    user, password = "blip", "s3cret-pass"

    def command(self) -> list[str]:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        digest = crypt.crypt(self.password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        web_config = self.workdir / "web.yml"
        web_config.write_text(json.dumps({"basic_auth_users": {self.user: digest}}))
        return [*super().command(), f"--web.config.file={web_config}"]

    def _open(self, path: str):
        import base64

        request = urllib.request.Request(self.url + path, headers={"Authorization": "Basic " + base64.b64encode(
            f"{self.user}:{self.password}".encode()).decode()})
        return urllib.request.urlopen(request, timeout=5)

    def start(self, timeout: float = 20.0):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()
        wait_until(lambda: self._open(self.ready_path).status == 200, timeout=timeout, what="alertmanager ready")
        return self

    def alerts(self, **filters: str) -> list[dict]:
        import urllib.parse

        query = urllib.parse.urlencode({"filter": [f'{k}="{v}"' for k, v in filters.items()]}, doseq=True)
        with self._open("/api/v2/alerts?" + query) as response:
            return json.loads(response.read())


@pytest.mark.soak  # Alertmanager refusing the bridge (~29 s): fault injection
def test_a_401_does_not_drop_a_resolution_and_credentials_never_reach_the_log(tmp_path, produce, bridge):
    key = f"payment_failure_rate|country=FR|{uuid.uuid4().hex[:8]}"
    good = tmp_path / "basic-auth"
    good.write_text(f"{BasicAuthAlertmanager.user}:{BasicAuthAlertmanager.password}\n")
    with BasicAuthAlertmanager(tmp_path) as am:
        with _no_auth_status(am) as status:
            assert status == 401  # Alertmanager really refuses a client without credentials
        produce(alert_message(key, metric="payment_failure_rate", segment={"country": "FR"}))
        with bridge(am.url, "--basic-auth-file", str(good)):
            wait_until(lambda: am.alerts(dedup_key=key), timeout=30, what="posted with basic auth from a file")
        produce(alert_message(key, "resolved", metric="payment_failure_rate", segment={"country": "FR"}))
        wrong_url = am.url.replace("http://", "http://blip:Wr0ng-Secret@")
        with bridge(wrong_url, "--max-backoff", "1"):
            wait_until(lambda: (tmp_path / "bridge-1.log").read_text().count("HTTP 401") >= 2, timeout=30,
                       what="401 retried")
        assert am.alerts(dedup_key=key), "the refused resolution must not have reached Alertmanager"
        wrong_log = (tmp_path / "bridge-1.log").read_text()
        assert "Wr0ng-Secret" not in wrong_log
        with bridge(am.url, "--basic-auth-file", str(good)):
            # the 401 left the resolution undelivered and its offset uncommitted: this bridge re-reads it
            wait_until(lambda: not am.alerts(dedup_key=key), timeout=30, what="resolved after the 401")


@contextmanager
def _no_auth_status(am):
    import urllib.error

    try:
        urllib.request.urlopen(am.url + "/api/v2/alerts", timeout=5)
        yield 200
    except urllib.error.HTTPError as exc:
        yield exc.code


def make_cert(directory, name: str):
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class MutualTLSAlertmanager(BasicAuthAlertmanager):
    """The real Alertmanager serving https only to clients with a certificate signed by ``client_ca``."""

    def __init__(self, workdir, server, client_ca, client):
        super().__init__(workdir)
        self.server, self.client_ca, self.client = server, client_ca, client

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        web_config = self.workdir / "web-tls.yml"
        web_config.write_text(json.dumps({"tls_server_config": {
            "cert_file": str(self.server[0]), "key_file": str(self.server[1]),
            "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(self.client_ca)}}))
        return [*Alertmanager.command(self), f"--web.config.file={web_config}"]

    def _open(self, path: str):
        import ssl

        context = ssl.create_default_context(cafile=str(self.server[0]))
        context.load_cert_chain(str(self.client[0]), str(self.client[1]))
        return urllib.request.urlopen(self.url + path, timeout=5, context=context)


@pytest.mark.soak  # two bridges against Alertmanager over TLS: ~22 s
def test_https_with_a_ca_file_and_a_client_certificate(tmp_path, produce, bridge):
    server, client = make_cert(tmp_path, "alertmanager"), make_cert(tmp_path, "bridge")
    key = f"error_rate|channel=app|{uuid.uuid4().hex[:8]}"
    produce(alert_message(key, metric="error_rate", segment={"channel": "app"}))
    with MutualTLSAlertmanager(tmp_path, server, client_ca=client[0], client=client) as am:
        with bridge(am.url, "--max-backoff", "1"):  # the system CAs do not trust it: nothing is posted
            wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "bridge-0.log").read_text(), timeout=30,
                       what="an untrusted certificate reported")
        assert am.alerts(dedup_key=key) == []
        with bridge(am.url, "--ca-file", str(server[0]), "--client-cert", str(client[0]),
                    "--client-key", str(client[1])):
            wait_until(lambda: am.alerts(dedup_key=key), timeout=30, what="posted over mutual TLS")

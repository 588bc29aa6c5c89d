"""SASL client configuration. The embedded broker cannot be given a SCRAM user (`tansu user create`
fails with "early eof"), so SASL is tested as configuration: the
``BLIPWATCH_KAFKA_*`` variables produce the right settings for kafka-python, aiokafka and Faust, and
every Kafka client constructed in blipwatch takes them from ``Settings``. TLS is tested for real
in tests/integration/test_tls.py."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import faust
import pytest

from blipwatch.stream_app.config import ConfigError, Settings

PACKAGE = Path(__file__).resolve().parents[2] / "blipwatch"
SASL_ENV = {"BLIPWATCH_BROKER": "kafka://k1:9093;k2:9093", "BLIPWATCH_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "BLIPWATCH_KAFKA_SASL_MECHANISM": "scram-sha-512", "BLIPWATCH_KAFKA_SASL_USERNAME": "blipwatch",
            "BLIPWATCH_KAFKA_SASL_PASSWORD": "s3cret"}


def test_sasl_ssl_scram_settings_reach_kafka_python_aiokafka_and_faust():
    settings = Settings.from_env(SASL_ENV)
    assert settings.kafka_python_kwargs() == {
        "bootstrap_servers": ["k1:9093", "k2:9093"], "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "blipwatch", "sasl_plain_password": "s3cret"}
    aio = settings.aiokafka_kwargs()
    assert isinstance(aio.pop("ssl_context"), ssl.SSLContext)
    assert aio == {"bootstrap_servers": "k1:9093,k2:9093", "security_protocol": "SASL_SSL",
                   "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "blipwatch",
                   "sasl_plain_password": "s3cret"}
    fk = settings.faust_kwargs()
    assert fk["broker"] == "kafka://k1:9093;kafka://k2:9093"
    credentials = fk["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == \
        ("blipwatch", "s3cret", "SCRAM-SHA-512")
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert "s3cret" not in repr(settings), "the password must not show in a logged settings object"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl_plaintext_mechanisms_have_no_tls(mechanism):
    settings = Settings.from_env({**SASL_ENV, "BLIPWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                  "BLIPWATCH_KAFKA_SASL_MECHANISM": mechanism})
    assert settings.aiokafka_kwargs()["sasl_mechanism"] == mechanism and "ssl_context" not in settings.aiokafka_kwargs()
    assert settings.faust_kwargs()["broker_credentials"].ssl_context is None


@pytest.mark.parametrize("change, message", [
    ({"BLIPWATCH_KAFKA_SASL_USERNAME": ""}, "needs BLIPWATCH_KAFKA_SASL_USERNAME"),
    ({"BLIPWATCH_KAFKA_SASL_MECHANISM": "GSSAPI"}, "BLIPWATCH_KAFKA_SASL_MECHANISM"),
    ({"BLIPWATCH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "use one of"),
    ({"BLIPWATCH_KAFKA_SSL_CAFILE": "/nope.pem"}, "does not exist"),
])
def test_a_wrong_security_setting_is_one_clear_error(change, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**SASL_ENV, **change})


#: files whose Kafka clients only ever talk to an embedded broker the same code starts on loopback
EMBEDDED_ONLY = {f"tools/bench/{name}.py": "blipwatch bench starts and measures its own embedded broker"
                 for name in ("topics", "bare", "worker", "live")}


def test_every_kafka_client_blipwatch_creates_takes_the_security_settings():
    constructions = 0
    for path in PACKAGE.rglob("*.py"):
        if str(path.relative_to(PACKAGE)) in EMBEDDED_ONLY:
            assert "EmbeddedBroker" in path.read_text()
            continue
        text = path.read_text()
        for match in re.finditer(r"\b(KafkaProducer|KafkaConsumer|KafkaAdminClient|AIOKafkaConsumer|"
                                 r"AIOKafkaProducer|AIOKafkaAdminClient)\(", text):
            call = text[match.end(): text.find(")\n", match.end()) + 1]
            constructions += 1
            assert re.search(r"\*\*(settings|self\.settings|connection|self\.connection)\b|_kwargs\(\)", call), \
                f"{path.relative_to(PACKAGE)}: {match.group(1)}(...) without the BLIPWATCH_KAFKA_* settings"
    assert constructions >= 5
    assert "faust_kwargs()" in (PACKAGE / "stream_app" / "app.py").read_text()

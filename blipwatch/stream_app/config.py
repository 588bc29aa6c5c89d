"""Runtime settings from ``BLIPWATCH_*`` environment variables.

Every Kafka client the project creates (Faust worker, kafka-python producers and
consumers, aiokafka consumers, the alert bridge, the CLI tools) takes its connection
and security settings from here, so one set of variables configures them all.
"""

from __future__ import annotations

import math
import os
import ssl
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

#: The documented defaults (README "Configuration"). Keep the two in step.
DEFAULTS: dict[str, str] = {
    "BROKER": "kafka://127.0.0.1:9092",
    "EVENTS_TOPIC": "customer-events",
    "DLQ_TOPIC": "customer-events-dlq",
    "ALERTS_TOPIC": "anomaly-alerts",
    "POINTS_TOPIC": "blipwatch-metric-points",
    "PARTIALS_TOPIC": "blipwatch-metric-partials",
    "FEEDBACK_TOPIC": "blipwatch-feedback",
    "CALENDAR_TOPIC": "blipwatch-calendar",
    "PARTITIONS": "4",
    "APP_ID": "blipwatch",
    "WEB_PORT": "6066",
    "WEB_HOST": "127.0.0.1",
    "CONFIG": "",
    "DATA_DIR": "",
    "LOG_LEVEL": "info",
    "MAX_EVENT_BYTES": "65536",
    "MAX_OPEN_JOURNEYS": "1000000",
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "",
    "KAFKA_SASL_USERNAME": "",
    "KAFKA_SASL_PASSWORD": "",
    "KAFKA_SSL_CAFILE": "",
    "EMBEDDED_BROKER": "",
    "INPUT_PRESET": "",
    "REPLICATION_FACTOR": "",
    "MIN_INSYNC_REPLICAS": "",
}

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """A setting is wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Settings:
    broker: str = DEFAULTS["BROKER"]
    events_topic: str = DEFAULTS["EVENTS_TOPIC"]
    dlq_topic: str = DEFAULTS["DLQ_TOPIC"]
    alerts_topic: str = DEFAULTS["ALERTS_TOPIC"]
    points_topic: str = DEFAULTS["POINTS_TOPIC"]
    partials_topic: str = DEFAULTS["PARTIALS_TOPIC"]
    feedback_topic: str = DEFAULTS["FEEDBACK_TOPIC"]
    calendar_topic: str = DEFAULTS["CALENDAR_TOPIC"]
    partitions: int = int(DEFAULTS["PARTITIONS"])
    app_id: str = DEFAULTS["APP_ID"]
    web_port: int = int(DEFAULTS["WEB_PORT"])
    web_host: str = DEFAULTS["WEB_HOST"]
    config_path: str = DEFAULTS["CONFIG"]
    data_dir: str = DEFAULTS["DATA_DIR"]
    log_level: str = DEFAULTS["LOG_LEVEL"]
    max_event_bytes: int = int(DEFAULTS["MAX_EVENT_BYTES"])
    #: open journeys a worker holds over its input partitions (docs/inputs.md)
    max_open_journeys: int = int(DEFAULTS["MAX_OPEN_JOURNEYS"])
    security_protocol: str = DEFAULTS["KAFKA_SECURITY_PROTOCOL"]
    sasl_mechanism: str = DEFAULTS["KAFKA_SASL_MECHANISM"]
    sasl_username: str = DEFAULTS["KAFKA_SASL_USERNAME"]
    sasl_password: str = field(default=DEFAULTS["KAFKA_SASL_PASSWORD"], repr=False)
    ssl_cafile: str = DEFAULTS["KAFKA_SSL_CAFILE"]
    #: "1" when the broker is the embedded Tansu one: enables the isolated
    #: compatibility layer in ``blipwatch.kafka.tansu_compat`` (docs/architecture.md).
    embedded_broker: bool = False
    #: the input format (blipwatch.schemas.presets); empty: the config file's ``input.preset``, else blipwatch
    input_preset: str = DEFAULTS["INPUT_PRESET"]
    #: copies of every topic the worker creates; 0 = 3, or fewer on a smaller cluster (``replication.py``)
    replication_factor: int = 0
    #: ``min.insync.replicas`` of those topics; 0 = the factor minus one, between 1 and 2
    min_insync_replicas: int = 0

    def __post_init__(self) -> None:
        # also runs for dataclasses.replace, e.g. `worker --loglevel DEBUG`
        object.__setattr__(self, "log_level", str(self.log_level).lower())
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(f"BLIPWATCH_{name}", DEFAULTS[name]).strip()

        def integer(name: str, low: int, high: int) -> int:
            raw = get(name) or "0"
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"BLIPWATCH_{name}={raw!r} is not a whole number") from None
            if not low <= value <= high:
                raise ConfigError(f"BLIPWATCH_{name}={value} must be between {low} and {high}")
            return value

        protocol = get("KAFKA_SECURITY_PROTOCOL").upper() or "PLAINTEXT"
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"BLIPWATCH_KAFKA_SECURITY_PROTOCOL={protocol!r}: use one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        mechanism = get("KAFKA_SASL_MECHANISM").upper()
        if protocol.startswith("SASL"):
            mechanism = mechanism or "PLAIN"
            if mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"BLIPWATCH_KAFKA_SASL_MECHANISM={mechanism!r}: use one of {', '.join(SASL_MECHANISMS)}"
                )
            if not get("KAFKA_SASL_USERNAME"):
                raise ConfigError(f"{protocol} needs BLIPWATCH_KAFKA_SASL_USERNAME and _PASSWORD")
        cafile = get("KAFKA_SSL_CAFILE")
        if cafile and not Path(cafile).is_file():
            raise ConfigError(f"BLIPWATCH_KAFKA_SSL_CAFILE={cafile!r} does not exist")
        broker = get("BROKER")
        if not broker:
            raise ConfigError("BLIPWATCH_BROKER is empty: set it to e.g. kafka://127.0.0.1:9092")
        check_broker(broker)
        log_level = get("LOG_LEVEL").lower()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"BLIPWATCH_LOG_LEVEL={log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        config_path = get("CONFIG")
        if config_path and not Path(config_path).is_file():
            raise ConfigError(f"BLIPWATCH_CONFIG={config_path!r} does not exist")
        input_preset = get("INPUT_PRESET").lower()
        if input_preset:
            from blipwatch.schemas.presets import PRESETS

            if input_preset not in PRESETS:
                raise ConfigError(f"BLIPWATCH_INPUT_PRESET={input_preset!r}: use one of {', '.join(PRESETS)}")
        return cls(
            broker=broker,
            events_topic=get("EVENTS_TOPIC"),
            dlq_topic=get("DLQ_TOPIC"),
            alerts_topic=get("ALERTS_TOPIC"),
            points_topic=get("POINTS_TOPIC"),
            partials_topic=get("PARTIALS_TOPIC"),
            feedback_topic=get("FEEDBACK_TOPIC"),
            calendar_topic=get("CALENDAR_TOPIC"),
            partitions=integer("PARTITIONS", 1, 10_000),
            app_id=get("APP_ID"),
            web_port=integer("WEB_PORT", 0, 65535),
            web_host=get("WEB_HOST"),
            config_path=config_path,
            data_dir=get("DATA_DIR"),
            log_level=log_level,
            max_event_bytes=integer("MAX_EVENT_BYTES", 256, 64 * 1024 * 1024),
            max_open_journeys=integer("MAX_OPEN_JOURNEYS", 1, 1_000_000_000),
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=get("KAFKA_SASL_USERNAME"),
            sasl_password=get("KAFKA_SASL_PASSWORD"),
            ssl_cafile=cafile,
            embedded_broker=get("EMBEDDED_BROKER").lower() in ("1", "true", "yes"),
            input_preset=input_preset,
            replication_factor=integer("REPLICATION_FACTOR", 0, 32),
            min_insync_replicas=integer("MIN_INSYNC_REPLICAS", 0, 32),
        )

    # --- derived -----------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` pairs from ``BLIPWATCH_BROKER`` (``kafka://a:9092;b:9092`` or ``a:9092,b:9092``)."""
        servers = []
        for part in self.broker.replace(";", ",").split(","):
            part = part.strip()
            if "://" in part:
                part = part.split("://", 1)[1]
            if part:
                servers.append(part.rstrip("/"))
        return servers

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path.cwd() / "blipwatch-data"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile or None)
        return context

    def check_tls(self, timeout: float = 10.0) -> None:
        """With TLS on, shake hands with the first reachable bootstrap server before starting, so an
        untrusted certificate is one clear line and exit code 2, not Faust's traceback. An unreachable
        server is left to the Kafka clients (they report and retry it themselves)."""
        import socket

        context = self.ssl_context()
        if context is None:
            return
        for server in self.bootstrap_servers:
            host, _, port = server.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw:
                    with context.wrap_socket(raw, server_hostname=host.strip("[]")):
                        return
            except ssl.SSLCertVerificationError as exc:
                where = f"the CA file {self.ssl_cafile}" if self.ssl_cafile else "the system CAs"
                raise ConfigError(
                    f"TLS to {server}: the broker's certificate is not trusted by {where} ({exc.verify_message}); "
                    "set BLIPWATCH_KAFKA_SSL_CAFILE to the CA that signed it") from None
            except ssl.SSLError as exc:
                raise ConfigError(f"TLS to {server} failed ({exc.reason or exc}): is that port TLS? "
                                  "check BLIPWATCH_BROKER and BLIPWATCH_KAFKA_SECURITY_PROTOCOL") from None
            except (OSError, ValueError):
                continue

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Connection settings for kafka-python clients (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_cafile:
            kwargs["ssl_cafile"] = self.ssl_cafile
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection settings for aiokafka clients (the batched ingest consumer, bench, bridge)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": ",".join(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def faust_kwargs(self) -> dict[str, Any]:
        """Broker settings for ``faust.App`` (credentials included when configured)."""
        import faust

        kwargs: dict[str, Any] = {"broker": self.faust_broker}
        context = self.ssl_context()
        if self.security_protocol.startswith("SASL"):
            kwargs["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        elif context is not None:
            kwargs["broker_credentials"] = faust.SSLCredentials(context)
        return kwargs

    def faust_web_kwargs(self) -> dict[str, Any]:
        """Faust's web server serves ``/metrics`` (added by the Prometheus sensor) and ``/``, a
        health check answering ``{"status": "OK"}``; nothing else. Faust's ``/router`` (cluster
        topology) and ``/table`` (any table key's value) routes are off, as are ``/graph``, its
        sensor stats and ``/performance``. It listens on ``BLIPWATCH_WEB_HOST`` (127.0.0.1 unless set)."""
        return {
            "web_port": self.web_port, "web_bind": self.web_host, "web_host": self.web_host,
            "web_router_enabled": False, "web_tables_enabled": False, "web_graph_enabled": False,
            "web_stats_enabled": False, "web_metrics_enabled": False,
        }

    def as_env(self) -> dict[str, str]:
        """The ``BLIPWATCH_*`` variables that reproduce these settings (for child processes)."""
        names = {
            "broker": "BROKER", "events_topic": "EVENTS_TOPIC", "dlq_topic": "DLQ_TOPIC",
            "alerts_topic": "ALERTS_TOPIC", "points_topic": "POINTS_TOPIC",
            "partials_topic": "PARTIALS_TOPIC", "feedback_topic": "FEEDBACK_TOPIC",
            "calendar_topic": "CALENDAR_TOPIC", "partitions": "PARTITIONS", "app_id": "APP_ID",
            "web_port": "WEB_PORT", "web_host": "WEB_HOST", "config_path": "CONFIG",
            "data_dir": "DATA_DIR", "log_level": "LOG_LEVEL", "max_event_bytes": "MAX_EVENT_BYTES",
            "max_open_journeys": "MAX_OPEN_JOURNEYS",
            "security_protocol": "KAFKA_SECURITY_PROTOCOL", "sasl_mechanism": "KAFKA_SASL_MECHANISM",
            "sasl_username": "KAFKA_SASL_USERNAME", "sasl_password": "KAFKA_SASL_PASSWORD",
            "ssl_cafile": "KAFKA_SSL_CAFILE", "embedded_broker": "EMBEDDED_BROKER",
            "input_preset": "INPUT_PRESET",
            "replication_factor": "REPLICATION_FACTOR", "min_insync_replicas": "MIN_INSYNC_REPLICAS",
        }
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                value = "1" if value else ""
            env[f"BLIPWATCH_{names[f.name]}"] = str(value)
        return env


def check_broker(broker: str) -> None:
    """``BLIPWATCH_BROKER`` is a list of ``host:port`` (``kafka://`` optional), or one clear error.

    >>> check_broker("kafka://a:9092;b:9093"); check_broker("127.0.0.1:9092,[::1]:9092")
    >>> check_broker("nonsense")
    Traceback (most recent call last):
    blipwatch.stream_app.config.ConfigError: BLIPWATCH_BROKER='nonsense': 'nonsense' is not host:port; write e.g. kafka://127.0.0.1:9092 (several: kafka://a:9092;b:9092)
    """
    for part in broker.replace(";", ",").split(","):
        server = part.strip()
        scheme, sep, rest = server.partition("://")
        if sep and scheme.lower() != "kafka":
            raise ConfigError(f"BLIPWATCH_BROKER={broker!r}: use kafka://host:port, not {scheme}://")
        server = (rest if sep else server).rstrip("/")
        host, colon, port = server.rpartition(":")
        if not (colon and host.strip("[]") and port.isdigit() and 0 < int(port) < 65536) or "/" in server:
            raise ConfigError(f"BLIPWATCH_BROKER={broker!r}: {server!r} is not host:port; write e.g. "
                              "kafka://127.0.0.1:9092 (several: kafka://a:9092;b:9092)")


def check_catalogue(catalogue) -> None:
    """Every metric's detector and policy settings as its series will use them, checked when the
    config is loaded (values that are NaN/inf, the policy's names and ranges) instead of at the first
    series. The detector's names and ranges are checked by the catalogue itself."""
    from blipwatch.detectors import AlertPolicy, SettingsError

    for metric in catalogue.metrics:
        detector, policy = catalogue.detector_settings_for(metric), catalogue.policy_settings_for(metric)
        for section, values in (("detector", detector), ("policy", policy)):
            for key, value in _leaves(values):
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"metrics.{metric.name}: {section} setting {key!r}={value} must be finite")
        try:
            AlertPolicy.from_settings(policy)
        except (SettingsError, TypeError, ValueError) as exc:
            raise ConfigError(f"metrics.{metric.name}: {exc}") from None


def _leaves(mapping: Mapping[str, Any], prefix: str = ""):
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def load_catalogue(settings: Settings | None = None, path: str | None = None):
    """The metric catalogue from ``--config``/``BLIPWATCH_CONFIG`` or the shipped default YAML."""
    from blipwatch.pipeline.catalogue import Catalogue, CatalogueError

    path = path or (settings.config_path if settings else "") or ""
    try:
        if not path:
            catalogue = Catalogue.from_dict(None)
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError(f"the config file {path} is not UTF-8 text") from None
            catalogue = Catalogue.from_yaml(text, source=path)
    except CatalogueError as exc:
        raise ConfigError(f"{path or 'default config'}: {exc}") from None
    try:
        check_catalogue(catalogue)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'default config'}: {exc}") from None
    return catalogue


def input_preset(settings: Settings | None, catalogue) -> str:
    """The input preset's name: ``BLIPWATCH_INPUT_PRESET``, else the config file's ``input.preset``,
    else ``blipwatch`` (both checked when read)."""
    return (settings.input_preset if settings else "") or catalogue.input_preset or "blipwatch"

"""compose/docker-compose.yml, validated as data (there is no Docker engine here): the services the
stack promises, pinned images, host ports on loopback, mounted files that exist, and commands that
are real ``blipwatch`` subcommands of this checkout's CLI."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from blipwatch.stream_app.cli import build_parser
from tests.services import find_binary

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
#: What each blipwatch service runs. The stack needs all of these to be registered CLI commands.
EXPECTED_COMMANDS = {
    "worker-1": "worker", "worker-2": "worker", "alert-bridge": "alertmanager-bridge", "simulator": "simulate",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_the_stack_has_kafka_two_workers_the_bridge_and_the_monitoring_services(compose):
    assert set(compose["services"]) == {"kafka", "worker-1", "worker-2", "alert-bridge", "prometheus",
                                        "alertmanager", "grafana", "simulator"}
    assert compose["services"]["simulator"]["profiles"] == ["simulator"]
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller", "Kafka runs in KRaft mode, no ZooKeeper"
    assert "zookeeper" not in " ".join(compose["services"])


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image!r} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image!r} is not pinned to a version"


def test_host_ports_bind_to_loopback_and_do_not_clash(compose):
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip, host_port, _container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name}: {port} is published on every interface"
            published.append(int(host_port))
    assert len(published) == len(set(published))
    assert {3000, 9090, 9093, 6066, 6067} <= set(published)


def test_the_workers_serve_metrics_on_distinct_ports_that_prometheus_scrapes(compose):
    scrape = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    targets = {target for job in scrape["scrape_configs"] for config in job["static_configs"]
               for target in config["targets"]}
    for name in ("worker-1", "worker-2"):
        service = compose["services"][name]
        port = service["command"][service["command"].index("--web-port") + 1]
        assert f"{name}:{port}" in targets
        assert service["environment"]["BLIPWATCH_WEB_HOST"] == "0.0.0.0", "Prometheus scrapes from another container"
        assert service["environment"]["BLIPWATCH_BROKER"] == "kafka://kafka:9092"


def test_every_mounted_config_file_exists_in_the_repository(compose):
    named_volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in named_volumes:
                continue
            assert source.startswith("."), f"{name}: {volume} mounts a host path outside the repository"
            assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            context = COMPOSE_DIR / build["context"]
            assert (context / build["dockerfile"]).is_file(), f"{name}: no Dockerfile at {build}"
            assert (context / "pyproject.toml").is_file()


def test_every_blipwatch_command_is_a_real_subcommand(compose):
    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)
    for name, subcommand in EXPECTED_COMMANDS.items():
        command = compose["services"][name]["command"]
        assert command[:2] == ["blipwatch", subcommand], f"{name}: {command}"
        assert subcommand in registered, f"{name}: `blipwatch {subcommand}` is not a registered command"
        args = parser.parse_args(command[1:])  # exits (SystemExit) on an unknown option
        assert callable(args.func)


def test_the_config_files_pass_their_own_checkers():
    for checker, args in ((find_binary("promtool"), ["check", "config", "prometheus.yml"]),
                          (find_binary("amtool"), ["check-config", "alertmanager.yml"])):
        result = subprocess.run([checker, *args], cwd=COMPOSE_DIR, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboards(compose):
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in compose["services"]["grafana"]["volumes"]
                  if volume.startswith("."))
    provisioning = COMPOSE_DIR / "grafana/provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    [provider] = yaml.safe_load((provisioning / "dashboards/blipwatch.yml").read_text())["providers"]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert sorted(p.name for p in (COMPOSE_DIR / "grafana/dashboards").glob("*.json")) == \
        ["blips.json", "pipeline-health.json"]


def test_the_blipwatch_services_set_a_replication_the_kafka_nodes_can_hold(compose):
    from blipwatch.stream_app.config import Settings
    from blipwatch.stream_app.replication import decide

    kafka_nodes = sum(1 for service in compose["services"].values()
                      if str(service.get("image", "")).startswith("apache/kafka"))
    for name in EXPECTED_COMMANDS:
        env = {key: str(value) for key, value in compose["services"][name]["environment"].items()}
        assert "BLIPWATCH_REPLICATION_FACTOR" in env, f"{name}: set BLIPWATCH_REPLICATION_FACTOR"
        replication = decide(Settings.from_env(env), brokers=kafka_nodes)
        assert 1 <= replication.min_insync <= replication.factor <= kafka_nodes

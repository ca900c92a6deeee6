"""docker-compose.yml: everything about the stack that can be checked without a Docker engine."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from opentelemetry.exporter.conversation_analytics.cli import build_parser
from opentelemetry.exporter.conversation_analytics.collector.config import split_endpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _yaml(relative: str) -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / relative).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _expand(text: str) -> str:
    """Compose's ``${VAR:-default}`` with the defaults (what a plain ``up`` uses)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


class TestServices:
    def test_the_stack_is_complete(self, services: dict[str, Any]) -> None:
        """ClickHouse, both collectors, a trace backend, Prometheus, Grafana and a demo agent."""
        assert set(services) >= {
            "clickhouse",
            "conversation-analytics",
            "otelcol",
            "tempo",
            "prometheus",
            "grafana",
            "demo-agent",
        }

    def test_images_are_pinned(self, services: dict[str, Any]) -> None:
        """Every image names a version; none floats on latest."""
        for name, service in services.items():
            image = service.get("image")
            assert image or service.get("build"), name
            if image:
                tag = image.rpartition(":")[2]
                assert ":" in image and tag and tag != "latest", (name, image)

    def test_long_running_services_have_health_checks(self, services: dict[str, Any]) -> None:
        """Everything but the demo agent reports health (dependencies wait on it)."""
        for name, service in services.items():
            check = service.get("healthcheck", {})
            if name == "demo-agent":
                continue
            assert check.get("test"), name
        for name, service in services.items():
            for dependency, condition in (service.get("depends_on") or {}).items():
                assert dependency in services, (name, dependency)
                if condition["condition"] == "service_healthy":
                    assert services[dependency]["healthcheck"].get("test"), dependency

    def test_volumes_and_bind_mounts_exist(
        self, compose: dict[str, Any], services: dict[str, Any]
    ) -> None:
        """Named volumes are declared; every bind-mounted file is in the repository."""
        declared = set(compose.get("volumes") or {})
        for name, service in services.items():
            for mount in service.get("volumes", []):
                source = mount.split(":")[0]
                if source.startswith("."):
                    assert (ROOT / source).exists(), (name, source)
                else:
                    assert source in declared, (name, source)

    def test_ports_are_published_on_loopback_only(self, services: dict[str, Any]) -> None:
        """Security by default: nothing listens on the host's public interfaces."""
        for name, service in services.items():
            for port in service.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), (name, port)


class TestWiring:
    def test_service_commands_parse(self, services: dict[str, Any]) -> None:
        """The collector's and the demo agent's commands are valid for this CLI."""
        parser = build_parser()
        for name in ("conversation-analytics", "demo-agent"):
            parser.parse_args([_expand(str(part)) for part in services[name]["command"]])

    def test_otelcol_forwards_to_the_collector_and_tempo(self, services: dict[str, Any]) -> None:
        """The OpenTelemetry Collector's exporters reach ports the targets listen on."""
        otelcol = _yaml("otelcol/config.yaml")
        collector = services["conversation-analytics"]["command"]
        host, port = split_endpoint(otelcol["exporters"]["otlp/conversation-analytics"]["endpoint"])
        assert host == "conversation-analytics"
        assert port == split_endpoint(_flag(collector, "--grpc-endpoint"))[1]
        host, port = split_endpoint(otelcol["exporters"]["otlp/traces-backend"]["endpoint"])
        tempo = _yaml("tempo/tempo.yaml")
        receiver = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        assert (host, port) == ("tempo", split_endpoint(receiver)[1])
        agent = services["demo-agent"]["command"]
        target = urlsplit(_flag(agent, "--otlp-endpoint"))
        assert (target.hostname, target.port) == ("otelcol", 4317)
        mounted = {m.split(":")[1] for m in services["otelcol"]["volumes"]}
        config_flag = services["otelcol"]["command"][0].split("=", 1)[1]
        assert config_flag in mounted

    def test_token_is_shared(self, services: dict[str, Any]) -> None:
        """The OpenTelemetry Collector sends the bearer token the service expects."""
        otelcol = _yaml("otelcol/config.yaml")
        header = otelcol["exporters"]["otlp/conversation-analytics"]["headers"]["authorization"]
        variable = re.search(r"\$\{env:([A-Z_]+)\}", header)
        assert variable
        name = variable.group(1)
        assert name in services["otelcol"]["environment"]
        assert name in services["conversation-analytics"]["environment"]

    def test_prometheus_scrapes_the_collector(self, services: dict[str, Any]) -> None:
        """Prometheus' scrape target is the service's metrics endpoint; its rules are mounted."""
        config = _yaml("prometheus/prometheus.yml")
        targets = [
            target
            for job in config["scrape_configs"]
            for static in job.get("static_configs", [])
            for target in static["targets"]
        ]
        metrics = split_endpoint(
            _flag(services["conversation-analytics"]["command"], "--metrics-endpoint")
        )
        assert f"conversation-analytics:{metrics[1]}" in targets
        mount = next(m for m in services["prometheus"]["volumes"] if m.startswith("./prometheus"))
        container_dir = mount.split(":")[1]
        config_flag = next(
            c for c in services["prometheus"]["command"] if c.startswith("--config.file=")
        )
        assert Path(config_flag.split("=", 1)[1]).parent == Path(container_dir)
        for pattern in config.get("rule_files", []):
            # Relative rule paths resolve against the config file: the same in the mount.
            relative = Path(pattern)
            if relative.is_absolute():
                relative = relative.relative_to(container_dir)
            assert list((ROOT / "prometheus").glob(str(relative))), pattern

    def test_grafana_provisioning_points_at_the_stack(self, services: dict[str, Any]) -> None:
        """Datasources name compose services; dashboards are mounted where the provider looks."""
        grafana = services["grafana"]
        mounts = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"] if m.startswith(".")}
        provisioning = _yaml("grafana/provisioning/datasources/datasources.yml")
        by_type = {d["type"]: d for d in provisioning["datasources"]}
        clickhouse = by_type["grafana-clickhouse-datasource"]
        host = clickhouse["jsonData"].get("host") or clickhouse["jsonData"].get("server")
        assert host == "clickhouse"
        prometheus = urlsplit(by_type["prometheus"]["url"])
        assert (prometheus.hostname, prometheus.port) == ("prometheus", 9090)
        providers = _yaml("grafana/provisioning/dashboards/dashboards.yml")["providers"]
        paths = {p["options"]["path"] for p in providers}
        assert paths <= {mounts["./grafana/dashboards"]}
        assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
        plugin = grafana["environment"]["GF_INSTALL_PLUGINS"]
        assert plugin.startswith("grafana-clickhouse-datasource")


class TestImage:
    def test_dockerfile_builds_from_the_repository(self) -> None:
        """Every COPY source exists and the entry point is this project's console script."""
        text = (ROOT / "Dockerfile").read_text()
        for line in text.splitlines():
            if line.startswith("COPY "):
                for source in shlex.split(line)[1:-1]:
                    assert (ROOT / source).exists(), source
        scripts = (ROOT / "exporter" / "pyproject.toml").read_text()
        assert 'conversation-analytics = "' in scripts
        assert 'ENTRYPOINT ["conversation-analytics"]' in text
        exposed = {int(p) for p in re.findall(r"^EXPOSE (.*)$", text, re.M)[0].split()}
        assert exposed == {4317, 4318, 9464}


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose (Debian's package, installed by .ci/run) is not on PATH",
)
def test_compose_file_validates_with_docker_compose() -> None:
    """Docker Compose's own schema check (``config -q``, no engine needed) accepts the file."""
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr

"""The collector service as a real subprocess on loopback, and small clients to talk to it.

Used by ``test_collector_process.py``: start ``conversation-analytics collector`` with every port
set to 0, read the bound ports from its ``collector ready:`` line, wait for ``/readyz``, and stop
it (SIGTERM, then SIGKILL if it hangs) when the test is done.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

CLI_MODULE: Final = "opentelemetry.exporter.conversation_analytics.cli"
LOOPBACK: Final = "127.0.0.1"
READY_LINE: Final = re.compile(r"collector ready: (?P<ports>.*?) store=")
STARTUP_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 15.0
PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without ``CONVERSATION_ANALYTICS_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATION_ANALYTICS_")}
    env.update(extra or {})
    return env


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Metrics:
    """One scrape of ``/metrics``."""

    samples: list[tuple[str, dict[str, str], float]]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )


def parse_metrics(text: str) -> Metrics:
    samples = [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    return Metrics(samples)


@dataclass
class CollectorProcess:
    """A running ``conversation-analytics collector`` subprocess."""

    process: subprocess.Popen[bytes]
    store_url: str
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    token: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def grpc_endpoint(self) -> str:
        return f"{LOOPBACK}:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['http']}"

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['metrics']}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        port: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Response:
        connection = http.client.HTTPConnection(LOOPBACK, self.ports[port], timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            reply = connection.getresponse()
            return Response(reply.status, dict(reply.getheaders()), reply.read())
        finally:
            connection.close()

    def post(
        self,
        path: str,
        body: bytes,
        content_type: str = PROTOBUF,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Response:
        """POST an OTLP/HTTP body with ``token`` (default: the collector's own; '' sends none)."""
        sent = {"Content-Type": content_type}
        token = self.token if token is None else token
        if token:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        return self.request("POST", "http", path, body, sent)

    def get(self, path: str, token: str | None = None) -> Response:
        """GET from the admin server (``/metrics``, ``/healthz``, ``/readyz``, ``/api/v1/...``).

        ``token``: the bearer token to send (default: the collector's own; '' sends none).
        """
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.request("GET", "metrics", path, headers=headers)

    def metrics(self) -> Metrics:
        response = self.get("/metrics")
        assert response.status == 200, response
        return parse_metrics(response.body.decode())

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def kill(self) -> None:
        """SIGKILL, and reap the process (a zombie would still look alive to discovery)."""
        self.process.kill()
        self.process.wait()


def start_collector(
    store_url: str,
    log_path: Path,
    *args: str,
    token: str = "",
    env: Mapping[str, str] | None = None,
) -> CollectorProcess:
    """Start a collector on loopback with ports chosen by the OS; return once it is ready."""
    command = [
        sys.executable,
        "-m",
        CLI_MODULE,
        "collector",
        "--store",
        store_url,
        "--grpc-endpoint",
        f"{LOOPBACK}:0",
        "--http-endpoint",
        f"{LOOPBACK}:0",
        "--metrics-endpoint",
        f"{LOOPBACK}:0",
        *(("--auth-token", token) if token else ()),
        *args,
    ]
    with open(log_path, "ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=clean_env(env)
        )
    collector = CollectorProcess(process, store_url, log_path, token=token)
    try:
        collector.ports = _wait_for_ports(process, log_path, offset)
        _wait_until_ready(collector)
    except BaseException:
        collector.stop()
        raise
    return collector


def _wait_for_ports(
    process: subprocess.Popen[bytes], log_path: Path, offset: int
) -> dict[str, int]:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        match = READY_LINE.search(text)
        if match:
            pairs = (item.split("=") for item in match["ports"].split(", "))
            return {name.strip(): int(port) for name, port in pairs}
        if process.poll() is not None:
            raise RuntimeError(f"collector exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    raise TimeoutError(f"collector not ready after {STARTUP_TIMEOUT} s")


def _wait_until_ready(collector: CollectorProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            if collector.get("/readyz").status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"/readyz never answered 200:\n{collector.log()}")
        time.sleep(0.05)


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``conversation-analytics ARGS`` in a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, "-m", CLI_MODULE, *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=120,
        check=False,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"conversation-analytics {' '.join(args)} exited {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return completed


def cli_json(*args: str, env: Mapping[str, str] | None = None) -> Any:
    """``conversation-analytics ARGS --format json``, parsed."""
    return json.loads(run_cli(*args, "--format", "json", env=env).stdout)


def event_ids(detail: Mapping[str, Any]) -> list[str]:
    """Event ids of a ``conversation --format json`` answer, in its order."""
    return [event["event_id"] for event in detail["events"]]


class MetricDelta:
    """What a collector's series gained since this was made (for collectors shared by tests)."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.collector = collector
        self.before = collector.metrics()

    def value(self, name: str, **labels: str) -> float:
        return self.collector.metrics().value(name, **labels) - self.before.value(name, **labels)

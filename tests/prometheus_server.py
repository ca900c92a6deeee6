"""Prometheus and promtool from Debian's ``prometheus`` package, and the repository's rule files.

``start_prometheus`` runs a real Prometheus on loopback with a temporary storage directory; the
test stops it (SIGTERM, then SIGKILL if it hangs). ``PrometheusServer.query`` evaluates PromQL
through the HTTP API.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR: Final = ROOT / "prometheus"
CONFIG_FILE: Final = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES: Final = tuple(sorted((PROMETHEUS_DIR / "rules").glob("*.yml")))
RULE_TEST_FILES: Final = tuple(sorted((PROMETHEUS_DIR / "tests").glob("*.yml")))
INSTALL_HINT: Final = "needs Debian's prometheus package: apt-get install prometheus"
LOOPBACK: Final = "127.0.0.1"
STARTUP_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 15.0


def binary(name: str) -> str | None:
    """Path of ``name`` (``prometheus`` or ``promtool``) on PATH or in /usr/bin, else None."""
    return shutil.which(name) or shutil.which(name, path="/usr/bin")


@dataclass(frozen=True)
class Rule:
    """One rule of a rule file: a recording rule (``record``) or an alert (``alert``)."""

    name: str
    expr: str
    group: str
    file: Path
    is_alert: bool
    raw: dict[str, Any]


def load_rules(files: tuple[Path, ...] = RULE_FILES) -> list[Rule]:
    """Every rule of ``files``, in file and group order."""
    rules = []
    for path in files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                is_alert = "alert" in rule
                rules.append(
                    Rule(
                        name=rule["alert"] if is_alert else rule["record"],
                        expr=rule["expr"],
                        group=group["name"],
                        file=path,
                        is_alert=is_alert,
                        raw=rule,
                    )
                )
    return rules


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class QueryError(AssertionError):
    """Prometheus refused or failed a query."""


@dataclass
class PrometheusServer:
    """A running Prometheus on loopback."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, form: dict[str, str] | None = None) -> Any:
        """The ``data`` of an API answer (POST ``form`` when given); QueryError on an error."""
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=body)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
        if answer.get("status") != "success":
            raise QueryError(f"{answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate ``expr`` now; the result as a list of samples (a scalar becomes one)."""
        data = self.api("/api/v1/query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_prometheus(executable: str, config_file: Path, workdir: Path) -> PrometheusServer:
    """Start Prometheus with ``config_file`` and storage under ``workdir``; return once ready."""
    last_error = ""
    for attempt in range(3):  # a port picked as free can be taken before Prometheus binds it
        port = free_port()
        log_path = workdir / f"prometheus-{attempt}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address={LOOPBACK}:{port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        server = PrometheusServer(process, port, log_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if server.ready():
                return server
            time.sleep(0.05)
        server.stop()
        last_error = server.log()
        if "address already in use" not in last_error:
            break
    raise RuntimeError(f"prometheus did not become ready:\n{last_error}")


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``condition()`` until it is truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)

"""An agent under real gunicorn with two workers: it keeps serving, metrics sum, the store says why.

Each worker imports the app and builds its own exporter (as a user's agent does), configured by
the environment only; the master runs ``examples/gunicorn.conf.py``'s hooks.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector_process import clean_env, cli_json, parse_metrics
from opentelemetry.exporter.conversation_analytics.metrics import STARTED
from opentelemetry.exporter.conversation_analytics.writer import IN_USE_HINT
from opentelemetry.instrumentation.conversation import environment_variables as env
from prometheus_server import free_port, wait_until

pytest.importorskip("gunicorn")

TESTS = Path(__file__).resolve().parent
CONFIG = TESTS.parent / "examples" / "gunicorn.conf.py"
#: Words of the exporter's once-only messages, as they reach the server's log.
STORE_IN_USE = IN_USE_HINT.split(". ", 1)[1][:60]
PORT_TAKEN = "cannot serve /metrics on"
STARTUP_SECONDS = 90.0


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    store: str
    log: Path

    def get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
            return str(response.read().decode())

    def up(self) -> bool:
        try:
            self.get("/healthz")
        except OSError:
            return False
        return True

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def started_total(self) -> float:
        try:
            return parse_metrics(self.metrics()).value(STARTED + "_total")
        except OSError:
            return -1.0

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def _start(tmp_path: Path, *, multiprocess: bool) -> Gunicorn:
    store = f"chdb://{tmp_path / 'store'}"
    metrics_port = free_port()
    extra = {
        env.CONVERSATION_ANALYTICS_STORE: store,
        env.CONVERSATION_ANALYTICS_METRICS_PORT: str(metrics_port),
        env.CONVERSATION_ANALYTICS_USER_ID_KEY: "prefork-test-key",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "PYTHONPATH": str(TESTS),
    }
    if multiprocess:
        (tmp_path / "metrics").mkdir()
        extra[env.PROMETHEUS_MULTIPROC_DIR] = str(tmp_path / "metrics")
    port = free_port()
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
        "--config", str(CONFIG), "--graceful-timeout", "30",
        "--control-socket", str(tmp_path / "gunicorn.ctl"), "gunicorn_agent:app",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=clean_env(extra), cwd=tmp_path
        )
    server = Gunicorn(process, port, metrics_port, store, log)
    wait_until(lambda: server.up() or process.poll() is not None, STARTUP_SECONDS, "gunicorn")
    assert process.poll() is None, log.read_text()
    return server


def _chat_until_both_workers_answer(server: Gunicorn) -> Counter[str]:
    """Concurrent conversations until both workers have served some; served per worker pid."""
    served: Counter[str] = Counter()
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while len(served) < 2 or sent < 40:
            assert sent < 2000, f"one worker served everything: {served}"
            batch = [f"/chat?c-{sent + i}" for i in range(8)]
            served.update(pool.map(server.get, batch))  # raises unless every answer is 200
            sent += len(batch)
    return served


@pytest.fixture
def multiprocess_server(tmp_path: Path) -> Iterator[Gunicorn]:
    server = _start(tmp_path, multiprocess=True)
    try:
        yield server
    finally:
        server.stop()


class TestMultiprocessMetrics:
    def test_workers_keep_serving_and_one_metrics_endpoint_sums_them(
        self, multiprocess_server: Gunicorn
    ) -> None:
        """Both workers answer every request; the master's /metrics counts every conversation."""
        served = _chat_until_both_workers_answer(multiprocess_server)
        total = sum(served.values())
        wait_until(
            lambda: multiprocess_server.started_total() == total,
            60,
            f"{total} conversations on the summed /metrics",
        )
        assert multiprocess_server.stop() == 0

    def test_the_embedded_store_is_said_once_and_its_owner_writes(
        self, multiprocess_server: Gunicorn
    ) -> None:
        """One worker owns the embedded store; the other says why once and keeps serving."""
        served = _chat_until_both_workers_answer(multiprocess_server)
        total = sum(served.values())
        wait_until(lambda: multiprocess_server.started_total() == total, 60, "every export")
        assert multiprocess_server.stop() == 0
        log = multiprocess_server.log.read_text()
        assert log.count(STORE_IN_USE) == 1, log
        assert "Traceback" not in log
        report = cli_json("report", "--store", multiprocess_server.store)
        assert report["total_conversations"] in set(served.values())


class TestWithoutMultiprocessMode:
    def test_a_taken_metrics_port_is_said_once_and_the_agent_serves(self, tmp_path: Path) -> None:
        """Both workers ask for the port: one serves /metrics, the other says why, once."""
        server = _start(tmp_path, multiprocess=False)
        try:
            served = _chat_until_both_workers_answer(server)
            wait_until(lambda: server.started_total() > 0, 60, "one worker's /metrics")
            assert 0 < server.started_total() <= sum(served.values())
        finally:
            assert server.stop() == 0
        log = server.log.read_text()
        assert log.count(PORT_TAKEN) == 1, log
        assert "Traceback" not in log

"""The collector as an orchestrator drives it: probed from launch, sent data, stopped with SIGTERM
at varied moments, restarted on the same store. Every stop must drain and exit 0."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector_process import CLI_MODULE, LOOPBACK, clean_env
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import open_store
from opentelemetry.instrumentation.conversation import ConversationEvent, semconv

CYCLES: Final = 20
TIMEOUT: Final = 60.0
#: When SIGTERM arrives: while /readyz still says "starting", right after ready, after one
#: acknowledged conversation, and in the middle of a stream of probes and exports.
MOMENTS: Final = ("starting", "ready", "sent", "busy")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5):
            return True
    except OSError:
        return False


def _status(port: int, method: str, path: str, body: bytes | None = None) -> int | None:
    """The HTTP status, or None while nothing listens (or the connection drops mid-stop)."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        headers = {"Content-Type": "application/x-protobuf"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def _conversation(cid: str) -> tuple[bytes, list[str]]:
    """An OTLP traces body with one short conversation, and its event ids."""
    span = Span(trace_id=cid.encode().ljust(16, b"\0")[:16], span_id=b"\x02" * 8, name="turn")
    ids = []
    for index, kind in enumerate(
        (ConversationEvent.STARTED, ConversationEvent.USER_MESSAGE, ConversationEvent.COMPLETED)
    ):
        event_id = f"{cid}-{index}"
        ids.append(event_id)
        event = span.events.add(name=kind.event_name, time_unix_nano=time.time_ns())
        event.attributes.extend(
            [
                KeyValue(key=semconv.CONVERSATION_ID, value=AnyValue(string_value=cid)),
                KeyValue(key=semconv.EVENT_ID, value=AnyValue(string_value=event_id)),
            ]
        )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return request.SerializeToString(), ids


class Cycle:
    """One launch of the collector on the shared store, driven to a SIGTERM at ``moment``."""

    def __init__(self, store_url: str, log: Path, number: int, moment: str) -> None:
        self.number = number
        self.moment = moment
        self.ports = {name: _free_port() for name in ("grpc", "http", "metrics")}
        self.log = log
        self.acknowledged: list[str] = []
        command = [sys.executable, "-m", CLI_MODULE, "collector", "--store", store_url]
        for name, port in self.ports.items():
            command += [f"--{name}-endpoint", f"{LOOPBACK}:{port}"]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=clean_env()
            )

    def probe_until(self, wanted: int) -> None:
        """Poll /readyz from launch (as a readiness probe does) until it answers ``wanted``."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            status = _status(self.ports["metrics"], "GET", "/readyz")
            if status == wanted:
                if status == 200:  # ready means both receivers accept
                    assert _accepts(self.ports["grpc"]) and _accepts(self.ports["http"])
                return
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            time.sleep(0.02)
        pytest.fail(f"/readyz never answered {wanted}:\n{self.log.read_text(errors='replace')}")

    def send(self, cid: str) -> None:
        body, ids = _conversation(cid)
        if _status(self.ports["http"], "POST", "/v1/traces", body) == 200:
            self.acknowledged += ids

    def run(self) -> None:
        if self.moment == "starting":
            self.probe_until(503)  # the admin server answers, the receivers are not up yet
        else:
            self.probe_until(200)
        if self.moment in ("sent", "busy"):
            self.send(f"c{self.number}-first")
        busy = threading.Event()
        streamed = threading.Event()
        workers = []
        if self.moment == "busy":
            for kind in ("probe", "export"):
                worker = threading.Thread(
                    target=self._hammer, args=(kind, busy, streamed), daemon=True
                )
                worker.start()
                workers.append(worker)
            # Varied moments into the stream: after 0 to 4 exports of this cycle's stream.
            assert streamed.wait(TIMEOUT), self.log.read_text(errors="replace")
        self.process.send_signal(signal.SIGTERM)
        busy.set()
        for worker in workers:
            worker.join(TIMEOUT)

    def _hammer(self, kind: str, stop: threading.Event, streamed: threading.Event) -> None:
        sent = 0
        while not stop.is_set():
            if kind == "probe":
                _status(self.ports["metrics"], "GET", "/readyz")
                continue
            if sent >= self.number % 5:
                streamed.set()
            sent += 1
            self.send(f"c{self.number}-stream-{sent}")

    def wait(self) -> int:
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture
def cycles(tmp_path: Path) -> Iterator[tuple[list[Cycle], str]]:
    store_url = f"chdb://{tmp_path / 'store'}"
    done: list[Cycle] = []
    yield done, store_url
    for cycle in done:
        if cycle.process.poll() is None:
            cycle.process.kill()
            cycle.process.wait()


class TestSigtermCycles:
    def test_every_stop_drains_and_exits_0(
        self, cycles: tuple[list[Cycle], str], tmp_path: Path
    ) -> None:
        """Twenty launches on one store, each probed from launch and stopped with SIGTERM at a
        different moment: exit 0 every time, ready only once both receivers accept, and every
        acknowledged event is in the store afterwards."""
        done, store_url = cycles
        codes = []
        for number in range(CYCLES):
            log = tmp_path / f"collector-{number}.log"
            cycle = Cycle(store_url, log, number, MOMENTS[number % len(MOMENTS)])
            done.append(cycle)
            cycle.run()
            code = cycle.wait()
            text = log.read_text(errors="replace")
            codes.append(code)
            assert code == 0, f"cycle {number} ({cycle.moment}) exited {code}:\n{text[-3000:]}"
            assert "Segmentation fault" not in text and "Traceback" not in text, text[-3000:]
        assert codes == [0] * CYCLES
        acknowledged = [event for cycle in done for event in cycle.acknowledged]
        assert len(acknowledged) >= 3 * (CYCLES // 2)  # the "sent" and "busy" cycles sent data
        store = open_store(store_url)
        try:
            stored = {
                event["event_id"]
                for cid in {event.rsplit("-", 1)[0] for event in acknowledged}
                for event in StoreReader(store).conversation(cid).events
            }
        finally:
            store.close()
        missing = set(acknowledged) - stored
        assert not missing, f"{len(missing)} acknowledged events lost: {sorted(missing)[:5]}"

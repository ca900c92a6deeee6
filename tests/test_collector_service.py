"""The collector's core in-process: abandonment inference, durability, backpressure, OTLP logs."""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector_process import run_cli
from faults import FlakyStore
from opentelemetry.exporter.conversation_analytics.collector.config import (
    CollectorConfig,
    split_endpoint,
)
from opentelemetry.exporter.conversation_analytics.collector.inference import (
    AbandonmentSweeper,
    inferred_abandonments,
)
from opentelemetry.exporter.conversation_analytics.collector.otlp import (
    MalformedRequest,
    Signal,
    parse_request,
    rows_from_logs,
)
from opentelemetry.exporter.conversation_analytics.collector.run import (
    RunningCollector,
    start_collector,
)
from opentelemetry.exporter.conversation_analytics.collector.service import (
    CollectorService,
    Status,
)
from opentelemetry.exporter.conversation_analytics.pipeline import ConversationPipeline
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import MAX_DAYS, ConversationStore
from opentelemetry.instrumentation.conversation import semconv

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
IDLE = timedelta(minutes=30)


def _ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def sweeper_factory(store: ConversationStore, clock: Clock) -> Callable[[], AbandonmentSweeper]:
    """A fresh pipeline + sweeper over the shared store: a new process, or another replica."""

    def make() -> AbandonmentSweeper:
        return AbandonmentSweeper(ConversationPipeline(store), idle_timeout=IDLE, clock=clock)

    return make


def _event(cid: str, kind: str, at: datetime, **fields: object) -> EventRow:
    return EventRow(f"{cid}-{kind}-{_ns(at)}", kind, cid, _ns(at), agent_name="bot", **fields)  # type: ignore[arg-type]


def _talk(store: ConversationStore, cid: str, start: datetime, turns: int) -> datetime:
    rows = [_event(cid, "started", start)]
    for turn in range(1, turns + 1):
        rows.append(_event(cid, "user_message", start + timedelta(minutes=turn), turn=turn))
    store.insert(rows)
    return start + timedelta(minutes=turns)


class TestAbandonmentInference:
    def test_idle_conversation_is_inferred_abandoned(
        self,
        store: ConversationStore,
        clock: Clock,
        sweeper_factory: Callable[[], AbandonmentSweeper],
    ) -> None:
        """Silence past the idle timeout yields one inferred abandonment at the last user turn."""
        last = _talk(store, "quiet", T0, turns=3)
        clock.now = last + IDLE - timedelta(seconds=1)
        assert sweeper_factory().sweep() == 0
        clock.now = last + IDLE + timedelta(seconds=1)
        assert sweeper_factory().sweep() == 1
        (event,) = [
            e
            for e in StoreReader(store).conversation("quiet").events
            if e["event_type"] == "abandoned"
        ]
        assert event["abandon_inferred"] is True
        assert event["abandoned_at_turn"] == 3
        report = StoreReader(store).report(7, now=clock.now)
        assert report.abandonment_rate == 100.0
        assert [(d.turn, d.count) for d in report.drop_off] == [(3, 1)]

    @pytest.mark.parametrize("outcome", ["completed", "abandoned", "handoff_requested"])
    def test_finished_or_handed_off_conversations_are_left_alone(
        self,
        store: ConversationStore,
        clock: Clock,
        sweeper_factory: Callable[[], AbandonmentSweeper],
        outcome: str,
    ) -> None:
        """Completed, explicitly abandoned, or handed to a human: silence infers nothing."""
        last = _talk(store, "done", T0, turns=2)
        store.insert([_event("done", outcome, last + timedelta(seconds=5))])
        clock.now = last + 3 * IDLE
        assert sweeper_factory().sweep() == 0

    def test_reruns_restarts_and_replicas_count_once(
        self,
        store: ConversationStore,
        clock: Clock,
        sweeper_factory: Callable[[], AbandonmentSweeper],
    ) -> None:
        """Two replicas and a restarted process infer the same event: it is stored once."""
        last = _talk(store, "quiet", T0, turns=2)
        clock.now = last + 2 * IDLE
        candidates_a = inferred_abandonments(store, now=clock.now, idle_timeout=IDLE)
        candidates_b = inferred_abandonments(store, now=clock.now, idle_timeout=IDLE)
        assert [r.event_id for r in candidates_a] == [r.event_id for r in candidates_b]
        replica_a, replica_b = sweeper_factory(), sweeper_factory()
        replica_a.pipeline.submit(candidates_a, "inference")
        replica_b.pipeline.submit(candidates_b, "inference")  # the race both replicas can have
        assert sweeper_factory().sweep() == 0  # after a restart: nothing new to infer
        events = StoreReader(store).conversation("quiet").events
        assert sum(e["event_type"] == "abandoned" for e in events) == 1
        report = StoreReader(store).report(7, now=clock.now)
        assert report.total_conversations == 1
        assert [(d.turn, d.count) for d in report.drop_off] == [(2, 1)]

    def test_concurrent_sweeps_store_each_inference_once(
        self,
        store: ConversationStore,
        clock: Clock,
        sweeper_factory: Callable[[], AbandonmentSweeper],
    ) -> None:
        """Four sweepers (cron runs, a collector) sweeping the same store at the same moment:
        every idle conversation is abandoned once, and the report counts each once."""
        for index in range(20):
            _talk(store, f"idle-{index}", T0 + timedelta(seconds=index), turns=1 + index % 3)
        clock.now = T0 + 3 * IDLE
        sweepers = [sweeper_factory() for _ in range(4)]
        barrier = threading.Barrier(len(sweepers))
        inferred: list[int] = []

        def sweep(sweeper: AbandonmentSweeper) -> None:
            barrier.wait()
            inferred.append(sweeper.sweep())

        threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(inferred) == 4 and sum(inferred) >= 20  # each saw them; duplicates collapse
        for index in range(20):
            events = StoreReader(store).conversation(f"idle-{index}").events
            assert sum(e["event_type"] == "abandoned" for e in events) == 1
        report = StoreReader(store).report(7, now=clock.now)
        assert (report.total_conversations, report.abandonment_rate) == (20, 100.0)
        assert sum(d.count for d in report.drop_off) == 20
        assert sweeper_factory().sweep() == 0

    def test_returning_user_revokes_the_inference(
        self,
        store: ConversationStore,
        clock: Clock,
        sweeper_factory: Callable[[], AbandonmentSweeper],
    ) -> None:
        """Activity after an inferred abandonment revokes it; silence again infers anew."""
        last = _talk(store, "back", T0, turns=1)
        clock.now = last + 2 * IDLE
        sweeper_factory().sweep()
        assert StoreReader(store).report(7, now=clock.now).abandonment_rate == 100.0
        returned = clock.now + timedelta(minutes=5)
        store.insert([_event("back", "user_message", returned, turn=2)])
        report = StoreReader(store).report(7, now=returned)
        assert report.abandonment_rate == 0.0
        assert report.drop_off == []
        store.insert([_event("back", "completed", returned + timedelta(minutes=1))])
        clock.now = returned + 3 * IDLE
        assert sweeper_factory().sweep() == 0
        report = StoreReader(store).report(7, now=clock.now)
        assert (report.completion_rate, report.abandonment_rate) == (100.0, 0.0)

    def test_silent_again_is_inferred_again(
        self,
        store: ConversationStore,
        clock: Clock,
        sweeper_factory: Callable[[], AbandonmentSweeper],
    ) -> None:
        """A user who returns and goes quiet again is abandoned at the new last turn."""
        last = _talk(store, "twice", T0, turns=1)
        clock.now = last + 2 * IDLE
        sweeper_factory().sweep()
        returned = clock.now + timedelta(minutes=5)
        store.insert([_event("twice", "user_message", returned, turn=2)])
        clock.now = returned + 2 * IDLE
        assert sweeper_factory().sweep() == 1
        report = StoreReader(store).report(7, now=clock.now)
        assert report.abandonment_rate == 100.0
        assert [(d.turn, d.count) for d in report.drop_off] == [(2, 1)]

    def test_sweeper_thread_runs_on_its_own(self, store: ConversationStore, clock: Clock) -> None:
        """Started, the sweeper infers without being called."""
        last = _talk(store, "auto", T0, turns=1)
        clock.now = last + 2 * IDLE
        sweeper = AbandonmentSweeper(
            ConversationPipeline(store), idle_timeout=IDLE, interval=0.05, clock=clock
        )
        sweeper.start()
        try:
            for _ in range(200):
                if any(
                    e["event_type"] == "abandoned"
                    for e in StoreReader(store).conversation("auto").events
                ):
                    break
                sweeper._stop.wait(0.05)
        finally:
            sweeper.stop()
        assert StoreReader(store).report(7, now=clock.now).abandonment_rate == 100.0


# ---- durability and backpressure -----------------------------------------------------------


def _trace_request(cid: str, events: int) -> bytes:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="turn")
    for index in range(events):
        event = span.events.add()
        event.name = "conversation.user_message"
        event.time_unix_nano = _ns(T0) + index
        event.attributes.extend(
            [
                KeyValue(key=semconv.CONVERSATION_ID, value=AnyValue(string_value=cid)),
                KeyValue(key=semconv.EVENT_ID, value=AnyValue(string_value=f"{cid}-{index}")),
                KeyValue(key=semconv.TURN, value=AnyValue(int_value=index + 1)),
            ]
        )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return request.SerializeToString()


@pytest.fixture
def flaky(store: ConversationStore) -> FlakyStore:
    return FlakyStore(store)


@pytest.fixture
def running(flaky: FlakyStore, store_url: str, tmp_path: Path) -> Iterator[RunningCollector]:
    """An in-process collector (HTTP receiver + admin) over a store that is down."""
    config = CollectorConfig(
        store=store_url,
        grpc_endpoint="",
        http_endpoint="127.0.0.1:0",
        metrics_endpoint="127.0.0.1:0",
        spool_dir=str(tmp_path / "spool"),
        spool_max_bytes=6_000,
    )
    collector = start_collector(config, store=flaky)
    collector.service.pipeline.writer.sleep = lambda _seconds: None
    yield collector
    collector.stop()


def _post(port: int, body: bytes, **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST",
        "/v1/traces",
        body=body,
        headers={"Content-Type": "application/x-protobuf", **headers},
    )
    response = connection.getresponse()
    response.read()
    return response


class TestDurability:
    def test_outage_spools_then_refuses_then_drains(
        self, running: RunningCollector, flaky: FlakyStore, store: ConversationStore
    ) -> None:
        """Store down: exports are acknowledged while the spool has room, then refused with
        503 + Retry-After; when the store returns the backlog drains and nothing is lost."""
        port = running.ports["http"]
        acknowledged = []
        refused = []
        for batch in range(12):
            response = _post(port, _trace_request(f"c{batch}", 10))
            (acknowledged if response.status == 200 else refused).append(batch)
            if response.status != 200:
                assert response.status == 503
                assert response.getheader("Retry-After")
        assert acknowledged and refused
        assert store.count_events() == 0
        assert running.service.spool.events == 10 * len(acknowledged)
        ready, detail = running.service.ready()
        assert not ready and "spool" in detail
        flaky.down = False
        for batch in refused:  # what the clients retry, backing off while refused
            for _attempt in range(100):
                if _post(port, _trace_request(f"c{batch}", 10)).status == 200:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the collector kept refusing after the store came back")
        running.service.pipeline.flush()
        assert store.count_events() == 120
        assert running.service.spool.events == 0

    def test_spool_survives_a_restart(
        self, store: ConversationStore, store_url: str, tmp_path: Path
    ) -> None:
        """Events spooled by one process are replayed into the store by the next one."""
        spool_dir = str(tmp_path / "spool")
        config = CollectorConfig(store=store_url, spool_dir=spool_dir)
        first = CollectorService(config, store=FlakyStore(store))
        first.pipeline.writer.sleep = lambda _seconds: None
        result = first.export(Signal.TRACES, _trace_request("c", 5), is_json=False, source="t")
        assert result.status is Status.OK
        assert store.count_events() == 0  # acknowledged, durable only in the spool
        second = CollectorService(config, store=store)
        second.start()
        second.close()
        assert store.count_events() == 5

    def test_decompression_bomb_is_refused(self, running: RunningCollector) -> None:
        """A small gzip body that inflates past the cap gets 413 and the service carries on."""
        port = running.ports["http"]
        bomb = gzip.compress(b"\0" * (running.service.config.max_request_bytes + 1024))
        assert len(bomb) < 100_000
        assert _post(port, bomb, **{"Content-Encoding": "gzip"}).status == 413
        assert _post(port, b"\xff\xfe garbage").status == 400


class TestLogs:
    @pytest.mark.parametrize("field", ["event_name", "attribute"])
    def test_log_records_count_like_span_events(self, field: str) -> None:
        """A log record named conversation.* becomes the same row as the span event."""
        record = LogRecord(time_unix_nano=_ns(T0), trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8)
        attributes = [
            KeyValue(key=semconv.CONVERSATION_ID, value=AnyValue(string_value="log-conv")),
            KeyValue(key=semconv.CHANNEL, value=AnyValue(string_value="voice")),
        ]
        if field == "event_name":
            record.event_name = "conversation.started"
        else:
            attributes.append(
                KeyValue(key="event.name", value=AnyValue(string_value="conversation.started"))
            )
        record.attributes.extend(attributes)
        noise = LogRecord(event_name="http.request", time_unix_nano=1)
        request = ExportLogsServiceRequest(
            resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record, noise])])]
        )
        parsed = ExportLogsServiceRequest()
        parse_request(request.SerializeToString(), parsed, is_json=False)
        extracted = rows_from_logs(parsed)
        (row,) = extracted.rows
        assert (row.conversation_id, row.event_type, row.channel) == (
            "log-conv",
            "started",
            "voice",
        )
        assert row.timestamp_ns == _ns(T0)
        assert row.trace_id == "0a" * 16

    @pytest.mark.parametrize(
        ("body", "is_json"),
        [
            (b"\x0a\xff\xff", False),
            (b"{not json", True),
            (b"[1, 2]", True),
            (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', True),
        ],
    )
    def test_malformed_bodies_are_clear_errors(self, body: bytes, is_json: bool) -> None:
        """Bad protobuf or JSON is a MalformedRequest, not a crash."""
        with pytest.raises(MalformedRequest):
            parse_request(body, ExportTraceServiceRequest(), is_json=is_json)


class TestConfig:
    def test_flags_then_env_then_defaults(self) -> None:
        """An explicit value wins over the environment, which wins over the default."""
        env = {
            "CONVERSATION_ANALYTICS_IDLE_TIMEOUT": "60",
            "CONVERSATION_ANALYTICS_AUTH_TOKEN": "from-env",
            "CONVERSATION_ANALYTICS_STORE": "chdb:///srv/x",
        }
        config = CollectorConfig.load({"auth_token": "from-flag"}, env)
        assert (config.idle_timeout, config.auth_token, config.store) == (
            60.0,
            "from-flag",
            "chdb:///srv/x",
        )
        assert config.grpc_endpoint == "127.0.0.1:4317"

    @pytest.mark.parametrize(
        "env",
        [
            {"CONVERSATION_ANALYTICS_IDLE_TIMEOUT": "soon"},
            {"CONVERSATION_ANALYTICS_IDLE_TIMEOUT": "-5"},
            {"CONVERSATION_ANALYTICS_TLS_CERT_FILE": "/x.pem"},
        ],
    )
    def test_bad_settings_are_clear_errors(self, env: dict[str, str]) -> None:
        """Wrong types or half a TLS setup are ValueErrors naming the setting."""
        with pytest.raises(ValueError):
            CollectorConfig.load({}, env)

    @pytest.mark.parametrize(
        ("endpoint", "expected"),
        [
            ("127.0.0.1:4317", ("127.0.0.1", 4317)),
            ("[::1]:0", ("::1", 0)),
            (":9", ("127.0.0.1", 9)),
        ],
    )
    def test_endpoints(self, endpoint: str, expected: tuple[str, int]) -> None:
        """HOST:PORT parses; an empty host means loopback, never all interfaces."""
        assert split_endpoint(endpoint) == expected


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, from Debian's package)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class TestTls:
    def test_both_receivers_serve_tls(
        self,
        store: ConversationStore,
        store_url: str,
        tmp_path: Path,
        certificate: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With a certificate, the official exporters reach both receivers over TLS only."""
        import grpc

        # requests lets these override the exporter's own CA file (psf/requests#3829).
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from opentelemetry.instrumentation.conversation import ConversationTracker

        cert, key = certificate
        config = CollectorConfig(
            store=store_url,
            grpc_endpoint="127.0.0.1:0",
            http_endpoint="127.0.0.1:0",
            metrics_endpoint="127.0.0.1:0",
            spool_dir=str(tmp_path / "spool"),
            tls_cert_file=str(cert),
            tls_key_file=str(key),
        )
        running = start_collector(config, store=store)
        try:
            memory = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            tracker = ConversationTracker(provider, user_id_key=b"k")
            tracker.record("over-grpc", "u", "started")
            tracker.record("over-http", "u", "started")
            grpc_spans, http_spans = memory.get_finished_spans()
            grpc_exporter = GrpcExporter(
                endpoint=f"127.0.0.1:{running.ports['grpc']}",
                credentials=grpc.ssl_channel_credentials(cert.read_bytes()),
            )
            http_exporter = HttpExporter(
                endpoint=f"https://127.0.0.1:{running.ports['http']}/v1/traces",
                certificate_file=str(cert),
            )
            assert grpc_exporter.export([grpc_spans]) is SpanExportResult.SUCCESS
            assert http_exporter.export([http_spans]) is SpanExportResult.SUCCESS
            grpc_exporter.shutdown()
            http_exporter.shutdown()
            with pytest.raises(ConnectionError):
                _post(running.ports["http"], _trace_request("plain", 1))  # no TLS: refused
        finally:
            running.stop()
        assert len(StoreReader(store).conversation("over-grpc").events) == 1
        assert len(StoreReader(store).conversation("over-http").events) == 1
        assert StoreReader(store).conversation("plain").events == []


@contextmanager
def _admin_only(store: ConversationStore, config: CollectorConfig) -> Iterator[RunningCollector]:
    """A collector serving only its admin port (the API), over the test's store."""
    collector = start_collector(config, store=store)
    try:
        yield collector
    finally:
        collector.stop()


def _admin_config(store_url: str, tmp_path: Path, **overrides: object) -> CollectorConfig:
    return CollectorConfig(
        store=store_url,
        grpc_endpoint="",
        http_endpoint="",
        metrics_endpoint="127.0.0.1:0",
        spool_dir=str(tmp_path / "spool"),
        **overrides,  # type: ignore[arg-type]
    )


class TestFeedbackApi:
    """``POST /api/v1/feedback``: late ratings through the collector, durable like OTLP input."""

    @pytest.fixture
    def api(self, store: ConversationStore, store_url: str, tmp_path: Path) -> Iterator[int]:
        _talk(store, "rated", T0, turns=1)
        with _admin_only(
            store, _admin_config(store_url, tmp_path, auth_token="s3cret")
        ) as collector:
            yield collector.ports["metrics"]

    def _post(self, port: int, body: bytes, token: str | None = "s3cret") -> tuple[int, dict]:  # type: ignore[type-arg]
        import json

        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/api/v1/feedback", body=body, headers=headers)
        response = connection.getresponse()
        document = json.loads(response.read() or b"{}")
        connection.close()
        return response.status, document

    def test_accepted_once_per_id(self, api: int, store: ConversationStore) -> None:
        """A valid rating answers 202 and is stored under the conversation's agent; the same
        id twice is one event; the rater's id is pseudonymised."""
        body = (
            b'{"conversation_id": "rated", "rating": "negative", "score": 0.2, "id": "fb-7", '
            b'"user_id": "rater@example.com"}'
        )
        for _ in range(2):
            status, document = self._post(api, body)
            assert status == 202, document
        ratings = [
            e
            for e in StoreReader(store).conversation("rated").events
            if e["event_type"] == "feedback_received"
        ]
        assert len(ratings) == 1
        assert (ratings[0]["feedback_rating"], ratings[0]["agent_name"]) == ("negative", "bot")
        assert ratings[0]["user_id"] and "example.com" not in ratings[0]["user_id"]

    @pytest.mark.parametrize(
        ("body", "token", "status"),
        [
            (b'{"conversation_id": "rated", "rating": "positive"}', None, 401),
            (b'{"conversation_id": "rated", "rating": "positive"}', "wrong", 401),
            (b"not json", "s3cret", 400),
            (b'{"conversation_id": "rated", "rating": "meh"}', "s3cret", 400),
            (b'{"conversation_id": "rated", "rating": "positive", "score": 3}', "s3cret", 400),
            (b'{"conversation_id": "rated", "rating": "positive", "x": 1}', "s3cret", 400),
            (b'{"conversation_id": "nobody", "rating": "positive"}', "s3cret", 404),
            (b'{"conversation_id": "rated", "id": "' + b"x" * 70_000 + b'"}', "s3cret", 413),
        ],
    )  # fmt: skip
    def test_bad_requests(
        self, api: int, store: ConversationStore, body: bytes, token: str | None, status: int
    ) -> None:
        """Auth is checked first (401); a bad body is a clear 400, an unknown conversation a
        404, an oversized body a 413; nothing is stored."""
        got, document = self._post(api, body, token)
        assert got == status, document
        assert "error" in document
        events = StoreReader(store).conversation("rated").events
        assert not [e for e in events if e["event_type"] == "feedback_received"]


class TestFeedbackCors:
    """CORS on ``POST /api/v1/feedback`` for a browser front end: only when configured."""

    ALLOWED = "https://app.example.com"

    @pytest.fixture(params=[ALLOWED, ""], ids=["configured", "off"])
    def api(
        self,
        request: pytest.FixtureRequest,
        store: ConversationStore,
        store_url: str,
        tmp_path: Path,
    ) -> Iterator[tuple[int, str]]:
        config = _admin_config(store_url, tmp_path, auth_token="s3cret", cors_origins=request.param)
        _talk(store, "rated", T0, turns=1)
        with _admin_only(store, config) as collector:
            yield collector.ports["metrics"], request.param

    def _request(
        self, port: int, method: str, origin: str, body: bytes = b"", path: str = "/api/v1/feedback"
    ) -> http.client.HTTPResponse:
        headers = {"Origin": origin, "Content-Type": "application/json"}
        if method == "POST":
            headers["Authorization"] = "Bearer s3cret"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    def test_preflight_and_post_allow_only_configured_origins(
        self, api: tuple[int, str], store: ConversationStore
    ) -> None:
        """A configured origin gets a preflight 204 and Access-Control-Allow-Origin on the POST;
        another origin, or no configuration, gets neither, and the rating is still checked."""
        port, configured = api
        preflight = self._request(port, "OPTIONS", self.ALLOWED)
        body = b'{"conversation_id": "rated", "rating": "positive"}'
        posted = self._request(port, "POST", self.ALLOWED, body)
        assert posted.status == 202
        if configured:
            assert preflight.status == 204
            assert preflight.getheader("Access-Control-Allow-Origin") == self.ALLOWED
            assert "Authorization" in (preflight.getheader("Access-Control-Allow-Headers") or "")
            assert posted.getheader("Access-Control-Allow-Origin") == self.ALLOWED
        else:
            assert preflight.status == 403
            assert preflight.getheader("Access-Control-Allow-Origin") is None
            assert posted.getheader("Access-Control-Allow-Origin") is None
        other = self._request(port, "OPTIONS", "https://evil.example.net")
        assert other.status == 403 and other.getheader("Access-Control-Allow-Origin") is None
        report = self._request(port, "OPTIONS", self.ALLOWED, path="/api/v1/report")
        assert report.status == 404  # only the feedback endpoint is for browsers


class TestReadApiErrors:
    """``GET /api/v1/report`` and ``/api/v1/conversation`` on bad input: a 400 or 404 saying what
    is wrong, in the words the CLI uses, never a 503 "store unavailable" or a made-up answer."""

    @pytest.fixture
    def api(self, store: ConversationStore, store_url: str, tmp_path: Path) -> Iterator[str]:
        _talk(store, "known", T0, turns=1)
        with _admin_only(store, _admin_config(store_url, tmp_path)) as collector:
            yield f"http://127.0.0.1:{collector.ports['metrics']}"

    def _get(self, base_url: str, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        try:
            with urllib.request.urlopen(base_url + path, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    @pytest.mark.parametrize(
        ("days", "error"),
        [
            ("100000000", f"days must be between 1 and {MAX_DAYS}, got 100000000"),
            ("0", f"days must be between 1 and {MAX_DAYS}, got 0"),
            ("abc", "days must be a whole number of days, got 'abc'"),
        ],
        ids=["huge", "zero", "word"],
    )
    def test_bad_days_is_a_400_in_the_clis_words(self, api: str, days: str, error: str) -> None:
        """A window that is not a whole number of days in 1..MAX_DAYS is a 400 whose message is
        the CLI's for ``--days`` (one validation for both)."""
        status, document = self._get(api, f"/api/v1/report?days={days}")
        assert (status, document) == (400, {"error": error})
        cli = run_cli("report", "--days", days, "--collector", api, check=False)
        assert cli.returncode == 2
        assert cli.stderr.splitlines()[-1] == f"conversation-analytics report: error: --{error}"

    @pytest.mark.parametrize("days", ["1", str(MAX_DAYS)])
    def test_window_bounds_answer(self, api: str, days: str) -> None:
        """Both bounds of the window are valid: 200 with the report for that window."""
        status, document = self._get(api, f"/api/v1/report?days={days}")
        assert status == 200, document
        assert document["days"] == int(days)

    def test_unknown_conversation_is_a_404_like_the_cli(self, api: str) -> None:
        """An id with no events is a 404 with the CLI's message, not a 200 with satisfaction 0.1;
        the CLI reading through the collector exits 1 with that message."""
        status, document = self._get(api, "/api/v1/conversation?id=nobody")
        assert (status, document) == (404, {"error": "unknown conversation 'nobody'"})
        known, detail = self._get(api, "/api/v1/conversation?id=known")
        assert known == 200 and len(detail["events"]) == 2
        cli = run_cli("conversation", "nobody", "--collector", api, check=False)
        assert cli.returncode == 1
        assert cli.stderr == f"conversation-analytics conversation: error: {document['error']}\n"
        assert cli.stdout == ""

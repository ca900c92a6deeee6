"""The collector service as a real process: OTLP over gRPC and HTTP from the official exporters,
logs, auth, hostile input, kill -9 and SIGTERM, all on loopback with ports chosen by the OS."""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlencode

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collector_process import (
    JSON,
    PROTOBUF,
    CollectorProcess,
    MetricDelta,
    cli_json,
    event_ids,
    run_cli,
    start_collector,
)
from opentelemetry.exporter.conversation_analytics.collector.decode_pool import DECODE_FALLBACKS
from opentelemetry.instrumentation.conversation import ConversationTracker, semconv

TRACES: Final = "/v1/traces"
LOGS: Final = "/v1/logs"
GRPC_METHODS: Final = {
    TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
RESPONSES: Final[dict[str, type[Message]]] = {
    TRACES: ExportTraceServiceResponse,
    LOGS: ExportLogsServiceResponse,
}
INVALID_ARGUMENT: Final = grpc.StatusCode.INVALID_ARGUMENT.value[0]
UNAUTHENTICATED: Final = grpc.StatusCode.UNAUTHENTICATED.value[0]
MAX_FIXED64: Final = 2**64 - 1
ID_KEYS: Final = frozenset({"traceId", "spanId", "parentSpanId"})
SPOOL_SEGMENTS: Final = "segment-*.jsonl"
USER_ID_KEY: Final = b"collector-test-key"
TOKEN: Final = "s3cret-token"

# Metric series (as scraped: counters carry ``_total``).
WRITTEN: Final = "conversation_analytics_events_written_total"
RECEIVED: Final = "conversation_analytics_events_received_total"
DROPPED: Final = "conversation_analytics_events_dropped_total"
REQUESTS_REJECTED: Final = "conversation_analytics_requests_rejected_total"
STARTED: Final = "agent_conversations_started_total"
COMPLETED: Final = "agent_conversations_completed_total"
ABANDONED: Final = "agent_conversations_abandoned_total"
HANDOFFS: Final = "agent_conversation_handoffs_total"
USER_MESSAGES: Final = "agent_conversation_user_messages_total"

#: How a test sends OTLP: official span exporters, or hand-built requests.
EXPORTER_TRANSPORTS: Final = ("grpc", "grpc-gzip", "http", "http-gzip")
RAW_TRANSPORTS: Final = ("http-protobuf", "http-json", "grpc")


# ---- fixtures ---------------------------------------------------------------------------------


class Launch(Protocol):
    def __call__(self, *args: str) -> CollectorProcess: ...


@pytest.fixture
def launch(tmp_path: Path, store_url: str) -> Iterator[Launch]:
    """Start collectors on the test's store; every one is stopped at teardown."""
    started: list[CollectorProcess] = []

    def start(*args: str) -> CollectorProcess:
        process = start_collector(store_url, tmp_path / "collector.log", *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def collector(launch: Launch) -> CollectorProcess:
    return launch()


def _module_collector(
    factory: pytest.TempPathFactory, name: str, *args: str, token: str = ""
) -> Iterator[CollectorProcess]:
    directory = factory.mktemp(name)
    process = start_collector(
        f"chdb://{directory / 'store'}", directory / "collector.log", *args, token=token
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector for the input-handling tests (they count by difference, use fresh ids)."""
    yield from _module_collector(tmp_path_factory, "shared")


@pytest.fixture
def counted(shared: CollectorProcess) -> MetricDelta:
    """The shared collector's series, counted from the start of the test."""
    return MetricDelta(shared)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """A collector that requires a bearer token."""
    yield from _module_collector(tmp_path_factory, "guarded", token=TOKEN)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """A collector with a 4 KiB request cap."""
    yield from _module_collector(tmp_path_factory, "capped", "--max-request-bytes", "4096")


@pytest.fixture(scope="module")
def fuzz_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector shared by the fuzz tests (hypothesis runs many examples against it)."""
    yield from _module_collector(tmp_path_factory, "fuzz")


def fresh(name: str) -> str:
    """A conversation id no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


# ---- sending ----------------------------------------------------------------------------------


def span_exporter(
    transport: str,
    collector: CollectorProcess,
    *,
    timeout: float = 10.0,
    token: str | None = None,
) -> SpanExporter:
    """An official OTLP span exporter aimed at the collector (``token``: its bearer token)."""
    token = collector.token if token is None else token
    if transport.startswith("grpc"):
        return GrpcSpanExporter(
            endpoint=collector.grpc_endpoint,
            insecure=True,
            timeout=timeout,
            headers={"authorization": f"Bearer {token}"} if token else None,
            compression=grpc.Compression.Gzip if transport.endswith("gzip") else None,
        )
    return HttpSpanExporter(
        endpoint=f"{collector.http_url}{TRACES}",
        timeout=timeout,
        headers={"Authorization": f"Bearer {token}"} if token else None,
        compression=Compression.Gzip if transport.endswith("gzip") else Compression.NoCompression,
    )


def any_value(value: object) -> AnyValue:
    """A Python value as an OTLP ``AnyValue`` (lists are arrays, dicts are key-value lists)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(item) for item in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    if value is None:
        return AnyValue()
    return AnyValue(string_value=str(value))


def key_values(attributes: Mapping[str, object]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


Event = tuple[str, Mapping[str, object]]


def trace_request(
    events: Sequence[Event],
    *,
    time_ns: int | None = None,
    trace_id: bytes | None = None,
    service: str = "proto-agent",
) -> ExportTraceServiceRequest:
    """One span holding ``events`` (name, attributes)."""
    now = time_ns if time_ns is not None else time.time_ns()
    span = Span(
        trace_id=os.urandom(16) if trace_id is None else trace_id,
        span_id=os.urandom(8),
        name="agent.turn",
        start_time_unix_nano=now,
        end_time_unix_nano=min(now + 1000, MAX_FIXED64),
    )
    for offset, (name, attributes) in enumerate(events):
        span.events.add(
            time_unix_nano=min(now + offset * 1000, MAX_FIXED64),
            name=name,
            attributes=key_values(attributes),
        )
    resource = Resource(attributes=key_values({semconv.SERVICE_NAME: service}))
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    )


def logs_request(
    events: Sequence[Event],
    *,
    time_ns: int | None = None,
    name_in_attribute: bool = False,
    service: str = "proto-agent",
) -> ExportLogsServiceRequest:
    """One log record per event: the name in ``event_name``, or in an ``event.name`` attribute."""
    now = time_ns if time_ns is not None else time.time_ns()
    records = []
    for offset, (name, attributes) in enumerate(events):
        record = LogRecord(
            time_unix_nano=min(now + offset * 1000, MAX_FIXED64), trace_id=os.urandom(16)
        )
        if name_in_attribute:
            record.attributes.extend(key_values({"event.name": name, **attributes}))
        else:
            record.event_name = name
            record.attributes.extend(key_values(attributes))
        records.append(record)
    resource = Resource(attributes=key_values({semconv.SERVICE_NAME: service}))
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    )


def _hex_ids(node: Any) -> Any:
    """Protobuf's JSON mapping writes ids as base64; OTLP/JSON wants hex."""
    if isinstance(node, dict):
        return {
            key: base64.b64decode(value).hex() if key in ID_KEYS else _hex_ids(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(item) for item in node]
    return node


def otlp_json(message: Message) -> bytes:
    """An OTLP/JSON body (hex trace and span ids) for ``message``."""
    return json.dumps(_hex_ids(json_format.MessageToDict(message))).encode()


@dataclass
class Exported:
    """What the collector answered: HTTP status or gRPC code, and the partial success."""

    status: int | grpc.StatusCode
    rejected: int = 0
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (200, grpc.StatusCode.OK)


def _partial(response: Message) -> tuple[int, str]:
    partial = response.partial_success
    rejected = getattr(partial, "rejected_spans", 0) or getattr(partial, "rejected_log_records", 0)
    return int(rejected), str(partial.error_message)


def grpc_call(
    collector: CollectorProcess,
    path: str,
    body: bytes,
    *,
    token: str | None = None,
    compression: grpc.Compression | None = None,
) -> Exported:
    """One raw OTLP/gRPC Export call with ``body`` as the request bytes."""
    token = collector.token if token is None else token
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        method = channel.unary_unary(
            GRPC_METHODS[path], response_deserializer=RESPONSES[path].FromString
        )
        try:
            response = method(body, timeout=30, metadata=metadata, compression=compression)
        except grpc.RpcError as error:
            return Exported(error.code(), error_message=str(error.details()))
    return Exported(grpc.StatusCode.OK, *_partial(response))


def export_raw(
    collector: CollectorProcess, transport: str, message: Message, path: str = TRACES
) -> Exported:
    """Send a hand-built OTLP request over ``transport`` (one of :data:`RAW_TRANSPORTS`)."""
    if transport == "http-json":
        return send_encoded(collector, "json", path, otlp_json(message))
    encoding = "grpc" if transport == "grpc" else "protobuf"
    return send_encoded(collector, encoding, path, message.SerializeToString())


def send_encoded(collector: CollectorProcess, transport: str, path: str, body: bytes) -> Exported:
    """Send an already encoded body: ``protobuf``, ``json``, ``gzip`` (protobuf) or ``grpc``."""
    if transport == "grpc":
        return grpc_call(collector, path, body)
    headers = {}
    if transport == "gzip":
        body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
    is_json = transport == "json"
    reply = collector.post(path, body, JSON if is_json else PROTOBUF, headers)
    if reply.status != 200:
        return Exported(reply.status, error_message=reply.body.decode(errors="replace"))
    if is_json:
        partial = reply.json().get("partialSuccess", {})
        rejected = partial.get("rejectedSpans") or partial.get("rejectedLogRecords") or 0
        return Exported(200, int(rejected), partial.get("errorMessage", ""))
    return Exported(200, *_partial(RESPONSES[path].FromString(reply.body)))


def stored(collector: CollectorProcess, conversation_id: str) -> dict[str, Any]:
    """One conversation as the running collector's API returns it."""
    reply = collector.get("/api/v1/conversation?" + urlencode({"id": conversation_id}))
    assert reply.status == 200, reply
    return reply.json()  # type: ignore[no-any-return]


def assert_not_stored(collector: CollectorProcess, conversation_id: str) -> None:
    """The running collector's API knows no such conversation (404, the CLI's message)."""
    reply = collector.get("/api/v1/conversation?" + urlencode({"id": conversation_id}))
    assert reply.status == 404, reply
    assert reply.json() == {"error": f"unknown conversation {conversation_id!r}"}


def assert_still_serving(collector: CollectorProcess) -> None:
    """Health answers and a good export after the bad ones is stored."""
    assert collector.get("/healthz").status == 200
    conversation_id = f"after-{uuid.uuid4().hex}"
    request = trace_request([("conversation.started", {semconv.CONVERSATION_ID: conversation_id})])
    assert export_raw(collector, "http-protobuf", request) == Exported(200)
    assert [e["event_type"] for e in stored(collector, conversation_id)["events"]] == ["started"]


# ---- a small realistic fleet --------------------------------------------------------------------


AGENT: Final = "support-bot"


def run_conversations(provider: TracerProvider, prefix: str) -> dict[str, list[str]]:
    """Three conversations (completed, handed off, abandoned) through the real SDK and tracker.

    Returns each conversation's event types in order.
    """
    tracker = ConversationTracker(provider, agent_name=AGENT, user_id_key=USER_ID_KEY)
    tracer = provider.get_tracer("agent")
    script: dict[str, list[tuple[str, dict[str, Any]]]] = {
        f"{prefix}-done": [
            ("started", {"channel": "web"}),
            ("user_message", {"turn": 1, "message": "where is my order?"}),
            ("user_message", {"turn": 2, "message": "order 42"}),
            ("agent_response", {"turn": 2, "response": "on its way", "model": "m-1"}),
            ("completed", {"total_turns": 2}),
        ],
        f"{prefix}-handoff": [
            ("started", {"channel": "web"}),
            ("user_message", {"turn": 1, "message": "human please"}),
            ("handoff_requested", {"turn": 1, "reason": "asked"}),
        ],
        f"{prefix}-left": [
            ("started", {"channel": "web"}),
            ("user_message", {"turn": 1, "message": "hello?"}),
            ("abandoned", {"abandoned_at_turn": 1}),
        ],
    }
    for conversation_id, events in script.items():
        for kind, metadata in events:
            with tracer.start_as_current_span("agent.turn"):
                recorded = tracker.record(conversation_id, "user-1", kind, **metadata)
                assert recorded.recorded
    assert tracker.errors == 0
    return {cid: [kind for kind, _ in events] for cid, events in script.items()}


EXPECTED_REPORT: Final = {
    "total_conversations": 3,
    "completion_rate": 33.3,
    "abandonment_rate": 33.3,
    "handoff_rate": 33.3,
    "avg_turns": 1.3,
    "avg_duration_seconds": 0,
    "drop_off": [{"turn": 1, "count": 1}],
}


# ---- 1. official exporters, report and conversation through the running collector ------------


@pytest.mark.parametrize("transport", EXPORTER_TRANSPORTS)
def test_official_exporter_conversations_land_in_store_and_metrics(
    collector: CollectorProcess, transport: str
) -> None:
    """Spans from the SDK via the official OTLP exporter are stored, reported and counted."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter(transport, collector)))
    conversations = run_conversations(provider, transport)
    provider.shutdown()

    report = cli_json("report", "--store", collector.store_url)
    assert {key: report[key] for key in EXPECTED_REPORT} == EXPECTED_REPORT
    details = {
        conversation_id: cli_json("conversation", conversation_id, "--store", collector.store_url)
        for conversation_id in conversations
    }
    for conversation_id, kinds in conversations.items():
        events = details[conversation_id]["events"]
        assert [event["event_type"] for event in events] == kinds
        assert {event["agent_name"] for event in events} == {AGENT}
        assert all(event["trace_id"] and event["span_id"] for event in events)
    done = details[f"{transport}-done"]
    assert done["satisfaction"] == 0.9
    first_message = done["events"][1]
    assert first_message["message_length"] == len("where is my order?")
    assert "where is my order?" not in json.dumps(done)  # text never leaves the agent

    metrics = collector.metrics()
    source = "otlp_grpc" if transport.startswith("grpc") else "otlp_http"
    assert metrics.value(RECEIVED, source=source) == 11
    assert metrics.value(WRITTEN) == 11
    assert metrics.value(STARTED, agent=AGENT, channel="web") == 3
    assert metrics.value(COMPLETED, agent=AGENT) == 1
    assert metrics.value(HANDOFFS, agent=AGENT) == 1
    assert metrics.value(ABANDONED, agent=AGENT, inferred="false") == 1
    assert metrics.value(USER_MESSAGES, agent=AGENT) == 4
    assert metrics.value(DROPPED) == 0


@pytest.mark.parametrize("route", ["discovery", "--collector", "env"])
def test_report_and_conversation_are_routed_through_the_running_collector(
    collector: CollectorProcess, route: str
) -> None:
    """While the collector owns the embedded store, report and conversation still answer."""
    # chDB lets one process open a directory: these reads can only succeed through the collector.
    directory = Path(collector.store_url.removeprefix("chdb://"))
    discovery = json.loads((directory / "collector.json").read_text())
    assert discovery["pid"] == collector.pid
    assert discovery["api_url"] == collector.api_url
    request = trace_request([("conversation.started", {semconv.CONVERSATION_ID: "routed"})])
    assert export_raw(collector, "http-protobuf", request) == Exported(200)

    args: tuple[str, ...] = ("--store", collector.store_url)
    env: dict[str, str] = {}
    if route == "--collector":
        args = ("--collector", collector.api_url)
    elif route == "env":
        args, env = (), {"CONVERSATION_ANALYTICS_COLLECTOR_URL": collector.api_url}
    assert cli_json("report", *args, env=env)["total_conversations"] == 1
    detail = cli_json("conversation", "routed", *args, env=env)
    assert [event["event_type"] for event in detail["events"]] == ["started"]
    assert "collector ready:" in collector.log()


# ---- 2. OTLP/JSON by hand -----------------------------------------------------------------------


def test_otlp_json_body_with_hex_ids_is_stored(
    shared: CollectorProcess, counted: MetricDelta
) -> None:
    """A hand-written OTLP/JSON export (hex ids, string int64s) answers 200 and is stored."""
    now = time.time_ns()
    conversation_id = fresh("json")
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-agent"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "by-hand"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "agent.turn",
                                "kind": 1,
                                "startTimeUnixNano": str(now),
                                "endTimeUnixNano": str(now + 1000),
                                "events": [
                                    {
                                        "timeUnixNano": str(now),
                                        "name": "conversation.user_message",
                                        "attributes": [
                                            {
                                                "key": "gen_ai.conversation.id",
                                                "value": {"stringValue": conversation_id},
                                            },
                                            {
                                                "key": "conversation.turn",
                                                "value": {"intValue": "3"},
                                            },
                                            {
                                                "key": "conversation.channel",
                                                "value": {"stringValue": "api"},
                                            },
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    reply = shared.post(TRACES, json.dumps(body).encode(), JSON)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith(JSON)
    assert int(reply.json().get("partialSuccess", {}).get("rejectedSpans", 0)) == 0

    (event,) = cli_json("conversation", conversation_id, "--store", shared.store_url)["events"]
    assert event["event_type"] == "user_message"
    assert (event["trace_id"], event["span_id"]) == (trace_id, span_id)
    assert (event["turn"], event["channel"], event["agent_name"]) == (3, "api", "json-agent")
    assert counted.value(USER_MESSAGES, agent="json-agent", channel="api") == 1
    assert counted.value(RECEIVED, source="otlp_http") == 1


# ---- 3. logs count like span events -------------------------------------------------------------


def _comparable(event: Mapping[str, Any]) -> dict[str, Any]:
    """A stored event without what differs by path (ids; the log's own event.name attribute)."""
    kept = {k: v for k, v in event.items() if k not in ("event_id", "trace_id", "span_id")}
    kept["attributes"] = {k: v for k, v in event["attributes"].items() if k != "event.name"}
    return kept


@pytest.mark.parametrize("naming", ["event_name", "event.name attribute"])
@pytest.mark.parametrize("transport", RAW_TRANSPORTS)
def test_log_records_count_exactly_like_span_events(
    shared: CollectorProcess, counted: MetricDelta, transport: str, naming: str
) -> None:
    """A log record named conversation.* is stored and counted exactly as the same span event."""
    now = time.time_ns()
    via_span_id, via_log_id = fresh("via-span"), fresh("via-log")

    def lifecycle(conversation_id: str) -> list[Event]:
        common = {
            semconv.CONVERSATION_ID: conversation_id,
            semconv.AGENT_NAME: "log-agent",
            semconv.USER_ID: "pseudonym",
        }
        return [
            ("conversation.started", {**common, semconv.CHANNEL: "voice"}),
            ("conversation.user_message", {**common, semconv.TURN: 1}),
            ("conversation.completed", {**common, semconv.TOTAL_TURNS: 1}),
            ("app.other_event", common),  # not a conversation event: ignored on both paths
        ]

    as_spans = trace_request(lifecycle(via_span_id), time_ns=now)
    as_logs = logs_request(
        lifecycle(via_log_id), time_ns=now, name_in_attribute=naming != "event_name"
    )
    for message, path in ((as_spans, TRACES), (as_logs, LOGS)):
        result = export_raw(shared, transport, message, path)
        assert (result.ok, result.rejected) == (True, 0), result

    via_span, via_log = stored(shared, via_span_id), stored(shared, via_log_id)
    assert [e["event_type"] for e in via_log["events"]] == ["started", "user_message", "completed"]
    assert [_comparable(e) for e in via_log["events"]] == [
        _comparable(e) for e in via_span["events"]
    ]
    assert via_log["satisfaction"] == via_span["satisfaction"] == 0.9

    assert counted.value(WRITTEN) == 6
    assert counted.value(RECEIVED) == 6
    assert counted.value(STARTED, agent="log-agent", channel="voice") == 2
    assert counted.value(USER_MESSAGES, agent="log-agent") == 2
    assert counted.value(COMPLETED, agent="log-agent") == 2


# ---- 4. bearer token ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "wrong-token"], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_requests_without_the_bearer_token_are_refused_and_counted(
    guarded: CollectorProcess, transport: str, token: str
) -> None:
    """No or a wrong bearer token: HTTP 401 / gRPC UNAUTHENTICATED, counted, nothing stored."""
    counted = MetricDelta(guarded)
    conversation_id = fresh("intruder")
    request = trace_request([("conversation.started", {semconv.CONVERSATION_ID: conversation_id})])
    if transport == "grpc":
        result = grpc_call(guarded, TRACES, request.SerializeToString(), token=token)
        assert result.status == grpc.StatusCode.UNAUTHENTICATED
    else:
        reply = guarded.post(TRACES, request.SerializeToString(), token=token)
        assert reply.status == 401
        assert status_pb2.Status.FromString(reply.body).code == UNAUTHENTICATED

    assert counted.value(REQUESTS_REJECTED, reason="unauthenticated") == 1
    assert counted.value(RECEIVED) == 0
    assert_not_stored(guarded, conversation_id)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_official_exporter_needs_the_token_in_its_headers(
    guarded: CollectorProcess, transport: str
) -> None:
    """The official exporter fails without the token and succeeds with it in its headers."""
    counted = MetricDelta(guarded)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    prefix = fresh("auth")
    run_conversations(provider, prefix)
    spans = memory.get_finished_spans()

    anonymous = span_exporter(transport, guarded, token="", timeout=2)
    assert anonymous.export(spans) is SpanExportResult.FAILURE
    anonymous.shutdown()
    assert counted.value(REQUESTS_REJECTED, reason="unauthenticated") == 1
    assert counted.value(RECEIVED) == 0

    authorized = span_exporter(transport, guarded)
    assert authorized.export(spans) is SpanExportResult.SUCCESS
    authorized.shutdown()
    assert counted.value(WRITTEN) == 11
    assert len(stored(guarded, f"{prefix}-done")["events"]) == 5


def test_admin_api_needs_the_token_but_probes_and_metrics_do_not(guarded: CollectorProcess) -> None:
    """With a token, /api/v1 answers 401 without it; CLI reads pass it from the environment."""
    assert guarded.get("/api/v1/report", token="").status == 401
    assert guarded.get("/api/v1/report", token="nope").status == 401
    assert guarded.get("/api/v1/report").status == 200
    for path in ("/metrics", "/healthz", "/readyz"):
        assert guarded.get(path, token="").status == 200

    refused = run_cli("report", "--store", guarded.store_url, check=False)
    assert refused.returncode != 0
    assert "401" in refused.stderr
    env = {"CONVERSATION_ANALYTICS_AUTH_TOKEN": TOKEN}
    assert "total_conversations" in cli_json("report", "--store", guarded.store_url, env=env)


# ---- 5. size caps and decompression bombs -------------------------------------------------------


BOMB_BYTES: Final = 21 * 1024 * 1024


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_decompression_bomb_is_413_and_the_service_keeps_serving(
    shared: CollectorProcess, counted: MetricDelta, encoding: str
) -> None:
    """A small body that inflates past the 20 MiB cap gets 413, is counted, and harms nothing."""
    zeros = b"\0" * BOMB_BYTES
    bomb = gzip.compress(zeros) if encoding == "gzip" else zlib.compress(zeros)
    assert len(bomb) < 100_000
    reply = shared.post(TRACES, bomb, headers={"Content-Encoding": encoding})
    assert reply.status == 413
    assert status_pb2.Status.FromString(reply.body).message
    assert counted.value(REQUESTS_REJECTED, reason="too_large") == 1
    assert_still_serving(shared)


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
@pytest.mark.parametrize("path", [TRACES, LOGS])
def test_body_over_a_lower_max_request_bytes_is_413(
    capped: CollectorProcess, encoding: str, path: str
) -> None:
    """--max-request-bytes caps the body before and after decompression."""
    counted = MetricDelta(capped)
    conversation_id = fresh("big")
    events: list[Event] = [
        ("conversation.started", {semconv.CONVERSATION_ID: conversation_id, "pad": "x" * 8000})
    ]
    message = trace_request(events) if path == TRACES else logs_request(events)
    body = message.SerializeToString()
    headers = {}
    if encoding == "gzip":
        body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
        assert len(body) < 4096
    reply = capped.post(path, body, headers=headers)
    assert reply.status == 413
    assert counted.value(REQUESTS_REJECTED, reason="too_large") == 1
    assert_not_stored(capped, conversation_id)
    assert_still_serving(capped)


def test_grpc_message_that_inflates_past_the_cap_is_resource_exhausted(
    shared: CollectorProcess,
) -> None:
    """A gzip-compressed gRPC message past the cap gets RESOURCE_EXHAUSTED; service carries on."""
    result = grpc_call(shared, TRACES, b"\0" * BOMB_BYTES, compression=grpc.Compression.Gzip)
    assert result.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(shared)


def test_grpc_message_past_the_cap_is_refused(shared: CollectorProcess) -> None:
    """A gzip gRPC message inflating past the cap is RESOURCE_EXHAUSTED; the service goes on.

    grpc-core refuses it before the handler runs, so unlike HTTP it is not in
    conversation_analytics_requests_rejected_total (a documented limitation).
    """
    result = grpc_call(shared, TRACES, b"\0" * BOMB_BYTES, compression=grpc.Compression.Gzip)
    assert result.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert shared.get("/healthz").status == 200


# ---- 6. malformed requests ----------------------------------------------------------------------


#: Bad bodies: content type, body (``ROOT`` becomes ``resourceSpans``/``resourceLogs``), and
#: how it is encoded on the wire.
MALFORMED_HTTP: Final[dict[str, tuple[str, bytes, str]]] = {
    "protobuf-garbage": (PROTOBUF, b"\xff\xff\xff\xff\x0f", "identity"),
    "protobuf-truncated": (PROTOBUF, b"\x0a\x20\x0a\x05", "identity"),
    "json-syntax": (JSON, b'{"ROOT": [', "identity"),
    "json-not-an-object": (JSON, b"[1, 2, 3]", "identity"),
    "json-wrong-field-type": (JSON, b'{"ROOT": 5}', "identity"),
    "json-id-not-hex": (
        JSON,
        b'{"ROOT": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
        "identity",
    ),
    "json-not-utf8": (JSON, b'{"ROOT": "\xff\xfe"}', "identity"),
    "gzip-corrupt": (JSON, b'{"ROOT": []}', "gzip-corrupt"),
    "gzip-truncated": (JSON, b'{"ROOT": []}', "gzip-truncated"),
    "unknown-encoding": (PROTOBUF, b"\x00", "br"),
}
ROOTS: Final = {TRACES: b"resourceSpans", LOGS: b"resourceLogs"}


@pytest.mark.parametrize("path", [TRACES, LOGS])
@pytest.mark.parametrize(
    "case",
    [case for case in MALFORMED_HTTP],
)
def test_malformed_http_body_is_400_and_counted(
    shared: CollectorProcess, counted: MetricDelta, case: str, path: str
) -> None:
    """Malformed protobuf, JSON or compression: 400 with a google.rpc.Status, counted, served on."""
    content_type, template, encoding = MALFORMED_HTTP[case]
    body = template.replace(b"ROOT", ROOTS[path])
    if encoding.startswith("gzip"):
        compressed = gzip.compress(body)
        # corrupt: the deflate data replaced by junk; truncated: the CRC trailer cut off
        body = compressed[:10] + b"\xff" * 20 if encoding == "gzip-corrupt" else compressed[:-8]
    headers = {"Content-Encoding": encoding.split("-")[0]}
    reply = shared.post(path, body, content_type, headers)
    assert reply.status == 400, reply
    if content_type == JSON:
        assert reply.json()["code"] == INVALID_ARGUMENT
    else:
        status = status_pb2.Status.FromString(reply.body)
        assert status.code == INVALID_ARGUMENT
        assert status.message
    assert counted.value(REQUESTS_REJECTED, reason="malformed") == 1
    assert_still_serving(shared)


def test_unsupported_media_type_is_415(shared: CollectorProcess, counted: MetricDelta) -> None:
    """A body that is neither protobuf nor JSON is refused with 415 and counted."""
    reply = shared.post(TRACES, b"hello", "text/plain")
    assert reply.status == 415
    assert counted.value(REQUESTS_REJECTED, reason="unsupported_media_type") == 1


@pytest.mark.parametrize("path", [TRACES, LOGS])
@pytest.mark.parametrize(
    "body", [b"\xff\xff\xff\xff\x0f", b"\x0a\x05abc"], ids=["garbage", "truncated"]
)
def test_malformed_grpc_message_is_invalid_argument(
    shared: CollectorProcess, counted: MetricDelta, path: str, body: bytes
) -> None:
    """Bytes that are not an OTLP message over gRPC: INVALID_ARGUMENT, counted, served on."""
    result = grpc_call(shared, path, body)
    assert result.status == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in result.error_message
    assert counted.value(REQUESTS_REJECTED, reason="malformed") == 1
    assert_still_serving(shared)


# ---- 7. partial success -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TRACES, LOGS])
@pytest.mark.parametrize("transport", RAW_TRANSPORTS)
def test_event_without_conversation_id_is_a_partial_success(
    shared: CollectorProcess, counted: MetricDelta, transport: str, path: str
) -> None:
    """One event lacking gen_ai.conversation.id is rejected by count; the good one is stored."""
    good = fresh("good")
    events: list[Event] = [
        ("conversation.user_message", {semconv.TURN: 1}),
        ("conversation.started", {semconv.CONVERSATION_ID: good}),
    ]
    message = trace_request(events) if path == TRACES else logs_request(events)
    result = export_raw(shared, transport, message, path)
    assert result.ok
    assert result.rejected == 1
    assert "missing_conversation_id" in result.error_message
    assert [e["event_type"] for e in stored(shared, good)["events"]] == ["started"]
    assert counted.value(DROPPED, reason="missing_conversation_id") == 1
    assert counted.value(WRITTEN) == 1


@pytest.mark.parametrize(
    ("conversation_id", "reason"),
    [
        pytest.param("", "missing_conversation_id", id="empty"),
        pytest.param(3.5, "invalid_conversation_id", id="double"),
        pytest.param(True, "invalid_conversation_id", id="bool"),
        pytest.param("x" * (semconv.MAX_ID_LENGTH + 1), "invalid_conversation_id", id="too-long"),
        pytest.param(["a", "b"], "invalid_conversation_id", id="array"),
        pytest.param(b"\x00id", "invalid_conversation_id", id="bytes"),
    ],
)
def test_unusable_conversation_id_is_rejected_with_its_reason(
    shared: CollectorProcess, counted: MetricDelta, conversation_id: object, reason: str
) -> None:
    """A conversation id of the wrong type or size is a counted, explained rejection."""
    fine = fresh("fine")
    request = trace_request(
        [
            ("conversation.started", {semconv.CONVERSATION_ID: conversation_id}),
            ("conversation.started", {semconv.CONVERSATION_ID: fine}),
        ]
    )
    result = export_raw(shared, "http-protobuf", request)
    assert (result.status, result.rejected) == (200, 1)
    assert reason in result.error_message
    assert counted.value(DROPPED, reason=reason) == 1
    assert counted.value(WRITTEN) == 1
    assert len(stored(shared, fine)["events"]) == 1


def test_wrong_attribute_types_and_oversized_values_are_coerced_not_fatal(
    shared: CollectorProcess,
) -> None:
    """Wrong-typed optional attributes become nulls or strings; huge strings are truncated."""
    conversation_id = fresh("odd-types")
    request = trace_request(
        [
            (
                "conversation.user_message",
                {
                    semconv.CONVERSATION_ID: conversation_id,
                    semconv.TURN: "three",
                    semconv.MESSAGE_LENGTH: 2**40,
                    semconv.CHANNEL: 7,
                    semconv.REPHRASE_SIMILARITY: float("nan"),
                    semconv.AGENT_NAME: "a" * 100_000,
                    "conversation.metadata.tags": ["x", 1, True],
                },
            )
        ]
    )
    assert export_raw(shared, "http-protobuf", request) == Exported(200)
    (event,) = stored(shared, conversation_id)["events"]
    assert (event["turn"], event["message_length"], event["channel"]) == (None, None, "7")
    assert event["rephrase_similarity"] is None
    assert 0 < len(event["agent_name"]) <= 1024
    assert "tags" in event["attributes"]


def test_an_event_the_store_refuses_does_not_stall_later_events(
    collector: CollectorProcess,
) -> None:
    """One event the store cannot take is rejected or stored; later events still reach the store."""
    early = trace_request(
        [("conversation.started", {semconv.CONVERSATION_ID: "early"})], time_ns=1_000
    )
    assert export_raw(collector, "http-protobuf", early).ok
    later = fresh("later")
    request = trace_request([("conversation.started", {semconv.CONVERSATION_ID: later})])
    assert export_raw(collector, "http-protobuf", request) == Exported(200)
    assert [e["event_type"] for e in stored(collector, later)["events"]] == ["started"]


def test_values_with_unicode_line_separators_do_not_break_reads(
    collector: CollectorProcess,
) -> None:
    """A stored agent name or metadata value holding U+0085/U+2028/U+2029 reads back intact."""
    conversation_id = fresh("separators")
    hostile = "a\x85b\u2028c\u2029d"
    attributes = {
        semconv.CONVERSATION_ID: conversation_id,
        semconv.AGENT_NAME: hostile,
        "conversation.metadata.note": hostile,
    }
    request = trace_request([("conversation.started", attributes)])
    assert export_raw(collector, "http-protobuf", request) == Exported(200)
    assert collector.get("/api/v1/report").status == 200
    (event,) = stored(collector, conversation_id)["events"]
    assert (event["agent_name"], event["attributes"]["note"]) == (hostile, hostile)


# ---- 8. fuzzing ---------------------------------------------------------------------------------


# A deeper run: FUZZ_EXAMPLES=2000 pytest tests/test_collector_process.py -k fuzz (about a minute).
FUZZ_SETTINGS: Final = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EVENT_NAMES: Final = [*sorted(semconv.EVENT_NAMES), "conversation.bogus", "other.event", ""]


def texts(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    """Any valid Unicode text (no surrogates), line separators such as U+2028 included."""
    alphabet = st.characters(codec="utf-8")
    return st.text(alphabet, min_size=min_size, max_size=max_size)


HOSTILE_STRINGS: Final = [
    "'; DROP TABLE conversation_events; --",
    "' OR '1'='1",
    "{cid:String}",
    "\x00\x01\x02",
    "\\",
    "%00%27",
    "Robert'); DROP TABLE students;--",
    "🙂" * 300,
    "\u202e\u200b\ufeff",
]
scalars = st.one_of(
    texts(max_size=40),
    st.sampled_from(HOSTILE_STRINGS),
    st.builds(lambda s, n: s * n, texts(min_size=1, max_size=4), st.integers(1, 60_000)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=32),
    st.none(),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(texts(max_size=10), scalars, max_size=3),
)
attribute_keys = st.one_of(
    st.sampled_from(sorted(semconv.CONTRACT_ATTRIBUTES - {semconv.EVENT_ID})),
    texts(max_size=30),
)
conversation_ids = st.one_of(
    texts(min_size=1, max_size=60),
    st.sampled_from(HOSTILE_STRINGS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.just(""),
    st.just("y" * (semconv.MAX_ID_LENGTH + 1)),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),  # attribute absent
)
DEFAULT_CAP: Final = 20 * 1024 * 1024
MAX_TIME_NS: Final = 9_214_646_400 * 1_000_000_000  # the store's last instant (2262-01-01)
EARLIEST_STORABLE_NS: Final = 1  # the epoch's first nanosecond (0 means "unset" in OTLP)


def _valid_id(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return False
    return 0 < len(str(value)) <= semconv.MAX_ID_LENGTH


@FUZZ_SETTINGS
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.builds(lambda m: m.SerializeToString()[:-1], st.just(trace_request([]))),
        st.text(max_size=300).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "resourceSpans",
                            "resourceLogs",
                            "scopeSpans",
                            "spans",
                            "events",
                            "attributes",
                            "traceId",
                            "key",
                            "value",
                            "x",
                        ]
                    ),
                    inner,
                    max_size=3,
                )
            ),
            max_leaves=12,
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
    transport=st.sampled_from(["protobuf", "json", "gzip", "grpc"]),
    path=st.sampled_from([TRACES, LOGS]),
)
def test_fuzz_random_bodies_never_break_the_service(
    fuzz_collector: CollectorProcess, body: bytes, transport: str, path: str
) -> None:
    """Random bytes and random JSON documents: OK or INVALID_ARGUMENT, never a 5xx or a hang."""
    result = send_encoded(fuzz_collector, transport, path, body)
    assert result.status in (200, 400, grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)


@FUZZ_SETTINGS
@given(
    name=st.sampled_from(EVENT_NAMES),
    conversation_id=conversation_ids,
    attributes=st.dictionaries(attribute_keys, values, max_size=6),
    time_ns=st.one_of(
        st.none(), st.integers(min_value=EARLIEST_STORABLE_NS, max_value=MAX_FIXED64)
    ),
    trace_id=st.binary(max_size=20),
    signal=st.sampled_from(["traces", "logs", "logs-attribute"]),
    transport=st.sampled_from(["protobuf", "json", "gzip", "grpc"]),
)
def test_fuzz_structured_payloads_are_stored_or_counted_as_rejected(
    fuzz_collector: CollectorProcess,
    name: str,
    conversation_id: object,
    attributes: dict[str, object],
    time_ns: int | None,
    trace_id: bytes,
    signal: str,
    transport: str,
) -> None:
    """Any attribute values: 200 (or 413 when huge); each event is stored or counted rejected."""
    event_id = uuid.uuid4().hex
    attributes = {**attributes, semconv.EVENT_ID: event_id}
    if conversation_id is not None:
        attributes[semconv.CONVERSATION_ID] = conversation_id
    else:
        attributes.pop(semconv.CONVERSATION_ID, None)
    when = time.time_ns() if time_ns is None else time_ns
    path = TRACES if signal == "traces" else LOGS
    message: Message
    if path == TRACES:
        message = trace_request([(name, attributes)], time_ns=when, trace_id=trace_id)
    else:
        message = logs_request(
            [(name, attributes)], time_ns=when, name_in_attribute=signal == "logs-attribute"
        )

    raw = otlp_json(message) if transport == "json" else message.SerializeToString()
    result = send_encoded(fuzz_collector, transport, path, raw)
    if len(raw) > DEFAULT_CAP:
        note("too large")
        assert result.status in (413, grpc.StatusCode.RESOURCE_EXHAUSTED), result
        return
    assert result.ok, result

    kind = semconv.event_type_of(name)
    if kind is None:
        note("not a conversation event")
        assert result.rejected == 0
        return
    valid = _valid_id(conversation_id) and when < MAX_TIME_NS
    note("stored" if valid else "rejected")
    assert result.rejected == (0 if valid else 1), (conversation_id, when)
    if valid:
        detail = stored(fuzz_collector, str(conversation_id))
        matching = [e["event_type"] for e in detail["events"] if e["event_id"] == event_id]
        assert matching == [kind.value]


def test_service_is_healthy_after_fuzzing(fuzz_collector: CollectorProcess) -> None:
    """After the fuzz runs the collector still answers its probes and stores a good export."""
    assert fuzz_collector.process.poll() is None
    assert fuzz_collector.get("/readyz").status == 200
    assert fuzz_collector.get("/api/v1/report").status == 200
    assert_still_serving(fuzz_collector)
    assert fuzz_collector.stop() == 0


# ---- decode workers: the processes a collector started ------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent, ...); ``None``
    once the process has gone or is a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields


def _children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    candidates = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return {child for child in candidates if (_stat(child) or ["", ""])[1] == str(pid)}


def _alive(pids: set[int], timeout: float = 30.0) -> set[int]:
    """Those of ``pids`` still running once all have gone or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid in pids if _stat(pid) is not None}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


DECODE_WORKERS: Final = ("--decode-workers", "2")


# ---- 9. kill -9 mid-stream ----------------------------------------------------------------------


@dataclass
class Stream:
    """Pre-built export batches: each a list of spans, with the event ids they carry."""

    conversations: list[str]
    batches: list[list[ReadableSpan]] = field(default_factory=list)
    ids: list[list[str]] = field(default_factory=list)
    by_conversation: dict[str, set[str]] = field(default_factory=dict)

    def acknowledged_ids(self, acknowledged: Sequence[bool]) -> set[str]:
        return {i for ok, ids in zip(acknowledged, self.ids, strict=True) if ok for i in ids}


def build_stream(batch_count: int, conversation_count: int) -> Stream:
    """One batch per step with one span per conversation; step 0 also starts each one."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracker = ConversationTracker(provider, agent_name="stream-agent", user_id_key=USER_ID_KEY)
    tracer = provider.get_tracer("agent")
    conversations = [f"stream-{n}" for n in range(conversation_count)]
    stream = Stream(conversations, by_conversation={cid: set() for cid in conversations})
    for step in range(batch_count):
        memory.clear()
        for conversation_id in conversations:
            with tracer.start_as_current_span("agent.turn"):
                if step == 0:
                    tracker.record(conversation_id, "u", "started", channel="web")
                tracker.record(conversation_id, "u", "user_message", turn=step + 1)
        spans = list(memory.get_finished_spans())
        stream.batches.append(spans)
        stream.ids.append([])
        for span in spans:
            for span_event in span.events:
                attributes = span_event.attributes or {}
                event_id = str(attributes[semconv.EVENT_ID])
                stream.ids[-1].append(event_id)
                stream.by_conversation[str(attributes[semconv.CONVERSATION_ID])].add(event_id)
    provider.shutdown()
    return stream


def send_all(
    exporter: SpanExporter,
    batches: Sequence[Sequence[ReadableSpan]],
    acknowledged: list[bool],
    on_ack: Callable[[int], None],
) -> None:
    for index, batch in enumerate(batches):
        acknowledged[index] = exporter.export(batch) is SpanExportResult.SUCCESS
        if acknowledged[index]:
            on_ack(sum(acknowledged))


def stream_until(
    collector: CollectorProcess,
    transport: str,
    stream: Stream,
    after_acks: int,
    interrupt: Callable[[], None],
) -> list[bool]:
    """Send every batch from a thread; call ``interrupt`` once ``after_acks`` are acknowledged."""
    exporter = span_exporter(transport, collector, timeout=0.5)
    acknowledged = [False] * len(stream.batches)
    enough = threading.Event()

    def on_ack(count: int) -> None:
        if count >= after_acks:
            enough.set()

    sender = threading.Thread(
        target=send_all, args=(exporter, stream.batches, acknowledged, on_ack)
    )
    sender.start()
    try:
        assert enough.wait(60), "the collector never acknowledged enough batches"
        interrupt()
    finally:
        sender.join(120)
        exporter.shutdown()
    assert not sender.is_alive()
    return acknowledged


@pytest.mark.parametrize("decode", [(), DECODE_WORKERS], ids=["in-process", "decode-pool"])
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_kill_9_mid_stream_loses_no_acknowledged_event_and_stores_each_once(
    launch: Launch, transport: str, decode: tuple[str, ...]
) -> None:
    """kill -9 mid-stream, restart, resend what was not acknowledged: each event stored once;
    decode workers exit with their collector."""
    stream = build_stream(batch_count=60, conversation_count=4)
    first = launch(*decode)
    workers = _children(first.pid)
    assert len(workers) >= (2 if decode else 0), "the decode workers did not start"
    acknowledged = stream_until(first, transport, stream, after_acks=15, interrupt=first.kill)
    assert first.process.returncode == -9
    assert 15 <= sum(acknowledged) < len(stream.batches), "the kill did not land mid-stream"
    assert not _alive(workers), "decode workers outlived a kill -9 of their collector"

    second = launch(*decode)  # same store: replays the spool before it reports ready
    acked_ids = stream.acknowledged_ids(acknowledged)
    stored_ids = {i for cid in stream.conversations for i in event_ids(stored(second, cid))}
    assert acked_ids <= stored_ids, "acknowledged events were lost by kill -9"

    # Resend what was not acknowledged, and one acknowledged batch whose ack "got lost".
    last_acked = max(index for index, ok in enumerate(acknowledged) if ok)
    resend = [i for i, ok in enumerate(acknowledged) if not ok] + [last_acked]
    exporter = span_exporter(transport, second)
    assert all(exporter.export(stream.batches[i]) is SpanExportResult.SUCCESS for i in resend)
    exporter.shutdown()

    for conversation_id, expected in stream.by_conversation.items():
        ids = event_ids(cli_json("conversation", conversation_id, "--store", second.store_url))
        assert sorted(ids) == sorted(expected)  # every event, each once
    report = cli_json("report", "--store", second.store_url)
    assert report["total_conversations"] == len(stream.conversations)
    assert report["avg_turns"] == float(len(stream.batches))
    if decode:
        assert second.metrics().value(f"{DECODE_FALLBACKS}_total") == 0  # all in the pool


# ---- 10. SIGTERM --------------------------------------------------------------------------------


def test_sigterm_drains_exits_0_and_leaves_the_store_readable(launch: Launch) -> None:
    """SIGTERM mid-stream: exit 0 (within stop's timeout), discovery file gone, acked data kept."""
    collector = launch()
    directory = Path(collector.store_url.removeprefix("chdb://"))
    assert (directory / "collector.json").exists()
    stream = build_stream(batch_count=40, conversation_count=2)

    outcome: dict[str, int] = {}

    def terminate() -> None:  # a collector still running after the timeout is killed: -9
        outcome["exit code"] = collector.stop(timeout=30)

    acknowledged = stream_until(collector, "http", stream, after_acks=10, interrupt=terminate)
    assert outcome["exit code"] == 0
    assert "collector stopping" in collector.log()
    assert not (directory / "collector.json").exists()
    assert not list(Path(f"{directory}-spool").glob(SPOOL_SEGMENTS))

    acked_ids = stream.acknowledged_ids(acknowledged)
    found: set[str] = set()
    for conversation_id in stream.conversations:
        found |= set(
            event_ids(cli_json("conversation", conversation_id, "--store", collector.store_url))
        )
    assert acked_ids <= found
    report = cli_json("report", "--store", collector.store_url)
    assert report["total_conversations"] == len(stream.conversations)


# ---- 11. decode workers (see also 9) -------------------------------------------------------------


def test_decode_workers_stop_with_sigterm(launch: Launch) -> None:
    """SIGTERM: the collector drains, exits 0, and its decode workers are gone."""
    collector = launch(*DECODE_WORKERS)
    workers = _children(collector.pid)
    assert len(workers) >= 2, "the decode workers did not start"
    stream = build_stream(batch_count=3, conversation_count=2)
    exporter = span_exporter("http", collector)
    assert all(exporter.export(batch) is SpanExportResult.SUCCESS for batch in stream.batches)
    exporter.shutdown()
    assert collector.stop(timeout=30) == 0
    assert not _alive(workers)
    for conversation_id, expected in stream.by_conversation.items():
        ids = event_ids(cli_json("conversation", conversation_id, "--store", collector.store_url))
        assert sorted(ids) == sorted(expected)

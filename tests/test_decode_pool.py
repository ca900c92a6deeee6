"""The collector's decode pool: worker processes give exactly the rows the service would decode
itself, and every case they cannot serve (bad body, trace map needed, a dead worker, a closed
pool) ends where it would have without a pool."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from auto_instrumentation import CHAT, EXECUTE_TOOL, INVOKE_AGENT, genai_span
from conftest import TEST_USER_ID_KEY
from opentelemetry.exporter.conversation_analytics.collector import decode_pool
from opentelemetry.exporter.conversation_analytics.collector.config import (
    MAX_DECODE_WORKERS,
    CollectorConfig,
)
from opentelemetry.exporter.conversation_analytics.collector.decode_pool import (
    FALLBACK_POOL_CLOSED,
    FALLBACK_TRACE_CONTEXT,
    FALLBACK_WORKER_DIED,
    DecodePool,
)
from opentelemetry.exporter.conversation_analytics.collector.otlp import (
    MalformedRequest,
    Signal,
    decode_request,
)
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    conversation,
    semconv,
)
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation.instrumentor import ConversationInstrumentor

FEEDBACK = frozenset({"user_feedback"})


class Fallbacks:
    """Records the pool's fallback reasons, as the service's counter does."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()

    def __call__(self, reason: str) -> None:
        self.reasons[reason] += 1


@pytest.fixture
def fallbacks() -> Fallbacks:
    return Fallbacks()


@pytest.fixture
def pool(fallbacks: Fallbacks) -> Iterator[DecodePool]:
    started = DecodePool(
        2, store_content=False, feedback_evaluations=FEEDBACK, on_fallback=fallbacks
    )
    started.start()
    yield started
    started.close()


@pytest.fixture
def traces_body(
    sdk_provider: TracerProvider,
    spans: InMemorySpanExporter,
    instrumentor: ConversationInstrumentor,
) -> bytes:
    """Explicit events, GenAI spans (derived turns and a tool call), an evaluation on a span,
    and one hostile event (a counted rejection), encoded by the official OTLP encoder."""
    instrumentor.instrument(tracer_provider=sdk_provider)
    tracker = ConversationTracker(sdk_provider, agent_name="pool", user_id_key=TEST_USER_ID_KEY)
    tracer = sdk_provider.get_tracer("agent")
    with conversation("c-derived", user_id="u-1"):
        for _ in range(2):
            with (
                genai_span(sdk_provider, INVOKE_AGENT, extra={semconv.AGENT_NAME: "bot"}),
                genai_span(sdk_provider, CHAT, model="gpt-x"),
            ):
                pass
        with genai_span(sdk_provider, EXECUTE_TOOL, tool="lookup_order"):
            pass
    with tracer.start_as_current_span("turn") as span:
        tracker.record("c-explicit", "u-2", ConversationEvent.STARTED, channel="web")
        tracker.record("c-explicit", "u-2", ConversationEvent.USER_MESSAGE, turn=1)
        span.add_event(
            semconv.EVALUATION_EVENT,
            {
                semconv.EVALUATION_NAME: "relevance",
                semconv.EVALUATION_SCORE_VALUE: 0.5,
                semconv.CONVERSATION_ID: "c-explicit",
            },
        )
        span.add_event(ConversationEvent.USER_MESSAGE.event_name, {semconv.TURN: 2})  # no id
    return encode_spans(spans.get_finished_spans()).SerializeToString()


def _logs_body(*, with_conversation: bool) -> bytes:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    attributes: dict[str, object] = {semconv.EVALUATION_NAME: "user_feedback"}
    attributes[semconv.EVALUATION_SCORE_LABEL] = "negative"
    if with_conversation:
        attributes[semconv.CONVERSATION_ID] = "c-logged"
    provider.get_logger("evaluator").emit(
        event_name=semconv.EVALUATION_EVENT, attributes=attributes
    )
    provider.shutdown()
    return encode_logs(exporter.get_finished_logs()).SerializeToString()


def _in_process(signal_: Signal, body: bytes) -> tuple[list[object], Counter[str], int]:
    extracted = decode_request(signal_, body, is_json=False, feedback_evaluations=FEEDBACK)
    return list(extracted.rows), extracted.rejected, extracted.rejected_items


class TestSameRows:
    def test_traces_give_the_rows_and_rejections_of_in_process_decoding(
        self, pool: DecodePool, traces_body: bytes, fallbacks: Fallbacks
    ) -> None:
        """Derived, explicit and evaluation rows, field by field, and the rejection counts."""
        decoded = pool.decode(Signal.TRACES, traces_body, is_json=False)
        assert decoded is not None
        rows, rejected, rejected_items = _in_process(Signal.TRACES, traces_body)
        assert len(rows) >= 8 and sum(rejected.values()) == 1
        assert decoded.rows == rows
        assert (decoded.rejected, decoded.rejected_items) == (rejected, rejected_items)
        assert decoded.message == "conversation events rejected: 1 missing_conversation_id"
        assert not fallbacks.reasons

    def test_log_records_naming_their_conversation_stay_in_the_pool(
        self, pool: DecodePool, fallbacks: Fallbacks
    ) -> None:
        """A feedback evaluation as a log record: its evaluation and feedback rows."""
        body = _logs_body(with_conversation=True)
        decoded = pool.decode(Signal.LOGS, body, is_json=False)
        assert decoded is not None
        assert decoded.rows == _in_process(Signal.LOGS, body)[0]
        assert [row.event_type for row in decoded.rows] == ["evaluation", "feedback_received"]
        assert not fallbacks.reasons

    @pytest.mark.parametrize("store_content", [False, True], ids=["dropped", "stored"])
    def test_the_store_content_setting_reaches_the_workers(
        self, store_content: bool, fallbacks: Fallbacks
    ) -> None:
        """Message text is kept only when the operator enables it, in the pool as at home."""
        span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="turn")
        event = span.events.add(name=ConversationEvent.USER_MESSAGE.event_name, time_unix_nano=1)
        for key, text in (
            (semconv.CONVERSATION_ID, "c-text"),
            (semconv.EVENT_ID, "e-text"),
            (semconv.MESSAGE_CONTENT, "my card number is ..."),
        ):
            event.attributes.append(KeyValue(key=key, value=AnyValue(string_value=text)))
        body = ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
        ).SerializeToString()
        pool = DecodePool(
            1, store_content=store_content, feedback_evaluations=FEEDBACK, on_fallback=fallbacks
        )
        pool.start()
        try:
            decoded = pool.decode(Signal.TRACES, body, is_json=False)
        finally:
            pool.close()
        assert decoded is not None
        home = decode_request(Signal.TRACES, body, is_json=False, store_content=store_content)
        assert decoded.rows == home.rows
        kept = (decoded.rows[0].attributes or {}).get(semconv.MESSAGE_CONTENT)
        assert kept == ("my card number is ..." if store_content else None)


class TestHandedBack:
    @pytest.mark.parametrize("is_json", [False, True], ids=["protobuf", "json"])
    def test_a_malformed_body_is_the_callers_malformed_request(
        self, pool: DecodePool, is_json: bool
    ) -> None:
        """The worker's verdict reaches the caller as the in-process one would."""
        with pytest.raises(MalformedRequest, match="malformed OTLP"):
            pool.decode(Signal.TRACES, b"\xff\x00not otlp{", is_json=is_json)

    def test_an_evaluation_needing_the_trace_map_is_decoded_at_home(
        self, pool: DecodePool, fallbacks: Fallbacks
    ) -> None:
        """Only the service knows which conversation a trace belongs to."""
        assert pool.decode(Signal.LOGS, _logs_body(with_conversation=False), is_json=False) is None
        assert fallbacks.reasons == {FALLBACK_TRACE_CONTEXT: 1}

    def test_a_killed_worker_is_replaced_and_its_request_decoded_at_home(
        self, pool: DecodePool, traces_body: bytes, fallbacks: Fallbacks
    ) -> None:
        """kill -9 of a worker: that request falls back, a fresh pool serves the next ones."""
        killed = pool.pids
        assert len(killed) == 2
        os.kill(killed[0], signal.SIGKILL)
        # A request already with the surviving worker may still be answered; the pool notices
        # the death within a few requests.
        for _ in range(200):
            if pool.decode(Signal.TRACES, traces_body, is_json=False) is None:
                break
        assert fallbacks.reasons == {FALLBACK_WORKER_DIED: 1}
        assert pool.pids and not set(pool.pids) & set(killed)
        decoded = pool.decode(Signal.TRACES, traces_body, is_json=False)
        assert decoded is not None and decoded.rows == _in_process(Signal.TRACES, traces_body)[0]

    def test_a_closed_pool_hands_every_request_back(
        self, pool: DecodePool, traces_body: bytes, fallbacks: Fallbacks
    ) -> None:
        """After close (collector shutdown), nothing is refused: the caller decodes."""
        workers = pool.pids
        pool.close()
        assert pool.decode(Signal.TRACES, traces_body, is_json=False) is None
        assert fallbacks.reasons == {FALLBACK_POOL_CLOSED: 1}
        for pid in workers:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # reaped: the workers are gone


def _failing_init(*_settings: object) -> None:
    """A worker initializer that fails, as a broken install would."""
    raise RuntimeError("cannot import the decoder")


class TestSettings:
    def test_at_least_one_worker(self) -> None:
        with pytest.raises(ValueError, match="at least one worker"):
            DecodePool(0, store_content=False, feedback_evaluations=FEEDBACK)

    @pytest.mark.parametrize("workers", [-1, MAX_DECODE_WORKERS + 1])
    def test_the_collector_refuses_a_worker_count_out_of_range(self, workers: int) -> None:
        with pytest.raises(ValueError, match="decode workers must be between 0 and"):
            CollectorConfig(decode_workers=workers)

    def test_a_bad_variable_is_named(self) -> None:
        """``CONVERSATION_ANALYTICS_DECODE_WORKERS=two`` names the variable and what it takes."""
        variable = env.CONVERSATION_ANALYTICS_DECODE_WORKERS
        with pytest.raises(ValueError, match=f"{variable} must be a whole number, got 'two'"):
            CollectorConfig.load(environ={variable: "two"})
        assert CollectorConfig.load(environ={variable: "3"}).decode_workers == 3

    def test_workers_that_cannot_start_are_an_error_in_the_operators_terms(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pool whose workers die at start-up: OSError saying how to run without one."""
        monkeypatch.setattr(decode_pool, "_init_worker", _failing_init)
        pool = DecodePool(1, store_content=False, feedback_evaluations=FEEDBACK)
        with pytest.raises(OSError, match=r"cannot start 1 decode workers.*--decode-workers 0"):
            pool.start()

"""Events derived from GenAI spans: the mapping table, the other instrumentations' attribute
variants, the collector path, idempotence, and no double counting next to explicit events."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry

from auto_instrumentation import CHAT, EXECUTE_TOOL, INVOKE_AGENT, genai_span
from conftest import TEST_USER_ID_KEY
from opentelemetry.exporter.conversation_analytics import metrics as m
from opentelemetry.exporter.conversation_analytics.collector.otlp import rows_from_traces
from opentelemetry.exporter.conversation_analytics.derive import derive_rows
from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.extract import rows_from_spans
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.exporter.conversation_analytics.store.base import window_params
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    conversation,
    genai,
    semconv,
)
from opentelemetry.instrumentation.conversation.instrumentor import ConversationInstrumentor
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from samples import metric_value

E = ConversationEvent


def _events(
    store: ConversationStore, exporter: ConversationAnalyticsExporter, cid: str
) -> list[dict[str, Any]]:
    assert exporter.force_flush()
    return StoreReader(store).conversation(cid).events


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event_type"] for event in events]


def _agent_turns(provider: TracerProvider, turns: int, *, tool_on: int = 2) -> None:
    for turn in range(1, turns + 1):
        with genai_span(provider, INVOKE_AGENT, extra={semconv.AGENT_NAME: "support-bot"}):
            with genai_span(provider, CHAT, model="gpt-x", response_model="gpt-x-0806"):
                pass
            if turn == tool_on:
                with genai_span(provider, EXECUTE_TOOL, tool="lookup_order"):
                    pass


class TestMapping:
    def test_agent_turns_become_conversation_events(
        self,
        instrumented: TracerProvider,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """Each agent invocation is a user message and a response (with the answering model);
        the first also starts the conversation; tool spans are tool calls."""
        with conversation("c-1", user_id="u-1"):
            _agent_turns(instrumented, 3)
        events = _events(store, exporter, "c-1")
        # ``started`` and the first message share the turn's start time: either order.
        assert set(_kinds(events)[:2]) == {"started", "user_message"}
        assert events[0]["timestamp"] == events[1]["timestamp"]
        assert _kinds(events)[2:] == [
            "agent_response",
            "user_message",
            "tool_called",
            "agent_response",
            "user_message",
            "agent_response",
        ]
        assert all(event["derived"] for event in events)
        assert [e["turn"] for e in events if e["event_type"] == "user_message"] == [1, 2, 3]
        responses = [e for e in events if e["event_type"] == "agent_response"]
        assert {e["response_model"] for e in responses} == {"gpt-x-0806"}
        [tool] = [e for e in events if e["event_type"] == "tool_called"]
        assert (tool["tool_name"], tool["turn"], tool["error_type"]) == ("lookup_order", 2, "")
        assert {e["agent_name"] for e in events} == {"support-bot"}
        assert len({e["user_id"] for e in events}) == 1 and events[0]["user_id"] != "u-1"

    def test_errors_become_error_types(
        self,
        instrumented: TracerProvider,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """A failed model call or tool carries ``error.type`` (``_OTHER`` when unnamed)."""
        with conversation("c-err"):
            with genai_span(instrumented, CHAT, model="m") as span:
                span.set_attribute(semconv.ERROR_TYPE, "RateLimitError")
                span.set_status(Status(StatusCode.ERROR))
            with genai_span(instrumented, EXECUTE_TOOL, tool="t") as span:
                span.set_status(Status(StatusCode.ERROR, "boom"))
        events = _events(store, exporter, "c-err")
        errors = {e["event_type"]: e["error_type"] for e in events if e["error_type"]}
        assert errors == {"agent_response": "RateLimitError", "tool_called": genai.OTHER_ERROR}

    def test_spans_outside_conversations_derive_nothing(
        self,
        instrumented: TracerProvider,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """GenAI spans without a conversation id are not conversation events."""
        _agent_turns(instrumented, 2)
        assert exporter.force_flush()
        assert store.count_events() == 0


#: The same facts as each major instrumentation writes them: (agent span, model span, tool span).
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "openinference": (
        {
            genai.OPENINFERENCE_SPAN_KIND: "AGENT",
            genai.OPENINFERENCE_SESSION_ID: "conv-v",
            semconv.USER_ID: "user-9",
            genai.OPENINFERENCE_AGENT_NAME: "oi-agent",
        },
        {genai.OPENINFERENCE_SPAN_KIND: "LLM", genai.OPENINFERENCE_MODEL_NAME: "llama-3"},
        {genai.OPENINFERENCE_SPAN_KIND: "TOOL", genai.OPENINFERENCE_TOOL_NAME: "search"},
    ),
    "openllmetry": (
        {
            genai.TRACELOOP_SPAN_KIND: "agent",
            genai.TRACELOOP_ASSOCIATION + "session_id": "conv-v",
            genai.TRACELOOP_ASSOCIATION + "user_id": "user-9",
            semconv.AGENT_NAME: "oi-agent",
        },
        {genai.LLM_REQUEST_TYPE: "chat", genai.LLM_REQUEST_MODEL: "llama-3"},
        {genai.TRACELOOP_SPAN_KIND: "tool", genai.TRACELOOP_ENTITY_NAME: "search"},
    ),
}


class TestVariants:
    @pytest.mark.parametrize("convention", sorted(VARIANTS))
    def test_other_conventions_map_to_the_same_events(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter, convention: str
    ) -> None:
        """OpenInference and OpenLLMetry spans (no conversation processor in their process)
        give the same events as GenAI semantic-convention spans."""
        tp = sdk_provider
        agent, model, tool = VARIANTS[convention]
        # These instrumentations put the session on every span (context propagation).
        session = {k: v for k, v in agent.items() if v == "conv-v"}
        model, tool = {**model, **session}, {**tool, **session}
        tracer = tp.get_tracer("other")
        with tracer.start_as_current_span("agent", attributes=agent):
            with tracer.start_as_current_span("llm", attributes=model):
                pass
            with tracer.start_as_current_span("tool", attributes=tool):
                pass
        rows, rejected = rows_from_spans(spans.get_finished_spans())
        assert not rejected
        assert [(r.event_type, r.conversation_id) for r in rows] == [
            ("tool_called", "conv-v"),
            ("user_message", "conv-v"),
            ("agent_response", "conv-v"),
        ]
        assert rows[0].tool_name == "search"
        # Raw from an agent without the processor: pseudonymised at extraction.
        assert rows[1].user_id == rows[2].user_id == UserIdPseudonymizer()("user-9")
        assert rows[1].agent_name == rows[2].agent_name == "oi-agent"

    def test_unmarked_model_calls_are_turns_only_at_a_trace_root(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Without the processor's marks a root model call is a turn; one under another span
        (a step of some workflow) is not."""
        tp = sdk_provider
        ids = {semconv.CONVERSATION_ID: "c-fallback"}
        with genai_span(tp, CHAT, model="m", extra=ids):
            pass
        workflow = tp.get_tracer("app").start_as_current_span("workflow")
        with workflow, genai_span(tp, CHAT, model="m", extra=ids):
            pass
        rows, _ = rows_from_spans(spans.get_finished_spans())
        assert [r.event_type for r in rows] == ["user_message", "agent_response"]

    @pytest.mark.parametrize(
        "bad_id", ["", "x" * (semconv.MAX_ID_LENGTH + 1), "'; DROP TABLE x; --"]
    )
    def test_hostile_ids_are_rejected_or_kept_verbatim(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter, bad_id: str
    ) -> None:
        """An empty or oversized id derives nothing countable (a counted rejection); SQL-looking
        text is just an id."""
        tp = sdk_provider
        with genai_span(tp, INVOKE_AGENT, extra={semconv.CONVERSATION_ID: bad_id}):
            pass
        rows, rejected = rows_from_spans(spans.get_finished_spans())
        if bad_id.startswith("'"):
            assert {r.conversation_id for r in rows} == {bad_id}
        elif bad_id:
            assert rows == [] and sum(rejected.values()) == 2
        else:
            assert rows == []


class TestCollectorPath:
    def test_otlp_gives_the_same_rows_as_the_sdk(
        self,
        sdk_provider: TracerProvider,
        spans: InMemorySpanExporter,
        instrumentor: ConversationInstrumentor,
    ) -> None:
        """The collector derives exactly what the in-process exporter derives from the same
        spans encoded as OTLP by the official encoder."""
        tp = sdk_provider
        instrumentor.instrument(tracer_provider=tp)
        with conversation("c-otlp", user_id="u"):
            _agent_turns(tp, 3)
            with genai_span(tp, EXECUTE_TOOL, tool="t") as span:
                span.set_status(Status(StatusCode.ERROR))
        finished: tuple[ReadableSpan, ...] = spans.get_finished_spans()
        sdk_rows, _ = rows_from_spans(finished)
        otlp = rows_from_traces(encode_spans(finished))
        assert not otlp.rejected
        assert len(sdk_rows) == 9
        assert otlp.rows == sdk_rows


class TestNoDoubleCounting:
    def _mixed_conversation(self, provider: TracerProvider, tracker: ConversationTracker) -> None:
        """Three turns, each recorded explicitly and also traced by GenAI instrumentation."""
        with conversation("c-mixed", user_id="u"):
            tracker.record(event_type=E.STARTED, channel="web")
            for turn in range(1, 4):
                tracker.record(event_type=E.USER_MESSAGE, turn=turn)
                with genai_span(provider, INVOKE_AGENT):
                    with genai_span(provider, CHAT, model="m", response_model="m-1"):
                        pass
                    with genai_span(provider, EXECUTE_TOOL, tool="lookup"):
                        tracker.record(event_type=E.TOOL_CALLED, tool_name="lookup", turn=turn)
                tracker.record(event_type=E.AGENT_RESPONSE, turn=turn)
            tracker.record(event_type=E.COMPLETED, total_turns=3)

    def test_report_counts_explicit_events_once(
        self,
        instrumented: TracerProvider,
        tracker: ConversationTracker,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """Explicit and derived user messages for the same turns count once: avg turns,
        satisfaction and tool calls equal an explicit-only agent's."""
        self._mixed_conversation(instrumented, tracker)
        events = _events(store, exporter, "c-mixed")
        assert sum(e["event_type"] == "user_message" for e in events) == 6  # both are stored
        report = StoreReader(store).report()
        assert report.total_conversations == 1
        assert report.avg_turns == 3.0
        assert report.completion_rate == 100.0
        # 3 user messages, completed: (0.9 + 0.8) / 2, as if only explicit events existed.
        assert StoreReader(store).conversation("c-mixed").satisfaction == pytest.approx(0.85)
        assert report.avg_satisfaction == pytest.approx(0.85)

    def test_prometheus_counts_explicit_events_once(
        self,
        instrumented: TracerProvider,
        tracker: ConversationTracker,
        exporter: ConversationAnalyticsExporter,
        registry: CollectorRegistry,
    ) -> None:
        """The exporter's counters see the explicit events first and skip the derived ones."""
        self._mixed_conversation(instrumented, tracker)
        assert metric_value(registry, m.USER_MESSAGES + "_total") == 3
        assert metric_value(registry, m.STARTED + "_total") == 1
        assert metric_value(registry, m.TOOL_CALLS + "_total") == 3

    def test_derived_only_conversation_counts_its_turns(
        self,
        instrumented: TracerProvider,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
        registry: CollectorRegistry,
    ) -> None:
        """Without explicit events, the derived ones are the numbers, plus one-line outcomes."""
        with conversation("c-derived") as conv:
            _agent_turns(instrumented, 4)
            conv.complete()
        assert exporter.force_flush()
        report = StoreReader(store).report()
        assert (report.total_conversations, report.avg_turns) == (1, 4.0)
        assert report.completion_rate == 100.0
        assert report.avg_duration_seconds is not None
        assert metric_value(registry, m.USER_MESSAGES + "_total") == 4
        assert metric_value(registry, m.COMPLETED + "_total") == 1

    def test_reexport_is_idempotent(
        self,
        sdk_provider: TracerProvider,
        spans: InMemorySpanExporter,
        instrumentor: ConversationInstrumentor,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """Derived events have ids fixed by their span, so exporting spans twice stores them
        once."""
        tp = sdk_provider
        instrumentor.instrument(tracer_provider=tp)
        with conversation("c-again"):
            _agent_turns(tp, 2)
        finished = spans.get_finished_spans()
        exporter.export(finished)
        exporter.export(finished)
        assert exporter.force_flush()
        assert store.count_events() == 6
        assert StoreReader(store).report().avg_turns == 2.0


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["invoke_agent", "chat", "execute_tool", "AGENT", "LLM", "TOOL", "agent"]),
    st.lists(st.text(max_size=5), max_size=3).map(tuple),
)
_KEYS = st.sampled_from(
    sorted(
        {
            *genai.ROLE_ATTRIBUTES,
            *genai.CONVERSATION_ID_ATTRIBUTES,
            *genai.TOOL_NAME_ATTRIBUTES,
            *genai.REQUEST_MODEL_ATTRIBUTES,
            semconv.TURN,
            semconv.PROCESSED,
            semconv.ERROR_TYPE,
            semconv.USER_ID,
        }
    )
)


class TestHostileAttributes:
    @settings(max_examples=300, deadline=None)
    @given(
        attributes=st.dictionaries(_KEYS, _VALUES, max_size=8),
        has_parent=st.booleans(),
        failed=st.booleans(),
    )
    def test_any_attribute_values_give_rows_or_counted_rejections(
        self, attributes: dict[str, Any], has_parent: bool, failed: bool
    ) -> None:
        """Wrong types and odd values never raise: each derived event is a valid row or a
        counted rejection."""
        rows: list[Any] = []
        rejected: Counter[str] = Counter()
        derive_rows(
            attributes,
            name="span",
            start_ns=1_700_000_000_000_000_000,
            end_ns=1_700_000_000_500_000_000,
            has_parent=has_parent,
            failed=failed,
            rows=rows,
            rejected=rejected,
        )
        for row in rows:
            assert row.derived and row.conversation_id
            assert row.turn is None or isinstance(row.turn, int)
        assert len(rows) + sum(rejected.values()) <= 4


class TestReviewScenarios:
    """Cases a review found: explicit events inside GenAI spans, the instrumentor's agent name,
    tool errors next to explicit tool calls."""

    def test_explicit_events_inside_agent_spans_count_once_in_prometheus(
        self,
        instrumented: TracerProvider,
        tracker: ConversationTracker,
        exporter: ConversationAnalyticsExporter,
        registry: CollectorRegistry,
    ) -> None:
        """Derived events sort first in a batch (at their span's start); explicit ones recorded
        inside the same span still win."""
        with conversation("c-inside"):
            for turn in range(1, 4):
                with genai_span(instrumented, INVOKE_AGENT):
                    if turn == 1:
                        tracker.record(event_type=E.STARTED)
                    tracker.record(event_type=E.USER_MESSAGE, turn=turn)
        assert metric_value(registry, m.STARTED + "_total") == 1
        assert metric_value(registry, m.USER_MESSAGES + "_total") == 3

    def test_instrumentor_agent_name_labels_derived_and_explicit_alike(
        self,
        provider: TracerProvider,
        instrumentor: ConversationInstrumentor,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """``instrument(agent_name=...)`` names spans that name no agent, so a conversation is
        one rollup row per hour, not one per agent name."""
        instrumentor.instrument(tracer_provider=provider, agent_name="support-bot")
        with conversation("c-named") as conv:
            for _ in range(2):
                with genai_span(provider, CHAT, model="m"):
                    pass
            conv.complete()
        assert exporter.force_flush()
        agents = store.select(
            f"SELECT DISTINCT agent_name FROM {store.schema.rollup} "
            "WHERE conversation_id = {cid:String}",
            {"cid": "c-named"},
        )
        assert [row["agent_name"] for row in agents] == ["support-bot"]

    def test_tool_errors_follow_the_explicit_tool_calls(
        self,
        instrumented: TracerProvider,
        tracker: ConversationTracker,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """An explicit tool call without error inside a failing tool span: the conversation has
        no tool error (explicit events decide), as Prometheus says."""
        with conversation("c-tools"), genai_span(instrumented, EXECUTE_TOOL, tool="t") as span:
            tracker.record(event_type=E.TOOL_CALLED, tool_name="t")
            span.set_status(Status(StatusCode.ERROR))
        assert exporter.force_flush()
        [row] = store.select(store.schema.conversations_in_window(), window_params(7, None))
        assert (int(row["tool_calls"]), int(row["tool_errors"])) == (1, 0)

    def test_instrumentation_user_ids_are_pseudonymised_in_the_agent(
        self,
        memory_provider: TracerProvider,
        spans: InMemorySpanExporter,
    ) -> None:
        """A raw user id an instrumentation put on its span (OpenLLMetry's association property)
        leaves the process only as its pseudonym."""
        raw = {genai.TRACELOOP_ASSOCIATION + "user_id": "alice@example.com"}
        with conversation("c-user"), genai_span(memory_provider, CHAT, model="m", extra=raw):
            pass
        rows, _ = rows_from_spans(spans.get_finished_spans())
        expected = UserIdPseudonymizer(TEST_USER_ID_KEY)("alice@example.com")
        assert {row.user_id for row in rows} == {expected}

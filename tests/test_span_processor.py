"""ConversationInstrumentor and its span processor: ids stamped on every span in a conversation,
turns derived when a conversation's span tree ends, clean instrument/uninstrument, and
suppression respected."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from auto_instrumentation import CHAT, EXECUTE_TOOL, INVOKE_AGENT, genai_span
from conftest import TEST_USER_ID_KEY
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.exporter.conversation_analytics.extract import rows_from_spans
from opentelemetry.instrumentation.conversation import conversation, genai, semconv
from opentelemetry.instrumentation.conversation.instrumentor import ConversationInstrumentor
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer


def _by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans.get_finished_spans()}


def _turns(spans: InMemorySpanExporter) -> list[tuple[int, list[str]]]:
    """(turn, derived event kinds) of each ``conversation.turn`` span, in start order."""
    ordered = sorted(spans.get_finished_spans(), key=lambda span: span.start_time or 0)
    return [
        (
            int((s.attributes or {})[semconv.TURN]),  # type: ignore[arg-type]
            [event.name.removeprefix(semconv.EVENT_PREFIX) for event in s.events],
        )
        for s in ordered
        if s.name == semconv.DERIVED_SPAN_NAME
    ]


def _events(spans: InMemorySpanExporter) -> list[dict[str, object]]:
    """The attributes of every derived event, in time order."""
    events = [
        {"event": event.name.removeprefix(semconv.EVENT_PREFIX), **(event.attributes or {})}
        for s in spans.get_finished_spans()
        if s.name == semconv.DERIVED_SPAN_NAME
        for event in s.events
    ]
    return events


class TestEntryPoint:
    def test_registered_for_opentelemetry_instrument(self) -> None:
        """``opentelemetry-instrument`` finds the instrumentor through its entry point."""
        [point] = [
            ep
            for ep in entry_points(group="opentelemetry_instrumentor")
            if ep.name == "conversation"
        ]
        assert point.load() is ConversationInstrumentor


class TestStamping:
    def test_every_span_inside_gets_the_ids(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Any span started inside the scope (GenAI or not) carries conversation and agent (no
        user id: the pseudonym lives only on conversation events); spans outside carry none."""
        tracer = memory_provider.get_tracer("app")
        with (
            tracer.start_as_current_span("outside"),
            conversation("c-1", user_id="alice", agent="bot"),
            tracer.start_as_current_span("db query"),
        ):
            pass
        found = _by_name(spans)
        inside = found["db query"].attributes or {}
        assert inside[semconv.CONVERSATION_ID] == "c-1"
        assert semconv.USER_ID not in inside
        assert inside[semconv.AGENT_NAME] == "bot"
        assert inside[semconv.PROCESSED] is True
        assert semconv.CONVERSATION_ID not in (found["outside"].attributes or {})

    def test_baggage_alone_is_enough(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """A conversation id arriving in baggage (from a front end) is stamped too."""
        token = otel_context.attach(baggage.set_baggage(semconv.DEFAULT_BAGGAGE_KEY, "c-bag"))
        try:
            with genai_span(memory_provider, CHAT, model="m"):
                pass
        finally:
            otel_context.detach(token)
        [span] = [s for s in spans.get_finished_spans() if s.name != semconv.DERIVED_SPAN_NAME]
        assert (span.attributes or {})[semconv.CONVERSATION_ID] == "c-bag"

    def test_scope_wins_over_an_id_the_instrumentation_made_up(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Frameworks that invent their own id (Pydantic AI) are overridden by the scope, so
        explicit events and spans land in one conversation."""
        with (
            conversation("c-mine"),
            genai_span(
                memory_provider, INVOKE_AGENT, extra={semconv.CONVERSATION_ID: "uuid-made-up"}
            ),
        ):
            pass
        [span] = [s for s in spans.get_finished_spans() if s.name != semconv.DERIVED_SPAN_NAME]
        assert (span.attributes or {})[semconv.CONVERSATION_ID] == "c-mine"
        assert {e[semconv.CONVERSATION_ID] for e in _events(spans)} == {"c-mine"}

    def test_children_of_a_conversation_span_inherit_it(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """A span whose parent carried a conversation id of its own keeps it for the subtree."""
        with (
            genai_span(
                memory_provider, INVOKE_AGENT, extra={genai.OPENINFERENCE_SESSION_ID: "sess-1"}
            ),
            genai_span(memory_provider, CHAT, model="m"),
        ):
            pass
        for span in spans.get_finished_spans():
            assert (span.attributes or {})[semconv.CONVERSATION_ID] == "sess-1"

    def test_no_conversation_no_change(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Outside any conversation GenAI spans get only the mark that the agent decided
        their turns (so the collector derives nothing more from them), and no events."""
        with genai_span(memory_provider, CHAT, model="m"):
            pass
        [span] = spans.get_finished_spans()
        assert set(span.attributes or {}) == {
            semconv.OPERATION_NAME,
            semconv.REQUEST_MODEL,
            semconv.PROCESSED,
        }


class TestTurns:
    def test_agent_invocation_is_one_turn_with_its_model(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """An agent span opens a turn; model and tool spans inside belong to it; the answering
        model is the turn's response model."""
        with conversation("c"):
            for _ in range(2):
                with genai_span(memory_provider, INVOKE_AGENT):
                    with genai_span(memory_provider, CHAT, model="m", response_model="m-1"):
                        pass
                    with genai_span(memory_provider, EXECUTE_TOOL, tool="lookup"):
                        pass
        assert _turns(spans) == [
            (1, ["started", "user_message", "tool_called", "agent_response"]),
            (2, ["user_message", "tool_called", "agent_response"]),
        ]
        responses = [e for e in _events(spans) if e["event"] == "agent_response"]
        assert [e[semconv.RESPONSE_MODEL] for e in responses] == ["m-1", "m-1"]
        assert all(e[semconv.DERIVED] is True for e in _events(spans))

    def test_derived_span_hangs_under_the_turns_first_span(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """The events' span is a child of the turn's outermost span, within its time."""
        with conversation("c"), genai_span(memory_provider, INVOKE_AGENT):
            pass
        found = _by_name(spans)
        agent, turn = found["invoke_agent"], found[semconv.DERIVED_SPAN_NAME]
        assert turn.parent is not None and agent.context is not None
        assert turn.parent.span_id == agent.context.span_id
        assert (turn.start_time, turn.end_time) == (agent.start_time, agent.end_time)

    def test_model_calls_after_tool_requests_continue_the_turn(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Without agent spans (a bare client), a model call answering tool results continues
        the turn; one after a final answer opens the next."""
        with conversation("c"):
            with genai_span(memory_provider, CHAT, model="m", finish_reasons=("tool_calls",)):
                pass
            with genai_span(memory_provider, EXECUTE_TOOL, tool="lookup"):
                pass
            with genai_span(memory_provider, CHAT, model="m", finish_reasons=("stop",)):
                pass
            with genai_span(memory_provider, CHAT, model="m", finish_reasons=("stop",)):
                pass
        # Each bare call is its own tree (nothing open between them): the first tree's turn
        # goes on in the next two, and is answered by the call that asked for no tools.
        assert _turns(spans) == [
            (1, ["started", "user_message"]),
            (1, ["tool_called"]),
            (1, ["agent_response"]),
            (2, ["user_message", "agent_response"]),
        ]

    def test_turns_are_counted_per_conversation(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Interleaved conversations each count their own turns."""
        for cid in ("a", "b", "a"):
            with conversation(cid), genai_span(memory_provider, INVOKE_AGENT):
                pass
        marks = [
            (e[semconv.CONVERSATION_ID], e[semconv.TURN])
            for e in _events(spans)
            if e["event"] == "user_message"
        ]
        assert marks == [("a", 1), ("b", 1), ("a", 2)]

    def test_user_id_is_pseudonymised_once(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """The scope's user id reaches every derived event as its pseudonym, hashed once."""
        with conversation("c", user_id="alice"), genai_span(memory_provider, INVOKE_AGENT):
            pass
        expected = UserIdPseudonymizer(TEST_USER_ID_KEY)("alice")
        assert {e[semconv.USER_ID] for e in _events(spans)} == {expected}


class TestLifecycle:
    def test_uninstrument_stops_stamping_and_reinstrument_resumes_once(
        self,
        spans: InMemorySpanExporter,
        instrumentor: ConversationInstrumentor,
    ) -> None:
        """``uninstrument()`` turns stamping off; instrumenting again adds no second processor."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(spans))
        tracer = tp.get_tracer("t")
        instrumentor.instrument(tracer_provider=tp)
        instrumentor.uninstrument()
        with conversation("c"), tracer.start_as_current_span("off"):
            pass
        instrumentor.instrument(tracer_provider=tp)
        instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=tp)
        with conversation("c"), tracer.start_as_current_span("on"):
            pass
        found = _by_name(spans)
        assert semconv.CONVERSATION_ID not in (found["off"].attributes or {})
        assert (found["on"].attributes or {})[semconv.CONVERSATION_ID] == "c"
        processors = tp._active_span_processor._span_processors
        assert sum(type(p).__name__ == "ConversationSpanProcessor" for p in processors) == 1

    def test_suppressed_spans_are_not_stamped(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Spans started under ``suppress_instrumentation`` (exporters' own) are left alone."""
        tracer = memory_provider.get_tracer("t")
        with conversation("c"), suppress_instrumentation(), tracer.start_as_current_span("call"):
            pass
        [span] = spans.get_finished_spans()
        assert semconv.CONVERSATION_ID not in (span.attributes or {})

    def test_proxy_provider_is_refused_with_a_warning(
        self, instrumentor: ConversationInstrumentor, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Without an SDK provider there is nothing to add a processor to: a warning, no error."""
        from opentelemetry.trace import NoOpTracerProvider

        instrumentor.instrument(tracer_provider=NoOpTracerProvider())
        assert "not an SDK TracerProvider" in caplog.text

    def test_processor_failure_never_reaches_the_agent(
        self,
        memory_provider: TracerProvider,
        spans: InMemorySpanExporter,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A bug inside the processor is logged once; the agent's span still works."""
        from opentelemetry.instrumentation.conversation import processor

        def broken(*_args: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(processor.ConversationSpanProcessor, "_start", broken)
        with conversation("c"), genai_span(memory_provider, CHAT, model="m"):
            pass
        assert len(spans.get_finished_spans()) == 1


class TestEndFailures:
    def test_end_failure_is_swallowed_and_logged_once(
        self,
        memory_provider: TracerProvider,
        spans: InMemorySpanExporter,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A bug at span end never reaches the agent and is logged once, however often."""
        from opentelemetry.instrumentation.conversation import processor

        def broken(*_args: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(processor.ConversationSpanProcessor, "_end", broken)
        for _ in range(3):
            with conversation("c"), genai_span(memory_provider, CHAT, model="m"):
                pass
        assert len(spans.get_finished_spans()) == 3
        assert caplog.text.count("conversation span processor failed") == 1


class TestLateConversationIds:
    """Frameworks that name the conversation only when a span ends (LangGraph's thread_id in
    run metadata, OpenInference's session.id on a graph span)."""

    def test_id_set_at_the_roots_end_gives_the_turns(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """No scope: the root's final ``session.id`` makes its trace one turn of that
        conversation, with the tool and model inside."""
        tracer = memory_provider.get_tracer("graph")
        for _ in range(2):
            with tracer.start_as_current_span("graph") as root:
                with genai_span(memory_provider, CHAT, model="m", response_model="m-1"):
                    pass
                with genai_span(memory_provider, EXECUTE_TOOL, tool="lookup"):
                    pass
                root.set_attributes(
                    {genai.OPENINFERENCE_SPAN_KIND: "CHAIN", genai.OPENINFERENCE_SESSION_ID: "s-1"}
                )
        assert _turns(spans) == [
            (1, ["started", "user_message", "tool_called", "agent_response"]),
            (2, ["user_message", "tool_called", "agent_response"]),
        ]
        assert {e[semconv.CONVERSATION_ID] for e in _events(spans)} == {"s-1"}

    def test_id_in_run_metadata_of_a_child(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """LangGraph run metadata (``thread_id``) on inner spans names the conversation."""
        metadata = {genai.OPENINFERENCE_METADATA: '{"thread_id": "t-9", "user_id": "bob"}'}
        tracer = memory_provider.get_tracer("graph")
        with (
            tracer.start_as_current_span("graph"),
            genai_span(memory_provider, CHAT, model="m") as model,
        ):
            model.set_attributes(metadata)
        events = _events(spans)
        assert {e[semconv.CONVERSATION_ID] for e in events} == {"t-9"}
        expected = UserIdPseudonymizer(TEST_USER_ID_KEY)("bob")
        assert {e[semconv.USER_ID] for e in events} == {expected}

    def test_traces_without_any_id_are_forgotten(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """GenAI traces outside conversations derive nothing and are not kept."""
        from opentelemetry.instrumentation.conversation.processor import (
            ConversationSpanProcessor,
        )

        tracer = memory_provider.get_tracer("app")
        with tracer.start_as_current_span("request"), genai_span(memory_provider, CHAT, model="m"):
            pass
        assert _events(spans) == []
        [processor] = [
            p
            for p in memory_provider._active_span_processor._span_processors
            if isinstance(p, ConversationSpanProcessor)
        ]
        assert processor._late == {}


class TestHostileUserIds:
    """A raw user id set by an instrumentation at any moment is stored only as its pseudonym,
    hashed once, whatever else set it."""

    RAW = "alice@example.com"

    @pytest.mark.parametrize("moment", ["before start", "after start", "at end"])
    def test_any_moment(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter, moment: str
    ) -> None:
        """``user.id`` present at start, set after start, or set just before end."""
        extra = {semconv.USER_ID: self.RAW} if moment == "before start" else {}
        with conversation("c-u"), genai_span(memory_provider, CHAT, model="m", extra=extra) as s:
            if moment == "after start":
                s.set_attribute(semconv.USER_ID, self.RAW)
            if moment == "at end":
                s.set_attribute(semconv.USER_ID, "x")
                s.set_attribute(semconv.USER_ID, self.RAW)
        expected = UserIdPseudonymizer(TEST_USER_ID_KEY)(self.RAW)
        assert {e[semconv.USER_ID] for e in _events(spans)} == {expected}

    def test_two_instrumentations_and_the_scope(
        self, memory_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """The scope's id, OpenInference's ``user.id`` and an association property on two
        spans of one call: one pseudonym, of the scope's id."""
        outer = {semconv.USER_ID: self.RAW}
        inner = {genai.TRACELOOP_ASSOCIATION + "user_id": self.RAW}
        with (
            conversation("c-u", user_id=self.RAW),
            genai_span(memory_provider, CHAT, model="m", extra=outer),
            genai_span(memory_provider, CHAT, model="m", extra=inner),
        ):
            pass
        expected = UserIdPseudonymizer(TEST_USER_ID_KEY)(self.RAW)
        assert {e[semconv.USER_ID] for e in _events(spans)} == {expected}
        rows, _ = rows_from_spans(spans.get_finished_spans())
        assert rows and {row.user_id for row in rows} == {expected}

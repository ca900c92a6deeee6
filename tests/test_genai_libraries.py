"""Real GenAI libraries, unmodified: the official OpenAI client with opentelemetry-instrumentation-
openai-v2 against a local OpenAI-compatible server, and Pydantic AI's native GenAI spans."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util.genai.handler import TelemetryHandler
from prometheus_client import CollectorRegistry

from openai_stub import OpenAIStub
from opentelemetry.exporter.conversation_analytics import metrics as m
from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import conversation
from pydantic_ai_agent import AGENT_NAME, MODEL_NAME, run_conversation
from samples import metric_value

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REQUEST_MODEL = "gpt-4o-mini"


def load_example(name: str) -> ModuleType:
    """An example agent module, imported from ``examples/`` as users run it."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def openai_client(instrumented: TracerProvider, stub: OpenAIStub) -> Iterator[openai.OpenAI]:
    """The real client, instrumented by the official openai-v2 instrumentation."""
    OpenAIInstrumentor().instrument(tracer_provider=instrumented)
    try:
        yield openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0)
    finally:
        OpenAIInstrumentor().uninstrument()


def _by_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["event_type"] == kind]


class TestOpenAI:
    def test_conversation_with_and_without_tool_calls(
        self,
        openai_client: openai.OpenAI,
        instrumented: TracerProvider,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
        registry: CollectorRegistry,
    ) -> None:
        """Three user turns (one needing a tool: two model calls) give three turns, one tool
        call, the answering model, and the explicit completion."""
        agent = load_example("openai_support_agent")
        telemetry = TelemetryHandler(tracer_provider=instrumented)
        history: list[dict[str, Any]] = []
        with conversation("c-openai", user_id="u-1", agent="support-bot") as conv:
            for text in ("hi", "where is my order?", "thanks"):
                agent.answer(openai_client, history, text, telemetry)
            conv.complete()
        assert history[-1]["content"] == "Echo: thanks"  # the stub really answered
        assert exporter.force_flush()
        events = StoreReader(store).conversation("c-openai").events
        assert [e["turn"] for e in _by_type(events, "user_message")] == [1, 2, 3]
        responses = _by_type(events, "agent_response")
        assert len(responses) == 3
        assert {e["response_model"] for e in responses} == {REQUEST_MODEL + "-2024-08-06"}
        assert {e["request_model"] for e in responses} == {REQUEST_MODEL}
        [tool] = _by_type(events, "tool_called")
        assert (tool["tool_name"], tool["turn"]) == ("lookup_order", 2)
        assert len(_by_type(events, "started")) == 1
        assert len(_by_type(events, "completed")) == 1
        assert {e["agent_name"] for e in events} == {"support-bot"}
        report = StoreReader(store).report()
        assert (report.total_conversations, report.avg_turns, report.completion_rate) == (
            1,
            3.0,
            100.0,
        )
        assert metric_value(registry, m.TOOL_CALLS + "_total", tool="lookup_order") == 1

    def test_failed_model_call_is_an_errored_response(
        self,
        openai_client: openai.OpenAI,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """A 500 from the model API is still a turn, with the error type on the response."""
        with conversation("c-fail"), pytest.raises(openai.InternalServerError):
            openai_client.chat.completions.create(
                model=REQUEST_MODEL, messages=[{"role": "user", "content": "FAIL please"}]
            )
        assert exporter.force_flush()
        [response] = _by_type(StoreReader(store).conversation("c-fail").events, "agent_response")
        assert "InternalServerError" in response["error_type"]

    def test_streamed_answers_are_turns(
        self,
        openai_client: openai.OpenAI,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """Chat apps stream: each streamed completion is a turn with its answering model."""
        with conversation("c-stream"):
            for text in ("hi", "more"):
                stream = openai_client.chat.completions.create(
                    model=REQUEST_MODEL,
                    messages=[{"role": "user", "content": text}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                answer = "".join(
                    chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
                )
                assert answer == f"Echo: {text}"
        assert exporter.force_flush()
        events = StoreReader(store).conversation("c-stream").events
        assert [e["turn"] for e in _by_type(events, "user_message")] == [1, 2]
        responses = _by_type(events, "agent_response")
        assert {e["response_model"] for e in responses} == {REQUEST_MODEL + "-2024-08-06"}


class TestPydanticAI:
    TURNS = ("Hi there, I need help", "Where is order 12345?", "Thanks, bye")

    def test_multi_turn_conversation_with_tools(
        self,
        instrumented: TracerProvider,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """Pydantic AI's own GenAI spans: one turn per run, its tool call, its model, under the
        scope's conversation id (not the id Pydantic AI makes up)."""
        with conversation("c-pai", user_id="u-2") as conv:
            answers = run_conversation(instrumented, list(self.TURNS))
            conv.feedback("positive")
            conv.complete()
        assert answers[1] == "Here is what I found: Order 12345 shipped yesterday."
        assert exporter.force_flush()
        detail = StoreReader(store).conversation("c-pai")
        events = detail.events
        assert [e["turn"] for e in _by_type(events, "user_message")] == [1, 2, 3]
        [tool] = _by_type(events, "tool_called")
        assert (tool["tool_name"], tool["turn"]) == ("lookup_order", 2)
        assert {e["response_model"] for e in _by_type(events, "agent_response")} == {MODEL_NAME}
        assert {e["agent_name"] for e in events} == {AGENT_NAME}
        assert StoreReader(store).report().total_conversations == 1
        # 3 messages, completed, positive: (1.0 + 0.9 + 0.8) / 3
        assert detail.satisfaction == pytest.approx(0.9)

    def test_framework_conversation_id_needs_no_scope(
        self,
        instrumented: TracerProvider,
        store: ConversationStore,
        exporter: ConversationAnalyticsExporter,
    ) -> None:
        """An agent that only passes its conversation id to the framework gets the turns."""
        run_conversation(instrumented, list(self.TURNS), conversation_id="c-native")
        assert exporter.force_flush()
        report = StoreReader(store).report()
        assert (report.total_conversations, report.avg_turns) == (1, 3.0)
        events = StoreReader(store).conversation("c-native").events
        assert len(_by_type(events, "tool_called")) == 1

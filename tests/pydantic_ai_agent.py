"""A deterministic, offline Pydantic AI agent instrumented with OpenTelemetry."""

from __future__ import annotations

import re

from opentelemetry.trace import TracerProvider
from pydantic_ai import Agent
from pydantic_ai.capabilities import Instrumentation
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings

AGENT_NAME = "support-bot"
MODEL_NAME = "local-support-model"
INSTRUMENTATION_VERSION = 6
_ORDER_ID = re.compile(r"\b([A-Z]*\d+)\b")


def lookup_order(order_id: str) -> str:
    """Look up an order's status by its id."""
    return f"Order {order_id} shipped yesterday."


def _reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call the tool on an order question, then answer; otherwise answer directly."""
    request = messages[-1]
    assert isinstance(request, ModelRequest)
    for part in request.parts:
        if isinstance(part, ToolReturnPart):
            return ModelResponse(parts=[TextPart(f"Here is what I found: {part.content}")])
    prompt = next(
        (p.content for p in request.parts if isinstance(p, UserPromptPart)),
        "",
    )
    text = prompt if isinstance(prompt, str) else ""
    if "order" in text.lower():
        match = _ORDER_ID.search(text)
        order_id = match.group(1) if match else "unknown"
        return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": order_id})])
    return ModelResponse(parts=[TextPart(f"Happy to help with: {text}")])


def build_agent(tracer_provider: TracerProvider) -> Agent[None, str]:
    """Build the instrumented "support-bot" agent on a local function model."""
    settings = InstrumentationSettings(
        tracer_provider=tracer_provider, version=INSTRUMENTATION_VERSION
    )
    return Agent(
        FunctionModel(_reply, model_name=MODEL_NAME),
        name=AGENT_NAME,
        instructions="You are a helpful support bot.",
        tools=[lookup_order],
        capabilities=[Instrumentation(settings=settings)],
    )


def run_conversation(
    tracer_provider: TracerProvider, turns: list[str], conversation_id: str | None = None
) -> list[str]:
    """Run ``turns`` as one conversation, passing message history between runs
    (``conversation_id``: Pydantic AI's own, else it makes one up)."""
    agent = build_agent(tracer_provider)
    history: list[ModelMessage] = []
    answers: list[str] = []
    for turn in turns:
        result = agent.run_sync(turn, message_history=history, conversation_id=conversation_id)
        history = result.all_messages()
        answers.append(result.output)
    return answers

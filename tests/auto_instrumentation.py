"""Helpers for auto-instrumentation tests: GenAI spans shaped like the major instrumentations'."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import Span, TracerProvider

from opentelemetry.instrumentation.conversation import genai, semconv

#: ``gen_ai.operation.name`` values used by the tests.
INVOKE_AGENT = "invoke_agent"
CHAT = "chat"
EXECUTE_TOOL = "execute_tool"


@contextmanager
def genai_span(
    provider: TracerProvider,
    operation: str,
    *,
    model: str | None = None,
    response_model: str | None = None,
    tool: str | None = None,
    finish_reasons: tuple[str, ...] | None = None,
    extra: dict[str, str] | None = None,
) -> Iterator[Span]:
    """A span as the official GenAI instrumentations start it (attributes at start, results at
    end)."""
    attributes: dict[str, str] = {semconv.OPERATION_NAME: operation, **(extra or {})}
    if model:
        attributes[semconv.REQUEST_MODEL] = model
    if tool:
        attributes[semconv.TOOL_NAME] = tool
    name = f"{operation} {tool or model or ''}".strip()
    with provider.get_tracer("genai-test").start_as_current_span(name, attributes=attributes) as s:
        yield s  # type: ignore[misc]
        if response_model:
            s.set_attribute(semconv.RESPONSE_MODEL, response_model)
        if finish_reasons:
            s.set_attribute(genai.FINISH_REASONS, finish_reasons)

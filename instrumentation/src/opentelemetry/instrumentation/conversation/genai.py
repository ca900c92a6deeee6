"""What a GenAI span means for a conversation, across the instrumentations agents already use.

The OpenTelemetry GenAI semantic conventions come first; OpenInference (Arize, Phoenix) and
OpenLLMetry (Traceloop) name the same facts differently, so each fact has a list of attribute
names, tried in order. The span processor (in the agent) and the extraction layer (exporter and
collector) both classify spans here, so they can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

from opentelemetry.instrumentation.conversation import semconv


class SpanRole(str, Enum):
    """The part a span plays in a conversation turn."""

    AGENT = "agent"  # one agent invocation: handles one user message
    MODEL = "model"  # one model call (chat, completion)
    TOOL = "tool"  # one tool execution


# Attributes of other instrumentations (the only module that spells them).
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OPENINFERENCE_SESSION_ID: Final = "session.id"
OPENINFERENCE_TOOL_NAME: Final = "tool.name"
OPENINFERENCE_MODEL_NAME: Final = "llm.model_name"
OPENINFERENCE_AGENT_NAME: Final = "agent.name"
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"
TRACELOOP_ASSOCIATION: Final = "traceloop.association.properties."
LLM_REQUEST_TYPE: Final = "llm.request.type"
LLM_REQUEST_MODEL: Final = "llm.request.model"
LLM_RESPONSE_MODEL: Final = "llm.response.model"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"

#: ``gen_ai.operation.name`` values, by role.
OPERATION_ROLES: Final[Mapping[str, SpanRole]] = {
    "invoke_agent": SpanRole.AGENT,
    "chat": SpanRole.MODEL,
    "text_completion": SpanRole.MODEL,
    "generate_content": SpanRole.MODEL,
    "execute_tool": SpanRole.TOOL,
}
OPENINFERENCE_ROLES: Final[Mapping[str, SpanRole]] = {
    "AGENT": SpanRole.AGENT,
    "LLM": SpanRole.MODEL,
    "TOOL": SpanRole.TOOL,
}
TRACELOOP_ROLES: Final[Mapping[str, SpanRole]] = {"agent": SpanRole.AGENT, "tool": SpanRole.TOOL}
LLM_REQUEST_TYPE_ROLES: Final[Mapping[str, SpanRole]] = {
    "chat": SpanRole.MODEL,
    "completion": SpanRole.MODEL,
}
_ROLE_ATTRIBUTES: Final = (
    (semconv.OPERATION_NAME, OPERATION_ROLES),
    (OPENINFERENCE_SPAN_KIND, OPENINFERENCE_ROLES),
    (TRACELOOP_SPAN_KIND, TRACELOOP_ROLES),
    (LLM_REQUEST_TYPE, LLM_REQUEST_TYPE_ROLES),
)
#: Attributes that can give a span a role (a cheap pre-check before decoding all attributes).
ROLE_ATTRIBUTES: Final = frozenset(name for name, _ in _ROLE_ATTRIBUTES)

# Each fact and the attributes that carry it, in order of preference.
CONVERSATION_ID_ATTRIBUTES: Final = (
    semconv.CONVERSATION_ID,
    OPENINFERENCE_SESSION_ID,
    TRACELOOP_ASSOCIATION + "conversation_id",
    TRACELOOP_ASSOCIATION + "session_id",
)
USER_ID_ATTRIBUTES: Final = (semconv.USER_ID, TRACELOOP_ASSOCIATION + "user_id")
AGENT_NAME_ATTRIBUTES: Final = (semconv.AGENT_NAME, OPENINFERENCE_AGENT_NAME)
REQUEST_MODEL_ATTRIBUTES: Final = (
    semconv.REQUEST_MODEL,
    OPENINFERENCE_MODEL_NAME,
    LLM_REQUEST_MODEL,
)
RESPONSE_MODEL_ATTRIBUTES: Final = (semconv.RESPONSE_MODEL, LLM_RESPONSE_MODEL)
TOOL_NAME_ATTRIBUTES: Final = (semconv.TOOL_NAME, OPENINFERENCE_TOOL_NAME, TRACELOOP_ENTITY_NAME)

#: Finish reasons meaning "the model asked for tools": the next model call continues the turn.
TOOL_FINISH_REASONS: Final = frozenset({"tool_calls", "tool_call", "tool_use", "function_call"})


def plain_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A plain dict of an SDK span's attributes: ``.get`` on the SDK's mapping raises (and
    catches) a KeyError on every miss, and iterating it goes through the Mapping ABC; its
    C-level ``copy()`` is cheaper than either."""
    if not attributes:
        return {}
    copy = getattr(attributes, "copy", None)
    return copy() if copy is not None else attributes


def span_role(attributes: Mapping[str, object] | None) -> SpanRole | None:
    """The span's role, from the first convention that names one; ``None`` for other spans."""
    if not attributes:
        return None
    for name, roles in _ROLE_ATTRIBUTES:
        value = attributes.get(name)
        if type(value) is str:
            role = roles.get(value)
            if role is not None:
                return role
    return None


def first_of(attributes: Mapping[str, object], names: tuple[str, ...]) -> object | None:
    """The first non-empty value among ``names``."""
    for name in names:
        value = attributes.get(name)
        if value is not None and value != "":
            return value
    return None


def asks_for_tools(finish_reasons: object) -> bool:
    """Whether a model call ended by asking for tool results (so the turn goes on)."""
    if isinstance(finish_reasons, str):
        return finish_reasons in TOOL_FINISH_REASONS
    if isinstance(finish_reasons, (list, tuple)):
        return any(reason in TOOL_FINISH_REASONS for reason in finish_reasons)
    return False

"""What a GenAI span means for a conversation, across the instrumentations agents already use.

The OpenTelemetry GenAI semantic conventions come first; OpenInference (Arize, Phoenix, the
OpenAI Agents SDK instrumentation), OpenLLMetry (Traceloop) and LangChain/LangGraph run metadata
name the same facts differently, so each fact has a list of attribute names, tried in order. The
span processor (in the agent) and the extraction layer (exporter and collector) both read spans
here, so they can never disagree. This is the only module that spells other projects' names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any, Final

from opentelemetry.instrumentation.conversation import semconv


class SpanRole(str, Enum):
    """The part a span plays in a conversation turn."""

    AGENT = "agent"  # one agent invocation: handles one user message
    CHAIN = "chain"  # a workflow, chain or graph run: a turn when it calls a model
    MODEL = "model"  # one model call (chat, completion)
    TOOL = "tool"  # one tool execution


# Attributes of other instrumentations.
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OPENINFERENCE_SESSION_ID: Final = "session.id"
OPENINFERENCE_USER_ID: Final = semconv.USER_ID
OPENINFERENCE_METADATA: Final = "metadata"
OPENINFERENCE_TOOL_NAME: Final = "tool.name"
OPENINFERENCE_MODEL_NAME: Final = "llm.model_name"
OPENINFERENCE_AGENT_NAME: Final = "agent.name"
OPENINFERENCE_FINISH_REASON: Final = "llm.finish_reason"
OPENINFERENCE_OUTPUT_MESSAGES: Final = "llm.output_messages."
OPENINFERENCE_TOOL_CALL_NAME: Final = ".tool_call.function.name"
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"
TRACELOOP_ASSOCIATION: Final = "traceloop.association.properties."
TRACELOOP_COMPLETION: Final = "gen_ai.completion."
TRACELOOP_TOOL_CALL_NAME: Final = ".name"
LLM_REQUEST_TYPE: Final = "llm.request.type"
LLM_REQUEST_MODEL: Final = "llm.request.model"
LLM_RESPONSE_MODEL: Final = "llm.response.model"
LANGFUSE_SESSION_ID: Final = "langfuse.session.id"
LANGFUSE_USER_ID: Final = "langfuse.user.id"
ENDUSER_ID: Final = "enduser.id"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OPENINFERENCE_INPUT_MESSAGES: Final = "llm.input_messages."
TRACELOOP_PROMPT: Final = "gen_ai.prompt."
#: Suffixes of a flattened input message's role and text (OpenInference, then OpenLLMetry).
_FLAT_INPUT: Final = (
    (OPENINFERENCE_INPUT_MESSAGES, ".message.role", ".message.content"),
    (TRACELOOP_PROMPT, ".role", ".content"),
)
USER_ROLE: Final = "user"

#: Keys of LangChain/LangGraph run metadata (and of Traceloop association properties) that name
#: the conversation, in order of preference.
METADATA_CONVERSATION_KEYS: Final = ("conversation_id", "session_id", "thread_id")
METADATA_USER_KEYS: Final = ("user_id",)

#: ``gen_ai.operation.name`` values, by role (older and latest GenAI conventions).
OPERATION_ROLES: Final[Mapping[str, SpanRole]] = {
    "invoke_agent": SpanRole.AGENT,
    "invoke_workflow": SpanRole.CHAIN,
    "chat": SpanRole.MODEL,
    "text_completion": SpanRole.MODEL,
    "generate_content": SpanRole.MODEL,
    "responses": SpanRole.MODEL,
    "execute_tool": SpanRole.TOOL,
}
OPENINFERENCE_ROLES: Final[Mapping[str, SpanRole]] = {
    "AGENT": SpanRole.AGENT,
    "CHAIN": SpanRole.CHAIN,
    "LLM": SpanRole.MODEL,
    "TOOL": SpanRole.TOOL,
}
TRACELOOP_ROLES: Final[Mapping[str, SpanRole]] = {
    "agent": SpanRole.AGENT,
    "workflow": SpanRole.CHAIN,
    "task": SpanRole.CHAIN,
    "tool": SpanRole.TOOL,
}
LLM_REQUEST_TYPE_ROLES: Final[Mapping[str, SpanRole]] = {
    "chat": SpanRole.MODEL,
    "completion": SpanRole.MODEL,
}
_ROLE_ATTRIBUTES: Final = (
    (OPENINFERENCE_SPAN_KIND, OPENINFERENCE_ROLES),
    (TRACELOOP_SPAN_KIND, TRACELOOP_ROLES),
    (semconv.OPERATION_NAME, OPERATION_ROLES),
    (LLM_REQUEST_TYPE, LLM_REQUEST_TYPE_ROLES),
)
#: Attributes that can give a span a role (a cheap pre-check before decoding all attributes).
ROLE_ATTRIBUTES: Final = frozenset(name for name, _ in _ROLE_ATTRIBUTES)

# Each fact and the attributes that carry it, in order of preference.
CONVERSATION_ID_ATTRIBUTES: Final = (
    semconv.CONVERSATION_ID,
    OPENINFERENCE_SESSION_ID,
    *(TRACELOOP_ASSOCIATION + key for key in METADATA_CONVERSATION_KEYS),
    LANGFUSE_SESSION_ID,
)
USER_ID_ATTRIBUTES: Final = (
    semconv.USER_ID,
    ENDUSER_ID,
    *(TRACELOOP_ASSOCIATION + key for key in METADATA_USER_KEYS),
    LANGFUSE_USER_ID,
)
AGENT_NAME_ATTRIBUTES: Final = (semconv.AGENT_NAME, OPENINFERENCE_AGENT_NAME)
REQUEST_MODEL_ATTRIBUTES: Final = (
    semconv.REQUEST_MODEL,
    LLM_REQUEST_MODEL,
    OPENINFERENCE_MODEL_NAME,
)
#: OpenInference's ``llm.model_name`` is the model the API answered with.
RESPONSE_MODEL_ATTRIBUTES: Final = (
    semconv.RESPONSE_MODEL,
    LLM_RESPONSE_MODEL,
    OPENINFERENCE_MODEL_NAME,
)
TOOL_NAME_ATTRIBUTES: Final = (semconv.TOOL_NAME, OPENINFERENCE_TOOL_NAME, TRACELOOP_ENTITY_NAME)

#: Finish reasons meaning "the model asked for tools": the next model call continues the turn.
TOOL_FINISH_REASONS: Final = frozenset({"tool_calls", "tool_call", "tool_use", "function_call"})
_FINISH_REASON_ATTRIBUTES: Final = (
    FINISH_REASONS,
    OPENINFERENCE_FINISH_REASON,
    TRACELOOP_COMPLETION + "0.finish_reason",
)
#: ``error.type`` for a failed span that names no error type (the semantic conventions' value).
OTHER_ERROR: Final = "_OTHER"
#: Span-name prefix of tool spans, stripped when the tool's name is only in the span name.
TOOL_SPAN_PREFIX: Final = "execute_tool "


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


def _text(value: object) -> str | None:
    if type(value) is int:
        return str(value)
    return value if type(value) is str and value else None


def _metadata(attributes: Mapping[str, object]) -> Mapping[str, object]:
    """LangChain/LangGraph run metadata as OpenInference records it (a JSON object string)."""
    raw = attributes.get(OPENINFERENCE_METADATA)
    if type(raw) is not str or not raw.startswith("{"):
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _from_metadata(attributes: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    if OPENINFERENCE_METADATA not in attributes:
        return None  # most spans: no run metadata to parse
    metadata = _metadata(attributes)
    configurable = metadata.get("configurable")
    for source in (metadata, configurable if isinstance(configurable, dict) else {}):
        for key in keys:
            found = _text(source.get(key))
            if found is not None:
                return found
    return None


def conversation_id_of(attributes: Mapping[str, object]) -> str | None:
    """The conversation id an instrumentation put on a span: the conventions' attributes, then
    LangChain/LangGraph run metadata (``conversation_id``, ``session_id``, ``thread_id``)."""
    found = _text(first_of(attributes, CONVERSATION_ID_ATTRIBUTES))
    if found is not None:
        return found
    return _from_metadata(attributes, METADATA_CONVERSATION_KEYS)


def user_id_of(attributes: Mapping[str, object]) -> str | None:
    """The raw user id an instrumentation put on a span (to be pseudonymised exactly once)."""
    found = _text(first_of(attributes, USER_ID_ATTRIBUTES))
    if found is not None:
        return found
    return _from_metadata(attributes, METADATA_USER_KEYS)


def agent_name_of(attributes: Mapping[str, object], role: SpanRole | None) -> str | None:
    """The agent a span names: ``gen_ai.agent.name``, OpenInference's ``agent.name``, or the
    entity name of a Traceloop ``@agent`` span."""
    found = _text(first_of(attributes, AGENT_NAME_ATTRIBUTES))
    if found is None and role is SpanRole.AGENT:
        found = _text(attributes.get(TRACELOOP_ENTITY_NAME))
    return found


def tool_name_of(attributes: Mapping[str, object], span_name: str) -> str:
    found = _text(first_of(attributes, TOOL_NAME_ATTRIBUTES))
    return found if found is not None else span_name.removeprefix(TOOL_SPAN_PREFIX)


def asks_for_tools(attributes: Mapping[str, object]) -> bool:
    """Whether a model call ended by asking for tool results (so the turn goes on)."""
    for name in _FINISH_REASON_ATTRIBUTES:
        reasons = attributes.get(name)
        if isinstance(reasons, str):
            reasons = (reasons,)
        if isinstance(reasons, (list, tuple)) and any(r in TOOL_FINISH_REASONS for r in reasons):
            return True
    return False


def tool_calls_of(attributes: Mapping[str, object]) -> list[str]:
    """Names of the tools a model call asked for, as its instrumentation recorded the output
    (OpenInference and OpenLLMetry flattened messages, or the latest conventions'
    ``gen_ai.output.messages``); empty when the output was not captured."""
    names: list[str] = []
    for key, value in attributes.items():
        if type(value) is not str or not value:
            continue
        if (
            key.startswith(OPENINFERENCE_OUTPUT_MESSAGES)
            and key.endswith(OPENINFERENCE_TOOL_CALL_NAME)
        ) or (
            key.startswith(TRACELOOP_COMPLETION)
            and ".tool_calls." in key
            and key.endswith(TRACELOOP_TOOL_CALL_NAME)
        ):
            names.append(value)
    if not names:
        names.extend(_output_message_tool_calls(attributes.get(OUTPUT_MESSAGES)))
    return names


def _output_message_tool_calls(raw: object) -> Iterator[str]:
    if type(raw) is not str or "tool_call" not in raw:
        return
    try:
        messages = json.loads(raw)
    except ValueError:
        return
    for message in messages if isinstance(messages, list) else ():
        parts = message.get("parts") if isinstance(message, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if isinstance(part, dict) and part.get("type") == "tool_call":
                name = _text(part.get("name"))
                if name is not None:
                    yield name


def last_user_message(attributes: Mapping[str, object]) -> str | None:
    """The text of the last user message in a model call's captured input (the latest
    conventions' ``gen_ai.input.messages``, or OpenInference / OpenLLMetry flattened messages);
    ``None`` when the instrumentation captured no content."""
    for prefix, role_suffix, content_suffix in _FLAT_INPUT:
        best: tuple[int, str] | None = None
        for key, value in attributes.items():
            if value != USER_ROLE or not key.startswith(prefix) or not key.endswith(role_suffix):
                continue
            index = key[len(prefix) : -len(role_suffix)]
            content = attributes.get(prefix + index + content_suffix)
            usable = index.isdigit() and type(content) is str and content
            if usable and (best is None or int(index) > best[0]):
                best = (int(index), content)  # type: ignore[assignment]
        if best is not None:
            return best[1]
    return _input_messages_text(attributes.get(INPUT_MESSAGES))


def _input_messages_text(raw: object) -> str | None:
    if type(raw) is not str or USER_ROLE not in raw:
        return None
    try:
        messages = json.loads(raw)
    except ValueError:
        return None
    listed: list[object] = messages if isinstance(messages, list) else []
    for message in reversed(listed):
        if not isinstance(message, dict) or message.get("role") != USER_ROLE:
            continue
        parts: object = message.get("parts")
        texts = [
            part["content"]
            for part in (parts if isinstance(parts, list) else ())
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("content"), str)
        ]
        if texts:
            return " ".join(texts)
    return None

"""Conversation events derived from GenAI spans, for agents that record no events explicitly.

A span in a conversation (``gen_ai.conversation.id`` or a variant) whose role is known
(:mod:`opentelemetry.instrumentation.conversation.genai`) gives:

======================================  ==========================================================
span                                    derived events
======================================  ==========================================================
opens a turn (agent invocation, or a    ``user_message`` at its start, ``agent_response`` at its
top-level model call)                   end (answering model, ``error.type``); on turn 1 also
                                        ``started``
tool execution                          ``tool_called`` at its end (tool name, ``error.type``)
any other GenAI span                    nothing (its model reaches the turn's root in the agent)
======================================  ==========================================================

Whether a span opens a turn is marked in the agent by the conversation span processor
(``conversation.turn.root``). Spans from agents without it fall back to: agent invocations open
turns, model calls open one only when they are a trace's root. Completion, handoff and feedback
are never derived: no span implies them.

Derived rows have deterministic ids (trace, span, kind), so re-exports deduplicate; they are
marked ``derived`` so the store counts them only where the conversation has no explicit event
of the same kind.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from typing import Final

from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    row_from_attributes,
)
from opentelemetry.instrumentation.conversation import genai, semconv
from opentelemetry.instrumentation.conversation.genai import SpanRole
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

#: ``error.type`` for a failed span that names no error type (the semantic conventions' value).
OTHER_ERROR: Final = "_OTHER"
#: Span-name prefix of tool spans, stripped when the tool's name is only in the span name.
_TOOL_SPAN_PREFIX: Final = "execute_tool "
#: Context every derived event carries from its span, when the span has it.
_CARRIED: Final = (
    (semconv.USER_ID, genai.USER_ID_ATTRIBUTES),
    (semconv.AGENT_NAME, genai.AGENT_NAME_ATTRIBUTES),
    (semconv.AGENT_VERSION, (semconv.AGENT_VERSION,)),
    (semconv.PROMPT_VERSION, (semconv.PROMPT_VERSION,)),
    (semconv.REQUEST_MODEL, genai.REQUEST_MODEL_ATTRIBUTES),
    (semconv.CHANNEL, (semconv.CHANNEL,)),
    (semconv.TURN, (semconv.TURN,)),
)


def derive_rows(
    attributes: Mapping[str, object],
    *,
    name: str,
    start_ns: int,
    end_ns: int,
    has_parent: bool,
    failed: bool,
    rows: list[EventRow],
    rejected: Counter[str],
    service: str = "",
    trace_id: str = "",
    span_id: str = "",
) -> None:
    """Append the events one span implies to ``rows`` (rejections counted by reason)."""
    role = genai.span_role(attributes)
    if role is None:
        return
    conversation_id = genai.first_of(attributes, genai.CONVERSATION_ID_ATTRIBUTES)
    if conversation_id is None:
        return
    common: dict[str, object] = {semconv.CONVERSATION_ID: conversation_id}
    for target, names in _CARRIED:
        value = genai.first_of(attributes, names)
        if value is not None:
            common[target] = value
    user = common.get(semconv.USER_ID)
    if isinstance(user, str) and semconv.TURN_ROOT not in attributes:
        # Not stamped by the conversation processor (an agent without it, via the collector):
        # the user id is the instrumentation's raw one, so pseudonymise it here.
        common[semconv.USER_ID] = _pseudonymizer()(user)
    error_type = attributes.get(semconv.ERROR_TYPE) or (OTHER_ERROR if failed else None)
    events: list[tuple[ConversationEvent, int, dict[str, object]]] = []
    if role is SpanRole.TOOL:
        tool = genai.first_of(attributes, genai.TOOL_NAME_ATTRIBUTES)
        if tool is None:
            tool = name.removeprefix(_TOOL_SPAN_PREFIX)
        events.append(
            (
                ConversationEvent.TOOL_CALLED,
                end_ns,
                {**common, semconv.TOOL_NAME: tool, semconv.ERROR_TYPE: error_type},
            )
        )
    elif _opens_turn(attributes, role, has_parent):
        if common.get(semconv.TURN) == 1:
            events.append((ConversationEvent.STARTED, start_ns, common))
        events.append((ConversationEvent.USER_MESSAGE, start_ns, common))
        response = {
            **common,
            semconv.RESPONSE_MODEL: genai.first_of(attributes, genai.RESPONSE_MODEL_ATTRIBUTES),
            semconv.ERROR_TYPE: error_type,
        }
        events.append((ConversationEvent.AGENT_RESPONSE, end_ns or start_ns, response))
    for kind, time_ns, values in events:
        try:
            row = row_from_attributes(
                kind,
                values,
                time_ns,
                service_name=service,
                trace_id=trace_id,
                span_id=span_id,
            )
        except RejectedEvent as exc:
            rejected[exc.reason] += 1
            continue
        row.derived = True
        rows.append(row)


@functools.cache
def _pseudonymizer() -> UserIdPseudonymizer:
    """Keyed as the agents' (``CONVERSATION_ANALYTICS_USER_ID_KEY``), made on first need."""
    return UserIdPseudonymizer()


def _opens_turn(attributes: Mapping[str, object], role: SpanRole, has_parent: bool) -> bool:
    marked = attributes.get(semconv.TURN_ROOT)
    if isinstance(marked, bool):
        return marked
    return role is SpanRole.AGENT or (role is SpanRole.MODEL and not has_parent)

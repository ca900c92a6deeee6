"""Fallback: conversation events from GenAI spans that did not pass the conversation span
processor (an agent sending OTLP without it, or only its exporter installed).

Agents with the processor get their turns decided in the agent, over the whole span tree
(:mod:`opentelemetry.instrumentation.conversation.turns`), and send the derived events; their
spans carry ``conversation.processed`` and are skipped here. Without it, each span in a
conversation (an id it carries, as ``genai.conversation_id_of`` reads it)
is read on its own:

======================================  ==========================================================
span                                    derived events
======================================  ==========================================================
agent invocation, or a model call at    ``user_message`` at its start, ``agent_response`` at its
a trace's root                          end (answering model, ``error.type``); on turn 1 also
                                        ``started``
tool execution                          ``tool_called`` at its end (tool name, ``error.type``)
any other GenAI span                    nothing
======================================  ==========================================================

A span alone cannot say whether a model call answers a tool result or is a second
instrumentation's view of the same call, so this path is approximate (the README says where).
Raw user ids are pseudonymised here, once, since no agent-side processor did it. Completion,
handoff and feedback are never derived: no span implies them.

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

#: Context every derived event carries from its span, when the span has it.
_CARRIED: Final = (
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
    conversation_id = genai.conversation_id_of(attributes)
    if conversation_id is None:
        return
    common: dict[str, object] = {semconv.CONVERSATION_ID: conversation_id, semconv.DERIVED: True}
    for target, names in _CARRIED:
        value = genai.first_of(attributes, names)
        if value is not None:
            common[target] = value
    agent = genai.agent_name_of(attributes, role)
    if agent is not None:
        common[semconv.AGENT_NAME] = agent
    user = genai.user_id_of(attributes)
    if user is not None:
        # No agent-side processor saw this span: the id is the instrumentation's raw one.
        common[semconv.USER_ID] = _pseudonymizer()(user)
    error_type = attributes.get(semconv.ERROR_TYPE) or (genai.OTHER_ERROR if failed else None)
    events: list[tuple[ConversationEvent, int, dict[str, object]]] = []
    if role is SpanRole.TOOL:
        tool = genai.tool_name_of(attributes, name)
        events.append(
            (
                ConversationEvent.TOOL_CALLED,
                end_ns,
                {**common, semconv.TOOL_NAME: tool, semconv.ERROR_TYPE: error_type},
            )
        )
    elif role is SpanRole.AGENT or (role is SpanRole.MODEL and not has_parent):
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
        rows.append(row)


@functools.cache
def _pseudonymizer() -> UserIdPseudonymizer:
    """Keyed as the agents' (``CONVERSATION_ANALYTICS_USER_ID_KEY``), made on first need."""
    return UserIdPseudonymizer()

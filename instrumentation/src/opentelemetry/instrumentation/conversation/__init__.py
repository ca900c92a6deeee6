"""Conversation analytics instrumentation: lifecycle events as span events on the agent's traces.

Usage::

    from opentelemetry.instrumentation.conversation import ConversationEvent, ConversationTracker

    tracker = ConversationTracker(agent_name="support-bot")
    tracker.record(conversation_id, user_id, ConversationEvent.STARTED, channel="web")

or, with GenAI-instrumented agents and ``ConversationInstrumentor`` on::

    with conversation(conversation_id, user_id=user_id) as conv:
        answer = agent.run(message)   # turns, tools and models come from the GenAI spans
        conv.complete()               # what no span implies stays one explicit call
"""

from typing import Any

from opentelemetry.instrumentation.conversation.context import (
    ConversationScope,
    conversation,
    current_conversation,
)
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent
from opentelemetry.instrumentation.conversation.tracker import ConversationTracker, RecordedEvent
from opentelemetry.instrumentation.conversation.version import __version__


def __getattr__(name: str) -> Any:
    # The instrumentor needs opentelemetry-instrumentation; the tracker needs only the API.
    if name == "ConversationInstrumentor":
        from opentelemetry.instrumentation.conversation.instrumentor import (
            ConversationInstrumentor,
        )

        return ConversationInstrumentor
    raise AttributeError(name)


__all__ = [
    "ConversationEvent",
    "ConversationInstrumentor",
    "ConversationScope",
    "ConversationTracker",
    "RecordedEvent",
    "UserIdPseudonymizer",
    "__version__",
    "conversation",
    "current_conversation",
]

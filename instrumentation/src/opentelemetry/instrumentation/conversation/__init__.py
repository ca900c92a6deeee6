"""Conversation analytics instrumentation: lifecycle events as span events on the agent's traces.

Usage::

    from opentelemetry.instrumentation.conversation import ConversationEvent, ConversationTracker

    tracker = ConversationTracker(agent_name="support-bot")
    tracker.record(conversation_id, user_id, ConversationEvent.STARTED, channel="web")
"""

from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent
from opentelemetry.instrumentation.conversation.tracker import ConversationTracker, RecordedEvent
from opentelemetry.instrumentation.conversation.version import __version__

__all__ = [
    "ConversationEvent",
    "ConversationTracker",
    "RecordedEvent",
    "UserIdPseudonymizer",
    "__version__",
]

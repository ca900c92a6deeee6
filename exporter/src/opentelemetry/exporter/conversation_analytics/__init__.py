"""Conversation analytics for AI agents: span exporter, stores, analytics and CLI."""

from opentelemetry.exporter.conversation_analytics.analytics import (
    ConversationDetail,
    Report,
    satisfaction,
)
from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.store import (
    ConversationStore,
    StoreError,
    open_store,
)
from opentelemetry.exporter.conversation_analytics.version import __version__

__all__ = [
    "ConversationAnalyticsExporter",
    "ConversationDetail",
    "ConversationStore",
    "Report",
    "StoreError",
    "__version__",
    "open_store",
    "satisfaction",
]

"""Stores: where conversation events live. ``open_store(url)`` picks the engine from the URL."""

from opentelemetry.exporter.conversation_analytics.store.base import ConversationStore, StoreError
from opentelemetry.exporter.conversation_analytics.store.sql import Schema
from opentelemetry.exporter.conversation_analytics.store.url import (
    DEFAULT_STORE_URL,
    open_store,
    resolve_store_url,
)

__all__ = [
    "DEFAULT_STORE_URL",
    "ConversationStore",
    "Schema",
    "StoreError",
    "open_store",
    "resolve_store_url",
]

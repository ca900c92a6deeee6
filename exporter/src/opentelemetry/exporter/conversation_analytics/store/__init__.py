"""Stores: where conversation events live. ``open_store(url)`` picks the engine from the URL."""

from opentelemetry.exporter.conversation_analytics.store.base import (
    MAX_DAYS,
    ConversationStore,
    NoStore,
    StoreError,
    StoreInUse,
    UnknownConversation,
    check_days,
    check_dimension,
    check_limit,
    check_min_turns,
    check_order,
    check_outcome,
    parse_count,
    parse_days,
    parse_flag,
)
from opentelemetry.exporter.conversation_analytics.store.sql import COMPARE_DIMENSIONS, Schema
from opentelemetry.exporter.conversation_analytics.store.url import (
    DEFAULT_STORE_URL,
    open_store,
    resolve_store_url,
)

__all__ = [
    "COMPARE_DIMENSIONS",
    "DEFAULT_STORE_URL",
    "MAX_DAYS",
    "ConversationStore",
    "NoStore",
    "Schema",
    "StoreError",
    "StoreInUse",
    "UnknownConversation",
    "check_days",
    "check_dimension",
    "check_limit",
    "check_min_turns",
    "check_order",
    "check_outcome",
    "open_store",
    "parse_count",
    "parse_days",
    "parse_flag",
    "resolve_store_url",
]

"""Prometheus series of SPEC section 8, on an explicit registry, with bounded labels.

Conversation series carry only low-cardinality labels (agent, channel, prompt version, and on
outcome series the model; tool and outcome on tool calls); never conversation or user ids. Each
label keeps at most ``max_label_values`` distinct values; later ones fold into ``other``.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from opentelemetry.instrumentation.conversation import environment_variables as env

ENV_MAX_LABEL_VALUES: Final = env.CONVERSATION_ANALYTICS_MAX_LABEL_VALUES
DEFAULT_MAX_LABEL_VALUES: Final = env.DEFAULT_MAX_LABEL_VALUES
OTHER: Final = "other"
UNKNOWN: Final = "unknown"

# Metric names (the one module that spells them).
STARTED: Final = "agent_conversations_started"
COMPLETED: Final = "agent_conversations_completed"
ABANDONED: Final = "agent_conversations_abandoned"
HANDOFFS: Final = "agent_conversation_handoffs"
TOOL_CALLS: Final = "agent_conversation_tool_calls"
FEEDBACK: Final = "agent_conversation_feedback"
USER_MESSAGES: Final = "agent_conversation_user_messages"
REPHRASES: Final = "agent_conversation_rephrases"
TURNS: Final = "agent_conversation_turns"
DURATION: Final = "agent_conversation_duration_seconds"
ABANDONED_AT_TURN: Final = "agent_conversation_abandoned_at_turn"
SATISFACTION: Final = "agent_conversation_satisfaction"
EVALUATIONS: Final = "agent_conversation_evaluations"
EVENTS_RECEIVED: Final = "conversation_analytics_events_received"
EVENTS_WRITTEN: Final = "conversation_analytics_events_written"
EVENTS_DROPPED: Final = "conversation_analytics_events_dropped"
EVENTS_DUPLICATE: Final = "conversation_analytics_events_duplicate"
EVENTS_REJECTED: Final = "conversation_analytics_events_rejected"
WRITE_ERRORS: Final = "conversation_analytics_write_errors"
QUEUE_DEPTH: Final = "conversation_analytics_queue_depth"
BATCH_WRITE_SECONDS: Final = "conversation_analytics_batch_write_duration_seconds"

#: Labels known from a conversation's start (channel from ``started``, the rest on every event).
_CACHE_LIMIT: Final = 10_000
CONVERSATION_LABELS: Final = ("agent", "channel", "prompt_version")
#: Outcome series add the model, known once the agent has answered.
OUTCOME_LABELS: Final = (*CONVERSATION_LABELS, "model")
TURN_BUCKETS: Final = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)
DURATION_BUCKETS: Final = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
SATISFACTION_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
WRITE_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LabelLimiter:
    """Keeps each label's distinct values bounded: past the limit, new values become ``other``."""

    def __init__(self, max_values: int | None = None) -> None:
        if max_values is None:
            raw = env.env_str(ENV_MAX_LABEL_VALUES)
            max_values = int(raw) if raw else DEFAULT_MAX_LABEL_VALUES
        if max_values < 1:
            raise ValueError("max_label_values must be at least 1")
        self.max_values = max_values
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: str) -> str:
        value = value or UNKNOWN
        seen = self._seen.get(label)
        if seen is not None and value in seen:
            return value
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) >= self.max_values:
                return OTHER
            seen.add(value)
            return value


class ConversationMetrics:
    """The conversation series and the pipeline's own health series."""

    def __init__(
        self, registry: CollectorRegistry | None = None, max_label_values: int | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._label_cache: dict[tuple[str, str, str, str], tuple[str, str, str, str]] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.limit = LabelLimiter(max_label_values)
        r = self.registry
        labels = OUTCOME_LABELS
        self.started = Counter(STARTED, "Conversations started", CONVERSATION_LABELS, registry=r)
        self.completed = Counter(COMPLETED, "Conversations completed", labels, registry=r)
        self.abandoned = Counter(
            ABANDONED, "Conversations abandoned", (*labels, "inferred"), registry=r
        )
        self.handoffs = Counter(HANDOFFS, "Handoffs to a human", labels, registry=r)
        self.tool_calls = Counter(
            TOOL_CALLS, "Tool calls by tool and outcome", ("agent", "tool", "outcome"), registry=r
        )
        self.feedback = Counter(
            FEEDBACK, "Explicit feedback by rating", ("agent", "rating"), registry=r
        )
        self.evaluations = Counter(
            EVALUATIONS,
            "GenAI evaluation results by evaluation name and label",
            ("agent", "evaluation", "label"),
            registry=r,
        )
        self.user_messages = Counter(
            USER_MESSAGES, "User messages (turns)", CONVERSATION_LABELS, registry=r
        )
        self.rephrases = Counter(
            REPHRASES, "User messages that rephrase", CONVERSATION_LABELS, registry=r
        )
        self.turns = Histogram(
            TURNS,
            "User turns per finished conversation",
            labels,
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            DURATION,
            "Start to completion of a conversation",
            labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.abandoned_at_turn = Histogram(
            ABANDONED_AT_TURN,
            "Turn at which conversations were abandoned",
            labels,
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.satisfaction = Histogram(
            SATISFACTION,
            "Satisfaction score of finished conversations (0..1)",
            labels,
            buckets=SATISFACTION_BUCKETS,
            registry=r,
        )
        self.events_received = Counter(
            EVENTS_RECEIVED,
            "Conversation events received and accepted (a refused batch counts on its retry)",
            ("source",),
            registry=r,
        )
        self.events_written = Counter(
            EVENTS_WRITTEN, "Conversation events durably written to the store", registry=r
        )
        self.events_dropped = Counter(
            EVENTS_DROPPED, "Conversation events not stored, by reason", ("reason",), registry=r
        )
        self.events_duplicate = Counter(
            EVENTS_DUPLICATE, "Events seen again (re-exports, retries), counted once", registry=r
        )
        self.events_rejected = Counter(
            EVENTS_REJECTED,
            "Events refused with a retryable error (store down and spool full)",
            registry=r,
        )
        self.write_errors = Counter(WRITE_ERRORS, "Failed batch writes to the store", registry=r)
        self.queue_depth = Gauge(
            QUEUE_DEPTH,
            "Events accepted but not yet written (memory buffer and spool)",
            registry=r,
            multiprocess_mode="livesum",  # pre-fork workers: the sum over live workers
        )
        self.batch_write_seconds = Histogram(
            BATCH_WRITE_SECONDS,
            "Latency of one batch write to the store",
            buckets=WRITE_BUCKETS,
            registry=r,
        )

    def conversation_labels(
        self, agent: str, channel: str, prompt_version: str, model: str
    ) -> tuple[str, str, str, str]:
        """Bounded (agent, channel, prompt_version, model); start series use the first three."""
        key = (agent, channel, prompt_version, model)
        labels = self._label_cache.get(key)
        if labels is None:
            limit = self.limit
            labels = (
                limit("agent", agent),
                limit("channel", channel),
                limit("prompt_version", prompt_version),
                limit("model", model),
            )
            if len(self._label_cache) >= _CACHE_LIMIT:
                self._label_cache.clear()
            self._label_cache[key] = labels
        return labels

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the lookup is the hot path's largest cost."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*labels)
            if len(self._children) >= _CACHE_LIMIT:
                self._children.clear()
            self._children[key] = found
        return found

"""GenAI evaluation results (``gen_ai.evaluation.result``) as conversation rows.

An evaluation arrives as a span event (on the span it judges, which the conversation span processor
has stamped with the conversation) or as a log record (the Logs API, where OpenTelemetry is moving
events). It is stored as one ``evaluation`` row: name, score and label, under the conversation of
the event, else of its span, else of its trace as seen recently. The explanation is free text and
is never stored; neither is a user id on the event (the conversation already has its user,
pseudonymised once in the agent).

Evaluations whose name is listed in ``CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS`` (default
``user_feedback``) are the user's own verdict: each also gives one explicit ``feedback_received``
row, so satisfaction, Prometheus and every report count it exactly as a recorded rating.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    RejectedEvent,
    derived_event_id,
    row_from_attributes,
)
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

#: Span (or recently seen trace) attributes an evaluation inherits when it does not carry them.
CONTEXT_KEYS: Final = (
    semconv.CONVERSATION_ID,
    semconv.AGENT_NAME,
    semconv.AGENT_VERSION,
    semconv.PROMPT_VERSION,
    semconv.REQUEST_MODEL,
    semconv.RESPONSE_MODEL,
    semconv.CHANNEL,
)
#: Metadata key naming the evaluation a feedback row came from.
SOURCE_KEY: Final = "evaluation"
DEFAULT_TRACE_LIMIT: Final = 100_000
_FEEDBACK: Final = ConversationEvent.FEEDBACK_RECEIVED.value
_FEEDBACK_THRESHOLD: Final = 0.5


def feedback_evaluations(names: str | Iterable[str] | None = None) -> frozenset[str]:
    """The evaluation names that count as user feedback: ``names`` (a comma-separated string or
    an iterable), else ``$CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS``, else ``user_feedback``.
    An empty value means none."""
    if names is None:
        names = os.environ.get(env.CONVERSATION_ANALYTICS_FEEDBACK_EVALUATIONS)
        if names is None:
            return frozenset(env.DEFAULT_FEEDBACK_EVALUATIONS)
    if isinstance(names, str):
        names = names.split(",")
    return frozenset(name.strip() for name in names if name.strip())


def feedback_rating(label: str, score: float | None) -> str | None:
    """A feedback evaluation's rating: its label when that is ``positive``/``negative``, else
    ``positive`` for a score of at least 0.5 and ``negative`` below; ``None`` with neither."""
    normalized = label.strip().lower()
    if normalized in semconv.RATINGS:
        return normalized
    if score is None:
        return None
    return semconv.RATING_POSITIVE if score >= _FEEDBACK_THRESHOLD else semconv.RATING_NEGATIVE


class TraceConversations:
    """Which conversation each recently seen trace belongs to (bounded, oldest forgotten first),
    for evaluation log records that name only their trace. Thread-safe: receivers share it."""

    def __init__(self, limit: int = DEFAULT_TRACE_LIMIT) -> None:
        self._limit = limit
        #: Values in ``CONTEXT_KEYS`` order: a tuple of strings, which the cyclic GC stops
        #: tracking, so up to ``limit`` of them add nothing to every full collection (a dict
        #: per trace did); read back as a dict only for the rare evaluation that needs one.
        self._contexts: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, rows: Sequence[EventRow]) -> None:
        """Note the conversation (and agent, versions, models) of every trace in ``rows``."""
        last = ""
        contexts = self._contexts
        with self._lock:  # once per batch, not per trace
            for row in rows:
                trace_id = row.trace_id
                if not trace_id or trace_id == last:
                    continue
                last = trace_id
                contexts[trace_id] = (  # CONTEXT_KEYS order
                    row.conversation_id,
                    row.agent_name,
                    row.agent_version,
                    row.prompt_version,
                    row.request_model,
                    row.response_model,
                    row.channel,
                )
                contexts.move_to_end(trace_id)
                if len(contexts) > self._limit:
                    contexts.popitem(last=False)

    def context(self, trace_id: str) -> Mapping[str, Any]:
        with self._lock:
            values = self._contexts.get(trace_id)
        return {} if values is None else dict(zip(CONTEXT_KEYS, values, strict=True))


def evaluation_rows(
    attributes: Mapping[str, Any],
    time_ns: int,
    *,
    context: Mapping[str, Any],
    feedback_names: frozenset[str],
    service: str = "",
    trace_id: str = "",
    span_id: str = "",
    store_content: bool = False,
) -> list[EventRow]:
    """The ``evaluation`` row of one evaluation result (plus its ``feedback_received`` row when
    its name counts as feedback); :class:`RejectedEvent` when it has no name or conversation."""
    name = attributes.get(semconv.EVALUATION_NAME)
    if type(name) is not str or not name.strip():
        raise RejectedEvent("missing_evaluation_name", "evaluation result has no name")
    merged = {key: context[key] for key in CONTEXT_KEYS if context.get(key)}
    merged.update(attributes)
    merged.pop(semconv.USER_ID, None)
    if not merged.get(semconv.EVENT_ID):
        merged[semconv.EVENT_ID] = derived_event_id(
            trace_id,
            span_id,
            semconv.EVALUATION_EVENT_TYPE,
            time_ns,
            merged.get(semconv.CONVERSATION_ID),
            name,
        )
    row = row_from_attributes(
        semconv.EVALUATION_EVENT_TYPE,
        merged,
        time_ns,
        service_name=service,
        trace_id=trace_id,
        span_id=span_id,
        store_content=store_content,
    )
    if row.evaluation_name not in feedback_names:
        return [row]
    rating = feedback_rating(row.evaluation_label, row.evaluation_score)
    if rating is None:
        return [row]
    score = row.evaluation_score
    feedback = replace(
        row,
        event_id=derived_event_id(row.event_id, _FEEDBACK),
        event_type=_FEEDBACK,
        feedback_rating=rating,
        feedback_score=score if score is not None and 0 <= score <= 1 else None,
        evaluation_name="",
        evaluation_score=None,
        evaluation_label="",
        attributes={SOURCE_KEY: row.evaluation_name},
    )
    return [row, feedback]

"""``ConversationSpanProcessor``: turns a conversation's GenAI spans into conversation events.

At span start it stamps the current conversation (a :func:`~.context.conversation` scope, its
baggage from a front end, a parent span in a conversation, or an id the framework put on the span)
on every span started inside it, with ``gen_ai.agent.name`` and a ``conversation.processed`` mark.

Turns are decided later, when the conversation's local span tree (the spans that started inside
it in this process, below one parent outside it) has ended: instrumentations name their spans at
different moments, so only final attributes tell an agent run from a chain, a model call from the
same call seen by a second instrumentation, or a call that asked for tools
(:mod:`~.turns`). The tree's turns are then emitted as span events (``user_message``,
``tool_called``, ``agent_response``, ``started`` on the first turn, each marked
``conversation.derived``) on a short ``conversation.turn`` span under each turn's first span, so
the in-process exporter and the OTLP collector read exactly the same events.

User ids are pseudonymised here, once: the scope's, or the raw id an instrumentation put on a span
(``user.id``, ``enduser.id``, association properties, run metadata). Imported only when the SDK
is present (the instrumentor checks); never raises into the agent.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, StatusCode, TracerProvider

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation import genai, semconv
from opentelemetry.instrumentation.conversation.context import (
    agents_seen,
    baggage_key,
    current_conversation,
)
from opentelemetry.instrumentation.conversation.derived import Attributes, DerivedSpans
from opentelemetry.instrumentation.conversation.genai import SpanRole
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent
from opentelemetry.instrumentation.conversation.turns import (
    SpanNode,
    Turn,
    TurnState,
    assign_turns,
)

if TYPE_CHECKING:
    from opentelemetry.instrumentation.conversation.rephrase import (
        RephraseDetector,
        RephraseResult,
    )

_logger = logging.getLogger(__name__)

#: Conversations whose turn state one process keeps (least recently used are forgotten).
MAX_CONVERSATIONS: Final = 10_000
#: Open spans tracked at once (a span never ended would otherwise be kept forever).
MAX_OPEN_SPANS: Final = 100_000
#: Traces outside any conversation whose GenAI spans are kept until their local root ends.
MAX_LATE_TRACES: Final = 10_000


@dataclass(slots=True, eq=False)
class _Tree:
    """A conversation's spans in this process since none of them was open: one burst of
    activity (a request, a run), with the scope's user and agent."""

    conversation_id: str
    user: str | None = None
    agent: str | None = None
    open: int = 0
    nodes: list[SpanNode] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _LateTrace:
    """Ended spans of one trace that started outside any conversation: kept until the trace's
    local root ends, since frameworks name the conversation only at the end (LangGraph's
    ``thread_id`` in run metadata, OpenInference's ``session.id``)."""

    #: span id -> (parent span id, node), in end order.
    spans: dict[int, tuple[int | None, SpanNode]] = field(default_factory=dict)
    conversation_id: str | None = None


@dataclass(slots=True)
class _Open:
    node: SpanNode
    tree: _Tree


class ConversationSpanProcessor(SpanProcessor):
    """Stamps conversations at span start and derives their turns when a tree ends."""

    def __init__(
        self,
        *,
        user_id_key: str | bytes | None = None,
        pseudonymize_user_ids: bool | None = None,
        agent_name: str | None = None,
        tracer_provider: TracerProvider | None = None,
        rephrase_detector: RephraseDetector | None = None,
    ) -> None:
        self.enabled = True
        #: Scores each turn's user message when the instrumentation captured its text.
        self._rephrases = rephrase_detector
        #: The agent for spans that name none (as the tracker's ``agent_name``), so explicit
        #: and derived events of one conversation share an agent.
        self._agent_name = agent_name or env.env_str(env.CONVERSATION_ANALYTICS_AGENT_NAME) or None
        self._baggage_key = baggage_key()  # read once, as SDK components read their env
        self._pseudonymize = UserIdPseudonymizer(user_id_key, pseudonymize_user_ids)
        self._derived = DerivedSpans(tracer_provider)
        self._turns: OrderedDict[str, TurnState] = OrderedDict()
        self._open: dict[int, _Open] = {}
        #: The open tree of each conversation active right now.
        self._active: dict[str, _Tree] = {}
        #: Traces with GenAI spans outside any conversation, by trace id (see _LateTrace).
        self._late: dict[int, _LateTrace] = {}
        self._lock = threading.Lock()
        self._failures = 0

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            if otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY, parent_context):
                return
            if span.name != semconv.DERIVED_SPAN_NAME:
                self._start(span, parent_context)
        except Exception:  # never raise into the agent
            self._fail("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._end(span)
        except Exception:
            self._fail("on_end")

    # ---- start: stamp and track -----------------------------------------------------------------

    def _start(self, span: Span, parent_context: otel_context.Context | None) -> None:
        parent = span.parent
        parent_open = self._open.get(parent.span_id) if parent is not None else None
        scope = current_conversation(parent_context, self._baggage_key)
        attributes = genai.plain_attributes(span.attributes)
        if scope is not None and scope.conversation_id is not None:
            conversation_id: str = scope.conversation_id
        elif parent_open is not None:
            conversation_id = parent_open.tree.conversation_id
        else:
            own = genai.conversation_id_of(attributes)
            if own is None or len(own) > semconv.MAX_ID_LENGTH:
                # Its turns, if a conversation id appears by its end, are derived here too.
                span.set_attribute(semconv.PROCESSED, True)
                return
            conversation_id = own
        in_parent = parent_open is not None and parent_open.tree.conversation_id == conversation_id
        node = SpanNode(parent_open.node if in_parent and parent_open is not None else None)
        span_id = span.get_span_context().span_id
        with self._lock:
            tree = self._active.get(conversation_id)
            if tree is None:
                tree = self._active[conversation_id] = _Tree(conversation_id)
            if scope is not None:
                tree.user = tree.user or scope.user_id
                tree.agent = tree.agent or scope.agent
            if len(self._open) >= MAX_OPEN_SPANS:
                evicted = self._open.pop(next(iter(self._open)))
                evicted.tree.open -= 1
            tree.open += 1
            tree.nodes.append(node)
            self._open[span_id] = _Open(node, tree)
        stamps: Attributes = {semconv.CONVERSATION_ID: conversation_id, semconv.PROCESSED: True}
        agent = scope.agent if scope is not None else None
        if agent or (self._agent_name and semconv.AGENT_NAME not in attributes):
            stamps[semconv.AGENT_NAME] = agent or self._agent_name  # type: ignore[assignment]
        span.set_attributes(stamps)  # one call: each takes the span's lock and validates

    # ---- end: record final facts; derive when the tree has ended ---------------------------------

    def _end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is None:
            return
        with self._lock:
            entry = self._open.pop(context.span_id, None) if self._open else None
        if entry is None:
            self._end_late(span, context)
            return
        node = entry.node
        attributes = genai.plain_attributes(span.attributes)
        _record(node, span, attributes, self._rephrases is not None)
        tree = entry.tree
        with self._lock:
            tree.open -= 1
            if tree.open > 0:
                return
            if self._active.get(tree.conversation_id) is tree:
                del self._active[tree.conversation_id]
            state = self._state(tree.conversation_id)
            turns = assign_turns(tree.nodes, state)
        if turns:
            self._emit(tree, turns)

    def _end_late(self, span: ReadableSpan, context: SpanContext) -> None:
        """A span that started outside any conversation: kept with its trace's GenAI spans
        until the trace's local root ends, then turned into turns if one of them (the
        outermost first) named a conversation by its end."""
        trace_id = context.trace_id
        late = self._late.get(trace_id)
        attributes = genai.plain_attributes(span.attributes)
        parent = span.parent
        local_root = parent is None or parent.is_remote
        own = genai.conversation_id_of(attributes)
        if own is not None and len(own) > semconv.MAX_ID_LENGTH:
            own = None
        if late is None:
            if local_root and own is None:
                return  # a lone span (or a trace with no GenAI span below) naming none
            if genai.span_role(attributes) is None:
                return  # the common case outside conversations: no GenAI span in this trace
            with self._lock:
                late = self._late.setdefault(trace_id, _LateTrace())
                if len(self._late) > MAX_LATE_TRACES:
                    del self._late[next(iter(self._late))]
        node = SpanNode(None)
        _record(node, span, attributes, self._rephrases is not None)
        if len(late.spans) < MAX_OPEN_SPANS:
            late.spans[context.span_id] = (None if local_root else parent.span_id, node)  # type: ignore[union-attr]
        if own is not None:
            late.conversation_id = own  # ends after its children: the outermost wins
        if not local_root:
            return
        with self._lock:
            self._late.pop(trace_id, None)
            if late.conversation_id is None:
                return
            spans = late.spans
            for parent_id, child in spans.values():
                found = spans.get(parent_id) if parent_id is not None else None
                child.parent = found[1] if found is not None else None
            tree = _Tree(late.conversation_id)
            tree.nodes = [child for _, child in spans.values()]
            turns = assign_turns(tree.nodes, self._state(tree.conversation_id))
        if turns:
            self._emit(tree, turns)

    def _state(self, conversation_id: str) -> TurnState:
        """The conversation's turn state; called under the lock."""
        state = self._turns.get(conversation_id)
        if state is None:
            state = self._turns[conversation_id] = TurnState()
            if len(self._turns) > MAX_CONVERSATIONS:
                self._turns.popitem(last=False)
        else:
            self._turns.move_to_end(conversation_id)
        return state

    def _emit(self, tree: _Tree, turns: list[Turn]) -> None:
        conversation_id = tree.conversation_id
        for turn in turns:
            first = turn.first.context
            events = _events(turn, self._rephrase(conversation_id, turn))
            if not events or not isinstance(first, SpanContext):
                continue
            agent = tree.agent or turn.agent or self._agent_name
            if turn.agent and tree.agent is None:
                agents_seen.remember(conversation_id, turn.agent)
            user = tree.user or turn.user
            common: Attributes = {
                semconv.CONVERSATION_ID: conversation_id,
                semconv.DERIVED: True,
                semconv.TURN: turn.number,
            }
            if user:
                common[semconv.USER_ID] = self._pseudonymize(user)
            if agent:
                common[semconv.AGENT_NAME] = agent
            if turn.request_model:
                common[semconv.REQUEST_MODEL] = turn.request_model
            prefix = f"{first.trace_id:032x}{first.span_id:016x}"
            self._derived.emit(
                first,
                turn.start_ns,
                turn.end_ns,
                {semconv.CONVERSATION_ID: conversation_id, semconv.TURN: turn.number},
                [
                    (
                        kind.event_name,
                        time_ns,
                        {**common, **extra, semconv.EVENT_ID: f"{prefix}-{i}"},
                    )
                    for i, (kind, time_ns, extra) in enumerate(events)
                ],
            )

    def _rephrase(self, conversation_id: str, turn: Turn) -> RephraseResult | None:
        """Score the user message that opened ``turn``; its text goes no further."""
        text, turn.user_text = turn.user_text, None
        if self._rephrases is None or not turn.opened or text is None:
            return None
        return self._rephrases.observe(conversation_id, text)

    def _fail(self, where: str) -> None:
        self._failures += 1
        if self._failures == 1:
            _logger.warning(
                "conversation span processor failed in %s (logged once)", where, exc_info=True
            )

    def shutdown(self) -> None:
        self.enabled = False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _record(
    node: SpanNode, span: ReadableSpan, attributes: Mapping[str, object], text: bool
) -> None:
    """Copy what turn assignment needs from a finished span onto its node (with ``text``, the
    user message a model call's input captured, for rephrase detection)."""
    role = genai.span_role(attributes)
    node.role = role
    node.name = span.name
    node.start_ns = span.start_time or 0
    node.end_ns = span.end_time or node.start_ns
    node.context = span.get_span_context()
    if role is None:
        return
    node.agent = genai.agent_name_of(attributes, role)
    node.user = genai.user_id_of(attributes)
    error = attributes.get(semconv.ERROR_TYPE)
    if isinstance(error, str) and error:
        node.error_type = error
    elif span.status.status_code is StatusCode.ERROR:
        node.error_type = genai.OTHER_ERROR
    if role is SpanRole.MODEL:
        node.request_model = _text(genai.first_of(attributes, genai.REQUEST_MODEL_ATTRIBUTES))
        node.response_model = _text(genai.first_of(attributes, genai.RESPONSE_MODEL_ATTRIBUTES))
        node.asks_for_tools = genai.asks_for_tools(attributes)
        node.tool_calls = tuple(genai.tool_calls_of(attributes))
        if text:
            node.user_text = genai.last_user_message(attributes)
    elif role is SpanRole.TOOL:
        node.tool = genai.tool_name_of(attributes, span.name)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _events(
    turn: Turn, rephrase: RephraseResult | None
) -> list[tuple[ConversationEvent, int, Attributes]]:
    """The derived events of one turn, in time order."""
    events: list[tuple[ConversationEvent, int, Attributes]] = []
    if turn.opened:
        if turn.number == 1:
            events.append((ConversationEvent.STARTED, turn.start_ns, {}))
        message: Attributes = {}
        if rephrase is not None:
            message[semconv.REPHRASE_SIMILARITY] = rephrase.similarity
            message[semconv.REPHRASE] = rephrase.rephrase
        events.append((ConversationEvent.USER_MESSAGE, turn.start_ns, message))
    for tool in turn.tools:
        extra: Attributes = {semconv.TOOL_NAME: tool.name}
        if tool.error_type:
            extra[semconv.ERROR_TYPE] = tool.error_type
        events.append((ConversationEvent.TOOL_CALLED, tool.time_ns, extra))
    if turn.answered:
        response: Attributes = {}
        if turn.response_model:
            response[semconv.RESPONSE_MODEL] = turn.response_model
        if turn.error_type:
            response[semconv.ERROR_TYPE] = turn.error_type
        events.append((ConversationEvent.AGENT_RESPONSE, turn.end_ns, response))
    return events

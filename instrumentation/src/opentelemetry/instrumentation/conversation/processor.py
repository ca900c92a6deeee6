"""``ConversationSpanProcessor``: stamps the current conversation onto every span started inside it.

Many GenAI instrumentations never set ``gen_ai.conversation.id``; the agent knows it (a
:func:`~.context.conversation` scope, or baggage from its front end), so this processor copies it
onto each span at start, with the pseudonymised ``user.id`` and ``gen_ai.agent.name``.

It also marks turns on GenAI spans, because only the agent process sees span parentage as it
happens: ``conversation.turn`` (a per-process ordinal) and ``conversation.turn.root`` (``True`` on
the span that opens a user turn). A turn opens at an agent invocation, or at a model call that is
neither inside an agent invocation nor the continuation of a model call that asked for tools.
The extraction layer turns the marked spans into ``user_message``/``agent_response``/``tool_called``
events. Imported only when the SDK is present (the instrumentor checks).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.conversation import genai, semconv
from opentelemetry.instrumentation.conversation.context import (
    ConversationScope,
    agents_seen,
    baggage_key,
    current_conversation,
)
from opentelemetry.instrumentation.conversation.genai import SpanRole
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer

_logger = logging.getLogger(__name__)

#: Conversations whose turn state one process keeps (least recently used are forgotten).
MAX_CONVERSATIONS: Final = 10_000
#: Open spans tracked at once (a span never ended would otherwise be kept forever).
MAX_OPEN_SPANS: Final = 100_000


@dataclass(slots=True)
class _Turns:
    """One conversation's turn state in this process."""

    turn: int = 0
    awaiting_tools: bool = False


@dataclass(slots=True)
class _Open:
    """An open span inside a conversation: its conversation, its turn (0: none yet) and role."""

    conversation_id: str
    turn: int
    role: SpanRole | None
    root: Span | None
    agent: str | None


class ConversationSpanProcessor(SpanProcessor):
    """Stamps conversation ids and turn marks at span start; never raises into the agent."""

    def __init__(
        self,
        *,
        user_id_key: str | bytes | None = None,
        pseudonymize_user_ids: bool | None = None,
        agent_name: str | None = None,
    ) -> None:
        self.enabled = True
        #: The agent for spans that name none (as the tracker's ``agent_name``), so explicit
        #: and derived events of one conversation share an agent.
        self._agent_name = agent_name or os.environ.get(semconv.ENV_AGENT_NAME) or None
        self._baggage_key = baggage_key()  # read once, as SDK components read their env
        self._pseudonymize = UserIdPseudonymizer(user_id_key, pseudonymize_user_ids)
        self._turns: OrderedDict[str, _Turns] = OrderedDict()
        self._open: dict[int, _Open] = {}
        self._lock = threading.Lock()
        self._pseudonyms: dict[str, str] = {}
        self._failures = 0

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            if otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY, parent_context):
                return
            self._start(span, parent_context)
        except Exception:  # never raise into the agent
            self._fail("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if not self._open:
            return
        try:
            self._end(span)
        except Exception:
            self._fail("on_end")

    # ---- internals -------------------------------------------------------------------------------

    def _start(self, span: Span, parent_context: otel_context.Context | None) -> None:
        parent = span.parent
        parent_open = self._open.get(parent.span_id) if parent is not None else None
        scope = current_conversation(parent_context, self._baggage_key)
        attributes = genai.plain_attributes(span.attributes)
        if scope is not None and scope.conversation_id is not None:
            conversation_id: str = scope.conversation_id
        elif parent_open is not None:
            conversation_id = parent_open.conversation_id
        else:
            own = genai.first_of(attributes, genai.CONVERSATION_ID_ATTRIBUTES)
            if type(own) is not str or not own:
                return
            conversation_id = own
        stamps: dict[str, str | int | bool] = {semconv.CONVERSATION_ID: conversation_id}
        agent = self._stamp(stamps, attributes, scope, parent_open)
        if agent and (scope is None or not scope.agent):
            agents_seen.remember(conversation_id, agent)
        role = genai.span_role(attributes)
        with self._lock:
            turn, root = self._turn_of(span, conversation_id, role, parent_open)
            if len(self._open) >= MAX_OPEN_SPANS:
                self._open.pop(next(iter(self._open)))
            context = span.get_span_context()
            if context is not None:
                self._open[context.span_id] = _Open(conversation_id, turn, role, root, agent)
        if role is not None:
            # Always set on GenAI spans: it also tells the extraction this span passed here.
            stamps[semconv.TURN_ROOT] = root is span
            if turn:
                stamps[semconv.TURN] = turn
        span.set_attributes(stamps)  # one call: each takes the span's lock and validates

    def _stamp(
        self,
        stamps: dict[str, str | int | bool],
        attributes: Mapping[str, object],
        scope: ConversationScope | None,
        parent_open: _Open | None,
    ) -> str | None:
        """Add the user and agent to ``stamps``; return the agent this span runs under (its
        subtree inherits it).

        The conversation id is always stamped: an explicit scope or baggage wins over an id an
        instrumentation made up on its own, so explicit events (recorded under the scope's id)
        and spans land in one conversation.
        """
        user = scope.user_id if scope is not None else None
        if not user:  # an instrumentation's own user id (OpenLLMetry's association property)
            own_user = genai.first_of(attributes, genai.USER_ID_ATTRIBUTES)
            user = own_user if isinstance(own_user, str) else None
        if user:
            stamps[semconv.USER_ID] = self._pseudonym(user)
        agent = scope.agent if scope is not None else None
        if agent:
            stamps[semconv.AGENT_NAME] = agent
            return agent
        own = attributes.get(semconv.AGENT_NAME)
        if isinstance(own, str) and own:
            return own
        inherited = parent_open.agent if parent_open is not None else None
        agent = inherited or self._agent_name
        if agent:
            stamps[semconv.AGENT_NAME] = agent
        return agent

    def _pseudonym(self, user_id: str) -> str:
        found = self._pseudonyms.get(user_id)
        if found is None:
            found = self._pseudonymize(user_id)
            if len(self._pseudonyms) >= 1024:
                self._pseudonyms.clear()
            self._pseudonyms[user_id] = found
        return found

    def _turn_of(
        self,
        span: Span,
        conversation_id: str,
        role: SpanRole | None,
        parent_open: _Open | None,
    ) -> tuple[int, Span | None]:
        """(turn, the turn's root span) for a span starting now; called under the lock."""
        if parent_open is not None and parent_open.turn:
            return parent_open.turn, parent_open.root  # inside a turn already
        state = self._turns.get(conversation_id)
        if state is None:
            state = self._turns[conversation_id] = _Turns()
            if len(self._turns) > MAX_CONVERSATIONS:
                self._turns.popitem(last=False)
        else:
            self._turns.move_to_end(conversation_id)
        if role is SpanRole.AGENT or (role is SpanRole.MODEL and not state.awaiting_tools):
            state.turn += 1
            state.awaiting_tools = False
            return state.turn, span
        if role is not None:  # a tool, or a model call answering tool results: same turn
            return state.turn, None
        return 0, None

    def _end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is None:
            return
        with self._lock:
            entry = self._open.pop(context.span_id, None)
            if entry is None or entry.role is not SpanRole.MODEL:
                return
            attributes = genai.plain_attributes(span.attributes)
            asks = genai.asks_for_tools(attributes.get(genai.FINISH_REASONS))
            state = self._turns.get(entry.conversation_id)
            if state is not None:
                state.awaiting_tools = asks
        root = entry.root
        if (
            root is not None
            and root is not span
            and root.is_recording()
            and semconv.RESPONSE_MODEL not in (root.attributes or {})
        ):
            # The turn's root (an agent span, still open) learns the model that answered.
            model = genai.first_of(attributes, genai.RESPONSE_MODEL_ATTRIBUTES)
            if isinstance(model, str) and model:
                root.set_attribute(semconv.RESPONSE_MODEL, model)

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

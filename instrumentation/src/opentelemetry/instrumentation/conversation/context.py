"""The current conversation, carried by the OpenTelemetry context and W3C baggage.

``with conversation("c-42", user_id="u-7", agent="support-bot"):`` makes every span started inside
(by any instrumentation) and every ``ConversationTracker`` call belong to conversation ``c-42``. The
context follows the code through function calls and asyncio tasks (contextvars), into threads via
:meth:`ConversationScope.wrap`, and into other services as W3C baggage, so a downstream service
that runs :class:`~.instrumentor.ConversationInstrumentor` stamps the same conversation id.

Only the conversation id travels in baggage: user ids never leave the process (baggage reaches
every downstream service, including third parties), and the agent name belongs to each service.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

_logger = logging.getLogger(__name__)

_SCOPE_KEY: Final = otel_context.create_key("conversation-analytics.scope")
#: (scope, detach token) of the scopes entered in the current context, innermost last.
_entered: ContextVar[tuple[tuple[object, object], ...]] = ContextVar(
    "conversation_analytics_entered", default=()
)
_F = TypeVar("_F", bound=Callable[..., Any])


def baggage_key() -> str:
    """The baggage key carrying the conversation id (``CONVERSATION_ANALYTICS_BAGGAGE_KEY``)."""
    return env.env_str(env.CONVERSATION_ANALYTICS_BAGGAGE_KEY, semconv.DEFAULT_BAGGAGE_KEY)


def _valid_id(value: object) -> str | None:
    if type(value) is int:
        value = str(value)
    if type(value) is str and 0 < len(value) <= semconv.MAX_ID_LENGTH:
        return value
    return None


class ConversationScope:
    """One conversation as the current context: a context manager (sync or async) and decorator.

    Entering it is cheap and never raises: an invalid id is logged and the scope does nothing.
    The lifecycle calls no span implies (completion, handoff, feedback) are one line each::

        with conversation(conversation_id, user_id=user_id) as conv:
            ...
            conv.complete()
    """

    __slots__ = ("agent", "conversation_id", "propagate", "user_id")

    def __init__(
        self,
        conversation_id: str,
        *,
        user_id: str | None = None,
        agent: str | None = None,
        propagate: bool = True,
    ) -> None:
        self.conversation_id = _valid_id(conversation_id)
        if self.conversation_id is None:
            _logger.warning(
                "conversation id must be a string of 1 to %d characters; ignored",
                semconv.MAX_ID_LENGTH,
            )
        self.user_id = user_id if type(user_id) is str and user_id else None
        self.agent = agent if type(agent) is str and agent else None
        self.propagate = propagate

    def context(self, parent: otel_context.Context | None = None) -> otel_context.Context:
        """``parent`` (default: the current context) with this conversation set in it."""
        ctx = otel_context.get_current() if parent is None else parent
        if self.conversation_id is None:
            return ctx
        ctx = otel_context.set_value(_SCOPE_KEY, self, ctx)
        if self.propagate:
            ctx = baggage.set_baggage(baggage_key(), self.conversation_id, context=ctx)
        return ctx

    def __enter__(self) -> ConversationScope:
        # The detach token lives in the entering context (each asyncio task and thread has its
        # own), so one scope object may be entered by many tasks at once.
        token = otel_context.attach(self.context())
        _entered.set((*_entered.get(), (self, token)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        entered = _entered.get()
        for index in range(len(entered) - 1, -1, -1):
            if entered[index][0] is self:
                _entered.set(entered[:index] + entered[index + 1 :])
                otel_context.detach(entered[index][1])  # type: ignore[arg-type]
                return

    async def __aenter__(self) -> ConversationScope:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def __call__(self, func: _F) -> _F:
        """Use as a decorator: each call of ``func`` runs inside this conversation."""
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                token = otel_context.attach(self.context())
                try:
                    return await func(*args, **kwargs)
                finally:
                    otel_context.detach(token)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            token = otel_context.attach(self.context())
            try:
                return func(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return run  # type: ignore[return-value]

    def wrap(self, func: _F) -> _F:
        """``func`` bound to the current context and this conversation, for another thread.

        Threads do not inherit contextvars; ``executor.submit(conv.wrap(work))`` carries the
        conversation (and the current span, as the parent of spans started in ``work``).
        """
        captured = self.context()

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            token = otel_context.attach(captured)
            try:
                return func(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return run  # type: ignore[return-value]

    # ---- the explicit lifecycle calls --------------------------------------------------------

    def record(self, event_type: ConversationEvent | str, **metadata: object) -> object:
        """Record ``event_type`` for this conversation with the default tracker."""
        from opentelemetry.instrumentation.conversation.tracker import default_tracker

        if self.conversation_id is None:
            return None
        return default_tracker().record_in(self, event_type, metadata)

    def user_message(self, text: str | None = None, **metadata: object) -> object:
        """The user sent a message (``conversation.user_message``). With rephrase detection on,
        ``text`` is scored against the previous one; it is recorded only when content capture
        is on (its length always is)."""
        return self.record(ConversationEvent.USER_MESSAGE, message=text, **metadata)

    def complete(self, **metadata: object) -> object:
        """The conversation was resolved (``conversation.completed``)."""
        return self.record(ConversationEvent.COMPLETED, **metadata)

    def handoff(self, reason: str | None = None, **metadata: object) -> object:
        """The conversation was escalated to a human (``conversation.handoff_requested``)."""
        return self.record(ConversationEvent.HANDOFF_REQUESTED, reason=reason, **metadata)

    def feedback(self, rating: str, score: float | None = None, **metadata: object) -> object:
        """The user rated the conversation (``positive`` or ``negative``; ``score`` in 0..1)."""
        return self.record(
            ConversationEvent.FEEDBACK_RECEIVED, rating=rating, score=score, **metadata
        )

    def __repr__(self) -> str:
        return f"ConversationScope({self.conversation_id!r}, agent={self.agent!r})"


def conversation(
    conversation_id: str,
    *,
    user_id: str | None = None,
    agent: str | None = None,
    propagate: bool = True,
) -> ConversationScope:
    """A scope making ``conversation_id`` current: ``with conversation(cid): ...`` or a decorator.

    ``user_id`` is pseudonymised where it is recorded, as the tracker does; ``propagate=False``
    keeps the id out of baggage (then it stays in this process).
    """
    return ConversationScope(conversation_id, user_id=user_id, agent=agent, propagate=propagate)


def scope_in(ctx: otel_context.Context | None = None) -> ConversationScope | None:
    """The scope entered in ``ctx`` (default: the current context), if any."""
    scope = otel_context.get_value(_SCOPE_KEY, ctx)
    return scope if isinstance(scope, ConversationScope) else None


def current_conversation(
    ctx: otel_context.Context | None = None, key: str | None = None
) -> ConversationScope | None:
    """The current conversation: an entered scope, else one rebuilt from incoming baggage
    (under ``key``, default :func:`baggage_key`)."""
    scope = scope_in(ctx)
    if scope is not None:
        return scope
    conversation_id = _valid_id(baggage.get_baggage(key or baggage_key(), ctx))
    if conversation_id is None:
        return None
    return ConversationScope(conversation_id)


class _AgentsSeen:
    """The agent each recent conversation's spans ran under (bounded, most recent kept).

    The span processor learns it from GenAI spans (frameworks name their agent), so a
    ``complete()`` in a scope that names no agent is labelled like the conversation's turns.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._agents: OrderedDict[str, str] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def remember(self, conversation_id: str, agent: str) -> None:
        with self._lock:
            self._agents[conversation_id] = agent
            self._agents.move_to_end(conversation_id)  # busy conversations stay
            if len(self._agents) > self._limit:
                self._agents.popitem(last=False)

    def get(self, conversation_id: str) -> str | None:
        return self._agents.get(conversation_id)


agents_seen: Final = _AgentsSeen()

"""``ConversationInstrumentor``: conversation analytics for an agent, with no code changes.

``opentelemetry-instrument python agent.py`` finds it through the ``opentelemetry_instrumentor``
entry point. It adds a :class:`~.processor.ConversationSpanProcessor` to the SDK tracer provider,
so every span started inside a conversation (a :func:`~.context.conversation` scope, or baggage
from the agent's front end) carries its id, and GenAI spans carry turn marks that the exporter and
the collector turn into conversation events.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection
from typing import Any, ClassVar

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from opentelemetry import trace
from opentelemetry.instrumentation.conversation.package import _instruments
from opentelemetry.instrumentation.conversation.rephrasing import build_rephrase_detector
from opentelemetry.instrumentation.conversation.tracker import (
    ConversationTracker,
    set_default_tracker,
)

_logger = logging.getLogger(__name__)


class ConversationInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds the conversation span processor; ``uninstrument()`` turns it off again.

    Keyword arguments of :meth:`instrument`: ``tracer_provider`` (default: the global one),
    ``user_id_key``, ``pseudonymize_user_ids``, ``detect_rephrases`` (as the tracker's), and
    ``agent_name`` for the default tracker behind ``conversation(...).complete()`` and friends.
    """

    #: One processor per provider: the SDK cannot remove a processor, so a second instrument()
    #: re-enables the first instead of stacking another. (The instrumentor is a singleton.)
    _processors: ClassVar[weakref.WeakKeyDictionary[Any, Any]] = weakref.WeakKeyDictionary()

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        # One detector for explicit and derived user messages, so each is compared with the
        # conversation's previous one, whichever path recorded it.
        rephrases = build_rephrase_detector(kwargs.get("detect_rephrases"))
        set_default_tracker(
            ConversationTracker(
                provider,
                agent_name=kwargs.get("agent_name"),
                user_id_key=kwargs.get("user_id_key"),
                pseudonymize_user_ids=kwargs.get("pseudonymize_user_ids"),
                detect_rephrases=rephrases is not None,
                rephrase_detector=rephrases,
            )
        )
        add = getattr(provider, "add_span_processor", None)
        if add is None:
            _logger.warning(
                "ConversationInstrumentor: %s is not an SDK TracerProvider, so spans will not "
                "carry conversation ids; set the SDK provider first or pass tracer_provider=",
                type(provider).__name__,
            )
            return
        processor = self._processors.get(provider)
        if processor is None:
            from opentelemetry.instrumentation.conversation.processor import (
                ConversationSpanProcessor,
            )

            processor = ConversationSpanProcessor(
                user_id_key=kwargs.get("user_id_key"),
                pseudonymize_user_ids=kwargs.get("pseudonymize_user_ids"),
                agent_name=kwargs.get("agent_name"),
                tracer_provider=provider,
                rephrase_detector=rephrases,
            )
            self._processors[provider] = processor
            add(processor)
        processor.enabled = True

    def _uninstrument(self, **kwargs: Any) -> None:
        for processor in list(self._processors.values()):
            processor.enabled = False
        set_default_tracker(None)

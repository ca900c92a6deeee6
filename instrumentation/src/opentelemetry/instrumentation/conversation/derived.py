"""Hands a turn's derived events to the tracer provider as one finished ``conversation.turn`` span.

The turn's own spans have ended by the time its turns are known (SDK spans are immutable after
end), so the events go on a new span: a child of the turn's first span, covering the turn's
time. On the SDK provider the span is built finished and given straight to the provider's span
processors, as the SDK's own ``Span.end`` does: starting and ending a live span would validate
every attribute twice and run every processor's ``on_start`` for a span nobody writes to, which
tripled the processor's cost per bare model call. Other providers get the same span through
the public tracer API. Sampling follows the turn's first span.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Final

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TracerProvider

from opentelemetry import trace
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.version import __version__

Attributes = dict[str, str | bool | int | float]
#: (event name, time, attributes) of one derived event.
DerivedEvent = tuple[str, int, Attributes]

_SCOPE: Final = InstrumentationScope(__name__, __version__)


class DerivedSpans:
    """Emits derived-event spans on one provider (the global one when none was given)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        # Weakly: the instrumentor keeps processors in a dict weakly keyed by their provider.
        self._provider = weakref.ref(provider) if provider is not None else None

    def _get_provider(self) -> TracerProvider:
        provider = self._provider() if self._provider is not None else None
        return provider or trace.get_tracer_provider()

    def emit(
        self,
        parent: SpanContext,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        events: Sequence[DerivedEvent],
    ) -> None:
        """One finished span under ``parent`` carrying ``events``."""
        provider = self._get_provider()
        processor = getattr(provider, "_active_span_processor", None)
        if not isinstance(provider, SdkTracerProvider) or processor is None:
            self._emit_via_api(provider, parent, start_ns, end_ns, attributes, events)
            return
        if getattr(provider, "_disabled", False) or not parent.trace_flags.sampled:
            return
        context = SpanContext(
            parent.trace_id,
            provider.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        span = ReadableSpan(
            semconv.DERIVED_SPAN_NAME,
            context=context,
            parent=parent,
            resource=provider.resource,
            attributes=attributes,
            events=[Event(name, attrs, timestamp=time_ns) for name, time_ns, attrs in events],
            instrumentation_scope=_SCOPE,
            start_time=start_ns,
            end_time=max(end_ns, start_ns),
        )
        processor.on_end(span)

    @staticmethod
    def _emit_via_api(
        provider: TracerProvider,
        parent: SpanContext,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        events: Sequence[DerivedEvent],
    ) -> None:
        tracer = provider.get_tracer(_SCOPE.name, _SCOPE.version)
        span = tracer.start_span(
            semconv.DERIVED_SPAN_NAME,
            context=trace.set_span_in_context(NonRecordingSpan(parent)),
            start_time=start_ns,
            attributes=attributes,
        )
        for name, time_ns, attrs in events:
            span.add_event(name, attrs, timestamp=time_ns)
        span.end(end_time=max(end_ns, start_ns))

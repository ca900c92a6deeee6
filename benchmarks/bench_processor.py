"""Agent overhead of auto-instrumentation: a GenAI span's start and end with the conversation
span processor, against the same SDK provider without it.

Each candidate starts and ends ``--spans`` spans shaped like the official OpenAI instrumentation's
(``chat gpt-4o-mini``, ``gen_ai.operation.name``, ``gen_ai.request.model`` and provider name at
start; response model and finish reasons set before the end):

- **bare SDK**: a ``TracerProvider`` with one ``SimpleSpanProcessor`` over a discarding exporter
  (the cheapest realistic provider: every agent has at least one processor);
- **processor, no conversation**: the same plus ``ConversationSpanProcessor``, spans started
  outside any conversation (its cost for the rest of an agent's spans);
- **processor, in conversation**: the same, inside ``with conversation(...)`` (stamps id, user
  and agent, counts turns, reads finish reasons at the end);
- **bare SDK, in conversation**: the scope without the processor, so the processor's own share
  is visible.

Candidates run round-robin with the GC paused, ``--repeats`` times; the minimum is the headline.
The script prints ns per span and ratios against the bare SDK; it asserts nothing.

Run: ``python benchmarks/bench_processor.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import _util
from opentelemetry.instrumentation.conversation import conversation, genai, semconv
from opentelemetry.instrumentation.conversation.processor import ConversationSpanProcessor


class DiscardingExporter(SpanExporter):
    """Drops every span, so the provider's processor costs only its call."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _provider(with_processor: bool) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
    if with_processor:
        # As the instrumentor adds it: on its provider, which receives the derived spans.
        processor = ConversationSpanProcessor(user_id_key=b"bench", tracer_provider=provider)
        provider.add_span_processor(processor)
    return provider


def _spans(provider: TracerProvider, count: int, scoped: bool) -> Callable[[], object]:
    tracer = provider.get_tracer("openai-like")
    start = {
        semconv.OPERATION_NAME: "chat",
        semconv.REQUEST_MODEL: "gpt-4o-mini",
        "gen_ai.provider.name": "openai",
    }
    finish = ("stop",)
    scope = conversation("conv-0123456789abcdef", user_id="user-4242", agent="support-bot")

    def run() -> None:
        for _ in range(count):
            span = tracer.start_span("chat gpt-4o-mini", attributes=start)
            span.set_attribute(semconv.RESPONSE_MODEL, "gpt-4o-mini-2024-08-06")
            span.set_attribute(genai.FINISH_REASONS, finish)
            span.end()

    if not scoped:
        return run

    def run_scoped() -> None:
        with scope:
            run()

    return run_scoped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=20_000, help="spans per timed run")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per candidate")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    args = parser.parse_args(argv)
    pinned = _util.pin_to_one_core(not args.no_pin)
    print(f"bench_processor: {_util.machine_note()}; {pinned}")
    bare, instrumented = _provider(False), _provider(True)
    candidates = [
        ("bare SDK", _spans(bare, args.spans, scoped=False)),
        ("processor, no conversation", _spans(instrumented, args.spans, scoped=False)),
        ("bare SDK, in conversation", _spans(bare, args.spans, scoped=True)),
        ("processor, in conversation", _spans(instrumented, args.spans, scoped=True)),
    ]
    timings = _util.interleaved(candidates, args.repeats)
    baseline = timings["bare SDK"].best / args.spans
    print(f"{args.spans:,} spans x {args.repeats} repeats; ns per span (start, 2 attributes, end)")
    print(f"  {'candidate':<30} {'ns min':>9} {'ns med':>9} {'vs bare SDK (min)':>18}")
    for name, timing in timings.items():
        best, median = timing.best / args.spans, timing.median / args.spans
        print(
            f"  {name:<30} {best * 1e9:>9,.0f} {median * 1e9:>9,.0f} "
            f"{_util.ratio(best, baseline):>18}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

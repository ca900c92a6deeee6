"""Agent overhead: ``ConversationTracker.record`` against a bare ``span.add_event``.

What it measures
----------------
1. **With the SDK** (a real ``opentelemetry.sdk.trace.TracerProvider``; by default with *no* span
   processor, ``--processor discard`` adds a ``SimpleSpanProcessor`` over an exporter that drops
   everything): per-call cost of::

       tracker.record(conv_id, user_id, ConversationEvent.USER_MESSAGE, turn=3, message_length=42)

   inside an active span, against the bare baseline::

       span.add_event("conversation.user_message", attrs)

   where ``attrs`` is the very attribute dict the tracker produces for that call (event id,
   conversation id, pseudonymised user id, agent name, turn, message length), built once up
   front. So the baseline is the strictest one: the SDK's own work, no dict building, no id
   generation. A second, informative baseline ("hand-rolled") does what code without the tracker
   would have to do per call: ``trace.get_current_span()``, a fresh event id and the dict literal.

   The SDK span keeps 128 events at most and the tracker opens a child span when the current one
   is full, so neither side may reach the limit. Each measured *unit* therefore is: start a span,
   make it current, ``--events-per-span`` (default 100) calls, end the span -- identical on both
   sides. The cost of an *empty* unit (span start, make current, end; no calls) is measured in the
   same interleaved rounds and subtracted, so the reported ns/call is the cost of the call alone
   (loop iteration included, as in :mod:`timeit`); the "incl. span" figures show the amortised
   cost with the span's start/end spread over its calls.

2. **Without the SDK** (API only: no global tracer provider is ever set in this process, so the
   API's proxy provider hands out no-op tracers): ``tracker.record(...)`` with no active span
   against a bare ``trace.get_current_span().add_event(...)`` no-op with the same dict. Also the
   tracker built with an explicit ``NoOpTracerProvider``. Reported in ns/call.

Timing: every candidate runs ``--repeats`` times, round-robin (so load drifts on a noisy machine
hit all candidates alike), with the cyclic GC paused during a run as :mod:`timeit` does. The
headline uses the *minimum* over repeats (the least disturbed run); medians are printed too.

Target (SPEC section 7): tracker cost <= 1.5x the bare ``span.add_event`` with the same
attributes. The script prints the ratio and PASS/MISS; it never asserts on wall-clock time.

Run: ``python benchmarks/bench_tracker.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import _util
from opentelemetry import trace
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    UserIdPseudonymizer,
    semconv,
)

TARGET_RATIO = 1.5
CONV_ID = "conv-0123456789abcdef"
USER_ID = "user-4242"
AGENT = "support-bot"


class DiscardingExporter(SpanExporter):
    """A span exporter that drops every span (so ``SimpleSpanProcessor`` costs only its call)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _expected_attributes(tracker: ConversationTracker, tracer: trace.Tracer) -> dict[str, Any]:
    """Record one event for real and return the attribute dict the tracker put on the span."""
    span = tracer.start_span("probe")
    with trace.use_span(span, end_on_exit=True):
        recorded = tracker.record(
            CONV_ID, USER_ID, ConversationEvent.USER_MESSAGE, turn=3, message_length=42
        )
    if not recorded.recorded:
        raise SystemExit("tracker did not record on an SDK span: nothing to compare")
    events = span.events  # type: ignore[attr-defined]
    if len(events) != 1 or events[0].name != ConversationEvent.USER_MESSAGE.event_name:
        raise SystemExit(f"unexpected events on the probe span: {events!r}")
    return dict(events[0].attributes)


def _sdk_units(
    provider: TracerProvider,
    tracker: ConversationTracker,
    attrs: dict[str, Any],
    spans_per_run: int,
    per_span: int,
) -> list[tuple[str, Callable[[], object]]]:
    """One callable per candidate; each runs ``spans`` units of start span / N calls / end."""
    tracer = provider.get_tracer("bench")
    event_name = ConversationEvent.USER_MESSAGE.event_name
    record = tracker.record
    kind = ConversationEvent.USER_MESSAGE
    get_current_span = trace.get_current_span
    use_span = trace.use_span
    calls = range(per_span)
    urandom = os.urandom
    event_id_key, conv_key, user_key = semconv.EVENT_ID, semconv.CONVERSATION_ID, semconv.USER_ID
    agent_key, turn_key, length_key = semconv.AGENT_NAME, semconv.TURN, semconv.MESSAGE_LENGTH
    pseudonymous_user = attrs[user_key]

    def empty() -> None:
        for _ in range(spans_per_run):
            with use_span(tracer.start_span("turn"), end_on_exit=True):
                pass

    def bare() -> None:
        for _ in range(spans_per_run):
            span = tracer.start_span("turn")
            with use_span(span, end_on_exit=True):
                add_event = span.add_event
                for _ in calls:
                    add_event(event_name, attrs)

    def hand_rolled() -> None:
        for _ in range(spans_per_run):
            with use_span(tracer.start_span("turn"), end_on_exit=True):
                for _ in calls:
                    get_current_span().add_event(
                        event_name,
                        {
                            event_id_key: urandom(16).hex(),
                            conv_key: CONV_ID,
                            user_key: pseudonymous_user,
                            agent_key: AGENT,
                            turn_key: 3,
                            length_key: 42,
                        },
                    )

    def tracked() -> None:
        for _ in range(spans_per_run):
            with use_span(tracer.start_span("turn"), end_on_exit=True):
                for _ in calls:
                    record(CONV_ID, USER_ID, kind, turn=3, message_length=42)

    return [
        ("empty span", empty),
        ("bare add_event", bare),
        ("hand-rolled", hand_rolled),
        ("tracker.record", tracked),
    ]


def bench_sdk(args: argparse.Namespace) -> dict[str, float]:
    provider = TracerProvider()  # never set as the global provider
    if args.processor == "discard":
        provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
    tracker = ConversationTracker(provider, agent_name=AGENT, user_id_key=b"k")
    tracer = provider.get_tracer("bench")
    attrs = _expected_attributes(tracker, tracer)
    print("Attribute dict the tracker produces (the baseline adds exactly this):")
    for key, value in attrs.items():
        print(f"    {key} = {value!r}")

    per_span = args.events_per_span
    candidates = _sdk_units(provider, tracker, attrs, args.spans, per_span)
    for _, func in candidates:  # warm-up: caches, branch predictors, pseudonymiser cache
        func()
    timings = _util.interleaved(candidates, args.repeats)
    calls = args.spans * per_span
    empty = timings["empty span"]

    processor = (
        "SimpleSpanProcessor(discarding exporter)" if args.processor == "discard" else "none"
    )
    print()
    print(
        f"With SDK TracerProvider (span processor: {processor}); unit = start span, "
        f"{per_span} calls, end span; {args.spans} units x {args.repeats} repeats"
    )
    print(
        f"  empty unit (span start+current+end): {empty.best / args.spans * 1e9:,.0f} ns "
        f"(min), {empty.median / args.spans * 1e9:,.0f} ns (median)"
    )
    header = (
        f"  {'candidate':<16} {'ns/call min':>12} {'ns/call med':>12} "
        f"{'incl. span min':>15} {'vs bare (min)':>14} {'vs bare (med)':>14}"
    )
    print(header)
    result: dict[str, float] = {}
    bare_min = (timings["bare add_event"].best - empty.best) / calls
    bare_med = (timings["bare add_event"].median - empty.median) / calls
    for name in ("bare add_event", "hand-rolled", "tracker.record"):
        timing = timings[name]
        per_call_min = (timing.best - empty.best) / calls
        per_call_med = (timing.median - empty.median) / calls
        amortised = timing.best / calls
        result[name] = per_call_min
        result[name + " (median)"] = per_call_med
        print(
            f"  {name:<16} {per_call_min * 1e9:>12,.0f} {per_call_med * 1e9:>12,.0f} "
            f"{amortised * 1e9:>15,.0f} {_util.ratio(per_call_min, bare_min):>14} "
            f"{_util.ratio(per_call_med, bare_med):>14}"
        )
    headline = result["tracker.record"] / bare_min
    amortised_ratio = timings["tracker.record"].best / timings["bare add_event"].best
    verdict = "PASS" if headline <= TARGET_RATIO else "MISS"
    print(
        f"  => tracker / bare add_event = {headline:.2f}x per call (span cost subtracted), "
        f"{amortised_ratio:.2f}x incl. span start/end; target <= {TARGET_RATIO}x: {verdict}"
    )
    if tracker.errors:
        print(f"  !! tracker counted {tracker.errors} rejected calls")
    result["ratio"] = headline
    result["ratio_incl_span"] = amortised_ratio
    if args.profile:
        print()
        print(f"cProfile of the tracker.record unit (top {args.profile} by own time):")
        print(_util.profile(dict(candidates)["tracker.record"], args.profile))
    return result


def bench_no_sdk(args: argparse.Namespace) -> dict[str, float]:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        print("!! a global tracer provider is set; the no-SDK figures would be wrong")
    attrs = {
        semconv.EVENT_ID: os.urandom(16).hex(),
        semconv.CONVERSATION_ID: CONV_ID,
        semconv.USER_ID: "0" * 32,
        semconv.AGENT_NAME: AGENT,
        semconv.TURN: 3,
        semconv.MESSAGE_LENGTH: 42,
    }
    proxy_tracker = ConversationTracker(agent_name=AGENT, user_id_key=b"k")
    noop_tracker = ConversationTracker(
        trace.NoOpTracerProvider(), agent_name=AGENT, user_id_key=b"k"
    )
    if proxy_tracker.record(CONV_ID, USER_ID, ConversationEvent.USER_MESSAGE).recorded:
        print("!! the API-only tracker recorded an event; the no-SDK figures would be wrong")
    n = args.calls
    kind = ConversationEvent.USER_MESSAGE
    event_name = kind.event_name
    get_current_span = trace.get_current_span
    loop = range(n)

    def bare() -> None:
        for _ in loop:
            get_current_span().add_event(event_name, attrs)

    def make(tracker: ConversationTracker) -> Callable[[], None]:
        record = tracker.record

        def run() -> None:
            for _ in loop:
                record(CONV_ID, USER_ID, kind, turn=3, message_length=42)

        return run

    def empty_loop() -> None:
        for _ in loop:
            pass

    candidates: list[tuple[str, Callable[[], object]]] = [
        ("empty loop", empty_loop),
        ("bare no-op", bare),
        ("tracker (proxy)", make(proxy_tracker)),
        ("tracker (NoOp)", make(noop_tracker)),
    ]
    for _, func in candidates:
        func()
    timings = _util.interleaved(candidates, args.repeats)
    print()
    print(
        f"API only (no SDK, no global provider, no active span); {n:,} calls x "
        f"{args.repeats} repeats; ns/call includes the loop iteration "
        f"(empty loop: {timings['empty loop'].best / n * 1e9:.1f} ns)"
    )
    print(f"  {'candidate':<16} {'ns/call min':>12} {'ns/call med':>12} {'vs bare (min)':>14}")
    result: dict[str, float] = {}
    bare_min = timings["bare no-op"].best / n
    for name in ("bare no-op", "tracker (proxy)", "tracker (NoOp)"):
        timing = timings[name]
        result[name] = timing.best / n
        print(
            f"  {name:<16} {timing.best / n * 1e9:>12,.0f} {timing.median / n * 1e9:>12,.0f} "
            f"{_util.ratio(timing.best / n, bare_min):>14}"
        )
    return result


def bench_breakdown(args: argparse.Namespace) -> None:
    """What the tracker's per-call building blocks cost alone (public API only), in ns."""
    provider = TracerProvider()
    span = provider.get_tracer("bench").start_span("breakdown")
    pseudonymize = UserIdPseudonymizer(b"k", True)
    kind = ConversationEvent.USER_MESSAGE
    n = args.calls
    loop = range(n)
    get_current_span = trace.get_current_span
    parse = ConversationEvent.parse
    metadata_attribute = semconv.metadata_attribute
    urandom = os.urandom

    def record_kwargs(**metadata: object) -> None:
        return None

    parts: list[tuple[str, Callable[[], object]]] = [
        ("empty loop", lambda: [None for _ in loop]),
        ("os.urandom(16).hex()", lambda: [urandom(16).hex() for _ in loop]),
        ("get_current_span()", lambda: [get_current_span() for _ in loop]),
        ("span.is_recording()", lambda: [span.is_recording() for _ in loop]),
        ("ConversationEvent.parse", lambda: [parse(kind) for _ in loop]),
        ("pseudonymise (cached)", lambda: [pseudonymize(USER_ID) for _ in loop]),
        (
            "metadata_attribute x2",
            lambda: [
                (metadata_attribute(kind, "turn"), metadata_attribute(kind, "message_length"))
                for _ in loop
            ],
        ),
        ("call with 2 kwargs", lambda: [record_kwargs(turn=3, message_length=42) for _ in loop]),
    ]
    with trace.use_span(span, end_on_exit=True):
        timings = _util.interleaved(parts, max(3, args.repeats // 3))
    empty = timings["empty loop"].best / n
    print()
    print("Building blocks of one record() call, alone (ns/call, min, empty loop subtracted):")
    for name, _ in parts[1:]:
        print(f"  {name:<26} {(timings[name].best / n - empty) * 1e9:>8,.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--spans", type=int, default=200, help="span units per timed run (default 200)"
    )
    parser.add_argument(
        "--events-per-span",
        type=int,
        default=100,
        help="calls per span unit; must stay below the SDK's 128-event limit (default 100)",
    )
    parser.add_argument(
        "--calls", type=int, default=200_000, help="calls per timed run without SDK"
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per candidate")
    parser.add_argument(
        "--processor",
        choices=("none", "discard"),
        default="none",
        help="span processor on the SDK provider: none, or SimpleSpanProcessor over an "
        "exporter that discards (default none)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after timing, print the top N functions of a cProfile of the tracker unit",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the building blocks of a record() call alone (public API only)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.events_per_span < 128:
        parser.error("--events-per-span must be between 1 and 127 (SDK span event limit 128)")
    print(f"bench_tracker: {_util.machine_note()}")
    # API-only first: nothing in this process ever installs a global SDK provider anyway.
    bench_no_sdk(args)
    print()
    bench_sdk(args)
    if args.breakdown:
        bench_breakdown(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

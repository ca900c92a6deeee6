"""A simulated, instrumented agent fleet: the zero-setup way to see the product work end to end.

Real parts all the way: each simulated agent runs its turns inside OpenTelemetry spans of a real
SDK ``TracerProvider``, records lifecycle events with the real ``ConversationTracker``, and a
``BatchSpanProcessor`` hands the spans to the real ``ConversationAnalyticsExporter``.
"""

from __future__ import annotations

import random
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TextIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, use_span

from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent
from opentelemetry.instrumentation.conversation.tracker import ConversationTracker

Event = ConversationEvent


@dataclass(frozen=True)
class AgentProfile:
    """How one simulated agent behaves; prompt v2 is the better prompt."""

    name: str
    models: tuple[str, ...]
    tools: tuple[str, ...]
    channels: tuple[str, ...]
    resolve: float  # chance per turn that the user's problem is solved
    leave: float  # chance per turn that the user gives up
    handoff: float  # chance per turn of escalating to a human


FLEET: tuple[AgentProfile, ...] = (
    AgentProfile(
        "support-bot",
        ("gpt-4o-mini", "claude-haiku"),
        ("search_kb", "lookup_order", "create_ticket"),
        ("web", "slack", "voice"),
        resolve=0.34,
        leave=0.09,
        handoff=0.05,
    ),
    AgentProfile(
        "research-assistant",
        ("gpt-4o", "claude-sonnet"),
        ("web_search", "read_document"),
        ("web", "api"),
        resolve=0.22,
        leave=0.12,
        handoff=0.02,
    ),
)
PROMPT_VERSIONS = ("v1", "v2")
#: The simulated users are not real people; a fixed key keeps demo runs comparable.
DEMO_USER_ID_KEY = b"demo-fleet"


def _simulate(
    rng: random.Random,
    trackers: dict[tuple[str, str], ConversationTracker],
    provider: TracerProvider,
    start: datetime,
    silent_abandon: float = 0.0,
) -> None:
    """One conversation: turns with tools and replies, then completion, handoff or abandonment."""
    agent = rng.choice(FLEET)
    prompt = rng.choice(PROMPT_VERSIONS)
    tracker = trackers[(agent.name, prompt)]
    model = rng.choice(agent.models)
    better = 0.1 if prompt == "v2" else 0.0
    tracer = provider.get_tracer(__name__)
    conversation_id = f"conv-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
    user_id = f"user-{rng.randrange(5000)}"
    clock = start

    def record(kind: ConversationEvent, **metadata: object) -> None:
        nonlocal clock
        clock += timedelta(seconds=rng.uniform(1, 20))
        tracker.record(conversation_id, user_id, kind, timestamp=clock, **metadata)

    def nanos(moment: datetime) -> int:
        return int(moment.timestamp() * 1e9)

    record(Event.STARTED, channel=rng.choice(agent.channels))
    turn = 0
    while True:
        turn += 1
        span = tracer.start_span(
            "invoke_agent " + agent.name,
            start_time=nanos(clock),
            attributes={semconv.OPERATION_NAME: "invoke_agent", semconv.AGENT_NAME: agent.name},
        )
        with use_span(span, end_on_exit=False):
            rephrase = turn > 1 and rng.random() < 0.15
            similarity = rng.uniform(0.86, 0.97) if rephrase else rng.uniform(0.1, 0.6)
            record(
                Event.USER_MESSAGE,
                turn=turn,
                message_length=rng.randint(8, 400),
                similarity=round(similarity, 3),
                model=model,
            )
            for _ in range(rng.choice((0, 0, 1, 1, 2))):
                failed = rng.random() < 0.08
                record(
                    Event.TOOL_CALLED,
                    turn=turn,
                    tool_name=rng.choice(agent.tools),
                    **({"error_type": "TimeoutError"} if failed else {}),
                )
            record(
                Event.AGENT_RESPONSE, turn=turn, response_length=rng.randint(40, 1500), model=model
            )
            _judge(span, conversation_id, prompt, nanos(clock))
            outcome = rng.random()
            if outcome < agent.resolve + better:
                if rng.random() < 0.4:
                    record(
                        Event.FEEDBACK_RECEIVED,
                        rating="positive" if rng.random() < 0.8 else "negative",
                    )
                record(Event.COMPLETED, total_turns=turn)
            elif outcome < agent.resolve + better + agent.handoff:
                record(Event.HANDOFF_REQUESTED, turn=turn, reason="user asked for a human")
                if rng.random() < 0.5:
                    record(Event.COMPLETED, total_turns=turn)
            elif outcome < agent.resolve + better + agent.handoff + agent.leave - better / 2:
                if rng.random() < 0.3:
                    record(Event.FEEDBACK_RECEIVED, rating="negative")
                if rng.random() >= silent_abandon:
                    record(Event.ABANDONED, abandoned_at_turn=turn)
            elif turn < 12:
                span.end(end_time=nanos(clock))
                continue
            else:
                record(Event.ABANDONED, abandoned_at_turn=turn)
        span.end(end_time=nanos(clock))
        return


#: The online judge's evaluation of every answer (``gen_ai.evaluation.result``).
JUDGE_EVALUATION = "answer_relevance"


def _judge(span: Span, conversation_id: str, prompt: str, time_ns: int) -> None:
    """An LLM judge's verdict on one answer, as a span event; its own random stream, so the
    conversations are the same with or without it."""
    rng = random.Random(f"{conversation_id}-{time_ns}")
    score = round(rng.uniform(0.45 if prompt == "v1" else 0.55, 1.0), 2)
    span.add_event(
        semconv.EVALUATION_EVENT,
        {
            semconv.CONVERSATION_ID: conversation_id,
            semconv.EVALUATION_NAME: JUDGE_EVALUATION,
            semconv.EVALUATION_SCORE_VALUE: score,
            semconv.EVALUATION_SCORE_LABEL: "relevant" if score >= 0.7 else "not_relevant",
        },
        timestamp=time_ns,
    )


class _Borrowed(SpanExporter):
    """Lends the caller's exporter to the demo's provider without letting it shut it down."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export(spans)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """The exporter belongs to the caller."""


def _fleet(
    exporter: SpanExporter,
) -> tuple[TracerProvider, dict[tuple[str, str], ConversationTracker]]:
    provider = TracerProvider(resource=Resource.create({"service.name": "demo-agent-fleet"}))
    provider.add_span_processor(
        BatchSpanProcessor(_Borrowed(exporter), max_queue_size=65_536, max_export_batch_size=4096)
    )
    trackers = {
        (agent.name, prompt): ConversationTracker(
            provider,
            agent_name=agent.name,
            prompt_version=prompt,
            agent_version="1.0",
            user_id_key=DEMO_USER_ID_KEY,
        )
        for agent in FLEET
        for prompt in PROMPT_VERSIONS
    }
    return provider, trackers


def run_demo(
    exporter: SpanExporter,
    *,
    conversations: int = 2000,
    days: int = 6,
    seed: int | None = None,
    now: datetime | None = None,
    progress: TextIO | None = sys.stderr,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Simulate ``conversations`` spread over the last ``days`` and export them."""
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc)
    provider, trackers = _fleet(exporter)
    step = max(1, conversations // 20)
    try:
        for index in range(conversations):
            offset = rng.uniform(0.0, days * 86_400.0 - 3_600.0)
            _simulate(rng, trackers, provider, now - timedelta(seconds=offset + 3_600.0))
            done = index + 1
            if progress is not None and (done % step == 0 or done == conversations):
                width = 30
                filled = width * done // conversations
                progress.write(
                    f"\r  simulating [{'#' * filled}{'.' * (width - filled)}] "
                    f"{done}/{conversations} conversations"
                )
                progress.flush()
            if on_progress is not None:
                on_progress(done)
        if progress is not None:
            progress.write("\n")
        provider.force_flush()
    finally:
        provider.shutdown()


def run_live(
    exporter: SpanExporter,
    *,
    rate: float = 2.0,
    stop: threading.Event | None = None,
    seed: int | None = None,
) -> int:
    """Simulate conversations as they happen, ``rate`` per second, until ``stop`` is set.

    Each conversation's events are stamped over the last minutes; a third of the users who
    give up leave silently (no ``abandoned`` event), for the collector's inference to find.
    Returns how many conversations were simulated.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(seed)
    stop = stop or threading.Event()
    provider, trackers = _fleet(exporter)
    simulated = 0
    try:
        while not stop.is_set():
            start = datetime.now(timezone.utc) - timedelta(seconds=rng.uniform(60, 300))
            _simulate(rng, trackers, provider, start, silent_abandon=1 / 3)
            simulated += 1
            stop.wait(rng.expovariate(rate))
        provider.force_flush()
    finally:
        provider.shutdown()
    return simulated

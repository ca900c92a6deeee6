"""The conversation scope: context manager, decorator, threads, asyncio tasks, baggage, and the
explicit lifecycle calls that need no ids repeated."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import TEST_USER_ID_KEY
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    conversation,
    current_conversation,
    semconv,
)
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation.pseudonymize import UserIdPseudonymizer


def _events(spans: InMemorySpanExporter) -> list[tuple[str, dict[str, object]]]:
    return [
        (event.name, dict(event.attributes or {}))
        for span in spans.get_finished_spans()
        for event in span.events
    ]


def _current_id() -> str | None:
    scope = current_conversation()
    return scope.conversation_id if scope else None


class TestScope:
    def test_with_block_sets_and_restores(self) -> None:
        """Inside ``with`` the conversation is current; after it, the previous one is back."""
        assert _current_id() is None
        with conversation("outer"):
            assert _current_id() == "outer"
            with conversation("inner"):
                assert _current_id() == "inner"
            assert _current_id() == "outer"
        assert _current_id() is None

    def test_decorator_sync_and_async(self) -> None:
        """As a decorator, each call of a function or coroutine runs in the conversation."""

        @conversation("c-sync")
        def handle() -> str | None:
            return _current_id()

        @conversation("c-async")
        async def ahandle() -> str | None:
            await asyncio.sleep(0)
            return _current_id()

        assert handle() == "c-sync"
        assert asyncio.run(ahandle()) == "c-async"
        assert _current_id() is None

    def test_async_with(self) -> None:
        """``async with`` works like ``with``."""

        async def main() -> str | None:
            async with conversation("c-aw"):
                return _current_id()

        assert asyncio.run(main()) == "c-aw"

    def test_asyncio_tasks_inherit_their_own_conversation(self) -> None:
        """Concurrent tasks each keep the conversation they were started in."""

        async def turn(cid: str) -> list[str | None]:
            seen = []
            with conversation(cid):
                for _ in range(3):
                    await asyncio.sleep(0)
                    child = asyncio.create_task(asyncio.sleep(0, result=_current_id()))
                    seen.append(await child)
            return seen

        async def main() -> list[list[str | None]]:
            return await asyncio.gather(*(turn(f"c{i}") for i in range(5)))

        for i, seen in enumerate(asyncio.run(main())):
            assert seen == [f"c{i}"] * 3

    def test_threads_through_wrap(self) -> None:
        """A plain thread does not inherit contextvars; ``wrap`` carries the conversation."""
        with conversation("c-thread") as conv, ThreadPoolExecutor(2) as pool:
            plain = pool.submit(_current_id).result()
            wrapped = pool.submit(conv.wrap(_current_id)).result()
        assert plain is None
        assert wrapped == "c-thread"

    def test_concurrent_threads_do_not_mix(self) -> None:
        """Threads entering different conversations at once each see only their own."""
        errors: list[str] = []

        def work(cid: str) -> None:
            for _ in range(200):
                with conversation(cid):
                    if _current_id() != cid:
                        errors.append(cid)

        threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []

    @pytest.mark.parametrize("bad", ["", "x" * (semconv.MAX_ID_LENGTH + 1), None, 3.5, ["a"]])
    def test_invalid_id_is_a_no_op(self, bad: object) -> None:
        """An invalid id never raises into the agent: the scope does nothing."""
        with conversation(bad) as conv:  # type: ignore[arg-type]
            assert _current_id() is None
            assert conv.complete() is None

    def test_integer_id_is_accepted_as_text(self) -> None:
        """Integer ids (database keys) become their decimal text, as in the tracker."""
        with conversation(42):  # type: ignore[arg-type]
            assert _current_id() == "42"


class TestBaggage:
    def test_scope_sets_baggage_under_the_configured_key(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The id travels as W3C baggage; the key comes from the environment."""
        with conversation("c-b"):
            assert baggage.get_baggage(semconv.DEFAULT_BAGGAGE_KEY) == "c-b"
        monkeypatch.setenv(env.CONVERSATION_ANALYTICS_BAGGAGE_KEY, "session_id")
        with conversation("c-k"):
            assert baggage.get_baggage("session_id") == "c-k"
            assert baggage.get_baggage(semconv.DEFAULT_BAGGAGE_KEY) is None

    def test_user_id_never_goes_into_baggage(self) -> None:
        """Baggage reaches third parties: only the conversation id is put there."""
        with conversation("c-u", user_id="alice@example.com", agent="bot"):
            values = baggage.get_all()
        assert dict(values) == {semconv.DEFAULT_BAGGAGE_KEY: "c-u"}

    def test_propagate_false_keeps_it_in_process(self) -> None:
        """``propagate=False`` sets the conversation without baggage."""
        with conversation("c-local", propagate=False):
            assert _current_id() == "c-local"
            assert baggage.get_all() == {}

    def test_header_round_trip(self) -> None:
        """Injected as a ``baggage`` header, extracted on the other side as the conversation."""
        carrier: dict[str, str] = {}
        with conversation("c/with;odd,chars=1"):
            W3CBaggagePropagator().inject(carrier)
        assert "baggage" in carrier
        token = otel_context.attach(W3CBaggagePropagator().extract(carrier))
        try:
            assert _current_id() == "c/with;odd,chars=1"
        finally:
            otel_context.detach(token)


class TestExplicitCalls:
    def test_tracker_needs_no_ids_inside_a_scope(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """``record(event_type=...)`` takes conversation, pseudonymised user and agent from the
        scope."""
        tracker = ConversationTracker(sdk_provider, user_id_key=TEST_USER_ID_KEY)
        with conversation("c-1", user_id="u-1", agent="bot"):
            tracker.record(event_type=ConversationEvent.USER_MESSAGE, turn=1)
        [(name, attributes)] = _events(spans)
        assert name == ConversationEvent.USER_MESSAGE.event_name
        assert attributes[semconv.CONVERSATION_ID] == "c-1"
        assert attributes[semconv.USER_ID] == UserIdPseudonymizer(TEST_USER_ID_KEY)("u-1")
        assert attributes[semconv.AGENT_NAME] == "bot"
        assert attributes[semconv.TURN] == 1

    def test_explicit_ids_win_over_the_scope(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Ids passed to ``record`` are used as given, even inside a scope."""
        tracker = ConversationTracker(sdk_provider, user_id_key=TEST_USER_ID_KEY)
        with conversation("c-scope"):
            tracker.record("c-explicit", None, ConversationEvent.STARTED)
        [(_, attributes)] = _events(spans)
        assert attributes[semconv.CONVERSATION_ID] == "c-explicit"

    def test_no_scope_no_id_is_a_counted_rejection(self, sdk_provider: TracerProvider) -> None:
        """Without ids and without a scope nothing is recorded, and the error is counted."""
        tracker = ConversationTracker(sdk_provider)
        assert not tracker.record(event_type=ConversationEvent.COMPLETED).recorded
        assert tracker.errors == 1

    def test_one_line_lifecycle_calls(
        self,
        sdk_provider: TracerProvider,
        spans: InMemorySpanExporter,
        instrumentor: object,
    ) -> None:
        """``complete()``, ``handoff()`` and ``feedback()`` record the events no span implies."""
        from opentelemetry.instrumentation.conversation import ConversationInstrumentor

        ConversationInstrumentor().instrument(tracer_provider=sdk_provider, agent_name="bot")
        with conversation("c-2", user_id="u-2") as conv:
            conv.handoff(reason="billing")
            conv.feedback("negative", score=0.2)
            conv.complete(total_turns=4)
        names = [
            (name, a.get(semconv.HANDOFF_REASON), a.get(semconv.FEEDBACK_RATING))
            for name, a in _events(spans)
        ]
        assert names == [
            (ConversationEvent.HANDOFF_REQUESTED.event_name, "billing", None),
            (ConversationEvent.FEEDBACK_RECEIVED.event_name, None, "negative"),
            (ConversationEvent.COMPLETED.event_name, None, None),
        ]
        for _, attributes in _events(spans):
            assert attributes[semconv.CONVERSATION_ID] == "c-2"
            assert attributes[semconv.AGENT_NAME] == "bot"

    def test_suppressed_instrumentation_records_nothing(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Under ``suppress_instrumentation`` the tracker emits nothing and counts no error."""
        tracker = ConversationTracker(sdk_provider)
        with suppress_instrumentation(), conversation("c-s"):
            assert not tracker.record(event_type=ConversationEvent.STARTED).recorded
            assert not tracker.record("c-s", None, ConversationEvent.STARTED).recorded
        assert spans.get_finished_spans() == ()
        assert tracker.errors == 0


class TestSharedScope:
    def test_one_scope_object_entered_by_concurrent_tasks(self) -> None:
        """A module-level scope used by many tasks at once: each task's exit restores its own
        context."""
        shared = conversation("c-shared")

        async def task() -> tuple[str | None, str | None]:
            async with shared:
                await asyncio.sleep(0)
                inside = _current_id()
            await asyncio.sleep(0)
            return inside, _current_id()

        async def main() -> list[tuple[str | None, str | None]]:
            return await asyncio.gather(*(task() for _ in range(10)))

        assert asyncio.run(main()) == [("c-shared", None)] * 10

    def test_timestamp_is_kept_inside_a_scope(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """``timestamp=`` backdates an event recorded with ids from the scope."""
        from datetime import datetime, timezone

        tracker = ConversationTracker(sdk_provider)
        when = datetime(2020, 1, 2, tzinfo=timezone.utc)
        with conversation("c-ts"):
            tracker.record(event_type=ConversationEvent.STARTED, timestamp=when)
        [span] = spans.get_finished_spans()
        assert span.events[0].timestamp == int(when.timestamp()) * 1_000_000_000

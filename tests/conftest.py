"""Shared fixtures: a real embedded store in a temporary directory, and a real SDK pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from openai_stub import OpenAIStub
from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.store import ConversationStore, open_store
from opentelemetry.instrumentation.conversation import ConversationTracker
from opentelemetry.instrumentation.conversation.instrumentor import ConversationInstrumentor

TEST_USER_ID_KEY = b"test-key"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'store'}"


@pytest.fixture
def store(store_url: str) -> Iterator[ConversationStore]:
    """A real chDB store with the schema applied (chDB allows one open directory per process)."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def exporter(
    store: ConversationStore, registry: CollectorRegistry
) -> Iterator[ConversationAnalyticsExporter]:
    exp = ConversationAnalyticsExporter(store, registry=registry)
    yield exp
    exp.shutdown()


@pytest.fixture
def provider(exporter: ConversationAnalyticsExporter) -> Iterator[TracerProvider]:
    """An SDK provider whose spans reach the exporter as soon as they end."""
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


@pytest.fixture
def tracker(provider: TracerProvider) -> ConversationTracker:
    return ConversationTracker(provider, agent_name="test-agent", user_id_key=TEST_USER_ID_KEY)


@pytest.fixture
def instrumentor() -> Iterator[ConversationInstrumentor]:
    """The (singleton) instrumentor, always uninstrumented afterwards."""
    inst = ConversationInstrumentor()
    yield inst
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def sdk_provider(spans: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """An SDK provider keeping finished spans in memory (``spans``), not instrumented."""
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    yield tp
    tp.shutdown()


@pytest.fixture
def memory_provider(
    sdk_provider: TracerProvider, instrumentor: ConversationInstrumentor
) -> TracerProvider:
    """``sdk_provider`` with the conversation instrumentation on."""
    instrumentor.instrument(tracer_provider=sdk_provider, user_id_key=TEST_USER_ID_KEY)
    return sdk_provider


@pytest.fixture
def instrumented(
    provider: TracerProvider, instrumentor: ConversationInstrumentor
) -> TracerProvider:
    """The exporter's provider with the conversation instrumentation on, as in an agent."""
    instrumentor.instrument(tracer_provider=provider, user_id_key=TEST_USER_ID_KEY)
    return provider


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    """A local OpenAI-compatible server on loopback (tests/openai_stub.py)."""
    with OpenAIStub() as server:
        yield server

"""One reader interface: the store's reader and the collector's client answer the same calls."""

from __future__ import annotations

import inspect

import pytest

from opentelemetry.exporter.conversation_analytics.collector.client import CollectorClient
from opentelemetry.exporter.conversation_analytics.reader import ConversationReader, StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore

METHODS = [
    name
    for name, member in vars(ConversationReader).items()
    if inspect.isfunction(member) and not name.startswith("_")
]


class TestOneInterface:
    def test_both_readers_are_conversation_readers(self, store: ConversationStore) -> None:
        """The CLI, the API and the HTML report can take either without knowing which."""
        assert isinstance(StoreReader(store), ConversationReader)
        assert isinstance(CollectorClient("http://127.0.0.1:9"), ConversationReader)

    def test_the_engine_no_longer_answers_analytics_questions(
        self, store: ConversationStore
    ) -> None:
        """The store runs SQL; what the rows mean is the reader's job."""
        assert not any(hasattr(store, name) for name in METHODS)

    @pytest.mark.parametrize("name", METHODS)
    @pytest.mark.parametrize("implementation", [StoreReader, CollectorClient])
    def test_every_call_takes_the_interfaces_parameters(
        self, implementation: type, name: str
    ) -> None:
        """Same names, same kinds, same defaults (a reader may add optional ones, like ``now``)."""
        wanted = inspect.signature(getattr(ConversationReader, name)).parameters
        have = inspect.signature(getattr(implementation, name)).parameters
        for parameter in wanted.values():
            assert parameter.name in have, parameter.name
            assert have[parameter.name].kind == parameter.kind
            assert have[parameter.name].default == parameter.default
        extra = [p for p in have.values() if p.name not in wanted]
        assert all(p.default is not inspect.Parameter.empty for p in extra)

"""The hot path's shortcuts give the same rows and the same forgetting as the checked paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opentelemetry.exporter.conversation_analytics.observer import BoundedLru, RecentKeys
from opentelemetry.exporter.conversation_analytics.rows import (
    MAX_ID_LENGTH,
    MAX_STRING_LENGTH,
    EventRow,
    RejectedEvent,
    row_from_attributes,
)
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.semconv import ConversationEvent

T0 = 1_700_000_000 * 10**9


class _Str(str):
    """A str subclass: must take the checked path, never the ``type(value) is str`` one."""


@given(
    st.lists(st.integers(0, 30), max_size=60, unique=True),  # new keys, never held
    st.integers(1, 10),
    st.integers(0, 20),
)
def test_recent_keys_forget_what_a_bounded_lru_forgets(
    keys: list[int], limit: int, before: int
) -> None:
    one, batch = BoundedLru(limit), RecentKeys(limit)
    earlier = [str(key) for key in range(100, 100 + before)]
    for key in earlier:
        one.remember(key, None)
    batch.remember_all(earlier)
    for key in keys:
        one.remember(str(key), None)
    batch.remember_all([str(key) for key in keys])
    assert list(one) == list(batch)


def _row(attributes: dict[str, object], service: object = "svc") -> EventRow:
    return row_from_attributes(
        ConversationEvent.USER_MESSAGE, attributes, T0, service_name=service, trace_id="t"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing_conversation_id"),
        ("", "missing_conversation_id"),
        (_Str("c"), "invalid_conversation_id"),  # ids are plain str or int only
        ("x" * (MAX_ID_LENGTH + 1), "invalid_conversation_id"),
        (True, "invalid_conversation_id"),
        (["c"], "invalid_conversation_id"),
    ],
)
def test_conversation_id_rejections(value: object, reason: str) -> None:
    with pytest.raises(RejectedEvent) as caught:
        _row({semconv.CONVERSATION_ID: value})
    assert caught.value.reason == reason


def test_ids_of_other_types_and_lengths() -> None:
    row = _row({semconv.CONVERSATION_ID: 42, semconv.EVENT_ID: 7})
    assert (row.conversation_id, row.event_id) == ("42", "7")
    with pytest.raises(RejectedEvent, match="event_id must be a string"):
        _row({semconv.CONVERSATION_ID: "c", semconv.EVENT_ID: _Str("e1")})
    longest = "c" * MAX_ID_LENGTH
    assert _row({semconv.CONVERSATION_ID: longest}).conversation_id == longest
    derived = _row({semconv.CONVERSATION_ID: "c", semconv.EVENT_ID: _Str("")})
    assert derived.event_id == _row({semconv.CONVERSATION_ID: "c"}).event_id
    with pytest.raises(RejectedEvent, match="event_id"):
        _row({semconv.CONVERSATION_ID: "c", semconv.EVENT_ID: "e" * (MAX_ID_LENGTH + 1)})


def test_text_fields_keep_their_checked_meaning() -> None:
    long = "m" * (MAX_STRING_LENGTH + 5)
    row = _row(
        {
            semconv.CONVERSATION_ID: "c",
            semconv.CHANNEL: "",  # empty: the default stays
            semconv.AGENT_NAME: _Str(""),  # empty subclass: the default stays
            semconv.REQUEST_MODEL: long,  # capped
            semconv.RESPONSE_MODEL: 7,  # not a str: as text
            semconv.TOOL_NAME: _Str("tool"),
            semconv.PROMPT_VERSION: None,
        },
        service="s" * (MAX_STRING_LENGTH + 1),
    )
    assert row.channel == ""
    assert row.agent_name == "s" * MAX_STRING_LENGTH
    assert row.request_model == long[:MAX_STRING_LENGTH]
    assert row.response_model == "7"
    assert row.tool_name == "tool" and type(row.tool_name) is str
    assert row.prompt_version == ""


def test_timestamps_before_and_after_2001_are_stored_exactly(store: ConversationStore) -> None:
    """The insert payload writes recent times as unix seconds inline, earlier ones as text."""
    times = [0, 999_999_999_999_999_000, 1_000_000_000_000_000_000, T0 + 123_456_789]
    rows = [
        EventRow(f"e{index}", "started", f"c{index}", moment) for index, moment in enumerate(times)
    ]
    store.insert(rows)
    found = store.select(
        f"SELECT event_id, toUnixTimestamp64Micro(timestamp) AS us FROM {store.schema.events} "
        "ORDER BY event_id"
    )
    assert [(row["event_id"], int(row["us"])) for row in found] == [
        (f"e{index}", moment // 1000) for index, moment in enumerate(times)
    ]

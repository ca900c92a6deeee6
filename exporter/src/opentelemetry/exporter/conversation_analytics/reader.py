"""Reading conversations: one interface, implemented over a store and over a collector's API.

:class:`ConversationReader` is what the CLI, the collector's API and the HTML report call;
:class:`StoreReader` implements it with the store's SQL on any engine (the embedded chDB or a
ClickHouse server), and :class:`~.collector.client.CollectorClient` implements it over HTTP for a
store a running collector owns. The engine itself (:class:`~.store.ConversationStore`) only runs
SQL; the metric definitions are in :mod:`.analytics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Protocol, runtime_checkable

from opentelemetry.exporter.conversation_analytics.analytics import (
    CONVERSATION_ORDERS,
    DEFAULT_CONVERSATIONS_LIMIT,
    DEFAULT_DAYS,
    MAX_LIFT_TOOLS,
    AgentReport,
    Comparison,
    ConversationDetail,
    ConversationList,
    DropOff,
    ExitContext,
    FunnelStep,
    Report,
    compare_groups,
    conversation_summary,
    daily_point,
    exit_contexts,
    satisfaction,
    satisfaction_distribution,
    summarize,
    summarize_evaluations,
    survival_curve,
    tool_lifts,
)
from opentelemetry.exporter.conversation_analytics.stats import SurvivalStep
from opentelemetry.exporter.conversation_analytics.store.base import (
    ConversationStore,
    UnknownConversation,
    check_dimension,
    check_limit,
    check_min_turns,
    check_order,
    check_outcome,
    window_params,
)

__all__ = ["ConversationReader", "StoreReader"]


@runtime_checkable
class ConversationReader(Protocol):
    """The questions every reader answers, with the same errors: ``ValueError`` for bad
    arguments (in the user's terms), :class:`UnknownConversation`, ``StoreError``."""

    def report(self, days: int = DEFAULT_DAYS, *, agent: str = "") -> Report:
        """Section 4 over the last ``days``, optionally for one agent."""
        ...

    def compare(
        self, by: str, days: int = DEFAULT_DAYS, *, baseline: str | None = None, agent: str = ""
    ) -> Comparison:
        """Groups by ``by`` side by side, with intervals and a test against ``baseline``."""
        ...

    def conversations(
        self,
        days: int = DEFAULT_DAYS,
        *,
        agent: str = "",
        outcome: str | None = None,
        rephrased: bool = False,
        min_turns: int = 0,
        order: str = CONVERSATION_ORDERS[0],
        limit: int = DEFAULT_CONVERSATIONS_LIMIT,
    ) -> ConversationList:
        """Conversation ids to drill into, by filter, worst or latest first."""
        ...

    def existing_conversation(self, conversation_id: str) -> ConversationDetail:
        """One conversation's events and satisfaction; :class:`UnknownConversation` if none."""
        ...


class StoreReader:
    """:class:`ConversationReader` over a store: its SQL, rounded by :mod:`.analytics`."""

    def __init__(self, store: ConversationStore) -> None:
        self._store = store
        self._schema = store.schema

    @property
    def store(self) -> ConversationStore:
        return self._store

    def report(
        self, days: int = DEFAULT_DAYS, *, now: datetime | None = None, agent: str = ""
    ) -> Report:
        """Section 4 over the last ``days`` (optionally one agent), with a per-agent breakdown
        and the survival curve, overall and per agent."""
        params = window_params(days, now, agent)
        rows = self._store.select(self._schema.summary(), params)
        summaries = [row for row in rows if not any(_truthy(row[flag]) for flag in _NOT_SUMMARY)]
        totals = [row for row in summaries if _truthy(row["is_total"])]
        overall = summarize(totals[0]) if totals else summarize(_EMPTY_SUMMARY)
        drop_off = [
            DropOff(turn=None if r["turn"] is None else int(r["turn"]), count=int(r["count"]))
            for r in self._store.select(self._schema.drop_off(), params)
        ]
        curves = _survival_curves(
            (key, row)  # per agent, and each agent's counts again for the overall curve
            for row in rows
            if _truthy(row["is_survival"])
            for key in (str(row["agent"]), None)
        )
        agents = []
        for row in summaries:
            if not _truthy(row["is_total"]):
                survival, reached = curves.get(str(row["agent"]), ([], []))
                agents.append(
                    AgentReport(
                        agent=str(row["agent"]),
                        survival=survival,
                        reached_turn=reached,
                        **summarize(row),
                    )
                )
        evaluations = summarize_evaluations(self._store.select(self._schema.evaluations(), params))
        survival, reached = curves.get(None, ([], []))
        exit_context, agent_exits = exit_contexts(
            row for row in rows if _truthy(row["is_exit"]) and _truthy(row["turn_abandoned"])
        )
        for entry in agents:
            entry.exit_context = agent_exits.get(entry.agent, ExitContext())
        lift_rows = self._store.select(
            self._schema.tool_lift(), {**params, "tools": MAX_LIFT_TOOLS}
        )
        tool_lift = tool_lifts(
            lift_rows,
            overall["total_conversations"],
            int(totals[0]["completed"] or 0) if totals else 0,
        )
        daily = [daily_point(row) for row in rows if _truthy(row["is_daily"])]
        bins = {
            int(row["bin"]): int(row["conversations"]) for row in rows if _truthy(row["is_bin"])
        }
        distribution = satisfaction_distribution(bins) if bins else []
        return Report(
            drop_off=drop_off,
            days=days,
            agents=agents,
            evaluations=evaluations,
            survival=survival,
            reached_turn=reached,
            daily=daily,
            satisfaction_distribution=distribution,
            exit_context=exit_context,
            tool_lift=tool_lift,
            **overall,
        )

    def compare(
        self,
        by: str,
        days: int = DEFAULT_DAYS,
        *,
        baseline: str | None = None,
        agent: str = "",
        now: datetime | None = None,
    ) -> Comparison:
        """Groups of conversations by ``by`` (a :data:`COMPARE_DIMENSIONS` value) side by
        side, each with intervals, its survival curve and a test against ``baseline``."""
        check_dimension(by)
        params = window_params(days, now, agent)
        rows = self._store.select(self._schema.compare(by), params)
        curves = _survival_curves(
            (str(row["value"]), row) for row in rows if _truthy(row["is_survival"])
        )
        return compare_groups(
            by,
            days,
            [row for row in rows if not _truthy(row["is_survival"])],
            curves,
            baseline=baseline,
            agent=agent,
        )

    def conversations(
        self,
        days: int = DEFAULT_DAYS,
        *,
        agent: str = "",
        outcome: str | None = None,
        rephrased: bool = False,
        min_turns: int = 0,
        order: str = CONVERSATION_ORDERS[0],
        limit: int = DEFAULT_CONVERSATIONS_LIMIT,
        now: datetime | None = None,
    ) -> ConversationList:
        """The window's conversations matching the filters, for finding ids to drill into
        with :meth:`conversation`: ``outcome`` (a :class:`ConversationOutcome` value, ``None``
        for any), ``rephrased`` (only those with a rephrase), ``min_turns`` (user messages),
        ordered worst satisfaction or latest activity first. Bad values: ``ValueError``."""
        outcome = check_outcome(outcome)
        order = check_order(order)
        params = {
            **window_params(days, now, agent),
            "outcome": outcome or "",
            "rephrased": int(bool(rephrased)),
            "min_turns": check_min_turns(min_turns),
            "limit": check_limit(limit),
        }
        rows = self._store.select(self._schema.conversation_list(order), params)
        return ConversationList(
            days=days,
            agent=agent,
            outcome=outcome,
            rephrased=bool(rephrased),
            min_turns=min_turns,
            order=order,
            limit=limit,
            conversations=[conversation_summary(row) for row in rows],
        )

    def conversation(self, conversation_id: str) -> ConversationDetail:
        """Every event of one conversation, oldest first, and its satisfaction score."""
        rows = self._store.select(
            self._store.schema.conversation_events(), {"cid": conversation_id}
        )
        events = [_normalize_event(row) for row in rows]
        return ConversationDetail(conversation_id, satisfaction(events), events)

    def existing_conversation(self, conversation_id: str) -> ConversationDetail:
        """:meth:`conversation`, or :class:`UnknownConversation` when it has no events: an
        unknown id is an error to report, not a conversation with a satisfaction of 0.1."""
        detail = self.conversation(conversation_id)
        if not detail.events:
            raise UnknownConversation(conversation_id)
        return detail


def _survival_curves(
    rows: Iterable[tuple[str | None, Mapping[str, Any]]],
) -> dict[str | None, tuple[list[SurvivalStep], list[FunnelStep]]]:
    """Survival curve and funnel per key, from ``(key, row)`` pairs of survival counts (rows
    whose ``turn`` is NULL, conversations without a user message, are left out)."""
    counts: dict[str | None, list[tuple[int, bool, int]]] = {}
    for key, row in rows:
        if row["turn"] is not None:
            counts.setdefault(key, []).append(
                (int(row["turn"]), _truthy(row["turn_abandoned"]), int(row["conversations"]))
            )
    return {key: survival_curve(durations) for key, durations in counts.items()}


def _truthy(value: Any) -> bool:
    """A boolean column from either engine (JSON true/1/"1", or a native bool/int)."""
    return value in (True, 1, "1", "true")


#: The summary query's grouping-set flags of rows that are not section 4 counts.
_NOT_SUMMARY: Final = ("is_survival", "is_exit", "is_daily", "is_bin")

_EMPTY_SUMMARY: Mapping[str, Any] = {
    "conversations": 0,
    "completed": 0,
    "abandoned": 0,
    "handoffs": 0,
    "messages_total": 0,
    "rephrases_total": 0,
    "timed": 0,
    "duration_us": 0,
    "satisfaction_sum": 0,
}


def _normalize_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """Same Python types from either engine (JSON text from chDB, native from the server)."""
    event = dict(row)
    micros = int(event.pop("timestamp_us"))
    event["timestamp"] = (
        datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    ).isoformat()
    for key in ("abandon_inferred", "rephrase", "derived"):
        event[key] = bool(event[key])
    event["attributes"] = dict(event.get("attributes") or {})
    return event

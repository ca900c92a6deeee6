"""Conversations: the worst conversations, and one conversation's timeline with its traces."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from .board import dashboard
from .names import CONVERSATIONS_UID, EVENTS
from .panels import SATISFACTION_COLORS, colored, column, row, sql_target, table
from .queries import DURATION_US, OUTCOME, SATISFACTION, TIMED, over_conversations, ratio
from .variables import FILTER_VARIABLES, textbox


def _explore_trace_url() -> str:
    """Grafana Explore on the trace data source, opened on the clicked trace id."""
    tokens = {
        "DS": "${trace_datasource}",
        "TRACE": "${__value.raw}",
        "FROM": "${__from}",
        "TO": "${__to}",
    }
    pane = {
        "trace": {
            "datasource": "@DS@",
            "queries": [
                {
                    "refId": "A",
                    "datasource": {"uid": "@DS@"},
                    "queryType": "traceql",
                    "query": "@TRACE@",
                }
            ],
            "range": {"from": "@FROM@", "to": "@TO@"},
        }
    }
    encoded = quote(json.dumps(pane, separators=(",", ":")), safe="@")
    for name, value in tokens.items():
        encoded = encoded.replace(f"@{name}@", value)
    return "/explore?schemaVersion=1&orgId=1&panes=" + encoded


def build() -> dict[str, Any]:
    open_conversation = {
        "title": "Open this conversation's timeline",
        "url": f"/d/{CONVERSATIONS_UID}/conversations?var-conversation=${{__value.raw}}"
        "&var-trace_datasource=${trace_datasource}&${__url_time_range}",
    }
    listing = f"""conversation_id, agent_name AS agent, channel, model, prompt_version,
    first_seen AS started, user_messages AS turns,
    round({SATISFACTION}, 3) AS satisfaction,
    {OUTCOME} AS outcome,
    tool_errors, rephrases, negative_feedback"""
    listing_columns = [
        column("conversation_id", "Conversation", links=[open_conversation]),
        column("agent", "Agent"),
        column("channel", "Channel"),
        column("model", "Model"),
        column("prompt_version", "Prompt"),
        column("started", "Started", "dateTimeAsIso"),
        column("turns", "Turns"),
        colored("satisfaction", "Satisfaction", "none", SATISFACTION_COLORS),
        column("outcome", "Outcome"),
        column("tool_errors", "Tool errors"),
        column("rephrases", "Rephrases"),
        column("negative_feedback", "Negative feedback"),
    ]
    selected = "conversation_id = ${conversation:singlequote}"
    summary = over_conversations(
        f"""conversation_id, agent_name AS agent, channel, model, prompt_version,
    first_seen AS started, last_seen AS last_event, user_messages AS turns,
    {OUTCOME} AS outcome,
    round({SATISFACTION}, 3) AS satisfaction,
    if({TIMED}, {ratio(DURATION_US, "1000000", 0)}, NULL) AS duration_seconds""",
        where=selected,
        filtered=False,
    )
    detail = """multiIf(
        event_type = 'started', concat('via ', channel),
        event_type = 'user_message', concat(ifNull(toString(message_length), '?'), ' chars',
            if(rephrase, ' - rephrase', '')),
        event_type = 'agent_response', concat(response_model, ' replied ',
            ifNull(toString(response_length), '?'), ' chars'),
        event_type = 'tool_called', concat(tool_name,
            if(error_type != '', concat(' failed: ', error_type), ' ok')),
        event_type = 'handoff_requested', handoff_reason,
        event_type = 'feedback_received', concat(feedback_rating,
            if(isNull(feedback_score), '', concat(' (', toString(feedback_score), ')'))),
        event_type = 'completed', concat('after ', ifNull(toString(total_turns), '?'), ' turns'),
        event_type = 'abandoned', concat('at turn ', ifNull(toString(abandoned_at_turn), '?'),
            if(abandon_inferred, ' (inferred from inactivity)', ' (explicit)')),
        '')"""
    timeline = f"""SELECT timestamp AS time, event_type AS event, turn,
    {detail} AS detail,
    agent_name AS agent, trace_id, span_id
FROM {EVENTS}
WHERE {selected}
ORDER BY timestamp, event_id
LIMIT 1 BY event_id"""
    panels = [
        row("Worst conversations (ClickHouse, the dashboard's time range)"),
        table(
            "Lowest satisfaction",
            sql_target(
                over_conversations(
                    listing, "ORDER BY satisfaction ASC, turns DESC, started DESC\nLIMIT 50"
                ),
                table=True,
            ),
            description="The 50 conversations with the lowest satisfaction score. Click a "
            "conversation id to open its timeline below.",
            overrides=listing_columns,
            width=12,
        ),
        table(
            "Most turns",
            sql_target(
                over_conversations(
                    listing, "ORDER BY turns DESC, satisfaction ASC, started DESC\nLIMIT 50"
                ),
                table=True,
            ),
            description="The 50 conversations that took the most user messages.",
            overrides=listing_columns,
            width=12,
        ),
        row("One conversation: ${conversation}"),
        table(
            "Summary",
            sql_target(summary, table=True),
            description="The selected conversation (variable 'conversation'), merged from the "
            "rollup regardless of the time range and filters.",
            overrides=[
                column("conversation_id", "Conversation"),
                column("agent", "Agent"),
                column("started", "Started", "dateTimeAsIso"),
                column("last_event", "Last event", "dateTimeAsIso"),
                colored("satisfaction", "Satisfaction", "none", SATISFACTION_COLORS),
                column("duration_seconds", "Duration", "s"),
            ],
            height=4,
        ),
        table(
            "Timeline",
            sql_target(timeline, table=True),
            description="Every event of the selected conversation, oldest first. Click a trace "
            "id to open the trace in Explore (data source uid: variable 'trace_datasource').",
            overrides=[
                column("time", "Time", "dateTimeAsIso"),
                column("event", "Event"),
                column("turn", "Turn"),
                column("detail", "Detail"),
                column(
                    "trace_id",
                    "Trace",
                    links=[
                        {
                            "title": "Open trace ${__value.raw}",
                            "url": _explore_trace_url(),
                            "targetBlank": True,
                        }
                    ],
                ),
                column("span_id", "Span"),
            ],
            height=14,
        ),
    ]
    variables = [
        *FILTER_VARIABLES,
        textbox(
            "conversation",
            "Conversation id",
            "",
            "gen_ai.conversation.id to show; click one in the tables above",
        ),
        textbox(
            "trace_datasource",
            "Trace data source uid",
            "tempo",
            "uid of the data source holding the agents' traces (Tempo, Jaeger, ...)",
        ),
    ]
    return dashboard(
        CONVERSATIONS_UID,
        "Conversation analytics / Conversations",
        "The worst conversations, and one conversation's timeline with links to its traces.",
        panels,
        variables,
    )

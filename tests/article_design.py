"""The seed article's own design: its PostgreSQL events table and its section 4 SQL.

Shared by the equivalence tests (the product's numbers equal these) and the benchmarks (the
product is measured against these, in the same run). The article's one bug is fixed: its
``INTERVAL ':days days'`` puts a bound parameter inside a string, so the window is
``%(now)s - make_interval(days => ...)`` with a fixed ``now``.
"""

from __future__ import annotations

CREATE_TABLE = """
CREATE TABLE conversation_events (
    id text PRIMARY KEY,
    conversation_id text NOT NULL,
    user_id text,
    event_type text NOT NULL,
    timestamp timestamptz NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'
)"""
INSERT = """
INSERT INTO conversation_events (id, conversation_id, user_id, event_type, timestamp, metadata)
VALUES (%s, %s, %s, %s, %s, %s)"""

#: The article's ``get_conversation_metrics``; only the window line differs (the bug fix).
ARTICLE_METRICS_SQL = """
    WITH conversations AS (
        SELECT
            conversation_id,
            MIN(CASE WHEN event_type = 'started' THEN timestamp END) AS start_time,
            MAX(CASE WHEN event_type = 'completed' THEN timestamp END) AS end_time,
            BOOL_OR(event_type = 'completed') AS was_completed,
            BOOL_OR(event_type = 'abandoned') AS was_abandoned,
            BOOL_OR(event_type = 'handoff_requested') AS had_handoff,
            COUNT(CASE WHEN event_type = 'user_message' THEN 1 END) AS user_turns
        FROM conversation_events
        WHERE timestamp >= %(now)s - make_interval(days => %(days)s)
        GROUP BY conversation_id
    )
    SELECT
        COUNT(*) AS total_conversations,
        ROUND(AVG(CASE WHEN was_completed THEN 1.0 ELSE 0.0 END) * 100, 1) AS completion_rate,
        ROUND(AVG(CASE WHEN was_abandoned THEN 1.0 ELSE 0.0 END) * 100, 1) AS abandonment_rate,
        ROUND(AVG(CASE WHEN had_handoff THEN 1.0 ELSE 0.0 END) * 100, 1) AS handoff_rate,
        ROUND(AVG(user_turns), 1) AS avg_turns,
        ROUND(AVG(EXTRACT(EPOCH FROM (end_time - start_time))), 0) AS avg_duration_seconds
    FROM conversations
"""

#: The article's ``get_drop_off_analysis``; only the window line differs (the bug fix).
ARTICLE_DROP_OFF_SQL = """
    SELECT
        (metadata->>'abandoned_at_turn')::int AS abandon_turn,
        COUNT(*) AS abandon_count
    FROM conversation_events
    WHERE event_type = 'abandoned'
      AND timestamp >= %(now)s - make_interval(days => %(days)s)
    GROUP BY abandon_turn
    ORDER BY abandon_count DESC
    LIMIT 10
"""

#: Bulk load of the article's table from Python, the fastest path PostgreSQL offers.
COPY_FROM_STDIN = """
COPY conversation_events (id, conversation_id, user_id, event_type, timestamp, metadata)
FROM STDIN"""

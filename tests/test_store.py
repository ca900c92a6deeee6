"""Store URLs, schema DDL (single node and cluster) and the engines' shared behaviour."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.rows import EventRow
from opentelemetry.exporter.conversation_analytics.store import (
    ConversationStore,
    Schema,
    StoreError,
    open_store,
    resolve_store_url,
    sql,
)
from opentelemetry.exporter.conversation_analytics.store.chdb_store import ChdbStore
from opentelemetry.exporter.conversation_analytics.store.url import ENV_STORE


class TestSchema:
    def test_apply_is_idempotent(self, store: ConversationStore) -> None:
        """Applying the DDL again keeps the data and raises nothing."""
        store.insert([EventRow("e1", "started", "c1", 1_790_000_000 * 10**9)])
        store.apply_schema()
        assert store.count_events() == 1

    def test_rollup_is_maintained_by_the_view(self, store: ConversationStore) -> None:
        """Inserting raw events fills the per-conversation rollup the report reads."""
        store.insert(
            [EventRow(f"e{i}", "user_message", "c1", 1_790_000_000 * 10**9) for i in (1, 2)]
        )
        rows = store.select(f"SELECT count() AS n FROM {store.schema.rollup}")
        assert int(rows[0]["n"]) >= 1

    @pytest.mark.parametrize("ttl_days", [0, 30])
    def test_ttl(self, ttl_days: int) -> None:
        """A TTL is set on both tables only when asked for."""
        ddl = "\n".join(Schema(ttl_days=ttl_days).ddl())
        assert ("INTERVAL 30 DAY" in ddl) is (ttl_days == 30)

    def test_cluster_ddl_parses(self, store: ConversationStore) -> None:
        """The replicated variant is valid ClickHouse SQL: ON CLUSTER, Replicated*, Distributed
        (creation and upgrade statements alike)."""
        schema = Schema(cluster="prod", database="analytics")
        statements = [*schema.ddl(), *schema.upgrade({}), schema.drop_view()]
        text = "\n".join(statements)
        assert text.count("ON CLUSTER `prod`") == len(statements)
        assert "ReplicatedReplacingMergeTree" in text
        assert "ReplicatedAggregatingMergeTree" in text
        assert "Distributed(`prod`" in text
        for statement in statements:
            # formatQuery parses without executing: a syntax error raises.
            store.select("SELECT formatQuery({q:String}) AS q", {"q": statement})
        cluster = Schema(cluster="prod")
        assert cluster.events.endswith("`conversation_events_all`")
        assert cluster.rollup.endswith("`conversation_rollup_all`")

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"database": "a; DROP TABLE x"},
            {"database": "db`"},
            {"cluster": "c'"},
            {"ttl_days": -1},
            {"ttl_days": "30"},
        ],
    )
    def test_invalid_settings_are_rejected(self, kwargs: dict[str, object]) -> None:
        """Identifiers and the TTL are checked before they reach any SQL text."""
        with pytest.raises(ValueError):
            Schema(**kwargs)  # type: ignore[arg-type]


class TestUrls:
    def test_default_is_embedded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With nothing configured the store is chDB in ./.conversation-analytics."""
        monkeypatch.delenv(ENV_STORE, raising=False)
        assert resolve_store_url(None) == "chdb://.conversation-analytics"

    def test_env_var_is_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``CONVERSATION_ANALYTICS_STORE`` names the store when no URL is given."""
        monkeypatch.setenv(ENV_STORE, "chdb:///srv/analytics")
        assert resolve_store_url(None) == "chdb:///srv/analytics"
        assert resolve_store_url("chdb:///x") == "chdb:///x"

    def test_chdb_url_opens_that_directory(self, tmp_path: Path) -> None:
        """``chdb:///abs/path`` stores under that directory, with the TTL from the query."""
        store = open_store(f"chdb://{tmp_path}/data?ttl_days=3")
        try:
            assert isinstance(store, ChdbStore)
            assert store.path == str(tmp_path / "data")
            assert store.schema.ttl_days == 3
            assert os.path.isdir(tmp_path / "data")
        finally:
            store.close()

    @pytest.mark.parametrize(
        "url", ["postgres://x/y", "chdb:///tmp/x?ttl_days=soon", "http://localhost:8123"]
    )
    def test_bad_urls_are_clear_errors(self, url: str) -> None:
        """Unknown schemes and malformed options raise ValueError before opening anything."""
        with pytest.raises(ValueError):
            open_store(url)

    def test_dead_clickhouse_is_a_store_error(self) -> None:
        """An unreachable server is a StoreError naming the address."""
        with pytest.raises(StoreError, match=r"127\.0\.0\.1:9"):
            open_store("clickhouse://u:p@127.0.0.1:9/analytics")


class TestEmbeddedEngine:
    def test_one_directory_per_process(self, store: ConversationStore, tmp_path: Path) -> None:
        """chDB serves one directory per process: a second one is a clear error."""
        with pytest.raises(StoreError, match="one store directory per process"):
            ChdbStore(str(tmp_path / "other"))

    def test_same_directory_is_shared(self, store: ConversationStore, store_url: str) -> None:
        """Two stores on one directory share the engine; closing one keeps the other open."""
        second = open_store(store_url)
        second.insert([EventRow("e1", "started", "c1", 1_790_000_000 * 10**9)])
        second.close()
        assert store.count_events() == 1

    def test_closed_store_refuses_work(self, store_url: str) -> None:
        """Using a closed store is a StoreError, not a crash."""
        store = open_store(store_url)
        store.close()
        with pytest.raises(StoreError):
            store.count_events()

    def test_bad_sql_is_a_store_error(self, store: ConversationStore) -> None:
        """Engine errors surface as StoreError."""
        with pytest.raises(StoreError):
            store.select("SELECT nonsense FROM nowhere")

    def test_insert_does_not_collapse_its_block(self, store: ConversationStore) -> None:
        """An insert writes its block as given: the pipeline dedupes event ids before writing,
        so the engine's collapse at insert (``optimize_on_insert``, slower than the write) is
        off, and equal keys in one block stay until a merge."""
        store.execute(f"SYSTEM STOP MERGES {store.schema.events}")
        twice = EventRow("e1", "started", "c1", 1_790_000_000 * 10**9)
        store.insert([twice, replace(twice)])
        rows = store.select(f"SELECT count() AS n FROM {store.schema.events}")
        assert int(rows[0]["n"]) == 2
        assert store.count_events() == 1  # reads still count each event id once


class TestSettingsClause:
    def test_formats_integer_settings(self) -> None:
        """Settings become a SETTINGS list, in order."""
        assert sql.settings_clause({"a_b": 0, "c": 12}) == "a_b = 0, c = 12"

    def test_rejects_a_name_that_is_not_an_identifier(self) -> None:
        """A setting name is formatted into SQL only when it is a plain identifier."""
        with pytest.raises(ValueError, match="identifier"):
            sql.settings_clause({"a = 1; DROP TABLE x --": 0})


@pytest.mark.clickhouse_server
@pytest.mark.skipif(
    not os.environ.get("CLICKHOUSE_URL"),
    reason="no ClickHouse server: set CLICKHOUSE_URL=clickhouse://user:pw@host:8123/db to run",
)
class TestClickHouseServer:
    def test_same_numbers_as_embedded(self) -> None:
        """The server path stores and reports the same events like the embedded one."""
        store = open_store(os.environ["CLICKHOUSE_URL"])
        try:
            cid = "server-test-'quote'\\back\nline"
            rows = [
                EventRow(f"srv-{cid}-{i}", kind, cid, 1_790_000_000 * 10**9 + i)
                for i, kind in enumerate(("started", "user_message", "completed"))
            ]
            store.insert(rows)
            detail = StoreReader(store).conversation(cid)
            assert [e["event_type"] for e in detail.events] == [
                "started",
                "user_message",
                "completed",
            ]
            assert detail.satisfaction == 0.9
        finally:
            store.close()


class TestUpgrade:
    def test_store_from_the_previous_schema_is_brought_up_to_date(self, store_url: str) -> None:
        """Tables and view made before derived events existed get the new columns and view
        when the store is opened; old events keep counting, new derived ones follow the
        explicit-over-derived rule."""
        old_events = tuple(c for c in sql.EVENT_COLUMNS if c[0] != "derived")
        old_rollup = tuple(
            c
            for c in sql.ROLLUP_COLUMNS
            if not c.name.startswith("derived_") and c.name != "explicit_tool_calls"
        )
        old_rollup = tuple(  # the previous version counted every event of a kind
            replace(
                c,
                state=c.state.replace(" AND NOT derived", ""),
                raw=c.raw.replace(" AND NOT derived", ""),
                merge=f"sum({c.name})",
            )
            if c.merge.startswith("if(")
            else c
            for c in old_rollup
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sql, "EVENT_COLUMNS", old_events)
            patch.setattr(sql, "ROLLUP_COLUMNS", old_rollup)
            patch.setattr(sql.Schema, "upgrade", lambda self, existing: [])
            old = open_store(store_url)  # the previous version's schema
            old.close()
        store = open_store(store_url)
        try:
            now = time.time_ns()
            store.insert(
                [
                    EventRow("e1", "user_message", "c1", now),
                    EventRow("e2", "user_message", "c1", now, derived=True),
                    EventRow("e3", "user_message", "c2", now, derived=True),
                ]
            )
            report = StoreReader(store).report()
            existing: dict[str, set[str]] = {}
            for row in store.select(
                store.schema.existing_columns(), {"database": "conversation_analytics"}
            ):
                existing.setdefault(row["table"], set()).add(row["name"])
        finally:
            store.close()
        assert report.total_conversations == 2
        assert report.avg_turns == 1.0  # c1: its explicit message; c2: its derived one
        # Upgraded: nothing left to add, the view is current (the next open runs no ALTER).
        assert store.schema.upgrade(existing) == []
        assert store.schema.view_is_current(existing)

    def test_store_from_before_the_abandonments_table_is_backfilled(self, store_url: str) -> None:
        """A store whose abandoned events predate the abandonments table gets them copied
        when opened, so drop-off still counts them; each once, however many copies exist."""
        now = time.time_ns()
        rows = [
            EventRow("a1", "abandoned", "c1", now, abandoned_at_turn=2),
            EventRow("a2", "abandoned", "c2", now, abandoned_at_turn=2),
            EventRow("a3", "abandoned", "c3", now, abandoned_at_turn=5),
            EventRow("m1", "user_message", "c3", now - 1000, turn=1),
        ]
        old = open_store(store_url)
        try:
            old.insert(rows)
            old.execute(f"DROP VIEW `conversation_analytics`.`{sql.ABANDONMENTS_VIEW}`")
            old.execute(f"DROP TABLE {old.schema.abandonments}")  # as before the table
        finally:
            old.close()
        store = open_store(store_url)
        try:
            backfilled = StoreReader(store).report().drop_off
            store.execute(store.schema.backfill_abandonments())  # a second copy of each
            store.insert([EventRow("a4", "abandoned", "c4", now, abandoned_at_turn=5)])
            drop_off = StoreReader(store).report().drop_off
        finally:
            store.close()
        assert [(entry.turn, entry.count) for entry in backfilled] == [(2, 2), (5, 1)]
        assert [(entry.turn, entry.count) for entry in drop_off] == [(2, 2), (5, 2)]

"""Store URLs: ``chdb:///dir`` (embedded, the default) and ``clickhouse[s]://user:pw@host:port/db``."""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from opentelemetry.exporter.conversation_analytics.store.base import ConversationStore, NoStore
from opentelemetry.exporter.conversation_analytics.store.sql import Schema
from opentelemetry.instrumentation.conversation import environment_variables as env

ENV_STORE: Final = env.CONVERSATION_ANALYTICS_STORE
ENV_TTL_DAYS: Final = env.CONVERSATION_ANALYTICS_TTL_DAYS
DEFAULT_STORE_URL: Final = env.DEFAULT_STORE_URL
DEFAULT_DIRECTORY: Final = DEFAULT_STORE_URL.removeprefix("chdb://")
_DEFAULT_PORTS: Final = {"clickhouse": 8123, "clickhouses": 8443}
#: The subdirectory chDB (like a ClickHouse server) keeps its databases' definitions in: a
#: directory without it has never been a store.
_CHDB_METADATA: Final = "metadata"
_CREATE_HINT: Final = f"demo, import or the collector create one; check --store or ${ENV_STORE}"


def resolve_store_url(url: str | None = None) -> str:
    """The argument, else ``$CONVERSATION_ANALYTICS_STORE``, else the embedded default."""
    return url or env.env_str(ENV_STORE, DEFAULT_STORE_URL)


def _int_option(value: str | None, name: str) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r:.40}") from None


def open_store(
    url: str | None = None, *, apply_schema: bool = True, must_exist: bool = False
) -> ConversationStore:
    """Open the store a URL names and (by default) create its schema if missing.

    Options ride in the query string: ``?cluster=NAME`` (ClickHouse server only) and
    ``?ttl_days=N`` (else ``$CONVERSATION_ANALYTICS_TTL_DAYS``; 0 keeps events forever).
    ``must_exist`` (reads): :class:`NoStore` for a store nothing was ever written to, and
    nothing is created on the way — not the directory, not the database.
    """
    url = resolve_store_url(url)
    parts = urlsplit(url)
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    ttl_days = _int_option(options.get("ttl_days", os.environ.get(ENV_TTL_DAYS)), "ttl_days")
    store: ConversationStore
    if parts.scheme == "chdb":
        from opentelemetry.exporter.conversation_analytics.store.chdb_store import ChdbStore

        path = unquote(parts.netloc + parts.path) or DEFAULT_DIRECTORY
        where = f"no store at {os.path.abspath(path)}"
        if must_exist and not os.path.isdir(os.path.join(path, _CHDB_METADATA)):
            raise NoStore(f"{where} ({_CREATE_HINT})")
        store = ChdbStore(path, Schema(ttl_days=ttl_days))
    elif parts.scheme in _DEFAULT_PORTS:
        from opentelemetry.exporter.conversation_analytics.store.clickhouse_store import (
            ClickHouseStore,
        )

        database = unquote(parts.path.strip("/")) or Schema.database
        schema = Schema(database=database, cluster=options.get("cluster"), ttl_days=ttl_days)
        host, port = parts.hostname or "localhost", parts.port or _DEFAULT_PORTS[parts.scheme]
        where = f"no store at {parts.scheme}://{host}:{port}/{database}"  # never the password
        store = ClickHouseStore(
            host=host,
            port=port,
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            secure=parts.scheme == "clickhouses",
            schema=schema,
        )
    else:
        raise ValueError(
            f"unsupported store URL scheme {parts.scheme!r}: "
            "use chdb:///path or clickhouse://user:password@host:8123/database"
        )
    if must_exist:
        try:
            found = store.has_schema()
        except Exception:
            store.close()
            raise
        if not found:
            store.close()
            raise NoStore(f"{where}: it has no tables ({_CREATE_HINT})")
    if apply_schema:
        try:
            store.apply_schema()
        except Exception:
            store.close()
            raise
    return store

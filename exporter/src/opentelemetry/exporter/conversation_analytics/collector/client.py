"""Reads through a running collector, for when it owns the embedded store's directory."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from opentelemetry.exporter.conversation_analytics.analytics import (
    CONVERSATION_ORDERS,
    DEFAULT_CONVERSATIONS_LIMIT,
    DEFAULT_DAYS,
    Comparison,
    ConversationDetail,
    ConversationList,
    Report,
)
from opentelemetry.exporter.conversation_analytics.collector.service import (
    DISCOVERY_FILE,
    chdb_directory,
)
from opentelemetry.exporter.conversation_analytics.store import (
    StoreError,
    UnknownConversation,
    resolve_store_url,
)
from opentelemetry.instrumentation.conversation import environment_variables as env

ENV_COLLECTOR_URL: Final = env.CONVERSATION_ANALYTICS_COLLECTOR_URL
ENV_AUTH_TOKEN: Final = env.CONVERSATION_ANALYTICS_AUTH_TOKEN


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class StoreOwner:
    """A live collector that owns an embedded store (from its ``collector.json``)."""

    pid: int
    api_url: str
    directory: Path


def store_owner(store_url: str | None) -> StoreOwner | None:
    """The live collector that owns this embedded store, else ``None``."""
    directory = chdb_directory(resolve_store_url(store_url))
    if directory is None:
        return None
    path: Path = directory / DISCOVERY_FILE
    try:
        info = json.loads(path.read_text())
        pid, url = int(info["pid"]), str(info["api_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return StoreOwner(pid, url, directory) if _alive(pid) else None


def discover(store_url: str | None) -> str | None:
    """The API URL of a live collector that owns this embedded store, else ``None``."""
    owner = store_owner(store_url)
    return owner.api_url if owner else None


class CollectorError(StoreError):
    """The collector answered with an error status; ``message`` is its own ``error`` text."""

    def __init__(self, base_url: str, status: int, message: str) -> None:
        super().__init__(f"collector at {base_url} answered {status}: {message}")
        self.status = status
        self.message = message


def _error_text(body: bytes) -> str:
    """The ``error`` of a JSON error body (what the admin API sends), else the body's start."""
    text = body.decode(errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        return text[:200]
    error = document.get("error") if isinstance(document, dict) else None
    return error[:300] if isinstance(error, str) else text[:200]


class CollectorClient:
    """The :class:`~.reader.ConversationReader` of a store a running collector owns, over its
    admin API: the same answers and errors as a :class:`~.reader.StoreReader`."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else env.env_str(ENV_AUTH_TOKEN)
        self.timeout = timeout

    def _get(self, path: str, **query: Any) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url)  # noqa: S310 - the operator's own collector URL
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CollectorError(self.base_url, exc.code, _error_text(exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            raise StoreError(f"cannot reach the collector at {self.base_url}: {exc}") from None

    def report(self, days: int = DEFAULT_DAYS, *, agent: str = "") -> Report:
        return Report.from_dict(self._get("/api/v1/report", days=days, agent=agent))

    def compare(
        self, by: str, days: int = DEFAULT_DAYS, *, baseline: str | None = None, agent: str = ""
    ) -> Comparison:
        """:meth:`StoreReader.compare` over the API; the API's 400 (a baseline with no
        conversations, say) is the ``ValueError`` the store would raise, in its words."""
        query: dict[str, Any] = {"by": by, "days": days, "agent": agent}
        if baseline is not None:
            query["baseline"] = baseline
        try:
            return Comparison.from_dict(self._get("/api/v1/compare", **query))
        except CollectorError as exc:
            if exc.status == 400:
                raise ValueError(exc.message) from None
            raise

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
        """:meth:`StoreReader.conversations` over the API; its 400 is the store's
        ``ValueError``, in its words."""
        query: dict[str, Any] = {
            "days": days,
            "agent": agent,
            "rephrased": "true" if rephrased else "false",
            "min_turns": min_turns,
            "order": order,
            "limit": limit,
        }
        if outcome:
            query["outcome"] = outcome
        try:
            return ConversationList.from_dict(self._get("/api/v1/conversations", **query))
        except CollectorError as exc:
            if exc.status == 400:
                raise ValueError(exc.message) from None
            raise

    def conversation(self, conversation_id: str) -> ConversationDetail:
        """One conversation; :class:`UnknownConversation` on the API's 404, as from a store."""
        try:
            document = self._get("/api/v1/conversation", id=conversation_id)
        except CollectorError as exc:
            if exc.status == 404:
                raise UnknownConversation(conversation_id) from None
            raise
        return ConversationDetail.from_dict(document)

    def existing_conversation(self, conversation_id: str) -> ConversationDetail:
        """:meth:`StoreReader.existing_conversation` over the API (an older collector
        answers an unknown id with 200 and no events: the same error then)."""
        detail = self.conversation(conversation_id)
        if not detail.events:
            raise UnknownConversation(conversation_id)
        return detail

"""Keyed pseudonymisation of user ids, so raw ids never leave the agent by default."""

from __future__ import annotations

import hashlib
import hmac
import logging

from opentelemetry.instrumentation.conversation import environment_variables as env

_logger = logging.getLogger(__name__)

#: Used only when no key is configured: ids stay stable across processes but are not secret.
DEFAULT_KEY = b"conversation-analytics-default-user-id-key"
_CACHE_LIMIT = 4096
_SHA256_BLOCK = 64


_warned = False


def _warn_default_key() -> None:
    global _warned  # noqa: PLW0603 - warn once per process, not per tracker
    _warned = True
    _logger.warning(
        "%s is not set: user ids are hashed with a public default key; "
        "set a secret key to make them unlinkable",
        env.CONVERSATION_ANALYTICS_USER_ID_KEY,
    )


class UserIdPseudonymizer:
    """HMAC-SHA256 of the user id under an operator key, truncated to 128 bits, cached."""

    __slots__ = ("_cache", "_enabled", "_key")

    def __init__(self, key: str | bytes | None = None, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = env.env_flag(env.CONVERSATION_ANALYTICS_PSEUDONYMIZE_USER_ID, True)
        if key is None:
            key = env.env_str(env.CONVERSATION_ANALYTICS_USER_ID_KEY) or None
            if key is None and enabled and not _warned:
                _warn_default_key()
        self._key = (key.encode() if isinstance(key, str) else key) or DEFAULT_KEY

        self._enabled = enabled
        self._cache: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        """Whether ids are hashed (``False`` keeps raw ids: an explicit operator opt-out)."""
        return self._enabled

    def hmac_pads(self) -> tuple[bytes, bytes] | None:
        """The key's inner and outer HMAC-SHA256 pads, for an engine that hashes ids itself
        (``SHA256(outer || SHA256(inner || id))``, RFC 2104); ``None`` when ids stay raw."""
        if not self._enabled:
            return None
        key = self._key if len(self._key) <= _SHA256_BLOCK else hashlib.sha256(self._key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\x00")
        return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)

    def __call__(self, user_id: str) -> str:
        if not self._enabled or not user_id:
            return user_id
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        digest = hmac.new(self._key, user_id.encode("utf-8", "replace"), hashlib.sha256)
        hashed = digest.hexdigest()[:32]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[user_id] = hashed
        return hashed

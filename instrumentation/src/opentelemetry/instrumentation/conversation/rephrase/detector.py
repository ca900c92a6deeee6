"""``RephraseDetector``: compares each user message with the conversation's previous one.

Only a score and a flag leave it. In memory it keeps, per live conversation, the previous
message's vector, keyed hashes of its content words and of its whole text (for "the text
differs"), bounded by count and by age; never the text. The default embedder loads once, in a
background thread started when the detector is built (never at import); messages that arrive
before it is ready are not scored. An embedder that fails turns detection off: counted, logged
once, never raised into the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.instrumentation.conversation.rephrase.embedders import (
    Embedder,
    WordLlamaEmbedder,
)
from opentelemetry.instrumentation.conversation.rephrase.lexical import (
    MessageSignature,
    lexical_features,
    same_text,
    signature,
    text_digest,
    words,
)
from opentelemetry.instrumentation.conversation.rephrase.scorer import (
    DEFAULT_WEIGHTS,
    RephraseWeights,
    is_rephrase,
)

_logger = logging.getLogger(__name__)

#: Live conversations whose previous message is kept (least recently active are forgotten).
MAX_CONVERSATIONS: Final = 10_000
#: A previous message older than this is not compared (the user came back to a new topic).
MAX_AGE_SECONDS: Final = 1800.0
#: Longest text embedded; the rest of a pasted document adds nothing to "is it the same ask".
MAX_TEXT_LENGTH: Final = 2000


@dataclass(frozen=True, slots=True)
class RephraseResult:
    """The score (0..1) and the decision for one user message."""

    similarity: float
    rephrase: bool


@dataclass(slots=True)
class _Previous:
    vector: Any
    signature: MessageSignature
    digest: int
    at: float


def _message(embed: Callable[[str], Any], text: str, now: float) -> tuple[_Previous, list[str]]:
    """What one message contributes: what is kept of it, and its words (for this call only)."""
    text = text[:MAX_TEXT_LENGTH]
    tokens = words(text)
    entry = _Previous(embed(text), signature(text, tokens), text_digest(tokens), now)
    return entry, tokens


def _features(
    previous: _Previous, current: _Previous, text: str, tokens: list[str]
) -> tuple[float, ...]:
    """The model's inputs for ``text`` (already truncated) after ``previous``."""
    cosine = float(previous.vector.dot(current.vector))
    return (cosine, *lexical_features(previous.signature, text, current.signature, tokens))


def _unit_vector(embedder: Embedder) -> Callable[[str], Any]:
    """One text to one unit vector, through the embedder's fastest entry point."""
    one = getattr(embedder, "embed_one", None)
    if callable(one):
        return one  # type: ignore[no-any-return]
    import numpy as np

    def embed(text: str) -> Any:
        vector = np.asarray(embedder([text])[0], dtype=np.float32)
        norm = float(np.sqrt(vector.dot(vector)))
        return vector / norm if norm else vector

    return embed


class RephraseDetector:
    """Scores each user message of a conversation against the previous one."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        weights: RephraseWeights | None = None,
        max_conversations: int = MAX_CONVERSATIONS,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._weights = weights or DEFAULT_WEIGHTS
        self._max_conversations = max_conversations
        self._max_age = max_age_seconds
        self._clock = clock
        self._previous: OrderedDict[str, _Previous] = OrderedDict()
        self._lock = threading.Lock()
        self._embed: Callable[[str], Any] | None = None
        self._ready = threading.Event()
        self.enabled = True
        self.failures = 0
        #: User messages not scored because the embedder was still loading.
        self.skipped = 0
        if embedder is not None:
            self._embed = _unit_vector(embedder)
            self._ready.set()
        else:
            threading.Thread(
                target=self._load_default, name="conversation-rephrase-loader", daemon=True
            ).start()

    def _load_default(self) -> None:
        try:
            self._embed = _unit_vector(WordLlamaEmbedder())
        except Exception:
            self._fail("loading the default embedder")
        finally:
            self._ready.set()

    @property
    def ready(self) -> bool:
        """Whether the embedder is loaded (or failed: then detection is off)."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the embedder is loaded; ``True`` when detection can run."""
        self._ready.wait(timeout)
        return self._ready.is_set() and self.enabled

    def observe(self, conversation_id: str, text: str) -> RephraseResult | None:
        """Score ``text`` against the conversation's previous user message and remember it in
        its place; ``None`` for a conversation's first message (or when detection is off)."""
        embed = self._embed
        if not self.enabled or type(text) is not str:
            return None
        if embed is None:
            self.skipped += 1
            return None
        now = self._clock()
        try:
            entry, tokens = _message(embed, text, now)
        except Exception:
            self._fail("embedding a message")
            return None
        with self._lock:
            previous = self._previous.pop(conversation_id, None)
            self._previous[conversation_id] = entry
            self._evict(now)
        if previous is None or now - previous.at > self._max_age:
            return None
        score = self._weights.score(_features(previous, entry, text, tokens))
        return RephraseResult(round(score, 4), is_rephrase(score, entry.digest == previous.digest))

    def decide(self, previous_text: str, text: str) -> bool:
        """The decision :meth:`observe` would take for this pair (for benchmarks and tests);
        needs the embedder."""
        features = self.features(previous_text, text)
        return is_rephrase(self._weights.score(features), same_text(previous_text, text))

    def features(self, previous_text: str, text: str) -> Sequence[float]:
        """The model's inputs for one pair (see :data:`.lexical.FEATURE_NAMES`), built as
        :meth:`observe` builds them."""
        if not self.wait_ready() or self._embed is None:
            raise RuntimeError("the embedder is not available")
        previous, _ = _message(self._embed, previous_text, 0.0)
        current, tokens = _message(self._embed, text, 0.0)
        return _features(previous, current, text[:MAX_TEXT_LENGTH], tokens)

    def forget(self, conversation_id: str) -> None:
        """Drop what is kept for a conversation (it ended)."""
        with self._lock:
            self._previous.pop(conversation_id, None)

    @property
    def tracked(self) -> int:
        """Conversations whose previous message is kept (not ``__len__``: an empty detector
        must not be falsy)."""
        return len(self._previous)

    def _evict(self, now: float) -> None:
        previous = self._previous
        while len(previous) > self._max_conversations:
            previous.popitem(last=False)
        while previous:
            oldest = next(iter(previous.values()))
            if now - oldest.at <= self._max_age:
                break
            previous.popitem(last=False)

    def _fail(self, where: str) -> None:
        self.failures += 1
        self.enabled = False
        if self.failures == 1:
            _logger.warning(
                "rephrase detection is off: the embedder failed %s (logged once)",
                where,
                exc_info=True,
            )

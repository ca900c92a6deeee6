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
        text = text[:MAX_TEXT_LENGTH]
        try:
            vector = embed(text)
        except Exception:
            self._fail("embedding a message")
            return None
        tokens = words(text)
        current = signature(text, tokens)
        now = self._clock()
        entry = _Previous(vector, current, text_digest(tokens), now)
        with self._lock:
            previous = self._previous.pop(conversation_id, None)
            self._previous[conversation_id] = entry
            self._evict(now)
        if previous is None or now - previous.at > self._max_age:
            return None
        cosine = float(previous.vector.dot(vector))
        lexical = lexical_features(previous.signature, text, current, tokens)
        score = self._weights.score((cosine, *lexical))
        return RephraseResult(
            round(score, 4), is_rephrase(score) and entry.digest != previous.digest
        )

    def score(self, previous_text: str, text: str) -> float:
        """The score of one pair of messages (for calibration and benchmarks); needs the
        embedder to be ready."""
        features = self.features(previous_text, text)
        return self._weights.score(features)

    def features(self, previous_text: str, text: str) -> Sequence[float]:
        """The model's inputs for one pair (see :data:`.lexical.FEATURE_NAMES`)."""
        if not self.wait_ready() or self._embed is None:
            raise RuntimeError("the embedder is not available")
        a, b = self._embed(previous_text), self._embed(text)
        return (float(a.dot(b)), *lexical_features(signature(previous_text), text, signature(text)))

    def forget(self, conversation_id: str) -> None:
        """Drop what is kept for a conversation (it ended)."""
        with self._lock:
            self._previous.pop(conversation_id, None)

    def __len__(self) -> int:
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

"""``RephraseDetector``: compares each user message with the conversation's previous one.

Only a score and a flag leave it. In memory it keeps, per live conversation, the previous
message's vector (the sum of its content words' token vectors), keyed hashes of its content
words and of its whole text (for "the text differs") and a few counts and flags, bounded by count
and by age; never the text. Per message: the words read once (:func:`.lexical.read`), one gather
of token vectors and three small matrix products (each numpy call costs a microsecond or more,
so there are as few as the cosines allow), the word features, the logistic score.

The default embedder loads once, in a background thread started when the detector is built
(never at import); messages that arrive before it is ready are not scored. An embedder that
fails turns detection off: counted, logged once, never raised into the agent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from opentelemetry.instrumentation.conversation.rephrase.embedders import (
    Embedder,
    WordLlamaEmbedder,
)
from opentelemetry.instrumentation.conversation.rephrase.lexical import (
    MessageSignature,
    Reading,
    lexical_features,
    novel_words,
    read,
    same_text,
    text_digest,
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

#: ``(text, the words to embed, its new content words or None) -> matrix``: the message's vector
#: as its first row and, when there are new words, theirs as the second (not unit length: the
#: cosines divide by the norms). Rows of one matrix: a product does all the dot products at once.
Vectors = Callable[[str, list[str], "list[str] | None"], Any]


class RephraseResult(NamedTuple):
    """The score (0..1) and the decision for one user message (a tuple: cheap to build)."""

    similarity: float
    rephrase: bool


@dataclass(slots=True)
class _Previous:
    vector: Any
    norm: float
    signature: MessageSignature
    digest: int
    at: float


def _entry(
    vectors: Vectors, text: str, reading: Reading, novel: list[str] | None, now: float
) -> tuple[_Previous, Any, list[list[float]]]:
    """What is kept of one message; its vectors and their dot products (for this call only)."""
    # Its content words carry what it asks (stop words only pull every question together);
    # all its words when it has none ("what about it?").
    matrix = vectors(text, reading.content or reading.tokens, novel)
    gram = (matrix @ matrix.T).tolist()
    digest = text_digest(reading.tokens)
    return _Previous(matrix[0], math.sqrt(gram[0][0]), reading.signature, digest, now), matrix, gram


def _features(
    previous: _Previous, reading: Reading, current: _Previous, matrix: Any, gram: list[list[float]]
) -> tuple[float, ...]:
    """The model's inputs (see :data:`.lexical.FEATURE_NAMES`) for a message after ``previous``."""
    dots = (matrix @ previous.vector).tolist()
    scale = previous.norm * current.norm
    cosine = dots[0] / scale if scale else 0.0
    if len(dots) == 1:
        novel = 1.0  # no new content word: nothing added
    else:
        scale = previous.norm * math.sqrt(gram[1][1])
        novel = dots[1] / scale if scale else 0.0
    return (
        cosine,
        cosine - 0.3 if cosine > 0.3 else 0.0,
        cosine - 0.6 if cosine > 0.6 else 0.0,
        novel,
        *lexical_features(previous.signature, reading),
    )


def _vectors(embedder: Embedder) -> Vectors:
    """The embedder's fastest entry point: WordLlama's sums over the words already split, else
    one call with the text (and its new words, when there are some)."""
    sum_words = getattr(embedder, "sum_words", None)
    if callable(sum_words):
        return lambda text, words, novel: sum_words(words, novel or ())
    import numpy as np

    def vectors(text: str, words: list[str], novel: list[str] | None) -> Any:
        batch = [text, " ".join(novel)] if novel else [text]
        return np.asarray([np.asarray(v, dtype=np.float32) for v in embedder(batch)])

    return vectors


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
        self._vectors: Vectors | None = None
        self._ready = threading.Event()
        self.enabled = True
        self.failures = 0
        #: User messages not scored because the embedder was still loading.
        self.skipped = 0
        if embedder is not None:
            self._vectors = _vectors(embedder)
            self._ready.set()
        else:
            threading.Thread(
                target=self._load_default, name="conversation-rephrase-loader", daemon=True
            ).start()

    def _load_default(self) -> None:
        try:
            self._vectors = _vectors(WordLlamaEmbedder())
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
        vectors = self._vectors
        if not self.enabled or type(text) is not str:
            return None
        if vectors is None:
            self.skipped += 1
            return None
        now = self._clock()
        try:
            text = text[:MAX_TEXT_LENGTH]
            reading = read(text)
            previous = self._previous.get(conversation_id)
            if previous is not None and now - previous.at > self._max_age:
                previous = None
            novel = None if previous is None else novel_words(previous.signature, reading)
            entry, matrix, gram = _entry(vectors, text, reading, novel, now)
        except Exception:
            self._fail("embedding a message")
            return None
        with self._lock:
            self._previous.pop(conversation_id, None)
            self._previous[conversation_id] = entry
            self._evict(now)
        if previous is None:
            return None
        score = self._weights.score(_features(previous, reading, entry, matrix, gram))
        return RephraseResult(round(score, 4), is_rephrase(score, entry.digest == previous.digest))

    def decide(self, previous_text: str, text: str) -> bool:
        """The decision :meth:`observe` would take for this pair (for benchmarks and tests);
        needs the embedder."""
        features = self.features(previous_text, text)
        return is_rephrase(self._weights.score(features), same_text(previous_text, text))

    def features(self, previous_text: str, text: str) -> Sequence[float]:
        """The model's inputs for one pair (see :data:`.lexical.FEATURE_NAMES`), built as
        :meth:`observe` builds them."""
        if not self.wait_ready() or self._vectors is None:
            raise RuntimeError("the embedder is not available")
        previous_text, text = previous_text[:MAX_TEXT_LENGTH], text[:MAX_TEXT_LENGTH]
        previous, _, _ = _entry(self._vectors, previous_text, read(previous_text), None, 0.0)
        reading = read(text)
        novel = novel_words(previous.signature, reading)
        current, matrix, gram = _entry(self._vectors, text, reading, novel, 0.0)
        return _features(previous, reading, current, matrix, gram)

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

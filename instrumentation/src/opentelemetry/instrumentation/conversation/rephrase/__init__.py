"""Rephrase detection in the agent: is this user message the previous one asked again?

``ConversationTracker(detect_rephrases=True)`` (or ``CONVERSATION_ANALYTICS_DETECT_REPHRASES=true``)
scores each user message against the conversation's previous one and records only
``conversation.rephrase`` and ``conversation.rephrase.similarity``; no text leaves the process.
The default embedder needs ``pip install 'opentelemetry-instrumentation-conversation[rephrase]'``.
Nothing here is imported until detection is turned on.
"""

from opentelemetry.instrumentation.conversation.rephrase.detector import (
    RephraseDetector,
    RephraseResult,
)
from opentelemetry.instrumentation.conversation.rephrase.embedders import (
    Embedder,
    EmbedderUnavailable,
    WordLlamaEmbedder,
    fastembed_embedder,
    model2vec_embedder,
    openai_embedder,
    sentence_transformers_embedder,
)
from opentelemetry.instrumentation.conversation.rephrase.scorer import (
    DEFAULT_WEIGHTS,
    RephraseWeights,
    fit_weights,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "Embedder",
    "EmbedderUnavailable",
    "RephraseDetector",
    "RephraseResult",
    "RephraseWeights",
    "WordLlamaEmbedder",
    "fastembed_embedder",
    "fit_weights",
    "model2vec_embedder",
    "openai_embedder",
    "sentence_transformers_embedder",
]

"""Embedders: callables from a list of strings to one vector per string.

The default, :class:`WordLlamaEmbedder`, is a static embedding (a token table averaged) shipped
inside the ``wordllama`` wheel: no download at run time, no GPU, tens of microseconds per message.
It reads the wheel's files directly rather than importing ``wordllama``: that package configures
the root logger on import and, in 0.4.0, looks for its bundled tokenizer in the wrong folder.

The adapters wrap models teams may already have (sentence-transformers, model2vec, fastembed, an
OpenAI-compatible ``/embeddings`` endpoint). Each imports its library when first built, never at
module import; their cosine scales differ from WordLlama's, so refit the detector's weights for
them (``benchmarks/bench_rephrase.py --fit``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from opentelemetry.instrumentation.conversation.rephrase.lexical import KNOWN_WORDS

#: ``texts -> vectors``; any callable of this shape is an embedder.
Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]

WORDLLAMA_WEIGHTS: Final = "weights/l2_supercat_256.safetensors"
WORDLLAMA_TOKENIZER: Final = "tokenizers/l2_supercat_tokenizer_config.json"
WORDLLAMA_TENSOR: Final = "embedding.weight"
_WORD_START: Final = "\u2581"  # SentencePiece's mark of a word's first piece
#: Messages of fewer tokens (almost all) take their summing rows from a table built once.
_MASKS: Final = 64


class EmbedderUnavailable(RuntimeError):
    """The embedder's library or model files are not installed."""


def _package_dir(package: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the package without executing it
    if spec is None or not spec.submodule_search_locations:
        distribution = "opentelemetry-instrumentation-conversation"
        hint = f"pip install '{distribution}[{extra}]'"
        raise EmbedderUnavailable(f"{package} is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


class WordLlamaEmbedder:
    """WordLlama's 256-dimension static embedding, loaded from the installed wheel's files."""

    def __init__(self, package_dir: Path | None = None) -> None:
        import numpy as np
        from safetensors import safe_open
        from tokenizers import Tokenizer

        root = package_dir or _package_dir("wordllama", "rephrase")
        weights, tokenizer = root / WORDLLAMA_WEIGHTS, root / WORDLLAMA_TOKENIZER
        for path in (weights, tokenizer):
            if not path.is_file():
                raise EmbedderUnavailable(f"wordllama's bundled file is missing: {path}")
        with safe_open(str(weights), framework="np") as tensors:
            self._table = np.ascontiguousarray(tensors.get_tensor(WORDLLAMA_TENSOR), np.float32)
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._add = np.add.reduce
        self._np = np
        self.dimensions: int = int(self._table.shape[1])
        self._zeros = np.zeros((1, self.dimensions), np.float32)
        self._masks = np.stack([self._mask(count, _MASKS) for count in range(_MASKS)])
        # A word the vocabulary holds whole ("▁word") is that one token, as the tokenizer would
        # split it (no merge crosses a "▁"): a dict lookup instead of a tokenizer call. Only
        # lower-case pieces: the detector's words are lower-cased. Its own words (stop words,
        # contractions) are split once here. Nothing here comes from a user's message.
        self._word_ids: dict[str, tuple[int, ...]] = {
            piece[1:]: (index,)
            for piece, index in self._tokenizer.get_vocab().items()
            if piece.startswith(_WORD_START) and len(piece) > 1 and piece == piece.lower()
        }
        self._tokenize = self._tokenizer.model.tokenize
        for word in KNOWN_WORDS:
            if word not in self._word_ids:
                self._word_ids[word] = self._pieces(word)

    def _pieces(self, word: str) -> tuple[int, ...]:
        """The token ids of one word (no space in it) as the tokenizer splits it after a space:
        its normalizer only marks the word's start ("▁") and the model does the rest."""
        return tuple([token.id for token in self._tokenize(_WORD_START + word)])

    def embed_one(self, text: str) -> Any:
        """One unit vector (a numpy array): the mean of the text's token vectors."""
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            return self._zeros[0]
        vector = self._add(self._table.take(ids, axis=0), axis=0)  # the sum: scale cancels
        norm = math.sqrt(vector.dot(vector))
        return vector / norm if norm else vector

    def sum_words(self, words: Sequence[str], novel: Sequence[str] = ()) -> Any:
        """A matrix whose first row sums the token vectors of ``words`` and whose second, when
        ``novel`` (some of them) is not empty, sums theirs: the detector's path, on the words it
        has already split and lower-cased. A word the vocabulary holds whole is looked up;
        another goes to the BPE model alone (what the tokenizer does to a word after a space,
        without its normalizer and post-processor). Sums, not means: the scale cancels in a
        cosine. One gather and one matrix product: each numpy call costs a microsecond or two."""
        known = self._word_ids
        ids: list[int] = []
        fresh: list[int] = []  # the new words' tokens go last: the second row sums the tail
        novel_words = set(novel)
        for word in words:
            found = known.get(word)
            if found is None:
                found = self._pieces(word)
            if novel_words and word in novel_words:
                fresh.extend(found)
            else:
                ids.extend(found)
        count = len(ids)
        if fresh:
            ids.extend(fresh)
        total = len(ids)
        if not total:
            return self._zeros
        if total < _MASKS:
            mask = self._masks[count, : 2 if fresh else 1, :total]
        else:
            mask = self._mask(count, total)
        return mask @ self._table.take(ids, axis=0)

    def _mask(self, count: int, total: int) -> Any:
        """The 0/1 rows that sum all of a message's ``total`` token vectors and (when
        ``count`` is less) those from ``count`` on."""
        mask = self._np.ones((1 if total == count else 2, total), self._np.float32)
        if total > count:
            mask[1, :count] = 0.0
        return mask

    def __call__(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return [self.embed_one(text) for text in texts]


def sentence_transformers_embedder(model: str = "all-MiniLM-L6-v2", **kwargs: Any) -> Embedder:
    """A sentence-transformers model (its own download and cache rules apply)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderUnavailable("pip install sentence-transformers") from exc
    encoder = SentenceTransformer(model, **kwargs)
    return lambda texts: encoder.encode(list(texts), normalize_embeddings=True)


def model2vec_embedder(model: str = "minishlab/potion-base-8M") -> Embedder:
    """A model2vec static model (a local path, or a Hugging Face id it downloads)."""
    try:
        from model2vec import StaticModel
    except ImportError as exc:
        raise EmbedderUnavailable("pip install model2vec") from exc
    encoder = StaticModel.from_pretrained(model)
    return lambda texts: encoder.encode(list(texts))


def fastembed_embedder(model: str = "BAAI/bge-small-en-v1.5") -> Embedder:
    """A fastembed ONNX model."""
    try:
        from fastembed import TextEmbedding
    except ImportError as exc:
        raise EmbedderUnavailable("pip install fastembed") from exc
    encoder = TextEmbedding(model_name=model)
    return lambda texts: list(encoder.embed(list(texts)))


def openai_embedder(
    base_url: str,
    model: str,
    *,
    api_key: str | None = None,
    timeout: float = 2.0,
) -> Embedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings`` endpoint (vLLM, Ollama, OpenAI).

    A network call per user message: it blocks the agent for its round trip, and the message
    text goes to that endpoint. Use one you operate.
    """
    if not base_url.startswith(("http://", "https://")):
        raise ValueError("base_url must be an http:// or https:// URL")
    url = base_url.rstrip("/") + "/embeddings"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def embed(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        body = json.dumps({"model": model, "input": list(texts)}).encode()
        request = urllib.request.Request(url, body, headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            payload = json.loads(response.read())
        rows = sorted(payload["data"], key=lambda row: row["index"])
        return [row["embedding"] for row in rows]

    return embed

"""Measuring a detector on labelled pairs of consecutive user messages (JSON lines with
``previous``, ``message``, ``rephrase`` and optionally ``domain`` and ``kind``), and fitting its
weights on them. Used by ``benchmarks/bench_rephrase.py`` and the tests; not on the agent's path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.instrumentation.conversation.rephrase.detector import RephraseDetector
from opentelemetry.instrumentation.conversation.rephrase.lexical import same_text
from opentelemetry.instrumentation.conversation.rephrase.scorer import (
    RephraseWeights,
    fit_weights,
    is_rephrase,
)


@dataclass(frozen=True, slots=True)
class LabelledPair:
    previous: str
    message: str
    rephrase: bool
    domain: str = ""
    kind: str = ""


def load_pairs(path: str | Path) -> list[LabelledPair]:
    """The pairs of one JSON-lines file; a malformed line is an error naming its line."""
    pairs: list[LabelledPair] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append(
                    LabelledPair(
                        str(row["previous"]),
                        str(row["message"]),
                        bool(row["rephrase"]),
                        str(row.get("domain", "")),
                        str(row.get("kind", "")),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a labelled pair ({exc})") from exc
    return pairs


@dataclass(frozen=True, slots=True)
class Scores:
    """Counts and rates of a detector's decisions against the labels."""

    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def decisions(detector: RephraseDetector, pairs: Iterable[LabelledPair]) -> list[bool]:
    """The detector's decision on each pair, as :meth:`RephraseDetector.observe` decides."""
    return [detector.decide(pair.previous, pair.message) for pair in pairs]


def score_pairs(predicted: Sequence[bool], pairs: Sequence[LabelledPair]) -> Scores:
    tp = sum(1 for p, pair in zip(predicted, pairs, strict=True) if p and pair.rephrase)
    fp = sum(1 for p, pair in zip(predicted, pairs, strict=True) if p and not pair.rephrase)
    fn = sum(1 for p, pair in zip(predicted, pairs, strict=True) if not p and pair.rephrase)
    return Scores(tp, fp, fn, len(pairs) - tp - fp - fn)


def fit(
    detector: RephraseDetector, pairs: Sequence[LabelledPair], l2: float = 1.0
) -> RephraseWeights:
    """Weights for ``detector``'s embedder, fitted on ``pairs``."""
    features = [detector.features(pair.previous, pair.message) for pair in pairs]
    return fit_weights(features, [pair.rephrase for pair in pairs], l2=l2)


def cross_validated_decisions(
    detector: RephraseDetector,
    pairs: Sequence[LabelledPair],
    *,
    folds: int = 5,
    l2: float = 0.1,
    seed: int = 0,
) -> list[bool]:
    """Each pair's decision by weights fitted on the other folds (``folds``-fold, a seeded
    shuffle), so scores over any subset of them estimate quality on unseen pairs."""
    import random

    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible split, not a secret
    features = [detector.features(pair.previous, pair.message) for pair in pairs]
    predicted = [False] * len(pairs)
    for fold in range(folds):
        held = set(order[fold::folds])
        train = [i for i in order if i not in held]
        weights = fit_weights(
            [features[i] for i in train], [pairs[i].rephrase for i in train], l2=l2
        )
        for i in held:
            same = same_text(pairs[i].previous, pairs[i].message)
            predicted[i] = is_rephrase(weights.score(features[i]), same)
    return predicted


def cross_validate(
    detector: RephraseDetector,
    pairs: Sequence[LabelledPair],
    *,
    folds: int = 5,
    l2: float = 0.1,
    seed: int = 0,
) -> Scores:
    """``folds``-fold cross-validation: each pair decided by weights fitted without it, so the
    scores estimate quality on pairs the weights never saw."""
    predicted = cross_validated_decisions(detector, pairs, folds=folds, l2=l2, seed=seed)
    return score_pairs(predicted, pairs)

"""One rule for "is this message a rephrase of the previous one": a logistic model over the
embedding cosine and the word-level signals of :mod:`.lexical`.

The weights below were fitted on all labelled pairs in ``benchmarks/data/`` (710, four files)
with the default WordLlama embedder and an L2 penalty of 0.1 (``python
benchmarks/bench_rephrase.py --fit`` prints them); their quality on unseen pairs is estimated by
5-fold cross-validation (each pair decided by weights fitted without it), which the benchmark
prints. The bias is shifted so the decision sits at the article's 0.85: a message is a rephrase
when its score is at least :data:`~..semconv.REPHRASE_THRESHOLD`, the same rule the store
applies to a similarity reported without a flag. An acknowledgement scores 0 whatever the
weights: the one rule outside the model.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.rephrase.lexical import (
    ACKNOWLEDGEMENT,
    FEATURE_NAMES,
)


@dataclass(frozen=True, slots=True)
class RephraseWeights:
    """A logistic model: ``score = sigmoid(bias + sum(coefficient * feature))``."""

    bias: float
    coefficients: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.coefficients) != len(FEATURE_NAMES):
            raise ValueError(f"need {len(FEATURE_NAMES)} coefficients, one per {FEATURE_NAMES}")

    def score(self, features: Sequence[float]) -> float:
        """The rephrase score in 0..1; 0 for an acknowledgement ("ok thanks" asks nothing, so
        it repeats nothing), whatever the weights."""
        if len(features) != len(self.coefficients):
            raise ValueError(f"need {len(self.coefficients)} features, got {len(features)}")
        if features[ACKNOWLEDGEMENT]:
            return 0.0
        z = self.bias + sum(map(operator.mul, self.coefficients, features))
        if z < -60.0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))


#: Fitted with the default embedder (see the module docstring); refit for another embedder.
DEFAULT_WEIGHTS: Final = RephraseWeights(
    bias=3.676529507338725,
    coefficients=(
        5.611122186066515,  # cosine
        -5.253581212747615,  # cosine_over_0.3
        -3.6748944392361933,  # cosine_over_0.6
        5.201554140966942,  # novel_cosine
        -1.6079609724775827,  # swap
        3.258811147655494,  # correction
        5.329707167544788,  # reask
        -0.7762890824564121,  # follow_up
        -1.2171631036141777,  # aspect
        -3.840676736786689,  # acknowledgement
        -6.460060314312865,  # short
        -6.271077629667607,  # length_ratio
        -3.376778716937567,  # topic_cue
        0.6607763496643893,  # anaphora
        -1.8528175337793207,  # details
    ),
)


def is_rephrase(score: float, same_text: bool) -> bool:
    """The decision: a score at or above the threshold (the article's 0.85), for a message
    whose words differ from the previous one's (the same text again is not a rephrase)."""
    return not same_text and score >= semconv.REPHRASE_THRESHOLD


def fit_weights(
    features: Sequence[Sequence[float]],
    labels: Sequence[bool],
    *,
    l2: float = 0.1,
    iterations: int = 50,
) -> RephraseWeights:
    """Fit the logistic model (Newton's method with an L2 penalty), then shift its bias so the
    score at the training set's best-F1 cut becomes the threshold. Needs numpy."""
    import numpy as np

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    design = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design.shape[1])
    penalty = np.eye(design.shape[1]) * l2
    penalty[0, 0] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (p - y) + penalty @ beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    z = design @ beta
    best_cut, best_f1 = 0.0, -1.0
    for cut in np.unique(z):
        predicted = z >= cut
        tp = float((predicted & (y == 1)).sum())
        if tp == 0:
            continue
        precision, recall = tp / predicted.sum(), tp / (y == 1).sum()
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best_cut, best_f1 = float(cut), f1
    target = math.log(semconv.REPHRASE_THRESHOLD / (1 - semconv.REPHRASE_THRESHOLD))
    bias = float(beta[0]) + target - best_cut
    return RephraseWeights(bias, tuple(float(b) for b in beta[1:]))

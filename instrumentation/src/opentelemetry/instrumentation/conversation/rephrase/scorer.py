"""One rule for "is this message a rephrase of the previous one": a logistic model over the
embedding cosine and the word-level signals of :mod:`.lexical`.

The weights below were fitted on all labelled pairs in ``benchmarks/data/`` (510, three files)
with the default WordLlama embedder (``python benchmarks/bench_rephrase.py --fit`` prints them);
their quality on unseen pairs is estimated by 5-fold cross-validation (each pair decided by
weights fitted without it), which the benchmark prints. The bias is shifted so the decision sits
at the article's 0.85: a message is a rephrase when its score is at least
:data:`~..semconv.REPHRASE_THRESHOLD`, the same rule the store applies to a similarity reported
without a flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.instrumentation.conversation import semconv
from opentelemetry.instrumentation.conversation.rephrase.lexical import FEATURE_NAMES


@dataclass(frozen=True, slots=True)
class RephraseWeights:
    """A logistic model: ``score = sigmoid(bias + sum(coefficient * feature))``."""

    bias: float
    coefficients: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.coefficients) != len(FEATURE_NAMES):
            raise ValueError(f"need {len(FEATURE_NAMES)} coefficients, one per {FEATURE_NAMES}")

    def score(self, features: Sequence[float]) -> float:
        """The rephrase score in 0..1."""
        z = self.bias
        for coefficient, value in zip(self.coefficients, features, strict=True):
            z += coefficient * value
        if z < -60.0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))


#: Fitted with the default embedder (see the module docstring); refit for another embedder.
DEFAULT_WEIGHTS: Final = RephraseWeights(
    bias=4.309847987311796,
    coefficients=(
        4.356829141607668,  # cosine
        -2.6681732255263255,  # jaccard
        -0.5848183426203263,  # containment
        -1.3501493570166738,  # swap
        2.5165630386244286,  # correction
        -0.4483114274991114,  # follow_up
        -2.2835608929358595,  # acknowledgement
        -4.5638111145999645,  # short
        0.07480086872494675,  # new_entities
        -6.035909567055257,  # length_ratio
        -2.220281060329353,  # topic_cue
        0.574388663165809,  # anaphora
        0.7747222017080118,  # same_form
        -0.015835173879552973,  # statement
        0.12931762085688456,  # digits
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

"""One rule for "is this message a rephrase of the previous one": a logistic model over the
embedding cosine and the word-level signals of :mod:`.lexical`.

The weights below were fitted on all labelled pairs in ``benchmarks/data/`` (330) with the default
WordLlama embedder (``python benchmarks/bench_rephrase.py --fit`` prints them); their quality on
unseen pairs is estimated by 5-fold cross-validation (each pair decided by weights fitted without
it), which the benchmark prints. The bias is shifted so the decision sits at the article's 0.85:
a message is a rephrase when its score is at least :data:`~..semconv.REPHRASE_THRESHOLD`, the
same rule the store applies to a similarity reported without a flag.
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
    bias=4.104151148081797,
    coefficients=(
        5.88564640614444,  # cosine
        -2.4017412726373557,  # jaccard
        -1.4329554699299487,  # containment
        -1.881737330978747,  # swap
        2.0441479642047016,  # correction
        -0.8190031418669436,  # follow_up
        -1.8524109083443336,  # acknowledgement
        -5.087128955817681,  # short
        -0.3210155556314905,  # new_entities
        -6.38576148116514,  # length_ratio
        -1.9661289164864229,  # topic_cue
        0.797831946805909,  # anaphora
        1.3034349484400378,  # same_form
        0.4647102086014728,  # statement
        0.5457313493296042,  # digits
    ),
)


def is_rephrase(score: float) -> bool:
    """The decision: a score at or above the threshold (the article's 0.85)."""
    return score >= semconv.REPHRASE_THRESHOLD


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

"""Rephrase detection: quality on labelled pairs, and its cost on a user message's ``record()``.

Quality: precision, recall and F1 at the default threshold (0.85) by 5-fold cross-validation
(each pair decided by weights fitted without it) over the labelled pairs of
``benchmarks/data/rephrase_pairs_*.jsonl``: the original 510 (``train``, ``heldout``, ``third``,
written independently) on their own, then all pairs with the scores split into the original
510 and the 200 of ``fourth`` (written later, for the second round of changes). Then weights
fitted without ``rephrase_pairs_heldout`` scored on it alone, and weights fitted on the original
510 scored on ``fourth``; the shipped weights in-sample with errors per kind of pair; and, as the
baseline, the article's rule alone (embedding cosine >= threshold) at 0.85 and at its best
threshold.

Cost: ``tracker.record(..., USER_MESSAGE, message=text)`` inside a recording span, with
detection on and off, over the dataset's messages round-robin in a few live conversations; the
difference of the medians is what detection adds (target <= 100 us p50). Then ``observe()``
alone over the same messages.

``--fit`` refits the weights on all pairs and prints them for ``scorer.py``.

Run: ``python benchmarks/bench_rephrase.py`` (``--help`` for options). Needs the ``[rephrase]``
extra (``wordllama``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

import _util
from opentelemetry import trace
from opentelemetry.instrumentation.conversation import ConversationEvent, ConversationTracker
from opentelemetry.instrumentation.conversation.rephrase import (
    RephraseDetector,
    WordLlamaEmbedder,
)
from opentelemetry.instrumentation.conversation.rephrase.evaluation import (
    LabelledPair,
    Scores,
    cross_validated_decisions,
    decisions,
    fit,
    load_pairs,
    score_pairs,
)

DATA = Path(__file__).parent / "data"
PAIR_FILES = sorted(DATA.glob("rephrase_pairs_*.jsonl"))
#: The files of the first round (510 pairs); the others were added later.
ORIGINAL = ("rephrase_pairs_heldout", "rephrase_pairs_third", "rephrase_pairs_train")
HELDOUT = "rephrase_pairs_heldout"


def _line(name: str, scores: Scores, count: int) -> str:
    return (
        f"  {name}: {count:>4} pairs  precision {scores.precision:.3f}  "
        f"recall {scores.recall:.3f}  F1 {scores.f1:.3f}"
    )


def _cross_validation(
    detector: RephraseDetector,
    original: Sequence[LabelledPair],
    added: Sequence[LabelledPair],
    l2: float,
) -> None:
    """5-fold cross-validation over the original pairs, then over all (scored per part); seed 0
    as the headline, seeds 0-4 for the spread a split alone makes."""
    spread: dict[str, list[float]] = {"original": [], "all": []}
    for seed in range(5):
        alone = cross_validated_decisions(detector, original, l2=l2, seed=seed)
        spread["original"].append(score_pairs(alone, original).f1)
        if seed == 0:
            print(
                _line("5-fold CV, the original pairs", score_pairs(alone, original), len(original))
            )
        if not added:
            continue
        every = list(original) + list(added)
        both = cross_validated_decisions(detector, every, l2=l2, seed=seed)
        spread["all"].append(score_pairs(both, every).f1)
        if seed == 0:
            n = len(original)
            print(_line("5-fold CV, all pairs", score_pairs(both, every), len(every)))
            print(_line("  of which the original", score_pairs(both[:n], original), n))
            print(_line("  of which the added", score_pairs(both[n:], added), len(added)))
    for name, values in spread.items():
        if values:
            print(
                f"  5-fold CV F1 over seeds 0-4 ({name}): mean {statistics.mean(values):.3f}, "
                f"{min(values):.3f}-{max(values):.3f}"
            )


def _unseen(
    embedder: WordLlamaEmbedder,
    name: str,
    train: Sequence[LabelledPair],
    test: Sequence[LabelledPair],
    l2: float,
) -> None:
    """Weights fitted on ``train`` only, scored on ``test``."""
    weights = fit(RephraseDetector(embedder), train, l2=l2)
    held = RephraseDetector(embedder, weights=weights)
    print(_line(name, score_pairs(decisions(held, test), test), len(test)))


def _report(name: str, detector: RephraseDetector, pairs: Sequence[LabelledPair]) -> None:
    predicted = decisions(detector, pairs)
    scores = score_pairs(predicted, pairs)
    print(
        f"  {name}: {len(pairs):>4} pairs  precision {scores.precision:.3f}  "
        f"recall {scores.recall:.3f}  F1 {scores.f1:.3f}  "
        f"(tp {scores.true_positives}, fp {scores.false_positives}, "
        f"fn {scores.false_negatives}, tn {scores.true_negatives})"
    )
    wrong = Counter(
        pair.kind for p, pair in zip(predicted, pairs, strict=True) if p != pair.rephrase
    )
    total = Counter(pair.kind for pair in pairs)
    print("    errors by kind: " + ", ".join(f"{k} {wrong[k]}/{total[k]}" for k in sorted(total)))


def _cosine_baseline(detector: RephraseDetector, pairs: Sequence[LabelledPair]) -> None:
    cosines = [detector.features(pair.previous, pair.message)[0] for pair in pairs]
    best = (0.0, 0.0)
    for cut in sorted(set(cosines)):
        predicted = [c >= cut for c in cosines]
        f1 = score_pairs(predicted, pairs).f1
        best = max(best, (f1, cut))
    at_article = score_pairs([c >= 0.85 for c in cosines], pairs).f1
    print(
        f"  baseline (cosine alone): F1 {at_article:.3f} at the article's 0.85, "
        f"{best[0]:.3f} at its best cut {best[1]:.3f} (chosen on these pairs themselves)"
    )


def _cost(embedder: WordLlamaEmbedder, pairs: Sequence[LabelledPair], calls: int) -> None:
    provider = TracerProvider()  # no processor: the tracker's own cost, not an exporter's
    tracer = provider.get_tracer("bench")
    texts = [text for pair in pairs for text in (pair.previous, pair.message)]
    trackers = {
        "detection off": ConversationTracker(provider, detect_rephrases=False),
        "detection on": ConversationTracker(provider, rephrase_detector=RephraseDetector(embedder)),
    }
    samples: dict[str, list[int]] = {name: [] for name in trackers}
    with trace.use_span(tracer.start_span("agent turn"), end_on_exit=True):
        for i in range(calls):
            text = texts[i % len(texts)]
            for name, tracker in trackers.items():
                start = time.perf_counter_ns()
                tracker.record(f"c{i % 8}", "u", ConversationEvent.USER_MESSAGE, message=text)
                samples[name].append(time.perf_counter_ns() - start)
    medians = {name: statistics.median(values) / 1000 for name, values in samples.items()}
    for name, value in medians.items():
        print(f"  record() of a user message, {name:<13} p50 {value:8.1f} µs")
    added = medians["detection on"] - medians["detection off"]
    ratio = _util.ratio(medians["detection on"], medians["detection off"])
    print(f"  added by detection: p50 {added:.1f} µs per user message ({ratio})")
    detector = RephraseDetector(embedder)
    alone: list[int] = []
    for i in range(calls):
        start = time.perf_counter_ns()
        detector.observe(f"c{i % 8}", texts[i % len(texts)])
        alone.append(time.perf_counter_ns() - start)
    print(f"  observe() alone, back to back: p50 {statistics.median(alone) / 1000:.1f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--fit", action="store_true", help="refit the weights and print them")
    parser.add_argument("--l2", type=float, default=0.1, help="L2 penalty when fitting")
    parser.add_argument("--calls", type=int, default=20_000, help="record() calls when timing")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    args = parser.parse_args(argv)
    pinned = _util.pin_to_one_core(not args.no_pin)
    print(f"bench_rephrase: {_util.machine_note()}; {pinned}")
    by_file = {path.stem: load_pairs(path) for path in PAIR_FILES}
    pairs = [pair for file_pairs in by_file.values() for pair in file_pairs]
    original = [pair for stem in ORIGINAL for pair in by_file.get(stem, [])]
    added = [pair for stem, ps in by_file.items() if stem not in ORIGINAL for pair in ps]
    started = time.perf_counter()
    embedder = WordLlamaEmbedder()
    print(f"default embedder loaded in {time.perf_counter() - started:.2f} s")
    detector = RephraseDetector(embedder)
    if args.fit:
        weights = fit(detector, pairs, l2=args.l2)
        print(f"fitted on {len(pairs)} pairs:\n{weights!r}")
        detector = RephraseDetector(embedder, weights=weights)
    print("quality at the default threshold (0.85), on pairs the weights did not see:")
    _cross_validation(detector, original, added, args.l2)
    if HELDOUT in by_file:
        rest = [pair for stem, ps in by_file.items() if stem != HELDOUT for pair in ps]
        _unseen(embedder, f"fitted without {HELDOUT}, on it", rest, by_file[HELDOUT], args.l2)
    if added:
        _unseen(embedder, "fitted on the original 510, on the added", original, added, args.l2)
    print("the shipped weights, in-sample (they were fitted on these pairs):")
    _report("all", detector, pairs)
    for stem, file_pairs in by_file.items():
        _report(stem, detector, file_pairs)
    _cosine_baseline(detector, pairs)
    print(f"cost ({args.calls:,} calls each, interleaved):")
    _cost(embedder, pairs, args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rephrase detection: quality on labelled pairs, and its cost on a user message's ``record()``.

Quality: precision, recall and F1 at the default threshold (0.85) by 5-fold cross-validation over
the labelled pairs of ``benchmarks/data/rephrase_pairs_*.jsonl`` (three files written
independently, 510 pairs), then in-sample
for the shipped weights with errors per kind of pair, and, as the baseline, the article's rule
alone (embedding cosine ≥ threshold) at 0.85 and at its best threshold.

Cost: ``tracker.record(..., USER_MESSAGE, message=text)`` inside a recording span, with
detection on and off, over the dataset's messages round-robin in a few live conversations; the
difference of the medians is what detection adds (target ≤ 100 µs p50).

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
    cross_validate,
    decisions,
    fit,
    load_pairs,
    score_pairs,
)

DATA = Path(__file__).parent / "data"
PAIR_FILES = sorted(DATA.glob("rephrase_pairs_*.jsonl"))


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
    started = time.perf_counter()
    embedder = WordLlamaEmbedder()
    print(f"default embedder loaded in {time.perf_counter() - started:.2f} s")
    detector = RephraseDetector(embedder)
    if args.fit:
        weights = fit(detector, pairs, l2=args.l2)
        print(f"fitted on {len(pairs)} pairs:\n{weights!r}")
        detector = RephraseDetector(embedder, weights=weights)
    print("quality at the default threshold (0.85):")
    cv = cross_validate(detector, pairs, l2=args.l2)
    print(
        f"  5-fold cross-validation over {len(pairs)} pairs (unseen by their fold's weights): "
        f"precision {cv.precision:.3f}  recall {cv.recall:.3f}  F1 {cv.f1:.3f}"
    )
    _report("all (in-sample, shipped weights)", detector, pairs)
    for stem, file_pairs in by_file.items():
        _report(stem, detector, file_pairs)
    _cosine_baseline(detector, pairs)
    print(f"cost ({args.calls:,} calls each, interleaved):")
    _cost(embedder, pairs, args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

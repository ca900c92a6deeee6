"""Rephrase detection in the agent: the detector's rules and bounds, its quality on held-out
labelled pairs with the default (WordLlama) embedder, and the tracker, scope and span-processor
paths through the real SDK into the store, with no text leaving the process."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.exporter.conversation_analytics.exporter import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.reader import StoreReader
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import (
    ConversationEvent,
    ConversationTracker,
    conversation,
    semconv,
)
from opentelemetry.instrumentation.conversation import environment_variables as env
from opentelemetry.instrumentation.conversation.rephrase import (
    EmbedderUnavailable,
    RephraseDetector,
    RephraseWeights,
    WordLlamaEmbedder,
)
from opentelemetry.instrumentation.conversation.rephrase.evaluation import (
    cross_validate,
    cross_validated_decisions,
    decisions,
    fit,
    load_pairs,
    score_pairs,
)
from opentelemetry.instrumentation.conversation.rephrase.lexical import (
    FEATURE_NAMES,
    LEXICAL_START,
    is_acknowledgement,
    lexical_features,
    read,
    signature,
    words,
)
from opentelemetry.instrumentation.conversation.rephrasing import build_rephrase_detector

DATA = Path(__file__).parent.parent / "benchmarks" / "data"
PAIR_FILES = sorted(DATA.glob("rephrase_pairs_*.jsonl"))
#: The first round's files (510 pairs); ``fourth`` was written later, for the second round.
ORIGINAL_FILES = [DATA / f"rephrase_pairs_{name}.jsonl" for name in ("train", "heldout", "third")]
CANCEL = "How do I cancel my subscription?"
CANCEL_AGAIN = "No, I mean stop my plan completely, how?"
PRO, TEAM = "price of the pro plan?", "price of the team plan?"


@pytest.fixture(scope="module")
def wordllama() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


@pytest.fixture(scope="module")
def detector(wordllama: WordLlamaEmbedder) -> RephraseDetector:
    return RephraseDetector(wordllama)


def _bag_of_words(texts: Sequence[str]) -> list[list[float]]:
    """A tiny deterministic embedder (hashed word counts): any callable of this shape works."""
    out = []
    for text in texts:
        vector = [0.0] * 64
        for word in words(text):
            vector[sum(map(ord, word)) % 64] += 1.0
        out.append(vector)
    return out


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _all_strings(detector: RephraseDetector) -> list[str]:
    """Every str reachable from what the detector keeps per conversation, except the keys."""
    found: list[str] = []
    for entry in detector._previous.values():
        for value in (entry.vector, entry.norm, *entry.signature, entry.digest, entry.at):
            if isinstance(value, str):
                found.append(value)
        found.extend(v for v in entry.signature.content if isinstance(v, str))
    return found


def _lexical(previous: str, text: str, name: str) -> float:
    """One word-level feature of ``text`` after ``previous``."""
    return lexical_features(signature(previous), read(text))[
        FEATURE_NAMES.index(name) - LEXICAL_START
    ]


class TestLexicalSignals:
    @pytest.mark.parametrize("text", ["ok", "thanks!", "great, that worked", "ok thank you"])
    def test_acknowledgements(self, text: str) -> None:
        """Short messages made of acknowledgement words are acknowledgements."""
        assert is_acknowledgement(text.lower(), words(text))

    @pytest.mark.parametrize("text", ["ok but where is my order?", "thanks, how do I pay?"])
    def test_questions_are_not_acknowledgements(self, text: str) -> None:
        """A message that asks something is not an acknowledgement, however it starts."""
        assert not is_acknowledgement(text.lower(), words(text))

    def test_swapped_entity_is_marked(self) -> None:
        """The same sentence with one word exchanged sets the swap feature."""
        assert _lexical(PRO, TEAM, "swap") == 1.0
        assert _lexical(PRO, "how much is the pro plan per seat?", "swap") == 0.0

    def test_correction_cue_is_marked(self) -> None:
        """'No, I mean ...' and '..., not ...' set the correction feature."""
        assert _lexical(CANCEL, CANCEL_AGAIN, "correction") == 1.0
        assert _lexical("freeze my card", "the debit one, not the credit", "correction") == 1.0
        assert _lexical(CANCEL, "how long does cancelling take?", "correction") == 0.0

    @pytest.mark.parametrize(
        "text",
        [
            "you didn't answer. WHY is it locked",
            "again: can I pay with PayPal, yes or no?",
            "hello?? is the pool heated",
            "I asked about the gym, not the restaurants",
        ],
    )
    def test_reask_cue_is_marked(self, text: str) -> None:
        """A complaint that the ask went unanswered sets the re-ask feature."""
        assert _lexical("is the pool heated", text, "reask") == 1.0

    @pytest.mark.parametrize("text", ["it fell through the cracks", "I voted against it"])
    def test_cues_match_whole_words(self, text: str) -> None:
        """'ugh' is not found in 'through', nor 'again' in 'against'."""
        assert _lexical(CANCEL, text, "reask") == 0.0

    def test_details_given_are_marked(self) -> None:
        """A statement with a number (an order number given because the agent asked) sets the
        details feature; a question with one does not."""
        assert _lexical("I want to return my order", "order 48213, bought in May", "details") == 1
        assert _lexical("I want to return my order", "can I return order 48213?", "details") == 0

    def test_added_aspect_is_marked(self) -> None:
        """A follow-up that adds a condition or a consequence sets the aspect feature."""
        assert _lexical("How do I reset my router?", "will it delete my settings?", "aspect") == 1
        assert _lexical("will it delete my settings?", "does it wipe my settings", "aspect") == 0

    def test_words(self) -> None:
        """Words of any script stay whole, and a typographic apostrophe is an apostrophe."""
        assert words("Flights to Zürich?") == ["flights", "to", "zürich"]
        assert words("what\u2019s my PIN") == ["what's", "my", "pin"]

    def test_signature_holds_no_text(self) -> None:
        """A message's signature keeps hashes, counts and flags, no word of it."""
        kept = signature("Where is order A-1234 for Paris?")
        assert not any(isinstance(v, str) for v in (*kept, *kept.content))


class TestDetector:
    def test_first_message_is_not_scored(self) -> None:
        """A conversation's first user message has nothing to be compared with."""
        assert RephraseDetector(_bag_of_words).observe("c", CANCEL) is None

    def test_second_message_is_scored(self, detector: RephraseDetector) -> None:
        """The second message gets a score in 0..1 and a decision."""
        detector.observe("scored", CANCEL)
        result = detector.observe("scored", CANCEL_AGAIN)
        assert result is not None and 0.0 <= result.similarity <= 1.0
        assert result.rephrase

    def test_template_swap_is_not_a_rephrase(self, detector: RephraseDetector) -> None:
        """The same question about another plan is a new question."""
        detector.observe("swap", PRO)
        result = detector.observe("swap", TEAM)
        assert result is not None and not result.rephrase

    def test_same_text_again_is_not_a_rephrase(self) -> None:
        """The rule needs different words: an identical message is not a rephrase, whatever
        its score."""
        always = RephraseWeights(bias=50.0, coefficients=(0.0,) * len(FEATURE_NAMES))
        d = RephraseDetector(_bag_of_words, weights=always)
        d.observe("c", "Where is my order?")
        result = d.observe("c", "where is my order")
        assert result is not None and result.similarity == 1.0 and not result.rephrase

    def test_acknowledgement_is_never_a_rephrase(self) -> None:
        """'ok thanks' scores 0 whatever the weights (the scorer's one rule)."""
        always = RephraseWeights(bias=50.0, coefficients=(0.0,) * len(FEATURE_NAMES))
        d = RephraseDetector(_bag_of_words, weights=always)
        d.observe("c", "Where is my order?")
        assert d.observe("c", "ok thanks") == (0.0, False)
        assert d.observe("c", "where is my parcel") == (1.0, True)

    def test_other_embedders_get_the_new_words_in_the_same_call(self) -> None:
        """An embedder other than WordLlama is called once per message: with the text, and the
        words the previous message did not have when there are some."""
        calls: list[list[str]] = []

        def recording(texts: Sequence[str]) -> list[list[float]]:
            calls.append(list(texts))
            return _bag_of_words(texts)

        d = RephraseDetector(recording)
        d.observe("c", CANCEL)
        d.observe("c", "how do I cancel my membership")
        assert calls == [[CANCEL], ["how do I cancel my membership", "membership"]]

    def test_conversations_are_compared_separately(self) -> None:
        """A message is compared with its own conversation's previous message only."""
        d = RephraseDetector(_bag_of_words)
        d.observe("a", CANCEL)
        assert d.observe("b", CANCEL_AGAIN) is None

    def test_bounded_by_count(self) -> None:
        """Only the most recently active conversations are kept."""
        d = RephraseDetector(_bag_of_words, max_conversations=3)
        for i in range(10):
            d.observe(f"c{i}", CANCEL)
        assert d.tracked == 3
        assert d.observe("c0", CANCEL_AGAIN) is None  # forgotten
        assert d.observe("c9", CANCEL_AGAIN) is not None

    def test_bounded_by_age(self) -> None:
        """A previous message older than the age limit is neither kept nor compared."""
        clock = _Clock()
        d = RephraseDetector(_bag_of_words, max_age_seconds=60, clock=clock)
        d.observe("old", CANCEL)
        clock.now += 61
        d.observe("new", CANCEL)
        assert d.tracked == 1
        assert d.observe("old", CANCEL_AGAIN) is None

    def test_forget(self) -> None:
        """A finished conversation's state is dropped."""
        d = RephraseDetector(_bag_of_words)
        d.observe("c", CANCEL)
        d.forget("c")
        assert d.tracked == 0

    def test_keeps_no_text(self, detector: RephraseDetector) -> None:
        """What is kept per conversation holds no string (vectors, hashes, counts)."""
        detector.observe("private", "My card 4111 1111 1111 1111 was charged twice")
        assert _all_strings(detector) == []

    def test_failing_embedder_turns_detection_off(self, caplog: pytest.LogCaptureFixture) -> None:
        """An embedder that raises never reaches the caller: counted, logged once, then off."""

        def broken(texts: Sequence[str]) -> list[list[float]]:
            raise RuntimeError("model server down")

        d = RephraseDetector(broken)
        with caplog.at_level(logging.WARNING):
            assert d.observe("c", CANCEL) is None
            assert d.observe("c", CANCEL_AGAIN) is None
        assert d.failures == 1 and not d.enabled
        assert len([r for r in caplog.records if "rephrase detection is off" in r.message]) == 1

    def test_default_embedder_loads_in_the_background(self) -> None:
        """With no embedder given, the default loads off the caller's thread."""
        d = RephraseDetector()
        assert d.wait_ready(60)
        d.observe("bg", CANCEL)
        assert d.observe("bg", CANCEL_AGAIN) is not None

    def test_missing_wordllama_is_a_clear_error(self, tmp_path: Path) -> None:
        """A package directory without the bundled files says which file is missing."""
        with pytest.raises(EmbedderUnavailable, match="bundled file is missing"):
            WordLlamaEmbedder(tmp_path)

    @pytest.mark.parametrize(
        "text",
        [
            CANCEL_AGAIN,
            "what's the way to change my login pasword, I forgot it",
            "can I pay in installments with an authenticator-protected account?",
            "Zürich → São Paulo 👍",
        ],
    )
    def test_word_sums_match_the_tokenizer(self, wordllama: WordLlamaEmbedder, text: str) -> None:
        """The detector's path (vocabulary lookups, the BPE model for the other words) sums the
        same token vectors as the tokenizer on the words joined by spaces; the second row sums
        the new words alone."""
        split = words(text)
        novel = split[-2:]
        rows = wordllama.sum_words(split, novel)
        whole = wordllama.embed_one(" ".join(split))
        assert float(np.dot(rows[0], whole) / np.linalg.norm(rows[0])) == pytest.approx(1.0)
        alone = wordllama.sum_words(novel)
        assert rows.shape[0] == 2 and np.allclose(rows[1], alone[0], atol=1e-5)

    def test_matches_wordllama_own_similarity(self, wordllama: WordLlamaEmbedder) -> None:
        """Reading the wheel's files directly gives WordLlama's own cosine similarity."""
        from wordllama import WordLlama

        package = Path(sys.modules["wordllama"].__file__ or "").parent
        reference = WordLlama.load(cache_dir=package, disable_download=True)
        ours = float(np.dot(wordllama.embed_one(CANCEL), wordllama.embed_one(CANCEL_AGAIN)))
        assert ours == pytest.approx(float(reference.similarity(CANCEL, CANCEL_AGAIN)), abs=1e-4)


class TestQuality:
    """The default detector on labelled pairs of consecutive user messages."""

    def test_cross_validated_f1(self, detector: RephraseDetector) -> None:
        """F1 at the default threshold, each of the original 510 pairs decided by weights fitted
        without it, reaches the issue's 0.85."""
        pairs = [pair for path in ORIGINAL_FILES for pair in load_pairs(path)]
        scores = cross_validate(detector, pairs)
        assert scores.f1 >= 0.85, scores

    def test_cross_validated_f1_with_the_added_pairs(self, detector: RephraseDetector) -> None:
        """Over all pairs, the original ones and the added ones each reach 0.85 when decided
        by weights fitted without them."""
        original = [pair for path in ORIGINAL_FILES for pair in load_pairs(path)]
        added = [p for path in PAIR_FILES if path not in ORIGINAL_FILES for p in load_pairs(path)]
        predicted = cross_validated_decisions(detector, original + added)
        assert score_pairs(predicted[: len(original)], original).f1 >= 0.85
        assert score_pairs(predicted[len(original) :], added).f1 >= 0.85

    def test_heldout_file_unseen(self, wordllama: WordLlamaEmbedder) -> None:
        """Weights fitted on every other file reach 0.85 on the held-out file."""
        heldout = DATA / "rephrase_pairs_heldout.jsonl"
        rest = [p for path in PAIR_FILES if path != heldout for p in load_pairs(path)]
        weights = fit(RephraseDetector(wordllama), rest, l2=0.1)
        pairs = load_pairs(heldout)
        unseen = RephraseDetector(wordllama, weights=weights)
        assert score_pairs(decisions(unseen, pairs), pairs).f1 >= 0.85

    def test_added_pairs_are_new(self) -> None:
        """No pair of a later file repeats one of the original files (it would count twice)."""
        original = {
            (p.previous.lower(), p.message.lower())
            for path in ORIGINAL_FILES
            for p in load_pairs(path)
        }
        added = [p for path in PAIR_FILES if path not in ORIGINAL_FILES for p in load_pairs(path)]
        assert added
        assert not [p for p in added if (p.previous.lower(), p.message.lower()) in original]

    def test_beats_the_cosine_rule(self, detector: RephraseDetector) -> None:
        """The shipped weights beat the article's rule alone (cosine >= 0.85) on every pair."""
        pairs = load_pairs(DATA / "rephrase_pairs_heldout.jsonl")
        ours = score_pairs(decisions(detector, pairs), pairs).f1
        cosine = [detector.features(p.previous, p.message)[0] >= 0.85 for p in pairs]
        assert ours > score_pairs(cosine, pairs).f1 + 0.3

    def test_dataset_size_and_domains(self) -> None:
        """At least 300 labelled pairs over the five domains, with hard negatives."""
        pairs = [pair for path in PAIR_FILES for pair in load_pairs(path)]
        assert len(pairs) >= 300
        assert {p.domain for p in pairs} == {"support", "shopping", "travel", "saas", "banking"}
        kinds = {p.kind for p in pairs if not p.rephrase}
        assert {"template_swap", "follow_up", "acknowledgement"} <= kinds

    def test_bad_line_names_its_line(self, tmp_path: Path) -> None:
        """A malformed line in a pairs file is reported with its line number."""
        path = tmp_path / "pairs.jsonl"
        path.write_text(json.dumps({"previous": "a", "message": "b", "rephrase": True}) + "\n{\n")
        with pytest.raises(ValueError, match=r"pairs\.jsonl:2"):
            load_pairs(path)


class TestTracker:
    def _user_events(self, spans: InMemorySpanExporter) -> list[dict[str, object]]:
        return [
            dict(event.attributes or {})
            for span in spans.get_finished_spans()
            for event in span.events
            if event.name == ConversationEvent.USER_MESSAGE.event_name
        ]

    def test_record_scores_user_messages(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter, detector: RephraseDetector
    ) -> None:
        """record(..., message=text) adds the score and flag, never the text."""
        tracker = ConversationTracker(sdk_provider, rephrase_detector=detector)
        tracker.record("t1", "u", ConversationEvent.USER_MESSAGE, message=CANCEL)
        tracker.record("t1", "u", ConversationEvent.USER_MESSAGE, message=CANCEL_AGAIN)
        first, second = self._user_events(spans)
        assert semconv.REPHRASE not in first
        assert second[semconv.REPHRASE] is True
        assert 0.85 <= float(second[semconv.REPHRASE_SIMILARITY]) <= 1.0  # type: ignore[arg-type]
        assert not any(CANCEL_AGAIN in str(v) for v in second.values())

    def test_caller_decision_wins(
        self, sdk_provider: TracerProvider, spans: InMemorySpanExporter, detector: RephraseDetector
    ) -> None:
        """A rephrase flag the caller passes is kept as given."""
        tracker = ConversationTracker(sdk_provider, rephrase_detector=detector)
        tracker.record("t2", "u", ConversationEvent.USER_MESSAGE, message=CANCEL)
        tracker.record(
            "t2", "u", ConversationEvent.USER_MESSAGE, message=CANCEL_AGAIN, rephrase=False
        )
        assert self._user_events(spans)[1][semconv.REPHRASE] is False

    def test_scope_user_message(
        self,
        sdk_provider: TracerProvider,
        spans: InMemorySpanExporter,
        detector: RephraseDetector,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """conv.user_message(text) goes through the default tracker's detector."""
        from opentelemetry.instrumentation.conversation import tracker as tracker_module

        tracker = ConversationTracker(sdk_provider, rephrase_detector=detector)
        monkeypatch.setattr(tracker_module._default, "tracker", tracker)
        with conversation("t3", user_id="u") as conv:
            conv.user_message(PRO)
            conv.user_message(TEAM)
        events = self._user_events(spans)
        assert events[1][semconv.REPHRASE] is False
        assert semconv.REPHRASE_SIMILARITY in events[1]

    def test_env_var_turns_it_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CONVERSATION_ANALYTICS_DETECT_REPHRASES=true builds the default detector."""
        monkeypatch.setenv(env.CONVERSATION_ANALYTICS_DETECT_REPHRASES, "true")
        assert isinstance(build_rephrase_detector(None), RephraseDetector)
        monkeypatch.setenv(env.CONVERSATION_ANALYTICS_DETECT_REPHRASES, "false")
        assert build_rephrase_detector(None) is None

    def test_off_by_default_and_not_imported(self) -> None:
        """Without the setting no detector exists and importing the tracker loads no numpy."""
        import subprocess

        code = (
            "import sys; from opentelemetry.instrumentation.conversation import "
            "ConversationTracker as T; t = T(); "
            "print(t._rephrases is None, 'numpy' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.split() == ["True", "False"]

    def test_stored_and_reported(
        self,
        provider: TracerProvider,
        exporter: ConversationAnalyticsExporter,
        store: ConversationStore,
        detector: RephraseDetector,
    ) -> None:
        """Through the in-process exporter the flag is stored and the report's rate counts it;
        the text is not stored."""
        tracker = ConversationTracker(provider, agent_name="bot", rephrase_detector=detector)
        for text in (CANCEL, CANCEL_AGAIN, "thanks"):
            tracker.record("t4", "u", ConversationEvent.USER_MESSAGE, message=text)
        report = StoreReader(store).report(7)
        assert report.rephrase_rate == pytest.approx(33.3)
        assert [(a.agent, a.rephrase_rate) for a in report.agents] == [("bot", 33.3)]
        detail = StoreReader(store).conversation("t4")
        flags = [e.get("rephrase") for e in detail.events]
        assert flags.count(True) == 1
        assert CANCEL_AGAIN not in json.dumps(detail.to_dict(), default=str)


def _openinference_input(text: str) -> dict[str, str]:
    return {
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "You are a support bot.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": text,
    }


def _openllmetry_input(text: str) -> dict[str, str]:
    return {
        "llm.request.type": "chat",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "earlier question",
        "gen_ai.prompt.1.role": "assistant",
        "gen_ai.prompt.1.content": "earlier answer",
        "gen_ai.prompt.2.role": "user",
        "gen_ai.prompt.2.content": text,
    }


def _semconv_input(text: str) -> dict[str, str]:
    messages = [{"role": "user", "parts": [{"type": "text", "content": text}]}]
    return {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(messages)}


class TestZeroCode:
    """Derived user messages scored from the text the GenAI instrumentation captured."""

    @pytest.mark.parametrize("captured", [_openinference_input, _openllmetry_input, _semconv_input])
    def test_derived_user_messages_are_scored(
        self,
        sdk_provider: TracerProvider,
        spans: InMemorySpanExporter,
        detector: RephraseDetector,
        captured: object,
    ) -> None:
        """Each turn's user message (the last user message of its model call's input) is
        compared with the previous turn's; the derived events carry no text."""
        from opentelemetry.instrumentation.conversation.processor import (
            ConversationSpanProcessor,
        )

        sdk_provider.add_span_processor(
            ConversationSpanProcessor(
                user_id_key=b"k", tracer_provider=sdk_provider, rephrase_detector=detector
            )
        )
        tracer = sdk_provider.get_tracer("framework")
        make = captured  # type: ignore[assignment]
        with conversation(f"zero-{make.__name__}", user_id="u"):  # type: ignore[attr-defined]
            for text in (CANCEL, CANCEL_AGAIN, TEAM):
                tracer.start_span("llm", attributes=make(text)).end()  # type: ignore[operator]
        derived = [
            dict(event.attributes or {})
            for span in spans.get_finished_spans()
            if span.name == semconv.DERIVED_SPAN_NAME
            for event in span.events
            if event.name == ConversationEvent.USER_MESSAGE.event_name
        ]
        assert [e.get(semconv.REPHRASE) for e in derived] == [None, True, False]
        stored = json.dumps(derived)
        assert not any(text in stored for text in (CANCEL, CANCEL_AGAIN, TEAM))

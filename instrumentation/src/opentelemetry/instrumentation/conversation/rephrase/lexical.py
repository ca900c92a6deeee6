"""Word-level signals of a rephrase that an embedding alone misses.

A static embedding scores "price of the pro plan?" and "price of the team plan?" as near
duplicates and "ok" as unlike anything; the words tell better: a swapped entity, an
acknowledgement, a follow-up opener ("and what about…"), a correction cue ("no, I mean…").
Pure Python on a few dozen characters: a few microseconds per message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_WORD: Final = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CAPITALISED_OR_CODE: Final = re.compile(r"\b(?:[A-Z][a-z]+|[A-Z0-9]*\d[A-Z0-9]*|[A-Z]{2,})\b")

#: Words that carry no topic (English; a message in another language falls back to the
#: embedding, which is what the weights were fitted on anyway).
_STOPWORDS_TEXT: Final = """
    a an the to of in on at for from by with about as into over and or but if so than then
    i me my mine we us our you your it its this that these those there here is am are was were be
    been being do does did doing have has had having can could will would shall should may might
    must just also too very really please pls plz hi hello hey thanks thank ok okay how what when
    where why which who whom whose any some all not no yes yeah yep nope get got again still now
    one im i'm i've i'd it's that's what's don't doesn't didn't can't cannot won't isn't aren't
    mean meant like want need know tell help say said asked question"""
STOPWORDS: Final = frozenset(_STOPWORDS_TEXT.split())

#: Words an acknowledgement is made of ("ok thanks", "great, that worked").
_ACK_TEXT: Final = """
    ok okay k kk thanks thank you thx ty tysm cool great perfect nice awesome alright all right
    got it gotcha understood makes sense sounds good noted fine good yes yep yeah sure cheers
    lovely brilliant excellent wonderful that this worked works helps helped helpful solved
    fixed so much a lot very appreciate appreciated bye will do amazing super"""
_ACK_WORDS: Final = frozenset(_ACK_TEXT.split())

#: Openers of a message that corrects an ask the agent missed.
CORRECTION_OPENERS: Final = ("no ", "no,", "no.", "nope", "not ")
#: Phrases anywhere in a message that corrects or repeats an ask the agent missed.
CORRECTION_CUES: Final = (
    "i mean",
    "i meant",
    "i said",
    "i asked",
    "i'm asking",
    "im asking",
    "i am asking",
    "again",
    "still",
    "you didn't",
    "you did not",
    "you didnt",
    "that's not",
    "thats not",
    "that is not",
    "that doesn't",
    "that does not",
    "this doesn't",
    "doesn't help",
    "didn't help",
    "not helpful",
    "not what",
    "wrong",
    "let me rephrase",
    "in other words",
    "to be clear",
    "my question is",
    "my question was",
    "what i want",
    "what i need",
    "i just want",
    "i only want",
    "i already",
    "listen",
    "seriously",
    "can you just",
    "just tell me",
    "rather",
    "instead",
    "sorry, i",
    "sorry i",
    "let me be clear",
    "once more",
    "one more time",
    "answer my",
    "read my",
    "ugh",
)
#: Phrases that announce another subject ("btw", "unrelated but ...").
TOPIC_CUES: Final = (
    "btw",
    "by the way",
    "unrelated",
    "different question",
    "another question",
    "other question",
    "separate question",
    "separately",
    "one more thing",
    "also,",
    "also do",
    "also i",
    "also is",
    "also can",
    "also what",
    "also how",
    "quick question",
    "side note",
    "off topic",
)
#: Words that point back at the previous message's subject: a follow-up asks about "it".
ANAPHORA: Final = frozenset(
    [
        "it",
        "its",
        "them",
        "they",
        "their",
        "those",
        "that",
        "this",
        "these",
        "one",
        "ones",
        "there",
        "he",
        "she",
        "his",
        "her",
    ]
)
#: How a question asks: a follow-up usually asks another way ("how do I" -> "how long").
_QUESTION_FORMS: Final = (
    "how long",
    "how much",
    "how many",
    "how often",
    "how fast",
    "how soon",
    "until when",
    "what happens",
    "what if",
    "which",
    "who",
    "when",
    "where",
    "why",
    "is there",
    "are there",
    "do i need",
    "do i have to",
    "will",
    "does",
    "is it",
    "can i",
    "how",
    "what",
)
#: Openers of a new question on the same topic.
FOLLOW_UP_CUES: Final = (
    "and ",
    "also",
    "what about",
    "how about",
    "what if",
    "can i also",
    "could i also",
    "one more",
    "another",
    "btw",
    "by the way",
    "besides",
    "plus ",
    "next",
    "after that",
    "then ",
    "and if",
    "ok and",
    "ok, and",
    "okay and",
    "great, and",
    "thanks, and",
    "is there",
    "do you",
    "does it",
    "will it",
    "will i",
    "how long",
    "how much",
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def _stem(word: str) -> str:
    """A crude suffix strip so "orders"/"ordered"/"ordering" meet; enough for set overlap."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(tokens: list[str]) -> frozenset[str]:
    """Stemmed words that carry the topic."""
    return frozenset(_stem(t) for t in tokens if t not in STOPWORDS)


def _alternation(phrases: tuple[str, ...], *, word_start: bool = False) -> re.Pattern[str]:
    """One regular expression for "any of these phrases" (one C-level scan, not one per
    phrase); at one position the first phrase listed wins."""
    prefix = r"(?<![a-z0-9])" if word_start else ""
    return re.compile(prefix + "(?:" + "|".join(re.escape(p) for p in phrases) + ")")


_FORMS: Final = _alternation(_QUESTION_FORMS, word_start=True)
_FORM_INDEX: Final = {form: index for index, form in enumerate(_QUESTION_FORMS)}
_CORRECTION: Final = _alternation(CORRECTION_CUES)
_TOPIC: Final = _alternation(TOPIC_CUES)


def question_form(lowered: str) -> int:
    """Which of the question forms a message uses first (its index), or -1."""
    found = _FORMS.search(lowered)
    return -1 if found is None else _FORM_INDEX[found.group(0)]


@dataclass(frozen=True, slots=True)
class MessageSignature:
    """What one message keeps for the next comparison: no text, only keyed hashes of its
    content words and entities (Python's per-process SipHash key) and a few counts."""

    content: frozenset[int]
    entities: frozenset[int]
    length: int
    question: bool
    form: int = -1


def signature(text: str, tokens: list[str] | None = None) -> MessageSignature:
    """The comparison facts of one message (its text is not kept); ``tokens`` are its
    :func:`words` when already split."""
    if tokens is None:
        tokens = words(text)
    content = frozenset(hash(word) for word in content_words(tokens))
    entities = frozenset(hash(m.lower()) for m in _CAPITALISED_OR_CODE.findall(text))
    form = question_form(text.lower())
    return MessageSignature(content, entities, len(tokens), "?" in text, form)


def text_digest(tokens: list[str]) -> int:
    """A keyed hash of a message's words: equal for the same text up to case, spacing and
    punctuation (such a repeat is not a rephrase: the text must differ)."""
    return hash(" ".join(tokens))


def same_text(previous: str, text: str) -> bool:
    """Whether two messages are the same text up to case, spacing and punctuation."""
    return text_digest(words(previous)) == text_digest(words(text))


def is_acknowledgement(text: str, tokens: list[str]) -> bool:
    """A short message made only of acknowledgement words ("ok thanks", "great, that worked")."""
    if not tokens or len(tokens) > 6 or "?" in text:
        return False
    return all(t in _ACK_WORDS for t in tokens)


#: Names of the features, in the order the detector builds them (and the weights use): the
#: embedding cosine, then :func:`lexical_features`.
FEATURE_NAMES: Final = (
    "cosine",
    "jaccard",
    "containment",
    "swap",
    "correction",
    "follow_up",
    "acknowledgement",
    "short",
    "new_entities",
    "length_ratio",
    "topic_cue",
    "anaphora",
    "same_form",
    "statement",
    "digits",
)


def lexical_features(
    previous: MessageSignature,
    text: str,
    current: MessageSignature,
    tokens: list[str] | None = None,
) -> tuple[float, ...]:
    """The word-level features of ``text`` after a message with signature ``previous``
    (everything in :data:`FEATURE_NAMES` but the cosine)."""
    lowered = text.lower().lstrip()
    if tokens is None:
        tokens = words(lowered)
    a, b = previous.content, current.content
    shared = len(a & b)
    union = len(a | b)
    jaccard = shared / union if union else 0.0
    smaller = min(len(a), len(b))
    containment = shared / smaller if smaller else 0.0
    only_a, only_b = len(a - b), len(b - a)
    # The same sentence with one or two words exchanged: another plan, city, date or product.
    swap = 1.0 if shared >= 1 and 1 <= only_a <= 2 and 1 <= only_b <= 2 and jaccard >= 0.3 else 0.0
    head = lowered[:40]
    corrects = head.startswith(CORRECTION_OPENERS) or _CORRECTION.search(lowered) is not None
    correction = 1.0 if corrects else 0.0
    follow_up = 1.0 if head.startswith(FOLLOW_UP_CUES) else 0.0
    acknowledgement = 1.0 if is_acknowledgement(lowered, tokens) else 0.0
    short = 1.0 if len(tokens) <= 3 else 0.0
    new_entities = 1.0 if current.entities - previous.entities else 0.0
    longer = max(previous.length, current.length)
    length_ratio = min(previous.length, current.length) / longer if longer else 0.0
    topic = 1.0 if _TOPIC.search(head) is not None else 0.0
    anaphora = 1.0 if any(t in ANAPHORA for t in tokens) else 0.0
    same_form = 1.0 if current.form >= 0 and current.form == previous.form else 0.0
    statement = 0.0 if current.question or current.form >= 0 else 1.0
    digits = 1.0 if any(t.isdigit() or (not t.isalpha() and len(t) > 3) for t in tokens) else 0.0
    return (
        jaccard,
        containment,
        swap,
        correction,
        follow_up,
        acknowledgement,
        short,
        new_entities,
        length_ratio,
        topic,
        anaphora,
        same_form,
        statement,
        digits,
    )

"""Word-level signals of a rephrase that an embedding alone misses.

A static embedding scores "price of the pro plan?" and "price of the team plan?" as near
duplicates and "ok" as unlike anything; the words tell better: a swapped entity, an
acknowledgement, a follow-up that adds an aspect ("will I lose my data if..."), a detail given
in answer to the agent ("order 48213"), a correction ("no, I mean…") or a complaint that the
ask went unanswered ("you didn't answer", "yes or no?").

A message is read once (:func:`read`): one regex split into words, one dict lookup per word
(stop word? first word of a cue phrase?), a walk of the cue-phrase trie from the words that
start one, one regex for the few cues whose punctuation matters. Pure Python on a few dozen
characters: about ten microseconds per message.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

#: Letters and digits of any script, with an English contraction ("what's") kept whole.
_WORD: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_DIGIT: Final = re.compile(r"\d")

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

#: Words an acknowledgement is made of ("ok thanks", "great, that worked", "nvm found it").
_ACK_TEXT: Final = """
    ok okay k kk thanks thank you thx ty tysm cool great perfect nice awesome alright all right
    got it gotcha understood makes sense sounds good noted fine good yes yep yeah sure cheers
    lovely brilliant excellent wonderful that this worked works helps helped helpful solved
    fixed so much a lot very appreciate appreciated bye will do amazing super for the help your
    nvm never mind done sorted ta found ah oh now i see"""
_ACK_WORDS: Final = frozenset(_ACK_TEXT.split())

#: Words this module names: an embedder may split them ahead of time.
KNOWN_WORDS: Final = STOPWORDS | _ACK_WORDS

#: Openers of a message that corrects an ask the agent missed.
CORRECTION_OPENERS: Final = ("no ", "no,", "no.", "nope", "not ")
#: Phrases anywhere in a message that say what the user meant instead.
CORRECTION_CUES: Final = (
    "i mean",
    "i meant",
    "i said",
    "that's not",
    "thats not",
    "that is not",
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
    "rather",
    "instead",
    "sorry, i",
    "sorry i",
    "let me be clear",
    "i'm talking about",
    "i am talking about",
    ", not ",
)
#: Phrases that say the previous ask went unanswered: the user asks it again.
REASK_CUES: Final = (
    "i asked",
    "i'm asking",
    "im asking",
    "i am asking",
    "again",
    "still waiting",
    "still haven't",
    "still not",
    "still no ",
    "you didn't",
    "you did not",
    "you didnt",
    "you haven't",
    "you have not",
    "that doesn't",
    "that does not",
    "this doesn't",
    "doesn't help",
    "didn't help",
    "not helpful",
    "not answering",
    "not an answer",
    "answer my",
    "answer the question",
    "just answer",
    "read my",
    "i already",
    "listen",
    "seriously",
    "can you just",
    "just tell me",
    "once more",
    "one more time",
    "how many times",
    "second time",
    "third time",
    "simple question",
    "yes or no",
    "or not",
    "hello?",
    "??",
    "you keep",
    "stop sending",
    "stop giving",
    "stop telling",
    "you sent",
    "you gave",
    "you listed",
    "you linked",
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
    "different thing",
    "another thing",
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
#: Words anywhere in a message that add an aspect to the previous ask (a consequence, a
#: condition, a second thing): a follow-up, when the previous message had none of them.
ASPECT_CUES: Final = (
    "too",
    "also",
    "as well",
    "later",
    "extra",
    "another",
    "other",
    "then",
    "after",
    "if",
    "what happens",
    "will i",
    "will it",
    "will my",
    "will the",
    "will they",
    "will you",
    "does it",
    "does the",
    "does that",
    "does this",
    "do i need",
    "do i have",
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _stem(word: str) -> str:
    """A crude suffix strip so "orders"/"ordered", "invoice"/"invoices" and
    "reset"/"resetting" meet; enough for set overlap."""
    n = len(word)
    if n > 5 and word.endswith("ing"):
        word = word[:-3]
    elif n > 4 and word.endswith("ed"):
        word = word[:-2]
    elif n > 3 and word[-1] == "s" and word[-2] != "s":
        word = word[:-1]
    if len(word) > 3:
        if word[-1] == word[-2] and word[-1] not in "aeiou":
            word = word[:-1]  # "resett" -> "reset", "shipp" -> "ship"
        if word[-1] == "e":
            word = word[:-1]  # "invoice", "invoic(es)" -> "invoic"
    return word


# What a cue phrase says (bits of :attr:`Reading.cues`).
CORRECTS: Final = 1
REASKS: Final = 2
TOPIC: Final = 4
FOLLOWS: Final = 8
ASPECT: Final = 16
#: A topic cue counts among a message's first few words only ("btw, ..." opens a message).
_EARLY: Final = 6

#: A phrase whose punctuation matters ("??", ", not ", "also,"): found in the text itself.
_PUNCTUATED: Final = re.compile(r"[^\w\s']")
_Terminal = tuple[int, int, int, int]  # bits anywhere, bits first, bits early, question form


def _cue_table() -> tuple[dict[str, Any], re.Pattern[str]]:
    """The cue phrases as a word trie (one pass over a message's words finds them all), and
    the punctuated ones as one regex whose group names say the bit and where it counts
    (``a`` anywhere, ``s`` at the start, ``e`` early)."""
    trie: dict[str, Any] = {}
    punctuated: list[str] = []

    def add(phrases: tuple[str, ...], bit: int, where: int, form: bool = False) -> None:
        for index, phrase in enumerate(phrases):
            if _PUNCTUATED.search(phrase) and not form:
                pattern = re.escape(phrase)
                punctuated.append(
                    f"(?P<{'ase'[where]}{bit}_{len(punctuated)}>"
                    + (rf"^\s*{pattern}" if where == 1 else pattern)
                    + ")"
                )
                continue
            node = trie
            for word in words(phrase):
                node = node.setdefault(word, {})
            old: _Terminal = node.get("", (0, 0, 0, -1))
            bits = list(old)
            bits[where] |= bit
            if form and old[3] < 0:
                bits[3] = index
            node[""] = tuple(bits)

    add(_QUESTION_FORMS, 0, 0, form=True)
    add(CORRECTION_CUES, CORRECTS, 0)
    add(REASK_CUES, REASKS, 0)
    add(ASPECT_CUES, ASPECT, 0)
    add(TOPIC_CUES, TOPIC, 2)
    add(FOLLOW_UP_CUES, FOLLOWS, 1)
    add(CORRECTION_OPENERS, CORRECTS, 1)
    return trie, re.compile("|".join(punctuated))


_CUES, _PUNCTUATED_CUES = _cue_table()
#: What :func:`read` looks a word up in: is it a stop word, and which cues start with it.
#: A word in neither is a content word that starts no cue (most are).
_LEXICON: Final[dict[str, tuple[bool, dict[str, Any] | None]]] = {
    **{word: (False, node) for word, node in _CUES.items()},
    **{word: (True, _CUES.get(word)) for word in STOPWORDS},
}
#: A group of :data:`_PUNCTUATED_CUES` (its name) -> (bit, where it counts).
_GROUPS: Final = {
    name: (int(name[1:].split("_")[0]), name[0]) for name in _PUNCTUATED_CUES.groupindex
}


def _walk(tokens: list[str], start: int, node: dict[str, Any] | None) -> tuple[int, int]:
    """The cue bits of the phrases starting at ``tokens[start]`` (whose trie node is
    ``node``), and the longest question form among them (-1 for none)."""
    bits = 0
    found = -1
    after = start + 1
    count = len(tokens)
    while node is not None:
        end = node.get("")
        if end is not None:
            bits |= end[0]
            if start == 0:
                bits |= end[1]
            if start < _EARLY:
                bits |= end[2]
            if end[3] >= 0:
                found = end[3]
        if after == count:
            break
        node = node.get(tokens[after])
        after += 1
    return bits, found


def cues(tokens: list[str]) -> tuple[int, int]:
    """The cue bits of a message's words and its question form (the index in the forms of
    the first one it uses, -1 for none)."""
    bits = 0
    form = -1
    for start, word in enumerate(tokens):
        node = _CUES.get(word)
        if node is not None:
            more, found = _walk(tokens, start, node)
            bits |= more
            if form < 0:
                form = found
    return bits, form


def question_form(lowered: str) -> int:
    """Which of the question forms a message uses first (its index), or -1."""
    return cues(words(lowered))[1]


class MessageSignature(NamedTuple):
    """What one message keeps for the next comparison: no text, only keyed hashes of its
    content words (Python's per-process SipHash key) and a few counts and flags."""

    content: frozenset[int]
    length: int
    question: bool
    form: int = -1
    #: It adds an aspect ("too", "if", "will it"): then the same words next are no follow-up.
    aspect: bool = False


class Reading(NamedTuple):
    """One message read once, for the call that scores it (not kept): its lower-cased text,
    its words, its content words (no stop words) with their keys (hashes of their stems), its
    cue bits and the signature kept of it."""

    lowered: str
    tokens: list[str]
    content: list[str]
    keys: list[int]
    cues: int
    signature: MessageSignature


def read(text: str) -> Reading:
    """Split, hash and scan one message once; everything else here works on the result. One
    dict lookup per word tells a stop word and a cue's first word from a content word."""
    lowered = text.lower()
    if "\u2019" in lowered:
        lowered = lowered.replace("\u2019", "'")  # a typographic apostrophe: "what\u2019s"
    tokens = _WORD.findall(lowered)
    lexicon = _LEXICON
    content: list[str] = []
    bits = 0
    form = -1
    for start, word in enumerate(tokens):
        entry = lexicon.get(word)
        if entry is None:
            content.append(word)
            continue
        stop, node = entry
        if not stop:
            content.append(word)
        if node is not None:
            more, found = _walk(tokens, start, node)
            bits |= more
            if form < 0:
                form = found
    for match in _PUNCTUATED_CUES.finditer(lowered):
        bit, where = _GROUPS[match.lastgroup or ""]
        if where != "e" or match.start() < 40:
            bits |= bit
    keys = [hash(_stem(t)) for t in content]
    kept = MessageSignature(frozenset(keys), len(tokens), "?" in text, form, bool(bits & ASPECT))
    return Reading(lowered, tokens, content, keys, bits, kept)


def signature(text: str) -> MessageSignature:
    """The comparison facts of one message (its text is not kept)."""
    return read(text).signature


def novel_words(previous: MessageSignature, reading: Reading) -> list[str]:
    """The message's content words the previous message did not have (by stem)."""
    seen = previous.content
    return [t for t, k in zip(reading.content, reading.keys, strict=True) if k not in seen]


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
    return _ACK_WORDS.issuperset(tokens)


#: Names of the features, in the order the detector builds them (and the weights use): those
#: of the embedding (the cosine, two hinges of it so its weight can bend, and the cosine of the
#: message's new content words to the previous message: a paraphrase's new words mean the
#: same, a follow-up's add something), then :func:`lexical_features`.
FEATURE_NAMES: Final = (
    "cosine",
    "cosine_over_0.3",
    "cosine_over_0.6",
    "novel_cosine",
    "swap",
    "correction",
    "reask",
    "follow_up",
    "aspect",
    "acknowledgement",
    "short",
    "length_ratio",
    "topic_cue",
    "anaphora",
    "details",
)
#: Where :func:`lexical_features` starts in :data:`FEATURE_NAMES`.
LEXICAL_START: Final = FEATURE_NAMES.index("swap")
#: The acknowledgement feature: an acknowledgement is never a rephrase (the scorer's rule).
ACKNOWLEDGEMENT: Final = FEATURE_NAMES.index("acknowledgement")


def lexical_features(previous: MessageSignature, current: Reading) -> tuple[float, ...]:
    """The word-level features of a message after a message with signature ``previous``
    (everything in :data:`FEATURE_NAMES` from ``swap`` on)."""
    lowered, tokens, _, _, bits, now = current
    a, b = previous.content, now.content
    shared = len(a & b)
    union = len(a) + len(b) - shared
    only_a, only_b = len(a) - shared, len(b) - shared
    # The same sentence with one or two words exchanged: another plan, city, date or product.
    swapped = shared and 1 <= only_a <= 2 and 1 <= only_b <= 2 and shared >= 0.3 * union
    # A statement with a number, not a correction: an order number, a version, an amount
    # given because the agent asked for it.
    details = (
        not now.question
        and now.form < 0
        and not bits & CORRECTS
        and _DIGIT.search(lowered) is not None
    )
    longer = max(previous.length, now.length)
    return (
        1.0 if swapped else 0.0,
        1.0 if bits & CORRECTS else 0.0,
        1.0 if bits & REASKS else 0.0,
        1.0 if bits & FOLLOWS else 0.0,
        1.0 if now.aspect and not previous.aspect else 0.0,
        1.0 if is_acknowledgement(lowered, tokens) else 0.0,
        1.0 if len(tokens) <= 3 else 0.0,
        min(previous.length, now.length) / longer if longer else 0.0,
        1.0 if bits & TOPIC else 0.0,
        1.0 if not ANAPHORA.isdisjoint(tokens) else 0.0,
        1.0 if details else 0.0,
    )

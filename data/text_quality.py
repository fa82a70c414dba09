"""Pure rules that read generated story text the way a player would notice its faults.

Shared by the model's evaluation (``models.evaluation``) and the feedback harvest (``data.feedback``), so it
lives in ``data``, which both may import, and loads nothing heavy (the word lists are read on first use).

- ``invented_word_rate``: share of lower-case words that are no English word. Capitalised words are left out
  (names, honorific-bearing names, the start of a sentence); a word counts as English if it, or its stem
  after a regular inflection (-s, -es, -ies, -ed, -ied, -ing, -er, -est, -ly, a doubled consonant, a
  dropped e) is in the union of Webster's 2nd and GCIDE (the ``english-words`` package, offline), or in
  a short list of words of our genres that dictionaries miss (ramen, senpai, ...).
- ``second_person``: the narration speaks to the player ("you", "your").
- ``present_share``: of the verbs right after "you" (the player's own actions), the share not in the past
  tense (an -ed ending or a common irregular past form). A heuristic, not a parser: it reads the tense a
  reader notices.
- ``imperative``: a choice starts with a verb, not a pronoun, an article, an -ing or -ed form.
- ``repeated_ngram_rate``: share of a text's word n-grams that repeat an earlier one (looping text).
- ``run_together_words``: words no dictionary could hold, run together in CamelCase or past any English
  word's length ("AnImatakeHellOakLawn…", which ``invented_words`` does not see: it reads lower-case words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache

_WORD = re.compile(r"[^\W\d_]+(?:[-'\u2019][^\W\d_]+)*")
# Words of our stories that general dictionaries do not hold; all occur in the bundled stories.
GENRE_WORDS = frozenset("""
ramen senpai sensei kohai onigiri bento yokai kami torii shoji tatami futon dojo katana ronin kimono yukata obi
mochi dango matcha sake shamisen taiko koi shinobi ninja manga anime idol mecha isekai cyberpunk hud chan kun
san sama dono okay online offline smartphone email app apps hoverbike cyborg android holo hologram neon wi fi
qi dantian wuxia xianxia meridian meridians tofu miso wasabi tempura sushi udon soba yakitori baachan obaasan
obaasama kaichou shinai wasanbon yuzu kendo taiyaki okoge tamagoyaki takoyaki haiku kotatsu washi enka
furoshiki noren inari jii salaryman libero emoji mic webcam firmware download anymore laundromat boyfriend
girlfriend flashcards worksheet readout subroutine megacity timeout o'clock fishermen
""".split())  # noqa: SIM905
CONTRACTION_TAILS = ("'s", "'re", "'ll", "'ve", "'d", "'m", "n't")
PAST_IRREGULAR = frozenset("""
was were had did saw went took said felt came knew thought found gave told made ran stood sat heard began
brought bought caught fought held kept left lost meant met paid put read sent set shook slept spoke spent stole
struck swam swore taught tore threw understood woke wore won wrote drew drank drove ate fell flew forgot froze
got grew hid hung lay led lit rode rose rang sang sank slid spun sprang stuck stung swung
""".split())  # noqa: SIM905
NOT_IMPERATIVE = frozenset("""
i you he she it we they me him her us them my your his its our their the a an this that these those there here
to and or but if when while because maybe perhaps what who why how
""".split())  # noqa: SIM905


@cache
def english_words() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], lower=True, alpha=True)) | GENRE_WORDS


def _stems(word: str) -> Iterable[str]:
    yield word
    for tail in CONTRACTION_TAILS:
        if word.endswith(tail):
            yield word[: -len(tail)]
    for suffix, replacement in (("ies", "y"), ("ied", "y"), ("ier", "y"), ("iest", "y"), ("ily", "y"),
                                ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                                ("er", ""), ("er", "e"), ("est", ""), ("est", "e"), ("ly", ""), ("ness", ""),
                                ("ment", ""), ("ful", ""), ("less", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            stem = word[: -len(suffix)] + replacement
            yield stem
            if len(stem) >= 3 and stem[-1] == stem[-2] and not replacement:  # stopped, running
                yield stem[:-1]


def _known(word: str, vocabulary: frozenset[str]) -> bool:
    for stem in _stems(word):
        british = stem.replace("our", "or").replace("is", "iz").replace("lled", "led")
        if stem in vocabulary or british in vocabulary:
            return True
    return False


def is_english(word: str, known: frozenset[str] | None = None) -> bool:
    """A dictionary word, an inflection of one, a British spelling of one, or two of them run together
    (rooftop, countdown, stairwell: open compounds a dictionary of 1934 does not list)."""
    vocabulary = known if known is not None else english_words()
    word = word.lower().replace("\u2019", "'")
    if _known(word, vocabulary):
        return True
    return any(word[:cut] in vocabulary and _known(word[cut:], vocabulary) for cut in range(3, len(word) - 2))


def lower_case_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text) if w[0].islower()]


def invented_words(texts: Iterable[str]) -> tuple[int, int, list[str]]:
    """(invented lower-case words, all lower-case words, the invented ones) over ``texts``."""
    known = english_words()
    total, found = 0, []
    for text in texts:
        for word in lower_case_words(text):
            total += 1
            # Hyphenated words and romanised Japanese with macrons (Ryō) are deliberate, not invented.
            if "-" not in word and word.isascii() and not is_english(word, known):
                found.append(word)
    return len(found), total, found


def invented_word_rate(texts: Iterable[str]) -> float:
    bad, total, _ = invented_words(texts)
    return bad / total if total else 0.0


def second_person(narration: str) -> bool:
    return bool(re.search(r"\byou(r|rs|rself)?\b", narration, re.IGNORECASE))


def present_share(narration: str) -> float | None:
    """Of the words right after "you", the share not in the past tense; ``None`` when there are none."""
    verbs = re.findall(r"\byou\s+([a-z]+)", narration, re.IGNORECASE)
    verbs = [v.lower() for v in verbs if v.lower() not in {"are", "were", "can", "could", "will", "would", "do",
                                                          "don't", "may", "might", "must", "should", "and", "to"}]
    if not verbs:
        return None
    past = sum(1 for v in verbs if v in PAST_IRREGULAR or (v.endswith("ed") and v not in {"need", "feed", "bleed"}))
    return 1 - past / len(verbs)


def imperative(choice: str) -> bool:
    words = choice.split()
    if not words:
        return False
    first = words[0].strip(".,!?\"'").lower()
    return bool(first) and first not in NOT_IMPERATIVE and not first.endswith(("ing", "ed")) and first.isalpha()


def choice_words(choices: Sequence[str]) -> list[int]:
    return [len(choice.split()) for choice in choices]


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def repeated_ngram_rate(text: str, n: int = 4) -> float:
    grams = ngrams(text.split(), n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


# Longer than English words run (the bundled stories' longest is 16 letters; "counterrevolutionaries" 22).
RUN_TOGETHER_LETTERS = 24
# Upper-case letters inside a word after a lower-case one: "McAllister" has one, "HellOakLawnShatter" three.
_HUMP = re.compile(r"(?<=[a-z])[A-Z]")


def run_together_words(text: str) -> list[str]:
    """Words that are several run together: over ``RUN_TOGETHER_LETTERS`` letters, or with three or more
    capitals inside them."""
    return [w for w in _WORD.findall(text) if len(w) > RUN_TOGETHER_LETTERS or len(_HUMP.findall(w)) >= 3]

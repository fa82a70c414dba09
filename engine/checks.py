"""Every model output is checked before a player sees it; what fails is counted per model version."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from engine.errors import BlockedTextError, MalformedOutputError, RejectedOutputError
from engine.prompt_format import SPECIAL_TOKENS, ParsedScene, parse_output


@dataclass(frozen=True)
class CheckRules:
    min_words: int = 20
    max_words: int = 220
    near_copy: float = 0.6  # share of word 3-grams shared with an earlier scene of the game that rejects it
    # A choice is an action a player can read: "Sh" (a fragment) or "Go" is not; the dataset's choices run 3-14
    # words, and a model's may be a little shorter or longer before a player minds.
    min_choice_words: int = 2
    max_choice_words: int = 20
    # Four choices of at most 150 characters (with their number emoji) fit the 1,024 characters of one
    # Discord embed field, so no choice is ever cut off while its reaction still votes for it.
    max_choice_chars: int = 150
    block_list: frozenset[str] = frozenset()

    def with_words(self, words: Iterable[str]) -> CheckRules:
        """These rules with ``words`` banned too (a server's or a game's additions to the global list)."""
        extra = frozenset(word.casefold() for word in words)
        return replace(self, block_list=self.block_list | extra) if extra - self.block_list else self


def shingles(text: str) -> set[tuple[str, ...]]:
    """The word 3-grams of ``text`` (case-folded): what ``overlap`` compares, and what the feedback export
    indexes to find near-duplicates among thousands of scenes."""
    words = re.findall(r"\w+", text.casefold())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def overlap(a: str, b: str) -> float:
    """Share of ``a``'s word 3-grams that also occur in ``b``."""
    mine = shingles(a)
    return len(mine & shingles(b)) / len(mine) if mine else 0.0


# Characters that show nothing but split a word for a matcher: soft hyphen, zero-width space/joiners, word
# joiner, invisible operators, byte-order mark, Mongolian vowel separator, combining grapheme joiner.
_INVISIBLE = re.compile("[\u00ad\u034f\u180e\u200b-\u200f\u2060-\u2064\ufeff]")
# Discord mention markup (<@id>, <@!id>, <@&role>, <#channel>) and mass pings.
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>|@(?:everyone|here)\b")


def visible(text: str) -> str:
    """``text`` without the invisible characters (what a player sees)."""
    return _INVISIBLE.sub("", text)


# Letters of other scripts drawn like Latin ones (Cyrillic, then Greek, lower case: after case folding): a
# blocked word spelled with a Cyrillic a (U+0430) looks the same to a reader, so it is the same to the matcher.
_LOOKALIKES = str.maketrans(
    "\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443\u0445\u0456\u0457\u0458\u0455"
    "\u0501\u051b\u051d\u04bb\u04cf"
    "\u03b1\u03b2\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03c9\u03c2\u03c3",
    "abeekmhopctyxiijsdqwhl" "abeikvoptuxwso")


def normalised(text: str) -> str:
    """The form the block list compares: NFKC (fullwidth and compatibility letters become plain ones),
    invisible characters removed, case-folded ("Straße" and "STRASSE" are one word), look-alike Cyrillic and
    Greek letters read as the Latin ones they imitate, and accents dropped ("fück" is "fuck")."""
    folded = visible(unicodedata.normalize("NFKC", text)).casefold().translate(_LOOKALIKES)
    return "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))


def blocked_words(text: str, block_list: Iterable[str]) -> list[str]:
    """The blocked words or phrases in ``text`` (whole words, any case, any Unicode spelling of them)."""
    plain = normalised(text)
    return [word for word in sorted(block_list) if word.strip() and
            re.search(rf"(?<!\w){re.escape(normalised(word.strip()))}(?!\w)", plain)]


# Words a choice (an action a player picks) cannot end on: it was cut off ("Let Kanpei-kun take the"). Only
# words that never close an English imperative: "on", "up", "in", "around" do ("Press on", "Look around").
DANGLING_WORDS = frozenset("""
a an the and or but nor to of for with from into onto toward towards at than your their its my our his
""".split())  # noqa: SIM905
_DANGLING_TAIL = re.compile(r"[,:;\-\u2013\u2014(\[\u201c]$")


def dangling(choice: str) -> bool:
    """True if ``choice`` stops mid-phrase: on an article, a preposition that needs its object, a conjunction
    or a possessive, or on a comma, colon, dash or inside a quotation."""
    text = choice.strip()
    if not text:
        return True
    if _DANGLING_TAIL.search(text) or text.count('"') % 2:  # an unclosed quote: the words stopped inside it
        return True
    last = re.sub(r"[^\w'\u2019-]+$", "", text.split()[-1]).casefold()
    return last in DANGLING_WORDS


def check_player_text(text: str, rules: CheckRules) -> str:
    """A player's text (a premise, feedback) as it may be stored and shown: invisible characters removed;
    refused with a reason if it holds a blocked word, a story marker or a mention."""
    found = blocked_words(text, rules.block_list)
    if found:
        raise BlockedTextError(f"that text contains a blocked word ({', '.join(found)}); please rephrase it")
    if any(marker in normalised(text) for marker in SPECIAL_TOKENS) or "<|" in text:
        raise BlockedTextError("that text contains the storyteller's markup (<|...|>); please rephrase it")
    if _MENTION.search(text):
        raise BlockedTextError("that text mentions someone (a user, role, channel, @everyone or @here); "
                               "please write it without mentions")
    return visible(text).strip()


def check_output(text: str, earlier: Sequence[str], rules: CheckRules, must_end: bool = False,
                 may_end: bool = True) -> ParsedScene:
    """Parse and check one answer; ``RejectedOutputError`` says why it cannot be shown."""
    try:
        scene = parse_output(text)
    except MalformedOutputError as exc:
        raise RejectedOutputError(f"malformed: {exc.reason}") from exc
    words = len(scene.narration.split())
    if not rules.min_words <= words <= rules.max_words:
        raise RejectedOutputError(f"narration of {words} words, needs {rules.min_words}-{rules.max_words}")
    for choice in scene.choices:
        count = len(choice.split())
        if not rules.min_choice_words <= count <= rules.max_choice_words:
            raise RejectedOutputError(f"choice length: {choice!r} has {count} word(s), needs "
                                      f"{rules.min_choice_words}-{rules.max_choice_words}")
        if dangling(choice):
            raise RejectedOutputError(f"choice cut off: {choice!r} stops mid-phrase")
        if len(choice) > rules.max_choice_chars:
            raise RejectedOutputError(f"choice length: {choice[:40]!r}… has {len(choice)} characters, at most "
                                      f"{rules.max_choice_chars}")
    if must_end and not scene.is_ending:
        raise RejectedOutputError("the story is at its maximum length but the answer is not an ending")
    if not may_end and scene.is_ending:
        raise RejectedOutputError("an ending before the story's minimum length")
    for previous in earlier:
        if overlap(scene.narration, previous) >= rules.near_copy:
            raise RejectedOutputError("a near-copy of an earlier scene")
    found = blocked_words(" ".join([scene.narration, *scene.choices]), rules.block_list)
    if found:
        raise RejectedOutputError(f"blocked word(s): {', '.join(found)}")
    return scene


@dataclass
class OutputStats:
    """Per model version: answers checked, rejections by reason, and repairs (they feed evaluation)."""

    outputs: Counter[str] = field(default_factory=Counter)
    parse_failures: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)
    rejections: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def record(self, model_version: str, reason: str | None) -> None:
        self.outputs[model_version] += 1
        if reason is not None:
            self.rejections[model_version][reason.split(":")[0]] += 1
            if reason.startswith("malformed"):
                self.parse_failures[model_version] += 1

    def drain(self) -> dict[str, dict[str, int]]:
        """The counts so far, which are then reset (to be added to the store's totals)."""
        counts = self.as_dict()
        self.outputs.clear()
        self.parse_failures.clear()
        self.repairs.clear()
        self.rejections.clear()
        return counts

    def as_dict(self) -> dict[str, dict[str, int]]:
        versions = sorted(set(self.outputs) | set(self.repairs))
        return {version: {"outputs": self.outputs[version], "parse_failures": self.parse_failures[version],
                          "repairs": self.repairs[version], **dict(self.rejections.get(version, {}))}
                for version in versions}

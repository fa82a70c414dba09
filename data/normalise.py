"""Text normalisation shared by validation and the build.

Case is kept on purpose: the seed project lower-cased its data, which destroys names, honorifics and the
rhythm of dialogue (``Hana-chan`` becomes ``hana-chan``) and teaches the model to write without capitals.
"""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_NEWLINES = re.compile(r"\s*\n\s*")


def normalise_text(text: str) -> str:
    """Unicode NFC, one space between words, single newlines between paragraphs, no outer whitespace."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = _NEWLINES.sub("\n", text)
    return text.strip()


def normalise_choice(text: str) -> str:
    """A choice as players see it: normalised, first letter capitalised, no trailing full stop."""
    text = normalise_text(text).rstrip(".").strip()
    return text[:1].upper() + text[1:]


def word_count(text: str) -> int:
    """Words as whitespace-separated tokens: what an author counts, and what the rules bound."""
    return len(text.split())

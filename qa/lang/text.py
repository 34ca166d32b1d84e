"""Text normalisation and content-term extraction shared by retrieval, ranking and verification.

These functions never change stored text; they produce comparison keys. Typographic quotes become ASCII,
non-breaking spaces become spaces, case is folded and words are Snowball-stemmed.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_TRANSLATE = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "\u00a0": " ", "–": "-", "—": "-"})
_WORD_RE = re.compile(r"[^\W_]+(?:[.,'][^\W_]+)*")

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom whose why will
    with would you your yours yourself yourselves s t don shall may might must upon whether via per
    tell says said say please according far""".split()
)
# Words that shape a question but carry no content to look for in the articles.
QUESTION_WORDS = frozenset(
    """how much many when who whom whose what which where why did does do is was were are much long
    often kind type name named give list explain describe happen happened happening going find
    mean means""".split()
)


# Python's str.isspace() also counts U+001C..U+001F, which Unicode's White_Space (and so JSON Schema's
# and pydantic's `\s`) does not; "blank" must mean the same thing at the HTTP edge and in here.
_NOT_UNICODE_WHITESPACE = frozenset("\x1c\x1d\x1e\x1f")


def is_blank(text: str) -> bool:
    """True when ``text`` has no character outside Unicode White_Space.

    Examples: is_blank(" \n\u00a0") -> True; is_blank("\x1f") -> False; is_blank("a") -> False
    """
    return all(ch.isspace() and ch not in _NOT_UNICODE_WHITESPACE for ch in text)


def normalize(text: str) -> str:
    """Comparison form: NFKC, ASCII quotes and dashes, plain spaces, case-folded.

    Example: normalize("CSC’s\u00a0£1bn") -> "csc's £1bn"
    """
    return unicodedata.normalize("NFKC", text).translate(_TRANSLATE).casefold()


def fold_same_length(text: str) -> str:
    """Like `normalize` but character by character, so offsets into the result index ``text`` too.

    Characters whose normal form is longer than one character (e.g. "…", "ß") are kept as they are.
    Example: fold_same_length("CSC’s £1BN") -> "csc's £1bn"
    """
    if text.isascii():
        return text.lower()
    out = []
    for ch in text:
        folded = normalize(ch)
        out.append(folded if len(folded) == 1 else ch)
    return "".join(out)


def words(text: str) -> list[str]:
    """Normalised word tokens, possessive 's dropped; keeps 4,400 and 3.1 whole.

    Example: words("CSC’s 4,400 GP practices.") -> ["csc", "4,400", "gp", "practices"]
    """
    out = []
    for token in _WORD_RE.findall(normalize(text)):
        if token.endswith("'s"):
            token = token[:-2]
        token = token.strip("'.,")
        if token:
            out.append(token)
    return out


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball stem of one normalised word; numbers are returned without thousands separators.

    Example: stem("savings") -> "save"; stem("4,400") -> "4400"
    """
    if word[:1].isdigit():
        return word.replace(",", "")
    return _stemmer().stemWord(word)


def content_terms(text: str, *, drop_question_words: bool = False) -> list[str]:
    """Stemmed non-stopword terms of ``text`` in order (duplicates kept).

    Example: content_terms("How much is CSC saving?", drop_question_words=True) -> ["csc", "save"]
    """
    skip = STOPWORDS | QUESTION_WORDS if drop_question_words else STOPWORDS
    return [stem(w) for w in words(text) if w not in skip]


def edit_distance_at_most_one(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion or substitution.

    Example: edit_distance_at_most_one("savngs", "savings") -> True
    """
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = j = 0
    edits = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            i += 1
            j += 1
            continue
        edits += 1
        if edits > 1:
            return False
        if len(a) == len(b):
            i += 1
        j += 1
    return edits + (len(b) - j) + (len(a) - i) <= 1

"""Turn a window's start/end logits into the best answer span (the post-processing of transformers' run_qa).

Example::

    >>> import numpy as np
    >>> offsets = [None, None, (0, 3), (4, 9), (10, 14), None]   # [CLS] q [SEP] "The quick fox" [SEP]
    >>> starts = np.array([0.0, 0, 0.1, 3.0, 0.2, 0])
    >>> ends = np.array([0.0, 0, 0.1, 0.5, 2.5, 0])
    >>> best_span(starts, ends, offsets)
    (4, 14, 5.5)

A span never crosses a paragraph break (a blank line); with "fox" in the next paragraph::

    >>> best_span(starts, ends, offsets, paragraphs=[-1, -1, 0, 0, 1, -1])
    (4, 9, 3.5)
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

import numpy as np

MAX_ANSWER_TOKENS = 30
N_BEST = 20


def best_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Sequence[tuple[int, int] | None],
    *,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
    n_best: int = N_BEST,
    paragraphs: Sequence[int] | None = None,
) -> tuple[int, int, float] | None:
    """(char_start, char_end, start+end logit) of the best context span, or None if the window has none.

    Only tokens with an offset (the context's own tokens) may start or end a span; the end may not come
    before the start or more than ``max_answer_tokens`` after it, nor in another of ``paragraphs`` (each
    token's paragraph number, `paragraph_of`), when given.
    """
    usable = np.array([o is not None for o in offsets], dtype=bool)
    if not usable.any():
        return None
    s = np.where(usable, start_logits, -np.inf)
    e = np.where(usable, end_logits, -np.inf)
    k = min(n_best, int(usable.sum()))
    starts = np.argsort(s)[::-1][:k]
    ends = np.argsort(e)[::-1][:k]
    best: tuple[int, int, float] | None = None
    for i in starts:
        for j in ends:
            if j < i or j - i + 1 > max_answer_tokens:
                continue
            if paragraphs is not None and paragraphs[i] != paragraphs[j]:
                continue
            score = float(s[i] + e[j])
            if best is None or score > best[2]:
                best = (offsets[i][0], offsets[j][1], score)
    return best


_BREAK = re.compile(r"\n[ \t\r\f\v\xa0]*\n\s*")


def paragraph_of(text: str, offsets: Sequence[tuple[int, int] | None]) -> list[int]:
    """Each token's paragraph in ``text`` (paragraphs are separated by blank lines); -1 for tokens
    without an offset.

    >>> paragraph_of("Title\\n\\nBody text", [None, (0, 5), (7, 11), (12, 16)])
    [-1, 0, 1, 1]
    """
    breaks = [m.start() for m in _BREAK.finditer(text)]
    return [-1 if o is None else bisect.bisect_right(breaks, o[0]) for o in offsets]


CURRENCY_SIGNS = "£$€¥"


_NAME_WORD_RE = re.compile(r" ([A-Z][\w'’&-]*)")
# Capitalised, but not part of a name that runs on: "In March CSC said", "On Monday NHS Connecting for
# Health", "CSC I".
_NOT_NAME_WORDS = frozenset(
    "I January February March April May June July August September October November December "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
)


def with_whole_name(text: str, end: int) -> int:
    """The end of a span, moved on over the capitalised words that follow its last word directly (one
    space apart, nothing between): a name is not cut short. Only when that last word is capitalised too.

    >>> text = "The contract was tendered by NHS Shared Business Services last year."
    >>> text[29:with_whole_name(text, 32)]
    'NHS Shared Business Services'
    >>> with_whole_name("Talks with CSC. The NHS said", 14)   # a full stop ends the name
    14
    >>> with_whole_name("In March CSC said", 8)   # a month or weekday neither starts nor continues one
    8
    """
    if end <= 0 or end > len(text):
        return end
    word_start = end
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    if not text[word_start:end][:1].isupper() or text[word_start:end] in _NOT_NAME_WORDS:
        return end
    while (m := _NAME_WORD_RE.match(text, end)) is not None and m.group(1) not in _NOT_NAME_WORDS:
        end = m.end(1)
    return end


def with_currency(text: str, start: int) -> int:
    """The start of a span, moved back over the currency sign written right before its first digit:
    the sign belongs to the figure.

    >>> text = "The suits sold for $110,000 at auction."
    >>> text[with_currency(text, 20):27]
    '$110,000'
    """
    if 0 < start < len(text) and text[start].isdigit() and text[start - 1] in CURRENCY_SIGNS:
        return start - 1
    return start

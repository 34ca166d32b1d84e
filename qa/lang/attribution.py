"""Whose a quoted figure is, in the quote's own words, for a question that names a party in another role.

A question can ask for the right measure about a party the quote involves, in the wrong role: "How much
is CSC saving?" when the quote says savings "will be delivered to the NHS from CSC’s contract". The
answer must say whose the figure is, in the quote's words, and never repeat the question's framing.

The span's clause ends at ; : — – and at "that", "but", "while", "which", "who" and reporting verbs
("said"). The words that say whose the figure is are the clause from its start to the span ("the
islands council will save £6m"), or, when the span opens its clause, from the span to the nearest name
after it ("£1bn savings will be delivered to the NHS"). When the question names a party of that clause
and those words leave it out, the question gave the party another role, and those words lead the answer.

Example::

    >>> quote = "Lansley confirmed that around £1bn savings will be delivered to the NHS from CSC’s contract."
    >>> attributed_lead(quote, "around £1bn", ["CSC"])
    'around £1bn savings will be delivered to the NHS'
    >>> attributed_lead(quote, "around £1bn", ["NHS", "CSC"]) is None   # the question names the owner
    True
    >>> attributed_lead("Ministers said the council will save £6m from Acme's deal.", "£6m", ["Acme"])
    'the council will save £6m'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qa.lang.numbers import find_quantities
from qa.lang.text import STOPWORDS, words

_NAME_RE = re.compile(r"(?<![\w'’])[A-Z][\w'’.&-]*(?:\s+(?:of|de|the|[A-Z][\w'’.&-]*))*(?<![\s.])")
_NOT_NAMES = frozenset(
    "The A An In On At It This These That Those He She They We I His Her Their Its But And Or If When Where "
    "What Which Who Whom Whose Why How Mr Mrs Ms Dr Sir".split()
)
# Clauses end at these marks and words; a reporting verb ends the reporter's clause ("Ministers said ...").
_CLAUSE_END_RE = re.compile(
    r"[;:—–]|\s-\s|\b(?:that|but|while|whereas|although|which|who|said|says|told|added|announced|confirmed|warned)\b"
)
MAX_LEAD_WORDS = 25


def names_in(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of the capitalised names of ``text``, leading function words dropped.

    Example: names_in("But the NHS met Andrew Lansley.") -> [(8, 11, "NHS"), (16, 30, "Andrew Lansley")]
    """
    out = []
    for m in _NAME_RE.finditer(text):
        raw = m.group(0).rstrip("'’s.,")
        name = raw
        while name.split() and (name.split()[0] in _NOT_NAMES or name.split()[0] == "the"):
            name = name.split(maxsplit=1)[1] if " " in name else ""
        start = m.start() + (len(raw) - len(name))
        if name and name.lower() not in STOPWORDS:
            out.append((start, start + len(name), name))
    return out


def _clause(text: str, start: int, end: int) -> tuple[int, int]:
    """The clause of ``text`` around ``text[start:end]``: from the last clause end before it to the next after."""
    lo, hi = 0, len(text)
    for m in _CLAUSE_END_RE.finditer(text):
        if m.end() <= start:
            lo = m.end()
        elif m.start() >= end:
            hi = m.start()
            break
    return lo, hi


def _has(text_words: set[str], name: str) -> bool:
    parts = words(name)
    return bool(parts) and all(w in text_words for w in parts)


def attributed_lead(quote: str, span: str, question_names: Sequence[str]) -> str | None:
    """The quote's own words that say whose the figure ``span`` is, when the question names a party of
    the span's clause that those words leave out (a loosely worded question); else None, and the answer
    is phrased as usual (also when ``span`` is no figure, or the words would run past 25)."""
    at = quote.find(span)
    if at < 0 or not span.strip() or not find_quantities(span):
        return None
    end = at + len(span)
    lo, hi = _clause(quote, at, end)
    clause_words = set(words(quote[lo:hi]))
    asked = [n for n in question_names if words(n) and _has(clause_words, n)]
    if not asked:
        return None  # the question names no party of this clause
    if len(quote[lo:at].split()) >= 2:
        lead = quote[lo:end].strip(" ,")
    else:
        after = [(s, e, n) for s, e, n in names_in(quote) if s >= end and e <= hi]
        if not after:
            return None
        lead = quote[at : after[0][1]].strip()
    lead_words = set(words(lead))
    if any(_has(lead_words, n) for n in asked) or len(lead.split()) > MAX_LEAD_WORDS:
        return None  # the words that say whose it is name the question's party: its wording fits
    return lead

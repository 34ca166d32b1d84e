"""Answer-type cues: what kind of span a question asks for, and where such spans occur in a text.

Rule-based and transparent. The trained reader picks answers; these cues only check that a generated
sentence states the kind of thing asked for ("How much ...?" -> an amount of money).
"""

from __future__ import annotations

import re
from enum import StrEnum

from qa.lang.numbers import find_quantities
from qa.lang.text import normalize


class AnswerType(StrEnum):
    MONEY = "money"
    NUMBER = "number"
    DATE = "date"
    PERSON = "person"
    ENTITY = "entity"  # a person or an organisation ("who")
    PLACE = "place"


_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_DATE_RE = re.compile(
    rf"\b(?:(?:early|late|mid|the end of|the beginning of|the start of)[\s-]+)?"
    rf"(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})(?:\s+\d{{4}})?|(?:{_MONTHS})(?:\s+\d{{1,2}}(?:st|nd|rd|th)?,?)?(?:\s+\d{{4}})?)\b"
    r"|\b(?:1[5-9]\d\d|20\d\d)(?:[-–/]\d{2,4})?s?\b"
    r"|\b(?:last|next|this|earlier this|later this)\s+(?:week|month|year|spring|summer|autumn|winter|morning)\b"
    r"|\b(?:spring|summer|autumn|winter)\b"
    r"|\b(?:yesterday|today|tomorrow|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"
    r"|\b(?:the\s+)?\d{1,2}(?:st|nd|rd|th)\s+century\b",
)
# Words that make a capitalised sequence an organisation, a place or a programme rather than a person.
_NON_PERSON = frozenset(
    """department office trust trusts nhs service services network programme program health care foundation
    ltd inc plc limited university college council directorate group government ministry agency board
    committee party commission treasury audit national royal bank company corporation association institute
    hospital hospitals authority north south east west midlands england britain scotland wales ireland europe
    america american british english labour conservative january february march april may june july august
    september october november december monday tuesday wednesday thursday friday saturday sunday leaders
    connecting business shared system systems record records the a an however but and he she it they we
    this that these those in on at for of to by""".split()
)
_CAP_SEQ_RE = re.compile(r"\b(?:[A-Z][a-zA-Z'’-]*[a-z][a-zA-Z'’-]*)(?:\s+(?:[A-Z][a-zA-Z'’-]*[a-z][a-zA-Z'’-]*))+\b")
_TITLE_NAME_RE = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Sir|Lord|Lady|Prof)\.?\s+[A-Z][a-zA-Z'’-]+")
_ACRONYM_RE = re.compile(r"\b[A-Z][A-Z0-9&]{1,9}\b")
_ORG_SEQ_RE = re.compile(r"\b[A-Z][a-zA-Z]+(?:\s+(?:of|for|and|the|[A-Z][a-zA-Z]+))*\s+[A-Z][a-zA-Z]+\b")
_PLACE_RE = re.compile(
    r"\b(?:in|at|from|to|across|near)\s+((?:the\s+)?[A-Z][a-zA-Z]+(?:(?:,\s+|\s+and\s+|\s+)[A-Z][a-zA-Z]+)*)"
)

# "Which trust ...?", "What product ...?": nouns whose instances have proper names.
_NAMED_NOUNS = frozenset(
    "person minister secretary company companies firm organisation organization supplier provider product products "
    "system software trust trusts body department publication newspaper magazine programme brand agency "
    "government party hospital".split()
)

_QUESTION_RULES: list[tuple[re.Pattern[str], AnswerType]] = [
    (re.compile(r"\bhow much\b"), AnswerType.MONEY),
    (
        re.compile(r"\bwhat (?:is|was) the (?:cost|value|price|budget|saving|figure)\b|\bhow expensive\b|\bworth\b"),
        AnswerType.MONEY,
    ),
    (
        re.compile(
            r"\bhow many\b|\bwhat (?:number|percentage|proportion|share|fraction|portion)\b|\bhow (?:big|large|often)\b"
        ),
        AnswerType.NUMBER,
    ),
    (
        re.compile(
            r"\bwhen\b|\b(?:what|which) (?:year|date|month|day|time|century|decade)\b|\bby what date\b|\bhow long ago\b"
        ),
        AnswerType.DATE,
    ),
    (
        re.compile(
            r"\bwho(?:m|se)?\b|\bname of\b|\bwhat is (?:it|\w+) called\b|"
            rf"\b(?:which|what) (?:{'|'.join(sorted(_NAMED_NOUNS))})\b"
        ),
        AnswerType.ENTITY,
    ),
    (re.compile(r"\bwhere\b|\b(?:what|which) (?:region|country|city|place|area|town)\b"), AnswerType.PLACE),
]


def expected_type(question: str) -> AnswerType | None:
    """The answer type a question asks for, or None when it asks for no particular kind of span.

    Examples: "How much is CSC saving?" -> MONEY; "Who is CSC's president?" -> ENTITY;
    "Why did the deal stall?" -> None
    """
    q = normalize(question)
    for pattern, atype in _QUESTION_RULES:
        if pattern.search(q):
            return atype
    return None


def _person_spans(text: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in _TITLE_NAME_RE.finditer(text)]
    for m in _CAP_SEQ_RE.finditer(text):
        parts = m.group(0).split()
        # Drop leading words that are not names ("Watch Andrew Lansley" keeps "Andrew Lansley").
        kept = [p for p in parts if normalize(p).rstrip("'s").rstrip("’s") not in _NON_PERSON]
        if (
            len(kept) >= 2
            and len(kept) == len(parts[len(parts) - len(kept) :])
            and kept == parts[len(parts) - len(kept) :]
        ):
            start = m.start() + m.group(0).index(kept[0])
            spans.append((start, m.end()))
    return sorted(set(spans))


def find_spans(text: str, atype: AnswerType) -> list[tuple[int, int]]:
    """Character spans of ``text`` that could answer a question of type ``atype``.

    Example: find_spans("saving £1bn by 2014", MONEY) -> [(7, 11)]
    """
    if atype in (AnswerType.MONEY, AnswerType.NUMBER):
        quantities = find_quantities(text)
        if atype is AnswerType.MONEY:
            chosen = [q for q in quantities if q.currency]
        else:
            chosen = [q for q in quantities if not q.currency and not q.is_year]
        return [(q.start, q.end) for q in chosen]
    if atype is AnswerType.DATE:
        return [m.span() for m in _DATE_RE.finditer(text)]
    if atype is AnswerType.PERSON:
        return _person_spans(text)
    if atype is AnswerType.ENTITY:
        spans = _person_spans(text)
        spans += [m.span() for m in _ACRONYM_RE.finditer(text)]
        spans += [m.span() for m in _ORG_SEQ_RE.finditer(text)]  # overlapping fragments are resolved by callers
        return sorted(set(spans))
    if atype is AnswerType.PLACE:
        return [m.span(1) for m in _PLACE_RE.finditer(text)]
    return []


def has_type(text: str, atype: AnswerType | None) -> bool:
    """True when ``atype`` is None (no constraint) or ``text`` has at least one span of that type."""
    return atype is None or bool(find_spans(text, atype))

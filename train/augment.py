"""Questions rewritten the ways news questions go wrong (or only look wrong), to train the verifier.

Each function takes an answerable question and the window its span was marked in, and returns a new
question with its label, or None when the question offers nothing to rewrite:

- `other_relation`: a measure or relation the window does not state ("How much did X *save*?" ->
  "... *pay*?"; revenue -> profit; bought -> sold). Label 0: a near miss.
- `other_year`: a year of the question changed to one the passage never mentions. Label 0.
- `other_party`: a name of the question replaced by a name from another article. Label 0: a party the
  text does not involve.
- `swapped_role`: a name of the question replaced by another name *of the same window*: the right
  measure, a party the quote involves, its role wrong ("How much is CSC saving?" where the NHS saves
  from CSC's contract). Label 2 (`LOOSE`): answerable, in the quote's own words (``qa.pipeline``).
- `synonym`: a word replaced by a synonym the window does not use ("bought" -> "acquired"). Label 1:
  answerable questions are often worded away from the article.

Labels: 0 not an answer, 1 an answer, 2 (`LOOSE`) an answer to a loosely worded question. The word
families are general English, not taken from any eval set.

Example::

    >>> swapped_role("How much is Acme saving?", "The NHS saves «£5m» from Acme's contract.", random.Random(0))
    ('How much is NHS saving?', 2)
"""

from __future__ import annotations

import random
import re

NOT_ANSWER, ANSWER, LOOSE = 0, 1, 2

# Families of one part of speech whose members differ in meaning: swapping one for another asks for
# something else. Verbs are (base, -s, past, -ing, past participle).
_VERB_FAMILIES: tuple[tuple[tuple[str, str, str, str, str], ...], ...] = (
    (
        ("pay", "pays", "paid", "paying", "paid"),
        ("save", "saves", "saved", "saving", "saved"),
        ("earn", "earns", "earned", "earning", "earned"),
        ("spend", "spends", "spent", "spending", "spent"),
        ("owe", "owes", "owed", "owing", "owed"),
        ("borrow", "borrows", "borrowed", "borrowing", "borrowed"),
        ("raise", "raises", "raised", "raising", "raised"),
        ("lose", "loses", "lost", "losing", "lost"),
    ),
    (("buy", "buys", "bought", "buying", "bought"), ("sell", "sells", "sold", "selling", "sold")),
    (("win", "wins", "won", "winning", "won"), ("lose", "loses", "lost", "losing", "lost")),
    (("join", "joins", "joined", "joining", "joined"), ("leave", "leaves", "left", "leaving", "left")),
    (("hire", "hires", "hired", "hiring", "hired"), ("sack", "sacks", "sacked", "sacking", "sacked")),
    (("open", "opens", "opened", "opening", "opened"), ("close", "closes", "closed", "closing", "closed")),
    (
        ("increase", "increases", "increased", "increasing", "increased"),
        ("cut", "cuts", "cut", "cutting", "cut"),
    ),
    (
        ("support", "supports", "supported", "supporting", "supported"),
        ("oppose", "opposes", "opposed", "opposing", "opposed"),
    ),
    (
        ("accept", "accepts", "accepted", "accepting", "accepted"),
        ("reject", "rejects", "rejected", "rejecting", "rejected"),
    ),
    (("sign", "signs", "signed", "signing", "signed"), ("release", "releases", "released", "releasing", "released")),
    (("arrest", "arrests", "arrested", "arresting", "arrested"), ("free", "frees", "freed", "freeing", "freed")),
    (("beat", "beats", "beat", "beating", "beaten"), ("draw", "draws", "drew", "drawing", "drawn")),
    (
        ("start", "starts", "started", "starting", "started"),
        ("finish", "finishes", "finished", "finishing", "finished"),
    ),
    (
        ("build", "builds", "built", "building", "built"),
        ("destroy", "destroys", "destroyed", "destroying", "destroyed"),
    ),
)
_NOUN_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("revenue", "profit", "sales", "debt", "turnover", "loss"),
    ("revenues", "profits", "debts", "losses"),
    ("viewers", "listeners", "readers", "visitors", "members", "employees"),
    ("goals", "caps", "appearances", "points", "wins", "defeats"),
    ("votes", "seats", "members"),
    ("population", "area", "budget"),
    ("salary", "bonus", "pension", "fee"),
    ("fine", "bail", "compensation", "tax"),
    ("birth", "death", "marriage"),
    ("born", "died", "married"),
    ("first", "last", "second"),
    ("minimum", "maximum", "average"),
    ("highest", "lowest"),
    ("largest", "smallest"),
    ("before", "after"),
    ("older", "younger"),
    ("men", "women"),
    ("home", "away"),
    ("weekly", "monthly", "annual"),
)
_MONTHS = "January February March April May June July August September October November December".split()
# Synonyms: a question worded away from the text still asks the same thing.
_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("bought", "purchased", "acquired"),
    ("buy", "purchase", "acquire"),
    ("film", "movie"),
    ("films", "movies"),
    ("company", "firm", "business"),
    ("began", "started"),
    ("begin", "start"),
    ("ended", "finished"),
    ("chose", "picked", "selected"),
    ("sacked", "fired", "dismissed"),
    ("quit", "resigned"),
    ("rose", "increased", "grew"),
    ("fell", "dropped", "declined"),
    ("big", "large"),
    ("biggest", "largest"),
    ("total", "overall"),
    ("job", "post", "role"),
    ("said", "stated"),
    ("says", "states"),
    ("shows", "programmes"),
    ("show", "programme"),
    ("song", "track", "single"),
    ("award", "prize"),
    ("awards", "prizes"),
    ("government", "ministers"),
    ("town", "city"),
    ("country", "nation"),
    ("cost", "price"),
    ("team", "side"),
    ("match", "game"),
    ("coach", "manager"),
    ("boss", "chief", "head"),
    ("plans", "proposals"),
    ("plan", "proposal"),
    ("law", "legislation"),
    ("vote", "ballot"),
    ("election", "poll"),
    ("claimed", "alleged"),
    ("received", "got"),
    ("announced", "revealed", "unveiled"),
    ("hurt", "injured"),
    ("injury", "knock"),
    ("need", "require"),
    ("help", "assist"),
    ("enough", "sufficient"),
)
_YEAR_RE = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_NAME_RE = re.compile(r"(?<![\w'’])[A-Z][\w'’.-]*(?:\s+(?:of|de|the|[A-Z][\w'’.-]*))*(?<![\s.])")
_NOT_NAMES = frozenset(
    "The A An In On At It This These That Those He She They We I His Her Their Its But And Or If When Where "
    "What Which Who Whom Whose Why How Mr Mrs Ms Dr Sir".split()
)


def _word_re(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(word)}(?![\w-])", re.IGNORECASE)


def _in(word: str, text: str) -> bool:
    return _word_re(word).search(text) is not None


def _replace(question: str, old: str, new: str) -> str:
    def keep_case(m: re.Match[str]) -> str:
        return new[:1].upper() + new[1:] if m.group(0)[:1].isupper() else new

    return _word_re(old).sub(keep_case, question, count=1)


def _family_swaps(question: str, window: str) -> list[tuple[str, str]]:
    """(word of the question, a member of its family the window never uses) pairs."""
    out = []
    for family in _VERB_FAMILIES:
        for member in family:
            for form, word in enumerate(member):
                if _in(word, question):
                    for other in family:
                        if other is not member and not _in(other[form], window) and not _in(other[form], question):
                            out.append((word, other[form]))
    for family in _NOUN_FAMILIES:
        for word in family:
            if _in(word, question):
                out += [(word, o) for o in family if o != word and not _in(o, window) and not _in(o, question)]
    for n, month in enumerate(_MONTHS):
        if _in(month, question):
            out += [(month, _MONTHS[(n + k) % 12]) for k in (1, 2, 6) if not _in(_MONTHS[(n + k) % 12], window)]
    return out


def other_relation(question: str, window: str, rng: random.Random) -> tuple[str, int] | None:
    swaps = _family_swaps(question, window)
    if not swaps:
        return None
    old, new = rng.choice(swaps)
    return _replace(question, old, new), 0


def other_year(question: str, window: str, rng: random.Random, passage: str = "") -> tuple[str, int] | None:
    years = _YEAR_RE.findall(question)
    if not years:
        return None
    old = rng.choice(years)
    for _ in range(10):
        new = str(int(old) + rng.choice([-3, -2, -1, 1, 2, 3]))
        if not _in(new, window) and not _in(new, passage):
            return _replace(question, old, new), 0
    return None


def _strip_article(name: str) -> str:
    return re.sub(r"^(?:The|A|An)\s+", "", name)


def question_names(question: str) -> list[str]:
    """Capitalised names of a question after its first word. Example: "When did Ann Lee join Acme?" ->
    ["Ann Lee", "Acme"]"""
    first = question.split()[0] if question.split() else ""
    names = []
    for m in _NAME_RE.finditer(question):
        name = _strip_article(m.group(0).rstrip("'’s?.,"))
        if m.start() == 0 and name.split()[0] == first:
            continue
        if name and name.split()[0] not in _NOT_NAMES:
            names.append(name)
    return names


def window_names(window: str) -> list[str]:
    """Capitalised names of a window, leaving out a one-word capital that only starts a sentence.

    Example: window_names("Health chiefs met the NHS and Andrew Lansley.") -> ["NHS", "Andrew Lansley"]
    """
    out = []
    for m in _NAME_RE.finditer(window):
        raw = m.group(0).rstrip("'’s.,")
        name = _strip_article(raw)
        starts = name == raw and (m.start() == 0 or re.search(r"[.!?«“\"]\s*$", window[: m.start()]) is not None)
        if name and name.split()[0] not in _NOT_NAMES and not (starts and " " not in name):
            out.append(name)
    return list(dict.fromkeys(out))


def other_party(
    question: str, window: str, rng: random.Random, pool: list[str], passage: str = ""
) -> tuple[str, int] | None:
    names = [n for n in question_names(question) if _in(n, window)]
    if not names or not pool:
        return None
    old = rng.choice(names)
    for _ in range(10):
        new = rng.choice(pool)
        if not _in(new, window) and not _in(new, passage) and not _in(new, question):
            return _replace(question, old, new), 0
    return None


def swapped_role(question: str, window: str, rng: random.Random) -> tuple[str, int] | None:
    """A name of the question swapped for another name of the window (outside the marked span)."""
    span = window[window.find("«") : window.find("»") + 1] if "«" in window else ""
    asked = question_names(question)
    names = [n for n in asked if _in(n, window)]
    others = [n for n in window_names(window.replace(span, " ")) if not any(_in(n, a) or _in(a, n) for a in asked)]
    if not names or not others:
        return None
    return _replace(question, rng.choice(names), rng.choice(others)), LOOSE


def synonym(question: str, window: str, rng: random.Random) -> tuple[str, int] | None:
    swaps = [
        (w, o)
        for family in _SYNONYMS
        for w in family
        if _in(w, question)
        for o in family
        if o != w and not _in(o, window)
    ]
    if not swaps:
        return None
    old, new = rng.choice(swaps)
    return _replace(question, old, new), 1


def _unmark(window: str) -> tuple[str, int, int] | None:
    a, b = window.find("«"), window.find("»")
    if a < 0 or b < a:
        return None
    text = window[:a] + window[a + 1 : b] + window[b + 1 :]
    return text, a, b - 1


def distractor(question: str, window: str, rng: random.Random) -> tuple[str, int, str] | None:
    """The same question and window with *another* span of the right answer's kind marked (another
    number for a number, another name for a name): (question, new window, 0). Teaches which of the
    sentence's figures or names answers, not only whether the sentence is on topic.

    Example: distractor("How many?", "It has «12» rooms and 3 pools.", random.Random(0)) -> ("How many?", "It has 12 rooms and «3» pools.", 0)
    """
    from qa.lang.numbers import find_quantities

    unmarked = _unmark(window)
    if unmarked is None:
        return None
    text, a, b = unmarked
    span = text[a:b]
    if find_quantities(span):
        others = [(q.start, q.end) for q in find_quantities(text) if q.end <= a or q.start >= b]
    else:
        others = [
            (m.start(), m.start() + len(n))
            for m, n in ((m, m.group(0).rstrip("'’s.,")) for m in _NAME_RE.finditer(text))
            if (m.start() + len(n) <= a or m.start() >= b)
            and n.split()[0] not in _NOT_NAMES
            and n.lower() != span.lower()
        ]
    if not others:
        return None
    s, e = rng.choice(others)
    return question, f"{text[:s]}«{text[s:e]}»{text[e:]}", 0

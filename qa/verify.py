"""Verifying generated answers against the quotes they cite.

A generated answer stands only when every quantity and proper name in it occurs in a cited quote,
it states a span of the type the question asks for, and most of its content words come from the
cited quotes or the question. Anything else is replaced by an extractive answer upstream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qa.citations import MARKER_RE, strip_markers
from qa.lang import numbers
from qa.lang.answer_types import has_type
from qa.lang.numbers import find_quantities, same_quantity
from qa.lang.text import QUESTION_WORDS, STOPWORDS, content_terms, normalize, words
from qa.question import Question

_CAPITALISED_RE = re.compile(r"(?<![\w'’])[A-Z][\w'’.&-]*")
# Capitalised words that start sentences without naming anything.
_HARMLESS = frozenset(
    "yes no according around about approximately nearly almost over under more less some source sources answer "
    "based overall however also".split()
)
_MAX_ANSWER_CHARS = 600
_SCALE_WORDS = frozenset(
    "thousand million millions billion billions trillion bn m mn k per cent percent % pounds pound sterling dollars euros".split()
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: tuple[str, ...] = ()


def _name_key(token: str) -> str:
    key = normalize(token).strip(".'-&")
    return key[:-2] if key.endswith("'s") else key


def name_claims(text: str) -> list[str]:
    """Capitalised words and acronyms of ``text`` that could name something, in order.

    Example: name_claims("The NHS saves £1bn, Lansley said [1].") -> ["NHS", "Lansley"]
    """
    text = strip_markers(text)
    out = []
    for token in _CAPITALISED_RE.findall(text):
        key = _name_key(token)
        if not key or key in STOPWORDS or key in QUESTION_WORDS or key in _HARMLESS or key[0].isdigit():
            continue
        out.append(token.rstrip(".'’-"))
    return out


def unsupported_names(text: str, evidence: Sequence[str]) -> list[str]:
    """Names in ``text`` that appear in none of the ``evidence`` texts (case-insensitive word match).

    Example: unsupported_names("CSA saves", ["CSC saves"]) -> ["CSA"]
    """
    known = {w for e in evidence for w in words(e)}
    return [n for n in name_claims(text) if any(part not in known for part in words(n))]


def unsupported_quantities(text: str, evidence: Sequence[str]) -> list[str]:
    """`qa.lang.numbers.unsupported_quantities` of ``text`` with its citation markers removed."""
    return numbers.unsupported_quantities(strip_markers(text), list(evidence))


def novel_support(text: str, evidence: Sequence[str], question: Question) -> tuple[int, float]:
    """How much the answer adds to the question, and how much of it is quoted.

    Returns (count, share): count = content words and quantities of the answer absent from the
    question; share = the fraction of those *words* found in the evidence (quantities are checked by
    value elsewhere). An answer must add something, and what it adds must be quoted.

    Example: novel_support("The NHS saves £1bn", ["NHS savings of £1bn"], parse_question("Who saves?")) -> (2, 1.0)
    """
    asked = set(question.terms)
    # Quantities are checked by value (unsupported_quantities), so "£1bn" vs "£1 billion" is no word gap.
    novel = [
        t
        for t in content_terms(strip_markers(text))
        if t not in asked and not any(c.isdigit() for c in t) and t not in _SCALE_WORDS
    ]
    new_quantities = unsupported_quantities(text, [question.text])
    if not novel:
        return len(new_quantities), 1.0 if new_quantities else 0.0
    known = {t for e in evidence for t in content_terms(e)}
    return len(novel) + len(new_quantities), sum(t in known for t in novel) / len(novel)


def verify_answer(
    text: str,
    quotes: Sequence[str],
    *,
    question: Question,
    min_support: float = 0.8,
) -> Verdict:
    """Check a generated answer against the quotes it cites; ``problems`` says what failed.

    Example: verify_answer("CSC saves £1.1bn [1]", ["the NHS saves £1bn"], question=parse_question("How much?"))
      -> Verdict(ok=False, problems=("unsupported quantity £1.1bn",))
    """
    problems: list[str] = []
    bare = strip_markers(text)
    if not re.search(r"[^\W\d_]", bare):
        problems.append("no answer text")
    if len(text) > _MAX_ANSWER_CHARS:
        problems.append(f"answer longer than {_MAX_ANSWER_CHARS} characters")
    if not quotes:
        problems.append("no citation")
    problems += [f"unsupported quantity {q}" for q in unsupported_quantities(text, quotes)]
    problems += [f"unsupported name {n}" for n in unsupported_names(text, quotes)]
    if question.expected is not None and not has_type(bare, question.expected):
        problems.append(f"states no {question.expected.value}")
    count, share = novel_support(text, quotes, question)
    if count == 0:
        problems.append("adds nothing to the question")
    elif share < min_support:
        problems.append(f"only {share:.0%} of the words it adds are in the cited quotes")
    if not re.search(r"[.!?\]”\")]\s*$", text):
        problems.append("unfinished sentence")
    if normalize(bare).strip(" .?!") == normalize(question.text).strip(" .?!"):
        problems.append("repeats the question")
    return Verdict(ok=not problems, problems=tuple(problems))


def states_value(text: str, value: str) -> bool:
    """True when ``text`` states ``value``: the same quantities by value, else the same words.

    Example: states_value("The NHS saves £1 billion.", "£1bn") -> True; states_value("171 trusts", "4,400") -> False
    """
    wanted = find_quantities(value)
    if wanted:
        got = find_quantities(strip_markers(text))
        return all(any(same_quantity(w, g) or same_quantity(g, w) for g in got) for w in wanted)
    key = [w for w in words(value) if w not in STOPWORDS]
    have = set(words(strip_markers(text)))
    return bool(key) and all(w in have for w in key)


def early_reject(partial: str, sources: Sequence[str]) -> bool:
    """True as soon as a *finished* word of a partial generation cannot be verified against any source.

    Lets generation stop after a few tokens when the model starts to invent ("CSA", "£1.1 billion").
    The last word is ignored while it may still be growing.
    """
    cut = max(partial.rfind(" "), partial.rfind("\n"))
    done = partial[:cut] if cut > 0 else ""
    done = MARKER_RE.sub(" ", done)
    tokens = done.split()
    # subtle: "£1" may still become "£1 billion pounds"; judge a quantity once a later word follows it.
    while tokens and (any(c.isdigit() for c in tokens[-1]) or normalize(tokens[-1]).strip(".,") in _SCALE_WORDS):
        tokens.pop()
    done = " ".join(tokens)
    if not done.strip():
        return False
    return bool(unsupported_quantities(done, sources) or unsupported_names(done, sources))

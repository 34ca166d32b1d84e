"""What the decision reads about one candidate answer: pure functions, one number each.

Example::

    >>> from qa.question import parse_question
    >>> q = parse_question("How much did Acme save in 2003?")
    >>> missing_names(q, "In 2004 Acme saved £5m.")
    1
    >>> type_fit(q, "£5m"), type_fit(q, "Acme")
    (1, -1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qa.lang.answer_types import has_type
from qa.lang.text import stem, words
from qa.question import Question

MARGIN_CLIP = 12.0

# The order the decision's weights follow (decision.json names them too).
FEATURES = (
    "verifier",  # the verifier's logit for (question, marked window)
    "margin",  # the reader's span score over its no-answer score, clipped to ±12
    "margin_gap",  # how far this candidate's margin is below the best candidate's (0 for the best)
    "rank",  # retrieval rank of the passage holding the span (1 = first)
    "dense",  # cosine of the question and that passage
    "type_fit",  # +1 the span is of the asked type, -1 it is not, 0 the question asks no type
    "missing_names",  # names and numbers of the question absent from the span's document (capped at 3)
    "missing_window",  # ... absent from the window the verifier read (capped at 3)
    "coverage",  # share of the question's content words (stemmed) in that window
    "agree",  # how many other candidates' spans state the same value (corroboration; capped at 2)
)


@dataclass(frozen=True)
class Candidate:
    """One span the reader found, with what the features need.

    ``window`` is `qa.decide.verifier.verifier_input` of its passage; ``document`` its whole article.
    """

    span: str
    window: str
    document: str
    margin: float
    rank: int
    dense: float


def _word_set(text: str) -> set[str]:
    return set(words(text))


def missing_names(q: Question, text: str) -> int:
    """How many of the question's names and numbers (`Question.names`) ``text`` lacks (capped at 3)."""
    have = _word_set(text)
    missing = 0
    for name in q.names:
        parts = words(name)
        if parts and not all(p in have for p in parts):
            missing += 1
    return min(missing, 3)


def type_fit(q: Question, span: str) -> int:
    """+1 when the span is of the type the question asks for, -1 when not, 0 when it asks no type."""
    if q.expected is None:
        return 0
    return 1 if has_type(span, q.expected) else -1


def coverage(q: Question, text: str) -> float:
    """Share of the question's content terms (stemmed, `Question.terms`) found in ``text``.

    Example: coverage(parse_question("How much did Acme save?"), "Acme's savings") -> 1.0
    """
    if not q.terms:
        return 1.0
    have = {stem(w) for w in words(text)}
    return round(sum(t in have for t in q.terms) / len(q.terms), 4)


def agreement(spans: Sequence[str], n: int) -> int:
    """How many spans other than ``spans[n]`` state the same value (either way round), capped at 2.

    Example: agreement(["£1bn", "£1 billion", "£2bn"], 0) -> 1
    """
    from qa.verify import states_value

    mine = spans[n]
    same = sum(1 for k, s in enumerate(spans) if k != n and (states_value(s, mine) or states_value(mine, s)))
    return min(same, 2)


def candidate_features(
    q: Question, c: Candidate, verifier_logit: float, best_margin: float, agree: int = 0
) -> dict[str, float]:
    """Every feature of `FEATURES` for one candidate."""
    margin = max(-MARGIN_CLIP, min(MARGIN_CLIP, c.margin))
    return {
        "verifier": float(verifier_logit),
        "margin": margin,
        "margin_gap": max(-MARGIN_CLIP, min(MARGIN_CLIP, c.margin)) - max(-MARGIN_CLIP, min(MARGIN_CLIP, best_margin)),
        "rank": float(c.rank),
        "dense": float(c.dense),
        "type_fit": float(type_fit(q, c.span)),
        "missing_names": float(missing_names(q, c.document)),
        "missing_window": float(missing_names(q, c.window)),
        "coverage": coverage(q, c.window),
        "agree": float(agree),
    }


def question_features(
    q: Question, candidates: Sequence[Candidate], verifier_logits: Sequence[float]
) -> list[dict[str, float]]:
    """`candidate_features` of each of a question's candidates, read against the others (margin gap to the
    best, agreement): what the runtime decision and its fitting (`train.decision`) both compute."""
    best = max((c.margin for c in candidates), default=0.0)
    spans = [c.span for c in candidates]
    return [
        candidate_features(q, c, logit, best, agreement(spans, n))
        for n, (c, logit) in enumerate(zip(candidates, verifier_logits, strict=True))
    ]


def vector(features: Mapping[str, float], names: tuple[str, ...] = FEATURES) -> list[float]:
    return [float(features[n]) for n in names]

"""Pure metric functions. Each is defined here once; the report quotes these definitions.

Spans are (doc_id, start, end) character ranges; two spans overlap when they share a document and
at least one character.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qa.lang.numbers import find_quantities, same_quantity
from qa.lang.text import normalize

Span = tuple[str, int, int]


def states(text: str, expected: str) -> bool:
    """True when ``text`` states ``expected``: amounts/numbers by value and currency, else as words.

    Examples: states("£1 billion: ...", "£1bn") -> True; states("171 trusts", "4,400") -> False;
    states("Guy Hains: ...", "guy hains") -> True
    """
    wanted = [q for q in find_quantities(expected)]
    if wanted and normalize(expected).strip(" .") == normalize(" ".join(q.text for q in wanted)):
        got = find_quantities(text)
        return all(any(same_quantity(w, g) for g in got) for w in wanted)
    pattern = r"(?<!\w)" + re.escape(normalize(expected)) + r"(?!\w)"
    return re.search(pattern, normalize(text)) is not None


def claim(text: str) -> str:
    """What an answer asserts: its lead when it leads with one ("£1 billion: “quote” [1]"), else all of it.

    Quotes are evidence, not the answer: an answer whose quoted sentence merely contains the right
    name, behind a wrong lead, is not correct.
    Example: claim("NHS: “... Lorenzo ...” [1]") -> "NHS"
    """
    head, sep, _ = text.partition(": “")
    return head if sep and "“" not in head else text


def answer_correct(
    text: str,
    abstained: bool,
    *,
    answers: Sequence[str],
    all_of: Sequence[str],
    must_abstain: bool,
    forbidden: Sequence[str] = (),
) -> bool:
    """Correct = abstained when it must; else answered, its `claim` stating one alias (or all of
    ``all_of``), and never a forbidden string anywhere.

    Example: answer_correct("£1 billion: ...", False, answers=["£1bn"], all_of=[], must_abstain=False) -> True
    """
    if any(normalize(f) in normalize(text) for f in forbidden):
        return False
    if must_abstain:
        return abstained
    if abstained:
        return False
    said = claim(text)
    ok_any = not answers or any(states(said, a) for a in answers)
    ok_all = all(states(said, a) for a in all_of)
    return ok_any and ok_all


def overlaps(a: Span, b: Span) -> bool:
    """Example: overlaps(("d", 0, 10), ("d", 9, 20)) -> True; overlaps(("d", 0, 10), ("e", 0, 10)) -> False"""
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def citation_supported(cited: Span, quote: str, gold: Sequence[Span], answers: Sequence[str]) -> bool:
    """A citation supports the answer when its span overlaps a gold support span or its quote states
    an acceptable answer."""
    return any(overlaps(cited, g) for g in gold) or any(states(quote, a) for a in answers)


def recall_at_k(retrieved: Sequence[Span], gold: Sequence[Span], k: int) -> float:
    """Share of gold support spans overlapped by one of the first ``k`` retrieved passages (1.0 if no gold).

    Example: recall_at_k([("d", 0, 50)], [("d", 10, 20), ("d", 60, 70)], 5) -> 0.5
    """
    if not gold:
        return 1.0
    top = retrieved[:k]
    return sum(any(overlaps(r, g) for r in top) for g in gold) / len(gold)


def reciprocal_rank(retrieved: Sequence[Span], gold: Sequence[Span]) -> float:
    """1 / rank of the first retrieved passage overlapping any gold span; 0 when none does.

    Example: reciprocal_rank([("d", 0, 5), ("d", 10, 30)], [("d", 12, 14)]) -> 0.5
    """
    for rank, r in enumerate(retrieved, start=1):
        if any(overlaps(r, g) for g in gold):
            return 1.0 / rank
    return 0.0


def abstention_scores(abstained: Sequence[bool], must_abstain: Sequence[bool]) -> dict[str, float | None]:
    """Precision and recall of abstaining, and the false-refusal rate on answerable questions.

    Example: abstention_scores([True, True, False], [True, False, False])
      -> {"precision": 0.5, "recall": 1.0, "false_refusal_rate": 0.5}
    """
    pairs = list(zip(abstained, must_abstain, strict=True))
    tp = sum(a and m for a, m in pairs)
    n_abstained = sum(a for a, _ in pairs)
    n_must = sum(m for _, m in pairs)
    n_answerable = len(pairs) - n_must
    return {
        "precision": tp / n_abstained if n_abstained else None,
        "recall": tp / n_must if n_must else None,
        "false_refusal_rate": sum(a and not m for a, m in pairs) / n_answerable if n_answerable else None,
    }


def separation_auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """The chance that a random positive scores above a random negative (ties count half): 1.0 separates
    perfectly, 0.5 is a coin; None when either side is empty.

    >>> separation_auc([3.0, 2.0], [1.0, 2.0])
    0.875
    """
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values. Example: percentile([1, 2, 3, 4], 0.5) -> 2."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))]

"""Deciding from evidence (never from the generator) whether the articles answer a question."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    """What retrieval found for a question, reduced to the numbers the decision needs."""

    best_score: float
    best_dense: float
    best_coverage: float
    content_terms: int
    missing_terms: tuple[str, ...] = ()
    missing_names: tuple[str, ...] = ()
    expected_type: str | None = None
    type_found: bool = True


@dataclass(frozen=True)
class AbstainPolicy:
    """Thresholds, set on the hand-written eval set; see eval/ for how they were measured."""

    min_score: float = 0.5
    min_dense_when_terms_missing: float = 0.55
    override_dense: float = 0.72
    max_missing_share: float = 0.5


@dataclass(frozen=True)
class Decision:
    abstain: bool
    reason: str


def decide(e: Evidence, policy: AbstainPolicy = AbstainPolicy()) -> Decision:
    """Abstain unless the best evidence plausibly answers the question.

    Examples:
      "What is the capital of Australia?" -> missing name "australia" -> abstain
      "How much is CSC saving?" with a £1bn sentence scoring 0.7 -> answer
    """
    if e.content_terms == 0:
        return Decision(True, "the question has no content words to look up")
    if e.missing_names and e.best_dense < policy.override_dense:
        return Decision(True, f"the articles never mention {_list(e.missing_names)}")
    if (
        e.missing_terms
        and len(e.missing_terms) / e.content_terms >= policy.max_missing_share
        and e.best_dense < policy.override_dense
    ):
        return Decision(True, f"the articles never mention {_list(e.missing_terms)}")
    if e.missing_terms and e.best_dense < policy.min_dense_when_terms_missing:
        return Decision(True, f"the articles never mention {_list(e.missing_terms)}")
    if e.expected_type and not e.type_found:
        return Decision(True, f"no {e.expected_type} in the relevant passages answers it")
    if e.best_score < policy.min_score:
        return Decision(True, "no passage is close enough to the question")
    return Decision(False, "")


def _list(items: tuple[str, ...]) -> str:
    quoted = [f"“{i}”" for i in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]

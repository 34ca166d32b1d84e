"""Extractive answers: the best supporting sentence(s), quoted verbatim and cited.

Used when there is no generator or its answer fails verification. When the question asks for a
typed span (an amount, a number, a date, a name), the answer leads with that span, copied from the
first quote, so the direct answer is as verifiable as the quotes.
"""

from __future__ import annotations

from collections.abc import Sequence

from qa.answer_types import AnswerType, find_spans
from qa.numbers import find_quantities, same_quantity
from qa.text import QUESTION_WORDS, STOPWORDS, normalize, stem, words
from qa.types import ScoredSentence

CORROBORATION_RATIO = 0.8


def choose_support(
    ranked: Sequence[ScoredSentence], atype: AnswerType | None, lead: str | None, *, max_sentences: int = 2
) -> list[ScoredSentence]:
    """The top sentence, plus corroborating sentences from *other* documents.

    With a lead span (the short answer), a sentence corroborates when it states the same quantity
    (amounts compare by value: "£1bn" = "£1 billion") or contains the same words, and scores at least
    ``CORROBORATION_RATIO`` x 0.75 of the top one. Without a lead, it must score within
    ``CORROBORATION_RATIO`` of the top one and hold a span of the expected type.
    """
    if not ranked:
        return []
    top = ranked[0]
    chosen = [top]
    lead_quantities = find_quantities(lead) if lead else []
    lead_key = normalize(lead) if lead else ""
    for cand in ranked[1:]:
        if len(chosen) >= max_sentences:
            break
        if cand.sentence.doc_id in {c.sentence.doc_id for c in chosen}:
            continue
        if lead:
            if cand.score < 0.75 * CORROBORATION_RATIO * top.score:
                continue
            agrees = (
                any(
                    same_quantity(q, e) or same_quantity(e, q)
                    for q in lead_quantities
                    for e in find_quantities(cand.sentence.text)
                )
                if lead_quantities
                else lead_key in normalize(cand.sentence.text)
            )
            if agrees:
                chosen.append(cand)
        elif cand.score >= CORROBORATION_RATIO * top.score and (atype is None or cand.type_match):
            chosen.append(cand)
    return chosen


def short_answer_span(text: str, atype: AnswerType | None, question: str) -> tuple[int, int] | None:
    """The span of the expected type in ``text`` nearest the question's words, skipping spans the
    question itself already states ("Who announced the £600m cut?" is not answered by "£600m").

    Example: short_answer_span("CSC’s president Guy Hains said", ENTITY, "Who is CSC's president?") -> (16, 25)
    """
    if atype is None:
        return None
    q_norm = normalize(question)
    q_stems = {stem(w) for w in words(question)}
    spans = [(s, e) for s, e in find_spans(text, atype) if normalize(text[s:e]) not in q_norm]
    if atype is AnswerType.ENTITY:
        spans = [(s, e) for s, e in spans if not {stem(w) for w in words(text[s:e])} <= q_stems]
    if not spans:
        return None
    lowered = normalize(text)
    content = [w for w in words(question) if w not in STOPWORDS and w not in QUESTION_WORDS]
    anchors = [lowered.find(w) for w in content if lowered.find(w) >= 0]
    if not anchors:
        return spans[0]
    return min(spans, key=lambda sp: (min(abs(sp[0] - a) for a in anchors), sp[0]))


def compose(quotes: Sequence[str], lead: str | None) -> str:
    """The answer text: an optional lead span, then each quote in typographic quotes with its marker.

    Example: compose(["It saves £1bn."], "£1bn") -> "£1bn: “It saves £1bn.” [1]"
    """
    body = " ".join(f"“{q}” [{i}]" for i, q in enumerate(quotes, start=1))
    return f"{lead}: {body}" if lead else body

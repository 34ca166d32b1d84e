"""Second stage: score individual sentences of the retrieved passages against the question.

score = 0.50 * cosine(question, sentence)
      + 0.35 * IDF-weighted coverage of the question's content terms
      + 0.10 * answer-type cue (the sentence holds a span of the expected type)
      + 0.05 * fused rank of the best passage holding the sentence
The weights were set on the hand-written seed questions (see eval/); dense-only ranking put the
£1bn sentence third for "How much is CSC saving?", lexical coverage and the money cue lift it first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from qa.answer_types import AnswerType, has_type
from qa.injection import INSTRUCTION_PENALTY, looks_like_instruction
from qa.retrieve import Retriever
from qa.text import content_terms
from qa.types import Hit, ScoredSentence

W_DENSE, W_COVERAGE, W_TYPE, W_PRIOR = 0.50, 0.35, 0.10, 0.05


def coverage(terms: Sequence[str], sentence_terms: Iterable[str], idf: dict[str, float], default_idf: float) -> float:
    """IDF-weighted share of ``terms`` present in ``sentence_terms`` (0 when there are no terms).

    Example: coverage(["csc", "save"], {"save", "nhs"}, {"csc": 1.0, "save": 3.0}, 1.0) -> 0.75
    """
    if not terms:
        return 0.0
    present = set(sentence_terms)
    total = sum(idf.get(t, default_idf) for t in terms)
    hit = sum(idf.get(t, default_idf) for t in terms if t in present)
    return hit / total if total else 0.0


def score_sentences(
    retriever: Retriever,
    question_terms: Sequence[str],
    query_vector: np.ndarray,
    hits: Sequence[Hit],
    atype: AnswerType | None,
    *,
    extra_dense: int = 10,
) -> list[ScoredSentence]:
    """Score the sentences of ``hits`` plus the ``extra_dense`` nearest sentences, best first."""
    data = retriever.data
    best_fused = hits[0].score if hits else 1.0
    prior: dict[int, float] = {}
    for hit in hits:
        for sid in hit.passage.sentence_ids:
            prior[sid] = max(prior.get(sid, 0.0), hit.score / best_fused)
    for sid in retriever.nearest_sentences(query_vector, extra_dense):
        prior.setdefault(sid, 0.0)
    if not prior:
        return []
    ids = sorted(prior)
    dense = data.sentence_vectors[ids] @ query_vector
    scored = []
    for sid, cos in zip(ids, dense, strict=True):
        sentence = data.sentences[sid]
        cov = coverage(question_terms, content_terms(sentence.text), retriever.idf, retriever.default_idf)
        typed = atype is not None and has_type(sentence.text, atype)
        score = W_DENSE * float(cos) + W_COVERAGE * cov + W_TYPE * typed + W_PRIOR * prior[sid]
        if looks_like_instruction(sentence.text):  # prompt injection is never evidence for other questions
            score *= INSTRUCTION_PENALTY
        scored.append(ScoredSentence(sentence, score, float(cos), cov, typed))
    scored.sort(key=lambda s: (-s.score, s.sentence.sentence_id))
    return scored

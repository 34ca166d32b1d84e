"""Extractive answers: the best supporting sentence(s), quoted verbatim and cited.

Used when there is no generator or its answer fails verification. When the question asks for a
typed span (an amount, a number, a date, a name), the answer leads with that span, copied from the
first quote, so the direct answer is as verifiable as the quotes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qa.answer_types import AnswerType, find_spans, head_noun
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


_COUNTED_RE = re.compile(r"\bhow many\s+(?:[a-z]+\s+)?([a-z]{3,})")


def short_answer_span(text: str, atype: AnswerType | None, question: str) -> tuple[int, int] | None:
    """The span of the expected type in ``text`` that best answers ``question``, or None.

    Skips spans the question already states ("Who announced the £600m cut?" is not answered by
    "£600m") and fragments of longer spans ("NHS" inside "NHS Shared Business Services"). For "which
    trust" questions a span containing the noun wins; "who" prefers people; otherwise the span closest,
    on average, to the question's words in the sentence.

    Example: short_answer_span("CSC’s president Guy Hains said", ENTITY, "Who is CSC's president?") -> (16, 25)
    """
    if atype is None:
        return None
    q_norm = normalize(question)
    q_stems = {stem(w) for w in words(question)}
    spans = [(s, e) for s, e in find_spans(text, atype) if normalize(text[s:e]) not in q_norm]
    if atype is AnswerType.ENTITY:
        spans = [(s, e) for s, e in spans if not {stem(w) for w in words(text[s:e])} <= q_stems]
        spans = [(s, e) for s, e in spans if not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2 in spans)]
    if not spans:
        return None
    if atype is AnswerType.ENTITY:
        noun = head_noun(question)
        named = [(s, e) for s, e in spans if noun and stem(noun) in {stem(w) for w in words(text[s:e])}]
        if named:  # "Which trust ...?" -> the span that is a trust
            return named[0]
        if re.search(r"\bwho(?:m|se)?\b", q_norm):
            people = [sp for sp in spans if sp in set(find_spans(text, AnswerType.PERSON))]
            spans = people or spans
    lowered = normalize(text)
    counted = _COUNTED_RE.search(q_norm)
    if counted and atype is AnswerType.NUMBER:
        # "How many GP practices ...?": the number that the counted noun follows ("4,400 GP practices").
        noun = stem(counted.group(1))
        after = [sp for sp in spans if noun in {stem(w) for w in words(text[sp[1] : sp[1] + 40])[:3]}]
        if after:
            return after[0]
    content = [w for w in words(question) if w not in STOPWORDS and w not in QUESTION_WORDS]
    anchors = [m.start() for w in content for m in re.finditer(r"(?<!\w)" + re.escape(w), lowered)]
    if not anchors:
        return spans[0]

    def mean_gap(sp: tuple[int, int]) -> float:
        gaps = [sp[0] - a if a < sp[0] else max(0, a - sp[1]) for a in anchors]
        return sum(gaps) / len(gaps)

    return min(spans, key=lambda sp: (mean_gap(sp), sp[0]))


def compose(quotes: Sequence[str], lead: str | None) -> str:
    """The answer text: an optional lead span, then each quote in typographic quotes with its marker.

    Example: compose(["It saves £1bn."], "£1bn") -> "£1bn: “It saves £1bn.” [1]"
    """
    body = " ".join(f"“{q}” [{i}]" for i, q in enumerate(quotes, start=1))
    return f"{lead}: {body}" if lead else body


# "... and how many ...?" asks for two things; a leading "And how much ...?" is a follow-up, not a pair.
_MULTI_RE = re.compile(r"\b(?:two|three|both|each)\b|\S\s+and (?:how|what|who|when|which)\b")


def asks_for_several(question: str) -> bool:
    """True for questions that want more than one value ("What two figures ...", "... and how many ...").

    Example: asks_for_several("How many trusts and how many GP practices?") -> True
    """
    return bool(_MULTI_RE.search(normalize(question)))


def choose_several(
    ranked: Sequence[ScoredSentence], atype: AnswerType, question: str, *, max_sentences: int = 3, ratio: float = 0.7
) -> tuple[list[ScoredSentence], list[str]]:
    """Sentences holding *different* values of the asked type, with those values, best first.

    A sentence joins when it scores within ``ratio`` of the best typed sentence and adds a value not
    already chosen; several values may come from one sentence ("171 trusts and 4,400 GP practices").
    """
    typed = [s for s in ranked[:8] if s.type_match]
    if not typed:
        return [], []
    q_norm = normalize(question)
    chosen: list[ScoredSentence] = []
    values: list[str] = []
    for cand in typed:
        if len(chosen) >= max_sentences or cand.score < ratio * typed[0].score:
            break
        text = cand.sentence.text
        new = [text[s:e] for s, e in find_spans(text, atype) if normalize(text[s:e]) not in q_norm]
        new = [v for v in new if all(normalize(v) != normalize(old) for old in values)]
        if new:
            chosen.append(cand)
            values.extend(new if cand is typed[0] else new[:1])
    return chosen, values


_TOKEN_RE = re.compile(r"\S+")


def untyped_span(sentence: str, question: str, max_words: int = 6) -> str:
    """A phrase answer for questions with no answer type: the run of the sentence's words that the
    question does not already contain, nearest the question's words (at most ``max_words``).

    Only the ``short_answer`` field uses it (span-level metrics such as SQuAD exact match); the
    displayed answer of an untyped question stays the quoted sentence.
    A crude baseline (no extractive-QA model is available here): +9.7 exact match on answered untyped
    SQuAD dev questions, F1 unchanged. Example:
    untyped_span("The terms were set out in a non-binding letter of intent.", "What set out the terms?")
      -> "non-binding letter"
    """
    q_stems = {stem(w) for w in words(question) if w not in STOPWORDS}
    toks = [(m.start(), m.end(), m.group()) for m in _TOKEN_RE.finditer(sentence)]

    def asked(tok: str) -> bool:
        ws = words(tok)
        return bool(ws) and all(stem(w) in q_stems or w in STOPWORDS for w in ws)

    runs: list[list[int]] = []
    current: list[int] = []
    for i, (_, _, tok) in enumerate(toks):
        if asked(tok):
            if current:
                runs.append(current)
            current = []
            continue
        current.append(i)
        if tok[-1] in ",;:.":
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    anchors = [i for i, (_, _, tok) in enumerate(toks) if asked(tok) and any(w not in STOPWORDS for w in words(tok))]
    best: tuple[tuple[int, int], list[int]] | None = None
    for run in runs:
        run = run[:max_words]
        content = [i for i in run if any(w not in STOPWORDS for w in words(toks[i][2]))]
        if not content:
            continue
        gap = min(min(abs(i - a) for a in anchors) for i in run) if anchors else 0
        key = (gap, -len(content))
        if best is None or key < best[0]:
            best = (key, run)
    if best is None:
        return sentence
    run = best[1]
    return sentence[toks[run[0]][0] : toks[run[-1]][1]].strip(" ,;:.")

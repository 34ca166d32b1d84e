"""Sentence splitting and passage windows, all as character offsets into the original text.

Nothing here rewrites text: typographic quotes, £ signs and non-breaking spaces stay where they are,
and every span satisfies ``text[start:end] == the sentence``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from index.documents import Document

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace and
# something that can start a sentence. \s also matches the non-breaking space (U+00A0).
_BOUNDARY_RE = re.compile(r"[.!?…][\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9£$€])")
_PARAGRAPH_RE = re.compile(r"\n[ \t\u00a0]*\n|\r\n[ \t\u00a0]*\r\n")
# subtle: "Mr. Smith" and "U.S. officials" must not end a sentence; British "Mr Smith" has no dot.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc inc ltd co corp no nos fig gen gov sen rep rev col lt capt "
    "jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e u.s u.k a.m p.m approx dept est".split()
)


@dataclass(frozen=True, slots=True)  # slots: ~150 bytes less each (eval/README.md, archive scale)
class Passage:
    """A window of consecutive sentences of one document: ``doc.text[start:end] == text``."""

    passage_id: int
    doc_id: str
    start: int
    end: int
    text: str
    sentence_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of one document: ``doc.text[start:end] == text``."""

    sentence_id: int
    doc_id: str
    start: int
    end: int
    text: str


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the '.' at ``dot`` closes an abbreviation or an initial rather than a sentence."""
    if text[dot] != ".":
        return False
    word_start = dot
    while word_start > 0 and not text[word_start - 1].isspace() and text[word_start - 1] not in "(\"“‘'":
        word_start -= 1
    word = text[word_start:dot].lower()
    if word in _ABBREVIATIONS:
        return True
    # Single-letter initials ("J. Smith") are not sentence ends.
    return len(word) == 1 and word.isalpha()


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Split ``text`` into sentence spans (start, end), shifted by ``offset``, whitespace trimmed.

    Paragraph breaks (blank lines) always end a sentence.
    Example: split_sentences("Mr. A went. B “came.” C") -> [(0, 11), (12, 21), (22, 23)]
    """
    spans: list[tuple[int, int]] = []
    para_start = 0
    paragraphs = []
    for match in _PARAGRAPH_RE.finditer(text):
        paragraphs.append((para_start, match.start()))
        para_start = match.end()
    paragraphs.append((para_start, len(text)))
    for p_start, p_end in paragraphs:
        chunk = text[p_start:p_end]
        sent_start = 0
        for match in _BOUNDARY_RE.finditer(chunk):
            if _is_abbreviation(chunk, match.start()):
                continue
            start, end = _trim(chunk, sent_start, match.end())
            if end > start:
                spans.append((p_start + start + offset, p_start + end + offset))
            sent_start = match.end()
        start, end = _trim(chunk, sent_start, len(chunk))
        if end > start:
            spans.append((p_start + start + offset, p_start + end + offset))
    return spans


def chunk_document(
    doc: Document,
    *,
    first_sentence_id: int,
    first_passage_id: int,
    sentences_per_passage: int = 3,
    overlap: int = 1,
    max_chars: int = 800,
) -> tuple[list[Sentence], list[Passage]]:
    """Split a document into sentences and overlapping passages of a few sentences each.

    A passage holds up to ``sentences_per_passage`` sentences (fewer when ``max_chars`` would be
    exceeded, but always at least one) and shares ``overlap`` sentences with the previous one.
    """
    if sentences_per_passage < 1 or not 0 <= overlap < sentences_per_passage:
        raise ValueError(
            f"need sentences_per_passage >= 1 and 0 <= overlap < sentences_per_passage; "
            f"got {sentences_per_passage} and {overlap}"
        )
    spans = split_sentences(doc.text[doc.body_start :], offset=doc.body_start)
    sentences = [Sentence(first_sentence_id + i, doc.doc_id, s, e, doc.text[s:e]) for i, (s, e) in enumerate(spans)]
    passages: list[Passage] = []
    i = 0
    while i < len(sentences):
        j = i + 1
        while (
            j < len(sentences) and j - i < sentences_per_passage and sentences[j].end - sentences[i].start <= max_chars
        ):
            j += 1
        window = sentences[i:j]
        start, end = window[0].start, window[-1].end
        passages.append(
            Passage(
                passage_id=first_passage_id + len(passages),
                doc_id=doc.doc_id,
                start=start,
                end=end,
                text=doc.text[start:end],
                sentence_ids=tuple(s.sentence_id for s in window),
            )
        )
        if j >= len(sentences):
            break
        i = max(i + 1, j - overlap)
    return sentences, passages

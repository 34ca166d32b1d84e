"""Small frozen domain objects that travel through the online pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from index.chunking import Passage


class AnswerMode(StrEnum):
    GENERATED = "generated"  # the generator's text passed verification
    EXTRACTIVE = "extractive"  # the reader's span and its verified quote (generator absent or failed)
    ABSTAINED = "abstained"  # the evidence does not answer the question


@dataclass(frozen=True)
class Hit:
    """A passage retrieved for a question. ``score`` is the fused (RRF) score; ranks are 1-based, 0 = absent."""

    passage: Passage
    score: float
    dense: float
    dense_rank: int
    lexical_rank: int


@dataclass(frozen=True)
class Citation:
    """A verified quote: ``document.text[start:end] == quote`` holds for the cited document."""

    id: int
    doc_id: str
    title: str
    quote: str
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    mode: AnswerMode
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    generator_text: str | None = None
    short_answer: str = ""  # the reader's answer span ("" when abstaining)
    evidence: dict = field(default_factory=dict)  # what the reader decided from: span, margin, threshold
    index_version: str = ""  # the index version it was answered from (`IndexData.version`)

    @property
    def abstained(self) -> bool:
        return self.mode is AnswerMode.ABSTAINED

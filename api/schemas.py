"""HTTP request and response models (pydantic lives only at this edge)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from index.documents import Document
from qa.types import Answer

MAX_TOP_K = 20


def no_str_or_bool(value: object) -> object:
    """For integer fields: JSON Schema counts 9.0 as an integer (lax ints accept it), but "3" and true
    are refused rather than coerced."""
    if isinstance(value, bool | str):
        raise ValueError("must be an integer, not a string or boolean")
    return value


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"question": "How much is CSC saving?"}]})

    question: StrictStr = Field(
        ...,
        min_length=1,
        max_length=1000,
        pattern=r"\S",
        description="The question; must not be blank. At most 1000 characters (QA_MAX_QUESTION_CHARS may lower it).",
    )
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, description="How many passages to return (default 5).")
    history: list[Annotated[StrictStr, Field(max_length=1000)]] = Field(
        default_factory=list,
        max_length=20,
        description="Earlier user questions, oldest first, so follow-ups like 'And how many trusts?' keep their context.",
    )

    _top_k_type = field_validator("top_k", mode="before")(no_str_or_bool)


class CitationOut(BaseModel):
    id: int = Field(..., description="The n of the [n] marker in the answer.")
    doc_id: str
    title: str
    quote: str = Field(..., description="Exactly documents[doc_id].text[start:end].")
    start: int
    end: int


class PassageOut(BaseModel):
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    score: float = Field(..., description="Reciprocal-rank-fusion score of dense and BM25 ranks.")


class TimingsOut(BaseModel):
    retrieve: float
    read: float
    decide: float = Field(0.0, description="the verifier and the decision: whether the passages answer")
    generate: float
    verify: float
    total: float


def citations_out(answer: Answer) -> list[CitationOut]:
    return [
        CitationOut(id=c.id, doc_id=c.doc_id, title=c.title, quote=c.quote, start=c.start, end=c.end)
        for c in answer.citations
    ]


def passages_out(answer: Answer, documents: Mapping[str, Document]) -> list[PassageOut]:
    """The retrieved passages, closest first (shown with every answer, and instead of one on abstention)."""
    return [
        PassageOut(
            doc_id=h.passage.doc_id,
            title=documents[h.passage.doc_id].title if h.passage.doc_id in documents else h.passage.doc_id,
            start=h.passage.start,
            end=h.passage.end,
            text=h.passage.text,
            score=round(h.score, 6),
        )
        for h in answer.hits
    ]


class AskResponse(BaseModel):
    answer: str
    abstained: bool
    citations: list[CitationOut]
    passages: list[PassageOut]
    answer_mode: Literal["generated", "extractive", "abstained"]
    timings_ms: TimingsOut
    index_version: str = Field(
        "",
        description="The index version that answered (versions sort by time; `POST /v1/documents` returns the one it made).",
    )

    @classmethod
    def from_answer(cls, answer: Answer, documents: Mapping[str, Document]) -> AskResponse:
        return cls(
            answer=answer.text,
            abstained=answer.abstained,
            citations=citations_out(answer),
            passages=passages_out(answer, documents),
            answer_mode=answer.mode.value,
            timings_ms=TimingsOut(**answer.timings_ms),
            index_version=answer.index_version,
        )


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    length: int = Field(..., description="Length of the text in characters (Python str length).")


class DocumentList(BaseModel):
    documents: list[DocumentSummary]


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    text: str


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc_id: StrictStr = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Letters, digits, . _ -")
    title: StrictStr | None = Field(None, max_length=300, description="Default: the first sentence.")
    text: StrictStr = Field(
        ...,
        min_length=1,
        pattern=r"^[^\u0000]*[^\s\u0000][^\u0000]*$",
        description="UTF-8 text, not blank, no NUL bytes; paragraphs separated by blank lines.",
    )


class DocumentChange(BaseModel):
    doc_id: str
    title: str
    length: int
    passages: int = Field(..., description="Passages this document contributes to the index (0 after a delete).")
    documents: int = Field(..., description="Documents in the index after the change.")
    index_version: str = Field(
        "", description="The version written: an answer whose index_version sorts at or after it includes the change."
    )


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    documents: int
    passages: int
    embedding_model: str
    generator: str
    index_version: str = Field("", description="The live index version.")


class ErrorBody(BaseModel):
    message: str
    type: str = Field(
        ..., description="Machine-readable error kind, e.g. bad_question, not_ready, invalid_request_error."
    )
    param: str | None = None
    code: str | None = None
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody

"""The eval-set schema, validated on load (YAML or JSONL)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from index.documents import Document

Category = Literal[
    "factual",
    "numeric",
    "date",
    "entity",
    "multi-passage",
    "conflicting-sources",
    "paraphrase-typo",
    "paraphrase",
    "near-miss",
    "loosely-worded",
    "definition",
    "follow-up",
    "unanswerable",
    "prompt-injection",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]
DEFAULT_DATASET = Path(__file__).parent / "datasets" / "seed.yaml"


class Support(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc: str
    quote: str = Field(..., min_length=1)


class Numeric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float
    unit: str | None = None


class EvalItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1)
    question: str = Field(..., min_length=1)
    category: Category
    answers: list[str] = Field(default_factory=list, description="aliases; any one matching is correct")
    all_of: list[str] = Field(default_factory=list, description="every item must appear")
    numeric: Numeric | None = None
    support: list[Support] = Field(default_factory=list)
    must_abstain: bool = False
    forbidden: list[str] = Field(default_factory=list)
    history: list[str] = Field(default_factory=list)
    article: str = Field("", description="the document the question is about (near misses too), for splits by article")
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> EvalItem:
        if self.must_abstain and (self.answers or self.all_of or self.support):
            raise ValueError(f"{self.id}: a must_abstain item has no answers or support")
        if not self.must_abstain and not (self.answers or self.all_of):
            raise ValueError(f"{self.id}: an answerable item needs answers or all_of")
        if not self.must_abstain and not self.support:
            raise ValueError(f"{self.id}: an answerable item needs at least one support quote")
        if self.category == "follow-up" and not self.history:
            raise ValueError(f"{self.id}: a follow-up item needs history")
        return self


class DatasetError(ValueError):
    """Raised when an eval file does not match the schema or its quotes are not in the documents."""


def load_dataset(path: Path = DEFAULT_DATASET) -> list[EvalItem]:
    """Load and validate an eval file (``.yaml``/``.yml`` list or ``.jsonl`` one item per line)."""
    text = path.read_text(encoding="utf-8")
    try:
        raw = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else yaml.safe_load(text)
        )
    except (ValueError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: not valid {'JSONL' if path.suffix == '.jsonl' else 'YAML'}: {exc}") from exc
    if not isinstance(raw, list):
        raise DatasetError(f"{path}: expected a list of items")
    items = []
    for n, entry in enumerate(raw):
        try:
            items.append(EvalItem.model_validate(entry))
        except ValidationError as exc:
            raise DatasetError(
                f"{path}: item {n} ({entry.get('id', '?') if isinstance(entry, dict) else '?'}): {exc}"
            ) from exc
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return items


def support_spans(item: EvalItem, documents: Mapping[str, Document]) -> list[tuple[str, int, int]]:
    """(doc_id, start, end) of each support quote; raises `DatasetError` if a quote is not in its document."""
    spans = []
    for s in item.support:
        doc = documents.get(s.doc)
        start = doc.text.find(s.quote) if doc else -1
        if start < 0:
            raise DatasetError(f"{item.id}: support quote not found verbatim in {s.doc!r}: {s.quote[:60]!r}")
        spans.append((s.doc, start, start + len(s.quote)))
    return spans

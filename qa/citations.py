"""Citation markers: parsing ``[n]`` markers, renumbering them in order of first use, building quotes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from index.documents import Document
from qa.types import Citation

MARKER_RE = re.compile(r"\[(\s*\d{1,3}(?:\s*[,;]\s*\d{1,3})*\s*)\]")


def parse_markers(text: str) -> list[int]:
    """Source numbers cited in ``text``, in order of first use, duplicates dropped.

    Example: parse_markers("A [2]. B [1, 2]. C [3][2]") -> [2, 1, 3]
    """
    seen: list[int] = []
    for match in MARKER_RE.finditer(text):
        for part in re.split(r"[,;]", match.group(1)):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


def renumber(text: str, mapping: Mapping[int, int]) -> str:
    """Rewrite every marker through ``mapping``; numbers not in it are dropped, empty markers removed.

    Example: renumber("A [3]. B [1, 3]", {3: 1, 1: 2}) -> "A [1]. B [2][1]"
    """

    def sub(match: re.Match[str]) -> str:
        numbers = [int(p) for p in re.split(r"[,;]", match.group(1))]
        return "".join(f"[{mapping[n]}]" for n in numbers if n in mapping)

    out = MARKER_RE.sub(sub, text)
    return re.sub(r"[ \t]+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", out)).strip()


def strip_markers(text: str) -> str:
    """``text`` without citation markers. Example: strip_markers("£1bn [1].") -> "£1bn."."""
    return renumber(text, {})


def make_citation(cid: int, doc: Document, start: int, end: int) -> Citation:
    """A citation quoting ``doc.text[start:end]``; raises ValueError on an empty or out-of-range span."""
    if not 0 <= start < end <= len(doc.text):
        raise ValueError(f"span {start}:{end} is outside document {doc.doc_id!r} of length {len(doc.text)}")
    return Citation(id=cid, doc_id=doc.doc_id, title=doc.title, quote=doc.text[start:end], start=start, end=end)


def citation_is_valid(citation: Citation, documents: Mapping[str, Document]) -> bool:
    """True when the quote is exactly the cited slice of the cited document."""
    doc = documents.get(citation.doc_id)
    return doc is not None and doc.text[citation.start : citation.end] == citation.quote and citation.quote != ""


def cite_in_order(
    sources: Sequence[tuple[str, int, int]], used: Sequence[int], documents: Mapping[str, Document]
) -> tuple[dict[int, int], list[Citation]]:
    """Map source numbers (1-based into ``sources``) used in order to citation ids 1..k and build them.

    ``sources`` are (doc_id, start, end) of the numbered evidence shown to the generator.
    """
    mapping: dict[int, int] = {}
    citations: list[Citation] = []
    for n in used:
        if 1 <= n <= len(sources) and n not in mapping:
            doc_id, start, end = sources[n - 1]
            mapping[n] = len(citations) + 1
            citations.append(make_citation(mapping[n], documents[doc_id], start, end))
    return mapping, citations


def compose(quotes: Sequence[str], lead: str | None) -> str:
    """The answer text: an optional lead span, then each quote in typographic quotes with its marker.

    Example: compose(["It saves £1bn."], "£1bn") -> "£1bn: “It saves £1bn.” [1]"
    """
    body = " ".join(f"“{q}” [{i}]" for i, q in enumerate(quotes, start=1))
    return f"{lead}: {body}" if lead else body

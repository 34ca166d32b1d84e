"""Running an eval set through the real pipeline, in process or against a running server."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from eval import metrics
from eval.dataset import EvalItem, support_spans
from index.documents import Document

K = 5  # retrieval depth for recall@k and the passages each answer returns


@dataclass(frozen=True)
class Reply:
    """What one answer looks like to the eval, whichever backend produced it."""

    answer: str
    abstained: bool
    mode: str
    citations: list[dict]
    passages: list[dict]
    timings_ms: dict[str, float]
    # The reader's best span and its margin over no-answer, whether or not it cleared the threshold
    # (in-process only; the HTTP API does not expose them).
    reading: dict | None = None


class Backend(Protocol):
    def ask(self, question: str, history: Sequence[str]) -> Reply: ...

    def ask_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[Reply]:
        """Several (question, history) at once: one pipeline batch, or concurrent requests."""
        ...

    def documents(self) -> Mapping[str, Document]: ...

    def describe(self) -> dict: ...


def _reply(a) -> Reply:  # noqa: ANN001 - a qa.types.Answer
    return Reply(
        answer=a.text,
        abstained=a.abstained,
        mode=a.mode.value,
        citations=[
            {"id": c.id, "doc_id": c.doc_id, "quote": c.quote, "start": c.start, "end": c.end} for c in a.citations
        ],
        passages=[{"doc_id": h.passage.doc_id, "start": h.passage.start, "end": h.passage.end} for h in a.hits],
        timings_ms=dict(a.timings_ms),
        reading={k: a.evidence.get(k) for k in ("span", "margin", "p_answer")} if a.evidence else None,
    )


class InProcess:
    """The pipeline in this process."""

    def __init__(self, pipeline) -> None:  # noqa: ANN001
        self.pipeline = pipeline

    def ask(self, question: str, history: Sequence[str]) -> Reply:
        return _reply(self.pipeline.ask(question, K, history))

    def ask_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[Reply]:
        from qa.pipeline import Job

        out = []
        for result in self.pipeline.ask_batch([Job(q, K, tuple(h)) for q, h in items]):
            if isinstance(result, BaseException):
                raise result
            out.append(_reply(result))
        return out

    def documents(self) -> Mapping[str, Document]:
        return self.pipeline.documents

    def describe(self) -> dict:
        m = self.pipeline.data.manifest
        return {
            "backend": "in-process",
            "embedding_model": m.embedding_model,
            "generator": self.pipeline.generator.model_id if self.pipeline.generator else "none",
            "reader": self.pipeline.reader.model_id,
            "decider": self.pipeline.decider.model_id,
            "answer_threshold": self.pipeline.decider.threshold,
            "index": {
                "corpus_checksum": m.corpus_checksum,
                "documents": m.documents,
                "passages": m.passages,
                "sentences": m.sentences,
                "format_version": m.format_version,
                "chunking": m.chunking,
            },
        }


class OverHttp:
    """A running server (``qa eval --url``): POST /v1/ask, documents from /v1/documents."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        import httpx

        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)
        self._docs: dict[str, Document] | None = None

    def ask(self, question: str, history: Sequence[str]) -> Reply:
        r = self.client.post("/v1/ask", json={"question": question, "top_k": K, "history": list(history)})
        r.raise_for_status()
        b = r.json()
        return Reply(b["answer"], b["abstained"], b["answer_mode"], b["citations"], b["passages"], b["timings_ms"])

    def ask_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[Reply]:
        """Concurrent requests, so the server batches them."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, len(items))) as pool:
            return list(pool.map(lambda item: self.ask(*item), items))

    def documents(self) -> Mapping[str, Document]:
        if self._docs is None:
            listing = self.client.get("/v1/documents").json()["documents"]
            self._docs = {}
            for d in listing:
                full = self.client.get(f"/v1/documents/{d['doc_id']}").json()
                self._docs[d["doc_id"]] = Document(full["doc_id"], full["title"], full["text"])
        return self._docs

    def describe(self) -> dict:
        ready = self.client.get("/readyz").json()
        return {"backend": f"http {self.client.base_url}", **{k: v for k, v in ready.items() if k != "status"}}


def score_item(item: EvalItem, reply: Reply, documents: Mapping[str, Document]) -> dict:
    """One report row: the answer and every per-question metric (see eval/metrics.py)."""
    gold = support_spans(item, documents)
    cited = [(c["doc_id"], c["start"], c["end"]) for c in reply.citations]
    valid = [
        documents.get(c["doc_id"]) is not None and documents[c["doc_id"]].text[c["start"] : c["end"]] == c["quote"]
        for c in reply.citations
    ]
    expected = item.answers + item.all_of
    supported = [
        metrics.citation_supported(s, c["quote"], gold, expected) for s, c in zip(cited, reply.citations, strict=True)
    ]
    retrieved = [(p["doc_id"], p["start"], p["end"]) for p in reply.passages]
    answerable = not item.must_abstain
    reading = reply.reading or {}
    span = reading.get("span")
    return {
        "id": item.id,
        "category": item.category,
        "question": item.question,
        "must_abstain": item.must_abstain,
        "answer": reply.answer,
        "abstained": reply.abstained,
        "mode": reply.mode,
        "correct": metrics.answer_correct(
            reply.answer,
            reply.abstained,
            answers=item.answers,
            all_of=item.all_of,
            must_abstain=item.must_abstain,
            forbidden=item.forbidden,
        ),
        "citations": len(cited),
        "citations_valid": sum(valid),
        "citations_supported": sum(supported),
        "citation_support": (any(supported) if cited else False) if answerable and not reply.abstained else None,
        "recall_at_k": metrics.recall_at_k(retrieved, gold, K) if answerable else None,
        "reciprocal_rank": metrics.reciprocal_rank(retrieved, gold) if answerable else None,
        "timings_ms": reply.timings_ms,
        "margin": reading.get("margin"),
        "p_answer": reading.get("p_answer"),
        # would the reader's best span, stated alone, be a correct answer (whatever the threshold did)?
        "span_correct": None
        if item.must_abstain or span is None
        else metrics.answer_correct(
            span, False, answers=item.answers, all_of=item.all_of, must_abstain=False, forbidden=item.forbidden
        ),
    }


def run(
    items: Sequence[EvalItem],
    backend: Backend,
    progress: Callable[[int, int], None] | None = None,
    *,
    batch_size: int = 1,
) -> list[dict]:
    """Score every item; ``batch_size`` questions are asked together (batching changes no answer)."""
    documents = backend.documents()
    for item in items:  # fail fast on a dataset that does not match the corpus
        support_spans(item, documents)
    rows: list[dict] = []
    for at in range(0, len(items), batch_size):
        chunk = items[at : at + batch_size]
        replies = (
            [backend.ask(chunk[0].question, chunk[0].history)]
            if len(chunk) == 1
            else backend.ask_many([(item.question, item.history) for item in chunk])
        )
        rows.extend(score_item(item, reply, documents) for item, reply in zip(chunk, replies, strict=True))
        if progress:
            progress(len(rows), len(items))
    return rows

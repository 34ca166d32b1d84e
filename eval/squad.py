"""External benchmark: any SQuAD-2.0-format file, every paragraph a document of its own corpus.

Each question is asked against the whole corpus (not just its paragraph). Scored with the official
SQuAD 2.0 rules (normalised exact match and token F1, max over gold answers; an unanswerable question
is correct only when the system abstains, i.e. predicts ""), plus gold-paragraph hit@1/@5 and latency.
Nothing here knows which file it reads.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval import metrics
from index.documents import Document
from qa.lang.squad import squad_scores


@dataclass(frozen=True)
class SquadQuestion:
    qid: str
    question: str
    answers: tuple[str, ...]
    impossible: bool
    doc_id: str
    article: str = ""


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("_.-")[:80] or "article"


def load_squad(path: Path) -> tuple[list[Document], list[SquadQuestion]]:
    """Documents (one per paragraph, id ``<article>-<n>``, title = article title) and questions; the
    file may be gzipped (``.gz``)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    data = json.loads(raw.decode("utf-8"))["data"]
    docs, questions = [], []
    for article in data:
        title = str(article.get("title", "article")).replace("_", " ")
        for n, para in enumerate(article["paragraphs"]):
            doc_id = f"{_slug(title)}-{n:03d}"
            docs.append(Document(doc_id=doc_id, title=title, text=para["context"]))
            for qa in para["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                answers = tuple(a["text"] for a in qa.get("answers", [])) if not impossible else ()
                questions.append(SquadQuestion(qa["id"], qa["question"], answers, impossible, doc_id, title))
    return docs, questions


def sample(questions: Sequence[SquadQuestion], limit: int | None, seed: int) -> list[SquadQuestion]:
    """A reproducible random sample (kept in file order), or all questions when ``limit`` is None."""
    if not limit or limit >= len(questions):
        return list(questions)
    keep = set(random.Random(seed).sample(range(len(questions)), limit))
    return [q for i, q in enumerate(questions) if i in keep]


def without_articles(questions: Sequence[SquadQuestion], titles: Sequence[str]) -> list[SquadQuestion]:
    """The questions whose article is not among ``titles`` (SQuAD titles; "_" and " " are the same)."""
    skip = {t.replace("_", " ") for t in titles}
    return [q for q in questions if q.article not in skip]


def file_key(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _row(q: SquadQuestion, prediction: str, mode: str, ranked_docs: Sequence[str], ms: float, evidence: dict) -> dict:
    em, f1 = squad_scores(prediction, list(q.answers))
    return {
        "id": q.qid,
        "article": q.article,
        "question": q.question,
        "impossible": q.impossible,
        "prediction": prediction,
        "gold": list(q.answers),
        "mode": mode,
        "em": em,
        "f1": f1,
        "hit1": q.doc_id in ranked_docs[:1],
        "hit5": q.doc_id in ranked_docs[:5],
        "ms": round(ms, 1),
        "evidence": evidence,
    }


def evaluate(
    pipeline,  # noqa: ANN001
    questions: Sequence[SquadQuestion],
    progress: Callable[[int, int], None] | None = None,
    *,
    batch_size: int = 1,
) -> dict:
    """Open retrieval: every question against the whole corpus, through the full pipeline, in batches
    of ``batch_size`` (a row's ``ms`` is then its batch's time shared among the batch)."""
    from qa.pipeline import Job

    rows = []
    for at in range(0, len(questions), batch_size):
        chunk = questions[at : at + batch_size]
        t = time.perf_counter()
        answers = pipeline.ask_batch([Job(q.question[:1000] or "?", 5) for q in chunk])
        ms = (time.perf_counter() - t) * 1000 / len(chunk)
        for q, answer in zip(chunk, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            prediction = "" if answer.abstained else answer.short_answer
            ranked = [h.passage.doc_id for h in answer.hits]
            rows.append(_row(q, prediction, answer.mode.value, ranked, ms, answer.evidence))
        if progress:
            progress(len(rows), len(questions))
    return summarize(rows)


def evaluate_reader(
    reader,
    docs: Sequence[Document],
    questions: Sequence[SquadQuestion],
    progress: Callable[[int, int], None] | None = None,
) -> dict:  # noqa: ANN001
    """The standard SQuAD setting: the reader alone, given each question's gold paragraph (no retrieval)."""
    text = {d.doc_id: d.text for d in docs}
    rows = []
    for n, q in enumerate(questions, start=1):
        t = time.perf_counter()
        (reading,) = reader.read(q.question, [text[q.doc_id]])
        ms = (time.perf_counter() - t) * 1000
        answered = reading.span is not None and reading.margin >= reader.threshold
        evidence = {"span": reading.span, "margin": round(reading.margin, 4) if reading.span else None}
        mode = "extractive" if answered else "abstained"
        rows.append(_row(q, reading.span if answered else "", mode, [q.doc_id], ms, evidence))
        if progress:
            progress(n, len(questions))
    return summarize(rows)


def _block(rows: Sequence[dict]) -> dict:
    if not rows:
        return {"n": 0}
    n = len(rows)
    return {
        "n": n,
        "exact": round(100 * sum(r["em"] for r in rows) / n, 2),
        "f1": round(100 * sum(r["f1"] for r in rows) / n, 2),
        "abstained": round(sum(r["mode"] == "abstained" for r in rows) / n, 4),
        "hit@1": round(sum(r["hit1"] for r in rows) / n, 4),
        "hit@5": round(sum(r["hit5"] for r in rows) / n, 4),
    }


def summarize(rows: Sequence[dict], *, rows_too: bool = True) -> dict:
    has = [r for r in rows if not r["impossible"]]
    no = [r for r in rows if r["impossible"]]
    ms = [r["ms"] for r in rows]
    return {
        "overall": _block(rows),
        "HasAns": _block(has),
        "NoAns": _block(no),
        "null_baseline_overall": round(100 * len(no) / len(rows), 2) if rows else None,
        "latency_ms": {"p50": metrics.percentile(ms, 0.5), "p95": metrics.percentile(ms, 0.95)},
        "modes": {m: sum(r["mode"] == m for r in rows) for m in ("generated", "extractive", "abstained")},
        **({"rows": list(rows)} if rows_too else {}),
    }

"""Collect what the answer-or-abstain decision reads, for training and fitting it.

For each question: the parsed question, the retrieved passages the reader reads (with their retrieval
scores and ranks) and the reader's best span in each (score and no-answer score). Saved as JSONL, one
question a line, so the verifier and the decision can be trained, fitted and compared offline without
running retrieval and the reader again.

Sources:
- ``eval``: an eval set (``eval/datasets/*.yaml``) asked against a corpus folder, open retrieval;
- ``squad-open``: a SQuAD 2.0 file, every paragraph a document, open retrieval (as ``qa eval squad``);
- ``squad-gold``: a SQuAD 2.0 file (the train file too), each question read on its own paragraph.

Example::

    python -m train.candidates eval eval/datasets/news-dev.yaml --source ../shared/benchmarks/bbc-news \\
        --out .train/candidates/news-dev.jsonl
    python -m train.candidates squad-open ../shared/benchmarks/squad2-dev-a.json --out .train/candidates/squad-dev-a.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from qa.progress import progress_reporter


def _question_fields(q) -> dict:  # noqa: ANN001 - a qa.question.Question
    return {
        "query": q.query,
        "terms": list(q.terms),
        "names": list(q.names),
        "expected": q.expected.value if q.expected else None,
        "follow_up": q.follow_up,
        "instruction": q.is_instruction,
    }


def question_of(row: dict):  # noqa: ANN201
    """The `qa.question.Question` a candidate row was read with."""
    from qa.lang.answer_types import AnswerType
    from qa.question import Question

    expected = AnswerType(row["expected"]) if row.get("expected") else None
    return Question(
        row["question"].strip(),
        row["query"],
        tuple(row["terms"]),
        tuple(row["names"]),
        expected,
        bool(row.get("follow_up")),
        tuple(row.get("history", ())),
    )


def _reading_row(reading, passage_text: str, hit=None, rank: int = 1, doc_id: str = "", p_start: int = 0) -> dict:  # noqa: ANN001
    row = {
        "rank": rank,
        "doc_id": hit.passage.doc_id if hit else doc_id,
        "p_start": hit.passage.start if hit else p_start,
        "text": passage_text,
        "span": reading.span,
        "start": reading.start,
        "end": reading.end,
        "score": None if reading.span is None else round(reading.score, 4),
        "null": round(reading.null, 4),
    }
    if hit is not None:
        row.update(
            fused=round(hit.score, 6),
            dense=round(hit.dense, 4),
            dense_rank=hit.dense_rank,
            lexical_rank=hit.lexical_rank,
        )
    return row


def collect_open(pipeline, asked: Sequence[dict], batch_size: int = 16) -> list[dict]:  # noqa: ANN001
    """Retrieval + reading for each ``{"id", "question", "history"}``; the rows keep every other key."""
    bar = progress_reporter("reading", "question")
    n_read = pipeline.options.read_passages
    out = []
    for at in range(0, len(asked), batch_size):
        chunk = asked[at : at + batch_size]
        qs = [pipeline.parse(a["question"].strip()[:1000] or "?", a.get("history", ())) for a in chunk]
        vectors = pipeline.retriever.embedder.embed([q.query for q in qs])
        hits = [pipeline.retriever.search(q.query, v, n_read) for q, v in zip(qs, vectors, strict=True)]
        texts = [[pipeline._readable(h.passage) for h in hs] for hs in hits]
        readings = pipeline.reader.read_many([(q.query, t) for q, t in zip(qs, texts, strict=True)])
        for a, q, hs, ts, rs in zip(chunk, qs, hits, texts, readings, strict=True):
            out.append(
                {
                    **a,
                    **_question_fields(q),
                    "candidates": [
                        _reading_row(r, t, h, rank) for rank, (r, t, h) in enumerate(zip(rs, ts, hs, strict=True), 1)
                    ],
                    "documents": {h.passage.doc_id: pipeline.data.documents[h.passage.doc_id].text for h in hs},
                }
            )
        bar(len(out), len(asked))
    return out


def collect_gold(reader, asked: Sequence[dict], contexts: dict[str, str], batch_size: int = 16) -> list[dict]:  # noqa: ANN001
    """The reader on each question's own paragraph (``contexts[row["doc_id"]]``)."""
    from qa.question import parse_question

    bar = progress_reporter("reading", "question")
    out = []
    for at in range(0, len(asked), batch_size):
        chunk = asked[at : at + batch_size]
        qs = [parse_question(a["question"].strip()[:1000] or "?") for a in chunk]
        readings = reader.read_many([(q.query, [contexts[a["doc_id"]]]) for q, a in zip(qs, chunk, strict=True)])
        for a, q, (r,) in zip(chunk, qs, readings, strict=True):
            out.append(
                {
                    **a,
                    **_question_fields(q),
                    "candidates": [_reading_row(r, contexts[a["doc_id"]], doc_id=a["doc_id"])],
                    "documents": {a["doc_id"]: contexts[a["doc_id"]]},
                }
            )
        bar(len(out), len(asked))
    return out


def squad_asked(path: Path) -> tuple[list[dict], list]:
    """One row per SQuAD question (with its gold answers and SQuAD 2.0's plausible answers), and the
    paragraphs by document id, as ``eval.squad.load_squad`` names them."""
    import gzip

    from eval.squad import load_squad

    docs, questions = load_squad(path)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        plausible = {
            qa["id"]: [a["text"] for a in qa.get("plausible_answers", [])]
            for art in json.load(fh)["data"]
            for para in art["paragraphs"]
            for qa in para["qas"]
        }
    rows = [
        {
            "id": q.qid,
            "group": q.article,
            "question": q.question,
            "doc_id": q.doc_id,
            "impossible": q.impossible,
            "answers": list(q.answers),
            "plausible": plausible.get(q.qid, []),
        }
        for q in questions
    ]
    return rows, docs


def _reader(settings, model_dir: Path | None):  # noqa: ANN001, ANN202 - a qa.config.Settings -> a TransformerReader
    """The shipped reader with the settings' overrides, or the one exported to ``model_dir``."""
    from qa.reader.reader import MODEL_DIR, make_reader

    return make_reader(settings, model_dir or MODEL_DIR)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["eval", "squad-open", "squad-gold"])
    p.add_argument("file", type=Path)
    p.add_argument("--source", type=Path, help="eval: the corpus folder (default QA_SOURCE_DIR)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--passages", type=int, help="passages the reader reads (default QA_READER_PASSAGES)")
    p.add_argument(
        "--reader",
        type=Path,
        help="read with the reader in this folder (train.export's output) instead of the shipped one: "
        "out-of-fold readings of articles the shipped reader trained on (make train-reader-oof; rule 9)",
    )
    args = p.parse_args(argv)

    from eval.cli import _deterministic, _fresh_index, source_index_dir
    from qa.config import Settings
    from qa.pipeline import Pipeline, _set_threads

    settings = Settings(generator="none", **({"reader_passages": args.passages} if args.passages else {}))
    _deterministic(settings)
    _set_threads(settings.torch_threads, settings.faiss_threads)
    if args.kind == "eval":
        from eval.dataset import load_dataset

        source = args.source or Path(settings.source_dir)
        items = load_dataset(args.file)
        asked = [
            {
                "id": i.id,
                "group": _item_group(i),
                **i.model_dump(
                    include={"question", "history", "category", "answers", "all_of", "must_abstain", "forbidden"}
                ),
            }
            for i in items
        ]
        pipeline = Pipeline.from_settings(
            settings, index_for=_fresh_index(source, source_index_dir(settings.cache_dir, source)), decide=False
        )
        if args.reader:
            pipeline.reader = _reader(settings, args.reader)
        rows = collect_open(pipeline, asked)
    else:
        asked, docs = squad_asked(args.file)
        if args.kind == "squad-gold":
            rows = collect_gold(_reader(settings, args.reader), asked, {d.doc_id: d.text for d in docs})
        else:
            from eval.squad import file_key

            index_dir = Path(".index-squad") / file_key(args.file)
            pipeline = Pipeline.from_settings(settings, index_for=_squad_index(docs, index_dir), decide=False)
            if args.reader:
                pipeline.reader = _reader(settings, args.reader)
            rows = collect_open(pipeline, asked)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} questions -> {args.out}", file=sys.stderr)
    return 0


def _item_group(item) -> str:  # noqa: ANN001
    """The article an eval item is about (its ``article``, else its first support document), for splits."""
    return item.article or (item.support[0].doc if item.support else f"none:{item.id}")


def _squad_index(docs, index_dir: Path):  # noqa: ANN001, ANN202
    from index.store import build_index, index_state, save_index

    def index_for(embedder) -> Path:  # noqa: ANN001
        if index_state(index_dir, docs, embedder.model_id) != "fresh":
            save_index(build_index(docs, embedder, progress=progress_reporter("indexing", "text")), index_dir)
        return index_dir

    return index_for


if __name__ == "__main__":
    raise SystemExit(main())

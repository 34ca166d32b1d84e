"""Retrieval only: would indexing each passage with its article's title find more answers? (rule 7)

Each passage is embedded and BM25-indexed as ``title + blank line + text`` (unless it already starts with
the title, as a BBC article's first passage does), in memory, over an existing index; queries are parsed
as the pipeline parses them (follow-ups with their history) and fused as the retriever fuses them. Prints
hit@3 (a support span among the 3 passages the reader reads) and hit@5 for the shipped passages and the
titled ones, over an eval set's answerable questions. Nothing is written to the index.

Example (news-dev only; the BBC folder's index as ``qa eval --source`` caches it)::

    python -m research.titles eval/datasets/news-dev.yaml --source ../shared/benchmarks/bbc-news
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def titled(title: str, text: str) -> str:
    """What a passage would be indexed as.

    >>> titled("Cup win", "Rooney scored twice.")
    'Cup win\\n\\nRooney scored twice.'
    >>> titled("Cup win", "Cup win\\n\\nRooney scored twice.")
    'Cup win\\n\\nRooney scored twice.'
    """
    title = title.strip()
    return text if text.lstrip().startswith(title[:40]) else f"{title}\n\n{text}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.titles", description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", type=Path)
    p.add_argument("--source", type=Path, required=True, help="the corpus folder the set is asked against")
    args = p.parse_args(argv)

    from eval.cli import _fresh_index, source_index_dir
    from eval.dataset import load_dataset
    from eval.metrics import recall_at_k
    from eval.runner import support_spans
    from index.lexical import LexicalIndex
    from qa.config import Settings
    from qa.pipeline import Pipeline
    from qa.retrieve import Retriever, content_terms, dense_search

    settings = Settings(generator="none")
    index_dir = source_index_dir(settings.cache_dir, args.source)
    pipe = Pipeline.from_settings(settings, index_for=_fresh_index(args.source, index_dir), decide=False)
    data, docs = pipe.data, pipe.data.documents
    texts = [titled(docs[p.doc_id].title, p.text) for p in data.passages]
    print(f"embedding {len(texts)} titled passages", file=sys.stderr)
    shipped = pipe.retriever
    alt = object.__new__(Retriever)
    alt.__dict__.update(shipped.__dict__)
    alt.data = dataclasses.replace(data, passage_vectors=shipped.embedder.embed(texts), dense_index=None, room=None)
    alt.dense = dense_search(alt.data, shipped.nprobe)
    alt.lexical = LexicalIndex.build([content_terms(t) for t in texts])

    items = [i for i in load_dataset(args.dataset) if not i.must_abstain]
    found = {}
    for name, retriever in (("shipped", shipped), ("titled", alt)):
        found[name] = []
        for item in items:
            q = pipe.parse(item.question, item.history)
            hits = retriever.search(q.query, retriever.embedder.embed([q.query])[0], 5)
            got = [(h.passage.doc_id, h.passage.start, h.passage.end) for h in hits]
            gold = support_spans(item, docs)
            found[name].append((recall_at_k(got, gold, 3) > 0, recall_at_k(got, gold, 5) > 0))
        print(
            f"{name}: hit@3 {sum(a for a, _ in found[name])}, hit@5 {sum(b for _, b in found[name])} "
            f"of {len(items)} answerable"
        )
    pairs = list(zip(found["shipped"], found["titled"], strict=True))
    print(
        f"hit@3: titled finds {sum(t[0] and not s[0] for s, t in pairs)} the shipped misses, "
        f"misses {sum(s[0] and not t[0] for s, t in pairs)} it finds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

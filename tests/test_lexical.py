"""The segmented BM25 index (`index.lexical`): bm25s's Lucene scores, and updates equal to rebuilds."""

from __future__ import annotations

import random

import numpy as np
import pytest

from index.documents import Document
from index.lexical import MAX_SEGMENTS, LexicalIndex
from index.store import refresh
from qa.lang.text import content_terms
from qa.retrieve import Retriever

WORDS = [f"w{i}" for i in range(60)]


def _corpus(rng: random.Random, n: int) -> list[list[str]]:
    # Zipf-like: a few frequent terms, many rare ones, passages of 1-40 tokens with repeats
    return [[WORDS[min(int(rng.paretovariate(1.0)) - 1, 59)] for _ in range(rng.randint(1, 40))] for _ in range(n)]


def _bm25s_scores(corpus: list[list[str]], query: list[str]) -> np.ndarray:
    bm25s = pytest.importorskip("bm25s")
    reference = bm25s.BM25()  # method "lucene", k1 1.5, b 0.75: what index.lexical computes
    reference.index(corpus, show_progress=False)
    known = [t for t in query if t in reference.vocab_dict]
    return reference.get_scores(known) if known else np.zeros(len(corpus), np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_bm25s_lucene(seed):
    rng = random.Random(seed)
    corpus = _corpus(rng, 300)
    index = LexicalIndex.build(corpus)
    for _ in range(20):
        query = rng.sample(WORDS, 3) + ["w0", "nowhere"]  # a repeated term counts twice; unknown: nothing
        np.testing.assert_allclose(index.scores(query), _bm25s_scores(corpus, query), rtol=2e-6, atol=1e-7)


def test_updates_equal_a_rebuild_of_the_live_passages():
    """Removals, additions and renumbering, over more updates than MAX_SEGMENTS (so segments merge)."""
    rng = random.Random(7)
    live = _corpus(rng, 200)
    index = LexicalIndex.build(live)
    for step in range(3 * MAX_SEGMENTS):
        keep = sorted(rng.sample(range(len(live)), len(live) - rng.randint(0, 8)))
        fresh = _corpus(rng, rng.randint(0, 6))
        fresh[:1] = [[f"new{step}", "w1"]] * min(1, len(fresh))  # terms the index has never seen
        order = keep + [-1] * len(fresh)
        rng.shuffle(order)
        rows_from = np.array(order)
        new_iter = iter(fresh)
        live = [live[i] if i >= 0 else next(new_iter) for i in order]
        fresh_in_order = [t for i, t in zip(order, live, strict=True) if i < 0]
        index = index.updated(rows_from, fresh_in_order)
        assert len(index.segments) <= MAX_SEGMENTS + 1
        rebuilt = LexicalIndex.build(live)
        for query in (["w0"], ["w1", "w2", "w1"], [f"new{step}", "w3"], ["w40", "w59"]):
            np.testing.assert_allclose(index.scores(query), rebuilt.scores(query), rtol=2e-6, atol=1e-7)
            np.testing.assert_allclose(index.scores(query), _bm25s_scores(live, query), rtol=2e-6, atol=1e-7)
    assert index.knows("w0")
    gone = LexicalIndex.build([["a", "b"], ["b"]]).updated(np.array([1]), [])
    assert gone.knows("b") and not gone.knows("a") and not gone.knows("zebra")


def test_an_update_does_not_change_the_index_it_came_from():
    index = LexicalIndex.build([["nhs", "save"], ["csc"]])
    before = index.scores(["nhs", "csc"]).copy()
    index.updated(np.array([1, -1]), [["nhs", "nhs"]])
    np.testing.assert_array_equal(index.scores(["nhs", "csc"]), before)


def test_retriever_updated_searches_like_a_fresh_one(tiny_index, tiny_docs, embedder):
    """A refresh (one document replaced, one removed, one added) followed by `Retriever.updated`
    ranks, scores and corrects exactly as a retriever built from the refreshed index."""
    retriever = Retriever(tiny_index, embedder)
    first, second, *rest = tiny_docs
    changed = Document(first.doc_id, first.title, first.text + " The zebra enclosure costs £4m.")
    added = Document("zz-new", "Ferries", "Harbour ferries will run every ten minutes from May, the council said.")
    data, changes = refresh(tiny_index, [*rest, changed, added], embedder)
    assert changes.rows_from is not None and (changes.rows_from < 0).sum() > 0
    updated = retriever.updated(data, changes.rows_from)
    fresh = Retriever(data, embedder)
    for q in ("How often will ferries run?", "zebra enclosure cost", "swimming pools", second.title, "librares"):
        v = fresh.embed_query(q)
        assert updated.search(q, v, 5) == fresh.search(q, v, 5)
        assert updated.correct(q) == fresh.correct(q)
    assert updated.raw_words == fresh.raw_words
    assert all(
        updated.lexical.knows(t) == fresh.lexical.knows(t) for p in tiny_index.passages for t in content_terms(p.text)
    )
    assert retriever.data is tiny_index  # the old retriever still answers from the old index


def test_passages_without_terms_score_nothing():
    index = LexicalIndex.build([[], []])  # every passage empty of content terms (e.g. "It is what it is.")
    assert index.scores(["anything"]).tolist() == [0.0, 0.0] and not index.knows("it")

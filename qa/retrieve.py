"""Hybrid retrieval: dense FAISS search + BM25 (`index.lexical`), fused with reciprocal-rank fusion."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from index.dense import DenseSearch, ExactSearch, IVFSearch
from index.embedder import Embedder
from index.lexical import LexicalIndex
from index.memory import trim_heap
from index.store import IndexData
from qa.lang.text import QUESTION_WORDS, STOPWORDS, content_terms, edit_distance_at_most_one, stem, words
from qa.types import Hit

RRF_K = 60
_ALPHA_RE = re.compile(r"[^\W\d_]+")
_QUESTION_VOCAB = sorted(QUESTION_WORDS)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Fuse ranked id lists: score(id) = sum over lists of 1 / (k + rank), rank starting at 1.

    Example: reciprocal_rank_fusion([[7, 3], [3]], k=60) -> {7: 1/61, 3: 1/62 + 1/61}
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def top_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` highest scores, highest first, ties by lower id: what a stable argsort of
    ``-scores`` gives, without sorting every score (2M passages: `eval/README.md`, archive scale).

    Example: top_ids(np.array([0.5, 2.0, 0.5, 1.0]), 3) -> array([1, 3, 0])
    """
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    kth = scores[np.argpartition(scores, len(scores) - k)[len(scores) - k]]
    ids = np.flatnonzero(scores >= kth)  # every id tied with the k-th too, in id order
    return ids[np.argsort(-scores[ids], kind="stable")][:k]


def best_matches(scores: np.ndarray, k: int) -> list[int]:
    """The ``k`` best-scoring passages with a positive score, best first (ties by id): the lexical
    ranking. Only the matched passages are ranked: 3.7 ms at 2M passages where sorting all took 237 ms.

    Example: best_matches(np.array([0.0, 2.0, 0.5, 0.0]), 3) -> [1, 2]
    """
    matched = np.flatnonzero(scores > 0)
    return [int(i) for i in matched[top_ids(scores[matched], k)]]


def dense_search(data: IndexData, nprobe: int | None = None) -> DenseSearch:
    """The version's dense search (`index.dense`): exact over its vectors, or its IVF index probing
    ``nprobe`` lists (default: the manifest's; `IndexData.ivf_index`)."""
    spec = data.dense
    if spec.kind == "exact":
        return ExactSearch(data.passage_vectors)
    return IVFSearch(data.ivf_index(), nprobe or spec.nprobe)


class Retriever:
    """Holds the in-memory search structures built from a loaded `IndexData`."""

    def __init__(self, data: IndexData, embedder: Embedder, *, candidates: int = 30, nprobe: int | None = None) -> None:
        self.data = data
        self.embedder = embedder
        self.candidates = candidates
        self.nprobe = nprobe
        self.dense = dense_search(data, nprobe)
        self.lexical = LexicalIndex.build([content_terms(p.text) for p in data.passages])
        # Raw (unstemmed) words too, so typo tolerance compares like with like: passages holding each.
        self.raw_words: Counter[str] = Counter(w for p in data.passages for w in set(words(p.text)))
        self._sorted = None
        trim_heap()

    def updated(self, data: IndexData, rows_from: np.ndarray) -> Retriever:
        """The retriever of ``data``, refreshed from this one's index (`index.store.refresh`, whose
        ``rows_from`` maps each new row to the row it was copied from, -1 where it is new): the lexical
        index takes the new passages as a segment instead of being rebuilt (`index.lexical`). Searches
        give what a retriever built from ``data`` gives; this one is not modified."""
        fresh = np.flatnonzero(rows_from < 0)
        gone = np.ones(len(self.data.passages), dtype=bool)
        gone[rows_from[rows_from >= 0]] = False
        new = object.__new__(Retriever)
        new.data, new.embedder, new.candidates, new.nprobe = data, self.embedder, self.candidates, self.nprobe
        new.dense = dense_search(data, self.nprobe)
        new.lexical = self.lexical.updated(rows_from, [content_terms(data.passages[i].text) for i in fresh])
        new.raw_words = self.raw_words.copy()
        new.raw_words.subtract(w for i in np.flatnonzero(gone) for w in set(words(self.data.passages[i].text)))
        new.raw_words.update(w for i in fresh for w in set(words(data.passages[i].text)))
        new.raw_words = +new.raw_words  # drops the words no passage holds any more
        new._sorted = None
        return new

    @property
    def _sorted_words(self) -> list[str]:
        """The corpus's alphabetic words, sorted (typo correction's candidates), made on first use."""
        if self._sorted is None:
            self._sorted = sorted(w for w in self.raw_words if w.isalpha())
        return self._sorted

    def embed_query(self, question: str) -> np.ndarray:
        return self.embedder.embed([question])[0]

    def search(self, question: str, query_vector: np.ndarray, top_k: int) -> list[Hit]:
        """The ``top_k`` passages by RRF over dense and BM25 rankings of the ``candidates`` best each."""
        n = len(self.data.passages)
        if n == 0:
            return []
        depth = min(self.candidates, n)
        dense_scores, dense_ids = self.dense.search(query_vector, depth)
        dense_ranking = [int(i) for i in dense_ids if i >= 0]
        dense_by_id = {int(i): float(s) for i, s in zip(dense_ids, dense_scores, strict=True) if i >= 0}
        terms = content_terms(question)
        lexical_ranking: list[int] = []
        if terms:
            lexical_ranking = best_matches(self.lexical.scores(terms), depth)
        fused = reciprocal_rank_fusion([dense_ranking, lexical_ranking])
        dense_rank = {pid: r for r, pid in enumerate(dense_ranking, 1)}
        lexical_rank = {pid: r for r, pid in enumerate(lexical_ranking, 1)}
        ordered = sorted(fused, key=lambda pid: (-fused[pid], pid))[:top_k]
        missing = [pid for pid in ordered if pid not in dense_by_id]
        if missing:  # BM25-only hits still report their cosine similarity
            vecs = self.data.passage_vectors[missing]
            for pid, score in zip(missing, vecs @ query_vector, strict=True):
                dense_by_id[pid] = float(score)
        return [
            Hit(self.data.passages[pid], fused[pid], dense_by_id[pid], dense_rank.get(pid, 0), lexical_rank.get(pid, 0))
            for pid in ordered
        ]

    def correct(self, question: str) -> str:
        """Replace words unknown to the corpus by a word one edit away ("savngs" -> "savings").

        Words of 5+ letters snap to corpus words, words of 3-4 letters only to question words
        ("mny" -> "many"); the first close word in sorted order wins, so the result is deterministic.
        """

        def fix(match: re.Match[str]) -> str:
            raw = match.group(0)
            low = raw.lower()
            if (
                len(low) < 3
                or low in STOPWORDS
                or low in QUESTION_WORDS
                or low in self.raw_words
                or self.lexical.knows(stem(low))
            ):
                return raw
            candidates = _QUESTION_VOCAB if len(low) < 5 else self._sorted_words
            for w in candidates:
                if w[:1] == low[:1] and abs(len(w) - len(low)) <= 1 and edit_distance_at_most_one(low, w):
                    return w
            return raw

        return _ALPHA_RE.sub(fix, question)

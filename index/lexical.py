"""BM25 over segments, so that an added article joins the index without rebuilding it.

bm25s bakes the corpus-wide IDF and average length into every stored score, so one new article meant
rebuilding the whole lexical index (0.9 s of the 1.6 s a replica took to follow a new version of the
1,262-article BBC folder). Here, as in Lucene, what is stored is only term frequencies and lengths:

- a segment holds the postings of some passages (a sparse passages x terms matrix of counts, by
  column, so a term's postings are one slice) and their lengths;
- each segment maps its rows to the index's passage rows, ``-1`` for a passage since removed;
- the corpus statistics (live passages, their total length, a term's document frequency) are summed
  over the live rows when a query is scored.

So adding passages adds a segment, removing marks rows dead, and renumbering rewrites the row maps;
segments themselves are never modified, so an index answers queries while its successor is built.
Scores are Lucene's BM25, bm25s's default ``"lucene"`` method, and equal to what bm25s gives for the
live passages (``tests/test_lexical.py``):

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(t, p) = idf(t) * tf / (tf + k1 * (1 - b + b * len(p) / avglen))

Example::

    >>> index = LexicalIndex.build([["nhs", "save"], ["csc", "contract"], ["nhs"]])
    >>> [round(float(s), 3) for s in index.scores(["nhs"])]
    [0.172, 0.0, 0.229]
    >>> index = index.updated(np.array([0, 2, -1]), [["nhs", "trust"]])   # row 1 removed, one added
    >>> [round(float(s), 3) for s in index.scores(["nhs"])]
    [0.049, 0.065, 0.049]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

K1 = 1.5
B = 0.75
MAX_SEGMENTS = 8  # beyond this, every segment but the first (the loaded base) is merged into one


@dataclass(frozen=True, slots=True)
class Segment:
    postings: sparse.csc_matrix  # rows: the segment's passages; columns: term ids; values: counts
    lengths: np.ndarray  # tokens per row (float32)
    rows: np.ndarray  # the index row of each segment row, -1 once removed (int64)


@dataclass(frozen=True)
class LexicalIndex:
    vocabulary: dict[str, int]  # term -> column; only grows (a copy is made when a term is added)
    segments: tuple[Segment, ...]
    size: int  # rows of the index (live passages: every row is one)
    total_length: float  # tokens over live rows

    def __post_init__(self) -> None:
        # Per segment, what a query needs beyond the postings, fixed for this index: each row's length
        # normaliser k1 * (1 - b + b * len / avglen), and whether its rows are all live and in order
        # (the loaded base, usually), so that a query skips mapping them.
        avg = self.total_length / self.size if self.total_length else 1.0  # no terms: nothing matches
        norms = tuple((K1 * (1 - B + B * s.lengths / avg)).astype(np.float32) for s in self.segments)
        whole = tuple(bool(len(s.rows) and s.rows[0] == 0 and (np.diff(s.rows) == 1).all()) for s in self.segments)
        object.__setattr__(self, "_norms", norms)
        object.__setattr__(self, "_whole", whole)

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]]) -> LexicalIndex:
        """The index of passages given as their tokens, row i the i-th list."""
        vocabulary: dict[str, int] = {}
        segment = _segment(token_lists, vocabulary, np.arange(len(token_lists), dtype=np.int64))
        return cls(vocabulary, (segment,), len(token_lists), float(segment.lengths.sum()))

    def updated(self, rows_from: np.ndarray, fresh: Sequence[Sequence[str]]) -> LexicalIndex:
        """The index after a refresh: row i of the new index is row ``rows_from[i]`` of this one, or,
        where ``rows_from[i]`` is -1, the next passage of ``fresh`` (its tokens). Rows of this index
        that ``rows_from`` does not name are removed. This index is not modified."""
        rows_from = np.asarray(rows_from, dtype=np.int64)
        new_rows = np.flatnonzero(rows_from < 0)
        if len(new_rows) != len(fresh):
            raise ValueError(f"{len(new_rows)} new rows but {len(fresh)} token lists")
        moved = np.full(self.size + 1, -1, dtype=np.int64)  # old row -> new row; the extra slot maps -1
        kept = rows_from >= 0
        moved[rows_from[kept]] = np.flatnonzero(kept)
        segments = [Segment(s.postings, s.lengths, moved[s.rows]) for s in self.segments]
        vocabulary = self.vocabulary
        if any(t not in vocabulary for tokens in fresh for t in tokens):
            vocabulary = dict(vocabulary)
        if len(fresh):
            segments.append(_segment(fresh, vocabulary, new_rows))
        segments = [s for s in segments if (s.rows >= 0).any()] or segments[:1]
        if len(segments) > MAX_SEGMENTS:
            segments = [segments[0], _merge(segments[1:], len(vocabulary))]
        total = float(sum(s.lengths[s.rows >= 0].sum() for s in segments))
        return LexicalIndex(vocabulary, tuple(segments), len(rows_from), total)

    def knows(self, term: str) -> bool:
        """Whether a live passage holds ``term``."""
        column = self.vocabulary.get(term)
        return column is not None and any(len(self._postings(i, column)[0]) for i in range(len(self.segments)))

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 of every row for the query ``terms`` (a term given twice counts twice), float32."""
        out = np.zeros(self.size, dtype=np.float32)
        for term, times in Counter(terms).items():
            column = self.vocabulary.get(term)
            if column is None:
                continue
            found = [self._postings(i, column) for i in range(len(self.segments))]
            df = sum(len(rows) for rows, _, _ in found)
            if not df:
                continue
            idf = np.float32(times * np.log(1 + (self.size - df + 0.5) / (df + 0.5)))
            for rows, tf, norm in found:
                out[rows] += idf * tf / (tf + norm)
        return out

    def _postings(self, i: int, column: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index rows, counts, length normalisers) of the live postings of ``column`` in segment ``i``."""
        postings = self.segments[i].postings
        if column >= postings.shape[1]:
            return _EMPTY
        start, end = postings.indptr[column], postings.indptr[column + 1]
        local = postings.indices[start:end]
        if self._whole[i]:
            return local, postings.data[start:end], self._norms[i][local]
        rows = self.segments[i].rows[local]
        live = rows >= 0
        if not live.all():
            local, rows = local[live], rows[live]
            return rows, postings.data[start:end][live], self._norms[i][local]
        return rows, postings.data[start:end], self._norms[i][local]


_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))


def _segment(token_lists: Sequence[Sequence[str]], vocabulary: dict[str, int], rows: np.ndarray) -> Segment:
    """A segment of ``token_lists`` (extending ``vocabulary`` in place), its rows ``rows``."""
    lengths = np.fromiter((len(tokens) for tokens in token_lists), dtype=np.int64, count=len(token_lists))
    columns = np.fromiter(  # no list of Python ints: 72M tokens at 2M passages
        (vocabulary.setdefault(t, len(vocabulary)) for tokens in token_lists for t in tokens),
        dtype=np.int32,
        count=int(lengths.sum()),
    )
    local = np.repeat(np.arange(len(token_lists), dtype=np.int32), lengths)
    counts = sparse.csc_matrix(
        (np.ones(len(columns), np.float32), (local, columns)), shape=(len(token_lists), len(vocabulary))
    )  # duplicate (row, term) pairs are summed: the counts
    counts.sum_duplicates()
    counts.indices = counts.indices.astype(np.int32, copy=False)
    return Segment(counts, lengths.astype(np.float32), np.asarray(rows, dtype=np.int64))


def _merge(segments: Sequence[Segment], terms: int) -> Segment:
    """One segment holding the live rows of ``segments``."""
    parts, lengths, rows = [], [], []
    for s in segments:
        live = s.rows >= 0
        csr = s.postings.tocsr()[live]
        parts.append(sparse.csr_matrix((csr.data, csr.indices, csr.indptr), shape=(csr.shape[0], terms)))
        lengths.append(s.lengths[live])
        rows.append(s.rows[live])
    merged = sparse.vstack(parts, format="csc")
    merged.indices = merged.indices.astype(np.int32, copy=False)
    return Segment(merged, np.concatenate(lengths), np.concatenate(rows))

"""The dense index a version searches, chosen by its size (issue 28 §2; eval/README.md, "Archive scale").

Measured on 2 cores with vectors drawn like the real passages' (``make bench-scale``), one query on one
thread:

- up to `EXACT_UP_TO` passages, exact inner-product search over the vectors themselves (``faiss.knn``,
  what ``IndexFlatIP`` runs, without a second copy of the vectors): recall 1, 1.1 ms at 20k, 23 ms at
  200k, 226 ms at 2M;
- above it, IVF-Flat with ``nlist = 2·√n`` lists, probing `nprobe_for` of them: recall@10 0.962 at
  200k (nprobe 64, 1.8 ms) and 0.963 at 2M (nprobe 128, 12.8 ms); trained on 40 vectors a list, 36 s
  to build at 2M. HNSW was faster per query but stayed under 0.95 at 2M and took 12 minutes to build.

The choice and its parameters go in the manifest (``"dense": {"kind": "ivf", "nlist": 894, "nprobe":
64}``); an index written before this module reads as exact. A refreshed index keeps the previous
version's IVF centroids while its size stays within 4x of what they were trained for, so adding one
article does not re-run k-means; refreshed in memory, it is a `LayeredIVF` over the loaded index, so
the index is not copied either.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import numpy as np

EXACT_UP_TO = 100_000
"""Exact search up to here: 23 ms at 200k passages is already half the fused budget of 50 ms."""

TRAIN_PER_LIST = 40  # k-means training vectors per IVF list (FAISS warns under 39)

Kind = Literal["exact", "ivf"]
Choice = Literal["auto", "exact", "ivf"]


@dataclass(frozen=True)
class DenseSpec:
    """Which dense index a version has; ``asdict`` of it is the manifest's ``dense``."""

    kind: Kind = "exact"
    nlist: int = 0  # IVF: inverted lists (k-means centroids)
    nprobe: int = 0  # IVF: lists searched per query (``QA_DENSE_NPROBE`` overrides it when serving)
    choice: Choice = "auto"  # what the build was asked for (``QA_DENSE_INDEX``); refreshes keep it

    @classmethod
    def from_manifest(cls, raw: dict | None) -> DenseSpec:
        return cls(**raw) if raw else cls()

    def as_manifest(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """Example: DenseSpec("ivf", 894, 64).describe() -> 'IVF-Flat, 894 lists, 64 probed'"""
        return "exact" if self.kind == "exact" else f"IVF-Flat, {self.nlist:,} lists, {self.nprobe} probed"


def nprobe_for(n: int) -> int:
    """Lists to probe for recall@10 >= 0.95 at ``n`` passages: the smallest measured setting, 64 at 20k
    and 200k and 128 at 2M, doubling per tenfold growth (extrapolated beyond 2M).

    Example: nprobe_for(200_000) -> 64; nprobe_for(2_000_000) -> 128
    """
    return max(64, round(64 * 2 ** math.log10(max(n, 1) / 200_000)))


def choose(n: int, choice: Choice = "auto", previous: DenseSpec | None = None) -> DenseSpec:
    """The dense index for ``n`` passages. ``auto``: exact up to `EXACT_UP_TO`, IVF-Flat above.
    An IVF ``previous`` keeps its ``nlist`` (and so its trained centroids) while 2·√n stays within a
    factor of 2 of it.

    Example: choose(11_831).kind -> 'exact'; choose(200_000) -> DenseSpec('ivf', 894, 64, 'auto')
    """
    if choice == "exact" or (choice == "auto" and n <= EXACT_UP_TO):
        return DenseSpec(choice=choice)
    ideal = max(1, round(2 * math.sqrt(n)))
    nlist = ideal
    if previous is not None and previous.kind == "ivf" and 0.5 <= ideal / previous.nlist <= 2.0:
        nlist = previous.nlist
    nlist = min(nlist, max(1, n))  # k-means needs at least one vector a list
    return DenseSpec("ivf", nlist, min(nlist, nprobe_for(n)), choice)


class DenseSearch(Protocol):
    """What the retriever asks of a dense index."""

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` passages of highest inner product, best first; ids -1 pad."""
        ...


class ExactSearch:
    """Exact inner product over the vectors themselves (FAISS's brute-force kernel, no copy).

    Example: ExactSearch(np.eye(3, dtype=np.float32)).search(np.array([0, 1, 0], np.float32), 1)
    -> (array([1.]), array([1]))
    """

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        k = min(k, len(self.vectors))
        if k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, ids = faiss.knn(
            np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), self.vectors, k, faiss.METRIC_INNER_PRODUCT
        )
        return scores[0], ids[0]


class IVFSearch:
    """A trained ``faiss.IndexIVFFlat`` searched with ``nprobe`` lists."""

    def __init__(self, index, nprobe: int) -> None:  # noqa: ANN001 - a faiss.IndexIVFFlat
        self.index = index
        self.nprobe = nprobe

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        scores, ids = self.index.search(
            np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), min(k, self.index.ntotal), params=params
        )
        return scores[0], ids[0]


def updated_ivf(index, rows_from: np.ndarray, fresh: np.ndarray):  # noqa: ANN001, ANN201
    """A copy of the IVF ``index`` (ids = rows) after a refresh (`index.store.refresh`): row i of the
    result is row ``rows_from[i]`` of ``index``, or, where that is -1, the next vector of ``fresh``.
    Kept vectors stay in their lists under their new ids, dropped ones leave, new ones join their
    nearest list; the centroids are kept. Memory is copied once; only ``fresh`` is assigned, where
    `build_ivf` re-adds every vector (25 s at 2M passages). ``index`` is not modified (it may be
    answering). The lists hold the same vectors under the same ids as ``build_ivf(.., trained=index)``."""
    import faiss

    copy = faiss.clone_index(index)
    copy.set_direct_map_type(faiss.DirectMap.NoMap)  # ids change; a loaded index has one for reading back
    rows_from = np.asarray(rows_from, dtype=np.int64)
    kept = rows_from >= 0
    moved = np.full(index.ntotal + 1, -1, dtype=np.int64)  # old id -> new row; the last slot maps -1
    moved[rows_from[kept]] = np.flatnonzero(kept)
    lists = copy.invlists
    for number in range(copy.nlist):
        size = lists.list_size(number)
        if size:
            ids = faiss.rev_swig_ptr(lists.get_ids(number), size)  # the list's own ids, written in place
            ids[:] = moved[ids]
    if kept.sum() < index.ntotal:  # some rows dropped: their ids are -1 now
        copy.remove_ids(faiss.IDSelectorRange(-1, 0))
    new_rows = np.flatnonzero(~kept)
    if len(new_rows):
        copy.add_with_ids(np.ascontiguousarray(fresh, dtype=np.float32), new_rows)
    copy.nprobe = index.nprobe
    return copy


class LayeredIVF:
    """An IVF index after refreshes, without copying it: the trained index it started from, never
    modified (a replica may be answering from it), plus what the refreshes changed, the way
    `index.lexical` keeps segments:

    - ``rows``: each base vector's row in this version, -1 once removed;
    - a tail: the vectors added since (float32), their rows, and the list each was assigned to.

    A search probes the base as usual, asking for as many more results as it holds removed vectors,
    maps ids to rows, and scores the tail vectors that sit in the probed lists: the vectors scanned
    are exactly those `updated_ivf` would leave in the probed lists, so the results are the same
    (`tests/test_dense.py`). Following a version that adds one article to a 2M-passage index then
    copies the row map (16 MB) and the tail, where cloning the index copied its 3 GB.

    Example: LayeredIVF(ivf).updated(np.array([0, 2, -1]), fresh) -> rows [0, -1, 1] and a tail of
    one vector at row 2.
    """

    def __init__(
        self,
        base,  # noqa: ANN001 - a trained faiss.IndexIVFFlat, ids 0..ntotal-1
        rows: np.ndarray | None = None,
        tail: np.ndarray | None = None,
        tail_rows: np.ndarray | None = None,
        tail_lists: np.ndarray | None = None,
    ) -> None:
        self.base = base
        self.rows = np.arange(base.ntotal, dtype=np.int64) if rows is None else rows
        self.tail = np.zeros((0, base.d), np.float32) if tail is None else tail
        self.tail_rows = np.zeros(0, np.int64) if tail_rows is None else tail_rows
        self.tail_lists = np.zeros(0, np.int64) if tail_lists is None else tail_lists
        self.removed = int((self.rows < 0).sum())
        self.ntotal = base.ntotal - self.removed + len(self.tail)
        self.nlist, self.d, self.quantizer, self.nprobe = base.nlist, base.d, base.quantizer, base.nprobe

    def updated(self, rows_from: np.ndarray, fresh: np.ndarray) -> LayeredIVF:
        """This index after a refresh (`index.store.refresh`): row i of the result is row
        ``rows_from[i]`` of this one or, where that is -1, the next vector of ``fresh``. Neither this
        index nor its base is modified."""
        rows_from = np.asarray(rows_from, dtype=np.int64)
        kept = rows_from >= 0
        fresh = np.ascontiguousarray(fresh, dtype=np.float32).reshape(-1, self.d)
        if len(fresh) != int((~kept).sum()):
            raise ValueError(f"{int((~kept).sum())} new rows but {len(fresh)} vectors")
        moved = np.full(self.ntotal + 1, -1, dtype=np.int64)  # old row -> new row; the last slot maps -1
        moved[rows_from[kept]] = np.flatnonzero(kept)
        tail_rows = moved[self.tail_rows]
        stays = tail_rows >= 0
        lists = self.base.quantizer.search(fresh, 1)[1][:, 0] if len(fresh) else np.zeros(0, np.int64)
        return LayeredIVF(
            self.base,
            moved[self.rows],
            np.concatenate([self.tail[stays], fresh]),
            np.concatenate([tail_rows[stays], np.flatnonzero(~kept)]),
            np.concatenate([self.tail_lists[stays], lists.astype(np.int64)]),
        )

    def search(self, queries: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        """(scores, rows) of the ``k`` best of each query, as ``IndexIVFFlat.search`` gives them
        (``params``: a ``faiss.SearchParametersIVF``; ids -1 pad)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.d)
        nprobe = params.nprobe if params is not None else self.nprobe
        asked = min(k + self.removed, self.base.ntotal)
        if asked:
            scores, ids = self.base.search(queries, asked, params=params)
        else:
            scores, ids = np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        rows = np.where(ids >= 0, self.rows[ids], -1)
        if len(self.tail):
            probed = self.quantizer.search(queries, min(nprobe, self.nlist))[1]
        out_scores = np.full((len(queries), k), np.finfo(np.float32).min, np.float32)  # as FAISS pads
        out_rows = np.full((len(queries), k), -1, np.int64)
        for q in range(len(queries)):
            found = rows[q] >= 0
            s, r = scores[q][found], rows[q][found]
            if len(self.tail):
                near = np.flatnonzero(np.isin(self.tail_lists, probed[q]))
                s = np.concatenate([s, self.tail[near] @ queries[q]])
                r = np.concatenate([r, self.tail_rows[near]])
            best = np.lexsort((r, -s))[:k]
            out_scores[q, : len(best)], out_rows[q, : len(best)] = s[best], r[best]
        return out_scores, out_rows

    def flattened(self):  # noqa: ANN201 - a faiss.IndexIVFFlat
        """One IVF index holding what this one holds (ids = rows), the base untouched: `updated_ivf`."""
        rows_from = np.full(self.ntotal, -1, dtype=np.int64)
        live = np.flatnonzero(self.rows >= 0)
        rows_from[self.rows[live]] = live
        order = np.argsort(self.tail_rows)
        return updated_ivf(self.base, rows_from, self.tail[order])


def flat_ivf(index):  # noqa: ANN001, ANN201
    """A plain ``IndexIVFFlat`` of ``index`` (itself, or a `LayeredIVF` flattened)."""
    return index.flattened() if isinstance(index, LayeredIVF) else index


def build_ivf(vectors: np.ndarray, spec: DenseSpec, *, trained=None, seed: int = 1):  # noqa: ANN001, ANN201
    """An ``IndexIVFFlat`` of ``vectors`` (ids = rows). With ``trained`` (an IVF index of the same
    ``nlist``) its centroids are reused; otherwise k-means runs on `TRAIN_PER_LIST` vectors a list,
    drawn with ``seed``, so a build is reproducible."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if trained is not None and trained.nlist == spec.nlist and trained.d == dim:
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(trained.quantizer.reconstruct_n(0, trained.nlist))
        index = faiss.IndexIVFFlat(quantizer, dim, spec.nlist, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, spec.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        n = len(vectors)
        sample = np.random.default_rng(seed).choice(n, min(n, TRAIN_PER_LIST * spec.nlist), replace=False)
        index.train(vectors[np.sort(sample)])
    index.add(vectors)  # the Python wrapper keeps the quantizer alive with the index
    index.nprobe = spec.nprobe
    return index

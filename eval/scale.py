"""Retrieval at archive scale, measured on synthetic passages shaped like real ones: ``make bench-scale``.

Dense: a Gaussian mixture (full covariances) is fitted to the real passage vectors of the 1,262-article
BBC index, and 20k, 200k and 2M vectors are drawn from it and normalised, so recall is not measured on
near-copies of real passages; the queries are the real eval questions, embedded. At each size: exact
search (``IndexFlatIP``, what ships) against HNSW (``IndexHNSWFlat``) and IVF (``IndexIVFFlat``) at
several search widths: recall@10 against exact, single-query p50 on one thread (the server's
``QA_FAISS_THREADS``), build time on 2 threads, bytes per passage serialised (= on disk; in memory
within a few per cent).

BM25 (bm25s, the tokens the retriever uses): the largest real text here, the BBC passages and the SQuAD
paragraphs, indexed at growing sizes for memory per token and query time; the 200k and 2M rows are real
passages drawn with replacement, so their vocabulary is the real one (an archive adds words, so memory
is a lower bound). Fused = dense (the chosen index) + BM25 + fusion, per query.

Prints numbers and writes ``scale.json`` and ``scale.png``; asserts nothing. ~25 min on 2 cores, ~9 GB.

Example::

    python -m eval.scale --out eval/baseline
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
SIZES = (20_000, 200_000, 2_000_000)
K = 10


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


def fused_rows(
    pool: np.ndarray, queries: np.ndarray, texts: list[str], questions: list[str], dense: list[dict]
) -> list[dict]:
    """Per size, one query as the retriever runs it: the chosen dense index (exact at 20k, else IVF at the
    width `chosen` picked), BM25 over as many real passages (drawn with replacement past the real count),
    both 30 deep, fused by reciprocal rank."""
    import bm25s
    import faiss

    from qa.lang.text import content_terms
    from qa.retrieve import best_matches, reciprocal_rank_fusion

    picked = {r["passages"]: r for r in chosen(dense) if r["index"].startswith("IVF")}
    tokenised = [content_terms(t) or ["\x00empty"] for t in texts]
    rng = random.Random(0)
    rows = []
    for n in SIZES:
        base = np.ascontiguousarray(pool[:n])
        faiss.omp_set_num_threads(2)
        if n <= SIZES[0]:
            index, search = faiss.IndexFlatIP(base.shape[1]), "exact"
            index.add(base)
        else:
            nlist = int(2 * np.sqrt(n))
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(base.shape[1]), base.shape[1], nlist, faiss.METRIC_INNER_PRODUCT
            )
            index.train(base[np.random.default_rng(1).choice(n, min(n, 40 * nlist), replace=False)])
            index.add(base)
            index.nprobe = int(picked[n]["search"].split("nprobe=")[1])
            search = picked[n]["search"]
        corpus = tokenised[:n] if n <= len(tokenised) else [rng.choice(tokenised) for _ in range(n)]
        bm25 = bm25s.BM25()
        bm25.index(corpus, show_progress=False)
        vocab = bm25.vocab_dict
        faiss.omp_set_num_threads(1)
        times = []
        for vector, question in zip(queries, questions, strict=True):
            t = time.perf_counter()
            ids = [int(i) for i in index.search(vector[None], 30)[1][0] if i >= 0]
            terms = [w for w in content_terms(question) if w in vocab]
            lexical = best_matches(bm25.get_scores(terms), 30) if terms else []
            reciprocal_rank_fusion([ids, lexical])
            times.append((time.perf_counter() - t) * 1000)
        rows.append({"passages": n, "dense": search, "p50_ms": round(statistics.median(times), 3)})
        print(f"  fused {n:>9,}: p50 {rows[-1]['p50_ms']} ms ({search} + BM25 + fusion)", flush=True)
        del index, bm25, corpus
    return rows


def real_texts(data) -> list[str]:  # noqa: ANN001
    texts = [p.text for p in data.passages]
    for path in (SHARED / "squad2-train-partial.json.gz", SHARED / "squad2-dev-a.json"):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            texts += [p["context"] for a in json.load(fh)["data"] for p in a["paragraphs"]]
    return texts


def bm25_rows(texts: list[str], questions: list[str]) -> list[dict]:
    import bm25s

    from qa.lang.text import content_terms

    tokenised = [content_terms(t) or ["\x00empty"] for t in texts]
    asked = [content_terms(q) for q in questions]
    rng = random.Random(0)
    rows = []
    for n in (5_000, len(tokenised), *SIZES[1:]):
        corpus = tokenised[:n] if n <= len(tokenised) else [rng.choice(tokenised) for _ in range(n)]
        t = time.perf_counter()
        bm25 = bm25s.BM25()
        bm25.index(corpus, show_progress=False)
        built = time.perf_counter() - t
        vocab = bm25.vocab_dict
        matrix = sum(getattr(a, "nbytes", 0) for a in bm25.scores.values())
        tokens = sum(len(c) for c in corpus)

        def query(terms, index=bm25, vocab=vocab) -> None:  # noqa: ANN001
            kept = [w for w in terms if w in vocab]
            if kept:
                scores = index.get_scores(kept)
                np.argpartition(-scores, 30)[:30]

        ms = _p50_ms(query, asked)
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
            }
        )
        print(f"  BM25 {n:>9,} passages: {matrix / n:.0f} B/passage, p50 {ms} ms, build {built:.0f} s", flush=True)
        del bm25, corpus
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

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(11, 4.2))
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
    lat.plot([r["passages"] for r in bm], [r["p50_ms"] for r in bm], marker="x", label="BM25 (bm25s)")
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
    for ax, title in ((lat, "query p50, one thread, ms (dotted: the 50 ms fused target)"), (mem, "index memory, GiB")):
        ax.set(xscale="log", yscale="log", xlabel="passages", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("dense: fastest width reaching recall@10 0.95 against exact (else the most accurate)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write scale.json and scale.png here")
    p.add_argument("--components", type=int, default=24, help="Gaussian mixture components")
    p.add_argument("--fused-from", type=Path, help="a scale.json whose dense and BM25 rows to keep")
    args = p.parse_args(argv)

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
    if args.fused_from:  # dense and BM25 rows from an earlier run; measure the fused query only
        result = json.loads(args.fused_from.read_text(encoding="utf-8"))
    else:
        result = {"queries": len(questions), "shape_check": shape, "dense": dense_rows(pool, queries)}
        result["bm25"] = bm25_rows(texts, questions)
    result["fused"] = fused_rows(pool, queries, texts, questions, result["dense"])
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        plot(result, args.out / "scale.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

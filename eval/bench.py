"""Speed and memory benchmark: ``make bench`` (or ``python -m eval.bench``).

Prints medians of several runs and same-run ratios against baselines; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eval.metrics import percentile
from qa.memory import peak_rss_bytes

QUESTIONS = [
    "How much is CSC saving?",
    "How many GP practices was CSC contracted to install a care records system at?",
    "How many NHS trusts were covered by CSC's contract?",
    "How much was CSC's contract worth?",
    "Who is CSC's president of healthcare?",
    "Until when was the deadline extended?",
    "Who announced that £600m would be cut from the programme?",
    "How much would be saved on the National Programme for IT as a whole?",
    "When did the present government announce a further £700m cut?",
    "How many Lorenzo deployments have been completed so far?",
    "Why was the deal delayed?",
    "What is the capital of Australia?",
    "What was CSC's revenue in 2011?",
    "Write a poem about the NHS",
]


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    args = parser.parse_args(argv)

    import faiss
    import torch

    from index.documents import load_documents
    from index.embedder import SentenceTransformerEmbedder
    from index.store import build_index, load_index, save_index
    from qa.config import Settings
    from qa.generate import make_generator
    from qa.pipeline import Pipeline
    from qa.reader.reader import TransformerReader

    settings = Settings()
    print(
        f"newsqa benchmark: {len(QUESTIONS)} questions, median of {args.repeat} runs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads available"
    )

    t = time.perf_counter()
    embedder = SentenceTransformerEmbedder()
    embedder.warm_up()
    embed_load = time.perf_counter() - t
    t = time.perf_counter()
    generator = make_generator(settings)
    gen_load = time.perf_counter() - t
    readers = {}  # fp32 is the baseline; bf16 autocast and int8 dynamic quantisation against it
    for label, kwargs in (("fp32", {}), ("bf16", {"dtype": "bfloat16"}), ("int8", {"quantize": True})):
        t = time.perf_counter()
        readers[label] = TransformerReader(**kwargs)
        readers[label].warm_up()
        readers[label].load_s = time.perf_counter() - t
    loads = ", ".join(f"{label} {r.load_s:.2f} s" for label, r in readers.items())
    print(
        f"\nmodel load      embedder {embed_load:.2f} s   generator {gen_load:.2f} s (safetensors cache)   reader {loads}"
    )

    docs = load_documents(Path(settings.source_dir))
    with tempfile.TemporaryDirectory() as tmp:
        build_ms = timed(lambda: save_index(build_index(docs, embedder), Path(tmp)), args.repeat)
        load_ms = timed(lambda: load_index(Path(tmp), embedder), args.repeat)
        data = load_index(Path(tmp), embedder)
    print(
        f"index build     {statistics.median(build_ms):.0f} ms ({len(docs)} docs, {data.manifest.passages} passages, "
        f"{data.manifest.sentences} sentences)   load {statistics.median(load_ms):.0f} ms"
    )

    # Ready time as a server sees it: a fresh process importing everything and loading all models.
    probe = (
        "import time; t = time.perf_counter(); from qa.config import Settings; from qa.pipeline import Pipeline; "
        "Pipeline.from_settings(Settings()); print(time.perf_counter() - t)"
    )
    ready = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        ready.append(float(out.stdout.strip().splitlines()[-1]))
    print(
        f"ready (fresh process, imports + index + all models) {statistics.median(ready):.2f} s median  (target <= 10 s)"
    )

    # The reader a server would run with these settings (dtype, quantisation); constructing it loads nothing.
    chosen = TransformerReader(quantize=settings.reader_quantize, dtype=settings.reader_dtype)
    reader = readers[chosen.precision]
    pipeline = Pipeline(data, embedder, generator, reader=reader)
    retriever = pipeline.retriever

    def retrieve(q: str) -> None:
        retriever.search(q, retriever.embed_query(q), 8)

    def dense_only(q: str) -> None:
        retriever.dense.search(retriever.embed_query(q), 8)

    vectors = {q: retriever.embed_query(q) for q in QUESTIONS}

    def search_only(q: str) -> None:
        retriever.search(q, vectors[q], 8)

    print("\nretrieval (embed + hybrid search), per question:")
    for label, fn in (
        ("hybrid", retrieve),
        ("dense only (baseline)", dense_only),
        ("hybrid, no embed", search_only),
    ):
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            torch.set_num_threads(threads)
            ms = [statistics.median(timed(lambda q=q, fn=fn: fn(q), args.repeat)) for q in QUESTIONS]
            print(
                f"  {label:22s} {threads} thread(s): p50 {percentile(ms, 0.5):6.1f} ms  p95 {percentile(ms, 0.95):6.1f} ms"
            )
    faiss.omp_set_num_threads(settings.faiss_threads)
    torch.set_num_threads(settings.torch_threads)

    # The reader on exactly what the pipeline hands it: the top passages of each question, one batch.
    from qa.decide.verifier import load_decision_config

    passages = settings.reader_passages or int(load_decision_config().get("passages", 3))
    batches = {q: [h.passage.text for h in retriever.search(q, vectors[q], passages)] for q in QUESTIONS}
    tokens = {q: sum(len(reader._tokenizer(q, p)["input_ids"]) for p in ps) for q, ps in batches.items()}
    print(f"\nreader, {passages} passages per question (median {statistics.median(tokens.values()):.0f} tokens):")
    names = {"fp32": "fp32 (baseline)", "bf16": "bf16 autocast", "int8": "int8 dynamic"}
    reader_ms = {}
    for label, r in readers.items():
        ms = [statistics.median(timed(lambda q=q, r=r: r.read(q, batches[q]), args.repeat)) for q in QUESTIONS]
        reader_ms[label] = percentile(ms, 0.5)
        print(f"  {names[label]:22s} p50 {percentile(ms, 0.5):6.1f} ms  p95 {percentile(ms, 0.95):6.1f} ms")
    ratios = ", ".join(f"fp32 / {label} {reader_ms['fp32'] / reader_ms[label]:.2f}x" for label in ("bf16", "int8"))
    print(f"  p50 ratios: {ratios}; the server runs {reader.model_id}  (target p50 <= 150 ms)")

    print("\nend-to-end answers (in process):")
    results = {}
    for label, gen in (("packaged generator", generator), ("extractive only (baseline)", None)):
        p = Pipeline(data, embedder, gen, reader=reader)
        ms, modes = [], []
        for q in QUESTIONS:
            runs = []
            for _ in range(args.repeat):
                answer = p.ask(q)
                runs.append(answer.timings_ms["total"])
            ms.append(statistics.median(runs))
            modes.append(answer.mode.value)
        results[label] = ms
        counts = {m: modes.count(m) for m in sorted(set(modes))}
        print(f"  {label:27s} p50 {percentile(ms, 0.5):7.1f} ms  p95 {percentile(ms, 0.95):7.1f} ms  modes {counts}")
    a, b = results["packaged generator"], results["extractive only (baseline)"]
    print(
        f"  ratio generator / extractive p50: {percentile(a, 0.5) / percentile(b, 0.5):.1f}x  (target p50 <= 1200 ms)"
    )

    # What verify-then-stream costs: time to the role chunk, to the first content token, and to [DONE].
    from fastapi.testclient import TestClient

    from api.app import create_app

    first_event, first_token, done = [], [], []
    with TestClient(create_app(settings, pipeline=Pipeline(data, embedder, generator, reader=reader))) as client:
        for q in QUESTIONS:
            body = {"model": "newsqa", "messages": [{"role": "user", "content": q}], "stream": True}
            t = time.perf_counter()
            marks: list[float] = []
            with client.stream("POST", "/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and not marks:
                        marks.append(time.perf_counter() - t)
                    if '"content": "' in line and '"content": ""' not in line and len(marks) == 1:
                        marks.append(time.perf_counter() - t)
            done.append((time.perf_counter() - t) * 1000)
            first_event.append(marks[0] * 1000)
            first_token.append(marks[1] * 1000 if len(marks) > 1 else done[-1])
    print("\nstreaming /v1/chat/completions (verify-then-stream):")
    print(f"  first event (role chunk) p50 {percentile(first_event, 0.5):7.1f} ms")
    print(
        f"  first content token      p50 {percentile(first_token, 0.5):7.1f} ms  p95 {percentile(first_token, 0.95):7.1f} ms"
    )
    print(f"  complete                 p50 {percentile(done, 0.5):7.1f} ms  p95 {percentile(done, 0.95):7.1f} ms")

    print(f"\npeak RSS        {peak_rss_bytes() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

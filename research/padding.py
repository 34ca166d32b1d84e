"""How far should the reader pad its windows? Memory and speed per pad multiple (``make bench-padding``).

The reader pads each batch of windows to a multiple of ``qa.reader.reader.PAD_MULTIPLE`` tokens. Without
it, every question length is a new tensor shape, and torch's CPU kernels keep memory for each shape they
have run (part of it oneDNN's primitive cache): a long-running server's memory creeps up with every new
length, far more in bfloat16.
This measures it the way a server meets it: one reader per fresh process, ``--reads`` batches of 1–5
questions (as the batching model worker hands them over; the eval sets' questions, each with three
passages of the seed articles drawn at random, so lengths vary), the heap trimmed after each batch as the
worker trims it when its queue empties. For each reader dtype and pad multiple (1 = pad only to the
batch's longest window) it prints the resident memory the reads added, the p50 read time per question
and the number of distinct window-tensor shapes met.

Example::

    python -m research.padding --out eval/baseline
    # dtype     pad  shapes  RSS after load  growth  p50 ms ...
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

PADS = (1, 8, 16, 32, 64)
DTYPES = ("float32", "bfloat16")


def workload(reads: int, seed: int = 0) -> list[list[tuple[str, list[str]]]]:
    """``reads`` batches of 1–5 (question, three passages): the eval sets' questions, the seed corpus's passages."""
    from eval.dataset import load_dataset
    from index.chunking import chunk_document
    from index.documents import load_documents
    from qa.config import Settings

    datasets = Path(__file__).resolve().parents[1] / "eval" / "datasets"
    questions = [
        item.question for name in ("seed", "rephrased", "fresh") for item in load_dataset(datasets / f"{name}.yaml")
    ]
    passages = []
    for doc in load_documents(Path(Settings().source_dir)):
        passages += [p.text for p in chunk_document(doc, first_sentence_id=0, first_passage_id=0)[1]]
    rng = random.Random(seed)
    return [[(rng.choice(questions), rng.sample(passages, 3)) for _ in range(rng.randint(1, 5))] for _ in range(reads)]


def measure(dtype: str, pad: int, reads: int) -> dict:
    """One reader in this process: memory before and after ``reads`` varied reads, p50, shapes met."""
    import qa.reader.reader as reader_module
    from qa.memory import rss_bytes, trim_heap
    from qa.reader.reader import TransformerReader, encode_windows

    reader_module.PAD_MULTIPLE = pad  # encode_windows and read_many read it at call time
    items = workload(reads)
    reader = TransformerReader(dtype=dtype)
    reader.warm_up()
    reader.read_many(items[0])  # the first call allocates what every call needs
    trim_heap()
    loaded = rss_bytes() / 2**20
    shapes, ms = set(), []
    for batch in items:
        questions = [q for q, passages in batch for _ in passages]
        texts = [p for _, passages in batch for p in passages]
        enc = encode_windows(reader._tokenizer, questions, texts, max_length=reader.max_length, stride=reader.stride)
        shapes.add(tuple(enc["input_ids"].shape))
        t = time.perf_counter()
        reader.read_many(batch)
        ms.append((time.perf_counter() - t) * 1000 / len(batch))
        trim_heap()
    return {
        "dtype": dtype,
        "pad": pad,
        "reads": reads,
        "shapes": len(shapes),
        "loaded_mib": round(loaded),
        "growth_mib": round(rss_bytes() / 2**20 - loaded),
        "p50_ms": round(statistics.median(ms), 1),
    }


def chart(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (m, t) = plt.subplots(1, 2, figsize=(11, 4))
    for dtype in DTYPES:
        sel = [r for r in rows if r["dtype"] == dtype]
        if not sel:
            continue
        pads = [str(r["pad"]) for r in sel]
        m.plot(pads, [r["growth_mib"] for r in sel], marker="o", label=dtype)
        t.plot(pads, [r["p50_ms"] for r in sel], marker="o", label=dtype)
    m.set_xlabel("pad windows to a multiple of (tokens)")
    m.set_ylabel(f"MiB added over {rows[0]['reads']} batches of 1-5 questions")
    m.set_title("reader memory growth")
    t.set_xlabel("pad windows to a multiple of (tokens)")
    t.set_ylabel("read p50 per question, ms (3 passages each)")
    t.set_title("reading time, 2 cores")
    for ax in (m, t):
        ax.axvline(PADS.index(32), color="k", ls="--", lw=1, label="shipped (32)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.padding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=120, help="batches of 1-5 questions per reader (default 120)")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--out", type=Path, help="write padding.json and padding.png here")
    parser.add_argument("--one", nargs=2, metavar=("DTYPE", "PAD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # one measurement, in this (fresh) process
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.reads)))
        return 0
    print(f"{'dtype':9s} {'pad':>4s} {'shapes':>6s} {'RSS after load':>15s} {'growth':>8s} {'p50 ms':>7s}", flush=True)
    rows = []
    for dtype in args.dtypes:
        for pad in PADS:
            cmd = [sys.executable, "-m", "research.padding", "--reads", str(args.reads), "--one", dtype, str(pad)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(
                f"{dtype:9s} {pad:4d} {r['shapes']:6d} {r['loaded_mib']:11d} MiB {r['growth_mib']:+5d} MiB {r['p50_ms']:7.1f}",
                flush=True,
            )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "padding.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        chart(rows, args.out / "padding.png")
        print(f"wrote {args.out / 'padding.json'} and padding.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

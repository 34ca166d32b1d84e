"""Compare answer verifiers on data none of them trained on: which one separates right from wrong answers better.

Examples: the news dev set's validation articles (`train.verifier.validation_articles`, kept out of every
verifier trained with ``--validation-from``), each question with the reader's span in each of its first
``--passages`` retrieved passages, built as training builds them (`train.verifier.examples_from`) and
labelled right or wrong by `train.verifier.span_right` (a loosely worded right answer is right).

A verifier's P(answer) is the softmax probability of "an answer" plus "a loosely worded answer", i.e. the
sigmoid of `qa.decide.verifier.verdict_from_logits`'s ``answer`` log-odds, scored by `score_pairs` as the
pipeline scores. Reported per verifier: examples and positives, ROC AUC, average precision, accuracy at
P >= 0.5, top-1 (for each question with a right candidate, is its best-scored candidate right) and speed.

``PATH`` is a saved model folder (``OUT/final``) or a training ``OUT`` folder: its ``final/`` when there,
else the packaged base with the trainable tensors of ``OUT/checkpoint/state.pt`` overlaid (a run still
training; the table names its step), its keys checked against what `train.verifier` trains.

Example::

    nice -n 19 python -m train.compare_verifiers --verifier minilm=.train/verifier/final \\
        --verifier mpnet=.train/verifier-mpnet --candidates .train/candidates/news-dev.jsonl \\
        --dataset eval/datasets/news-dev.yaml --passages 3 --out .train/compare-verifiers.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.decide.verifier import score_pairs
from train.mpnet import freeze_below, packaged_mpnet_path
from train.verifier import examples_from, load_candidates, trainable_state, validation_articles


@dataclass
class Loaded:
    """A verifier ready to score, and where it came from."""

    model: Any
    tokenizer: Any
    source: str  # the folder read, or "OUT/checkpoint/state.pt step N"
    step: int | None = None  # the checkpoint's step when overlaid
    overlay: dict = field(default_factory=dict)  # the overlay's key check


def load_verifier(path: Path) -> Loaded:
    """A saved model folder, an OUT folder's ``final/``, else its checkpoint overlaid on the packaged base."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from index.embedder import quiet_loading

    for folder in (path, path / "final"):
        if (folder / "config.json").is_file():
            with quiet_loading():
                model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
            return Loaded(model.eval(), AutoTokenizer.from_pretrained(str(folder)), str(folder))
    if (path / "checkpoint" / "state.pt").is_file():
        return overlay_checkpoint(path)
    raise FileNotFoundError(f"{path} holds neither a model folder (config.json), final/ nor checkpoint/state.pt")


def overlay_checkpoint(out: Path) -> Loaded:
    """The packaged base (mpnet or MiniLM, by the checkpoint's keys) with ``OUT/checkpoint/state.pt``'s
    trainable tensors overlaid. Refused unless its keys are exactly what training leaves trainable
    (`freeze_below` / `trainable_state`) and the overlaid model holds them bit for bit."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from index.embedder import packaged_embedder_path, quiet_loading

    ckpt = out / "checkpoint" / "state.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file: optimizer and rng too
    trained: dict = state["model"]
    mpnet = any(k.startswith("mpnet.") for k in trained)
    base = packaged_mpnet_path() if mpnet else packaged_embedder_path()
    with quiet_loading():  # the fresh head is reported missing; the checkpoint supplies it
        model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=3, dtype=torch.float32)
    check: dict = {"base": "mpnet" if mpnet else "minilm"}
    if mpnet:
        layers = model.config.num_hidden_layers
        lowest = min((int(k.split(".")[3]) for k in trained if k.startswith("mpnet.encoder.layer.")), default=None)
        if lowest is None:
            raise ValueError(f"{ckpt} holds no mpnet encoder layer: not a --base mpnet checkpoint")
        top = layers - lowest
        freeze_below(model, top)
        check["train_top"] = top
    expected = set(trainable_state(model))
    result = model.load_state_dict(trained, strict=False)
    now = model.state_dict()
    check.update(
        {
            "tensors": len(trained),
            "missing": sorted(expected - set(trained)),  # trained by the recipe, absent from the checkpoint
            "unexpected": sorted(result.unexpected_keys),  # not in the model at all
            "frozen": sorted(set(trained) - expected - set(result.unexpected_keys)),  # the recipe freezes them
            "differ": [k for k, v in trained.items() if k in now and not torch.equal(now[k], v.to(now[k].dtype))],
        }
    )
    if any(check[k] for k in ("missing", "unexpected", "frozen", "differ")):
        raise ValueError(f"{ckpt} does not fit the packaged base: {json.dumps(check)[:600]}")
    return Loaded(
        model.eval(), AutoTokenizer.from_pretrained(str(base)), f"{ckpt} step {state['step']}", state["step"], check
    )


def validation_questions(candidates: Path, dataset: Path, passages: int) -> list[list[tuple[str, str, bool]]]:
    """Each validation question's examples as (question, marked window, right), as `examples_from` builds them."""
    held = set(validation_articles(dataset))
    rows = [r for r in load_candidates(candidates) if r.get("group") in held]
    return [[(e.question, e.window, e.label > 0) for e in examples_from([r], "eval", passages=passages)] for r in rows]


def roc_auc(y: Any, p: Any) -> float:  # noqa: ANN401 - numpy arrays
    """ROC AUC (`eval.metrics.separation_auc`), NaN without both classes.

    Example: roc_auc([0, 1, 1], [0.1, 0.9, 0.1]) -> 0.75
    """
    from eval.metrics import separation_auc

    auc = separation_auc(
        [float(s) for s, t in zip(p, y, strict=True) if t], [float(s) for s, t in zip(p, y, strict=True) if not t]
    )
    return math.nan if auc is None else auc


def average_precision(y: Any, p: Any) -> float:  # noqa: ANN401 - numpy arrays
    """Sum over thresholds of (recall gained) x precision, tied scores as one threshold (sklearn's definition).

    Example: average_precision([0, 1, 1], [0.1, 0.9, 0.1]) -> 0.5 * 1 + 0.5 * 2/3 ≈ 0.833
    """
    import numpy as np

    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if not y.sum():
        return math.nan
    _, inverse = np.unique(-p, return_inverse=True)  # thresholds from the highest score down
    tp = np.cumsum(np.bincount(inverse, weights=y))
    seen = np.cumsum(np.bincount(inverse))
    recall = tp / y.sum()
    return float(np.sum(np.diff(recall, prepend=0.0) * tp / seen))


def measure(loaded: Loaded, questions: list[list[tuple[str, str, bool]]], max_length: int, batch_size: int) -> dict:
    """Score every example once and compute the metrics (see the module docstring)."""
    import numpy as np

    pairs = [(q, w) for examples in questions for q, w, _ in examples]
    y = np.array([right for examples in questions for _, _, right in examples], dtype=bool)
    score_pairs(loaded.model, loaded.tokenizer, pairs[:2], max_length, batch_size)  # warm up, not timed
    t0 = time.perf_counter()
    verdicts = score_pairs(loaded.model, loaded.tokenizer, pairs, max_length, batch_size)
    seconds = time.perf_counter() - t0
    p = np.array([1.0 / (1.0 + math.exp(-v.answer)) for v in verdicts])  # = softmax(logits)[1] + [2]
    top1, at = [], 0
    for examples in questions:
        scores, rights = p[at : at + len(examples)], y[at : at + len(examples)]
        at += len(examples)
        if rights.any():
            top1.append(bool(rights[int(np.argmax(scores))]))  # ties: the earlier retrieved passage
    return {
        "examples": len(y),
        "positives": int(y.sum()),
        "roc_auc": round(roc_auc(y, p), 4),
        "average_precision": round(average_precision(y, p), 4),
        "accuracy_at_0_5": round(float(((p >= 0.5) == y).mean()), 4),
        "answered_at_0_5": int((p >= 0.5).sum()),  # against all-wrong's accuracy, 1 - positives / examples
        "top1": round(sum(top1) / len(top1), 4) if top1 else None,
        "top1_questions": len(top1),
        "examples_per_s": round(len(y) / seconds, 1),
    }


def seen_in_training(path: Path, questions: list[list[tuple[str, str, bool]]]) -> int | None:
    """How many of the (question, window) pairs the verifier's training examples hold (its OUT/examples.jsonl)."""
    found = next((f for f in (path / "examples.jsonl", path.parent / "examples.jsonl") if f.is_file()), None)
    if found is None:
        return None
    mine = {(q, w) for examples in questions for q, w, _ in examples}
    with found.open(encoding="utf-8") as fh:
        return len(mine & {(e["question"], e["window"]) for e in map(json.loads, fh)})


def table(results: list[dict]) -> str:
    """The results as a markdown table."""
    head = "| verifier | from | examples | positives | ROC AUC | AP | acc@0.5 | top-1 (questions) | ex/s |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        m = r["metrics"]
        lines.append(
            f"| {r['name']} | {r['source']} | {m['examples']} | {m['positives']} | {m['roc_auc']:.3f} "
            f"| {m['average_precision']:.3f} | {m['accuracy_at_0_5']:.3f} | "
            f"{m['top1'] if m['top1'] is None else format(m['top1'], '.3f')} ({m['top1_questions']}) "
            f"| {m['examples_per_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.compare_verifiers", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--verifier",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a saved model folder, or a training OUT folder (its final/, else its checkpoint); repeatable",
    )
    p.add_argument("--candidates", type=Path, default=Path(".train/candidates/news-dev.jsonl"))
    p.add_argument(
        "--dataset", type=Path, default=Path("eval/datasets/news-dev.yaml"), help="its validation articles are used"
    )
    p.add_argument("--passages", type=int, default=3, help="spans of the first N retrieved passages (as trained)")
    p.add_argument("--max-length", type=int, default=192)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: leave the CPU to a training run)")
    p.add_argument("--out", type=Path, help="write the numbers here as JSON")
    args = p.parse_args(argv)
    specs = [s.partition("=") for s in args.verifier]
    if any(not name or not path for name, _, path in specs):
        p.error("--verifier takes NAME=PATH")

    import torch

    torch.set_num_threads(args.threads)
    questions = validation_questions(args.candidates, args.dataset, args.passages)
    print(f"{len(questions)} validation questions, {sum(map(len, questions))} examples", file=sys.stderr)
    results = []
    for name, _, path in specs:
        loaded = load_verifier(Path(path))
        if loaded.overlay:
            print(f"{name}: overlaid {loaded.source}: {json.dumps(loaded.overlay)}", file=sys.stderr)
        metrics = measure(loaded, questions, args.max_length, args.batch_size)
        results.append(
            {
                "name": name,
                "path": path,
                "source": loaded.source,
                "step": loaded.step,
                "overlay": loaded.overlay or None,
                "seen_in_training": seen_in_training(Path(path), questions),
                "metrics": metrics,
            }
        )
        del loaded
    print(table(results))
    n, right = results[0]["metrics"]["examples"], results[0]["metrics"]["positives"]
    print(f"\nacc@0.5 of calling every span wrong: {1 - right / n:.3f}; answered at 0.5: ", end="")
    print(", ".join(f"{r['name']} {r['metrics']['answered_at_0_5']}" for r in results))
    if args.out:
        record = {
            "candidates": str(args.candidates),
            "dataset": str(args.dataset),
            "passages": args.passages,
            "questions": len(questions),
            "threads": args.threads,
            "verifiers": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

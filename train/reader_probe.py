"""Score reader checkpoints on the validation questions ``train.reader`` scored them on (rule 10).

``train.reader`` logs, after each epoch, F1 at margin 0 on ``--val-size`` questions of the held-out SQuAD
dev-a articles. Rule 10 compares two bases (MiniLM and all-mpnet-base-v2 + LoRA) on what caps the news
answers instead: the span when forced to answer (HasAns F1 with every answerable question answered), and
how well the margin separates answerable from unanswerable questions (ROC AUC). This rebuilds the same
validation sample (``train.reader`` draws it from its seeded generator after the synthetic negatives) and
reads it with each folder given.

Usage::

    python -m train.reader_probe .train/oof-s13/epoch1 .train/mpnet-s13/epoch1 --holdout 8 --seed 13
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path


def validation_sample(seed: int, holdout: int, val_size: int, negative_rate: float) -> list:
    """The questions ``train.reader --seed SEED --holdout HOLDOUT --val-size VAL_SIZE`` validates on."""
    from train import reader as T

    rng = random.Random(seed)
    train_articles = T.load_squad(T.TRAIN_FILE)
    held = T.load_squad(T.DEV_FILE)[-holdout:]
    T.synthetic_negatives(train_articles, rng, negative_rate)  # advances the generator as training does
    held_examples = [e for a in held for e in a]
    return rng.sample(held_examples, min(val_size, len(held_examples)))


def scores(rows: list[dict]) -> dict:
    """Forced HasAns F1, F1 at margin 0, and the margin's ROC AUC (answerable against not)."""
    from train import reader as T

    return {
        "forced_has_f1": T.score_at(rows, float("-inf"))["has_f1"],
        "at_0": T.score_at(rows, 0.0),
        "margin_auc": T.margin_auc(rows),
        "questions": len(rows),
        "answerable": sum(not r["impossible"] for r in rows),
    }


def probe(folder: Path, val: list, max_length: int = 384, stride: int = 128) -> dict:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from train import reader as T

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForQuestionAnswering.from_pretrained(str(folder)).eval()
    rows = T.validation_rows(val, T.predict(model, tokenizer, val, max_length, stride, 32, "cpu"))
    return {"folder": str(folder), **scores(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--holdout", type=int, default=8)
    parser.add_argument("--val-size", type=int, default=400)
    parser.add_argument("--negative-rate", type=float, default=0.45)
    args = parser.parse_args(argv)
    val = validation_sample(args.seed, args.holdout, args.val_size, args.negative_rate)
    for folder in args.folders:
        print(json.dumps(probe(folder, val)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

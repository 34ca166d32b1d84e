"""Average checkpoints fine-tuned from one start into one (a uniform "model soup", Wortsman et al. 2022).

Weight averaging of runs that share a starting point often generalises better than any one of them.
Tried on the reader (``eval/README.md``, "Stage 3"): it kept most of the extra epoch's SQuAD gain but
not stage 2's news scores, so nothing averaged ships. The output is a checkpoint folder that
``qa.reader.export`` reads: ``<out>/final`` with the averaged weights, the first ingredient's config and
tokenizer, and ``<out>/train_meta.json`` naming the ingredients.

Example::

    python -m qa.reader.soup .train/soup --from .train/reader-stage2/final .train/reader-stage3c/final
    python -m qa.reader.export .train/soup/final --after .train/reader --out qa/reader/model
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path


def average(ingredients: Sequence[dict]) -> dict:
    """The element-wise mean of state dicts with the same keys and shapes, in the first one's dtypes.

    Example: average([{"w": tensor([0., 2.])}, {"w": tensor([2., 4.])}]) -> {"w": tensor([1., 3.])}
    """
    keys = set(ingredients[0])
    if any(set(sd) != keys for sd in ingredients):
        raise ValueError("checkpoints to average must have the same tensors")
    first = ingredients[0]
    return {k: (sum(sd[k].float() for sd in ingredients) / len(ingredients)).to(first[k].dtype) for k in first}


def soup(checkpoints: Sequence[Path], out: Path) -> Path:
    """Write the averaged checkpoint to ``out/final`` and return that folder."""
    from safetensors.torch import load_file, save_file

    final = out / "final"
    final.mkdir(parents=True, exist_ok=True)
    save_file(average([load_file(str(c / "model.safetensors")) for c in checkpoints]), str(final / "model.safetensors"))
    for f in checkpoints[0].iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, final / f.name)
    first_run = checkpoints[0].parent
    meta_path = first_run / "train_meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    meta["soup_of"] = [c.as_posix() for c in checkpoints]
    (out / "train_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if (first_run / "train_log.jsonl").is_file():  # the log export charts: the first ingredient's
        shutil.copy(first_run / "train_log.jsonl", out / "train_log.jsonl")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.reader.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the averaged run (its checkpoint goes in out/final)")
    parser.add_argument("--from", dest="checkpoints", type=Path, nargs="+", required=True, help="checkpoint folders")
    args = parser.parse_args(argv)
    final = soup(args.checkpoints, args.out)
    print(f"averaged {len(args.checkpoints)} checkpoints into {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

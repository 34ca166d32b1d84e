"""Average checkpoints fine-tuned from one start into one (a uniform "model soup", Wortsman et al. 2022).

Weight averaging of runs that share a starting point often generalises better than any one of them.
Tried on the reader (``eval/README.md``, "Stage 3"): it kept most of the extra epoch's SQuAD gain but
not stage 2's news scores, so nothing averaged ships. The output is a checkpoint folder that
``qa.reader.export`` reads: ``<out>/final`` with the averaged weights, the first ingredient's config and
tokenizer, and ``<out>/train_meta.json`` naming the ingredients.

``--base-weight W`` moves the average a share ``W`` of the way back to the packaged base, tensor by tensor
(WiSE-FT, Wortsman et al. 2022: interpolating a fine-tuned model toward its pre-trained start often
holds up better on new kinds of text). The fresh QA head has no base counterpart and is kept as tuned.
Tried on the reader at W = 0.1 and 0.2 (``eval/README.md``): reworded questions gained, SQuAD and the
seed set lost, so nothing interpolated ships either.

Example::

    python -m qa.reader.soup .train/soup --from .train/reader-stage2/final .train/reader-stage3c/final
    python -m qa.reader.soup .train/wise --from .train/reader-stage2/final --base-weight 0.2
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


def toward(tuned: dict, base: dict, weight: float) -> dict:
    """``tuned`` moved a share ``weight`` of the way to ``base`` where both hold a tensor of that shape.

    Example: toward({"w": tensor([2., 4.]), "head": tensor([1.])}, {"w": tensor([0., 0.])}, 0.25)
    -> {"w": tensor([1.5, 3.]), "head": tensor([1.])}
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError("the base's weight must be between 0 and 1")
    out = {}
    for k, v in tuned.items():
        b = base.get(k)
        mixed = v if b is None or b.shape != v.shape else v.float() + weight * (b.float() - v.float())
        out[k] = mixed.to(v.dtype)
    return out


def _packaged_base_state() -> dict:
    from transformers import AutoModelForQuestionAnswering

    from index.embedder import packaged_embedder_path

    return AutoModelForQuestionAnswering.from_pretrained(str(packaged_embedder_path())).state_dict()


def soup(checkpoints: Sequence[Path], out: Path, base_weight: float = 0.0, base: dict | None = None) -> Path:
    """Write the averaged checkpoint (moved ``base_weight`` toward ``base``, default the packaged base) to
    ``out/final`` and return that folder."""
    from safetensors.torch import load_file, save_file

    final = out / "final"
    final.mkdir(parents=True, exist_ok=True)
    state = average([load_file(str(c / "model.safetensors")) for c in checkpoints])
    if base_weight:
        head = {k for k in state if k.startswith("qa_outputs.")}  # fresh in the base: nothing to go back to
        state = toward(state, {k: v for k, v in (base or _packaged_base_state()).items() if k not in head}, base_weight)
    save_file(state, str(final / "model.safetensors"))
    for f in checkpoints[0].iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, final / f.name)
    first_run = checkpoints[0].parent
    meta_path = first_run / "train_meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    meta["soup_of"] = [c.as_posix() for c in checkpoints]
    if base_weight:
        meta["base_weight"] = base_weight
    (out / "train_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if (first_run / "train_log.jsonl").is_file():  # the log export charts: the first ingredient's
        shutil.copy(first_run / "train_log.jsonl", out / "train_log.jsonl")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.reader.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the averaged run (its checkpoint goes in out/final)")
    parser.add_argument("--from", dest="checkpoints", type=Path, nargs="+", required=True, help="checkpoint folders")
    parser.add_argument("--base-weight", type=float, default=0.0, help="move the average this share back to the base")
    args = parser.parse_args(argv)
    final = soup(args.checkpoints, args.out, args.base_weight)
    print(f"averaged {len(args.checkpoints)} checkpoints into {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

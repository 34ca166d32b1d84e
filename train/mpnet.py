"""all-mpnet-base-v2 as the verifier's base, trained the cheap way (``python -m train.verifier --base mpnet``).

The packaged part-wheels joined into a model folder once (`packaged_mpnet_path`); embeddings and the
bottom 12 - K layers frozen (`freeze_below`); the frozen part's output of every example computed once into
fp16 shards on disk (`PrefixCache`), so each training step runs only the top K layers and the head on it
(`top_logits`); the export is those layers and the head, at most 50 MB (K <= 3, `mpnet_export_bytes`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from index.embedder import MPNET_CACHE, MPNET_PARTS, mpnet_parts, packaged_mpnet_path  # noqa: F401 - re-exported

BASES = ("minilm", "mpnet")
MPNET_TRAIN_TOP = 3
EXPORT_LIMIT_BYTES = 50_000_000  # an mpnet overlay ships beside the code: 50 MB at most
BASE_FILE = "verifier_base.json"  # which base a trained or exported verifier overlays, and its trained layers


def mpnet_trained_keys(num_layers: int, train_top: int) -> tuple[str, ...]:
    """State-dict prefixes of what `freeze_below` leaves trainable: the top layers and the head.

    Example: mpnet_trained_keys(12, 2) -> ("mpnet.encoder.layer.10.", "mpnet.encoder.layer.11.", "classifier.")
    """
    return (*(f"mpnet.encoder.layer.{i}." for i in range(num_layers - train_top, num_layers)), "classifier.")


def freeze_below(model, train_top: int) -> int:  # noqa: ANN001
    """Freeze an MPNet classifier but its top ``train_top`` layers and head (embeddings, the shared relative
    position bias and the bottom layers stay as packaged); the number of frozen layers.

    Example: freeze_below(mpnet_12_layers, 3) -> 9 (layers 9, 10, 11 and the head train)
    """
    layers = model.config.num_hidden_layers
    if not 1 <= train_top <= layers:
        raise ValueError(f"--train-top must be 1..{layers}, not {train_top}")
    keep = mpnet_trained_keys(layers, train_top)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(keep)
    return layers - train_top


def mpnet_export_bytes(train_top: int, hidden: int = 768, intermediate: int = 3072, labels: int = 3) -> int:
    """The fp16 tensor bytes of an mpnet export: ``train_top`` encoder layers and the classification head
    (the safetensors header adds a few kB); the defaults are all-mpnet-base-v2's.

    Example: mpnet_export_bytes(3) -> 43_713_030 (mpnet_export_bytes(4) -> 57_888_774, over 50 MB)
    """
    h, i = hidden, intermediate
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h  # q k v o, the feed-forward, two layer norms
    head = (h * h + h) + (h * labels + labels)
    return 2 * (train_top * layer + head)


def prefix_states(model, input_ids, attention_mask, frozen: int):  # noqa: ANN001, ANN201 - torch objects
    """The hidden states after an MPNet classifier's embeddings and bottom ``frozen`` layers, computed as
    ``MPNetModel.forward`` does (the padding mask and the relative position bias every layer shares)."""
    from transformers.masking_utils import create_bidirectional_mask

    hidden = model.mpnet.embeddings(input_ids=input_ids)
    mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=attention_mask)
    bias = model.mpnet.encoder.compute_position_bias(hidden)
    for layer in model.mpnet.encoder.layer[:frozen]:
        hidden = layer(hidden, mask, bias)[0]
    return hidden


def top_hidden(model, states, attention_mask, frozen: int):  # noqa: ANN001, ANN201 - torch objects
    """An MPNet model's last hidden states from `prefix_states` (zero-padded [batch, length, hidden]): its
    layers from ``frozen`` on, called as ``MPNetEncoder.forward`` calls them. ``model`` is any MPNet head
    model (``model.mpnet`` the encoder): the verifier's classifier or the reader's span head."""
    from transformers.masking_utils import create_bidirectional_mask

    mask = create_bidirectional_mask(config=model.config, inputs_embeds=states, attention_mask=attention_mask)
    bias = model.mpnet.encoder.compute_position_bias(states)  # a function of the length only
    hidden = states
    for layer in model.mpnet.encoder.layer[frozen:]:
        hidden = layer(hidden, mask, bias)[0]
    return hidden


def top_logits(model, states, attention_mask, frozen: int):  # noqa: ANN001, ANN201 - torch objects
    """An MPNet classifier's logits from `prefix_states` (fp32): `top_hidden` and its head.

    Example: top_logits(m, prefix_states(m, ids, mask, 9), mask, 9) == m(ids, attention_mask=mask).logits
    (to float error; tests/test_train_verifier_mpnet.py)
    """
    return model.classifier(top_hidden(model, states, attention_mask, frozen))


def top_span_logits(model, states, attention_mask, frozen: int):  # noqa: ANN001, ANN201 - torch objects
    """An MPNet span reader's (start, end) logits from `prefix_states`: `top_hidden` and its ``qa_outputs``.

    Example: top_span_logits(m, prefix_states(m, ids, mask, 9), mask, 9)
      == (m(ids, attention_mask=mask).start_logits, ….end_logits)  (to float error; tests/test_train_verifier_mpnet.py)
    """
    logits = model.qa_outputs(top_hidden(model, states, attention_mask, frozen))
    start, end = logits.split(1, dim=-1)
    return start.squeeze(-1), end.squeeze(-1)


def freeze_reader_below(model, train_top: int) -> int:  # noqa: ANN001
    """Freeze an MPNet span reader's embeddings and bottom ``12 - train_top`` layers; the number frozen.

    The layers above stay as they were: all trainable for a plain reader, only their LoRA updates and
    layer norms where `train.lora.add_lora` wrapped them first (its updates below start at zero and stay
    there, so the frozen part is the packaged base and `PrefixCache` can hold its output).

    Example: freeze_reader_below(plain_mpnet_reader, 3) -> 9 (layers 9-11 and qa_outputs train)
    """
    layers = model.config.num_hidden_layers
    if not 1 <= train_top <= layers:
        raise ValueError(f"--train-top must be 1..{layers}, not {train_top}")
    frozen = layers - train_top
    below = ("mpnet.embeddings.", *(f"mpnet.encoder.layer.{i}." for i in range(frozen)))
    for name, p in model.named_parameters():
        if name.startswith(below) or name.startswith("mpnet.encoder.relative_attention_bias"):
            p.requires_grad = False
    return frozen


class PrefixCache:
    """Every example's `prefix_states` on disk, fp16, in shards of ``shard_size`` examples (in example
    order): ``shard-00000.npy`` holds their states end to end ([sum of lengths, hidden]) and
    ``shard-00000.lengths.npy`` their token counts. A shard is written to a temporary name and renamed
    (its states last), so `fill` after a kill redoes at most the shard it was writing; ``manifest.json``
    holds a fingerprint of the token ids, the base and the frozen depth, and a mismatch is refused.

    Example::

        cache = PrefixCache(out / "prefix-cache", fingerprint, lengths, hidden=768)
        cache.fill(model, feats, frozen=9, pad_id=1)      # once; skips finished shards
        states, mask = cache.batch([4, 17, 3])            # fp32 [3, longest, 768] and its mask
    """

    def __init__(
        self, folder: Path, fingerprint: str, lengths: Sequence[int], hidden: int, shard_size: int = 256
    ) -> None:
        import numpy as np

        self.folder, self.fingerprint, self.hidden, self.shard_size = Path(folder), fingerprint, hidden, shard_size
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.shards = math.ceil(len(self.lengths) / shard_size)
        self._open: dict[int, tuple[Any, Any]] = {}
        manifest = {
            "fingerprint": fingerprint,
            "examples": len(self.lengths),
            "hidden": hidden,
            "shard_size": shard_size,
            "dtype": "float16",
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "manifest.json"
        if path.is_file():
            had = json.loads(path.read_text(encoding="utf-8"))
            if had != manifest:
                raise ValueError(
                    f"{self.folder} caches other examples, base or depth ({had.get('fingerprint', '?')[:12]}, "
                    f"not {fingerprint[:12]}): delete it or use another --out"
                )
        else:
            path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    def _paths(self, shard: int) -> tuple[Path, Path]:
        return self.folder / f"shard-{shard:05d}.npy", self.folder / f"shard-{shard:05d}.lengths.npy"

    def missing(self) -> list[int]:
        """The shards not yet written."""
        return [k for k in range(self.shards) if not self._paths(k)[0].is_file()]

    def fill(
        self,
        model,  # noqa: ANN001
        feats: list[dict],
        frozen: int,
        *,
        pad_id: int,
        batch_size: int = 32,
        device: str = "cpu",
        bf16: bool = True,
    ) -> dict:
        """Write the missing shards: each example's states after the ``frozen`` layers, in eval mode with no
        gradient, the shard's examples batched by length (little padding); {"built", "seconds"}."""
        import numpy as np
        import torch
        from tqdm import tqdm

        todo = self.missing()
        total = sum(min(self.shard_size, len(feats) - k * self.shard_size) for k in todo)
        t0 = time.time()
        was_training = model.training
        model.eval()
        bar = tqdm(total=total, desc="prefix cache", unit="ex", file=sys.stderr, mininterval=10)
        for shard in todo:
            lo = shard * self.shard_size
            members = list(range(lo, min(lo + self.shard_size, len(feats))))
            states: dict[int, np.ndarray] = {}
            by_length = sorted(members, key=lambda j: len(feats[j]["input_ids"]))
            for at in range(0, len(by_length), batch_size):
                group = by_length[at : at + batch_size]
                batch = pad_batch([feats[j] for j in group], pad_id)
                mask = batch["attention_mask"].to(device)
                with (
                    torch.no_grad(),
                    torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16),
                ):
                    hidden = prefix_states(model, batch["input_ids"].to(device), mask, frozen)
                hidden = hidden.float().cpu().numpy().astype(np.float16)
                for row, j in enumerate(group):
                    states[j] = hidden[row, : len(feats[j]["input_ids"])]
                bar.update(len(group))
            lengths = np.asarray([len(states[j]) for j in members], dtype=np.int64)
            if not np.array_equal(lengths, self.lengths[members]):
                raise ValueError(f"shard {shard}: the examples' lengths differ from the cache's")
            states_path, lengths_path = self._paths(shard)
            _save_npy_atomic(lengths_path, lengths)
            _save_npy_atomic(states_path, np.concatenate([states[j] for j in members]))  # last: the shard is done
        bar.close()
        model.train(was_training)
        return {"built": total, "seconds": round(time.time() - t0, 1)}

    def _shard(self, shard: int) -> tuple[Any, Any]:
        import numpy as np

        if shard not in self._open:
            states_path, lengths_path = self._paths(shard)
            lengths = np.load(lengths_path)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            self._open[shard] = (np.load(states_path, mmap_mode="r"), offsets)
        return self._open[shard]

    def batch(self, indices: Sequence[int]) -> tuple[Any, Any]:
        """The cached states of examples ``indices``, zero-padded to the longest (fp32), and the mask."""
        import numpy as np
        import torch

        width = int(max(self.lengths[j] for j in indices))
        out = np.zeros((len(indices), width, self.hidden), dtype=np.float32)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, j in enumerate(indices):
            states, offsets = self._shard(j // self.shard_size)
            k = j % self.shard_size
            out[row, : offsets[k + 1] - offsets[k]] = states[offsets[k] : offsets[k + 1]]
            mask[row, : offsets[k + 1] - offsets[k]] = 1
        return torch.from_numpy(out), mask


def _save_npy_atomic(path: Path, array: Any) -> None:  # noqa: ANN401 - a numpy array
    import numpy as np

    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        np.save(fh, array)
    tmp.replace(path)


def cache_fingerprint(base: str, frozen: int, bf16: bool, feats: list[dict]) -> str:
    """sha256 of what a prefix cache depends on: the base, its frozen depth, the precision and every
    example's token ids, in order.

    Example: cache_fingerprint("mpnet", 9, True, [{"input_ids": [0, 7, 2]}]) -> "3f…" (64 hex digits)
    """
    digest = hashlib.sha256(json.dumps({"base": base, "frozen": frozen, "bf16": bf16}).encode())
    for f in feats:
        digest.update(json.dumps(f["input_ids"]).encode() + b"\n")
    return digest.hexdigest()


def pad_batch(rows: list[dict], pad_id: int) -> dict:
    """Rows of token ids padded with ``pad_id`` (MPNet's is 1), with their attention mask; no token types.

    Example: pad_batch([{"input_ids": [0, 5, 2]}, {"input_ids": [0, 2]}], 1)
      -> {"input_ids": [[0, 5, 2], [0, 2, 1]], "attention_mask": [[1, 1, 1], [1, 1, 0]]}
    """
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for k, r in enumerate(rows):
        ids[k, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[k, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask}

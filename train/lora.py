"""LoRA (Hu et al., 2021): train a rank-r update of each encoder Linear and keep the base frozen.

A larger base (all-mpnet-base-v2, 110M) fine-tuned in full changes ~170 MB of tensors, over what may ship
beside the code; with rank-16 updates, the layer norms and the head it changes ~5 MB. `add_lora` wraps a
model in place; `merged` gives a plain copy with every update folded into its Linear, which
``save_pretrained`` writes and ``from_pretrained`` reads like any other checkpoint (so a later stage can
``--init`` from it).

Example::

    >>> model = MPNetForQuestionAnswering(config)      # or AutoModelForQuestionAnswering.from_pretrained(...)
    >>> add_lora(model, rank=16)                       # same outputs as before: B starts at zero
    >>> ...train...
    >>> merged(model).save_pretrained("out/epoch1")    # a plain MPNetForQuestionAnswering folder
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

LORA_RANK = 16


class LoRALinear(nn.Module):
    """``base(x) + x A^T B^T * alpha/r``: a frozen Linear plus a trainable rank-``r`` update.

    B starts at zero, so the wrapped model starts exactly as the base. `add_lora` puts them in place.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def folded(self) -> nn.Linear:
        """The base Linear with the update added to its weight: ``W + B A * alpha/r`` (same outputs)."""
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            out.weight += (self.lora_B @ self.lora_A) * self.scale
        out.weight.requires_grad_(False)
        return out


def add_lora(model: nn.Module, rank: int = LORA_RANK) -> None:
    """Freeze ``model`` and wrap every Linear of its encoder layers with a rank-``rank`` LoRA update
    (alpha = 2 * rank); the layer norms inside the layers and the QA head stay trainable (they are small)."""
    for p in model.parameters():
        p.requires_grad = False
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and ".layer." in f"{name}.{child_name}":
                setattr(module, child_name, LoRALinear(child, rank, 2.0 * rank))
    for name, p in model.named_parameters():
        if "lora_" in name or name.startswith("qa_outputs") or ("LayerNorm" in name and ".layer." in name):
            p.requires_grad = True


def merged(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every `LoRALinear` folded back into a plain Linear (``model`` is untouched)."""
    out = copy.deepcopy(model)
    for module in list(out.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.folded())
    return out


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())

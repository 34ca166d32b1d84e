"""What every training loop here repeats: one optimiser step, a log row every 20 steps, and checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any


def optimizer_step(loss: Any, params: Any, opt: Any, sched: Any, clip: float = 1.0) -> float:  # noqa: ANN401 - torch objects
    """Back-propagate ``loss``, clip the gradient norm, step the optimiser and the schedule; the loss."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.item())


class StepLog:
    """Running loss on the progress bar and, every ``every`` steps, a JSON row in ``log``:
    {"step", "epoch", "loss" (mean of the last ``every``), "lr", "elapsed_s"}."""

    def __init__(self, log: IO[str], bar: Any, steps_per_epoch: int, t0: float, every: int = 20) -> None:  # noqa: ANN401 - a tqdm bar
        self.log, self.bar, self.steps_per_epoch, self.t0, self.every = log, bar, steps_per_epoch, t0, every
        self.running: list[float] = []

    def record(self, step: int, loss: float, lr: float) -> None:
        self.running.append(loss)
        self.bar.update(1)
        if step % self.every:
            return
        recent = self.running[-self.every :]
        row = {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 3),
            "loss": round(sum(recent) / len(recent), 4),
            "lr": lr,
            "elapsed_s": round(time.time() - self.t0, 1),
        }
        self.log.write(json.dumps(row) + "\n")
        self.log.flush()
        self.bar.set_postfix(loss=row["loss"])


def padded(rows: list[dict]) -> dict:
    """``input_ids`` and ``token_type_ids`` of tokenised rows zero-padded to the longest, with the mask."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for k, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[k, :n] = torch.tensor(r["input_ids"])
        types[k, :n] = torch.tensor(r["token_type_ids"])
        mask[k, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def run_record(step: int, t0: float, device: str) -> dict:
    """How a finished run went, for its train_meta.json: steps, seconds, torch version and hardware."""
    import torch

    hardware = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU x{torch.get_num_threads()}"
    return {
        "steps": step,
        "train_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "hardware": hardware,
    }


def trainable_state(model) -> dict:  # noqa: ANN001
    """The tensors training changes: everything but the frozen embeddings (what a checkpoint holds and what ships, as fp16); for MPNet
    only the parameters left trainable (`freeze_below`: the top layers and the head)."""
    if model.config.model_type == "mpnet":
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("bert.embeddings.")}


def save_checkpoint(path: Path, model: Any, opt: Any, sched: Any, step: int, t0: float, **extra: Any) -> None:  # noqa: ANN401 - torch objects
    """Write what a resumed run needs to ``path``, atomically: the trainable tensors, the optimiser and the
    schedule, the step, the CPU and CUDA random states (dropout), the seconds trained, and ``extra``."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {
        "model": trainable_state(model),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "elapsed_s": time.time() - t0,
        **extra,
    }
    torch.save(state, tmp)
    tmp.replace(path)  # a kill mid-save leaves the previous checkpoint


def load_checkpoint(path: Path) -> dict:
    """A checkpoint `save_checkpoint` wrote, on the CPU (one written on a GPU loads anywhere)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def restore(state: dict, model: Any, opt: Any, sched: Any) -> None:  # noqa: ANN401 - torch objects
    """Put a loaded checkpoint's tensors, optimiser, schedule and random states back."""
    import torch

    model.load_state_dict(state["model"], strict=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])

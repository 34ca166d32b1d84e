"""The answer verifier: (question, the span's sentence with the span marked) -> does the span answer it?

The real one is MiniLM with a classification head, fine-tuned by ``make train-verifier`` and shipped as
the tensors that differ from the packaged all-MiniLM-L6-v2 (``qa/decide/model/``), overlaid at load time
like the reader's. The fake is for fast tests: scripted, behind the same Protocol.

What it reads is short (`verifier_input`): the sentence that holds the span and the sentence before it
(for "it", "the firm"), with the span in guillemets, so the question meets the exact claim it would make.

Its head has three outputs: not an answer, an answer, and an answer to a *loosely worded* question (the
right measure about a party the sentence involves, in another role: "How much is CSC saving?" where the
NHS saves from CSC's contract). `Verdict` reduces them to two numbers: ``answer``, the log-odds that the
span answers at all (either of the last two), and ``loose``, the log-odds of the third against the second.

Example::

    >>> verifier_input("The firm was fined. It must pay $1.8m to the FCC. Shares fell.", 32, 37)
    'The firm was fined. It must pay «$1.8m» to the FCC.'
    >>> FakeVerifier({"fined": 3.0}).score([("How much was the firm fined?", "…«$1.8m»…")])
    [Verdict(answer=3.0, loose=-inf)]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from index.chunking import split_sentences
from index.store import sha256_file
from qa.errors import ModelNotFound

MODEL_DIR = Path(__file__).parent / "model"
CONFIG_FILE = "decision.json"
OPEN, CLOSE = "«", "»"
MAX_WINDOW_CHARS = 700


def verifier_input(text: str, start: int, end: int, *, max_chars: int = MAX_WINDOW_CHARS) -> str:
    """The sentence(s) of ``text`` holding ``text[start:end]``, with the sentence before them when it fits
    in ``max_chars``, and the span wrapped in «…».

    Example: verifier_input("Shares fell. The club was sold for £30m. Fans protested.", 35, 39)
      -> "Shares fell. The club was sold for «£30m»."
    """
    spans = split_sentences(text) or [(0, len(text))]
    inside = [n for n, (a, b) in enumerate(spans) if a < end and start < b] or [0]
    first, last = inside[0], inside[-1]
    lo, hi = min(spans[first][0], start), max(spans[last][1], end)
    if first > 0 and hi - spans[first - 1][0] <= max_chars:
        lo = spans[first - 1][0]
    if hi - lo > max_chars:  # a very long sentence: keep the span and what is around it
        lo = max(lo, start - (max_chars - (end - start)) // 2)
        hi = min(hi, lo + max_chars)
    return f"{text[lo:start]}{OPEN}{text[start:end]}{CLOSE}{text[end:hi]}".strip()


@dataclass(frozen=True)
class Verdict:
    """``answer``: log-odds that the marked span answers the question; ``loose``: log-odds that the question
    gives a party of the window another role (-inf for a two-way verifier)."""

    answer: float
    loose: float = -math.inf


def verdict_from_logits(logits: Sequence[float]) -> Verdict:
    """A head's logits as a `Verdict`: one logit is the answer's log-odds; three are (not an answer,
    answer, loosely worded answer).

    Example: verdict_from_logits([0.0, 1.0, 1.0]) -> Verdict(answer=log(e + e) - 0 ≈ 1.693, loose=0.0)
    """
    if len(logits) == 1:
        return Verdict(float(logits[0]))
    no, yes, loose = (float(v) for v in logits[:3])
    top = max(yes, loose)
    return Verdict(top + math.log(math.exp(yes - top) + math.exp(loose - top)) - no, loose - yes)


@runtime_checkable
class Verifier(Protocol):
    """Scores (question, marked window) pairs in one batch."""

    model_id: str

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        """One `Verdict` per pair."""
        ...


class TransformerVerifier:
    """MiniLM + a classification head, the committed fine-tuned tensors overlaid on the packaged base."""

    def __init__(self, model_dir: Path = MODEL_DIR, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.model_dir = Path(model_dir)
        self.config = load_decision_config(self.model_dir)
        spec = self.config["verifier"]
        self.weights = self.model_dir / spec["weights"]
        self.sha256 = spec.get("sha256")
        self.max_length = int(spec.get("max_length", 192))
        self.labels = int(spec.get("labels", 3))
        self.device = device
        self.batch_size = batch_size
        self.model_id = spec.get("name", "newsqa-verifier")
        self._model = None
        self._tokenizer = None

    def warm_up(self) -> None:
        """Load once: the packaged base, then the overlay (sha256-checked)."""
        if self._model is not None:
            return
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from index.embedder import packaged_embedder_path, quiet_loading

        if not self.weights.is_file():
            raise ModelNotFound(f"verifier weights {self.weights.name!r} are missing from {self.model_dir.name}/")
        if self.sha256 and sha256_file(self.weights) != self.sha256:
            raise ModelNotFound(f"verifier weights {self.weights.name!r} do not match the sha256 in {CONFIG_FILE}")
        base = packaged_embedder_path()
        with quiet_loading():  # the fresh head is reported as missing; the overlay supplies it
            model = AutoModelForSequenceClassification.from_pretrained(
                str(base), num_labels=self.labels, dtype=torch.float32
            )
        delta = {k: v.float() for k, v in load_file(str(self.weights)).items()}
        result = model.load_state_dict(delta, strict=False)
        untouched = [k for k in result.missing_keys if not k.startswith("bert.embeddings.")]
        if result.unexpected_keys or untouched:
            raise ModelNotFound(f"verifier weights do not fit the base: {(result.unexpected_keys + untouched)[:3]}")
        self._model = model.to(self.device).eval()
        self._tokenizer = AutoTokenizer.from_pretrained(str(base))

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        if not pairs:
            return []
        self.warm_up()
        assert self._model is not None and self._tokenizer is not None
        return score_pairs(self._model, self._tokenizer, pairs, self.max_length, self.batch_size, self.device)


class FakeVerifier:
    """Scripted answer log-odds: the first ``{question word or phrase: logit}`` key found in the question
    wins, otherwise ``default``; questions holding a ``loose`` phrase read as loosely worded.
    Deterministic and instant, for fast tests."""

    model_id = "fake-verifier"

    def __init__(
        self, script: Mapping[str, float] | None = None, *, default: float = 0.0, loose: Sequence[str] = ()
    ) -> None:
        self.script = dict(script or {})
        self.default = default
        self.loose = tuple(loose)

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        out = []
        for question, _ in pairs:
            asked = question.lower()
            hits = sorted((asked.find(k.lower()), k) for k in self.script if k.lower() in asked)
            loose = 5.0 if any(p.lower() in asked for p in self.loose) else -math.inf
            out.append(Verdict(self.script[hits[0][1]] if hits else self.default, loose))
        return out


def load_decision_config(model_dir: Path = MODEL_DIR) -> dict:
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise ModelNotFound(
            f"decision config {path.name!r} is missing from {Path(model_dir).name}/; run make train-verifier"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def score_pairs(model, tokenizer, pairs, max_length: int, batch_size: int = 64, device: str = "cpu") -> list[Verdict]:  # noqa: ANN001
    """A sequence-classification ``model``'s verdicts on (question, marked window) pairs, in batches."""
    import torch

    out: list[Verdict] = []
    with torch.inference_mode():
        for at in range(0, len(pairs), batch_size):
            chunk = pairs[at : at + batch_size]
            enc = tokenizer(
                [q for q, _ in chunk],
                [w for _, w in chunk],
                truncation="only_second",
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            out += [verdict_from_logits(row) for row in model(**enc).logits.float().cpu().tolist()]
    return out

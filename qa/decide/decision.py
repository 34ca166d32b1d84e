"""The decision, in two logistic models over `qa.decide.features.FEATURES` (the verifier's score among them):

- ``choose`` scores every candidate span (one per passage read) and the best-scored one is the answer;
- ``decide`` gives, for that chosen span, P(answering with it is right), calibrated per question.

Both are fitted on dev data only by ``make fit-decision`` (``train/decision.py``) and stored in
``qa/decide/model/decision.json`` beside the verifier they were fitted with. The pipeline answers when
the probability reaches the operating point (``QA_ANSWER_THRESHOLD``, default the fitted one) and
abstains otherwise. Two models, because which span is best and whether the best is good enough are
different questions: fitted on every candidate, one model's probability is the chance that *a*
candidate is right, low for a right answer beside two wrong ones.

Example::

    >>> d = Decision.margin_only(2.0)        # the old rule: answer when the reader's margin >= 2.0
    >>> round(d.probability({"margin": 2.0}), 2), d.probability({"margin": 5.0}) > 0.5
    (0.5, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.decide.features import Candidate, question_features
from qa.decide.verifier import (
    MODEL_DIR,
    FakeVerifier,
    TransformerVerifier,
    Verdict,
    Verifier,
    load_decision_config,
    verifier_input,
)
from qa.question import Question

__all__ = ["Candidate", "Decider", "Decision", "Judgement", "make_decider", "verifier_input"]


@dataclass(frozen=True)
class Decision:
    """``p = sigmoid(bias + sum_i weights[i] * (x[i] - mean[i]) / scale[i])`` over ``features``."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    threshold: float = 0.5

    @classmethod
    def from_config(cls, d: Mapping, threshold: float = 0.5) -> Decision:
        """One logistic model as decision.json stores it (``features``, ``weights``, ``bias``, ``mean``, ``scale``)."""
        return cls(
            tuple(d["features"]),
            tuple(d["weights"]),
            float(d["bias"]),
            tuple(d["mean"]),
            tuple(d["scale"]),
            threshold,
        )

    def as_config(self) -> dict:
        return {
            "features": list(self.features),
            "weights": list(self.weights),
            "bias": self.bias,
            "mean": list(self.mean),
            "scale": list(self.scale),
        }

    @classmethod
    def margin_only(cls, margin: float) -> Decision:
        """The reader's margin alone, answering at ``margin`` (what shipped before the verifier; fakes use it)."""
        return cls(("margin",), (1.0,), -margin, (0.0,), (1.0,), 0.5)

    def logit(self, features: Mapping[str, float]) -> float:
        return self.bias + sum(
            w * (float(features[n]) - m) / s
            for n, w, m, s in zip(self.features, self.weights, self.mean, self.scale, strict=True)
        )

    def probability(self, features: Mapping[str, float]) -> float:
        z = self.logit(features)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True)
class Judgement:
    """What the decision made of one candidate: its ``score`` among the question's candidates (the
    highest is the answer), P(answering with it is right), the features both read, and whether the
    verifier reads the question as loosely worded (a party of the quote in another role)."""

    score: float
    p: float
    features: dict[str, float]
    loose: bool = False


class Decider:
    """The verifier and the two decisions together; ``threshold`` is the operating point."""

    def __init__(
        self,
        verifier: Verifier | None,
        decision: Decision,
        threshold: float | None = None,
        *,
        choose: Decision | None = None,
        passages: int = 3,
    ) -> None:
        self.verifier = verifier
        self.passages = passages  # the retrieved passages per question the decision was fitted on
        self.decision = decision
        self.choose = choose or decision
        self.threshold = decision.threshold if threshold is None else float(threshold)

    @property
    def model_id(self) -> str:
        return f"{self.verifier.model_id} + logistic decision" if self.verifier else "logistic decision"

    def judge_many(self, items: Sequence[tuple[Question, Sequence[Candidate]]]) -> list[list[Judgement]]:
        """Every candidate of every question judged, the verifier reading them all in one batch."""
        pairs = [(q.query, c.window) for q, cands in items for c in cands]
        verdicts = iter(self.verifier.score(pairs) if self.verifier else [Verdict(0.0)] * len(pairs))
        out = []
        for q, cands in items:
            mine = [next(verdicts) for _ in cands]
            out.append(
                [
                    Judgement(
                        round(self.choose.logit(feats), 6),
                        round(self.decision.probability(feats), 6),
                        feats,
                        verdict.loose > 0,
                    )
                    for feats, verdict in zip(question_features(q, cands, [v.answer for v in mine]), mine, strict=True)
                ]
            )
        return out


def make_decider(settings, model_dir: Path = MODEL_DIR) -> Decider:  # noqa: ANN001 - a qa.config.Settings
    """The committed verifier and decision, warmed up, at the settings' operating point."""
    config = load_decision_config(model_dir)
    verifier = None
    if "verifier" in config["decide"]["features"] + config["choose"]["features"]:
        verifier = TransformerVerifier(model_dir, device=settings.device)
        verifier.warm_up()
    threshold = float(config["threshold"])
    return Decider(
        verifier,
        Decision.from_config(config["decide"], threshold),
        settings.answer_threshold,
        choose=Decision.from_config(config["choose"]),
        passages=int(config.get("passages", 3)),
    )


def fake_decider(margin: float = 0.0, script: Mapping[str, float] | None = None, loose: Sequence[str] = ()) -> Decider:
    """For fast tests: the reader's margin alone decides, at ``margin``; the verifier is scripted (and
    reads questions holding a ``loose`` phrase as loosely worded)."""
    return Decider(FakeVerifier(script, loose=loose), Decision.margin_only(margin))

"""The official SQuAD 2.0 answer scoring (the normalisation of evaluate-v2.0.py), defined once.

The reader's training (validation F1), its margin calibration and the SQuAD benchmark all score
spans with these.

Example: squad_scores("in France", ["France", "Normandy"]) -> (0.0, 0.667)
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence


def squad_normalize(text: str) -> str:
    """Lower case, drop punctuation, articles and extra whitespace.

    Example: squad_normalize("The  Normans!") -> "normans"
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(squad_normalize(prediction) == squad_normalize(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Token F1 after normalisation; an empty answer scores 1 only against an empty one.

    Example: squad_f1("in France", "France") -> 0.667
    """
    pred, ref = squad_normalize(prediction).split(), squad_normalize(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1), max over gold answers; unanswerable questions have golds [""] (correct = predict "")."""
    golds = [g for g in golds if squad_normalize(g)] or [""]
    return max(squad_exact(prediction, g) for g in golds), max(squad_f1(prediction, g) for g in golds)

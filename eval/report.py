"""Aggregating rows into a report, writing JSON + Markdown + a PNG chart, and comparing reports."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from eval import metrics
from eval.dataset import CATEGORIES

STAGES = ("retrieve", "read", "decide", "generate", "verify", "total")
DEFINITIONS = {
    "correctness": "share of questions answered correctly: must-abstain questions abstained; others answered, "
    "stating an accepted alias (amounts by value and currency) or all of `all_of`, with no forbidden string; "
    "when an answer leads with a short answer (`lead: “quote” [1]`) only the lead counts",
    "citation_validity": "share of all citations whose quote equals document.text[start:end] exactly",
    "citation_support": "share of answered answerable questions with at least one citation that overlaps a gold "
    "support span or quotes an accepted answer",
    "citation_precision": "share of citations (on answered answerable questions) that support the answer as above",
    "recall_at_5": "mean share of gold support spans overlapped by the 5 returned passages",
    "mrr": "mean reciprocal rank of the first returned passage overlapping a gold support span",
    "abstention_precision": "abstained and must abstain / abstained",
    "abstention_recall": "abstained and must abstain / must abstain",
    "false_refusal_rate": "abstained on an answerable question / answerable questions",
    "margin_auc": "how well the reader's margin (best span over no-answer) ranks questions whose best span is a "
    "correct answer above questions that must be refused or whose best span is wrong, whatever the calibrated "
    "threshold (1.0 perfect, 0.5 chance); in-process runs only",
    "decision_auc": "the same ranking measure for the decision's probability that the chosen span is a right "
    "answer (what the operating point QA_ANSWER_THRESHOLD cuts); in-process runs only",
    "mode_share": "share of answers by path: generated (model text passed verification), extractive, abstained",
}


def _mean(values: Sequence[float | bool | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def aggregate(rows: Sequence[dict]) -> dict:
    """Headline metrics for a set of rows (see DEFINITIONS)."""
    answered = [r for r in rows if not r["must_abstain"] and not r["abstained"]]
    n_cit = sum(r["citations"] for r in rows)
    n_cit_answered = sum(r["citations"] for r in answered)
    abst = metrics.abstention_scores([r["abstained"] for r in rows], [r["must_abstain"] for r in rows])
    modes = [r["mode"] for r in rows]
    return {
        "questions": len(rows),
        "correctness": _mean([r["correct"] for r in rows]),
        "citation_validity": round(sum(r["citations_valid"] for r in rows) / n_cit, 4) if n_cit else None,
        "citation_support": _mean([r["citation_support"] for r in rows]),
        "citation_precision": round(sum(r["citations_supported"] for r in answered) / n_cit_answered, 4)
        if n_cit_answered
        else None,
        "recall_at_5": _mean([r["recall_at_k"] for r in rows]),
        "mrr": _mean([r["reciprocal_rank"] for r in rows]),
        "abstention_precision": None if abst["precision"] is None else round(abst["precision"], 4),
        "abstention_recall": None if abst["recall"] is None else round(abst["recall"], 4),
        "false_refusal_rate": None if abst["false_refusal_rate"] is None else round(abst["false_refusal_rate"], 4),
        "margin_auc": _margin_auc(rows),
        "decision_auc": _margin_auc(rows, "p_answer"),
        "mode_share": {m: round(modes.count(m) / len(modes), 4) for m in ("generated", "extractive", "abstained")}
        if modes
        else {},
    }


def _margin_auc(rows: Sequence[dict], key: str = "margin") -> float | None:
    read = [r for r in rows if r.get(key) is not None]
    right = [r[key] for r in read if r.get("span_correct")]
    refuse_or_wrong = [r[key] for r in read if r["must_abstain"] or r.get("span_correct") is False]
    auc = metrics.separation_auc(right, refuse_or_wrong)
    return None if auc is None else round(auc, 4)


def latency(rows: Sequence[dict]) -> dict:
    return {
        stage: {
            "p50": metrics.percentile([r["timings_ms"].get(stage, 0.0) for r in rows], 0.5),
            "p95": metrics.percentile([r["timings_ms"].get(stage, 0.0) for r in rows], 0.95),
        }
        for stage in STAGES
    }


def build_report(rows: Sequence[dict], meta: dict) -> dict:
    categories = [c for c in CATEGORIES if any(r["category"] == c for r in rows)]
    return {
        "meta": {**meta, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "definitions": DEFINITIONS,
        "metrics": aggregate(rows),
        "by_category": {c: aggregate([r for r in rows if r["category"] == c]) for c in categories},
        "latency_ms": latency(rows),
        "rows": list(rows),
    }


def deterministic_part(report: dict) -> dict:
    """The report without wall-clock fields (latency, timings, creation time): equal across reruns."""
    return {
        "meta": {k: v for k, v in report["meta"].items() if k != "created_at"},
        "metrics": report["metrics"],
        "by_category": report["by_category"],
        "rows": [{k: v for k, v in r.items() if k != "timings_ms"} for r in report["rows"]],
    }


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown(report: dict, chart_name: str | None) -> str:
    m, meta = report["metrics"], report["meta"]
    lines = [
        f"# Eval report: {meta.get('dataset', '')}",
        "",
        f"{m['questions']} questions · generator `{meta.get('generator')}` · embedder `{meta.get('embedding_model')}` · "
        f"{meta.get('created_at')}",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in (
        "correctness",
        "citation_validity",
        "citation_support",
        "citation_precision",
        "recall_at_5",
        "mrr",
        "abstention_precision",
        "abstention_recall",
        "false_refusal_rate",
        "margin_auc",
        "decision_auc",
    ):
        lines.append(f"| {key} | {_fmt(m.get(key))} |")
    lines.append(f"| mode_share | {', '.join(f'{k} {v:.0%}' for k, v in m['mode_share'].items())} |")
    lat = report["latency_ms"]
    lines += ["", "| stage | p50 ms | p95 ms |", "| --- | --- | --- |"]
    lines += [f"| {s} | {lat[s]['p50']:.0f} | {lat[s]['p95']:.0f} |" for s in STAGES if lat[s]["p50"] is not None]
    lines += [
        "",
        "## By category",
        "",
        "| category | n | correct | abstention recall | false refusals | generated |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c, a in report["by_category"].items():
        lines.append(
            f"| {c} | {a['questions']} | {_fmt(a['correctness'])} | {_fmt(a['abstention_recall'])} | "
            f"{_fmt(a['false_refusal_rate'])} | {a['mode_share'].get('generated', 0):.0%} |"
        )
    if chart_name:
        lines += ["", f"![per-category correctness and latency]({chart_name})"]
    wrong = [r for r in report["rows"] if not r["correct"]]
    lines += ["", f"## Incorrect ({len(wrong)})", ""]
    lines += [
        f"- **{r['id']}** ({r['category']}) {r['question']} → {'abstained' if r['abstained'] else r['answer'][:160]}"
        for r in wrong
    ]
    lines += ["", "## Definitions", ""] + [f"- **{k}**: {v}" for k, v in report["definitions"].items()]
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = list(report["by_category"])
    acc = [report["by_category"][c]["correctness"] or 0 for c in cats]
    totals = [r["timings_ms"]["total"] for r in report["rows"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    ax1.barh(cats[::-1], acc[::-1], color="#3b7dd8")
    ax1.set_xlim(0, 1)
    ax1.set_xlabel("correctness")
    ax1.set_title(f"Correctness by category (overall {report['metrics']['correctness']:.2f})")
    for y, v in enumerate(acc[::-1]):
        ax1.text(min(v + 0.01, 0.93), y, f"{v:.2f}", va="center", fontsize=8)
    ax2.hist(totals, bins=20, color="#6aa84f")
    ax2.set_xlabel("end-to-end latency per question (ms)")
    ax2.set_ylabel("questions")
    ax2.set_title("Latency distribution")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict, out_dir: Path, stem: str = "report") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    chart(report, out_dir / f"{stem}.png")
    (out_dir / f"{stem}.md").write_text(markdown(report, f"{stem}.png"), encoding="utf-8")
    return out_dir / f"{stem}.json"


def compare(baseline: dict, current: dict) -> tuple[list[str], list[str], list[str]]:
    """(improved, regressed, metric lines): question by question, then the headline metrics."""
    before = {r["id"]: r for r in baseline["rows"]}
    improved, regressed = [], []
    for r in current["rows"]:
        old = before.get(r["id"])
        if old is None or old["correct"] == r["correct"]:
            continue
        line = f"{r['id']} ({r['category']}) {r['question']}\n    was: {_short(old)}\n    now: {_short(r)}"
        (improved if r["correct"] else regressed).append(line)
    lines = []
    for key, new in current["metrics"].items():
        old = baseline["metrics"].get(key)
        if isinstance(new, float) and isinstance(old, float) and old != new:
            lines.append(f"{key}: {old:.3f} -> {new:.3f} ({new - old:+.3f})")
    return improved, regressed, lines


def _short(row: dict) -> str:
    return "abstained" if row["abstained"] else row["answer"][:140]

"""Compare reader candidates on SQuAD and on the news sets: a table and a chart from a JSON of results.

The JSON (e.g. ``eval/baseline/reader-stage3.json``) lists candidates, each with its held-out SQuAD
scores and, per news set, correctness and the threshold-free margin AUC (``qa eval`` reports both).

Example::

    python -m research.candidates eval/baseline/reader-stage3.json --png eval/baseline/reader-stage3.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SETS = ("seed", "rephrased", "fresh")


def table(data: dict) -> str:
    head = ["candidate", "margin", "SQuAD F1 (LOAO)"] + [f"{s} correct / AUC" for s in SETS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for c in data["candidates"]:
        cells = [c["name"], f"{c['margin']:.2f}", f"{c['squad']['f1']:.1f} ({c['squad']['loao_f1']:.1f})"]
        cells += [f"{c[s]['correctness']:.2f} / {c[s]['margin_auc']:.2f}" for s in SETS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(data: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c["name"] for c in data["candidates"]]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.8))
    x = range(len(names))
    ax[0].bar(x, [c["squad"]["loao_f1"] for c in data["candidates"]], color="tab:blue")
    ax[0].axhline(60, ls="--", color="grey", lw=1, label="issue target (60)")
    ax[0].set(title="SQuAD held-out F1 (leave-one-article-out)", ylim=(50, 66))
    ax[0].legend(fontsize=8, loc="upper right")
    for key, a, title in (("correctness", ax[1], "news correctness"), ("margin_auc", ax[2], "news margin AUC")):
        width = 0.8 / len(SETS)
        for i, s in enumerate(SETS):
            a.bar([j + (i - 1) * width for j in x], [c[s][key] for c in data["candidates"]], width, label=s)
        a.set(title=title, ylim=(0.2, 1.0) if key == "correctness" else (0.5, 1.0))
        a.legend(fontsize=8, ncol=3, loc="upper left")
    for a in ax:
        a.set_xticks(list(x), names, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.candidates", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args(argv)
    data = json.loads(args.results.read_text(encoding="utf-8"))
    print(table(data))
    if args.png:
        chart(data, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

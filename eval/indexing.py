"""How long indexing takes, first build and one-article updates: ``make bench-index``.

Copies a corpus folder (default: the 1,262-article ``../shared/benchmarks/bbc-news``) to a temporary
folder, builds its index with ``qa index build`` (the first build: passages/s), then, ``--runs`` times
each, adds one article, changes one and removes one, rebuilding after each with the same command, as a
user would (process start and model loading included). Prints the median wall time of each kind and
what the command reported; writes them as JSON. Prints numbers; asserts nothing.

Example::

    python -m eval.indexing --out eval/baseline/indexing.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BBC = ROOT.parent / "shared" / "benchmarks" / "bbc-news"


def _build(source: Path, index_dir: Path) -> tuple[float, str]:
    """Wall seconds of one ``qa index build`` and its last report lines."""
    env = {**os.environ, "QA_SOURCE_DIR": str(source), "QA_INDEX_DIR": str(index_dir)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "qa.cli", "index", "build"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    report = [line for line in done.stderr.splitlines() if " added, " in line]
    return seconds, report[-1] if report else ""


def _article(n: int) -> str:
    return (
        f"Harbour trust opens visitor centre {n}\n\n"
        f"The harbour trust opened its new visitor centre on Friday, {n} years after the plan was first put to "
        "the council. The building cost £4.2m and will employ 35 staff.\n\n"
        "The trust's chair said she expected 120,000 visitors in the first year."
    )


def _change(kind: str, run: int, source: Path, files: list[Path]) -> None:
    added = source / f"zz-bench-{run}.txt"
    if kind == "add one":
        added.write_text(_article(run), encoding="utf-8")
    elif kind == "change one":
        files[run].write_text(
            files[run].read_text(encoding="utf-8") + "\n\nA paragraph added later.\n", encoding="utf-8"
        )
    elif kind == "remove one":
        added.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.indexing", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=BBC, help="corpus folder to copy (default: the BBC folder)")
    p.add_argument("--runs", type=int, default=3, help="updates of each kind (median reported)")
    p.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="qa-bench-index-"))
    try:
        source, index_dir = work / "corpus", work / "index"
        shutil.copytree(args.source, source)
        files = sorted(source.glob("*.txt"))
        seconds, report = _build(source, index_dir)
        first = {"documents": len(files), "seconds": round(seconds, 1), "report": report}
        print(f"first build of {len(files):,} documents: {seconds:.1f} s ({report})", flush=True)
        times: dict[str, list[float]] = {"add one": [], "change one": [], "remove one": [], "nothing changed": []}
        reports: dict[str, str] = {}
        for run in range(args.runs):
            for kind in times:
                _change(kind, run, source, files)
                seconds, reports[kind] = _build(source, index_dir)
                times[kind].append(seconds)
                print(f"  run {run + 1}: {kind}: {seconds:.2f} s ({reports[kind]})", flush=True)
        summary = {k: round(statistics.median(v), 2) for k, v in times.items()}
        for kind, median in summary.items():
            print(f"{kind:>16}: median {median:.2f} s of {args.runs} (a whole `qa index build` process)")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            result = {"source": args.source.name, "first_build": first, "median_s": summary, "runs_s": times}
            args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Answer latency and memory as served: ``make bench-served`` (or ``python -m eval.served``).

For each (corpus, eval set) pair it starts ``qa serve`` on a free loopback port over that corpus (its
index built first when stale, outside the repository), waits for ``/readyz``, asks every question of the
set over HTTP one at a time (``POST /v1/ask``, answered and refused questions together), and reads the
server's peak resident memory from ``/metrics``. It prints the p50/p95 of the client's wall time per
answer and the peak, and writes them as JSON. Prints numbers; asserts nothing.

Example::

    python -m eval.served --out eval/baseline/served.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from eval.dataset import load_dataset
from eval.loadtest import _free_port, _rss_mib, wait_ready
from eval.metrics import percentile

ROOT = Path(__file__).resolve().parents[1]
BBC = ROOT.parent / "shared" / "benchmarks" / "bbc-news"
RUNS = (
    ("seeds", ROOT / "seeds", ROOT / "eval" / "datasets" / "seed.yaml"),
    ("bbc-news (1,262 articles)", BBC, ROOT / "eval" / "datasets" / "news-test.yaml"),
)


def _serve(source: Path, index_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "QA_SOURCE_DIR": str(source), "QA_INDEX_DIR": str(index_dir), "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-m", "qa.cli", "index", "build", "--if-stale"], cwd=ROOT, env=env, check=True)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, 300, log)
    except RuntimeError:
        proc.terminate()
        raise
    return proc, base


def measure(name: str, source: Path, dataset: Path, cache: Path) -> dict:
    from eval.cli import source_index_dir

    items = load_dataset(dataset)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"qa-served-{os.getpid()}.log"
    proc, base = _serve(source, source_index_dir(cache, source), log)
    try:
        walls, abstained = [], 0
        with httpx.Client(base_url=base, timeout=120) as client:
            for item in items:
                t = time.perf_counter()
                r = client.post("/v1/ask", json={"question": item.question, "history": item.history})
                walls.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                abstained += r.json()["abstained"]
        _, peak = _rss_mib(base)
    finally:
        proc.terminate()
        proc.wait(30)
    row = {
        "corpus": name,
        "dataset": dataset.name,
        "questions": len(items),
        "abstained": abstained,
        "p50_ms": round(percentile(walls, 0.5), 1),
        "p95_ms": round(percentile(walls, 0.95), 1),
        "peak_rss_mib": round(peak, 1),
    }
    print(
        f"{name:28s} {dataset.name:16s} n={len(items):4d}  p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms"
        f"  peak RSS {peak:7.1f} MiB",
        file=sys.stderr,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    from qa.config import Settings

    cache = Settings().cache_dir
    rows = [measure(name, source, dataset, cache) for name, source, dataset in RUNS if source.is_dir()]
    if args.out:
        args.out.write_text(json.dumps({"runs": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

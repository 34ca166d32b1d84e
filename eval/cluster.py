"""Answers/s of Ray Serve replicas against the single process, same run: ``make bench-cluster``.

Starts, one after another on free loopback ports, ``qa serve`` (one process, today's default) and
``qa serve-cluster`` with 1 and with 2 answering replicas (`api.cluster`), and drives each with the
load test's request mix (half ``/v1/ask``, half streaming chat completions; `eval.loadtest`): one client
at a time, then 8 clients at once, ``--runs`` times, reporting the median answers/s, per core too.

Ray sends its own traffic to the machine's external address, so this runs only inside a private network
namespace with loopback alone; the make target makes one (``unshare -n``, ``ip link set lo up``).
Prints numbers, writes ``cluster.json`` and ``cluster.png`` with ``--out``; asserts nothing.

Example::

    unshare -n sh -c 'ip link set lo up && exec python -m eval.cluster --out eval/baseline'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from eval.loadtest import _drive, _free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SERVERS = (("single process", None), ("Ray Serve, 1 replica", 1), ("Ray Serve, 2 replicas", 2))


def _start(replicas: int | None, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "qa.cli"]
    command += ["serve", "--port", str(port)] if replicas is None else ["serve-cluster", "--replicas", str(replicas)]
    if replicas is not None:
        command += ["--port", str(port)]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server (``serve-cluster`` then shuts its application and local Ray down), and
    SIGKILL to all it started if that takes over a minute."""
    import signal

    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything left of its session
    except ProcessLookupError:
        pass
    proc.wait(10)


def rate(base: str, clients: int, requests: int) -> float:
    """Answers/s of ``requests`` requests from ``clients`` concurrent clients (200s only)."""
    started = time.perf_counter()
    done = asyncio.run(_drive(base, requests, clients, 600))
    seconds = time.perf_counter() - started
    return sum(1 for _, status, _ in done if status == 200) / seconds


FOLLOW_DOC = {
    "doc_id": "zz-bench-harbour-bridge",
    "title": "Harbour bridge opens",
    "text": "Harbour bridge opens\n\nThe new Kelvin harbour bridge cost £47m to build, the city council said. "
    "It opened to traffic on Monday after three years of work.",
}
FOLLOW_QUESTION = ("How much did the new Kelvin harbour bridge cost to build?", "£47m")  # (question, its figure)


def follow(base: str, clients: int = 4, limit_s: float = 30) -> dict:
    """How long after ``POST /v1/documents`` returns the replicas still answer from the old version:
    ``clients`` threads ask without pause (so both replicas get batches), each answer naming its
    ``index_version``; the result is when the last answer from an older version came back (both replicas
    had switched by then) and when the first from the new one did, and whether every answer from the new
    one states the document's figure. Then the document is deleted again (`tests/slow/test_cluster.py`
    asserts on it on the seeds)."""
    import threading

    question, figure = FOLLOW_QUESTION
    sent = time.perf_counter()
    posted = httpx.post(f"{base}/v1/documents", json=FOLLOW_DOC, timeout=120)
    returned = time.perf_counter()
    new = posted.json().get("index_version", "")
    seen: list[tuple[float, float, str, str]] = []  # (sent, received: s after the POST; version, answer)
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set() and time.perf_counter() - returned < limit_s:
                at = time.perf_counter() - returned
                body = client.post(f"{base}/v1/ask", json={"question": question}).json()
                seen.append((at, time.perf_counter() - returned, body["index_version"], body["answer"]))

    threads = [threading.Thread(target=ask) for _ in range(clients)]
    for t in threads:
        t.start()
    while time.perf_counter() - returned < limit_s:  # stop once every client has had 3 answers from it
        if sum(v >= new for _, _, v, _ in seen) >= 3 * clients:
            break
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    httpx.delete(f"{base}/v1/documents/{FOLLOW_DOC['doc_id']}", timeout=120)
    old = [(at, got) for at, got, v, _ in seen if v < new]
    fresh = [(got, answer) for _, got, v, answer in seen if v >= new]
    return {
        "post_status": posted.status_code,
        "posted": posted.json(),
        "post_s": round(returned - sent, 2),
        # every answer received after this came from the new version: when both replicas had switched
        "last_old_answer_received_s": round(max(got for _, got in old), 2) if old else 0.0,
        "last_old_answer_sent_s": round(max(at for at, _ in old), 2) if old else 0.0,
        "first_new_answer_received_s": min((round(got, 2) for got, _ in fresh), default=None),
        "new_answers": len(fresh),
        "new_answers_state_the_figure": bool(fresh) and all(figure in answer for _, answer in fresh),
        "answers": len(seen),
    }


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for i, clients in enumerate((1, 8)):
        values = [r[f"answers_per_s_{clients}"] for r in rows]
        bars = ax.bar([x + (i - 0.5) * width for x in range(len(rows))], values, width, label=f"{clients} client(s)")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(rows)), [r["server"] for r in rows], fontsize=8)
    ax.set_ylabel("answers/s (median of runs)")
    ax.set_title("one machine, 2 cores: answers/s by server", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def loopback_only() -> bool:
    """Whether this process's network namespace has only the loopback interface (``unshare -n``)."""
    import socket

    return {name for _, name in socket.if_nameindex()} == {"lo"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--requests", type=int, default=32, help="requests a run (8 clients: 4 each)")
    p.add_argument("--out", type=Path, help="write cluster.json and cluster.png here")
    p.add_argument(
        "--follow",
        action="store_true",
        help="only: serve QA_INDEX_DIR with 2 replicas and time a POSTed document until both answer from it",
    )
    args = p.parse_args(argv)
    if not loopback_only():
        print(
            "error: run this inside a private network namespace (Ray would talk over the external interface):\n"
            "  unshare -n sh -c 'ip link set lo up && exec python -m eval.cluster ...' (make bench-cluster does)",
            file=sys.stderr,
        )
        return 2
    if args.follow:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _start(2, port, Path(os.environ.get("TMPDIR", "/tmp")) / "bench-cluster-follow.log")
        try:
            print(f"ready in {wait_ready(base, proc, 600):.0f} s", flush=True)
            results = [follow(base) for _ in range(args.runs)]
        finally:
            _stop(proc)
        for r in results:
            print(json.dumps(r), flush=True)
        return 0

    cores = os.cpu_count() or 1
    rows = []
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    for name, replicas in SERVERS:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _start(replicas, port, log_dir / f"bench-cluster-{replicas or 0}.log")
        try:
            ready = wait_ready(base, proc, 600)
            rate(base, 2, 4)  # warm up both replicas' first batches
            row = {"server": name, "replicas": replicas or 0, "ready_s": round(ready, 1)}
            for clients in (1, 8):
                runs = [rate(base, clients, args.requests) for _ in range(args.runs)]
                row[f"answers_per_s_{clients}"] = round(statistics.median(runs), 2)
                row[f"runs_{clients}"] = [round(r, 2) for r in runs]
            row["answers_per_s_per_core_8"] = round(row["answers_per_s_8"] / cores, 2)
            rows.append(row)
            print(
                f"{name:>22}: ready in {ready:4.0f} s; 1 client {row['answers_per_s_1']:.2f} answers/s, "
                f"8 clients {row['answers_per_s_8']:.2f} ({row['answers_per_s_per_core_8']:.2f} a core)",
                flush=True,
            )
        finally:
            _stop(proc)
    base_rate = rows[0]["answers_per_s_8"]
    for row in rows:
        row["vs_single_8"] = round(row["answers_per_s_8"] / base_rate, 2)
    print("8 clients, against the single process: " + ", ".join(f"{r['server']} {r['vs_single_8']}x" for r in rows))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"cores": cores, "requests_per_run": args.requests, "runs": args.runs, "servers": rows}
        (args.out / "cluster.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        plot(rows, args.out / "cluster.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

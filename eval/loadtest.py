"""Load test over loopback: ``python -m eval.loadtest`` (or ``make loadtest``).

Starts ``qa serve`` on a free 127.0.0.1 port (or uses ``--url``, which must be a loopback address).
First the batching comparison: the same requests from one client at a time, then from ``--clients``
clients at once (the server batches them), with answers/s and their ratio from the same run. Then the
overload run: a bounded number of concurrent requests, half ``POST /v1/ask`` and half streaming
``POST /v1/chat/completions``, and prints throughput, latency percentiles per kind, status counts,
how fast a full queue answers 429, and the server's RSS before and after. Bounded by ``--requests``
and ``--max-seconds``; it stops by itself. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx

from eval.bench import QUESTIONS
from eval.metrics import percentile

RSS_GROWTH_BOUND_MIB = 64


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300.0, log: Path | None = None) -> float:
    """Seconds until the server at ``base`` answers ``/readyz`` with 200; `RuntimeError` when ``proc``
    exits first or ``timeout`` passes (naming ``log``)."""
    see = f"; see {log}" if log else ""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}{see}")
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s{see}")


def _rss_mib(base: str) -> tuple[float, float]:
    """The server's (resident, peak resident) memory in MiB, from one read of ``/metrics``."""
    text = httpx.get(f"{base}/metrics", timeout=10).text

    def mib(metric: str) -> float:
        m = re.search(rf"^{metric} ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) / 2**20 if m else float("nan")

    return mib("process_resident_memory_bytes"), mib("qa_process_peak_resident_memory_bytes")


def _mean_batch(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = re.search(r"^qa_batch_size_sum ([0-9.e+]+)$", text, re.M)
    count = re.search(r"^qa_batch_size_count ([0-9.e+]+)$", text, re.M)
    return float(total.group(1)) / max(float(count.group(1)), 1) if total and count else float("nan")


async def _one(client: httpx.AsyncClient, n: int) -> tuple[str, int, float, str]:
    question = QUESTIONS[n % len(QUESTIONS)]
    start = time.perf_counter()
    if n % 2 == 0:
        r = await client.post("/v1/ask", json={"question": question})
        return "ask", r.status_code, time.perf_counter() - start, r.headers.get("retry-after", "")
    body = {"model": "newsqa", "messages": [{"role": "user", "content": question}], "stream": True}
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        async for _ in r.aiter_lines():
            pass
        return "stream", r.status_code, time.perf_counter() - start, r.headers.get("retry-after", "")


async def _drive(base: str, total: int, concurrency: int, max_seconds: float) -> list[tuple[str, int, float]]:
    results: list[tuple[str, int, float]] = []
    deadline = time.monotonic() + max_seconds
    counter = iter(range(total))
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def worker() -> None:
            for n in counter:
                while time.monotonic() < deadline:  # a 429 is recorded, then retried after Retry-After
                    try:
                        kind, status, seconds, retry_after = await _one(client, n)
                    except httpx.HTTPError as exc:
                        results.append(("error", 0, 0.0))
                        print(f"request {n}: {type(exc).__name__}", file=sys.stderr)
                        break
                    results.append((kind, status, seconds))
                    if status != 429:
                        break
                    await asyncio.sleep(float(retry_after or 1))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a running server on loopback (default: start one)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=12, help="clients at once (above the queue size -> 429s)")
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the batching comparison")
    parser.add_argument("--compare-requests", type=int, default=48, help="requests per batching-comparison run")
    args = parser.parse_args(argv)

    proc = None
    base = args.url
    if base is None:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"newsqa-loadtest-{port}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--port", str(port)], stdout=log, stderr=log)
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                print(f"server exited; see {log.name}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    elif not _loopback(base):
        print("refusing: --url must be a loopback address (127.0.0.0/8, localhost or ::1)", file=sys.stderr)
        return 2
    try:
        # Warm up every stage (some questions abstain before the generator runs; its memory-mapped
        # weights only count towards RSS once used), so the RSS bound measures growth, not first use.
        for q in QUESTIONS:
            httpx.post(f"{base}/v1/ask", json={"question": q}, timeout=120)
        rates = {}
        for clients in (1, args.clients):
            t = time.perf_counter()
            done = asyncio.run(_drive(base, args.compare_requests, clients, args.max_seconds))
            seconds = time.perf_counter() - t
            good = [r for r in done if r[1] == 200]
            rates[clients] = len(good) / seconds
            ms = [r[2] * 1000 for r in good]
            print(
                f"{clients:2d} client(s): {len(good)}/{args.compare_requests} answered in {seconds:5.1f} s, "
                f"{rates[clients]:.2f} answers/s, p50 {percentile(ms, 0.5):.0f} ms, "
                f"errors {sum(r[1] != 200 for r in done)}"
            )
        print(
            f"batching: {args.clients} clients get {rates[args.clients] / rates[1]:.2f}x the answers/s of one "
            f"(mean batch so far {_mean_batch(base):.2f} requests)\n"
        )
        time.sleep(0.5)  # RSS is read idle: the worker gives freed memory back once its queue is empty
        rss_before, _ = _rss_mib(base)
        t = time.perf_counter()
        results = asyncio.run(_drive(base, args.requests, args.concurrency, args.max_seconds))
        elapsed = time.perf_counter() - t
        time.sleep(0.5)
        rss_after, rss_peak = _rss_mib(base)
        health = [httpx.get(f"{base}/healthz").elapsed.total_seconds() * 1000 for _ in range(5)]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)

    ok = [r for r in results if r[1] == 200]
    print(
        f"{len(ok)} of {args.requests} requests answered ({len(results)} attempts; a 429 is retried after its "
        f"Retry-After) in {elapsed:.1f} s with {args.concurrency} clients: {len(ok) / elapsed:.2f} answers/s"
    )
    print("status counts:", dict(sorted(Counter(r[1] for r in results).items())))
    for kind in ("ask", "stream"):
        ms = [r[2] * 1000 for r in ok if r[0] == kind]
        if ms:
            print(
                f"  {kind:6s} 200s: n={len(ms):3d}  p50 {percentile(ms, 0.5):7.0f} ms  p95 {percentile(ms, 0.95):7.0f} ms  "
                f"p99 {percentile(ms, 0.99):7.0f} ms"
            )
    refused = [r[2] * 1000 for r in results if r[1] == 429]
    if refused:
        print(
            f"  429s: n={len(refused)}  p50 {percentile(refused, 0.5):.1f} ms  max {max(refused):.1f} ms (target ~100 ms)"
        )
    print(f"  /healthz after the run: p50 {percentile(health, 0.5):.1f} ms")
    growth = rss_after - rss_before
    verdict = "within" if growth <= RSS_GROWTH_BOUND_MIB else "OVER"
    print(
        f"server RSS {rss_before:.0f} MiB -> {rss_after:.0f} MiB ({growth:+.0f} MiB; {verdict} the "
        f"{RSS_GROWTH_BOUND_MIB} MiB bound); peak {rss_peak:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How many answers a second can this machine's arithmetic give at most? (``make bench-ceiling``)

Batching and faster runtimes remove overhead; they cannot remove the arithmetic of the models. This
counts the floating-point operations of answering each question of an eval set (the embedder, the
reader and the generator, as torch executes them: ``torch.utils.flop_counter``, with the eager
transformers generator, which does the same arithmetic as the other runtimes), measures the best
float32 matrix-multiply rate of the machine's cores, and prints the ceiling = rate / operations per
answer, beside a measured answers/s to compare (``--measured``: one client at a time in ``make
loadtest``, which asks the same questions). Retrieval's FAISS and BM25 work is not counted (well under 1%).

Example::

    python -m research.ceiling --measured 3.3
    # ... ceiling 10.9 answers/s: 3.3x one client at a time, at 100% of the best multiply rate
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (512, 576, 1536), (768, 384, 1536))


def matmul_gflops(threads: int, repeat: int = 5) -> dict[str, float]:
    """Median float32 GFLOP/s of torch matrix multiplies per shape (m, k, n), at ``threads`` threads.

    Example: matmul_gflops(2)["1024x1024x1024"] -> 180.3 (machine-dependent)
    """
    import torch

    torch.set_num_threads(threads)
    out = {}
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(2):
            a @ b
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(10):
                a @ b
            runs.append(10 * 2 * m * k * n / (time.perf_counter() - t) / 1e9)
        out[f"{m}x{k}x{n}"] = statistics.median(runs)
    return out


def flops_per_answer(questions: Sequence[tuple[str, list]]) -> tuple[list[float], list[str], float]:
    """GFLOP of answering each (question, chat history) in process, as the runtimes compute it.

    Counted on the eager generator, then the system turn's own prefill is taken off each generator
    call, since CTranslate2 and OpenVINO compute that shared prefix once and reuse its cache. Returns
    (GFLOP per question, answer mode per question, GFLOP of the system turn).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from qa.config import Settings
    from qa.generate import build_messages, split_system_turn
    from qa.pipeline import Pipeline

    pipeline = Pipeline.from_settings(Settings(generator_runtime="transformers"))
    generator, calls = pipeline.generator, [0]
    generate = generator.generate

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls[0] += 1
        return generate(*args, **kwargs)

    generator.generate = counted
    generator.warm_up()
    head, _ = split_system_turn(generator.tokenizer, build_messages("q", "a", "s"), {})
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        generator.model(torch.tensor([head]))
    system = counter.get_total_flops() / 1e9
    gflop, modes = [], []
    for question, history in questions:
        counter, calls[0] = FlopCounterMode(display=False), 0
        with counter, torch.inference_mode():
            answer = pipeline.ask(question, history=history)
        gflop.append(counter.get_total_flops() / 1e9 - calls[0] * system)
        modes.append(answer.mode.value)
    return gflop, modes, system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", type=Path, help="an eval file; default: the 14 questions `make loadtest` and `make bench` ask"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--measured", type=float, help="answers/s measured at one client, to compare")
    args = parser.parse_args(argv)

    rates = matmul_gflops(args.threads)
    print(f"float32 matrix multiply, {args.threads} threads (median of 5):")
    for shape, rate in rates.items():
        print(f"  {shape:16s} {rate:7.1f} GFLOP/s")
    peak = max(rates.values())

    if args.dataset:
        from eval.dataset import load_dataset

        questions, source = [(i.question, i.history) for i in load_dataset(args.dataset)], args.dataset.as_posix()
    else:
        from eval.bench import QUESTIONS

        questions, source = [(q, []) for q in QUESTIONS], "the load test's questions"
    gflop, modes, system = flops_per_answer(questions)
    answered = [g for g, m in zip(gflop, modes, strict=True) if m != "abstained"]
    mean = statistics.fmean(gflop)
    print(
        f"\narithmetic per answer on {source} ({len(gflop)} questions; the generator's "
        f"system turn, {system:.1f} GFLOP, counted once, as the runtimes cache it):"
    )
    print(f"  mean {mean:.1f} GFLOP, median {statistics.median(gflop):.1f}, max {max(gflop):.1f}")
    if answered:
        print(f"  answered ({len(answered)}): mean {statistics.fmean(answered):.1f} GFLOP")
    ceiling = peak / mean
    print(f"\nceiling at the best multiply rate: {ceiling:.2f} answers/s")
    if args.measured:
        print(f"measured one client at a time: {args.measured:.2f} answers/s")
        print(f"  the most batching can give: {ceiling / args.measured:.2f}x one client at a time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

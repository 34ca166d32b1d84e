"""Decoder benchmark: ``make bench-decoders`` (or ``python -m research.decoders``).

Runs the packaged generator (SmolLM2-135M-Instruct) on the prompts the pipeline really sends (the
eval sets' questions, the reader's span and its sentence, recorded by answering them with a generator
that only records), in every runtime that installs from a wheel beside transformers 5, in one run:

- ``eager``: transformers ``generate`` in fp32, the reference and the path for ``QA_GENERATOR=local``;
- ``compile``: transformers with a static KV cache and ``torch.compile`` (its start-up cost is shown);
- ``ct2-float32`` / ``ct2-int8``: CTranslate2;
- ``ov-f32`` / ``ov-bf16``: OpenVINO, on this project's own export (``qa/generate/openvino_runtime.py``), at
  the CPU plugin's fp32 or bf16 inference precision.

Measured elsewhere and reported in the README: ONNX Runtime through optimum-onnx (needs transformers <
4.58) and optimum-intel's own OpenVINO export (needs transformers < 5.6 and a CUDA torch) do not install
beside this stack; OpenVINO GenAI reading the packaged GGUF directly does install, but its legacy GGUF
reader decodes this Q4_1 file into text unrelated to the prompt (0 of 24 answers match).

For each: load time, time to the first token (prompt prefill), decoding tokens/s after it, tokens/s
over the whole answer, a batch of 8 prompts at once, and how many greedy answers differ from eager's.
Prints medians and same-run ratios against eager; writes a JSON and a chart; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from qa.generate import Message, build_messages, clean_generation

RUNTIMES = ("eager", "compile", "ct2-float32", "ct2-int8", "ov-f32", "ov-bf16")


def recorded_prompts(limit: int) -> list[list[Message]]:
    """The phrasing prompts the pipeline sends for the eval sets' answered questions."""
    from eval.dataset import load_dataset
    from qa.config import Settings
    from qa.pipeline import Pipeline

    sent: list[list[Message]] = []

    class Recorder:
        model_id = "recorder"

        def generate(self, messages, *, max_new_tokens, should_stop=None):  # noqa: ANN001
            sent.append(list(messages))
            return ""

    pipeline = Pipeline.from_settings(Settings(generator="none"))
    pipeline.generator = Recorder()
    for dataset in (Path("eval/datasets/seed.yaml"), Path("eval/datasets/rephrased.yaml")):
        for item in load_dataset(dataset):
            pipeline.ask(item.question, history=item.history)
    if not sent:  # the reader abstained everywhere (another reader): fall back to a fixed prompt
        sent.append(build_messages("How many staff?", "300", "The firm employs 300 people."))
    return sent[:limit]


class Timing:
    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.decode_tps: list[float] = []
        self.total_tps: list[float] = []
        self.total_ms: list[float] = []


def _eager(model_dir: Path, threads: int, compiled: bool) -> tuple[Callable, Callable]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    for name in ("temperature", "top_p", "top_k"):
        setattr(model.generation_config, name, None)
    if compiled:
        model.generation_config.cache_implementation = "static"
        model.forward = torch.compile(model.forward)  # recompiles per new prompt length until it goes dynamic

    def stream(messages: Sequence[Message], max_new_tokens: int, on_token: Callable[[], None]) -> str:
        from transformers import StoppingCriteria, StoppingCriteriaList

        inputs = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        n = inputs["input_ids"].shape[1]

        class Tick(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:  # type: ignore[override]
                on_token()
                return "\n" in tokenizer.decode(input_ids[0, n:], skip_special_tokens=True).strip()

        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([Tick()]),
                pad_token_id=tokenizer.eos_token_id,
            )
        return tokenizer.decode(out[0, n:], skip_special_tokens=True)

    def batch(prompts: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        return [stream(p, max_new_tokens, lambda: None) for p in prompts]  # no batched path: one by one

    return stream, batch


def _batched(gen) -> tuple[Callable, Callable]:  # noqa: ANN001 - a warmed generator with generate_batch
    from qa.generate import GenerationRow

    def stream(messages: Sequence[Message], max_new_tokens: int, on_token: Callable[[], None]) -> str:
        def tick(text: str) -> bool:
            on_token()
            return False

        return gen.generate(messages, max_new_tokens=max_new_tokens, should_stop=tick)

    def batch(prompts: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        return gen.generate_batch([GenerationRow(p) for p in prompts], max_new_tokens=max_new_tokens)

    return stream, batch


def _ct2(model_dir: Path, threads: int, compute: str) -> tuple[Callable, Callable]:
    from qa.generate import CTranslate2Generator, convert_to_ctranslate2

    gen = CTranslate2Generator(convert_to_ctranslate2(model_dir, compute), threads=threads)
    gen.warm_up()
    return _batched(gen)


def _openvino(model_dir: Path, threads: int, precision: str) -> tuple[Callable, Callable]:
    from qa.generate.openvino_runtime import OpenVINOGenerator, export_openvino

    gen = OpenVINOGenerator(export_openvino(model_dir), threads=threads, precision=precision)
    gen.warm_up()
    return _batched(gen)


def measure(name: str, model_dir: Path, prompts: list[list[Message]], args: argparse.Namespace) -> dict:
    if name == "compile":  # each new prompt length recompiles (about a minute each on 2 cores): a few suffice
        prompts = prompts[: args.compile_prompts]
    t = time.perf_counter()
    if name in ("eager", "compile"):
        stream, batch = _eager(model_dir, args.threads, compiled=name == "compile")
    elif name.startswith("ov-"):
        stream, batch = _openvino(model_dir, args.threads, name.removeprefix("ov-"))
    else:
        stream, batch = _ct2(model_dir, args.threads, name.removeprefix("ct2-"))
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    stream(prompts[0], args.max_new_tokens, lambda: None)  # warm-up (torch.compile compiles here)
    first_call_s = time.perf_counter() - t

    timing, outputs = Timing(), []
    for messages in prompts:
        for rep in range(args.repeat):
            marks: list[float] = []
            t = time.perf_counter()
            text = stream(messages, args.max_new_tokens, lambda m=marks: m.append(time.perf_counter()))
            end = time.perf_counter()
            if rep == 0:
                outputs.append(clean_generation(text))
            if len(marks) >= 2:
                timing.ttft.append((marks[0] - t) * 1000)
                timing.decode_tps.append((len(marks) - 1) / (marks[-1] - marks[0]))
                timing.total_tps.append(len(marks) / (end - t))
                timing.total_ms.append((end - t) * 1000)
    group = prompts[: args.batch]
    t = time.perf_counter()
    batched = batch(group, args.max_new_tokens)
    batch_s = time.perf_counter() - t
    return {
        "runtime": name,
        "load_s": round(load_s, 2),
        "first_call_s": round(first_call_s, 2),
        "ttft_ms_p50": round(statistics.median(timing.ttft), 1),
        "decode_tokens_per_s_p50": round(statistics.median(timing.decode_tps), 1),
        "answer_tokens_per_s_p50": round(statistics.median(timing.total_tps), 1),
        "answer_ms_p50": round(statistics.median(timing.total_ms), 1),
        f"batch{len(group)}_s": round(batch_s, 2),
        "answers_per_s_batched": round(len(group) / batch_s, 2),
        "outputs": outputs,
        "batched_outputs": [clean_generation(x) for x in batched],
    }


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["runtime"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, title in zip(
        axes,
        ("decode_tokens_per_s_p50", "answer_ms_p50", "answers_per_s_batched"),
        ("decoding tokens/s (batch 1)", "answer ms p50 (batch 1)", "answers/s, batch of 8"),
        strict=True,
    ):
        ax.bar(names, [r[key] for r in results], color=["#888", "#aaa", "#2a7", "#27a", "#d73", "#e95"][: len(names)])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("SmolLM2-135M-Instruct on 2 CPU cores: runtimes on the pipeline's prompts", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--prompts", type=int, default=24, help="recorded prompts to decode")
    parser.add_argument("--repeat", type=int, default=3, help="runs per prompt (medians reported)")
    parser.add_argument("--batch", type=int, default=8, help="prompts decoded together in the batch measurement")
    parser.add_argument("--compile-prompts", type=int, default=4, help="prompts for torch.compile (it recompiles)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("eval/out/decoders"), help="folder for the JSON and chart")
    args = parser.parse_args(argv)

    from qa.config import Settings
    from qa.generate import convert_packaged_model

    model_dir = convert_packaged_model(Path(Settings().cache_dir), print)
    prompts = recorded_prompts(args.prompts)
    print(f"{len(prompts)} recorded phrasing prompts; {args.repeat} runs each; {args.threads} threads")
    results = []
    for name in args.runtimes:
        print(f"\n{name} ...", flush=True)
        results.append(measure(name, model_dir, prompts, args))
    base = next((r for r in results if r["runtime"] == "eager"), results[0])
    print(
        f"\n{'runtime':12} {'load s':>7} {'1st call s':>10} {'ttft ms':>8} {'decode tok/s':>13} "
        f"{'answer ms':>10} {'x eager':>8} {'batch ans/s':>12} {'differs':>8}"
    )
    for r in results:
        differ = sum(a != b for a, b in zip(r["outputs"], base["outputs"], strict=False))
        batch_differ = sum(a != b for a, b in zip(r["batched_outputs"], r["outputs"], strict=False))
        r["differs_from_eager"] = differ
        r["batched_differs_from_batch1"] = batch_differ
        print(
            f"{r['runtime']:12} {r['load_s']:7.2f} {r['first_call_s']:10.2f} {r['ttft_ms_p50']:8.1f} "
            f"{r['decode_tokens_per_s_p50']:13.1f} {r['answer_ms_p50']:10.1f} "
            f"{base['answer_ms_p50'] / r['answer_ms_p50']:7.2f}x {r['answers_per_s_batched']:12.2f} "
            f"{differ:>4}/{len(r['outputs'])}"
        )
    for r in results:
        for i, (a, b) in enumerate(zip(r["outputs"], base["outputs"], strict=False)):
            if a != b:
                print(f"  {r['runtime']} prompt {i}: {a!r}  (eager: {b!r})")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoders.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    chart(results, args.out / "decoders.png")
    print(f"\nwrote {args.out / 'decoders.json'} and {args.out / 'decoders.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

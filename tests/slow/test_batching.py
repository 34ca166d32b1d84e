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


@pytest.mark.parametrize("compute", ["float32"])
def test_ctranslate2_gives_eager_transformers_greedy_answers(real_settings, compute):
    """The default runtime decodes what the reference (eager transformers) decodes on the same prompts."""
    from pathlib import Path

    from qa.generate import (
        CTranslate2Generator,
        TransformersGenerator,
        build_messages,
        convert_packaged_model,
        convert_to_ctranslate2,
    )

    model_dir = convert_packaged_model(Path(real_settings.cache_dir))
    fast = CTranslate2Generator(convert_to_ctranslate2(model_dir, compute))
    reference = TransformersGenerator(model_dir)
    prompts = [
        build_messages("How many trusts?", "171", "CSC was contracted to cover 171 NHS trusts and 4,400 GP practices."),
        build_messages("Who is the president?", "Guy Hains", "CSC’s president of healthcare Guy Hains said so."),
        build_messages("When?", "1 June", "The deadline had been extended until 1 June."),
    ]
    for messages in prompts:
        assert fast.generate(messages, max_new_tokens=32) == reference.generate(messages, max_new_tokens=32)

"""The committed reader on texts that are in no eval file: real spans, real abstentions."""

from __future__ import annotations

import pytest

from qa.reader.reader import TransformerReader

LIBRARY = (
    "The Riverside Library reopened on 4 May 2019 after a £3m refurbishment paid for by the Wexford Trust. "
    "Its chief librarian, Maria Okafor, said visitor numbers had doubled to 80,000 a year since the works."
)
FERRY = (
    "A new ferry between Portmere and the island of Skelda will start in April. The crossing takes 40 minutes "
    "and a return ticket will cost £12. The council expects 150,000 passengers in the first year."
)


@pytest.fixture(scope="module")
def reader() -> TransformerReader:
    r = TransformerReader()
    r.warm_up()
    return r


def _answer(reader, question, text):
    (reading,) = reader.read(question, [text])
    return reading.span if reading.margin >= reader.threshold else None


ANSWERABLE = [
    ("How much did the refurbishment cost?", LIBRARY, "£3m"),
    ("Who is the chief librarian?", LIBRARY, "Maria Okafor"),
    ("When did the library reopen?", LIBRARY, "4 May 2019"),
    ("Who paid for the works?", LIBRARY, "Wexford Trust"),
    ("How long is the crossing?", FERRY, "40 minutes"),
    ("How many passengers does the council expect?", FERRY, "150,000"),
    ("What does a return ticket cost?", FERRY, "£12"),
]
UNANSWERABLE = [
    ("How many books does the library hold?", LIBRARY),
    ("Who designed the new ferry?", FERRY),
    ("What is the capital of Australia?", LIBRARY),
]


@pytest.mark.parametrize(("question", "text", "expected"), ANSWERABLE)
def test_real_spans(reader, question, text, expected):
    (reading,) = reader.read(question, [text])
    assert reading.span is not None and expected in reading.span, reading
    assert len(reading.span) <= 3 * len(expected) + 10, reading.span  # the answer, not the sentence


def test_answerable_questions_outscore_unanswerable_ones(reader):
    answerable = [reader.read(q, [t])[0].margin for q, t, _ in ANSWERABLE]
    unanswerable = [reader.read(q, [t])[0].margin for q, t in UNANSWERABLE]
    assert min(answerable) > max(unanswerable), (answerable, unanswerable)


def test_the_calibrated_margin_answers_most_and_refuses_the_rest(reader):
    """Measured: 5 of the 7 answered at the SQuAD-calibrated margin (it is conservative; see the model card)."""
    answered = [_answer(reader, q, t) for q, t, _ in ANSWERABLE]
    assert sum(a is not None for a in answered) >= 5, answered


@pytest.mark.parametrize(("question", "text"), UNANSWERABLE)
def test_real_abstentions(reader, question, text):
    assert _answer(reader, question, text) is None


def test_the_answer_is_found_among_several_passages(reader):
    readings = reader.read("How much will a return ticket cost?", [LIBRARY, FERRY])
    best = max(readings, key=lambda r: r.margin)
    assert best.passage == 1 and "£12" in best.span
    assert readings[0].margin < readings[1].margin


def test_int8_reader_agrees_on_the_easy_spans(reader):
    int8 = TransformerReader(quantize=True)
    for question, text in (("How long is the crossing?", FERRY), ("Who is the chief librarian?", LIBRARY)):
        assert int8.read(question, [text])[0].span == reader.read(question, [text])[0].span


def test_bf16_reader_reads_as_fp32_does(reader):
    """The bfloat16 reader (QA_READER_DTYPE=bfloat16) keeps every span, margins within 0.25."""
    bf16 = TransformerReader(dtype="bfloat16")
    assert bf16.bf16 and "bf16" in bf16.model_id
    cases = [(q, t) for q, t, _ in ANSWERABLE] + UNANSWERABLE
    for question, text in cases:
        (fp32,) = reader.read(question, [text])
        (half,) = bf16.read(question, [text])
        assert half.span == fp32.span, (question, half, fp32)
        assert abs(half.margin - fp32.margin) < 0.25, (question, half.margin, fp32.margin)


def test_padded_windows_read_as_unpadded_ones(reader, monkeypatch):
    """Padding the windows to a multiple of 32 tokens (fewer kernel shapes) changes no span or margin."""
    import qa.reader.reader as reader_module

    cases = [(q, t) for q, t, _ in ANSWERABLE] + UNANSWERABLE
    padded = [reader.read(question, [text, LIBRARY + " " + FERRY])[0] for question, text in cases]
    monkeypatch.setattr(reader_module, "PAD_MULTIPLE", 1)
    for (question, text), p in zip(cases, padded, strict=True):
        (unpadded,) = reader.read(question, [text, LIBRARY + " " + FERRY])[:1]
        assert unpadded.span == p.span, question
        assert abs(unpadded.margin - p.margin) < 1e-3, (question, unpadded.margin, p.margin)


def test_questions_read_together_read_as_each_alone(reader):
    """Windows of many questions are batched by length, each batch cut to its own longest window."""
    cases = [(q, t) for q, t, _ in ANSWERABLE] + UNANSWERABLE
    items = [(q, [t[: 40 + 25 * k], (LIBRARY + " " + FERRY) * (1 + k % 3)]) for k, (q, t) in enumerate(cases)]
    small = TransformerReader(batch_size=3)  # several batches, each mixing windows of different questions
    small._models, small._tokenizer = reader._models, reader._tokenizer
    together = small.read_many(items)
    for (question, passages), readings in zip(items, together, strict=True):
        for alone, batched in zip(reader.read(question, passages), readings, strict=True):
            assert (alone.span, alone.passage) == (batched.span, batched.passage), question
            assert abs(alone.margin - batched.margin) < 1e-3, (question, alone.margin, batched.margin)


def test_a_second_member_is_averaged_in_and_checked(tmp_path):
    import copy
    import json
    import shutil

    import numpy as np
    import torch

    from qa.errors import ModelNotFound
    from qa.reader.reader import CONFIG_FILE, MODEL_DIR
    from train.export import add_member

    model_dir = tmp_path / "model"  # the shipped reader cut down to its first member
    shutil.copytree(MODEL_DIR, model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    for member in config.pop("members", [])[1:]:
        (model_dir / member["weights"]).unlink()
    (model_dir / CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")
    reader = TransformerReader(model_dir)
    reader.warm_up()
    checkpoint = tmp_path / "tripled"
    tripled = copy.deepcopy(reader._models[0])  # the first member with its head's logits three times as large
    with torch.no_grad():
        tripled.qa_outputs.weight.mul_(3)
        tripled.qa_outputs.bias.mul_(3)
    tripled.save_pretrained(checkpoint)
    config = add_member(checkpoint, model_dir, "reader-delta-b.safetensors")
    assert [m["weights"] for m in config["members"]] == ["reader-delta.safetensors", "reader-delta-b.safetensors"]
    pair = TransformerReader(model_dir)
    pair.warm_up()
    assert len(pair._models) == 2 and pair._models[1].bert.embeddings is pair._models[0].bert.embeddings
    shared, base = (m.bert.embeddings.word_embeddings.weight for m in (pair._models[0], reader._models[0]))
    assert torch.equal(shared, base)  # held once, and still the base's
    question, texts = "How much will a return ticket cost?", [FERRY, LIBRARY]
    for one, two in zip(reader.read(question, texts), pair.read(question, texts), strict=True):
        # the mean of x and 3x logits is 2x: the same span, twice the margin (within fp16 rounding)
        assert one.span == two.span and np.isclose(2 * one.margin, two.margin, rtol=0.02, atol=0.05)
    (model_dir / "reader-delta-b.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ModelNotFound, match="reader-delta-b.safetensors.*sha256"):
        TransformerReader(model_dir).warm_up()
    with pytest.raises(ValueError, match="own .safetensors"):
        add_member(checkpoint, model_dir, "reader-delta.safetensors")

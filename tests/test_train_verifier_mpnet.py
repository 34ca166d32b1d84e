"""The verifier's mpnet recipe (train.verifier --base mpnet), fast: on a tiny randomly initialised MPNet,
the cached frozen prefix plus the top layers gives the full model's logits, the cache resumes by shard,
only the top layers and the head train and export, and the packaged part-wheels join into one folder."""

from __future__ import annotations

import io
import json
import zipfile
from importlib.metadata import PackageNotFoundError, distribution

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from train.mpnet import (  # noqa: E402
    BASE_FILE,
    MPNET_PARTS,
    PrefixCache,
    cache_fingerprint,
    freeze_below,
    mpnet_export_bytes,
    mpnet_trained_keys,
    packaged_mpnet_path,
    prefix_states,
    top_logits,
)
from train.verifier import collate, encode, export, main, trainable_state  # noqa: E402

TINY = {
    "vocab_size": 60,
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 80,
    "relative_attention_num_buckets": 32,
    "initializer_range": 0.3,  # large, so the logits differ by more than the float error checked
    "pad_token_id": 1,
    "num_labels": 3,
}
LENGTHS = (5, 17, 9, 30, 12, 3, 22)  # more than one shard of 3, and padding within every batch


def tiny_model():  # noqa: ANN201
    torch.manual_seed(0)
    model = transformers.MPNetForSequenceClassification(transformers.MPNetConfig(**TINY))
    return model.eval()


def tiny_feats() -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    return [
        {"input_ids": [0, *torch.randint(3, 60, (n - 2,), generator=gen).tolist(), 2], "label": k % 3}
        for k, n in enumerate(LENGTHS)
    ]


def full_logits(model, feats: list[dict]):  # noqa: ANN001, ANN201
    batch = collate(feats, pad_id=1)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_the_frozen_prefix_and_the_top_layers_give_the_full_models_logits():
    model, feats = tiny_model(), tiny_feats()
    batch = collate(feats, pad_id=1)
    with torch.no_grad():
        states = prefix_states(model, batch["input_ids"], batch["attention_mask"], 3)
        split = top_logits(model, states, batch["attention_mask"], 3)
    full = full_logits(model, feats)
    assert full.std() > 0.1  # not all near zero: the comparison means something
    torch.testing.assert_close(split, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bf16", [False, True])
def test_cached_states_give_the_full_models_logits_within_half_precision(tmp_path, bf16):
    model, feats = tiny_model(), tiny_feats()
    lengths = [len(f["input_ids"]) for f in feats]
    cache = PrefixCache(tmp_path / "cache", cache_fingerprint("mpnet", 2, bf16, feats), lengths, 32, shard_size=3)
    assert cache.fill(model, feats, 2, pad_id=1, batch_size=2, bf16=bf16)["built"] == len(feats)
    order = [3, 0, 6, 1, 5, 2, 4]  # across shards, padded to the longest again
    states, mask = cache.batch(order)
    assert states.dtype == torch.float32 and mask.sum(1).tolist() == [LENGTHS[j] for j in order]
    with torch.no_grad():
        cached = top_logits(model, states, mask, 2)
    full = full_logits(model, [feats[j] for j in order])
    tolerance = 0.003 * full.abs().max().item()  # fp16 storage keeps 11 bits
    if bf16:  # and the prefix computed in bf16 errs no more than the full model run in bf16 does
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            tolerance += 1.5 * (full_logits(model, [feats[j] for j in order]).float() - full).abs().max().item()
    assert (cached - full).abs().max().item() <= tolerance


def test_the_cache_resumes_by_shard_and_refuses_other_examples(tmp_path):
    model, feats = tiny_model(), tiny_feats()
    lengths = [len(f["input_ids"]) for f in feats]
    fingerprint = cache_fingerprint("mpnet", 2, False, feats)
    cache = PrefixCache(tmp_path, fingerprint, lengths, 32, shard_size=3)
    cache.fill(model, feats, 2, pad_id=1, bf16=False)
    before, _ = cache.batch(range(len(feats)))
    (tmp_path / "shard-00001.npy").unlink()  # killed while writing shard 1 (its states are renamed in last)
    again = PrefixCache(tmp_path, fingerprint, lengths, 32, shard_size=3)
    assert again.missing() == [1]
    assert again.fill(model, feats, 2, pad_id=1, bf16=False)["built"] == 3
    after, _ = again.batch(range(len(feats)))
    torch.testing.assert_close(after, before)
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(ValueError, match="delete it"):
        PrefixCache(tmp_path, cache_fingerprint("mpnet", 3, False, feats), lengths, 32, shard_size=3)


def test_only_the_top_layers_and_the_head_train_checkpoint_and_export(tmp_path):
    model = tiny_model()
    assert freeze_below(model, 1) == 3
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("mpnet.encoder.layer.3.", "classifier.")) for n in trained)
    assert set(trainable_state(model)) == trained  # the checkpoint holds only these
    assert not model.mpnet.encoder.relative_attention_bias.weight.requires_grad  # the frozen layers share it

    model.save_pretrained(tmp_path / "final")
    (tmp_path / "final" / BASE_FILE).write_text(json.dumps({"base": "mpnet", "train_top": 1, "frozen": 3}))
    path = export(tmp_path / "final", tmp_path / "export")
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    assert set(tensors) == trained and all(v.dtype == torch.float16 for v in tensors.values())
    size = sum(v.numel() * v.element_size() for v in tensors.values())
    assert size == mpnet_export_bytes(1, hidden=32, intermediate=64, labels=3)
    record = json.loads((tmp_path / "export" / BASE_FILE).read_text())
    assert record["base"] == "mpnet" and record["train_top"] == 1 and record["bytes"] == path.stat().st_size


def test_the_real_export_fits_50_mb_with_three_layers_not_four():
    assert mpnet_export_bytes(3) < 50_000_000 < mpnet_export_bytes(4)
    assert mpnet_trained_keys(12, 3) == (
        "mpnet.encoder.layer.9.",
        "mpnet.encoder.layer.10.",
        "mpnet.encoder.layer.11.",
        "classifier.",
    )


def test_the_options_refuse_what_does_not_apply():
    for argv in (
        ["--base", "mpnet", "--train-top", "4"],  # over 50 MB
        ["--train-top", "3"],  # minilm trains all its layers
        ["--base", "mpnet", "--init", "reader"],  # the reader is MiniLM
    ):
        with pytest.raises(SystemExit):
            main(argv)


class _Tokenizer:
    """Enough of a tokenizer for `encode`: one id per word, pairs joined like MPNet's."""

    def __init__(self, names: list[str]) -> None:
        self.model_input_names = names

    def __call__(self, questions, windows, truncation, max_length):  # noqa: ANN001, ANN204
        ids = [
            [0, *(len(w) for w in q.split()), 2, 2, *(len(w) for w in d.split()), 2]
            for q, d in zip(questions, windows, strict=True)
        ]
        return {"input_ids": ids, "token_type_ids": [[0] * len(i) for i in ids], "attention_mask": []}


def test_mpnet_rows_carry_no_token_type_ids_and_pad_with_its_pad_id():
    from train.verifier import Example

    examples = [Example("Who won?", "«Ann» won.", 1, "a", "eval"), Example("When?", "In «2004».", 0, "a", "eval")]
    rows = encode(_Tokenizer(["input_ids", "attention_mask"]), examples, 192)
    assert all("token_type_ids" not in r for r in rows)
    assert "token_type_ids" in encode(_Tokenizer(["input_ids", "token_type_ids", "attention_mask"]), examples, 192)[0]
    batch = collate(rows, pad_id=1)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"][1].tolist()[-1] == 1 and batch["attention_mask"][1].tolist()[-1] == 0


def test_the_part_files_join_into_one_model_folder_once(tmp_path):
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as archive:
        archive.writestr("m/1_Pooling/config.json", "{}")
        archive.writestr("m/config.json", json.dumps({"model_type": "mpnet"}))
        archive.writestr("m/model.safetensors", b"\0" * 5000)
    data = blob.getvalue()
    parts = []
    for k, at in enumerate(range(0, len(data), len(data) // 3 + 1)):
        parts.append(tmp_path / f"m.zip.{k + 1:03d}")
        parts[-1].write_bytes(data[at : at + len(data) // 3 + 1])
    folder = packaged_mpnet_path(tmp_path / "cache", parts)
    assert folder == tmp_path / "cache" / "m" and (folder / "model.safetensors").stat().st_size == 5000
    for part in parts:
        part.unlink()
    assert packaged_mpnet_path(tmp_path / "cache", parts) == folder  # extracted once: the parts are not read again
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def _installed() -> bool:
    try:
        distribution(MPNET_PARTS[0][0])
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="the all-mpnet-base-v2 part-wheels are not installed")
def test_the_packaged_mpnet_is_the_one_the_readers_bench_describes():
    from train.bench_readers import MPNET_CONFIG

    config = json.loads((packaged_mpnet_path() / "config.json").read_text(encoding="utf-8"))
    assert {k: config.get(k) for k in MPNET_CONFIG} == MPNET_CONFIG


# -- the reader's --train-top (train.reader): the same cache under a span head ----------------------------
def tiny_reader():  # noqa: ANN201
    torch.manual_seed(0)
    return transformers.MPNetForQuestionAnswering(transformers.MPNetConfig(**{**TINY, "num_labels": 2})).eval()


def test_the_readers_top_layers_on_the_cache_give_its_span_logits_and_loss(tmp_path):
    from train.mpnet import top_span_logits
    from train.reader import cached_span_loss

    model, feats = tiny_reader(), tiny_feats()
    for k, f in enumerate(feats):  # an answer inside each window, or the null answer
        f["start"], f["end"] = (0, 0) if k % 3 == 0 else (1, min(2, len(f["input_ids"]) - 1))
    lengths = [len(f["input_ids"]) for f in feats]
    cache = PrefixCache(tmp_path, cache_fingerprint("mpnet", 3, False, feats), lengths, 32, shard_size=3)
    cache.fill(model, feats, 3, pad_id=1, bf16=False)
    order = [3, 0, 6, 1]
    states, mask = cache.batch(order)
    batch = collate([feats[j] for j in order], pad_id=1)
    starts = torch.tensor([feats[j]["start"] for j in order])
    ends = torch.tensor([feats[j]["end"] for j in order])
    with torch.no_grad():
        start, end = top_span_logits(model, states, mask, 3)
        full = model(**batch, start_positions=starts, end_positions=ends)
        loss = cached_span_loss(model, cache, feats, order, 3, "cpu")
    assert full.start_logits.std() > 0.1
    real = batch["attention_mask"].bool()  # padded positions differ (zero states against pad tokens)
    tolerance = 0.003 * full.start_logits.abs().max().item()
    assert (start - full.start_logits)[real].abs().max().item() <= tolerance
    assert (end - full.end_logits)[real].abs().max().item() <= tolerance
    assert abs(loss.item() - full.loss.item()) < 0.01 * full.loss.item()


@pytest.mark.parametrize("lora", [0, 2])
def test_the_reader_freezes_its_bottom_layers_and_shared_bias(lora):
    from train.lora import add_lora
    from train.mpnet import freeze_reader_below

    model = tiny_reader()
    if lora:
        add_lora(model, lora)
    assert freeze_reader_below(model, 1) == 3
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("mpnet.encoder.layer.3.", "qa_outputs.")) for n in trained)
    assert any(n.startswith("qa_outputs.") for n in trained)
    assert all(("lora_" in n or "LayerNorm" in n or n.startswith("qa_outputs.")) for n in trained) == bool(lora)
    with pytest.raises(ValueError, match="train-top"):
        freeze_reader_below(tiny_reader(), 5)


def test_the_reader_refuses_train_top_without_mpnet():
    from train.reader import main as train_reader

    with pytest.raises(SystemExit):
        train_reader(["--train-top", "3", "--out", "/nonexistent"])

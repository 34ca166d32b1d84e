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

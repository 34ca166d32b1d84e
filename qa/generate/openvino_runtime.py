"""The packaged generator on OpenVINO: exported once from the safetensors copy, decoded in a stateful loop.

Why a hand-written export: optimum-intel (the usual exporter) pins transformers < 5.6 and pulls a CUDA
torch, so it cannot be installed beside this project. The packaged model is a plain Llama (SmolLM2), so
`_llama_module` below re-states its forward pass in ~60 lines of torch with the key/value cache as explicit
inputs and outputs; ``openvino.convert_model`` traces it, and `_make_stateful` hides the cache inside the
compiled model as OpenVINO state (the transformation optimum-intel applies), with a ``beam_idx`` input
that gathers the cache rows to keep. That is what lets a finished row leave a batch: the next step
gathers the remaining rows' cache and the others go on. ``tests/slow/test_batching.py`` checks that it
decodes eager transformers' greedy text, alone and batched, and that a stopped row leaves the others be.

Example (what ``make_generator`` does with ``QA_GENERATOR_RUNTIME=openvino``):

    ir_dir = export_openvino(model_dir)          # once, ~10 s, cached beside the safetensors copy
    gen = OpenVINOGenerator(ir_dir, precision="f32")
    gen.generate(build_messages("How many?", "12", "There are 12."), max_new_tokens=32)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from qa.errors import GeneratorError, ModelNotFound

from . import GenerationRow, Message, StopCheck, _build_once, copy_tokenizer_files, split_system_turn

PRECISIONS = ("f32", "bf16")
_IR = "openvino_model.xml"


def _llama_module(config: dict, weights: Mapping):  # noqa: ANN202 - a torch.nn.Module (torch imported lazily)
    """The Llama forward pass with the cache as tensors: (ids, mask, positions, k0, v0, k1, v1, ...) ->
    (last-position logits, k0', v0', ...). Matches transformers' LlamaForCausalLM (checked in the slow tier)."""
    import torch
    import torch.nn.functional as F

    layers = config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    eps = config["rms_norm_eps"]
    theta = (config.get("rope_parameters") or {}).get("rope_theta") or config.get("rope_theta", 10000.0)
    if (config.get("rope_parameters") or {}).get("rope_type", "default") != "default" or config.get("rope_scaling"):
        raise ModelNotFound("the OpenVINO export supports Llama models with default rotary embeddings only")

    def w(name: str) -> torch.Tensor:
        return weights[name].to(torch.float32)

    class Llama(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Parameter(w("model.embed_tokens.weight"), requires_grad=False)
            # Tied embeddings (SmolLM2) stay one tensor, so the export holds them once (~113 MB less).
            self.tied = "lm_head.weight" not in weights
            if not self.tied:
                self.head = torch.nn.Parameter(w("lm_head.weight"), requires_grad=False)
            self.norm = torch.nn.Parameter(w("model.norm.weight"), requires_grad=False)
            names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
            self.mats = torch.nn.ParameterList()
            self.norms = torch.nn.ParameterList()
            for i in range(layers):
                p = f"model.layers.{i}."
                for n in names:
                    part = "self_attn" if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
                    self.mats.append(torch.nn.Parameter(w(f"{p}{part}.{n}.weight"), requires_grad=False))
                self.norms.append(torch.nn.Parameter(w(f"{p}input_layernorm.weight"), requires_grad=False))
                self.norms.append(torch.nn.Parameter(w(f"{p}post_attention_layernorm.weight"), requires_grad=False))
            inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
            self.register_buffer("inv_freq", inv, persistent=False)

        @staticmethod
        def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

        @staticmethod
        def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            half = x.shape[-1] // 2
            return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

        def forward(self, input_ids, attention_mask, position_ids, *past):  # noqa: ANN001, ANN201
            batch, n = input_ids.shape
            x = F.embedding(input_ids, self.embed)
            freqs = position_ids[:, :, None].to(torch.float32) * self.inv_freq[None, None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos()[:, None], emb.sin()[:, None]
            total = attention_mask.shape[1]
            # Query i sits at absolute column total - n + i: it sees earlier unpadded columns and itself
            # (itself always, so a padding position's row stays finite instead of all -inf).
            cols = torch.arange(total)[None, :]
            rows = (torch.arange(n) + (total - n))[:, None]
            allowed = (cols <= rows)[None, None] & attention_mask[:, None, None, :].bool()
            allowed = allowed | (cols == rows)[None, None]
            present = []
            for i in range(layers):
                q_w, k_w, v_w, o_w, g_w, u_w, d_w = self.mats[i * 7 : i * 7 + 7]
                h = self.rms(x, self.norms[2 * i])
                q = F.linear(h, q_w).view(batch, n, heads, head_dim).transpose(1, 2)
                k = F.linear(h, k_w).view(batch, n, kv_heads, head_dim).transpose(1, 2)
                v = F.linear(h, v_w).view(batch, n, kv_heads, head_dim).transpose(1, 2)
                q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
                k = torch.cat((past[2 * i], k), dim=2)
                v = torch.cat((past[2 * i + 1], v), dim=2)
                present += [k, v]
                # Grouped-query attention as a plain SDPA. (transformers' expand-and-reshape form lets
                # OpenVINO fuse attention with the cache state, ~20% less per step, but its kernel then
                # changes greedy answers, and answers between batched and single rows: measured.)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
                x = x + F.linear(a.transpose(1, 2).reshape(batch, n, heads * head_dim), o_w)
                h = self.rms(x, self.norms[2 * i + 1])
                x = x + F.linear(F.silu(F.linear(h, g_w)) * F.linear(h, u_w), d_w)
            logits = F.linear(self.rms(x[:, -1:, :], self.norm), self.embed if self.tied else self.head)
            return (logits, *present)

    return Llama().eval(), layers, kv_heads, head_dim


def _make_stateful(model, layers: int) -> None:  # noqa: ANN001 - an openvino.Model
    """Hide the cache inputs/outputs as state, with a ``beam_idx`` gather of the rows to keep
    (optimum-intel's ``patch_stateful`` for decoders, restated for this export's names)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13
    from openvino._offline_transformations import apply_make_stateful_transformation

    names_in = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    names_out = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    beam_idx = opset13.parameter(name="beam_idx", dtype=ov.Type.i32, shape=ov.PartialShape([-1]))
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    model.add_parameters([beam_idx])
    for name in names_in:
        port = model.input(name)
        consumers = port.get_target_inputs()
        gather = opset13.gather(port, beam_idx, opset13.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(gather.output(0))
    model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(model, dict(zip(names_in, names_out, strict=True)))
    # Each state starts as zeros of shape (batch, kv_heads, 0, head_dim), the batch read from input_ids.
    ids = model.input("input_ids")
    batch = opset13.gather(opset13.shape_of(ids, output_type="i64"), opset13.constant([0]), opset13.constant(0))
    for op in model.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [d.min_length for d in op.get_output_partial_shape(0)]
            parts = [batch] + [opset13.constant(np.array([d], dtype=np.int64)) for d in dims[1:]]
            op.set_arguments(
                [
                    opset13.broadcast(
                        opset13.constant(0.0, dtype=op.get_output_element_type(0)), opset13.concat(parts, axis=0)
                    )
                ]
            )
    model.validate_nodes_and_infer_types()


def export_openvino(model_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """An OpenVINO IR of a Llama safetensors directory beside it (``<dir>-openvino``), exported once.

    Weights stay fp32 in the IR (bf16 is a run-time choice of the CPU plugin, `OpenVINOGenerator`'s
    ``precision``); the tokenizer files are copied in.
    """
    target = model_dir.parent / f"{model_dir.name}-openvino"

    def build(tmp: Path) -> None:
        if progress:
            progress(f"exporting {model_dir.name} to OpenVINO in {target} (once, ~10 s)")
        try:
            import openvino as ov
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise ModelNotFound("generator_runtime=openvino needs the openvino package") from exc
        import torch
        from safetensors.torch import load_file

        config = json.loads((model_dir / "config.json").read_text())
        if config.get("model_type") != "llama":
            raise ModelNotFound(f"the OpenVINO export supports Llama models, not {config.get('model_type')!r}")
        module, layers, kv_heads, head_dim = _llama_module(config, load_file(str(model_dir / "model.safetensors")))
        example = (
            torch.ones((2, 3), dtype=torch.int64),
            torch.ones((2, 5), dtype=torch.int64),
            torch.arange(2, 5, dtype=torch.int64).repeat(2, 1),
            *[torch.zeros((2, kv_heads, 2, head_dim)) for _ in range(2 * layers)],
        )
        with torch.no_grad():
            model = ov.convert_model(module, example_input=example)
        for port, name in zip(
            model.inputs,
            ["input_ids", "attention_mask", "position_ids"]
            + [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")],
            strict=True,
        ):
            port.get_tensor().set_names({name})
        for port, name in zip(
            model.outputs,
            ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")],
            strict=True,
        ):
            port.get_tensor().set_names({name})
        _make_stateful(model, layers)
        ov.save_model(model, str(tmp / _IR), compress_to_fp16=False)
        copy_tokenizer_files(model_dir, tmp, extra=("config.json", "generation_config.json"))

    return _build_once(target, _IR, build)


class OpenVINOGenerator:
    """Greedy decoding of an `export_openvino` IR on the OpenVINO CPU plugin.

    Rows of a batch are left-padded and decoded together; a row that finishes (its first line, its
    ``should_stop``, its ``cancel``, end of turn) is dropped from the cache at the next step, so the others
    go on without it. ``precision`` is the CPU plugin's inference precision: ``f32`` (the default) or
    ``bf16`` (faster where the CPU has bf16 instructions; its answers are compared in ``research/decoders.py``).
    """

    def __init__(
        self,
        ir_dir: Path,
        *,
        model_id: str | None = None,
        threads: int = 2,
        device: str = "cpu",
        precision: str = "f32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ModelNotFound(f"OpenVINO precision must be one of {PRECISIONS}, got {precision!r}")
        self.ir_dir = ir_dir
        self.model_id = model_id or str(ir_dir)
        self.threads = threads
        self.device = device
        self.precision = precision
        self._request = None
        self._tokenizer = None
        self._eos: set[int] = set()
        self._system_ids: dict[str, list[int]] = {}
        self._states: dict[tuple[int, ...], dict] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._request is not None:
            return
        if not (self.ir_dir / _IR).is_file():
            raise ModelNotFound(f"{self.ir_dir.name!r} is not an OpenVINO export (no {_IR})")
        import openvino as ov
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(self.ir_dir), local_files_only=True)
        if self.device != "cpu":
            raise ModelNotFound(f"the OpenVINO generator runs on the CPU, not {self.device!r}")
        config = {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": self.threads}
        try:
            compiled = ov.Core().compile_model(str(self.ir_dir / _IR), "CPU", config)
        except RuntimeError as exc:
            raise ModelNotFound(f"OpenVINO could not load the generator on {self.device}: {exc}") from exc
        self._request = compiled.create_infer_request()
        end = self._tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._eos = {i for i in (self._tokenizer.eos_token_id, end) if isinstance(i, int) and i >= 0}

    @property
    def tokenizer(self):  # noqa: ANN201 - the Hugging Face tokenizer once warmed up, for token counts
        return self._tokenizer

    def _prefix_state(self, head: tuple[int, ...]) -> dict:
        """{state name: cache} after the system turn ``head`` alone, computed on first use (~40% of a
        prompt's prefill); {} when there is no system turn."""
        import numpy as np

        if not head:
            return {}
        if head not in self._states:
            request = self._request
            request.reset_state()
            request.infer(
                {
                    "input_ids": np.asarray([head], dtype=np.int64),
                    "attention_mask": np.ones((1, len(head)), dtype=np.int64),
                    "position_ids": np.arange(len(head), dtype=np.int64)[None],
                    "beam_idx": np.zeros(1, dtype=np.int32),
                }
            )
            self._states[head] = {v.name: v.state.data.copy() for v in request.query_state()}
        return self._states[head]

    def generate(
        self, messages: Sequence[Message], *, max_new_tokens: int, should_stop: StopCheck | None = None
    ) -> str:
        return self.generate_batch([GenerationRow(messages, should_stop)], max_new_tokens=max_new_tokens)[0]

    def generate_batch(self, rows: Sequence[GenerationRow], *, max_new_tokens: int) -> list[str]:
        self.warm_up()
        texts = [""] * len(rows)
        live = [i for i, row in enumerate(rows) if not (row.cancel is not None and row.cancel.is_set())]
        if not live or max_new_tokens <= 0:
            return texts
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}  # a decoding batch per system turn
        with self._lock:
            for i in live:
                head, rest = split_system_turn(self._tokenizer, rows[i].messages, self._system_ids)
                groups.setdefault(tuple(head), []).append((i, rest))
            try:
                for head, members in groups.items():
                    got = self._decode(
                        head, [rest for _, rest in members], [rows[i] for i, _ in members], max_new_tokens
                    )
                    for (i, _), tokens in zip(members, got, strict=True):
                        texts[i] = self._tokenizer.decode(tokens, skip_special_tokens=True)
            except RuntimeError as exc:
                raise GeneratorError(f"generation failed: {exc}") from exc
        return texts

    def _decode(
        self, system: tuple[int, ...], prompts: list[list[int]], rows: Sequence[GenerationRow], max_new_tokens: int
    ) -> list[list[int]]:
        """Greedy tokens for each prompt (after the cached system turn), rows dropped as they finish."""
        import numpy as np
        import openvino as ov

        tokenizer, request = self._tokenizer, self._request
        state = self._prefix_state(system)
        head = len(system)
        n = len(prompts)
        width = max(len(p) for p in prompts)
        ids = np.full((n, width), tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((n, head + width), dtype=np.int64)
        mask[:, :head] = 1
        for b, p in enumerate(prompts):  # left padding: every row's next token lands in the same column
            ids[b, width - len(p) :] = p
            mask[b, head + width - len(p) :] = 1
        positions = np.maximum(mask.cumsum(axis=1) - 1, 0)[:, head:]
        request.reset_state()
        for variable in request.query_state():
            if state:
                variable.state = ov.Tensor(np.ascontiguousarray(np.repeat(state[variable.name], n, axis=0)))
        got: list[list[int]] = [[] for _ in prompts]
        order = list(range(n))  # the cache's rows, as indices into `prompts`
        beam = np.arange(n, dtype=np.int32)
        for _step in range(max_new_tokens):
            request.infer({"input_ids": ids, "attention_mask": mask, "position_ids": positions, "beam_idx": beam})
            nxt = request.get_tensor("logits").data[:, -1, :].argmax(axis=-1)
            keep = []
            for slot, b in enumerate(order):
                token = int(nxt[slot])
                if token in self._eos:
                    continue
                got[b].append(token)
                if not rows[b].done(tokenizer.decode(got[b], skip_special_tokens=True)):
                    keep.append(slot)
            if not keep:
                break
            order = [order[s] for s in keep]
            beam = np.asarray(keep, dtype=np.int32)
            mask = np.concatenate([mask[keep], np.ones((len(keep), 1), dtype=np.int64)], axis=1)
            positions = positions[keep, -1:] + 1
            ids = nxt[keep].reshape(-1, 1).astype(np.int64)
        return got

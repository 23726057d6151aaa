"""Write the Llama/Qwen2 decoder directly as an ONNX graph (no tracing).

Two flavours share everything but attention and normalization:

- ``ort``: ONNX Runtime contrib ops. GroupQueryAttention with rotary inside and a KV
  buffer shared between past and present (``[B, KV, max_seq, H]``, written in place at
  each row's own position ``seqlens_k[b]``), fused (Skip)SimplifiedLayerNormalization,
  MatMulNBits for int4/int8 weights, a packed QKV projection (gate and up stay two
  MatMulNBits: fused, their output would be copied apart by a Split every step).
- ``standard``: only standard ONNX ops (fp32/fp16), past/present KV that grow by
  concatenation, an attention mask and explicit position ids: for TensorRT and others.
  int4/int8 weights are blocked ``DequantizeLinear`` feeding ``MatMul`` (opset 21, see
  :mod:`tinyllm.runtime.qdq`).

Graph I/O (``ort``): ``input_ids [B,S]``, ``seqlens_k [B]`` (int32, each row's total length
minus one), ``total_sequence_length`` (int32 scalar), ``past_key.i``/``past_value.i``;
outputs ``logits [B,V]`` (the hidden state at ``logits_index [B]`` of each row) and
``present_key.i``/``present_value.i`` (with ``greedy_ids``, also ``greedy_ids [B]``: each
row's argmax, see :class:`BuildOptions`). Multi-LoRA adds ``lora_index [B]`` and, per
projection kind, stacked adapters ``lora_A.P [L, slots, d_in, r]``, ``lora_B.P [L, slots,
r, d_out]`` (slot 0 all zeros = no adapter), bound once by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto

from tinyllm.adapters import PROJECTIONS, projection_dims
from tinyllm.config import ModelConfig
from tinyllm.quantformat import PackedWeight
from tinyllm.runtime.attention import (
    AttentionInputs,
    gqa_attention,
    rope_tables,
    standard_attention,
)
from tinyllm.runtime.graph import MS_DOMAIN, OPSET, Graph
from tinyllm.runtime.qdq import QDQ_OPSET, integer_tensor, to_qdq

Flavour = Literal["ort", "standard"]
Precision = Literal["fp32", "fp16", "int8", "int4"]
Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class BuildOptions:
    """How to build the graph.

    ``packed`` holds int4/int8 weights (by HF weight name) in MatMulNBits layout; it is
    required for those precisions. ``accuracy_level`` is MatMulNBits' compute mode: 4
    quantizes activations to int8 per block (fastest on CPU), 0 computes in float.
    ``lora_slots > 0`` adds the multi-LoRA inputs for ``lora_targets`` of rank ``lora_rank``.
    ``greedy_ids`` adds the output ``greedy_ids``: the argmax over the vocabulary of every
    logits row, int64, shaped as ``logits`` without its last axis (``[B]`` for
    ``logits_index [B]``, ``[B, P]`` for ``[B, P]``, ``[B, S]`` with ``all_logits``), so
    a greedy step can bring back ids instead of ``[B, V]`` logits.
    ``quantized_embedding`` (``ort`` flavour, int4/int8): the token lookup dequantizes
    rows of ``packed["model.embed_tokens.weight"]`` (GatherBlockQuantized) instead of
    reading a float table; with tied embeddings those int blocks are the lm head's, one
    initializer read by both nodes.
    """

    flavour: Flavour = "ort"
    precision: Precision = "fp32"
    max_seq_len: int = 2048
    all_logits: bool = False
    lora_slots: int = 0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = PROJECTIONS
    packed: Mapping[str, PackedWeight] = field(default_factory=dict)
    accuracy_level: int = 4
    quantized_embedding: bool = False
    greedy_ids: bool = False

    @property
    def float_dtype(self) -> np.dtype:
        """Activation and float-weight dtype."""
        return np.dtype("float16" if self.precision == "fp16" else "float32")


def lora_dims(c: ModelConfig, kind: str) -> tuple[int, int]:
    """(d_in, d_out) of a projection kind."""
    return projection_dims(c, kind)


class DecoderBuilder:
    """Builds one decoder graph from a config and its weights (numpy, HF names)."""

    def __init__(self, config: ModelConfig, weights: Weights, options: BuildOptions) -> None:
        self.c = config
        self.w = weights
        self.o = options
        quantized = options.precision in ("int4", "int8")
        opset = QDQ_OPSET if options.flavour == "standard" and quantized else OPSET
        self.g = Graph(f"tinyllm-{config.family}-{options.flavour}-{options.precision}", opset)
        self.ftype = TensorProto.FLOAT16 if options.float_dtype == np.float16 else TensorProto.FLOAT
        self._row_adapters: dict[str, str] = {}
        self._shared: dict[str, str] = {}

    def fw(self, name: str) -> np.ndarray:
        """A float weight, in the graph's float dtype."""
        return self.w[name].astype(self.o.float_dtype)

    def linear(self, x: str, names: list[str], layer: int, kinds: list[str]) -> str:
        """x @ concat(W_names)^T (+ biases) (+ LoRA deltas). x: [B, S, d_in] -> [B, S, d_out]."""
        weights = [f"{n}.weight" for n in names]
        label = names[0].replace("model.", "") if len(names) == 1 else f"{names[0]}+"
        if self.o.precision in ("int4", "int8") and all(w in self.o.packed for w in weights):
            y = self._matmul_quantized(x, [self.o.packed[w] for w in weights], label)
        else:
            stacked = np.concatenate([self.fw(w) for w in weights], axis=0)  # [d_out, d_in]
            y = self.g.op1("MatMul", [x, self.g.weight(f"{label}.T", stacked.T)])
        biases = [f"{n}.bias" for n in names]
        if any(b in self.w for b in biases):
            rows = [self.w[f"{n}.weight"].shape[0] for n in names]
            bias = np.concatenate(
                [
                    self.fw(b) if b in self.w else np.zeros(r, self.o.float_dtype)
                    for b, r in zip(biases, rows, strict=True)
                ]
            )
            y = self.g.op1("Add", [y, self.g.weight(f"{label}.bias", bias)])
        if self.o.lora_slots:
            deltas = [self._lora_delta(x, layer, k) for k in kinds]
            if any(d is not None for d in deltas):
                y = self._add_deltas(y, x, layer, kinds, deltas)
        return y

    def _matmul_quantized(self, x: str, parts: list[PackedWeight], label: str) -> str:
        """x @ W for packed weights: MatMulNBits (ort) or DequantizeLinear + MatMul."""
        packed = PackedWeight.concat(parts)
        if self.o.flavour == "standard":
            return self._matmul_qdq(x, packed, label)
        inputs = [x, self._qweight(packed, label)]
        inputs.append(self.g.weight(f"{label}.scales", packed.scales.astype(self.o.float_dtype)))
        if packed.zero_points is not None:
            inputs.append(self.g.weight(f"{label}.qzeros", packed.zero_points))
        return self.g.op1(
            "MatMulNBits",
            inputs,
            domain=MS_DOMAIN,
            K=packed.in_features,
            N=packed.out_features,
            bits=packed.bits,
            block_size=packed.block_size,
            accuracy_level=self.o.accuracy_level,
        )

    def _qweight(self, packed: PackedWeight, label: str) -> str:
        """The initializer of ``packed``'s int blocks ``[N, k_blocks, block * bits / 8]``,
        added once per label (the tied lm head and the token lookup share it)."""
        name = f"{label}.qweight"
        if name not in self._shared:
            self._shared[name] = self.g.weight(name, packed.qweight)
        return self._shared[name]

    def embed(self) -> tuple[str, str | None]:
        """The token embeddings of ``input_ids`` [B, S, D], and the float table's name
        (None when the lookup reads int blocks, see :class:`BuildOptions`)."""
        g, name = self.g, "model.embed_tokens.weight"
        packed = self.o.packed.get(name)
        if not self.o.quantized_embedding or self.o.flavour != "ort" or packed is None:
            table = g.weight(name, self.fw(name))
            return g.op1("Gather", [table, "input_ids"]), table
        label = "lm_head" if self.c.tie_word_embeddings else "embed_tokens"
        # Scales (and zero points) shaped [N, k_blocks, 1]: one block along the last axis of
        # the [N, k_blocks, block] codes. A copy: MatMulNBits wants them [N, k_blocks].
        scales = packed.scales.astype(self.o.float_dtype)[..., None]
        inputs = [self._qweight(packed, label), "input_ids"]
        inputs.append(g.weight(f"{label}.gather_scales", scales))
        if packed.zero_points is not None:
            zeros = packed.zeros().astype(np.uint8)[..., None]  # one code a byte, low bits
            inputs.append(g.weight(f"{label}.gather_zeros", zeros))
        rows = g.op1(
            "GatherBlockQuantized",
            inputs,
            domain=MS_DOMAIN,
            gather_axis=0,
            quantize_axis=2,
            block_size=packed.block_size,
            bits=packed.bits,
        )  # [B, S, k_blocks, block]
        width = packed.k_blocks * packed.block_size
        x = g.op1("Reshape", [rows, g.const([0, 0, width])])
        if width != self.c.hidden_size:  # the last block was padded
            x = g.op1("Slice", [x, g.const([0]), g.const([self.c.hidden_size]), g.const([2])])
        return x, None

    def _matmul_qdq(self, x: str, packed: PackedWeight, label: str) -> str:
        q = to_qdq(packed)
        inputs = [
            self.g.tensor(integer_tensor(f"{label}.qcodes", q.codes, q.bits, q.signed)),
            self.g.weight(f"{label}.qscales", q.scales),
        ]
        if q.zero_points is not None:
            zp = integer_tensor(f"{label}.qzeros", q.zero_points, q.bits, q.signed)
            inputs.append(self.g.tensor(zp))
        w = self.g.op1("DequantizeLinear", inputs, axis=0, block_size=q.block_size)  # [K, N]
        return self.g.op1("MatMul", [x, w])

    def _lora_delta(self, x: str, layer: int, kind: str) -> str | None:
        """((x · A[idx]) · B[idx]) for one projection kind, or None if not adapted."""
        if kind not in self.o.lora_targets:
            return None
        at = self._layer_rows(layer)
        a_rows = self.g.op1("GatherND", [f"lora_A.{kind}", at])  # [B, d_in, r]
        b_rows = self.g.op1("GatherND", [f"lora_B.{kind}", at])  # [B, r, d_out]
        return self.g.op1("MatMul", [self.g.op1("MatMul", [x, a_rows]), b_rows])  # [B, S, d_out]

    def _layer_rows(self, layer: int) -> str:
        """``[B, 2]`` indices (layer, row's slot) into a stacked adapter input: one
        ``GatherND`` then copies only the rows' adapters of that layer, not every slot's
        (measured in docs/runtime.md)."""
        key = f"layer{layer}"
        if key not in self._row_adapters:
            g = self.g
            if "slots" not in self._row_adapters:
                self._row_adapters["slots"] = g.op1("Unsqueeze", ["lora_index", g.const([1])])
            slots = self._row_adapters["slots"]  # [B, 1]
            layers = g.op1("Add", [g.op1("Mul", [slots, g.const(0)]), g.const(layer)])
            self._row_adapters[key] = g.op1("Concat", [layers, slots], axis=1)
        return self._row_adapters[key]

    def _add_deltas(
        self, y: str, x: str, layer: int, kinds: list[str], deltas: list[str | None]
    ) -> str:
        if len(kinds) == 1:
            return self.g.op1("Add", [y, deltas[0] or ""])
        # Fused projections: un-adapted parts get a zero delta of their width.
        g, parts = self.g, []
        batch_seq = g.op1("Slice", [g.op1("Shape", [x]), g.const([0]), g.const([2])])
        for kind, delta in zip(kinds, deltas, strict=True):
            if delta is None:
                shape = g.op1("Concat", [batch_seq, g.const([lora_dims(self.c, kind)[1]])], axis=0)
                zero = onnx.helper.make_tensor("zero", self.ftype, [1], [0.0])
                delta = g.op1("ConstantOfShape", [shape], value=zero)
            parts.append(delta)
        return g.op1("Add", [y, g.op1("Concat", parts, axis=-1)])

    def declare_inputs(self) -> None:
        """Graph inputs common to both flavours (attention inputs come from attention.py)."""
        g = self.g
        g.input("input_ids", TensorProto.INT64, ["batch", "seq"])
        if not self.o.all_logits:
            # [B] (one position per row) or [B, P] (P positions per row: the speculative
            # decoder's verify step); its rank is left open so both are accepted.
            g.input("logits_index", TensorProto.INT64, None)
        if self.o.lora_slots:
            g.input("lora_index", TensorProto.INT64, ["batch"])
            for kind in self.o.lora_targets:
                d_in, d_out = lora_dims(self.c, kind)
                layers, slots, r = self.c.num_hidden_layers, self.o.lora_slots, self.o.lora_rank
                g.input(f"lora_A.{kind}", self.ftype, [layers, slots, d_in, r])
                g.input(f"lora_B.{kind}", self.ftype, [layers, slots, r, d_out])

    def rms_norm(self, x: str, weight: str, skip: str | None = None) -> tuple[str, str]:
        """RMSNorm of x (+ skip). Returns (normalized, residual sum)."""
        eps = self.c.rms_norm_eps
        if self.o.flavour == "ort":
            gamma = self.g.weight(weight, self.fw(weight))
            if skip is None:
                y = self.g.op1(
                    "SimplifiedLayerNormalization", [x, gamma], axis=-1, epsilon=eps, stash_type=1
                )
                return y, x
            y, _, _, total = self.g.op(
                "SkipSimplifiedLayerNormalization",
                [x, skip, gamma],
                [self.g.fresh("norm"), "", "", self.g.fresh("residual")],
                domain=MS_DOMAIN,
                epsilon=eps,
            )
            return y, total
        if skip is not None:
            x = self.g.op1("Add", [x, skip])
        # Standard ops, computed in float32 like the reference implementation.
        xf = self.g.op1("Cast", [x], to=TensorProto.FLOAT)
        square = self.g.op1("Mul", [xf, xf])
        if self.g.opset >= 18:  # ReduceMean's axes became an input in opset 18
            var = self.g.op1("ReduceMean", [square, self.g.const([-1])], keepdims=1)
        else:
            var = self.g.op1("ReduceMean", [square], axes=[-1], keepdims=1)
        inv = self.g.op1(
            "Reciprocal",
            [self.g.op1("Sqrt", [self.g.op1("Add", [var, self.g.const(eps, "float32")])])],
        )
        normed = self.g.op1("Cast", [self.g.op1("Mul", [xf, inv])], to=self.ftype)
        return self.g.op1("Mul", [normed, self.g.weight(weight, self.fw(weight))]), x

    def build(self) -> onnx.ModelProto:
        """The complete decoder graph."""
        g, c = self.g, self.c
        self.declare_inputs()
        cos, sin = rope_tables(c.head_dim, c.rope_theta, self.o.max_seq_len)
        att_in = AttentionInputs.declare(
            g,
            c,
            self.o.flavour,
            self.ftype,
            cos.astype(self.o.float_dtype),
            sin.astype(self.o.float_dtype),
        )
        x, embed = self.embed()  # [B, S, D]
        h, x = self.rms_norm(x, "model.layers.0.input_layernorm.weight")
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            qkv = self.linear(
                h,
                [p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"],
                i,
                ["q_proj", "k_proj", "v_proj"],
            )
            attend = gqa_attention if self.o.flavour == "ort" else standard_attention
            attn = attend(g, c, att_in, qkv, i)
            o = self.linear(attn, [p + "self_attn.o_proj"], i, ["o_proj"])
            h, x = self.rms_norm(o, p + "post_attention_layernorm.weight", skip=x)
            gate_up = self.linear(
                h, [p + "mlp.gate_proj", p + "mlp.up_proj"], i, ["gate_proj", "up_proj"]
            )
            gate, up = g.op("Split", [gate_up, g.const([c.intermediate_size] * 2)], 2, axis=-1)
            act = g.op1("Mul", [g.op1("Mul", [gate, g.op1("Sigmoid", [gate])]), up])
            down = self.linear(act, [p + "mlp.down_proj"], i, ["down_proj"])
            nxt = (
                f"model.layers.{i + 1}.input_layernorm.weight"
                if i + 1 < c.num_hidden_layers
                else "model.norm.weight"
            )
            h, x = self.rms_norm(down, nxt, skip=x)
        self.logits(h, embed)
        return g.model()

    def logits(self, h: str, embed: str | None) -> None:
        """lm_head over the hidden state at logits_index (or every position)."""
        g, c = self.g, self.c
        if self.o.all_logits:
            rows = g.op1("Reshape", [h, g.const([-1, c.hidden_size])])
        else:  # [B, D] for logits_index [B]; [B * P, D] for [B, P]
            picked = g.op1(
                "GatherND", [h, g.op1("Unsqueeze", ["logits_index", g.const([-1])])], batch_dims=1
            )
            rows = g.op1("Reshape", [picked, g.const([-1, c.hidden_size])])
        head = "lm_head.weight" if not c.tie_word_embeddings else "model.embed_tokens.weight"
        if self.o.precision in ("int4", "int8") and head in self.o.packed:
            out = self._matmul_quantized(rows, [self.o.packed[head]], "lm_head")
        elif c.tie_word_embeddings and embed is not None:
            out = g.op1("Gemm", [rows, embed], transB=1)  # shares the embedding table
        else:
            out = g.op1("Gemm", [rows, g.weight(head, self.fw(head))], transB=1)
        lead = "input_ids" if self.o.all_logits else "logits_index"
        shape = g.op1("Concat", [g.op1("Shape", [lead]), g.const([c.vocab_size])], axis=0)
        out = g.op1("Reshape", [out, shape])
        g.op("Identity", [out], ["logits"])
        # [B, V] for logits_index [B], [B, P, V] for [B, P] (rank left open)
        g.output(
            "logits", self.ftype, ["batch", "seq", c.vocab_size] if self.o.all_logits else None
        )
        if self.o.greedy_ids:
            self.greedy_ids(out)

    def greedy_ids(self, logits: str) -> None:
        """The output ``greedy_ids``: argmax of ``logits`` over the vocabulary (the first
        of equal maxima, as numpy's argmax), int64, ``logits``' shape without its last axis."""
        g = self.g
        g.op("ArgMax", [logits], ["greedy_ids"], axis=-1, keepdims=0, select_last_index=0)
        g.output("greedy_ids", TensorProto.INT64, ["batch", "seq"] if self.o.all_logits else None)


def build_decoder(config: ModelConfig, weights: Weights, options: BuildOptions) -> onnx.ModelProto:
    """Build the decoder graph of ``config`` with ``weights`` (HF names, numpy arrays)."""
    return DecoderBuilder(config, weights, options).build()

"""Attention blocks of the decoder graph: contrib GroupQueryAttention, or standard ops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from tinyllm.config import ModelConfig
from tinyllm.runtime.graph import MS_DOMAIN, Graph


def rope_tables(head_dim: int, theta: float, max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the rotary angles, [max_seq_len, head_dim / 2], float32 as in HF."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim
    inv_freq = (1.0 / (np.float32(theta) ** exponents)).astype(np.float32)
    freqs = np.outer(np.arange(max_seq_len, dtype=np.float32), inv_freq).astype(np.float32)
    return np.cos(freqs), np.sin(freqs)


@dataclass(frozen=True)
class AttentionInputs:
    """Names of the values every attention block reads (declared once per graph)."""

    flavour: str
    ftype: int
    cos: str
    sin: str
    mask: str = ""  # standard: additive bias [B, 1, S, T]

    @classmethod
    def declare(
        cls, g: Graph, c: ModelConfig, flavour: str, ftype: int, cos: np.ndarray, sin: np.ndarray
    ) -> AttentionInputs:
        """Declare the attention inputs and KV outputs of every layer; precompute shared values."""
        kv_len = "max_seq" if flavour == "ort" else "past_seq"
        present_len = "max_seq" if flavour == "ort" else "total_seq"
        for i in range(c.num_hidden_layers):
            for kind in ("key", "value"):
                shape: list[int | str] = ["batch", c.num_key_value_heads, kv_len, c.head_dim]
                g.input(f"past_{kind}.{i}", ftype, shape)
                g.output(f"present_{kind}.{i}", ftype, [*shape[:2], present_len, c.head_dim])
        if flavour == "ort":
            g.input("seqlens_k", TensorProto.INT32, ["batch"])
            g.input("total_sequence_length", TensorProto.INT32, [])
            return cls(flavour, ftype, g.weight("cos_cache", cos), g.weight("sin_cache", sin))
        g.input("position_ids", TensorProto.INT64, ["batch", "seq"])
        g.input("attention_mask", TensorProto.INT64, ["batch", "total_seq"])
        full = []
        for name, table in (("cos", cos), ("sin", sin)):
            half = g.op1("Gather", [g.weight(f"{name}_table", table), "position_ids"])  # [B,S,H/2]
            both = g.op1("Concat", [half, half], axis=-1)
            full.append(g.op1("Unsqueeze", [both, g.const([1])]))  # [B, 1, S, H]
        return cls(flavour, ftype, full[0], full[1], _mask_bias(g, ftype))


def _mask_bias(g: Graph, ftype: int) -> str:
    """Additive attention bias [B, 1, S, T]: 0 where key j <= query position and unpadded."""
    total = g.op1("Gather", [g.op1("Shape", ["attention_mask"]), g.const(1)])
    seq = g.op1("Gather", [g.op1("Shape", ["input_ids"]), g.const(1)])
    past = g.op1("Sub", [total, seq])
    q_idx = g.op1("Unsqueeze", [g.op1("Range", [past, total, g.const(1)]), g.const([1])])  # [S,1]
    k_idx = g.op1("Range", [g.const(0), total, g.const(1)])  # [T]
    causal = g.op1("LessOrEqual", [k_idx, q_idx])  # [S, T]
    keep = g.op1("Cast", ["attention_mask"], to=TensorProto.BOOL)
    keep = g.op1("Unsqueeze", [keep, g.const([1, 2])])  # [B, 1, 1, T]
    allowed = g.op1("And", [causal, keep])  # [B, 1, S, T]
    dtype = "float16" if ftype == TensorProto.FLOAT16 else "float32"
    lowest = float(np.finfo(dtype).min)
    return g.op1("Where", [allowed, g.const(0.0, dtype), g.const(lowest, dtype)])


def gqa_attention(g: Graph, c: ModelConfig, att: AttentionInputs, qkv: str, layer: int) -> str:
    """GroupQueryAttention on packed QKV [B,S,(N+2KV)H] -> [B,S,N*H]; KV buffer in place."""
    out, _, _ = g.op(
        "GroupQueryAttention",
        [
            qkv,
            "",
            "",
            f"past_key.{layer}",
            f"past_value.{layer}",
            "seqlens_k",
            "total_sequence_length",
            att.cos,
            att.sin,
        ],
        [g.fresh("attn"), f"present_key.{layer}", f"present_value.{layer}"],
        domain=MS_DOMAIN,
        num_heads=c.num_attention_heads,
        kv_num_heads=c.num_key_value_heads,
        do_rotary=1,
        rotary_interleaved=0,
        scale=float(c.head_dim**-0.5),
    )
    return out


def _heads(g: Graph, x: str, heads: int, head_dim: int) -> str:
    """[B, S, heads*H] -> [B, heads, S, H]."""
    return g.op1(
        "Transpose", [g.op1("Reshape", [x, g.const([0, 0, heads, head_dim])])], perm=[0, 2, 1, 3]
    )


def _rotate(g: Graph, x: str, att: AttentionInputs, head_dim: int) -> str:
    """x * cos + rotate_half(x) * sin, x: [B, heads, S, H]."""
    x1, x2 = g.op("Split", [x, g.const([head_dim // 2] * 2)], 2, axis=-1)
    rotated = g.op1("Concat", [g.op1("Neg", [x2]), x1], axis=-1)
    return g.op1("Add", [g.op1("Mul", [x, att.cos]), g.op1("Mul", [rotated, att.sin])])


def standard_attention(g: Graph, c: ModelConfig, att: AttentionInputs, qkv: str, layer: int) -> str:
    """Causal GQA with standard ops; present KV = concat(past, new). Returns [B, S, N*H]."""
    n, kv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    q, k, v = g.op("Split", [qkv, g.const([n * hd, kv * hd, kv * hd])], 3, axis=-1)
    q = _rotate(g, _heads(g, q, n, hd), att, hd)
    k = _rotate(g, _heads(g, k, kv, hd), att, hd)
    v = _heads(g, v, kv, hd)
    g.op("Concat", [f"past_key.{layer}", k], [f"present_key.{layer}"], axis=2)
    g.op("Concat", [f"past_value.{layer}", v], [f"present_value.{layer}"], axis=2)
    group = n // kv

    def expand(x: str) -> str:  # [B, KV, T, H] -> [B, N, T, H]
        if group == 1:
            return x
        wide = g.op1(
            "Expand", [g.op1("Unsqueeze", [x, g.const([2])]), g.const([1, 1, group, 1, 1])]
        )
        return g.op1("Reshape", [wide, g.const([0, n, -1, hd])])

    keys, values = expand(f"present_key.{layer}"), expand(f"present_value.{layer}")
    scores = g.op1("MatMul", [q, g.op1("Transpose", [keys], perm=[0, 1, 3, 2])])  # [B,N,S,T]
    dtype = "float16" if att.ftype == TensorProto.FLOAT16 else "float32"
    scores = g.op1("Add", [g.op1("Mul", [scores, g.const(hd**-0.5, dtype)]), att.mask])
    probs = g.op1("Softmax", [scores], axis=-1)
    out = g.op1("Transpose", [g.op1("MatMul", [probs, values])], perm=[0, 2, 1, 3])  # [B,S,N,H]
    return g.op1("Reshape", [out, g.const([0, 0, n * hd])])

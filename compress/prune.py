"""Structured pruning: a plan for a target parameter ratio, and pure functions applying it.

The plan is chosen by a fixed policy, cheapest loss first: trim the vocabulary (rows of the
embedding the tasks never use), then MLP width, then query heads per KV group, then whole
blocks. Width stays uniform across layers so the result is a plain :class:`ModelConfig`
that every exporter understands; which channels, heads and blocks go is decided per layer
by the activation importance (:mod:`tinyllm.compress.importance`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyllm.compress.importance import Importance
from tinyllm.compress.pruneoptions import check_ratio
from tinyllm.config import ModelConfig
from tinyllm.errors import TinyLLMError


class PruneError(TinyLLMError):
    """A pruning request that cannot be satisfied (bad ratio, impossible plan, no data)."""


@dataclass(frozen=True)
class PrunePlan:
    """What a pruned model keeps: uniform widths, the blocks kept and the vocabulary size."""

    ratio_target: float
    vocab_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    layers_kept: list[int]
    params_before: int
    params_after: int
    steps: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Parameters after over parameters before."""
        return self.params_after / self.params_before

    def config(self, parent: ModelConfig) -> ModelConfig:
        """The pruned model's config (special-token ids are remapped by the vocab step)."""
        return dataclasses.replace(
            parent,
            vocab_size=self.vocab_size,
            intermediate_size=self.intermediate_size,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            num_hidden_layers=len(self.layers_kept),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the child bundle)."""
        return {**dataclasses.asdict(self), "ratio": self.ratio}

    def format(self, parent: ModelConfig) -> str:
        """A readable table of the plan: each dimension before -> after."""
        dropped = sorted(set(range(parent.num_hidden_layers)) - set(self.layers_kept))
        rows = [
            ("vocabulary", parent.vocab_size, self.vocab_size),
            ("mlp channels", parent.intermediate_size, self.intermediate_size),
            ("attention heads", parent.num_attention_heads, self.num_attention_heads),
            ("kv heads", parent.num_key_value_heads, self.num_key_value_heads),
            ("blocks", parent.num_hidden_layers, len(self.layers_kept)),
        ]
        lines = [f"prune plan (target ratio {self.ratio_target:.3f})"]
        lines += [f"  {name:<16}{a:>8} -> {b:<8}" for name, a, b in rows]
        if dropped:
            lines.append(f"  blocks dropped: {', '.join(str(i) for i in dropped)}")
        lines.append(
            f"  parameters      {self.params_before / 1e6:.2f}M -> {self.params_after / 1e6:.2f}M"
            f" (ratio {self.ratio:.3f})"
        )
        return "\n".join(lines)


def choose_plan(
    config: ModelConfig,
    importance: Importance,
    ratio: float,
    *,
    max_vocab: int | None = None,
    required_vocab: int | None = None,
    min_vocab: int = 8192,
    mlp_floor: float = 0.5,
    head_floor: float = 0.5,
    multiple: int = 8,
) -> PrunePlan:
    """Pick the plan that keeps at most ``ratio`` of the parameters, cheapest loss first.

    Args:
        config: the parent model.
        importance: activation statistics (block importance picks the blocks to drop).
        ratio: target fraction of parameters kept, in (0, 1].
        max_vocab: tokens a trimmed vocabulary may keep at most (the tokenizer's size;
            default the model's vocab).
        required_vocab: tokens the tasks need (with their BPE ancestors, bytes and
            specials); the vocabulary never goes below it (None: no vocab trimming).
        min_vocab: the vocabulary is not trimmed below this many tokens (the most frequent
            ones of the tokenizer fill the gap) before the other steps are tried.
        mlp_floor / head_floor: the MLP width / query heads per KV group are not pruned
            below this fraction before the next step is tried.
        multiple: the MLP width stays a multiple of this (when the model's is).
    """
    ratio = check_ratio(ratio)
    before = config.num_parameters()
    target = ratio * before
    steps: list[str] = []
    cfg = config
    if required_vocab is not None and ratio < 1.0:
        cfg = _trim_vocab(cfg, target, max_vocab or cfg.vocab_size, required_vocab, min_vocab)
        if cfg.vocab_size != config.vocab_size:
            steps.append("vocabulary")
    step = multiple if config.intermediate_size % multiple == 0 else 1
    cfg, layers = _shrink(cfg, target, importance, mlp_floor, head_floor, step, steps)
    if cfg.num_parameters() > target:
        raise PruneError(
            f"ratio {ratio} is impossible for this model: even one block with the narrowest "
            f"allowed widths keeps {cfg.num_parameters() / before:.3f} of the parameters; "
            "ask for a larger ratio"
        )
    return PrunePlan(
        ratio_target=ratio,
        vocab_size=cfg.vocab_size,
        intermediate_size=cfg.intermediate_size,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        layers_kept=layers,
        params_before=before,
        params_after=cfg.num_parameters(),
        steps=steps,
    )


def _shrink(
    cfg: ModelConfig,
    target: float,
    importance: Importance,
    mlp_floor: float,
    head_floor: float,
    multiple: int,
    steps: list[str],
) -> tuple[ModelConfig, list[int]]:
    """MLP width, then query heads, then whole blocks, each only while still above
    ``target`` parameters; appends the steps taken. Returns (config, layers kept)."""
    layers = list(range(cfg.num_hidden_layers))
    if cfg.num_parameters() > target:
        cfg = _shrink_mlp(cfg, target, mlp_floor, multiple)
        steps.append("mlp")
    if cfg.num_parameters() > target:
        cfg = _shrink_heads(cfg, target, head_floor)
        steps.append("heads")
    if cfg.num_parameters() > target:
        layers = _drop_blocks(cfg, target, importance.blocks)
        cfg = dataclasses.replace(cfg, num_hidden_layers=len(layers))
        steps.append("depth")
    return cfg, layers


def _trim_vocab(
    cfg: ModelConfig, target: float, max_vocab: int, required: int, min_vocab: int
) -> ModelConfig:
    per_row = cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
    floor = min(max(required, min_vocab), max_vocab)
    fixed = cfg.num_parameters() - cfg.vocab_size * per_row
    fits = int((target - fixed) // per_row)  # largest vocab that alone meets the target
    vocab = min(max(fits, floor), max_vocab)
    return dataclasses.replace(cfg, vocab_size=vocab)


def _shrink_mlp(cfg: ModelConfig, target: float, floor: float, multiple: int) -> ModelConfig:
    per_channel = 3 * cfg.hidden_size * cfg.num_hidden_layers
    lowest = max(multiple, int(np.ceil(cfg.intermediate_size * floor / multiple)) * multiple)
    excess = cfg.num_parameters() - target
    cut = int(np.ceil(excess / per_channel / multiple)) * multiple
    width = max(cfg.intermediate_size - cut, lowest)
    return dataclasses.replace(cfg, intermediate_size=min(width, cfg.intermediate_size))


def _shrink_heads(cfg: ModelConfig, target: float, floor: float) -> ModelConfig:
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    lowest = max(1, int(np.ceil(group * floor)))
    while group > lowest:
        group -= 1
        cfg = dataclasses.replace(cfg, num_attention_heads=group * cfg.num_key_value_heads)
        if cfg.num_parameters() <= target:
            break
    return cfg


def _drop_blocks(cfg: ModelConfig, target: float, blocks: np.ndarray) -> list[int]:
    order = [int(i) for i in np.argsort(blocks, kind="stable")]  # least important first
    kept = list(range(cfg.num_hidden_layers))
    for layer in order:
        if len(kept) == 1:
            break
        kept.remove(layer)
        if dataclasses.replace(cfg, num_hidden_layers=len(kept)).num_parameters() <= target:
            break
    return kept


@dataclass(frozen=True)
class Selection:
    """Which indices each kept layer keeps: ``mlp[l]`` [I'], ``heads[l]`` [H'], ``kv[l]`` [KV']."""

    layers: list[int]
    mlp: list[np.ndarray]
    heads: list[np.ndarray]
    kv: list[np.ndarray]
    tokens: np.ndarray | None  # [V'] kept token ids (ascending), None: vocab kept whole


def select(
    config: ModelConfig, plan: PrunePlan, importance: Importance, tokens: np.ndarray | None
) -> Selection:
    """Turn a plan into indices: the most important channels / heads of every kept layer.

    Args:
        tokens: [V'] the kept token ids (from :func:`tinyllm.compress.vocab.kept_token_ids`),
            or None when the plan keeps the vocabulary whole.
    """
    if tokens is not None and len(tokens) != plan.vocab_size:
        raise PruneError(f"{len(tokens)} token ids for a plan keeping {plan.vocab_size}")
    if tokens is None and plan.vocab_size != config.vocab_size:
        raise PruneError("the plan trims the vocabulary: pass the kept token ids")
    group = config.num_attention_heads // config.num_key_value_heads
    new_group = plan.num_attention_heads // plan.num_key_value_heads
    if plan.num_attention_heads % plan.num_key_value_heads or new_group > group:
        raise PruneError(
            f"{plan.num_attention_heads} heads over {plan.num_key_value_heads} KV heads do not "
            f"fit the model's groups of {group} query heads"
        )
    mlp, heads, kv = [], [], []
    for layer in plan.layers_kept:
        mlp.append(_top(importance.mlp[layer], plan.intermediate_size))
        per_head = importance.heads[layer].reshape(config.num_key_value_heads, group)
        groups = _top(per_head.sum(1), plan.num_key_value_heads)
        kv.append(groups)
        heads.append(np.concatenate([g * group + _top(per_head[g], new_group) for g in groups]))
    return Selection(list(plan.layers_kept), mlp, heads, kv, tokens)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, in ascending index order (keeps the layout)."""
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def apply_selection(
    weights: dict[str, np.ndarray], config: ModelConfig, selection: Selection
) -> dict[str, np.ndarray]:
    """Slice a bundle state dict (HF names, numpy) down to the selection.

    Args:
        weights: name -> array, shapes as ``config.weight_shapes()``.
        config: the parent config.
    Returns the pruned state dict, layers renumbered 0..L'-1.
    """
    d = config.head_dim
    out: dict[str, np.ndarray] = {}
    for new, old in enumerate(selection.layers):
        src, dst = f"model.layers.{old}.", f"model.layers.{new}."
        q_rows = _head_rows(selection.heads[new], d)  # [H' * d]
        kv_rows = _head_rows(selection.kv[new], d)  # [KV' * d]
        ch = selection.mlp[new]
        for name in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            out[dst + name] = weights[src + name]
        for proj, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            out[dst + f"self_attn.{proj}.weight"] = weights[src + f"self_attn.{proj}.weight"][rows]
            if config.qkv_bias:
                out[dst + f"self_attn.{proj}.bias"] = weights[src + f"self_attn.{proj}.bias"][rows]
        out[dst + "self_attn.o_proj.weight"] = weights[src + "self_attn.o_proj.weight"][:, q_rows]
        if config.o_bias:
            out[dst + "self_attn.o_proj.bias"] = weights[src + "self_attn.o_proj.bias"]
        out[dst + "mlp.gate_proj.weight"] = weights[src + "mlp.gate_proj.weight"][ch]
        out[dst + "mlp.up_proj.weight"] = weights[src + "mlp.up_proj.weight"][ch]
        out[dst + "mlp.down_proj.weight"] = weights[src + "mlp.down_proj.weight"][:, ch]
    out["model.norm.weight"] = weights["model.norm.weight"]
    tokens = selection.tokens
    names = ["model.embed_tokens.weight"]
    if not config.tie_word_embeddings:
        names.append("lm_head.weight")
    for name in names:
        out[name] = weights[name] if tokens is None else weights[name][tokens]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _head_rows(heads: np.ndarray, head_dim: int) -> np.ndarray:
    return (heads[:, None] * head_dim + np.arange(head_dim)[None, :]).reshape(-1)


def remap_token_ids(config: ModelConfig, tokens: np.ndarray | None) -> ModelConfig:
    """The config's bos/eos/pad ids in the kept vocabulary (an id that was dropped -> None)."""
    if tokens is None:
        return config
    new_id = {int(old): new for new, old in enumerate(tokens)}

    def remap(value: int | None) -> int | None:
        return None if value is None else new_id.get(value)

    eos = config.eos_token_id
    if isinstance(eos, list):
        eos_new: int | list[int] | None = [new_id[e] for e in eos if e in new_id]
    else:
        eos_new = remap(eos)
    return dataclasses.replace(
        config,
        bos_token_id=remap(config.bos_token_id),
        eos_token_id=eos_new,
        pad_token_id=remap(config.pad_token_id),
    )

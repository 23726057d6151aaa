"""Activation importance over calibration data: MLP channels, heads, blocks and tokens.

Calibration sequences are every task's train examples rendered through the task's chat
conversation (instruction, input, answer), so what the tasks use is what is kept. The
statistics are gathered with forward hooks on the transformers model, one sequence at a
time (no padding to mask).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    from tinyllm.tasks import Suite, TaskSpec


@dataclass(frozen=True)
class Importance:
    """Importance scores of the parent model's structures (higher = keep).

    Attributes:
        mlp: [L, I] mean |activation| entering down_proj times the norm of its column.
        heads: [L, H] mean L2 norm of each query head's contribution to o_proj's output.
        blocks: [L] mean angular distance (in [0, 1]) between a block's input and output.
        tokens: number of calibration tokens the statistics average over.
    """

    mlp: np.ndarray
    heads: np.ndarray
    blocks: np.ndarray
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (block scores in full, widths as quantiles)."""
        return {
            "tokens": self.tokens,
            "blocks": [round(float(b), 5) for b in self.blocks],
            "mlp_quantiles": np.quantile(self.mlp, [0.1, 0.5, 0.9], axis=1).round(5).tolist(),
        }


def calibration_conversations(
    suite: Suite, tasks: Sequence[TaskSpec], samples: int | None, offset: int = 0
) -> list[list[dict[str, str]]]:
    """Chat conversations (with the answer as the assistant turn) of each task's train split.

    For a task with tools the assistant turn is the call the student writes (its traced
    call target, :func:`tinyllm.toolcalling.call_shots`), not the plain answer: examples
    that do not trace are skipped, so the set can be smaller than ``samples``.

    Args:
        samples: examples per task (None: all), taken from position ``offset`` on.
    """
    from tinyllm.suite import load_split, prepare_tasks
    from tinyllm.tasks import conversation
    from tinyllm.toolcalling import call_shots

    out = []
    for task in tasks:
        prepare_tasks([task])
        train = load_split(suite, task, "train")
        chosen = train[offset:] if samples is None else train[offset : offset + samples]
        if task.tools is not None:
            chosen = call_shots(task, chosen, k=len(chosen))
        for ex in chosen:
            messages = conversation(task, ex.input, [])
            out.append([*messages, {"role": "assistant", "content": ex.output}])
    return out


def encode_conversations(
    tokenizer: Any, conversations: Sequence[list[dict[str, str]]], max_len: int = 512
) -> list[list[int]]:
    """Token ids of each conversation through the tokenizer's chat template (truncated)."""
    ids = []
    for conv in conversations:
        text = tokenizer.apply_chat_template(conv, tokenize=False)
        ids.append(list(tokenizer(text, add_special_tokens=False)["input_ids"])[:max_len])
    return ids


def token_counts(sequences: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    """How often each token id occurs. Returns [vocab_size] int64."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for seq in sequences:
        np.add.at(counts, np.asarray(seq, dtype=np.int64), 1)
    return counts


def collect_importance(
    model: Any,
    sequences: Sequence[Sequence[int]],
    progress: Callable[[int], object] | None = None,
) -> Importance:
    """Run the calibration sequences through the model and score its structures.

    Args:
        model: a transformers Llama/Qwen2 causal LM (float32, eval mode).
        sequences: token id lists, one calibration sequence each.
        progress: called with 1 after each sequence (e.g. a tqdm bar's ``update``).
    """
    import torch

    if not sequences:
        raise ConfigError(
            "the calibration set is empty: give tasks with train examples (tinyllm data "
            "prepare) and calib_samples >= 1"
        )
    cfg = model.config
    layers = model.model.layers
    n_layers = len(layers)
    mlp = torch.zeros(n_layers, cfg.intermediate_size, dtype=torch.float64)
    head = torch.zeros(n_layers, cfg.num_attention_heads, dtype=torch.float64)
    block = torch.zeros(n_layers, dtype=torch.float64)
    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(_mlp_hook(mlp[i])))
        o_proj = layer.self_attn.o_proj
        hook = _head_hook(head[i], cfg.num_attention_heads, cfg.head_dim)
        handles.append(o_proj.register_forward_pre_hook(hook))
        handles.append(layer.register_forward_hook(_block_hook(block[i]), with_kwargs=True))
    total = 0
    try:
        with torch.inference_mode():
            for seq in sequences:
                # The base model only: the statistics need no logits (the lm_head is costly).
                model.model(input_ids=torch.tensor([list(seq)]), use_cache=False)
                total += len(seq)
                if progress is not None:
                    progress(1)
    finally:
        for handle in handles:
            handle.remove()
    down_norm = torch.stack([ly.mlp.down_proj.weight.detach().norm(dim=0) for ly in layers])
    return Importance(
        mlp=(mlp / total * down_norm.double()).numpy(),
        heads=(head / total).numpy(),
        blocks=(block / total).numpy(),
        tokens=total,
    )


def _mlp_hook(acc: Any) -> Callable[..., None]:
    """Adds each MLP channel's mean |activation| at down_proj's input to ``acc`` [I]."""

    def hook(module: Any, args: tuple[Any, ...]) -> None:
        acc.add_(args[0].abs().sum(dim=(0, 1)).double())  # [I]

    return hook


def _head_hook(acc: Any, heads: int, d: int) -> Callable[..., None]:
    """Adds each query head's output norm through o_proj to ``acc`` [H]."""
    import torch

    def hook(module: Any, args: tuple[Any, ...]) -> None:
        x = args[0].reshape(-1, heads, d)  # [N, H, d]
        w = module.weight.reshape(-1, heads, d)  # [hidden, H, d]
        y = torch.einsum("nhd,ohd->nho", x, w)  # [N, H, hidden] per-head outputs
        acc.add_(y.norm(dim=-1).sum(0).double())

    return hook


def _block_hook(acc: Any) -> Callable[..., None]:
    """Adds the block's angular distance between input and output states to ``acc`` []."""
    import torch

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        h_in = args[0] if args else kwargs["hidden_states"]
        h_out = out[0] if isinstance(out, tuple) else out
        cos = torch.nn.functional.cosine_similarity(h_in, h_out, dim=-1).clamp(-1, 1)
        acc.add_((torch.arccos(cos) / torch.pi).sum().double())

    return hook

"""Plans hit their ratio; applying one equals masking the parent (columns zeroed, block
skipped, logits restricted to the kept tokens); bad requests are clear errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from tinyllm.compress.importance import Importance
from tinyllm.compress.prune import (
    PruneError,
    PrunePlan,
    apply_selection,
    check_ratio,
    choose_plan,
    remap_token_ids,
    select,
)
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError
from tinyllm.models import build_model, build_reference, bundle_state_dict

SMOLLM2 = ModelConfig(  # the real SmolLM2-135M shape (no weights needed to plan)
    family="llama",
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
)


def random_importance(config: ModelConfig, seed: int = 0) -> Importance:
    rng = np.random.default_rng(seed)
    layers = config.num_hidden_layers
    return Importance(
        mlp=rng.random((layers, config.intermediate_size)),
        heads=rng.random((layers, config.num_attention_heads)),
        blocks=rng.random(layers),
        tokens=100,
    )


@pytest.mark.parametrize("ratio", [0.95, 0.8, 0.6, 0.4])
def test_plan_meets_the_ratio_cheapest_step_first(ratio: float) -> None:
    imp = random_importance(SMOLLM2)
    plan = choose_plan(SMOLLM2, imp, ratio, required_vocab=3000)
    assert plan.params_after <= ratio * plan.params_before
    assert plan.params_after == plan.config(SMOLLM2).num_parameters()
    assert plan.params_before == SMOLLM2.num_parameters()
    # Vocabulary goes first: it is trimmed, never below the floor, before anything else.
    assert plan.steps[0] == "vocabulary" and plan.vocab_size >= 8192
    if plan.intermediate_size < SMOLLM2.intermediate_size:
        assert plan.vocab_size == 8192  # MLP width is cut only once the vocab hit its floor
        assert plan.intermediate_size % 8 == 0
        # No coarser than needed: one more MLP step of 8 channels would miss the target.
        wider = dataclasses.replace(
            plan.config(SMOLLM2), intermediate_size=plan.intermediate_size + 8
        )
        assert wider.num_parameters() > ratio * plan.params_before or plan.steps[-1] != "mlp"
    if len(plan.layers_kept) < 30:  # depth last, least important blocks first
        dropped = sorted(set(range(30)) - set(plan.layers_kept))
        assert set(dropped) == set(np.argsort(imp.blocks)[: len(dropped)].tolist())
    text = plan.format(SMOLLM2)
    assert "49152 ->" in text and f"ratio {plan.ratio:.3f}" in text


def test_plan_at_ratio_one_keeps_everything_and_impossible_ratio_is_an_error() -> None:
    plan = choose_plan(SMOLLM2, random_importance(SMOLLM2), 1.0, required_vocab=300)
    assert plan.config(SMOLLM2) == SMOLLM2 and plan.steps == []
    with pytest.raises(PruneError, match="impossible"):
        choose_plan(SMOLLM2, random_importance(SMOLLM2), 0.001, required_vocab=300)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.01, 2, True, "0.8", float("nan")])
def test_ratio_outside_zero_one_is_an_error(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        check_ratio(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        choose_plan(SMOLLM2, random_importance(SMOLLM2), bad)  # type: ignore[arg-type]


def masked_reference(
    model: torch.nn.Module, config: ModelConfig, sel_layers: list[int], mlp: list, heads: list
) -> torch.nn.Module:
    """The parent with dropped MLP channels / heads zeroed at their output and blocks removed."""
    layers = model.model.layers
    d = config.head_dim
    with torch.no_grad():
        for new, old in enumerate(sel_layers):
            layer = layers[old]
            drop = np.setdiff1d(np.arange(config.intermediate_size), mlp[new])
            layer.mlp.down_proj.weight[:, drop] = 0
            gone = np.setdiff1d(np.arange(config.num_attention_heads), heads[new])
            for h in gone:
                layer.self_attn.o_proj.weight[:, h * d : (h + 1) * d] = 0
    model.model.layers = torch.nn.ModuleList([layers[i] for i in sel_layers])
    model.config.num_hidden_layers = len(sel_layers)
    return model


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_pruned_model_equals_the_masked_parent(family: str, small_config: Any) -> None:
    config = small_config(family)
    parent = build_model(config, seed=3)
    weights = {k: v.numpy() for k, v in bundle_state_dict(parent, config).items()}
    plan = PrunePlan(
        ratio_target=0.5,
        vocab_size=40,
        intermediate_size=24,
        num_attention_heads=2,
        num_key_value_heads=2,
        layers_kept=[0, 2],
        params_before=config.num_parameters(),
        params_after=0,
    )
    rest = np.random.default_rng(0).choice(np.arange(3, 64), 37, replace=False)
    tokens = np.sort(np.concatenate([[0, 1, 2], rest]))  # [40] specials kept
    sel = select(config, plan, random_importance(config, seed=1), tokens)
    pruned_weights = apply_selection(weights, config, sel)
    new_config = remap_token_ids(plan.config(config), tokens)
    assert {k: v.shape for k, v in pruned_weights.items()} == new_config.weight_shapes()
    pruned = build_reference(new_config, pruned_weights)
    reference = masked_reference(
        build_reference(config, weights), config, sel.layers, sel.mlp, sel.heads
    )
    ids = torch.as_tensor(tokens[np.random.default_rng(1).integers(0, 40, (2, 10))])  # parent ids
    new_ids = torch.as_tensor(np.searchsorted(tokens, ids.numpy()))
    with torch.no_grad():
        want = reference(input_ids=ids, use_cache=False).logits[..., torch.as_tensor(tokens)]
        got = pruned(input_ids=new_ids, use_cache=False).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # Heads stay grouped under their KV head; ids of special tokens follow the vocab.
    for layer_heads, kv in zip(sel.heads, sel.kv, strict=True):
        assert sorted({int(h) // 2 for h in layer_heads}) == sorted(kv.tolist())
    assert (new_config.bos_token_id, new_config.eos_token_id, new_config.pad_token_id) == (1, 2, 0)


def test_select_rejects_plans_that_do_not_fit(small_config: Any) -> None:
    config = small_config()
    imp = random_importance(config)
    plan = choose_plan(config, imp, 0.9)
    with pytest.raises(PruneError, match="kept token ids"):
        select(config, dataclasses.replace(plan, vocab_size=10), imp, None)
    with pytest.raises(PruneError, match="groups"):
        select(
            config,
            dataclasses.replace(plan, num_attention_heads=6, num_key_value_heads=2),
            imp,
            None,
        )

"""Activation importance: block scores against hidden states computed by hand, dead
channels and heads score zero, token counts, the calibration set and its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from tinyllm.compress.importance import (
    calibration_conversations,
    collect_importance,
    encode_conversations,
    token_counts,
)
from tinyllm.errors import ConfigError
from tinyllm.models import build_model
from tinyllm.tasks import Example, load_suite, write_examples

SEQUENCES = [[1, 5, 9, 12, 3, 7], [1, 4, 4, 30, 2], [1, 60, 61, 62, 63, 8, 2]]


def test_block_importance_is_the_angular_distance_of_hidden_states(small_config: Any) -> None:
    config = small_config()
    model = build_model(config, seed=0)
    imp = collect_importance(model, SEQUENCES)
    assert imp.mlp.shape == (3, 64) and imp.heads.shape == (3, 4) and imp.blocks.shape == (3,)
    assert imp.tokens == sum(len(s) for s in SEQUENCES)
    total = np.zeros(3)
    with torch.no_grad():
        for seq in SEQUENCES:
            hs = model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states
            for i in range(2):  # the last entry is after the final norm: check the first two
                cos = torch.nn.functional.cosine_similarity(hs[i], hs[i + 1], dim=-1)
                total[i] += (torch.arccos(cos.clamp(-1, 1)) / torch.pi).sum().item()
    np.testing.assert_allclose(imp.blocks[:2], total[:2] / imp.tokens, rtol=1e-5)
    assert (imp.mlp > 0).all() and (imp.heads > 0).all()


def test_dead_channels_and_heads_score_zero(small_config: Any) -> None:
    config = small_config()
    model = build_model(config, seed=0)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[:, 7] = 0  # channel 7 reaches nothing
        model.model.layers[0].self_attn.o_proj.weight[:, 8:16] = 0  # head 1 reaches nothing
    imp = collect_importance(model, SEQUENCES)
    assert imp.mlp[1, 7] == 0 and imp.mlp[1].min() == 0 and (np.delete(imp.mlp[1], 7) > 0).all()
    assert imp.heads[0, 1] == 0 and (np.delete(imp.heads[0], 1) > 0).all()


def test_token_counts() -> None:
    counts = token_counts(SEQUENCES, 64)
    assert counts.shape == (64,) and counts[1] == 3 and counts[4] == 2 and counts[0] == 0
    assert counts.sum() == sum(len(s) for s in SEQUENCES)


def test_calibration_set_from_every_task(tmp_path: Path, tiny_llama_bundle: Path) -> None:
    from tinyllm.bundle import Bundle
    from tinyllm.models import load_model

    tasks = []
    for name in ("alpha", "beta"):
        examples = [Example(f"{name} item {i}", "yes") for i in range(5)]
        for split in ("train", "validation", "test"):
            write_examples(tmp_path / f"{name}-{split}.jsonl", examples)
        tasks.append(
            {
                "name": name,
                "description": name,
                "instruction": f"Answer the {name} question.",
                "template": "Q: {input}",
                "output": {"kind": "label", "labels": ["yes", "no"]},
                "verifiers": ["label_in_set"],
                "metric": "accuracy",
                "data": {s: f"{name}-{s}.jsonl" for s in ("train", "validation", "test")},
            }
        )
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"tasks": tasks}))
    suite = load_suite(tmp_path / "suite.yaml")
    convs = calibration_conversations(suite, suite.tasks, 2, offset=1)
    assert [c[-2]["content"] for c in convs] == [
        "Q: alpha item 1",
        "Q: alpha item 2",
        "Q: beta item 1",
        "Q: beta item 2",
    ]
    assert convs[0][0] == {"role": "system", "content": "Answer the alpha question."}
    assert convs[0][-1] == {"role": "assistant", "content": "yes"}
    tok = load_model(Bundle.open(tiny_llama_bundle)).tokenizer
    ids = encode_conversations(tok, convs)
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert len(ids) == 4 and all(seq[0] == im_start for seq in ids)
    assert calibration_conversations(suite, suite.tasks, 2, offset=10) == []


def test_empty_calibration_set_is_an_error(small_config: Any) -> None:
    with pytest.raises(ConfigError, match="calibration set is empty"):
        collect_importance(build_model(small_config(), seed=0), [])

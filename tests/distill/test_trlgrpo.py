"""GRPO on trl: the prompts and rewards are ours, a tiny run raises the mean reward like
our loop, the adapter loads, and what it cannot run is a clear error."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest
import trl as _trl  # noqa: F401  (the dev extra installs trl: a broken install fails)
from callsuite import sums_targets, sums_task

import tinyllm
from tinyllm.distill.grpo import GRPOConfig, verifier_reward
from tinyllm.distill.sft import TrainConfig, encode
from tinyllm.distill.trlgrpo import prompt_row, train_grpo_lora_trl, trl_reward
from tinyllm.distill.trlrun import TrlOptions, ordered_rows
from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskSpec

OPTIONS = TrlOptions(tensorboard=False)


def test_rows_and_rewards_are_ours(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    tok = loaded.tokenizer
    config = TrainConfig(steps=3, batch_size=2, max_len=64)
    data = encode(tok, color_task, examples(8), config.max_len)
    rows = ordered_rows(data, config, config.steps, functools.partial(prompt_row, tok))
    assert len(rows) == 6  # steps x batch_size prompts, in our loop's order
    assert {r["reference"] for r in rows} <= {"red", "green", "blue"}
    for r in rows:  # trl re-tokenizes the prompt text: the same ids as ours
        ids = list(tok(text=[r["prompt"]])["input_ids"][0])
        assert any(
            ids == [t for t, lab in zip(d.input_ids, d.labels, strict=True) if lab < 0]
            for d in data
        )
    ours = verifier_reward(color_task, 0.5)
    theirs = trl_reward(ours)
    completions, refs = ["red", "blue", "purple"], ["red", "red", "red"]
    assert theirs(["p"] * 3, completions, reference=refs) == [
        ours(c, r) for c, r in zip(completions, refs, strict=True)
    ]
    assert theirs(["p"] * 3, completions, reference=refs) == [1.0, 0.5, 0.0]


def test_trl_grpo_raises_the_mean_reward_and_gives_an_adapter(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    seen: list[float] = []

    def reward(completion: str, reference: str) -> float:
        # As the house loop's test: dense and learnable from a random start.
        value = sum(c in " etaoin" for c in completion) / max(1, len(completion))
        seen.append(value)
        return value

    config = TrainConfig(steps=16, batch_size=2, lr=5e-2, warmup=1, rank=4, alpha=8, max_len=64)
    grpo = GRPOConfig(group_size=6, max_new_tokens=6, sft_steps=2)
    adapter, result = train_grpo_lora_trl(
        loaded.model, loaded.tokenizer, color_task, examples(16), config, grpo, OPTIONS, reward
    )
    assert len(result.losses) == 2 + 16  # the SFT steps, then the GRPO steps
    assert len(seen) == 16 * 2 * 6  # every sampled answer was rewarded once
    per_step = [sum(seen[i : i + 12]) / 12 for i in range(0, len(seen), 12)]
    first, last = sum(per_step[:4]) / 4, sum(per_step[-4:]) / 4
    assert last > first + 0.05, per_step
    adapter.check(loaded.config, "trl grpo adapter")
    assert "forward" not in vars(loaded.model)


def test_trl_grpo_refuses_what_it_cannot_run(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    config = TrainConfig(steps=1, batch_size=2, max_len=64)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process"):
        train_grpo_lora_trl(
            loaded.model, loaded.tokenizer, color_task, examples(4), config, GRPOConfig(),
            OPTIONS,
        )  # fmt: skip
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ConfigError, match="is built on our loop only"):  # result in context
        train_grpo_lora_trl(
            loaded.model, loaded.tokenizer, sums_task("context"), sums_targets("context", 2),
            config, GRPOConfig(), OPTIONS,
        )  # fmt: skip
    real = loaded.tokenizer.__class__.__call__

    def with_bos(self: Any, *a: Any, **kw: Any) -> Any:  # adds a token to text=[...] calls
        out = real(self, *a, **kw)
        if isinstance(kw.get("text"), list):
            out["input_ids"] = [[1, *ids] for ids in out["input_ids"]]
        return out

    monkeypatch.setattr(loaded.tokenizer.__class__, "__call__", with_bos)
    with pytest.raises(ConfigError, match="re-encode to the same tokens"):
        train_grpo_lora_trl(
            loaded.model, loaded.tokenizer, color_task, examples(4), config, GRPOConfig(),
            OPTIONS,
        )  # fmt: skip


def test_distill_grpo_on_trl_end_to_end(
    tiny_llama_bundle: Path, color_suite: Path, tmp_path: Path
) -> None:
    """``distill(method="grpo", backend="trl")`` writes a bundle with one adapter per task."""
    out = tmp_path / "grpo-trl.tllm"
    result = tinyllm.api.distill(
        color_suite, student=tiny_llama_bundle, out=out, method="grpo", backend="trl",
        quick=True, progress=False,
    )  # fmt: skip
    bundle = tinyllm.open_bundle(out)
    assert sorted(bundle.manifest.adapters) == ["color", "shade"]
    assert result.method == "grpo" and Path(result.out) == out


def test_scoring_gets_positions_from_the_mask() -> None:
    """trl scores left-padded rows without position ids; ours counts them from the mask,
    as generate() did when it sampled them."""
    import torch

    from tinyllm.distill.trlgrpo import _WithPositions

    seen: dict[str, Any] = {}

    class Model:
        config = "cfg"

        def __call__(self, **inputs: Any) -> str:
            seen.update(inputs)
            return "out"

    wrapped = _WithPositions(Model())
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert wrapped(input_ids=torch.zeros_like(mask), attention_mask=mask) == "out"
    assert seen["position_ids"].tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert wrapped.config == "cfg"  # everything else is the model's


def test_trl_grpo_resumes_to_the_uninterrupted_losses_and_rewards(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any, tmp_path: Path
) -> None:
    """A GRPO run stopped at a checkpoint and resumed samples, rewards and trains as the
    uninterrupted run; one resumed without the checkpoint's RNG state samples others."""
    import shutil

    import numpy as np

    config = TrainConfig(steps=4, batch_size=2, lr=5e-2, warmup=1, rank=4, alpha=8, max_len=64)
    grpo = GRPOConfig(group_size=4, max_new_tokens=4, sft_steps=2)

    def trained(steps: int, options: TrlOptions) -> tuple[Any, Any, list[float]]:
        loaded = tinyllm.load_torch_model(tiny_llama_bundle)
        seen: list[float] = []

        def reward(completion: str, reference: str) -> float:
            seen.append(sum(c in " etaoin" for c in completion) / max(1, len(completion)))
            return seen[-1]

        short = TrainConfig(**{**config.__dict__, "steps": steps})
        adapter, result = train_grpo_lora_trl(
            loaded.model, loaded.tokenizer, color_task, examples(8), short, grpo, options, reward
        )
        return adapter, result, seen

    whole_adapter, whole, whole_rewards = trained(4, OPTIONS)
    run = tmp_path / "run"
    every = TrlOptions(run_dir=str(run), save_steps=2, tensorboard=False)
    _, _, first_rewards = trained(2, every)
    assert (run / "color" / "checkpoint-2" / "rng_state.pth").is_file()
    shutil.copytree(run, tmp_path / "no-rng")
    resumed_options = dataclasses.replace(every, resume=True)
    adapter, resumed, resumed_rewards = trained(4, resumed_options)
    assert len(resumed.losses) == 2 + 4  # the SFT steps, then GRPO's 2 + 2
    np.testing.assert_allclose(resumed.losses, whole.losses, atol=1e-4)
    assert first_rewards + resumed_rewards == whole_rewards
    for name, value in whole_adapter.tensors.items():
        np.testing.assert_allclose(adapter.tensors[name], value, atol=1e-4, err_msg=name)
    # Broken: the same resume without the sampler's RNG state draws other answers.
    (tmp_path / "no-rng" / "color" / "checkpoint-2" / "rng_state.pth").unlink()
    lost = dataclasses.replace(resumed_options, run_dir=str(tmp_path / "no-rng"))
    _, _, lost_rewards = trained(4, lost)
    assert first_rewards + lost_rewards != whole_rewards


def test_trl_grpo_gradient_accumulation_keeps_the_global_batch(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    """2 micro-batches per step sample the same answers and train the same adapter as 1
    (within 1e-4; measured 4.5e-5 after 3 steps at lr 5e-2), while halving the rate moves
    the adapter well past that tolerance."""
    import numpy as np

    base = TrainConfig(steps=3, batch_size=2, lr=5e-2, warmup=1, rank=4, alpha=8, max_len=64)

    def trained(accum: int, lr: float) -> tuple[Any, list[float]]:
        loaded = tinyllm.load_torch_model(tiny_llama_bundle)
        seen: list[float] = []

        def reward(completion: str, reference: str) -> float:
            seen.append(sum(c in " etaoin" for c in completion) / max(1, len(completion)))
            return seen[-1]

        config = dataclasses.replace(base, lr=lr)
        options = TrlOptions(grad_accum=accum, tensorboard=False)
        adapter, _ = train_grpo_lora_trl(
            loaded.model, loaded.tokenizer, color_task, examples(8), config,
            GRPOConfig(group_size=4, max_new_tokens=4), options, reward,
        )  # fmt: skip
        return adapter, seen

    def largest_difference(a: Any, b: Any) -> float:
        return max(float(np.abs(a.tensors[k] - b.tensors[k]).max()) for k in a.tensors)

    one, one_rewards = trained(1, base.lr)
    two, two_rewards = trained(2, base.lr)
    assert two_rewards == one_rewards
    assert largest_difference(one, two) < 1e-4
    slower, _ = trained(1, base.lr / 2)
    assert largest_difference(one, slower) > 1e-3

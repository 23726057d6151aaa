"""GRPO: verifier rewards on known strings; a few steps raise the mean reward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import tinyllm
from tinyllm.distill.grpo import (
    GRPOConfig,
    RewardLog,
    call_reward,
    group_advantages,
    train_grpo_lora,
    verifier_reward,
)
from tinyllm.distill.sft import TrainConfig
from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskSpec


def test_verifier_reward_mixes_validity_and_metric(color_task: TaskSpec) -> None:
    reward = verifier_reward(color_task, weight=0.5)
    assert reward("red", "red") == 1.0
    assert reward("blue", "red") == 0.5  # a valid label, wrong
    assert reward("purple", "red") == 0.0
    assert reward("green", "") == 1.0  # no reference: the verifier alone


def test_group_advantages_are_normalised_per_group() -> None:
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0, 5.0]), 2)
    assert adv[:4].tolist() == pytest.approx([0.7071, -0.7071, -0.7071, 0.7071], abs=1e-3)
    assert adv[4:].tolist() == [0.0, 0.0]  # equal rewards: nothing to learn


def test_grpo_raises_the_mean_reward(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    tok = loaded.tokenizer

    def reward(completion: str, reference: str) -> float:
        # Dense and learnable from a random start: the share of spaces and common letters.
        return sum(c in " etaoin" for c in completion) / max(1, len(completion))

    log = RewardLog()
    config = TrainConfig(steps=20, batch_size=2, lr=5e-2, warmup=1, rank=4, alpha=8, max_len=64)
    grpo = GRPOConfig(group_size=6, max_new_tokens=6)
    _, result = train_grpo_lora(
        loaded.model, tok, color_task, examples(16), config, grpo, reward=reward, rewards=log
    )
    assert len(result.losses) == 20 and len(log.means) == 20
    first, last = sum(log.means[:5]) / 5, sum(log.means[-5:]) / 5
    assert last > first + 0.08, log.means


def test_bad_grpo_config() -> None:
    with pytest.raises(ConfigError, match="group_size"):
        GRPOConfig(group_size=1)


def _calc_task(result: str = "answer") -> TaskSpec:
    from tinyllm.tasks import DataSpec, OutputSpec, ToolUse

    return TaskSpec(
        name="arith",
        description="d",
        instruction="Call the calculator.",
        output=OutputSpec("text", max_new_tokens=8),
        metric="exact_match",
        data=DataSpec(builder="x"),
        verifiers=["number"],
        tools=ToolUse(["calculator"], result),  # type: ignore[arg-type]
    )


def _call(expression: str, name: str = "calculator") -> str:
    return json.dumps({"name": name, "arguments": {"expression": expression}})


def test_call_reward_is_earned_by_the_executed_result() -> None:
    reward = call_reward(_calc_task(), weight=0.5)
    ref = _call("2 + 3")
    assert reward(ref, ref) == 1.0
    assert reward(_call("3 + 2"), ref) == 1.0  # another call, the same result
    assert reward(_call("2 * 3"), ref) == 0.5  # a valid number, the wrong one
    assert reward("5", ref) == 0.0  # the right answer, but not a call
    assert reward(_call("1 / 0"), ref) == 0.0  # the tool fails
    assert reward(_call("2 + 3", "date_parser"), ref) == 0.0  # not the task's tool
    assert reward(_call("2 + 3")[:-2], ref) == 0.0  # cut short
    assert reward(_call("2 * 3"), "") == 1.0  # no reference: the verifier alone
    with pytest.raises(ConfigError, match=r"only for tools\.result 'answer'"):
        call_reward(_calc_task("context"))


def test_grpo_on_calls_rewards_the_executed_calls_it_samples(
    tiny_llama_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import tinyllm.distill.grpo as grpo_module
    from tinyllm.distill.calltargets import with_calls
    from tinyllm.tasks import Example, ToolUse

    task = dataclasses.replace(_calc_task(), tools=ToolUse(["calculator"], "answer", 48))
    plain = [Example("What is 2 plus 3?", "5"), Example("What is 4 plus 2?", "6")]
    targets = with_calls(task, plain)
    budgets: list[int] = []

    def scripted(model, tokenizer, prompts, config, max_new_tokens):  # type: ignore[no-untyped-def]
        # the policy samples the call "2 + 3" and the bare answer "5", in turns
        budgets.append(max_new_tokens)
        eos = [tokenizer.eos_token_id]
        call = tokenizer(_call("2 + 3"), add_special_tokens=False)["input_ids"] + eos
        bare = tokenizer("5", add_special_tokens=False)["input_ids"] + eos
        return [call if i % 2 == 0 else bare for i in range(len(prompts))]

    monkeypatch.setattr(grpo_module, "sample", scripted)
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    log = RewardLog()
    config = TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup=1, rank=4, alpha=8, max_len=96)
    _, result = train_grpo_lora(
        loaded.model, loaded.tokenizer, task, targets, config, GRPOConfig(group_size=2), rewards=log
    )
    # The call runs: for "2 plus 3" it earns 1, for "4 plus 2" 0.5 (a number, the wrong
    # one); the bare answer is no call and earns 0. A batch of two examples: 0.25-0.5.
    assert budgets == [48, 48] and len(result.losses) == 2
    assert all(m in (0.25, 0.375, 0.5) for m in log.means), log.means


def test_grpo_in_context_rewards_the_answer_written_after_the_result(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sample: a call, its executed result put in context, the answer sampled after
    it; the reward reads that answer (not the call, not the result)."""
    from callsuite import sums_targets, sums_task

    import tinyllm.torchkit as torchkit
    from tinyllm.distill.grpo import grpo_loss_fn
    from tinyllm.distill.sft import collate, encode

    tok, task = tiny_model.tokenizer, sums_task("context")
    eos = [tok.eos_token_id]

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    rounds: list[list[list[int]]] = []
    scripted = [
        # the calls: 2 + 3 (result 5), 2 + 4 (result 6), one that does not parse
        [ids(_call("2 + 3")) + eos, ids(_call("2 + 4")) + eos, ids("5") + eos],
        # the answers after the two results: 5 (the reference's), 6
        [ids("5") + eos, ids("6") + eos],
    ]

    def sample(model, tokenizer, prompts, max_new_tokens, temperature=1.0):  # type: ignore[no-untyped-def]
        rounds.append(list(prompts))
        return scripted[len(rounds) - 1]

    monkeypatch.setattr(torchkit, "sample_continuations", sample)
    (target,) = sums_targets("context", 1)  # 2 plus 3: the reference answer is 5
    batch = collate(encode(tok, task, [target], 256), tok.pad_token_id or 0, task.name)
    log = RewardLog()
    loss = grpo_loss_fn(tok, GRPOConfig(group_size=3), verifier_reward(task), 48, log, task)
    value = loss(tiny_model.model, batch)
    # 1 (the right answer), 0.5 (a number, not the reference's), 0 (no call ran)
    assert log.means == [pytest.approx(0.5)]
    assert rounds[1][1][-len(ids("\nResult: 6\n")) :] == ids("\nResult: 6\n")
    assert torch.isfinite(value) and value.requires_grad
    # The reward is given the answer written after the result, and the reference's.
    log.means.clear()
    rounds.clear()
    called: list[str] = []

    def spy(completion: str, reference: str) -> float:
        called.append(f"{completion}|{reference}")
        return 0.0

    grpo_loss_fn(tok, GRPOConfig(group_size=3), spy, 48, log, task)(tiny_model.model, batch)
    assert called == ["5|5", "6|5"]  # the failed call earns 0 without a reward call
    # train_grpo_lora picks that reward for such a task (the call's result is not it).
    rounds.clear()
    log.means.clear()
    config = TrainConfig(steps=1, batch_size=1, lr=1e-3, warmup=1, rank=2, max_len=160)
    _, result = train_grpo_lora(
        tiny_model.model, tok, task, [target], config, GRPOConfig(group_size=3), rewards=log
    )
    assert log.means == [pytest.approx(0.5)] and len(result.losses) == 1

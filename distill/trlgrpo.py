"""GRPO on trl's ``GRPOTrainer``: the recipe of :mod:`tinyllm.distill.grpo` (groups of
sampled answers, the verifier-plus-metric reward, advantages normalised within each
group, one policy update per group, no KL term) on trl, for runs that outgrow our loop.

What is ours, so both backends train the same thing: the prompts (each task's examples
encoded by :func:`tinyllm.distill.sft.encode`, in the order of
:func:`tinyllm.distill.sft.batch_order`; trl reads them sequentially, repeating each
prompt ``group_size`` times), the reward (:func:`tinyllm.distill.grpo.verifier_reward`,
or :func:`tinyllm.distill.grpo.call_reward` for a task with tools), the LoRA and the
schedule (linear warmup to a constant rate). trl's settings that make its loss ours:
``loss_type="grpo"`` (each answer's token mean, then the batch mean), ``beta=0``,
``num_iterations=1``, ``scale_rewards="group"``. ``GRPOConfig.sft_steps`` runs that many
SFT steps on trl's ``SFTTrainer`` first, on the same LoRA, as the house loop does.

trl tokenizes each prompt from text, so a prompt must survive decode and re-encode
unchanged (it does for byte-level BPE tokenizers; a tokenizer that adds a BOS token
when encoding is refused with the reason).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tinyllm.distill.calltargets import check_method
from tinyllm.distill.grpo import GRPOConfig, Reward, call_reward, verifier_reward
from tinyllm.distill.losses import IGNORE_INDEX
from tinyllm.distill.sft import (
    Encoded,
    TrainConfig,
    TrainResult,
    adapter_of,
    encode,
    with_lora,
)
from tinyllm.distill.trlbackend import train_trl
from tinyllm.distill.trlrun import (
    TrlOptions,
    checkpoint_losses,
    common_args,
    latest_checkpoint,
    loss_recorder,
    micro_batch,
    ordered_rows,
    run_folder,
    trl_module,
    warmup_scheduler,
)
from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter


def prompt_row(tokenizer: Any, item: Encoded) -> dict[str, str]:
    """A GRPO row as trl reads it: the prompt as text and the reference answer."""
    prompt = [
        t for t, label in zip(item.input_ids, item.labels, strict=True) if label == IGNORE_INDEX
    ]
    answer = [label for label in item.labels if label != IGNORE_INDEX]
    text = tokenizer.decode(prompt, skip_special_tokens=False)
    again = list(tokenizer(text=[text])["input_ids"][0])
    if again != prompt:
        raise ConfigError(
            "GRPO on trl needs prompts that re-encode to the same tokens (trl tokenizes "
            f"prompt text); this tokenizer gives {len(again)} tokens for a {len(prompt)}-token "
            "prompt (it may add a BOS token); train GRPO on the own backend (--backend own)"
        )
    return {"prompt": text, "reference": tokenizer.decode(answer, skip_special_tokens=True)}


def sampling_top_k(model: Any) -> int:
    """The top-k our sampler (:func:`tinyllm.torchkit.sample_continuations`) samples with:
    it leaves ``top_k`` unset, so ``generate`` takes the model's generation config, else
    transformers' default (50). trl samples from the whole vocabulary unless told, which
    on a small random model made the policy gradient too weak to learn in the test."""
    from transformers import GenerationConfig

    top_k = getattr(getattr(model, "generation_config", None), "top_k", None)
    if top_k is None:
        top_k = GenerationConfig._get_default_generation_params().get("top_k")
    return int(top_k or 0)


def trl_reward(reward: Reward) -> Any:
    """Our reward as a trl reward function (completions with their prompt's reference)."""

    def tinyllm_reward(
        prompts: list[str], completions: list[str], reference: list[str], **_: Any
    ) -> list[float]:
        return [reward(c, r) for c, r in zip(completions, reference, strict=True)]

    return tinyllm_reward


def grpo_args(
    config: TrainConfig,
    grpo: GRPOConfig,
    options: TrlOptions,
    folder: str,
    max_new: int,
    top_k: int,
) -> Any:
    """trl's ``GRPOConfig`` for our recipe: ``batch_size`` prompts a step, ``group_size``
    answers each, sampled as our loop samples (``top_k``: the model's generation config,
    which our ``generate`` call leaves in place; 0: none)."""
    rows = micro_batch(config, options, 1) * grpo.group_size
    return trl_module().GRPOConfig(
        **common_args(config, options, folder),
        per_device_train_batch_size=rows,
        num_generations=grpo.group_size,
        max_completion_length=max_new,
        temperature=grpo.temperature,
        top_p=1.0,
        top_k=top_k,
        beta=0.0,
        num_iterations=1,
        loss_type="grpo",
        scale_rewards="group",
        shuffle_dataset=False,
    )


def trainer_class() -> Any:
    """``GRPOTrainer`` with our warmup schedule."""
    grpo_trainer: Any = trl_module().GRPOTrainer

    class TinyGRPOTrainer(grpo_trainer):
        """GRPOTrainer with our schedule, scoring left-padded rows at their true positions."""

        def _get_per_token_logps_and_entropies(
            self, model: Any, input_ids: Any, attention_mask: Any, *args: Any, **kwargs: Any
        ) -> Any:
            return super()._get_per_token_logps_and_entropies(
                _WithPositions(model), input_ids, attention_mask, *args, **kwargs
            )

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            return warmup_scheduler(self, optimizer)

    return TinyGRPOTrainer


class _WithPositions:
    """A model whose forward gets position ids from the attention mask. trl left-pads the
    prompts of a batch and scores the answers with ``input_ids`` and ``attention_mask``
    only; transformers then numbers the positions from the first (padding) column, so a
    shorter prompt's tokens would be scored at other positions than they were sampled
    at (generate() counts them from the mask), and the policy gradient would be noise."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, **inputs: Any) -> Any:
        mask = inputs.get("attention_mask")
        if mask is not None and "position_ids" not in inputs:
            inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model(**inputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def train_grpo_lora_trl(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    examples: Sequence[Example],
    config: TrainConfig,
    grpo: GRPOConfig,
    options: TrlOptions,
    reward: Reward | None = None,
) -> tuple[LoraAdapter, TrainResult]:
    """One task's LoRA trained with GRPO on trl (after ``grpo.sft_steps`` SFT steps on
    trl, if any); the model is returned to its base state. Returns the adapter and the
    losses (SFT steps first)."""
    import os

    from datasets import Dataset
    from transformers import PrinterCallback

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("GRPO on trl runs in one process here; launch it without accelerate")
    check_method("grpo", [task], "trl")  # a tool result in context: our loop only
    if reward is None:
        make = call_reward if task.tools else verifier_reward
        reward = make(task, grpo.verifier_weight)
    budget = task.tools.max_call_tokens if task.tools else task.output.max_new_tokens
    data = encode(tokenizer, task, examples, config.max_len)
    rows = ordered_rows(data, config, config.steps, functools.partial(prompt_row, tokenizer))
    top_k = sampling_top_k(model)
    peft_model = with_lora(model, config)
    base = peft_model.get_base_model()
    patched = "forward" in vars(base)
    result = TrainResult()
    if grpo.sft_steps:
        first = dataclasses.replace(config, steps=grpo.sft_steps)
        result = train_trl(peft_model, tokenizer, data, first, options, f"{task.name}-sft")
    with run_folder(options, task.name) as folder:
        if options.tensorboard:
            os.environ["TENSORBOARD_LOGGING_DIR"] = os.path.join(folder, "tensorboard")
        trainer = trainer_class()(
            model=peft_model,
            reward_funcs=[trl_reward(reward)],
            args=grpo_args(config, grpo, options, folder, grpo.max_new_tokens or budget, top_k),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[loss_recorder(result, None)],
        )
        trainer.tiny_warmup = config.warmup
        trainer.remove_callback(PrinterCallback)
        sft_losses = len(result.losses)
        resume = latest_checkpoint(folder) if options.resume else None
        trainer.train(resume_from_checkpoint=resume)
        if resume is not None:  # the GRPO steps before the checkpoint, after the SFT steps
            result.losses[sft_losses:sft_losses] = checkpoint_losses(resume)
    if not patched:
        vars(base).pop("forward", None)  # undo trl's patch of the base model's forward
    peft_model.eval()
    adapter = adapter_of(peft_model, config)
    peft_model.unload()
    return adapter, result

"""Training on trl: the SFT and logit-KD recipes on trl's ``SFTTrainer``, for runs that
outgrow our compact loop (:func:`tinyllm.distill.sft.train`).

What trl (and the transformers ``Trainer`` and accelerate beneath it) adds: data-parallel
training under ``accelerate launch`` (DDP, DeepSpeed ZeRO, FSDP), a checkpoint every N
steps and ``resume``, gradient accumulation, bf16/fp16 mixed precision and TensorBoard
logs. What stays ours, so both backends train the same thing:

- the data: each task's examples tokenized by :func:`tinyllm.distill.sft.encode`
  (prompt masked, answer + eos), drawn in the order of
  :func:`tinyllm.distill.sft.batch_order` for the seed. The rows are handed to the
  trainer in that order and read sequentially, so step ``s`` of a run trains on the
  same global batch whatever the number of processes or accumulation steps. The
  curriculum's mixture, whose tasks stop mid-run, is instead drawn step by step as each
  step starts (``draw``) and sharded the same way;
- the LoRA: :func:`tinyllm.distill.sft.with_lora` (seeded init) and
  :func:`tinyllm.distill.sft.adapter_of`, so the bundle gets the same adapters;
- the optimizer and schedule: AdamW with our linear warmup to a constant rate;
- for KD, the loss: :func:`tinyllm.distill.losses.token_divergence` (forward/reverse
  KL, generalized JSD), and the on-policy steps: trl's ``DistillationTrainer`` generates
  on-policy completions (vLLM or ``generate``) for every batch; ours, like our loop,
  replaces the references by the student's samples on a share ``KDConfig.on_policy`` of
  the steps (:class:`tinyllm.distill.kd.OnPolicySteps`, the same steps for a seed), so it
  subclasses ``SFTTrainer``, samples as a step's batches are gathered
  (``get_batch_samples``: the step's token count is then the samples') and replaces
  ``compute_loss``.

What every trl run shares (options, Trainer arguments, checkpoints, the schedule, the
batch layout) is :mod:`tinyllm.distill.trlrun`.

The loss is ours too (:func:`answer_loss`): the batch is left-padded as our loop pads it
(:func:`tinyllm.distill.trlrun.collate_rows`), so every answer ends at the right edge and
the LM head runs on the answer positions only (:func:`tinyllm.distill.sft.answer_logits`).
``SFTTrainer``'s own loss projects through its fused LM head instead, which on a device
without Triton (the CPU) scores every position of every row against the whole vocabulary,
with entropy and top-1 flags for its metrics (docs/distill.md, "Speed on this CPU", has
the cost on SmolLM2). Both backends give the same losses for a seed
(tests/distill/test_trlbackend.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinyllm.distill.kd import KDConfig, OnPolicySteps, on_policy_batch
from tinyllm.distill.sft import (
    Batch,
    Encoded,
    TrainConfig,
    TrainResult,
    adapter_of,
    answer_logits,
    encode,
    torch_module,
    with_lora,
)
from tinyllm.distill.trlrun import (
    TrlOptions,
    checkpoint_losses,
    collate_rows,
    common_args,
    latest_checkpoint,
    loss_recorder,
    micro_batch,
    micro_parts,
    ordered_rows,
    run_folder,
    training_row,
    trl_module,
    warmup_scheduler,
)
from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec
from tinyllm.torchkit import IGNORE_INDEX

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter


def training_args(
    config: TrainConfig, options: TrlOptions, folder: str, steps: int, processes: int
) -> Any:
    """The ``SFTConfig`` of one task's run."""
    args = common_args(config, options, folder)
    args["max_steps"] = steps
    return trl_module().SFTConfig(
        **args,
        per_device_train_batch_size=micro_batch(config, options, processes),
        train_sampling_strategy="sequential",
        max_length=config.max_len,
        remove_unused_columns=False,
        # The rows are ours, tokenized, masked and truncated: trl must not re-prepare them
        # (its filter of fully masked rows would shift every later batch).
        dataset_kwargs={"skip_prepare_dataset": True},
    )


def trainer_class() -> Any:
    """``SFTTrainer`` with our loss (:func:`answer_loss`: SFT, or logit KD when the trainer
    has a ``tiny_kd``) and our warmup schedule."""
    trl = trl_module()
    sft_trainer: Any = trl.SFTTrainer

    class TinySFTTrainer(sft_trainer):
        """SFTTrainer whose loss is ours on the answer positions, whose schedule is our
        linear warmup to a constant rate, and whose batches may be drawn as each step
        starts (``tiny_draw``)."""

        tiny_draw: Callable[[], Sequence[Encoded]] | None = None
        tiny_teacher: Any = None
        tiny_kd: KDConfig | None = None
        tiny_on_policy: OnPolicySteps | None = None
        tiny_answer_tokens = 0  # the length of an on-policy answer
        tiny_task: TaskSpec | None = None  # a task with tools samples calls on-policy

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            return answer_loss(self, model, inputs, num_items_in_batch)

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            return warmup_scheduler(self, optimizer)

        def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> Any:
            batches, count = super().get_batch_samples(epoch_iterator, num_batches, device)
            on_policy = self.tiny_on_policy is not None and self.tiny_on_policy(
                self.state.global_step  # the steps done: this step's 0-based index
            )
            if (self.tiny_draw is None and not on_policy) or not batches:
                return batches, count
            if self.tiny_draw is not None:
                # A drawn batch (the curriculum's mixture) is drawn as its step starts,
                # after the last step's callbacks (early stopping) ran: the dataloader
                # reads a batch ahead, so its rows are placeholders that only pace the loop.
                acc = self.accelerator
                rows = [training_row(e) for e in self.tiny_draw()]
                parts = micro_parts(rows, len(batches), acc.num_processes, acc.process_index)
                batches = [self.data_collator(part) for part in parts]
            if on_policy:
                batches = [sampled_batch(self, b) for b in batches]
            return batches, self._get_num_items_in_batch(batches, device)

    return TinySFTTrainer


def sampled_batch(trainer: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs``' prompts with the student's own sampled answers in place of the
    references (:func:`tinyllm.distill.kd.on_policy_batch`), on the inputs' device; the
    teacher scores them in :func:`answer_loss`. ``inputs``: input_ids, attention_mask,
    labels, each [B, T] (the result's T is the samples')."""
    batch = Batch(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
    tokenizer, tokens = trainer.processing_class, trainer.tiny_answer_tokens
    sampled = on_policy_batch(trainer.model, tokenizer, batch, tokens, trainer.tiny_task)
    device = batch.input_ids.device
    return {
        "input_ids": sampled.input_ids.to(device),
        "attention_mask": sampled.attention_mask.to(device),
        "labels": sampled.labels.to(device),
    }


def answer_loss(trainer: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
    """A trl step's loss on the answer positions of a left-padded batch: the answer tokens'
    cross-entropy (SFT), or ``trainer.tiny_kd``'s divergence from ``trainer.tiny_teacher``
    plus its CE weight (logit KD), summed and divided by the global batch's answer tokens
    as trl's SFT loss is. Logs trl's metrics (entropy, token accuracy) from the same logits.

    ``inputs``: input_ids, attention_mask, labels, each [B, T] (:func:`collate_rows`).
    """
    from tinyllm.distill.losses import token_divergence

    torch = torch_module()
    batch = Batch(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
    s_logits, targets = answer_logits(model, batch)  # [B, K, V], [B, K]
    mask = targets != IGNORE_INDEX  # [B, K]
    kd: KDConfig | None = trainer.tiny_kd
    ce_weight = 1.0 if kd is None else kd.ce_weight
    total = torch.zeros((), device=s_logits.device)
    if ce_weight:
        ce = torch.nn.functional.cross_entropy(
            s_logits.float().reshape(-1, s_logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total = total + ce_weight * ce
    if kd is not None:
        teacher = trainer.tiny_teacher
        if next(teacher.parameters()).device != batch.input_ids.device:
            teacher.to(batch.input_ids.device)  # the Trainer moved only the student
        with torch.no_grad():
            t_logits, _ = answer_logits(teacher, batch)  # [B, K, V']
        vocab = min(s_logits.shape[-1], t_logits.shape[-1])  # padded embedding rows
        per_token = token_divergence(
            s_logits[..., :vocab], t_logits[..., :vocab], kd.divergence, kd.beta, kd.temperature
        )  # [B, K]
        total = total + (per_token * mask).sum()
    log_metrics(trainer, s_logits, targets)
    count = num_items_in_batch if num_items_in_batch is not None else mask.sum()
    loss = total / torch.as_tensor(count).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * trainer.accelerator.num_processes  # DDP averages the gradients
    return loss


def answer_metrics(logits: Any, targets: Any) -> Any:
    """The sums behind trl's SFT metrics, over the answer tokens: [count, entropy sum,
    tokens whose label is the logits' first maximum]. logits [B, K, V], targets [B, K]."""
    torch = torch_module()
    with torch.no_grad():
        mask = targets != IGNORE_INDEX  # [B, K]
        logp = torch.log_softmax(logits.float(), dim=-1)  # [B, K, V]
        entropy = -(logp.exp() * logp).sum(-1)  # [B, K]
        top1 = logits.argmax(-1) == targets  # [B, K]
        return torch.stack(
            [mask.sum().float(), entropy[mask].sum(), (top1 & mask).sum().float()]
        )  # [3]


def log_metrics(trainer: Any, logits: Any, targets: Any) -> None:
    """Append this micro-batch's entropy and token accuracy to trl's metrics (the names
    ``SFTTrainer`` logs), gathered over processes as trl gathers them."""
    sums = answer_metrics(logits, targets)
    count, entropy, correct = trainer.accelerator.gather_for_metrics(sums[None]).sum(0).tolist()
    mode = "train" if trainer.model.training else "eval"
    trainer._metrics[mode]["entropy"].append(entropy / count if count else 0.0)
    trainer._metrics[mode]["mean_token_accuracy"].append(correct / count if count else 0.0)


def on_policy_steps(kd: KDConfig | None, answer_tokens: int, seed: int) -> OnPolicySteps | None:
    """The steps a trl KD run trains on the student's samples (None: none)."""
    if kd is None or not kd.on_policy:
        return None
    if answer_tokens < 1:
        raise ConfigError(
            f"on-policy KD (on_policy={kd.on_policy}) samples the student's answers: give "
            "answer_tokens (their most tokens, the task's max_new_tokens) as "
            "train_lora_trl does, or set on_policy=0"
        )
    return OnPolicySteps(kd.on_policy, seed)


def train_trl(
    peft_model: Any,
    tokenizer: Any,
    data: Sequence[Encoded],
    config: TrainConfig,
    options: TrlOptions,
    name: str,
    *,
    teacher: Any = None,
    kd: KDConfig | None = None,
    on_step: Callable[[int, float], bool] | None = None,
    draw: Callable[[], Sequence[Encoded]] | None = None,
    on_save: Callable[[str, int], None] | None = None,
    answer_tokens: int = 0,
    task: TaskSpec | None = None,
) -> TrainResult:
    """Train ``peft_model``'s trainable weights on ``data`` with trl; the loss per step.

    Args:
        peft_model: a peft-wrapped model (:func:`tinyllm.distill.sft.with_lora`).
        tokenizer: its tokenizer.
        data: the task's encoded examples.
        config: steps, global batch size, lr, warmup, clipping, seed.
        options: checkpoints, resume, accumulation, precision, logs.
        name: the run's folder under ``options.run_dir`` (the task's name).
        teacher, kd: a frozen teacher model and KD settings for logit KD (else SFT).
        on_step: called with (step, loss) after each step; True stops the run.
        draw: instead of ``data``, a function that returns each step's global batch when
            the step starts (the curriculum's mixture, whose tasks stop mid-run);
            ``data`` is then unused.
        on_save: called on rank 0 with (checkpoint folder, step) after each checkpoint
            (the curriculum adds its own state there).
        answer_tokens: the most tokens of a student's sampled answer, for ``kd.on_policy``
            (the task's ``max_new_tokens``; needed when the share is above 0).
        task: the task, when it has tools: on-policy steps then sample the student's
            calls (:func:`tinyllm.distill.calltargets.sampled_calls`) instead of answers.
    """
    import os

    from datasets import Dataset

    on_policy = on_policy_steps(kd, answer_tokens, config.seed)
    # The launcher's world size (torchrun, accelerate launch); accelerate's state is built
    # by the trainer's arguments, after the micro-batch must be known.
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    base = peft_model.get_base_model()
    patched = "forward" in vars(base)
    result = TrainResult()
    if draw is None:
        rows = ordered_rows(data, config, config.steps)
    else:  # placeholders that pace the loop; the trainer draws the real batches
        rows = [{"input_ids": [0], "labels": [IGNORE_INDEX]}] * (config.steps * config.batch_size)
    with run_folder(options, name) as folder:
        args = training_args(config, options, folder, config.steps, processes)
        if options.tensorboard:
            os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(folder) / "tensorboard")
        trainer = trainer_class()(
            model=peft_model,
            args=args,
            data_collator=collate_rows,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[loss_recorder(result, on_step, on_save)],
        )
        trainer.tiny_warmup, trainer.tiny_teacher, trainer.tiny_kd = config.warmup, teacher, kd
        trainer.tiny_draw = draw
        trainer.tiny_on_policy, trainer.tiny_answer_tokens = on_policy, answer_tokens
        trainer.tiny_task = task
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the losses go to the report, not stdout
        resume = latest_checkpoint(folder) if options.resume else None
        trainer.train(resume_from_checkpoint=resume)
        if resume is not None:  # the steps before the checkpoint are in its trainer_state
            result.losses[:0] = checkpoint_losses(resume)
    if not patched:
        vars(base).pop("forward", None)  # undo trl's fused-LM-head patch of the base model
    peft_model.eval()
    return result


def train_lora_trl(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    examples: Sequence[Example],
    config: TrainConfig,
    options: TrlOptions,
    *,
    teacher: Any = None,
    kd: KDConfig | None = None,
) -> tuple[LoraAdapter, TrainResult]:
    """One task's LoRA trained with trl (SFT, or logit KD when ``teacher`` and ``kd`` are
    given); the model is returned to its base state. Returns the adapter and the losses."""
    if (teacher is None) != (kd is None):
        raise ConfigError("logit KD on trl needs both a teacher model and a KDConfig")
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    data = encode(tokenizer, task, examples, config.max_len)
    peft_model = with_lora(model, config)
    result = train_trl(
        peft_model, tokenizer, data, config, options, task.name, teacher=teacher, kd=kd,
        answer_tokens=task.output.max_new_tokens, task=task,
    )  # fmt: skip
    adapter = adapter_of(peft_model, config)
    peft_model.unload()
    return adapter, result

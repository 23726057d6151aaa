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
  KL, generalized JSD). trl's ``DistillationTrainer`` generates on-policy completions
  (vLLM or ``generate``) for every batch; our KD is off-policy on the teacher's answers,
  so it subclasses ``SFTTrainer`` and replaces ``compute_loss``.

What every trl run shares (options, Trainer arguments, checkpoints, the schedule, the
batch layout) is :mod:`tinyllm.distill.trlrun`.

SFT uses ``SFTTrainer``'s own loss (the token mean of the answer tokens' cross-entropy
over the global batch, as ours), so the two backends give the same losses for a seed
(tests/distill/test_trlbackend.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinyllm.distill.sft import (
    Encoded,
    TrainConfig,
    TrainResult,
    adapter_of,
    encode,
    torch_module,
    with_lora,
)
from tinyllm.distill.trlrun import (
    TrlOptions,
    checkpoint_losses,
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
    from tinyllm.distill.kd import KDConfig


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


def trainer_class(kd: bool) -> Any:
    """``SFTTrainer`` with our warmup schedule (and, for ``kd``, our KD loss)."""
    trl = trl_module()
    sft_trainer: Any = trl.SFTTrainer

    class TinySFTTrainer(sft_trainer):
        """SFTTrainer whose schedule is our linear warmup to a constant rate, and whose
        batches may be drawn as each step starts (``tiny_draw``)."""

        tiny_draw: Callable[[], Sequence[Encoded]] | None = None

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            return warmup_scheduler(self, optimizer)

        def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> Any:
            batches, count = super().get_batch_samples(epoch_iterator, num_batches, device)
            if self.tiny_draw is None or not batches:
                return batches, count
            # A drawn batch (the curriculum's mixture) is drawn as its step starts, after
            # the last step's callbacks (early stopping) ran: the dataloader reads a batch
            # ahead, so its rows are placeholders that only pace the loop.
            acc = self.accelerator
            rows = [training_row(e) for e in self.tiny_draw()]
            parts = micro_parts(rows, len(batches), acc.num_processes, acc.process_index)
            batches = [self.data_collator(part) for part in parts]
            return batches, self._get_num_items_in_batch(batches, device)

    class TinyKDTrainer(TinySFTTrainer):
        """Logit KD against a frozen teacher: our divergence, summed over answer tokens and
        divided by the global batch's answer tokens (as trl's SFT loss is)."""

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            return kd_loss(self, model, inputs, num_items_in_batch)

    return TinyKDTrainer if kd else TinySFTTrainer


def kd_loss(trainer: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
    """The KD trainer's loss: ``trainer.tiny_kd``'s divergence from ``trainer.tiny_teacher``
    over the answer tokens (plus its CE weight), divided by the global batch's answer
    tokens as trl's SFT loss is."""
    from tinyllm.distill.losses import IGNORE_INDEX, token_divergence

    torch = torch_module()
    kd: KDConfig = trainer.tiny_kd
    batch = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    targets = inputs["labels"][:, 1:]  # [B, T-1]: what position t predicts
    s_logits = model(**batch, use_cache=False).logits[:, :-1]  # [B, T-1, V]
    teacher = trainer.tiny_teacher
    if next(teacher.parameters()).device != batch["input_ids"].device:
        teacher.to(batch["input_ids"].device)  # the Trainer moved only the student
    with torch.no_grad():
        t_logits = teacher(**batch, use_cache=False).logits[:, :-1]
    vocab = min(s_logits.shape[-1], t_logits.shape[-1])  # padded embedding rows
    per_token = token_divergence(
        s_logits[..., :vocab], t_logits[..., :vocab], kd.divergence, kd.beta, kd.temperature
    )  # [B, T-1]
    mask = targets != IGNORE_INDEX
    total = (per_token * mask).sum()
    if kd.ce_weight:
        ce = torch.nn.functional.cross_entropy(
            s_logits.float().reshape(-1, s_logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total = total + kd.ce_weight * ce
    count = num_items_in_batch if num_items_in_batch is not None else mask.sum()
    loss = total / torch.as_tensor(count).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * trainer.accelerator.num_processes  # DDP averages the gradients
    return loss


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
    """
    import os

    from datasets import Dataset

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
        trainer = trainer_class(kd is not None)(
            model=peft_model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[loss_recorder(result, on_step, on_save)],
        )
        trainer.tiny_warmup, trainer.tiny_teacher, trainer.tiny_kd = config.warmup, teacher, kd
        trainer.tiny_draw = draw
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
        peft_model, tokenizer, data, config, options, task.name, teacher=teacher, kd=kd
    )
    adapter = adapter_of(peft_model, config)
    peft_model.unload()
    return adapter, result

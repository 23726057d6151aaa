"""The trainers the curriculum's stages run (:mod:`tinyllm.distill.multitask`): the shared
adapter's stages and a dissimilar task's own LoRA, for each backend (our loop or trl's
``SFTTrainer``) and each method the curriculum takes (SFT, logit KD).

They are the single-task path's trainers with the curriculum's batches: SFT is
:func:`tinyllm.distill.sft.sft_loss` on our loop; KD is
:func:`tinyllm.distill.kd.kd_loss_fn` there, against the same frozen teacher, with
:class:`tinyllm.distill.kd.KDConfig`'s defaults as ``--method kd`` uses; on trl both are
:func:`tinyllm.distill.trlbackend.answer_loss` (KD when given the teacher).
GRPO is not one of them (:data:`tinyllm.distill.curriculum.CURRICULUM_METHODS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinyllm.distill.sft import Batch, Encoded, LossFn, TrainConfig

Draw = Callable[[], tuple[str, list["Encoded"]]]
# After each step: the 1-based step; True ends the stage.
AfterStep = Callable[[int], bool]
# After trl saved a checkpoint: its folder and the stage's step (the curriculum adds its
# state there; see tinyllm.distill.curriculumstate).
OnSave = Callable[[str, int], None]
# (shared LoRA model, draw, stage label, after_step, on_save) -> the stage's losses.
Fit = Callable[[Any, Draw, str, AfterStep | None, OnSave | None], list[float]]
Alone = Callable[[Any], tuple[Any, Any]]  # task -> (adapter, TrainResult)


def stage_folder(stage: str) -> str:
    """The run folder of a stage under ``--run-dir`` (``curriculum-stage2``)."""
    return "curriculum-" + stage.replace(" ", "")


def loss_name(teacher: Any) -> str:
    """The shared stages' loss, as the run's checkpoints record it."""
    if teacher is None:
        return "sft"
    import dataclasses

    from tinyllm.distill.kd import KDConfig

    return "kd " + str(sorted(dataclasses.asdict(KDConfig()).items()))


def mixture_kd_loss(teacher: Any, tokenizer: Any, tasks: Mapping[str, Any], seed: int) -> LossFn:
    """Our loop's KD loss on mixture batches: each batch with its own task's
    :func:`tinyllm.distill.kd.kd_loss_fn` (the task sets the on-policy answer length)."""
    from tinyllm.distill.kd import KDConfig, kd_loss_fn

    by_task = {n: kd_loss_fn(teacher, tokenizer, t, KDConfig(), seed) for n, t in tasks.items()}

    def loss(model: Any, batch: Batch) -> Any:
        return by_task[batch.task](model, batch)

    return loss


def own_fit(config: TrainConfig, progress: bool, loss_fn: LossFn) -> Fit:
    """Stages on our loop (:func:`tinyllm.distill.sft.train`) with ``loss_fn``."""
    from tinyllm.distill.sft import collate, train

    def fit(
        model: Any, draw: Draw, stage: str, after: AfterStep | None, on_save: OnSave | None
    ) -> list[float]:
        if on_save is not None:
            from tinyllm.errors import ConfigError

            raise ConfigError("checkpoints are an option of --backend trl; our loop takes none")

        def stream() -> Iterator[Any]:
            while True:
                task, items = draw()
                yield collate(items, 0, task)

        hook = None if after is None else (lambda step, _loss: after(step))
        label = stage if progress else None
        return train(model, stream(), config, loss_fn, on_step=hook, progress=label).losses

    return fit


def trl_fit(tokenizer: Any, config: TrainConfig, options: Any, teacher: Any) -> Fit:
    """Stages on trl's ``SFTTrainer`` (:func:`tinyllm.distill.trlbackend.train_trl`; its KD
    subclass when there is a ``teacher``): each step's batch is drawn as the step starts,
    and early stopping runs in its callback."""
    from tinyllm.distill.trlbackend import train_trl

    kd = None
    if teacher is not None:
        from tinyllm.distill.kd import KDConfig

        kd = KDConfig()

    def fit(
        model: Any, draw: Draw, stage: str, after: AfterStep | None, on_save: OnSave | None
    ) -> list[float]:
        hook = None if after is None else (lambda step, _loss: after(step))
        result = train_trl(
            model, tokenizer, [], config, options, stage_folder(stage), teacher=teacher, kd=kd,
            on_step=hook, draw=lambda: draw()[1], on_save=on_save,
        )  # fmt: skip
        return result.losses

    return fit


def stage_trainers(
    loaded: Any, data: Mapping[str, list[Any]], tasks: Mapping[str, Any], options: Any,
    progress: bool, teacher: Any = None,
) -> tuple[Fit, Alone]:  # fmt: skip
    """The trainers of ``options.backend``: the shared stages', and a single-task LoRA's;
    logit KD from ``teacher`` (a frozen local model) when given, else SFT."""
    model, tok, tc = loaded.model, loaded.tokenizer, options.train
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    if options.backend != "trl":
        from tinyllm.distill.kd import KDConfig, train_kd_lora
        from tinyllm.distill.sft import sft_loss, train_lora

        def own_alone(task: Any) -> tuple[Any, Any]:
            if teacher is None:
                return train_lora(model, tok, task, data[task.name], tc, progress)
            return train_kd_lora(
                model, teacher, tok, task, data[task.name], tc, KDConfig(), progress
            )

        loss = sft_loss if teacher is None else mixture_kd_loss(teacher, tok, tasks, tc.seed)
        return own_fit(tc, progress, loss), own_alone
    from tinyllm.distill.trlbackend import train_lora_trl
    from tinyllm.distill.trlrun import TrlOptions

    trl = options.trl or TrlOptions()
    kd = None
    if teacher is not None:
        from tinyllm.distill.kd import KDConfig

        kd = KDConfig()

    def trl_alone(task: Any) -> tuple[Any, Any]:
        return train_lora_trl(model, tok, task, data[task.name], tc, trl, teacher=teacher, kd=kd)

    return trl_fit(tok, tc, trl, teacher), trl_alone

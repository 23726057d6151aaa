"""The pruning recipe: calibrate, plan, prune, heal, write the child bundle.

It owns the loop over the components (importance, plan, vocab, heal); the healing loss
comes in as an argument, so this module never imports distill (``tinyllm.facade.compress``
passes the shared KD loss).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.bundle import Bundle, BundleWriter, check_output_path
from tinyllm.compress.heal import HealReport, LossFn, heal
from tinyllm.compress.importance import (
    Importance,
    calibration_conversations,
    collect_importance,
    encode_conversations,
)
from tinyllm.compress.prune import (
    PrunePlan,
    apply_selection,
    choose_plan,
    remap_token_ids,
    select,
)
from tinyllm.compress.pruneoptions import PruneOptions
from tinyllm.compress.vocab import BpeVocab, write_trimmed_tokenizer
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError
from tinyllm.lineage import bundle_name, child_manifest
from tinyllm.manifest import TOKENIZER_DIR, WEIGHTS
from tinyllm.tasks import Suite, TaskSpec

STATS_FILE = "stats/prune.json"


@dataclass(frozen=True)
class PruneReport:
    """What pruning did: the plan, the calibration, the healing losses, the time taken."""

    plan: PrunePlan
    parent_config: Any
    importance: Importance
    healing: HealReport
    calibration_sequences: int
    required_vocab: int | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written to the child's stats/prune.json)."""
        return {
            "plan": self.plan.to_dict(),
            "importance": self.importance.to_dict(),
            "calibration_sequences": self.calibration_sequences,
            "required_vocab": self.required_vocab,
            "heal_losses": [round(x, 5) for x in self.healing.losses],
            "seconds": round(self.seconds, 1),
        }

    def format(self) -> str:
        """The plan table plus calibration and healing lines, as the CLI prints them."""
        lines = [self.plan.format(self.parent_config)]
        lines.append(
            f"calibration: {self.calibration_sequences} sequences, {self.importance.tokens} "
            f"tokens; tokens the tasks need: {self.required_vocab}"
        )
        if self.healing.losses:
            lines.append(
                f"healing: {len(self.healing.losses)} steps, KD loss "
                f"{self.healing.first:.4f} -> {self.healing.last:.4f}"
            )
        lines.append(f"total {self.seconds:.0f}s")
        return "\n".join(lines)


def _vocab_priority(tokenizer_dir: Path, used: set[int]) -> tuple[np.ndarray | None, int | None]:
    path = tokenizer_dir / "tokenizer.json"
    try:
        vocab = BpeVocab.read(path)
    except ConfigError:
        return None, None  # not byte-level BPE: the vocabulary is kept whole
    return vocab.priority(used)


def prune_bundle(
    parent: Bundle,
    out: Path,
    suite: Suite,
    tasks: list[TaskSpec],
    options: PruneOptions,
    loss_fn: LossFn,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Bundle, PruneReport]:
    """Prune ``parent`` to ``options.ratio`` of its parameters, heal it, write ``out``."""
    from safetensors.numpy import load_file

    from tinyllm.models import build_reference, load_model

    options.check()
    check_output_path(parent, out)
    check_prunable(parent)
    start = time.perf_counter()
    with BundleWriter(out, overwrite=overwrite) as writer:
        loaded = load_model(parent, "float32")
        importance, calibrated = calibrate(loaded, suite, tasks, options, progress)
        plan, tokens, required = plan_pruning(parent, loaded, suite, tasks, importance, options)
        config = parent.config
        selection = select(config, plan, importance, tokens)
        weights = apply_selection(load_file(str(parent.weights_path)), config, selection)
        new_config = remap_token_ids(plan.config(config), tokens)
        student = build_reference(new_config, weights)
        healing = heal_pruned(student, loaded, suite, tasks, tokens, options, loss_fn, progress)
        report = PruneReport(
            plan=plan,
            parent_config=config,
            importance=importance,
            healing=healing,
            calibration_sequences=calibrated,
            required_vocab=required,
            seconds=time.perf_counter() - start,
        )
        return write_pruned(writer, parent, out, student, new_config, tokens, report), report


def check_prunable(parent: Bundle) -> None:
    """Refuse a quantized bundle or one with adapters (pruning would break their shapes)."""
    spec = parent.quant_spec()
    if spec is not None:
        raise ConfigError(
            f"{parent.path} is quantized (int{spec.bits}): prune its float parent, then "
            "quantize the pruned bundle (`tinyllm compress --prune` does both)"
        )
    if parent.manifest.adapters:
        raise ConfigError(
            f"{parent.path} has LoRA adapters, whose shapes pruning would break; prune the "
            "base bundle before adding adapters (or merge them first)"
        )


def calibrate(
    loaded: Any, suite: Suite, tasks: list[TaskSpec], options: PruneOptions, progress: bool
) -> tuple[Importance, int]:
    """Activation statistics on ``options.calib_samples`` train conversations per task.

    Returns (importance, number of calibration sequences).
    """
    from tqdm import tqdm

    conversations = calibration_conversations(suite, tasks, options.calib_samples)
    calib = encode_conversations(loaded.tokenizer, conversations)
    with tqdm(total=len(calib), desc="calibrate", disable=not progress, leave=False) as bar:
        importance = collect_importance(loaded.model, calib, bar.update)
    return importance, len(calib)


def plan_pruning(
    parent: Bundle,
    loaded: Any,
    suite: Suite,
    tasks: list[TaskSpec],
    importance: Importance,
    options: PruneOptions,
) -> tuple[PrunePlan, np.ndarray | None, int | None]:
    """The plan, the kept token ids (None: the vocabulary is kept whole) and the number
    of tokens the tasks need."""
    conversations = calibration_conversations(suite, tasks, options.vocab_samples)
    used = {i for s in encode_conversations(loaded.tokenizer, conversations) for i in s}
    order, required = _vocab_priority(parent.tokenizer_dir, used)
    config = parent.config
    if order is not None:  # tokenizer ids without an embedding row cannot be kept
        order = order[order < config.vocab_size]
    plan = choose_plan(
        config,
        importance,
        options.ratio,
        max_vocab=None if order is None else min(len(order), config.vocab_size),
        required_vocab=required,
        min_vocab=options.min_vocab,
        mlp_floor=options.mlp_floor,
        head_floor=options.head_floor,
    )
    tokens = None
    if plan.vocab_size != config.vocab_size and order is not None:
        tokens = np.sort(order[: plan.vocab_size])
    return plan, tokens, required


def heal_pruned(
    student: Any,
    loaded: Any,
    suite: Suite,
    tasks: list[TaskSpec],
    tokens: np.ndarray | None,
    options: PruneOptions,
    loss_fn: LossFn,
    progress: bool,
) -> HealReport:
    """Heal the pruned model by KD from the parent on train conversations not calibrated on."""
    conversations = calibration_conversations(
        suite, tasks, options.heal_samples, offset=options.calib_samples
    )
    return heal(
        student,
        loaded.model,
        encode_conversations(loaded.tokenizer, conversations),
        loss_fn,
        kept_tokens=tokens,
        config=options.heal,
        progress=progress,
    )


def write_pruned(
    writer: BundleWriter,
    parent: Bundle,
    out: Path,
    student: Any,
    config: ModelConfig,
    tokens: np.ndarray | None,
    report: PruneReport,
) -> Bundle:
    """Commit the child: pruned weights, tokenizer, ``stats/prune.json``, manifest."""
    from tinyllm.models import bundle_state_dict

    writer.save_tensors(WEIGHTS, bundle_state_dict(student, config))
    _write_tokenizer(writer, parent, tokens)
    writer.path(STATS_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    manifest = child_manifest(
        parent,
        "compress",
        name=bundle_name(out),
        source={"kind": "prune", "ref": str(parent.path), "plan": STATS_FILE},
        model=config,
        engines={},
    )
    return writer.commit(manifest)


def _write_tokenizer(writer: BundleWriter, parent: Bundle, tokens: np.ndarray | None) -> None:
    if tokens is None:
        for file in parent.manifest.files:
            if file.startswith(f"{TOKENIZER_DIR}/"):
                writer.copy_file(parent.path / file, file)
        return
    write_trimmed_tokenizer(parent.tokenizer_dir, writer.path(TOKENIZER_DIR), tokens)

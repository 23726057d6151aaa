"""Bundles for the serving benchmarks: N synthetic tasks with random LoRA adapters.

Speed does not depend on adapter values, so each task gets a random adapter (small, so
the model still writes text). Builds, cached under ``out/bench/serving/``: the base
bundle, a child with the tasks and an engine with LoRA slots (one shared deployment), and
one bundle per task with its adapter merged into the weights (one deployment per task).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

import tinyllm
from tinyllm.adapters import PROJECTIONS, LoraAdapter, adapter_shapes, merge_adapter
from tinyllm.api import add_tasks, load_tasks
from tinyllm.bundle import Bundle, BundleWriter
from tinyllm.tasks import OutputSpec, TaskSpec

OUT = Path("out/bench/serving")
RANK = 8
# Instructions that pull outputs short or long: with the trace's length caps, a skewed mix.
STYLES = (
    "Answer with one word.",
    "Summarize in one short sentence.",
    "Rewrite the text as one clear, complete sentence.",
    "Write a detailed paragraph about the text.",
    "List the key points of the text.",
    "Explain the text to a child, step by step.",
    "Translate the text into formal English.",
    "Write a short story that starts with the text.",
)


# Worked examples a production prompt carries in its instruction (``shots``): the fixed
# text before every input that the per-task prefix cache holds.
EXAMPLES = (
    ("the hotel was clean but the breakfast was cold", "Clean hotel, cold breakfast."),
    ("cant make it tmrw, can we move the call to friday", "Can we move the call to Friday?"),
    ("the delivery came two days late and the box was torn", "Late delivery, torn box."),
    ("pls send the q3 numbers before the board meeting", "Please send the Q3 numbers."),
    ("the app crashes every time i open the camera", "The app crashes on camera open."),
    ("great service, the staff went out of their way", "Great, attentive staff."),
)


def instruction(i: int, shots: int) -> str:
    """Task ``i``'s instruction, with ``shots`` worked examples after it."""
    lines = [STYLES[i % len(STYLES)]]
    for k in range(shots):
        text, answer = EXAMPLES[(i + k) % len(EXAMPLES)]
        lines.append(f"Example {k + 1}. Input: {text}\nOutput: {answer}")
    return "\n\n".join(lines)


def task_specs(n: int, max_new_tokens: int = 256, shots: int = 0) -> list[TaskSpec]:
    """``n`` text tasks (``task0`` ...) built on the suite's rewrite task."""
    base = load_tasks().task("rewrite")
    return [
        dataclasses.replace(
            base,
            name=f"task{i}",
            instruction=instruction(i, shots),
            template="{input}",
            output=OutputSpec(kind="text", max_new_tokens=max_new_tokens),
            few_shot=0,
        )
        for i in range(n)
    ]


def random_adapter(
    config: tinyllm.Bundle | object, seed: int, rank: int = RANK, scale: float = 0.02
) -> LoraAdapter:
    """A random adapter on every projection (peft layout, scaling alpha/rank = 2)."""
    c = config.config if isinstance(config, Bundle) else config
    rng = np.random.default_rng(seed)
    tensors = {
        name: (rng.standard_normal(shape) * scale).astype(np.float32)
        for name, shape in adapter_shapes(c, rank, PROJECTIONS).items()  # type: ignore[arg-type]
    }
    return LoraAdapter(rank=rank, alpha=2.0 * rank, targets=PROJECTIONS, tensors=tensors)


def build(
    source: str,
    n_tasks: int,
    max_seq_len: int,
    out: Path = OUT,
    merged: bool = True,
    shots: int = 0,
    quant: str | None = None,
) -> dict[str, Path]:
    """Bundles (cached): ``shared`` (tasks + LoRA-slot engine), ``task{i}`` (merged, one
    engine each, unless not ``merged``). ``source`` is a preset (``smollm2-135m``,
    ``tiny-llama``); ``shots`` worked examples go into each task's instruction; ``quant``
    (``int4``/``int8``) quantizes the engines' weights at export."""
    tag = (f"-shots{shots}" if shots else "") + (f"-{quant}" if quant else "")
    root = out / f"{source}-{n_tasks}{tag}"
    base = root / "base.tllm"
    if not base.exists():
        tinyllm.import_model(source, base)
    opened = Bundle.open(base)
    specs = task_specs(n_tasks, shots=shots)
    adapters = {s.name: random_adapter(opened, seed=i) for i, s in enumerate(specs)}
    paths = {"shared": root / "shared.tllm"}
    if not paths["shared"].exists():
        tasks_bundle = add_tasks(base, root / "tasks.tllm", specs, adapters, overwrite=True)
        tinyllm.export(
            tasks_bundle.path,
            "onnx-cpu",
            paths["shared"],
            max_seq_len=max_seq_len,
            lora_slots=n_tasks + 2,  # slot 0 is the base model; one free for add-under-load
            lora_rank=RANK,
            quant=quant,
        )
    if not merged:
        return paths
    weights = load_file(str(opened.weights_path))
    for spec in specs:
        paths[spec.name] = root / f"{spec.name}-merged.tllm"
        if not paths[spec.name].exists():
            merged = merge_adapter(weights, opened.config, adapters[spec.name])
            staged = _merged_bundle(opened, root / f"{spec.name}-weights.tllm", spec, merged)
            tinyllm.export(
                staged.path, "onnx-cpu", paths[spec.name], max_seq_len=max_seq_len, quant=quant
            )
    return paths


def _merged_bundle(
    parent: Bundle, out: Path, spec: TaskSpec, weights: dict[str, np.ndarray]
) -> Bundle:
    """A bundle serving one task, its adapter folded into the base weights."""
    from tinyllm.manifest import WEIGHTS

    with BundleWriter(out, overwrite=True) as writer:
        for file in parent.manifest.files:
            if file != WEIGHTS:
                writer.copy_file(parent.path / file, file)
        writer.save_tensors(WEIGHTS, weights)
        manifest = dataclasses.replace(
            parent.manifest,
            name=out.name.removesuffix(".tllm"),
            stage="distill",
            lineage=[parent.manifest.ref(str(parent.path)), *parent.manifest.lineage],
            tasks={spec.name: spec.to_dict()},
            lora_mode="merged",
        )
        return writer.commit(manifest)

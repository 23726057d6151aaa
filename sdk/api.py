"""The public API. Every CLI command is a thin shim over one function here.

Each function forwards its arguments to the core or to the module of
:mod:`tinyllm.facade` that wires its stage, and documents them. Defaults that an
options dataclass holds are read from it, so each is written once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tinyllm.bundle import Bundle
from tinyllm.compress.compression import CompressOptions
from tinyllm.compress.heal import HealConfig
from tinyllm.compress.recipe import PruneOptions
from tinyllm.facade.distill import TrainerChoice
from tinyllm.facade.evaluate import EvalOptions
from tinyllm.facade.label import LabelOptions
from tinyllm.inspection import Inspection, inspect_bundle
from tinyllm.manifest import Stage
from tinyllm.runtime.exportoptions import ExportOptions
from tinyllm.runtime.profileoptions import ProfileOptions
from tinyllm.suite import BUILTIN

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.compress.recipe import PruneReport
    from tinyllm.compress.report import CompressReport
    from tinyllm.distill.labelling import LabelStats
    from tinyllm.distill.recipe import DistillReport
    from tinyllm.distill.teachers import Teacher
    from tinyllm.evaluation import EvalReport
    from tinyllm.models import LoadedModel
    from tinyllm.runtime.access import ServerLimits
    from tinyllm.runtime.doctor import DoctorReport
    from tinyllm.runtime.gptqlayout import GPTQFormat
    from tinyllm.runtime.hfexport import HFExport
    from tinyllm.runtime.profilereport import ProfileReport
    from tinyllm.runtime.verify import Verification
    from tinyllm.tasks import Suite, TaskSpec


PathLike = str | os.PathLike[str]
DTypeName = Literal["float32", "float16", "bfloat16"]


def open_bundle(path: PathLike) -> Bundle:
    """Open and fully validate a bundle (schema, hashes, tensor shapes)."""
    return Bundle.open(path)


def import_model(
    source: str,
    out: PathLike,
    *,
    dtype: DTypeName = "float32",
    name: str | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Import a model into a new bundle: the start of every tinyllm pipeline.

    Args:
        source: a preset name (``smollm2-135m``, ``qwen2.5-0.5b-shape``, ``tiny-llama``,
            ``tiny-qwen2``), a ``.gguf`` file, or a Hugging Face model folder.
        out: the bundle folder to write (``NAME.tllm``).
        dtype: dtype of the stored weights.
        name: the bundle's name (default: the folder name without ``.tllm``).
        overwrite: replace an existing bundle at ``out`` (atomically).
    """
    from tinyllm.models import import_bundle

    return import_bundle(source, out, dtype=dtype, name=name, overwrite=overwrite)


def add_tasks(
    bundle: PathLike,
    out: PathLike,
    tasks: Sequence[TaskSpec],
    adapters: Mapping[str, LoraAdapter] | None = None,
    *,
    lora_mode: Literal["separate", "merged"] = "separate",
    stage: Stage = "distill",
    overwrite: bool = False,
) -> Bundle:
    """Write a child bundle that serves ``tasks``, each with its LoRA adapter if given.

    Base weights, tokenizer and engines are shared with the parent (hard links); tasks and
    adapters already in the parent are kept unless named again (then replaced).

    Args:
        bundle: the parent bundle.
        out: the bundle folder to write.
        tasks: task specs to record in the manifest (the router and eval read them).
        adapters: task name -> adapter (``adapters/TASK.safetensors``); every name must be
            one of ``tasks`` or already a task of the parent.
        lora_mode: ``separate`` (adapters beside one base) or ``merged``.
        stage: the pipeline stage recorded for the child.
        overwrite: replace an existing bundle at ``out``.
    """
    from tinyllm.lineage import add_tasks as write_child

    return write_child(
        open_bundle(bundle),
        out,
        tasks,
        adapters,
        lora_mode=lora_mode,
        stage=stage,
        overwrite=overwrite,
    )


def inspect(bundle: PathLike) -> Inspection:
    """Summarize a bundle: parameters by kind, size, dtype, tasks, adapters, engines, lineage."""
    return inspect_bundle(open_bundle(bundle))


def doctor() -> DoctorReport:
    """What this machine can run: ONNX Runtime providers, CUDA/cuDNN/TensorRT libraries,
    GPUs, CPU ISA, RAM, and whether each export target works here (and why not)."""
    from tinyllm.runtime.doctor import doctor as probe

    return probe()


def load_torch_model(bundle: PathLike | Bundle, dtype: DTypeName | None = None) -> LoadedModel:
    """Load a bundle as a transformers model with its tokenizer (needs ``tinyllm[torch]``)."""
    from tinyllm.models import load_model

    opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    return load_model(opened, dtype)


def load_tasks(tasks: PathLike = BUILTIN) -> Suite:
    """Load a suite file; ``"builtin"`` is the built-in six-task suite."""
    from tinyllm.suite import load_tasks as load

    return load(tasks)


def prepare_data(
    tasks: PathLike = BUILTIN, *, names: list[str] | None = None, force: bool = False
) -> dict[str, dict[str, str]]:
    """Build the data of every builder task of a suite into the cache.

    Returns task name -> split -> sha256 of the split file (same for the same spec).
    """
    from tinyllm.suite import prepare_tasks

    return prepare_tasks(load_tasks(tasks).select(names), force)


def evaluate(
    bundle: PathLike,
    tasks: PathLike = BUILTIN,
    *,
    names: list[str] | None = None,
    limit: int | None = EvalOptions.limit,
    few_shot: int = EvalOptions.few_shot,
    batch_size: int = EvalOptions.batch_size,
    backend: str = EvalOptions.backend,
    engine: str | None = EvalOptions.engine,
    constrain: bool = EvalOptions.constrain,
    progress: bool = True,
) -> EvalReport:
    """Run every task's test split through the bundle and score it.

    Args:
        bundle: the bundle to evaluate.
        tasks: a suite YAML file, or ``"builtin"``.
        names: evaluate only these tasks (default: all).
        limit: evaluate only the first N test examples of each task.
        few_shot: number of worked examples from the train split put before each input.
        batch_size: prompts generated together (the engine's rows).
        backend: ``torch`` (the bundle's weights in transformers) or ``engine`` (an
            exported engine of the bundle, see ``tinyllm export``, through the task
            router and decode loop that serving uses).
        engine: which engine for the ``engine`` backend (default: the CPU one).
        constrain: engine backend: decode as served, label tasks within their labels and
            JSON tasks as valid JSON; False measures the raw model.
        progress: show a progress bar per task.
    """
    from tinyllm.facade.evaluate import evaluate_suite

    options = EvalOptions(limit, few_shot, batch_size, backend, engine, constrain)
    return evaluate_suite(bundle, tasks, names, options, progress=progress)


def export(
    bundle: PathLike,
    target: str = ExportOptions.target,
    out: PathLike | None = None,
    *,
    quant: str | None = ExportOptions.quant,
    precision: str | None = ExportOptions.precision,
    block_size: int = ExportOptions.block_size,
    max_seq_len: int | None = ExportOptions.max_seq_len,
    lora_slots: int | None = None,
    lora_rank: int | None = None,
    accuracy_level: int = ExportOptions.accuracy_level,
    overwrite: bool = False,
    lora_spare: int = 2,
    quantized_embedding: bool = False,
    max_batch: int = ExportOptions.max_batch,
    merge_adapter: bool = ExportOptions.merge_adapter,
) -> tuple[Bundle, Verification]:
    """Export an inference engine into a new bundle (``out``, default: replace ``bundle``).

    The engine is always verified against the torch model (prefill and 16 decode steps on
    sample prompts); a failed verification raises and leaves no engine behind.

    Args:
        bundle: the bundle to export.
        target: ``onnx-cpu`` (contrib ops, fp32/int8/int4), ``onnx-cuda`` (fp16) or
            ``onnx-standard`` (standard ops only, fp32/fp16: TensorRT and others), or
            ``tensorrt`` (a TensorRT engine built through ONNX Runtime's TensorRT EP on
            this machine's GPU; docs/gpu.md).
        out: where to write the new bundle (may be the same path: replaced atomically).
        quant: ``int4`` or ``int8``: round-to-nearest weight quantization at export.
        precision: ``fp32`` or ``fp16`` for float engines (default per target).
        block_size: quantization block along the input dimension.
        max_seq_len: the longest context the engine supports (default: the model's).
        lora_slots: adapter slots of the multi-LoRA inputs (0: a plain base model).
            Default: for a bundle with separate adapters, one per adapter, plus slot 0
            (the base model), plus ``lora_spare`` for tasks added while serving; else 0.
        lora_rank: rank of those slots (default: the largest adapter rank).
        accuracy_level: MatMulNBits compute mode for int engines: 4 (int8 activations,
            fastest on CPU) or 0 (float activations, exact).
        overwrite: replace an existing bundle at ``out`` (writing onto ``bundle`` itself
            always replaces it).
        lora_spare: free adapter slots for tasks added while serving (default slots only).
        quantized_embedding: ``onnx-cpu`` with ``quant``: the token lookup reads int
            blocks (the tied lm_head's own) instead of a float table: SmolLM2's int4
            engine file 198 -> 88 MB, RSS about the same (the float table is memory-mapped
            and only looked-up rows become resident); greedy tokens change (docs/runtime.md).
        max_batch: ``tensorrt``: the largest batch of the engine's optimization profile.
        merge_adapter: fold the bundle's one task adapter into the base weights (with
            ``lora_slots=0``): the fallback when TensorRT cannot take the multi-LoRA graph.
    """
    from tinyllm.facade.export import export_bundle, export_options

    parent = open_bundle(bundle)
    options = export_options(
        parent,
        target=target,
        quant=quant,
        precision=precision,
        block_size=block_size,
        max_seq_len=max_seq_len,
        lora_slots=lora_slots,
        lora_rank=lora_rank,
        accuracy_level=accuracy_level,
        lora_spare=lora_spare,
        quantized_embedding=quantized_embedding,
        max_batch=max_batch,
        merge_adapter=merge_adapter,
    )
    return export_bundle(parent, out, options, overwrite=overwrite)


def export_hf(
    bundle: PathLike, out: PathLike, *, gptq_format: GPTQFormat = "gptq", overwrite: bool = False
) -> HFExport:
    """Export a bundle as a Hugging Face folder plus a PEFT adapter folder per task, for
    vLLM, TGI and transformers + peft (docs/deploy.md). A quantized bundle's packed
    weights go out in the GPTQ checkpoint layout, unchanged.

    Args:
        bundle: the bundle to export (float, or quantized int4/int8).
        out: the folder to write (not a bundle).
        gptq_format: ``gptq`` (v1, read by every GPTQ loader) or ``gptq_v2``.
        overwrite: replace an existing folder at ``out``.
    """
    from tinyllm.runtime.hfexport import export_hf as write_hf

    parent = open_bundle(bundle)
    return write_hf(parent, Path(out), gptq_format=gptq_format, overwrite=overwrite)


def serve(
    bundle: PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int | None = None,
    engine: str | None = None,
    max_body_bytes: int = 1 << 20,
    deadline_s: float | None = None,
    log_level: str = "info",
    base_model: str | None = "base",
    engine_options: Mapping[str, Any] | None = None,
    verify: Literal["sha256", "size"] = "sha256",
    api_key: str | None = None,
    insecure: bool = False,
    limits: ServerLimits | None = None,
) -> None:
    """Serve a bundle's tasks over OpenAI-compatible HTTP until interrupted (needs
    ``tinyllm[serve]``). Each task is a model; Ctrl-C drains in-flight requests.

    Args:
        bundle: a bundle with an exported engine and tasks.
        host: interface to bind (loopback by default: nothing outside this machine).
        port: TCP port (0: any free port, printed when the server starts).
        max_batch: KV rows, i.e. requests generated together (default: the engine's
            serving.json from ``tinyllm profile --apply``, else 8).
        engine: which exported engine (default: the CPU one).
        max_body_bytes: larger request bodies get 413.
        deadline_s: per-request deadline (504 when missed); None: the limits' request
            timeout.
        log_level: uvicorn's log level.
        base_model: model name of plain completions on the base model (None, or the name
            of a task: tasks only).
        engine_options: more keyword arguments for ``Engine.load`` (scheduler, queue_size).
        verify: ``sha256`` checks the hash of every file the engine reads before serving
            (remembered per file, so a restart is fast); ``size`` only their sizes.
        api_key: require ``Authorization: Bearer KEY`` (default: ``$TINYLLM_API_KEY``).
        insecure: allow binding a non-loopback address without an API key.
        limits: connections, open streams, ``max_tokens`` caps, request timeout
            (default :class:`tinyllm.runtime.access.ServerLimits`).
    """
    from tinyllm.facade.serve import serve_bundle

    serve_bundle(
        bundle,
        host=host,
        port=port,
        max_batch=max_batch,
        engine=engine,
        max_body_bytes=max_body_bytes,
        deadline_s=deadline_s,
        log_level=log_level,
        base_model=base_model,
        engine_options=engine_options,
        verify=verify,
        api_key=api_key,
        insecure=insecure,
        limits=limits,
    )


def profile(
    bundle: PathLike,
    *,
    engine: str | None = ProfileOptions.engine,
    runtime: str = ProfileOptions.runtime,
    workload: str = ProfileOptions.workload,
    requests: int = ProfileOptions.requests,
    rate: float | None = ProfileOptions.rate,
    concurrency: int | None = ProfileOptions.concurrency,
    prompt_len: int | None = ProfileOptions.prompt_len,
    new_tokens: int | None = ProfileOptions.new_tokens,
    threads: int | None = None,
    compare: Sequence[PathLike] = (),
    sweep: Sequence[str] = (),
    slo_p95_ms: float | None = None,
    apply: bool = False,
    out: PathLike | None = "profile-out",
    ops: bool = ProfileOptions.ops,
    overhead: bool = ProfileOptions.overhead,
    bandwidth_mib: int = ProfileOptions.bandwidth_mib,
    progress: bool = True,
) -> ProfileReport:
    """Profile a bundle's engine on this machine: latency, phases, operators, roofline,
    memory; compare bundles, sweep settings, recommend (and apply) the fastest within an
    SLO. See docs/profile.md.

    Args:
        bundle: an exported bundle.
        engine: which engine (default: the CPU one).
        runtime: ``python``, or ``cpp``: libtinyllm's server (``make cpp`` builds it) on
            the bundle's tasks; its report has the latency, phase (ONNX Runtime against the
            rest), roofline and memory sections, and says why the others are absent.
        workload: ``builtin`` (the bundle's tasks, or plain completions), a suite YAML, or
            a JSONL file of requests (``{"task": ..., "input": ...}`` or ``{"prompt": ...}``).
        requests: requests of the pass under load (a JSONL file is cycled to this many).
        rate: arrivals per second (Poisson, open loop); else ``concurrency`` in flight.
        concurrency: requests in flight (default: the engine's max_batch).
        prompt_len, new_tokens: plain completions of exactly these lengths (builtin).
        threads: ONNX Runtime intra-op threads (default: the engine's serving.json, else
            every CPU this process may use).
        compare: more bundles profiled with the same workload, side by side.
        sweep: ``KEY=V1,V2`` settings to measure (threads, max_batch, ...), every combination.
        slo_p95_ms: recommend the highest-throughput setting with p95 end-to-end latency
            within this; ``apply`` writes it into the bundle's ``engines/NAME/serving.json``
            (raises SLONotMetError, writing nothing, when no setting meets it).
        out: folder for profile.json, report.html and trace.json (None: write nothing).
        ops: run the operators pass (ONNX Runtime's profiler).
        overhead: also measure what recording costs (pass 2 with and without it,
            interleaved over 5 rounds: the median and range of the latency ratio).
        bandwidth_mib: the buffer the memory bandwidth is measured over.
        progress: progress bars on stderr.
    """
    from tinyllm.facade.profile import profile_bundle

    options = ProfileOptions(
        engine=engine,
        runtime=runtime,
        workload=workload,
        requests=requests,
        rate=rate,
        concurrency=concurrency,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        ops=ops,
        overhead=overhead,
        bandwidth_mib=bandwidth_mib,
    )
    return profile_bundle(
        open_bundle(bundle),
        options,
        threads=threads,
        compare=[open_bundle(b) for b in compare],
        sweep=sweep,
        slo_p95_ms=slo_p95_ms,
        apply=apply,
        out=Path(out) if out is not None else None,
        progress=progress,
    )


def distill(
    tasks: PathLike = BUILTIN,
    *,
    teacher: str = "oracle",
    student: PathLike,
    out: PathLike,
    names: list[str] | None = None,
    method: str = "sft",
    curriculum: bool = False,
    quick: bool = False,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    rank: int | None = None,
    layers: int | None = None,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    seed: int = 0,
    backend: str = TrainerChoice.backend,
    run_dir: PathLike | None = TrainerChoice.run_dir,
    checkpoint_every: int | None = TrainerChoice.checkpoint_every,
    resume: bool = TrainerChoice.resume,
    grad_accum: int = TrainerChoice.grad_accum,
    precision: str = TrainerChoice.precision,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DistillReport:
    """Distill a suite's tasks from a teacher into a student bundle with per-task LoRA.

    Writes ``out``: the student's base weights plus one adapter per task and the task
    specs (``lora_mode`` separate), then evaluates teacher, student and the student's
    zero-shot baseline on each task's test split.

    Args:
        tasks: a suite YAML file, or ``"builtin"``.
        teacher: ``oracle`` (the suite's own labels) or a teacher spec (``bundle:PATH``,
            ``hf:PATH``, ``openai:MODEL@URL``, ``pipeline:builtin``).
        student: a student bundle folder or a preset name (imported beside ``out``).
        out: the bundle to write.
        names: distill only these tasks (default: all).
        method: ``sft`` (sequence-level: SFT on teacher outputs), ``kd`` (logit KD when
            the teacher is a local model with the student's tokenizer, else sequence KD),
            ``grpo`` (RL with verifier rewards).
        curriculum: the three-stage multi-task curriculum instead of one LoRA per task.
        quick: small sizes for CI (minutes on CPU); explicit sizes still win.
        steps, batch_size, lr, rank: training sizes (per task; per stage for curriculum).
        layers: LoRA on the last N layers only (cheaper steps); default all layers.
        train_limit: use at most this many training examples per task.
        eval_limit: evaluate on the first N test examples per task.
        seed: seeds data order, LoRA init and sampling.
        backend: ``own`` (tinyllm's compact loop) or ``trl`` (trl's ``SFTTrainer``: runs
            under ``accelerate launch``, checkpoints, accumulation, mixed precision,
            TensorBoard; ``sft`` and ``kd``). The options below are the trl backend's.
        run_dir: where the trl backend keeps checkpoints and TensorBoard logs, per task.
        checkpoint_every: a checkpoint every N steps (needs ``run_dir``).
        resume: continue each task from its latest checkpoint in ``run_dir``.
        grad_accum: micro-batches per step; the global batch stays ``batch_size``.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (bf16/fp16 where the GPU has it).
        overwrite: replace an existing bundle at ``out``.
        progress: progress bars.
        log: where progress lines go (default: stderr).
    """
    from tinyllm.distill.recipe import DistillOptions, run_distill

    options = DistillOptions.sized(
        quick=quick,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        rank=rank,
        layers=layers,
        train_limit=train_limit,
        eval_limit=eval_limit,
        seed=seed,
    )
    trainer = TrainerChoice(backend, run_dir, checkpoint_every, resume, grad_accum, precision)
    options = dataclasses.replace(options, backend=trainer.backend, trl=trainer.trl_options())
    return run_distill(
        tasks,
        teacher=teacher,
        student=student,
        out=out,
        names=names,
        method=method,
        curriculum=curriculum,
        options=options,
        overwrite=overwrite,
        progress=progress,
        log=log,
    )


def label_data(
    tasks: PathLike,
    teacher: str | Teacher,
    out_dir: PathLike,
    *,
    names: list[str] | None = None,
    split: str = LabelOptions.split,
    k: int = LabelOptions.k,
    limit: int | None = LabelOptions.limit,
    batch_size: int = LabelOptions.batch_size,
    temperature: float = LabelOptions.temperature,
    few_shot: int = LabelOptions.few_shot,
    concurrency: int = LabelOptions.concurrency,
    shard: str | None = LabelOptions.shard,
    requests_per_second: float | None = LabelOptions.requests_per_second,
    progress: bool = True,
) -> list[LabelStats]:
    """Label each task's inputs with a teacher; keep the best verified of k candidates.

    Writes ``TASK.jsonl`` (accepted examples), ``TASK.rejected.jsonl``, ``TASK.stats.json``
    and a journal per task under ``out_dir``; rerunning resumes where a run stopped.

    Args:
        tasks: a suite YAML file, or ``"builtin"``; inputs come from each task's ``split``.
        teacher: a Teacher, or a spec (``oracle``, ``bundle:PATH``, ``hf:PATH``,
            ``openai:MODEL@BASE_URL``, ``pipeline:builtin``, ``pipeline:MODULE:FUNCTION``).
        out_dir: folder for the labelled data.
        names: label only these tasks (default: all).
        split: which split's inputs to label (its reference outputs are not used).
        k: candidates per input.
        limit: label only the first N inputs of each task.
        batch_size: inputs per teacher call and per journal append.
        temperature: sampling temperature of the teacher.
        few_shot: worked examples before each input (local teachers).
        concurrency: teacher calls in flight at once (an endpoint teacher: one request
            per input, so pair it with a small ``batch_size``).
        shard: ``"I/N"``: label only shard I of N (by a hash of each input), into the
            shard's own journal; :func:`merge_labels` joins the N shards.
        requests_per_second: client-side rate limit of an endpoint teacher.
        progress: show progress bars.
    """
    from tinyllm.facade.label import label_suite

    options = LabelOptions(
        split, k, limit, batch_size, temperature, few_shot, concurrency, shard,
        requests_per_second,
    )  # fmt: skip
    return label_suite(tasks, names, teacher, out_dir, options, progress=progress)


def merge_labels(
    tasks: PathLike,
    out_dir: PathLike,
    shards: int,
    *,
    names: list[str] | None = None,
    split: str = LabelOptions.split,
    limit: int | None = LabelOptions.limit,
) -> list[LabelStats]:
    """Merge the journals of ``shards`` labelling shards in ``out_dir`` into each task's data.

    Every shard's journal must be in ``out_dir`` and every input of the split (as the
    shards read it: same ``split`` and ``limit``) labelled; writes what an unsharded
    :func:`label_data` writes.
    """
    from tinyllm.facade.label import merge_suite

    options = LabelOptions(split=split, limit=limit)
    return merge_suite(tasks, names, out_dir, shards, options)


def compress(
    bundle: PathLike,
    out: PathLike,
    *,
    quant: str = CompressOptions.quant,
    tasks: PathLike = BUILTIN,
    names: list[str] | None = None,
    calib_samples: int = CompressOptions.calib_samples,
    group_size: int = CompressOptions.group_size,
    symmetric: bool = CompressOptions.symmetric,
    act_order: bool = CompressOptions.act_order,
    lora: str = CompressOptions.lora,
    add_task: str | None = CompressOptions.add_task,
    prune_ratio: float | None = CompressOptions.prune_ratio,
    eval_limit: int | None = CompressOptions.eval_limit,
    few_shot: int = CompressOptions.few_shot,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Bundle, CompressReport]:
    """Quantize a bundle's weights to int4/int8 (MatMulNBits packing), keeping its tasks.

    Args:
        bundle: the float bundle; with ``add_task``, a bundle this function made before.
        out: the quantized bundle to write.
        quant: ``int4-gptq`` (GPTQ on all tasks' calibration data pooled: the default,
            best measured, see docs/quality.md), ``int4-mlgptq`` (multi-task GPTQ:
            per-task Hessians, element-wise max), ``int4-rtn``; ``int8-*`` alike;
            ``int4-nncf``/``int8-nncf`` (NNCF weight compression, data-free),
            ``int4-nncf-awq`` (NNCF with AWQ and scale estimation).
        tasks: the suite (YAML or ``"builtin"``) whose train data calibrates.
        names: calibrate on these tasks only (default: all of the suite).
        calib_samples: calibration examples per task.
        group_size: input columns per scale/zero point.
        symmetric: symmetric quantization (no zero points).
        act_order: GPTQ visits columns by decreasing Hessian diagonal (static groups).
        lora: ``separate`` (adapters stay float beside one quantized base) or ``merged``
            (the one task adapter is folded into the base before quantization).
        add_task: add this suite task to an existing quantized bundle: only its forward
            pass runs, the other tasks' Hessians come from the bundle's ``stats/``.
        prune_ratio: first prune to this parameter ratio with :func:`prune` (healed by
            logit KD, calibrated on the same tasks); the pruned float bundle is kept
            beside ``out`` as ``OUT-pruned.tllm`` (the quantized bundle's parent), and
            the report's "before" is that pruned model.
        eval_limit: evaluate every task before and after on this many test examples
            (torch backend, ``few_shot`` shots); None skips evaluation.
        few_shot: worked examples per evaluation prompt.
        overwrite: replace an existing bundle at ``out``.
        progress: show progress bars.
    """
    from tinyllm.facade.compress import compress_healed

    options = CompressOptions(
        quant=quant,
        calib_samples=calib_samples,
        group_size=group_size,
        symmetric=symmetric,
        act_order=act_order,
        lora=lora,
        add_task=add_task,
        prune_ratio=prune_ratio,
        eval_limit=eval_limit,
        few_shot=few_shot,
    )
    return compress_healed(
        bundle, out, tasks, names, options, overwrite=overwrite, progress=progress
    )


def prune(
    bundle: PathLike,
    out: PathLike,
    ratio: float = PruneOptions.ratio,
    *,
    tasks: PathLike = BUILTIN,
    names: list[str] | None = None,
    calib_samples: int = PruneOptions.calib_samples,
    vocab_samples: int = PruneOptions.vocab_samples,
    min_vocab: int = PruneOptions.min_vocab,
    heal_steps: int = HealConfig.steps,
    heal_batch_size: int = HealConfig.batch_size,
    heal_lr: float = HealConfig.lr,
    seed: int = HealConfig.seed,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Bundle, PruneReport]:
    """Structured pruning to ``ratio`` of the parameters, healed by KD from the parent.

    Importance comes from activations on every task's train examples; the plan trims the
    vocabulary to the tokens the tasks (and the chat template) use, then MLP width, then
    query heads, then whole blocks. The child bundle (stage ``compress``) has the new
    config, the rewritten tokenizer and the plan in ``stats/prune.json``.

    Args:
        bundle: the parent bundle (without adapters).
        out: the bundle folder to write.
        ratio: fraction of the parameters kept, in (0, 1].
        tasks: a suite YAML file, or ``"builtin"``; ``names`` selects tasks.
        calib_samples: train examples per task for the activation statistics.
        vocab_samples: train conversations per task whose tokens the vocabulary keeps
            (more keeps more of the words unseen inputs use, at the cost of parameters).
        min_vocab: the vocabulary keeps at least this many tokens (the tokenizer's most
            frequent fill the gap) before MLP width is pruned.
        heal_steps / heal_batch_size / heal_lr: the healing run (0 steps: no healing).
        seed: healing seed (deterministic on CPU).
    """
    from tinyllm.facade.compress import prune_healed

    heal = HealConfig(steps=heal_steps, batch_size=heal_batch_size, lr=heal_lr, seed=seed)
    options = PruneOptions(
        ratio=ratio,
        calib_samples=calib_samples,
        vocab_samples=vocab_samples,
        min_vocab=min_vocab,
        heal=heal,
    )
    return prune_healed(bundle, out, tasks, names, options, overwrite=overwrite, progress=progress)

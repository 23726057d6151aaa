"""The ``tinyllm`` command line: a thin shim per command over :mod:`tinyllm.api`."""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tinyllm import api
from tinyllm.errors import TinyLLMError
from tinyllm.presets import PRESETS
from tinyllm.runtime.access import API_KEY_ENV, ServerLimits
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.runtime.targets import TARGETS

LIMITS = ServerLimits()  # the documented defaults, for --help


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="tinyllm")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """tinyllm: distill, compress and serve LLM NLP tasks as one tiny model."""
    ctx.obj = {"debug": debug}


PRESETS_HELP = "\b\nPresets:\n" + "\n".join(
    f"  {name:<20}{preset.description}" for name, preset in PRESETS.items()
)


def defaults_from(
    function: Callable[..., object], **renamed: str
) -> Callable[[click.Command], click.Command]:
    """Give each option of a command the default of the API parameter it forwards to.

    Defaults are written once: in the options dataclasses, which the API's signatures
    read. ``renamed`` maps an option's name to its parameter's (``prune="prune_ratio"``);
    options the function does not take keep their own.
    """
    parameters = inspect.signature(function).parameters

    def apply(command: click.Command) -> click.Command:
        for option in command.params:
            if not isinstance(option, click.Option) or option.multiple or option.name is None:
                continue
            parameter = parameters.get(renamed.get(option.name, option.name))
            if parameter is not None and parameter.default is not inspect.Parameter.empty:
                option.default = parameter.default
        return command

    return apply


def _print_report(report: Any, json_out: str | None) -> None:
    """Print a report's table; with ``json_out``, also write its dict form there as JSON."""
    click.echo(report.format())
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report.to_dict(), indent=2))
        click.echo(f"wrote {json_out}")


@defaults_from(api.import_model)
@cli.command("import", epilog=PRESETS_HELP)
@click.argument("source")
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle to write (X.tllm).")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    show_default=True,
    help="Dtype of the stored weights.",
)
@click.option("--name", default=None, help="Bundle name (default: the folder name).")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def import_cmd(source: str, out: str, dtype: Any, name: str | None, force: bool) -> None:
    """Import SOURCE (a preset, a .gguf file or a HF folder) into a new bundle."""
    start = time.perf_counter()
    click.echo(f"importing {source} ...", err=True)
    bundle = api.import_model(source, out, dtype=dtype, name=name, overwrite=force)
    seconds = time.perf_counter() - start
    click.echo(f"wrote {bundle.path} ({bundle.size_bytes() / 2**20:.1f} MiB) in {seconds:.1f}s")


@cli.command("inspect")
@click.argument("bundle", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a report.")
def inspect_cmd(bundle: str, as_json: bool) -> None:
    """Show what BUNDLE holds: parameters by kind, size, tasks, adapters, engines, lineage."""
    report = api.inspect(bundle)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.format())


@defaults_from(api.evaluate)
@cli.command("eval")
@click.argument("bundle", type=click.Path())
@click.option("--tasks", show_default=True, help="Suite YAML, or 'builtin'.")
@click.option("--task", "names", multiple=True, help="Evaluate only this task (repeatable).")
@click.option("--limit", type=int, default=None, help="First N test examples per task.")
@click.option("--few-shot", type=int, show_default=True, help="Worked examples.")
@click.option("--batch-size", type=int, show_default=True)
@click.option("--backend", type=click.Choice(["torch", "engine"]), show_default=True)
@click.option("--engine", default=None, help="Engine name for --backend engine.")
@click.option(
    "--constrain/--no-constrain",
    show_default=True,
    help="--backend engine: decode as served (labels, JSON) or the raw model.",
)
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write JSON here.")
def eval_cmd(
    bundle: str,
    tasks: str,
    names: tuple[str, ...],
    limit: int | None,
    few_shot: int,
    batch_size: int,
    backend: str,
    engine: str | None,
    constrain: bool,
    json_out: str | None,
) -> None:
    """Score BUNDLE on every task's test split: metric, n, invalid outputs, latency."""
    report = api.evaluate(
        bundle,
        tasks,
        names=list(names) or None,
        limit=limit,
        few_shot=few_shot,
        batch_size=batch_size,
        backend=backend,
        engine=engine,
        constrain=constrain,
        progress=sys.stderr.isatty(),
    )
    _print_report(report, json_out)


@defaults_from(api.export)
@cli.command("export")
@click.argument("bundle", type=click.Path())
@click.option(
    "--target",
    type=click.Choice([*TARGETS, "hf"]),
    show_default=True,
    help="Engine kind: ONNX Runtime contrib ops (CPU/CUDA), standard ONNX ops, or TensorRT "
    "(built on this machine's GPU; `tinyllm doctor` says what each needs); hf: a Hugging "
    "Face folder + PEFT adapters for vLLM/TGI (--out names the folder).",
)
@click.option("-o", "--out", type=click.Path(), default=None, help="New bundle (default: replace).")
@click.option("--quant", type=click.Choice(["int4", "int8"]), default=None, help="RTN weights.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None)
@click.option("--block-size", type=int, show_default=True)
@click.option("--max-seq-len", type=int, default=None, help="Longest context (default: model's).")
@click.option(
    "--lora-slots",
    type=int,
    default=None,
    help="Multi-LoRA slots (default: the bundle's adapters + base + 2 spare, else 0).",
)
@click.option("--lora-rank", type=int, default=None, help="(default: the largest adapter rank)")
@click.option("--max-batch", type=int, show_default=True, help="tensorrt: largest profile batch.")
@click.option(
    "--merge-adapter",
    metavar="TASK",
    default=None,
    help="Fold TASK's adapter into the base (no LoRA slots; the engine serves TASK only): "
    "the tensorrt fallback.",
)
@click.option(
    "--greedy-ids",
    is_flag=True,
    help="Add an in-graph argmax output: greedy rows read token ids, not logits "
    "(on CUDA the logits stay on the GPU).",
)
@click.option(
    "--gptq-format",
    type=click.Choice(["gptq", "gptq_v2"]),
    default="gptq",
    show_default=True,
    help="hf target, quantized bundle: GPTQ zero-point convention (docs/deploy.md).",
)
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def export_cmd(
    bundle: str,
    target: str,
    out: str | None,
    quant: str | None,
    precision: str | None,
    block_size: int,
    max_seq_len: int | None,
    lora_slots: int | None,
    lora_rank: int | None,
    max_batch: int,
    merge_adapter: str | None,
    greedy_ids: bool,
    gptq_format: Any,
    force: bool,
) -> None:
    """Export an inference engine of BUNDLE, verified against the torch model."""
    if target == "hf":
        if out is None:
            raise click.UsageError("--target hf writes a folder: name it with --out")
        hf = api.export_hf(bundle, out, gptq_format=gptq_format, overwrite=force)
        click.echo(hf.format())
        return
    click.echo(f"exporting {bundle} ({target}) ...", err=True)
    result, verification = api.export(
        bundle,
        target,
        out,
        quant=quant,
        precision=precision,
        block_size=block_size,
        max_seq_len=max_seq_len,
        lora_slots=lora_slots,
        lora_rank=lora_rank,
        max_batch=max_batch,
        merge_adapter=merge_adapter,
        greedy_ids=greedy_ids,
        overwrite=force,
    )
    click.echo(verification.format())
    click.echo(f"wrote {result.path} (engines: {', '.join(result.manifest.engines)})")


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a report.")
def doctor_cmd(as_json: bool) -> None:
    """Show what this machine can run: providers, GPU libraries, CPU ISA, export targets."""
    report = api.doctor()
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())


@cli.command("generate")
@click.argument("bundle", type=click.Path())
@click.argument("prompt")
@click.option("--engine", default=None, help="Engine name (default: the CPU engine).")
@click.option("--chat", is_flag=True, help="Wrap the prompt in the chat template.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--temperature", type=float, default=GenerationConfig.temperature, show_default=True)
@click.option("--top-k", type=int, default=GenerationConfig.top_k)
@click.option("--top-p", type=float, default=GenerationConfig.top_p)
@click.option("--seed", type=int, default=None)
@click.option(
    "--verify",
    type=click.Choice(["sha256", "size"]),
    default="sha256",
    show_default=True,
    help="Check the engine's files by sha256 (remembered per file), or by size only.",
)
def generate_cmd(
    bundle: str,
    prompt: str,
    engine: str | None,
    chat: bool,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    verify: Any,
) -> None:
    """Generate from PROMPT with BUNDLE's exported engine, streaming the text."""
    from tinyllm.runtime import Engine

    config = GenerationConfig(max_new_tokens, temperature, top_k, top_p, seed)
    runner = Engine.load(bundle, engine=engine, verify=verify)
    for piece in runner.stream(prompt, config, chat=chat):
        click.echo(piece, nl=False)
    click.echo()


@defaults_from(api.compress, prune="prune_ratio")
@cli.command("compress")
@click.argument("bundle", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle to write (X.tllm).")
@click.option(
    "--quant",
    show_default=True,
    help="int4|int8 + -gptq (all tasks' data pooled), -mlgptq (multi-task, max), -rtn, -nncf.",
)
@click.option("--lora", type=click.Choice(["separate", "merged"]), show_default=True)
@click.option("--tasks", show_default=True, help="Suite YAML, or 'builtin'.")
@click.option("--task", "names", multiple=True, help="Calibrate on this task (repeatable).")
@click.option("--add-task", default=None, help="Add this task to a quantized BUNDLE.")
@click.option(
    "--prune",
    type=float,
    default=None,
    help="First prune to this parameter ratio (e.g. 0.8) and heal; kept as OUT-pruned.tllm.",
)
@click.option("--calib-samples", type=int, show_default=True, help="Per task.")
@click.option("--group-size", type=int, show_default=True)
@click.option("--symmetric", is_flag=True, help="Symmetric (no zero points).")
@click.option("--act-order", is_flag=True, help="GPTQ columns by decreasing Hessian diagonal.")
@click.option("--eval-limit", type=int, default=None, help="Evaluate before/after on N examples.")
@click.option("--few-shot", type=int, show_default=True, help="Shots for --eval-limit.")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write the report here.")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def compress_cmd(
    bundle: str,
    out: str,
    quant: str,
    lora: str,
    tasks: str,
    names: tuple[str, ...],
    add_task: str | None,
    prune: float | None,
    calib_samples: int,
    group_size: int,
    symmetric: bool,
    act_order: bool,
    eval_limit: int | None,
    few_shot: int,
    json_out: str | None,
    force: bool,
) -> None:
    """Quantize BUNDLE to int4/int8 for every task (or add a task to a quantized bundle)."""
    click.echo(
        f"compressing {bundle} ({quant if add_task is None else '+' + add_task}) ...", err=True
    )
    _, report = api.compress(
        bundle,
        out,
        quant=quant,
        tasks=tasks,
        names=list(names) or None,
        calib_samples=calib_samples,
        group_size=group_size,
        symmetric=symmetric,
        act_order=act_order,
        lora=lora,
        add_task=add_task,
        prune_ratio=prune,
        eval_limit=eval_limit,
        few_shot=few_shot,
        overwrite=force,
        progress=sys.stderr.isatty(),
    )
    _print_report(report, json_out)


@cli.group("data")
def data_group() -> None:
    """Build the task suite's data (fetched or generated offline, cached, checked)."""


@defaults_from(api.prepare_data)
@data_group.command("prepare")
@click.option("--tasks", show_default=True, help="Suite YAML, or 'builtin'.")
@click.option("--task", "names", multiple=True, help="Prepare only this task (repeatable).")
@click.option("--force", is_flag=True, help="Rebuild even if cached.")
def data_prepare_cmd(tasks: str, names: tuple[str, ...], force: bool) -> None:
    """Build each task's train/validation/test splits and print their sha256."""
    digests = api.prepare_data(tasks, names=list(names) or None, force=force)
    for task, splits in digests.items():
        for split, digest in splits.items():
            click.echo(f"{task:<12}{split:<12}{digest}")


@defaults_from(api.serve)
@cli.command("serve")
@click.argument("bundle", type=click.Path())
@click.option("--host", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, show_default=True, help="0: any free port.")
@click.option(
    "--max-batch",
    type=int,
    default=None,
    help="Requests in flight (default: the engine's serving.json, else 8).",
)
@click.option("--engine", default=None, help="Engine name (default: the CPU one).")
@click.option("--max-body-bytes", type=int, show_default=True)
@click.option(
    "--deadline",
    "deadline_s",
    type=float,
    default=None,
    help=f"Seconds per request [{LIMITS.request_timeout_s:g}].",
)
@click.option(
    "--verify",
    type=click.Choice(["sha256", "size"]),
    show_default=True,
    help="Check the engine's files by sha256 (remembered per file), or by size only.",
)
@click.option(
    "--api-key", default=None, help=f"Require 'Authorization: Bearer KEY' [${API_KEY_ENV}]."
)
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without a key.")
@click.option(
    "--max-connections",
    type=int,
    default=None,
    help=f"Open connections [{LIMITS.max_connections}].",
)
@click.option(
    "--max-streams", type=int, default=None, help=f"Open streamed responses [{LIMITS.max_streams}]."
)
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help=f"Cap on a request's max_tokens [{LIMITS.max_tokens}].",
)
@click.option(
    "--task-max-tokens",
    multiple=True,
    metavar="TASK=N",
    help="Cap on max_tokens for one task (repeatable).",
)
@click.option(
    "--speculate",
    type=int,
    default=None,
    help="Prompt-lookup draft tokens per verify run, 0: off (float engines only) "
    "[the engine's serving.json, else 0].",
)
@click.option(
    "--fast-forward/--no-fast-forward",
    default=None,
    help="Write the text a constraint forces (tool calls, JSON) in one verify run "
    "[on where verify runs are exact].",
)
def serve_cmd(
    bundle: str,
    host: str,
    port: int,
    max_batch: int | None,
    engine: str | None,
    max_body_bytes: int,
    deadline_s: float | None,
    verify: Any,
    api_key: str | None,
    insecure: bool,
    max_connections: int | None,
    max_streams: int | None,
    max_tokens: int | None,
    task_max_tokens: tuple[str, ...],
    speculate: int | None,
    fast_forward: bool | None,
) -> None:
    """Serve BUNDLE's tasks over OpenAI-compatible HTTP (each task is a model)."""
    from tinyllm.runtime.access import parse_task_caps

    given = {"max_connections": max_connections, "max_streams": max_streams}
    given["max_tokens"] = max_tokens
    limits = ServerLimits(
        **{k: v for k, v in given.items() if v is not None},
        task_max_tokens=parse_task_caps(task_max_tokens),
    )
    if insecure and api_key is None and os.environ.get(API_KEY_ENV) is None:
        click.echo(f"warning: serving {host} without an API key (--insecure)", err=True)
    api.serve(
        bundle,
        host=host,
        port=port,
        max_batch=max_batch,
        engine=engine,
        max_body_bytes=max_body_bytes,
        deadline_s=deadline_s,
        verify=verify,
        api_key=api_key,
        insecure=insecure,
        limits=limits,
        engine_options={
            k: v
            for k, v in {"speculate": speculate, "fast_forward": fast_forward}.items()
            if v is not None
        },
    )


@defaults_from(api.profile)
@cli.command("profile")
@click.argument("bundle", type=click.Path())
@click.argument("more", nargs=-1)
@click.option("--engine", default=None, help="Engine name (default: the CPU one).")
@click.option("--runtime", type=click.Choice(["python", "cpp"]), show_default=True)
@click.option(
    "--workload",
    show_default=True,
    help="builtin, a suite YAML, or a JSONL file of requests.",
)
@click.option("--requests", type=int, show_default=True, help="Under load.")
@click.option("--rate", type=float, default=None, help="Arrivals per second (open loop).")
@click.option("--concurrency", type=int, default=None, help="In flight (default: max_batch).")
@click.option("--prompt-len", type=int, default=None, help="Plain completions of this length.")
@click.option("--new-tokens", type=int, default=None, help="... making this many tokens.")
@click.option("--threads", type=int, default=None, help="ONNX Runtime intra-op threads.")
@click.option("--compare", multiple=True, help="Another bundle to profile beside it.")
@click.option("--sweep", multiple=True, help="KEY=V1,V2 (threads, max_batch, ...).")
@click.option("--slo-p95-ms", type=float, default=None, help="Recommend within this p95.")
@click.option("--apply", is_flag=True, help="Write the recommendation into the bundle.")
@click.option("-o", "--out", show_default=True, type=click.Path())
@click.option("--ops/--no-ops", show_default=True, help="The operators pass.")
@click.option("--overhead", is_flag=True, help="Also measure the recorder's own cost.")
@click.option("--bandwidth-mib", type=int, show_default=True, help="Buffer size.")
def profile_cmd(
    bundle: str,
    more: tuple[str, ...],
    compare: tuple[str, ...],
    sweep: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Profile BUNDLE's engine on this machine: latency, phases, operators, roofline.

    Writes profile.json, report.html and trace.json into --out. Lists may follow their
    option: `--sweep threads=1,2 max_batch=1,4,8` and `--compare A.tllm B.tllm`.
    """
    from tinyllm.runtime.profilesweep import SLONotMetError

    extra_sweep = [m for m in more if "=" in m]
    extra_compare = [m for m in more if "=" not in m]
    if (extra_sweep and not sweep) or (extra_compare and not compare):
        raise click.UsageError(f"unexpected argument {more[0]!r}")
    try:
        report = api.profile(
            bundle,
            compare=[*compare, *extra_compare],
            sweep=[*sweep, *extra_sweep],
            progress=sys.stderr.isatty(),
            **kwargs,
        )
    except SLONotMetError as e:
        if e.report is not None:
            click.echo(e.report.format())
        raise
    click.echo(report.format())
    for kind, path in report.files.items():
        click.echo(f"wrote {path} ({kind})")


@defaults_from(api.distill)
@cli.command("distill")
@click.argument("tasks")
@click.option("--teacher", show_default=True, help="Teacher spec or 'oracle'.")
@click.option("--student", required=True, help="Student bundle folder or preset name.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle to write (X.tllm).")
@click.option("--task", "names", multiple=True, help="Distill only this task (repeatable).")
@click.option("--method", type=click.Choice(["sft", "kd", "grpo"]), show_default=True)
@click.option("--curriculum", is_flag=True, help="Three-stage multi-task curriculum.")
@click.option("--quick", is_flag=True, help="Small sizes for CI (minutes on CPU).")
@click.option("--steps", type=int, default=None, help="Training steps per task (or stage).")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--rank", type=int, default=None, help="LoRA rank.")
@click.option("--layers", type=int, default=None, help="LoRA on the last N layers only.")
@click.option("--train-limit", type=int, default=None, help="Training examples per task.")
@click.option("--eval-limit", type=int, default=None, help="Test examples per task.")
@click.option("--seed", type=int, show_default=True)
@click.option(
    "--balance",
    type=float,
    default=None,
    help="Balance training data over input wordings at this temperature (larger: more even).",
)
@click.option(
    "--backend", type=click.Choice(["own", "trl"]), show_default=True, help="Training loop."
)
@click.option("--run-dir", type=click.Path(), default=None, help="trl: checkpoints, TensorBoard.")
@click.option("--checkpoint-every", type=int, default=None, help="trl: checkpoint every N steps.")
@click.option("--resume", is_flag=True, help="trl: continue from the latest checkpoints.")
@click.option("--grad-accum", type=int, show_default=True, help="trl: micro-batches per step.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16", "auto"]), show_default=True)
@click.option(
    "--num-processes",
    type=int,
    default=1,
    show_default=True,
    help="trl: launch N data-parallel processes (torchrun; gloo on CPU).",
)
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write JSON here.")
@click.pass_context
def distill_cmd(
    ctx: click.Context,
    tasks: str,
    names: tuple[str, ...],
    force: bool,
    json_out: str | None,
    num_processes: int,
    **kwargs: Any,
) -> None:
    """Distill the tasks of TASKS (a suite YAML or 'builtin') into a student bundle."""
    if num_processes > 1:
        from tinyllm.distill.launch import relaunch

        sys.exit(relaunch(num_processes, (ctx.obj or {}).get("argv", sys.argv[1:])))
    report = api.distill(tasks, names=list(names) or None, overwrite=force, **kwargs)
    if os.environ.get("RANK", "0") == "0":  # under a launcher only rank 0 reports
        _print_report(report, json_out)


@defaults_from(api.label_data)
@data_group.command("label")
@click.argument("tasks")
@click.option(
    "--teacher",
    required=True,
    help="oracle, bundle:PATH, hf:PATH, "
    "openai:MODEL@BASE_URL, pipeline:builtin or pipeline:MODULE:FUNCTION.",
)
@click.option("-o", "--out", required=True, type=click.Path(), help="Folder for labelled data.")
@click.option("--task", "names", multiple=True, help="Label only this task (repeatable).")
@click.option(
    "--split",
    type=click.Choice(["train", "validation", "test"]),
    show_default=True,
    help="Whose inputs to label.",
)
@click.option("--k", type=int, show_default=True, help="Candidates per input.")
@click.option("--limit", type=int, default=None, help="First N inputs per task.")
@click.option("--batch-size", type=int, show_default=True)
@click.option("--temperature", type=float, show_default=True)
@click.option("--few-shot", type=int, show_default=True, help="Local teachers.")
@click.option("--concurrency", type=int, show_default=True, help="Teacher calls in flight.")
@click.option("--shard", default=None, metavar="I/N", help="Label only shard I of N.")
@click.option(
    "--requests-per-second", type=float, default=None, help="Endpoint teachers' rate limit."
)
def data_label_cmd(
    tasks: str, teacher: str, out: str, names: tuple[str, ...], **kwargs: Any
) -> None:
    """Label TASKS (suite YAML or 'builtin') with a teacher: k candidates, verified, best kept.

    Rerunning with the same -o resumes: inputs already labelled are not relabelled. With
    --shard I/N each process labels one shard; 'tinyllm data merge' joins them.
    """
    from tinyllm.distill.labelling import format_stats

    stats = api.label_data(
        tasks, teacher, out, names=list(names) or None, progress=sys.stderr.isatty(), **kwargs
    )
    click.echo(format_stats(stats))
    click.echo(f"wrote {out}")


@defaults_from(api.merge_labels)
@data_group.command("merge")
@click.argument("tasks")
@click.option("-o", "--out", required=True, type=click.Path(), help="Folder of the shards.")
@click.option("--shards", type=int, required=True, help="N, the number of shards.")
@click.option("--task", "names", multiple=True, help="Merge only this task (repeatable).")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), show_default=True)
@click.option("--limit", type=int, default=None, help="First N inputs per task.")
def data_merge_cmd(
    tasks: str, out: str, shards: int, names: tuple[str, ...], split: str, limit: int | None
) -> None:
    """Merge the shard journals in -o (from 'data label --shard I/N') into each task's data."""
    from tinyllm.distill.labelling import format_stats

    stats = api.merge_labels(
        tasks, out, shards, names=list(names) or None, split=split, limit=limit
    )
    click.echo(format_stats(stats))
    click.echo(f"wrote {out}")


@defaults_from(api.prune)
@cli.command("prune")
@click.argument("bundle", type=click.Path())
@click.option("--ratio", type=float, show_default=True, help="Parameters kept.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle to write (X.tllm).")
@click.option("--tasks", show_default=True, help="Suite YAML, or 'builtin'.")
@click.option("--task", "names", multiple=True, help="Calibrate on this task only (repeatable).")
@click.option("--calib-samples", type=int, show_default=True, help="Per task.")
@click.option(
    "--vocab-samples",
    type=int,
    show_default=True,
    help="Train conversations per task whose tokens the vocabulary keeps.",
)
@click.option("--min-vocab", type=int, show_default=True)
@click.option("--heal-steps", type=int, show_default=True, help="0: no healing.")
@click.option("--heal-batch-size", type=int, show_default=True)
@click.option("--heal-lr", type=float, show_default=True)
@click.option("--seed", type=int, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def prune_cmd(
    bundle: str,
    ratio: float,
    out: str,
    tasks: str,
    names: tuple[str, ...],
    calib_samples: int,
    vocab_samples: int,
    min_vocab: int,
    heal_steps: int,
    heal_batch_size: int,
    heal_lr: float,
    seed: int,
    force: bool,
) -> None:
    """Prune BUNDLE to --ratio of its parameters (vocab, MLP, heads, blocks), then heal it."""
    click.echo(f"pruning {bundle} to ratio {ratio} ...", err=True)
    result, report = api.prune(
        bundle,
        out,
        ratio,
        tasks=tasks,
        names=list(names) or None,
        calib_samples=calib_samples,
        vocab_samples=vocab_samples,
        min_vocab=min_vocab,
        heal_steps=heal_steps,
        heal_batch_size=heal_batch_size,
        heal_lr=heal_lr,
        seed=seed,
        overwrite=force,
    )
    click.echo(report.format())
    click.echo(f"wrote {result.path} ({result.size_bytes() / 2**20:.1f} MiB)")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, printing tinyllm errors as one line (exit 1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="tinyllm", standalone_mode=False, obj={"argv": args})
    except TinyLLMError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


if __name__ == "__main__":  # `python -m tinyllm.cli`, as launchers (torchrun) start it
    main()

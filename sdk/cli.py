"""The ``tinyllm`` command line: a thin shim per command over :mod:`tinyllm.api`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from tinyllm import api
from tinyllm.errors import TinyLLMError
from tinyllm.presets import PRESETS


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


@cli.command("import", epilog=PRESETS_HELP)
@click.argument("source")
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle to write (X.tllm).")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default="float32",
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


@cli.command("eval")
@click.argument("bundle", type=click.Path())
@click.option("--tasks", default="builtin", show_default=True, help="Suite YAML, or 'builtin'.")
@click.option("--task", "names", multiple=True, help="Evaluate only this task (repeatable).")
@click.option("--limit", type=int, default=None, help="First N test examples per task.")
@click.option("--few-shot", type=int, default=0, show_default=True, help="Worked examples.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option(
    "--backend", type=click.Choice(["torch", "engine"]), default="torch", show_default=True
)
@click.option("--engine", default=None, help="Engine name for --backend engine.")
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
        progress=sys.stderr.isatty(),
    )
    click.echo(report.format())
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report.to_dict(), indent=2))
        click.echo(f"wrote {json_out}")


@cli.command("export")
@click.argument("bundle", type=click.Path())
@click.option(
    "--target",
    type=click.Choice(["onnx-cpu", "onnx-cuda", "onnx-standard"]),
    default="onnx-cpu",
    show_default=True,
    help="Engine kind: ONNX Runtime contrib ops (CPU/CUDA) or standard ONNX ops.",
)
@click.option("-o", "--out", type=click.Path(), default=None, help="New bundle (default: replace).")
@click.option("--quant", type=click.Choice(["int4", "int8"]), default=None, help="RTN weights.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None)
@click.option("--block-size", type=int, default=32, show_default=True)
@click.option("--max-seq-len", type=int, default=None, help="Longest context (default: model's).")
@click.option("--lora-slots", type=int, default=0, show_default=True, help="Multi-LoRA slots.")
@click.option("--lora-rank", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def export_cmd(
    bundle: str,
    target: str,
    out: str | None,
    quant: str | None,
    precision: str | None,
    block_size: int,
    max_seq_len: int | None,
    lora_slots: int,
    lora_rank: int,
    force: bool,
) -> None:
    """Export an inference engine of BUNDLE, verified against the torch model."""
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
        overwrite=force,
    )
    click.echo(verification.format())
    click.echo(f"wrote {result.path} (engines: {', '.join(result.manifest.engines)})")


@cli.command("generate")
@click.argument("bundle", type=click.Path())
@click.argument("prompt")
@click.option("--engine", default=None, help="Engine name (default: the CPU engine).")
@click.option("--chat", is_flag=True, help="Wrap the prompt in the chat template.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--top-k", type=int, default=0)
@click.option("--top-p", type=float, default=1.0)
@click.option("--seed", type=int, default=None)
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
) -> None:
    """Generate from PROMPT with BUNDLE's exported engine, streaming the text."""
    from tinyllm.runtime import Engine, GenerationConfig

    config = GenerationConfig(max_new_tokens, temperature, top_k, top_p, seed)
    runner = Engine.load(bundle, engine=engine)
    for piece in runner.stream(prompt, config, chat=chat):
        click.echo(piece, nl=False)
    click.echo()


@cli.group("data")
def data_group() -> None:
    """Build the task suite's data (fetched or generated offline, cached, checked)."""


@data_group.command("prepare")
@click.option("--tasks", default="builtin", show_default=True, help="Suite YAML, or 'builtin'.")
@click.option("--task", "names", multiple=True, help="Prepare only this task (repeatable).")
@click.option("--force", is_flag=True, help="Rebuild even if cached.")
def data_prepare_cmd(tasks: str, names: tuple[str, ...], force: bool) -> None:
    """Build each task's train/validation/test splits and print their sha256."""
    digests = api.prepare_data(tasks, names=list(names) or None, force=force)
    for task, splits in digests.items():
        for split, digest in splits.items():
            click.echo(f"{task:<12}{split:<12}{digest}")


@cli.command("prune")
@click.argument("bundle", type=click.Path())
@click.option("--ratio", type=float, default=0.8, show_default=True, help="Parameters kept.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle to write (X.tllm).")
@click.option("--tasks", default="builtin", show_default=True, help="Suite YAML, or 'builtin'.")
@click.option("--task", "names", multiple=True, help="Calibrate on this task only (repeatable).")
@click.option("--calib-samples", type=int, default=16, show_default=True, help="Per task.")
@click.option("--min-vocab", type=int, default=8192, show_default=True)
@click.option("--heal-steps", type=int, default=60, show_default=True, help="0: no healing.")
@click.option("--heal-batch-size", type=int, default=2, show_default=True)
@click.option("--heal-lr", type=float, default=1e-5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def prune_cmd(
    bundle: str,
    ratio: float,
    out: str,
    tasks: str,
    names: tuple[str, ...],
    calib_samples: int,
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
        cli.main(args=args, prog_name="tinyllm", standalone_mode=False)
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

"""The ``tinyllm`` command line: a thin shim per command over :mod:`tinyllm.api`."""

from __future__ import annotations

import json
import os
import sys
import time
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

"""Each default is written once: the CLI's are the API's, the API's are the dataclasses'.

A CLI option that restates a default (and drifts from it) fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import click

from tinyllm import api
from tinyllm.cli import cli, defaults_from

Path = tuple[str, ...]
COMMANDS: dict[Path, Callable[..., object]] = {
    ("import",): api.import_model,
    ("eval",): api.evaluate,
    ("export",): api.export,
    ("compress",): api.compress,
    ("data", "prepare"): api.prepare_data,
    ("serve",): api.serve,
    ("profile",): api.profile,
    ("distill",): api.distill,
    ("data", "label"): api.label_data,
    ("data", "merge"): api.merge_labels,
    ("prune",): api.prune,
}
RENAMED: dict[Path, dict[str, str]] = {("compress",): {"prune": "prune_ratio"}}


def field_defaults(cls: type, *names: str) -> dict[str, Any]:
    """Field name -> default of a dataclass (all plain-default fields if no names)."""
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    chosen = names or tuple(n for n, d in fields.items() if d is not dataclasses.MISSING)
    return {n: fields[n] for n in chosen}


def dataclass_defaults() -> dict[Path, dict[str, Any]]:
    """Command -> API parameter -> the default its options dataclass holds."""
    from tinyllm.compress.compression import CompressOptions
    from tinyllm.compress.heal import HealConfig
    from tinyllm.compress.recipe import PruneOptions
    from tinyllm.facade.distill import TrainerChoice
    from tinyllm.facade.evaluate import EvalOptions
    from tinyllm.facade.label import LabelOptions
    from tinyllm.runtime.exportoptions import ExportOptions
    from tinyllm.runtime.profileoptions import ProfileOptions

    heal = field_defaults(HealConfig, "steps", "batch_size", "lr", "seed")
    # The API's lora_slots / lora_rank default to None: "from the bundle's adapters".
    export = (
        "target",
        "precision",
        "quant",
        "block_size",
        "accuracy_level",
        "max_seq_len",
        "greedy_ids",
    )
    return {
        ("eval",): field_defaults(EvalOptions),
        ("compress",): field_defaults(CompressOptions),
        ("data", "label"): field_defaults(LabelOptions),
        ("distill",): field_defaults(TrainerChoice),
        ("prune",): {
            **field_defaults(PruneOptions, "ratio", "calib_samples", "vocab_samples", "min_vocab"),
            **{f"heal_{k}" if k != "seed" else k: v for k, v in heal.items()},
        },
        ("export",): field_defaults(ExportOptions, *export),
        ("profile",): {
            k: v
            for k, v in field_defaults(ProfileOptions).items()
            if k in inspect.signature(api.profile).parameters
        },
    }


def command(path: Path) -> click.Command:
    group: click.Command = cli
    for name in path:
        assert isinstance(group, click.Group)
        group = group.commands[name]
    return group


def cli_defaults(cmd: click.Command) -> dict[str, Any]:
    """Option name -> default of every single-valued option."""
    return {
        o.name: o.default
        for o in cmd.params
        if isinstance(o, click.Option) and not o.multiple and o.name is not None
    }


def mismatches(path: Path, cmd: click.Command, expected: dict[str, Any]) -> list[str]:
    """Options of ``cmd`` whose default differs from ``expected`` (by API parameter)."""
    renamed = RENAMED.get(path, {})
    return [
        f"{' '.join(path)} --{name}: {default!r} != {expected[renamed.get(name, name)]!r}"
        for name, default in cli_defaults(cmd).items()
        if renamed.get(name, name) in expected and default != expected[renamed.get(name, name)]
    ]


def api_defaults(function: Callable[..., object]) -> dict[str, Any]:
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_every_cli_default_is_the_api_default() -> None:
    found = [m for p, f in COMMANDS.items() for m in mismatches(p, command(p), api_defaults(f))]
    assert found == []


def test_every_cli_and_api_default_is_the_dataclass_default() -> None:
    expected = dataclass_defaults()
    assert sum(len(v) for v in expected.values()) >= 40  # the table covers the options
    found = [m for p, e in expected.items() for m in mismatches(p, command(p), e)]
    found += [
        f"api {p}: {name}"
        for p, e in expected.items()
        for name, value in e.items()
        if api_defaults(COMMANDS[p]).get(name, value) != value
    ]
    assert found == []


def test_generate_samples_with_the_generation_config_defaults() -> None:
    from tinyllm.runtime.sampling import GenerationConfig

    defaults = cli_defaults(command(("generate",)))
    expected = field_defaults(GenerationConfig, "temperature", "top_k", "top_p")
    assert {k: defaults[k] for k in expected} == expected
    assert defaults["max_new_tokens"] == 64  # the CLI's own: shorter than the library's


def test_a_restated_default_that_drifts_is_found() -> None:
    @click.command()
    @click.option("--calib-samples", type=int, default=33)
    @click.option("--prune", type=float, default=0.5)
    @click.option("--few-shot", type=int, default=4)
    def restated(calib_samples: int, prune: float, few_shot: int) -> None:
        """A compress command that restates two defaults wrongly."""

    expected = dataclass_defaults()[("compress",)]
    found = mismatches(("compress",), restated, expected)
    assert found == [
        "compress --calib_samples: 33 != 32",
        "compress --prune: 0.5 != None",
        "compress --few_shot: 4 != 3",
    ]
    defaults_from(api.compress, prune="prune_ratio")(restated)  # what the CLI applies
    assert mismatches(("compress",), restated, expected) == []

"""An engine's serving defaults: the one place ``Engine.load``'s serving settings default.

``tinyllm profile --sweep ... --slo-p95-ms X --apply`` measures settings on the user's
own machine and writes the best into ``engines/NAME/serving.json`` (through the bundle
writer: a new bundle, never an edit in place). ``Engine.load`` and ``tinyllm serve`` then
start from that file; an argument given explicitly still wins.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllm.config import from_dict, to_dict
from tinyllm.errors import BundleError, ConfigError
from tinyllm.runtime.scheduler import Policy, SchedulerConfig
from tinyllm.runtime.serving import ServingOptions

FILE = "serving.json"
_SCHED = SchedulerConfig()
_OPTIONS = ServingOptions(_SCHED)


@dataclass(frozen=True)
class ServingDefaults:
    """Serving settings of ``Engine.load`` (see its docstring for what each means).

    The built-in values are the scheduler's and the serving options' own defaults;
    ``threads`` None means the CPUs this process may use.
    """

    threads: int | None = None
    max_batch: int = _SCHED.max_rows
    queue_size: int = _SCHED.queue_size
    max_tasks_per_step: int = _SCHED.max_tasks_per_step
    scheduler: Policy = _SCHED.policy
    chunk_size: int = _SCHED.chunk_size
    prefill_tokens: int = _SCHED.prefill_tokens
    aging: float = _SCHED.aging
    constrain: bool = _OPTIONS.constrain
    prefix_cache_mb: float = _OPTIONS.prefix_cache_mb
    speculate: int = _OPTIONS.speculation.draft_tokens  # 0: off unless asked
    fast_forward: bool | None = None  # None: on where verify runs are exact (check_exact)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        self.options()  # the scheduler and serving options check the rest

    def options(self) -> ServingOptions:
        """The serving options these settings describe."""
        return ServingOptions(
            SchedulerConfig(
                max_rows=self.max_batch,
                queue_size=self.queue_size,
                max_tasks_per_step=self.max_tasks_per_step,
                chunk_size=self.chunk_size,
                prefill_tokens=self.prefill_tokens,
                aging=self.aging,
                policy=self.scheduler,
            ),
            self.constrain,
            self.prefix_cache_mb,
            dataclasses.replace(
                _OPTIONS.speculation,
                draft_tokens=self.speculate,
                forced=bool(self.fast_forward),
            ),
        )

    def with_given(self, **given: Any) -> ServingDefaults:
        """These settings with every argument that is not None put in their place."""
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown serving setting {unknown[0]!r}")
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class ServingFile:
    """``engines/NAME/serving.json``: the settings and how they were chosen."""

    settings: ServingDefaults
    chosen_by: dict[str, Any] = field(default_factory=dict)


def read_defaults(folder: Path) -> ServingDefaults:
    """The serving defaults of the engine in ``folder`` (built-in ones without the file)."""
    path = folder / FILE
    if not path.is_file():
        return ServingDefaults()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON ({e}); re-run `tinyllm profile --apply`") from e
    try:
        return from_dict(ServingFile, data, str(path)).settings
    except ConfigError as e:
        raise BundleError(f"{e}; re-run `tinyllm profile --apply`") from e


def write_defaults(folder: Path, settings: ServingDefaults, chosen_by: dict[str, Any]) -> Path:
    """Write ``serving.json`` into an engine folder being staged by a bundle writer."""
    path = folder / FILE
    data = to_dict(ServingFile(settings, chosen_by))
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path

"""Task specs: one YAML spec per task drives teacher, verifier, training, evaluation, router.

A suite file is YAML with a ``tasks:`` list; each entry is a :class:`TaskSpec`. Unknown
keys, bad values and missing data files are errors that name the task and the key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tinyllm.config import from_dict, to_dict
from tinyllm.errors import ConfigError, TaskError

OutputKind = Literal["label", "json", "text"]
Message = dict[str, str]  # one chat turn: {"role": ..., "content": ...}
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
METRICS = ("accuracy", "macro_f1", "exact_match", "slot_f1", "rouge_l")
VERIFIERS = ("label_in_set", "json_schema", "number", "iso_datetime", "non_empty")
# The name that stands for what tinyllm ships wherever a file goes: the built-in suite
# for a suite file, the built-in workload for a profile's workload file.
BUILTIN = "builtin"


@dataclass(frozen=True)
class OutputSpec:
    """What a task's answer looks like: a label from a set, JSON matching a schema, or text.

    ``speculate``: whether serving drafts the answer's tokens from the prompt and verifies
    them in one step (greedy outputs unchanged); None: yes for JSON and text answers, which
    tend to copy their input (extraction, rewriting), no for labels.
    """

    kind: OutputKind
    labels: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    max_new_tokens: int = 32
    speculate: bool | None = None

    @property
    def speculates(self) -> bool:
        """``speculate`` with its default resolved."""
        return self.kind != "label" if self.speculate is None else self.speculate


@dataclass(frozen=True)
class ToolUse:
    """The tools a task's model may call (names in :mod:`tinyllm.tools`' registry).

    ``result``: ``answer`` when the tool's result is the task's answer; ``context`` when
    the model reads the result and then writes the answer itself. ``max_call_tokens``
    bounds the tokens of the call the model writes.
    """

    names: list[str]
    result: Literal["answer", "context"] = "answer"
    max_call_tokens: int = 96

    def __post_init__(self) -> None:
        if not self.names or len(set(self.names)) != len(self.names):
            raise ConfigError(f"tools.names must list distinct tool names, got {self.names}")
        if self.result not in ("answer", "context"):
            raise ConfigError(f"tools.result must be 'answer' or 'context', got {self.result!r}")
        if self.max_call_tokens < 8:
            raise ConfigError(f"tools.max_call_tokens must be >= 8, got {self.max_call_tokens}")


@dataclass(frozen=True)
class DataSpec:
    """Where a task's examples come from.

    Either ``builder`` (a built-in generator of the suite, run by ``tinyllm data``) or
    one JSONL file per split (``{"input": ..., "output": ...}`` per line; paths relative
    to the suite file).
    """

    builder: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class TaskSpec:
    """One NLP task: its prompt, output kind, verifiers, metric and data."""

    name: str
    description: str
    instruction: str
    output: OutputSpec
    metric: str
    data: DataSpec
    template: str = "{input}"
    verifiers: list[str] = field(default_factory=list)
    few_shot: int = 3
    tools: ToolUse | None = None

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{where}: name must be letters, digits, '-' or '_'")
        if self.metric not in METRICS:
            raise ConfigError(f"{where}: metric {self.metric!r} is not one of {METRICS}")
        for v in self.verifiers:
            if v not in VERIFIERS:
                raise ConfigError(f"{where}: verifier {v!r} is not one of {VERIFIERS}")
        if "{input}" not in self.template:
            raise ConfigError(f"{where}: template must contain {{input}}")
        if self.output.kind == "label" and len(self.output.labels) < 2:
            raise ConfigError(f"{where}: a label task needs at least two labels")
        if self.output.kind == "json":
            check_json_schema(self.output.schema, where)
        if self.data.builder is None and not all(getattr(self.data, s) for s in SPLITS):
            raise ConfigError(f"{where}: data needs a builder or train/validation/test files")
        unknown = set(self.data.sizes) - set(SPLITS)
        if unknown:
            raise ConfigError(f"{where}: data.sizes has unknown split {sorted(unknown)[0]!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as stored in a bundle's manifest); ``tools`` and
        ``output.speculate`` only when set, so a task without them reads and hashes as
        before they existed."""
        result: dict[str, Any] = to_dict(self)
        if result.get("tools") is None:
            result.pop("tools", None)
        if result["output"].get("speculate") is None:
            result["output"].pop("speculate", None)
        return result

    def prompt(self, text: str) -> str:
        """The user turn for one input."""
        return self.template.replace("{input}", text)


def check_json_schema(schema: dict[str, Any] | None, where: str) -> None:
    """Reject a missing or invalid JSON Schema."""
    if schema is None:
        raise ConfigError(f"{where}: a json task needs output.schema (a JSON Schema)")
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ConfigError(f"{where}: output.schema is not a valid JSON Schema: {e.message}") from e


@dataclass(frozen=True)
class Example:
    """One labelled example. ``output`` is the canonical answer text."""

    input: str
    output: str
    meta: dict[str, Any] = field(default_factory=dict)


def conversation(task: TaskSpec, text: str, shots: list[Example]) -> list[Message]:
    """A task's prompt for one input: the system instruction, worked examples, the user turn.

    The one prompt of a task: training, evaluation, teachers and serving all build it here.
    """
    messages = [{"role": "system", "content": task.instruction}]
    for shot in shots:
        messages.append({"role": "user", "content": task.prompt(shot.input)})
        messages.append({"role": "assistant", "content": shot.output})
    messages.append({"role": "user", "content": task.prompt(text)})
    return messages


@dataclass(frozen=True)
class Suite:
    """Tasks loaded from a suite file, with the folder their relative paths start from."""

    tasks: list[TaskSpec]
    root: Path

    def task(self, name: str) -> TaskSpec:
        """The task called ``name``; an unknown name is an error listing the known ones."""
        for task in self.tasks:
            if task.name == name:
                return task
        known = ", ".join(t.name for t in self.tasks)
        raise TaskError(f"unknown task {name!r}; this suite has: {known}")

    def select(self, names: list[str] | None) -> list[TaskSpec]:
        """The named tasks (every task when ``names`` is empty or None)."""
        return [self.task(n) for n in names] if names else list(self.tasks)


def task_from_dict(data: dict[str, Any], where: str) -> TaskSpec:
    """A task spec from its dict form (as stored in a bundle manifest)."""
    return from_dict(TaskSpec, data, where)


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Load and validate a suite YAML file (``tasks:`` list of task specs)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such suite file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8"
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict) or set(data) != {"tasks"} or not isinstance(data["tasks"], list):
        raise ConfigError(f"{path}: a suite file has one key, 'tasks', holding a list of tasks")
    tasks = []
    for i, entry in enumerate(data["tasks"]):
        name = entry.get("name", f"#{i}") if isinstance(entry, dict) else f"#{i}"
        tasks.append(from_dict(TaskSpec, entry, f"{path}: task {name!r}"))
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: task {duplicates[0]!r} is defined twice")
    if not tasks:
        raise ConfigError(f"{path}: the suite has no tasks")
    return Suite(tasks, path.parent)


def read_examples(path: Path, where: str) -> list[Example]:
    """Read a JSONL data file of ``{"input", "output", "meta"?}`` records."""
    if not path.is_file():
        raise TaskError(
            f"{where}: data file {path} does not exist; for built-in tasks run "
            "`tinyllm data prepare` first"
        )
    examples = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TaskError(
                    f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start} of the "
                    "line); re-save the file as UTF-8"
                ) from e
            if not line.strip():
                continue
            try:
                examples.append(from_dict(Example, json.loads(line), f"{path}:{lineno}"))
            except json.JSONDecodeError as e:
                raise TaskError(f"{path}:{lineno}: not valid JSON ({e})") from e
            except ConfigError as e:
                raise TaskError(str(e)) from e
    return examples


def write_examples(path: Path, examples: list[Example]) -> None:
    """Write examples as JSONL (sorted keys, so identical data gives identical bytes)."""
    from tinyllm.durability import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(to_dict(ex), sort_keys=True, ensure_ascii=False) + "\n" for ex in examples]
    write_text_atomic(path, "".join(lines))

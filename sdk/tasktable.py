"""The task table (``engines/NAME/tasks.json``): each task's prompt, slot, stops and constraint.

Export renders every task's prompt once with the chat template (Jinja stays in Python)
and writes it around the input, with what the router and the C++ runtime need to serve
the task without the template engine: the adapter slot, the output limit, stop tokens,
the label token sequences of the constraint trie, the JSON root of a JSON task, the
verifiers (with the JSON schema) that check its outputs, and for a task with tools what
the C++ runtime needs to constrain and check its calls (:func:`tool_entry`).

``prefix_ids`` are the tokens every prompt of the task provably starts with: the text
before the input tokenized alone may end in a token that merges with the input (BPE),
so it is cut to what the tokenization of whole prompts keeps for a set of probe inputs.
The per-task prefix cache holds the KV of these tokens; the runtime still compares each
prompt with them (a longest common prefix), so a probe set that missed a case costs a
shorter cached prefix, never a wrong one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyllm.chat import ChatTokenizer
from tinyllm.config import from_dict
from tinyllm.errors import BundleError, ConfigError
from tinyllm.manifest import Manifest
from tinyllm.tasks import TaskSpec, conversation
from tinyllm.toolbox import get_tool

SCHEMA = 1
FILE = "tasks.json"
INPUT = "{input}"
_SENTINEL = "\u2063tinyllm-input\u2063"  # invisible separator: not in any task text
# Inputs whose first and last characters differ in kind (letter, digit, space, newline,
# punctuation, non-ASCII), so a merge across the input's edges shows in one of them.
PROBES = ("a", "A b", " x", "1", "\n", "é", "!?", "😀", "  two  ", "word.\n\nNext")


@dataclass(frozen=True)
class TaskEntry:
    """One task as the runtime serves it.

    ``before`` + input + ``after`` is the prompt text (the chat template rendered around
    the input); ``exact`` says that holds for every input (a template that trims or
    escapes its content is not exact: the router then renders with Jinja).
    """

    name: str
    spec_hash: str
    before: str
    after: str
    exact: bool
    prefix_ids: list[int]
    slot: int
    adapter: str | None
    max_new_tokens: int
    output: str
    first_line: bool
    labels: list[str] = field(default_factory=list)
    label_ids: list[list[int]] = field(default_factory=list)
    json_root: str = ""
    verifiers: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    tools: dict[str, Any] | None = None

    @property
    def prompt(self) -> str:
        """The prompt text with ``{input}`` where the input goes."""
        return self.before + INPUT + self.after

    def render(self, text: str) -> str:
        """The prompt text of one input."""
        return self.before + text + self.after


@dataclass(frozen=True)
class TaskTable:
    """Every task an engine serves, plus the stop tokens every request shares."""

    tasks: dict[str, TaskEntry]
    stop_ids: list[int]

    def entry(self, spec: TaskSpec) -> TaskEntry | None:
        """The entry of ``spec`` when it was built from this very spec, else None."""
        entry = self.tasks.get(spec.name)
        return entry if entry is not None and entry.spec_hash == spec_hash(spec) else None

    def write(self, folder: Path) -> None:
        """Write ``folder/tasks.json``."""
        data = {
            "schema": SCHEMA,
            "stop_ids": self.stop_ids,
            "tasks": {name: {**asdict(e), "prompt": e.prompt} for name, e in self.tasks.items()},
        }
        (folder / FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, folder: Path) -> TaskTable | None:
        """The table in ``folder`` (None for an engine exported before task tables)."""
        path = folder / FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("schema") != SCHEMA:
                raise BundleError(
                    f"{path}: task table schema {data.get('schema')!r}, this tinyllm reads "
                    f"{SCHEMA}; re-export the engine with this version"
                )
            tasks = {}
            for name, raw in data["tasks"].items():
                raw = {k: v for k, v in raw.items() if k != "prompt"}
                tasks[name] = from_dict(TaskEntry, raw, f"tasks.{name}")
            stop_ids = data["stop_ids"]
            if not isinstance(stop_ids, list) or not all(type(i) is int for i in stop_ids):
                raise TypeError("stop_ids must be a list of token ids")
            return cls(tasks, stop_ids)
        except (ValueError, KeyError, TypeError, AttributeError, ConfigError) as e:
            problem = f"{path} is not a valid task table ({e}); re-export the engine"
            raise BundleError(problem) from e


def spec_hash(spec: TaskSpec) -> str:
    """A digest of everything in a task spec (a changed spec is a different task)."""
    blob = json.dumps(spec.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_entry(spec: TaskSpec, tok: ChatTokenizer, slot: int, adapter: str | None) -> TaskEntry:
    """Render ``spec``'s prompt around its input and tokenize what the runtime needs."""
    rendered = tok.apply_chat_template(conversation(spec, _SENTINEL, []))
    if rendered.count(_SENTINEL) != 1:
        raise BundleError(f"task {spec.name!r}: the chat template does not show the input once")
    before, after = rendered.split(_SENTINEL)

    def render(text: str) -> str:
        return tok.apply_chat_template(conversation(spec, text, []))

    exact = all(render(p) == before + p + after for p in PROBES)
    head = tok.encode(before)
    keep = min(common_prefix(head, tok.encode(render(p))) for p in PROBES)
    kind = spec.output.kind
    schema_type = (spec.output.schema or {}).get("type") if kind == "json" else None
    label_ids = [tok.encode(label) for label in spec.output.labels] if kind == "label" else []
    return TaskEntry(
        name=spec.name,
        spec_hash=spec_hash(spec),
        before=before,
        after=after,
        exact=exact,
        prefix_ids=head[:keep],
        slot=slot,
        adapter=adapter,
        max_new_tokens=answer_budget(spec.output.max_new_tokens, label_ids),
        output=kind,
        first_line=kind != "json",
        labels=list(spec.output.labels),
        label_ids=label_ids,
        json_root={"object": "{", "array": "["}.get(str(schema_type), ""),
        verifiers=list(spec.verifiers),
        schema=spec.output.schema if kind == "json" else None,
        tools=tool_entry(spec),
    )


def answer_budget(max_new_tokens: int, label_ids: list[list[int]]) -> int:
    """A task's answer budget in tokens: its ``max_new_tokens``, raised for a label task to
    its longest label (a label that does not fit would be cut into an invalid answer; the
    label constraint ends the answer at the label, so the room costs nothing)."""
    return max([max_new_tokens, *map(len, label_ids)])


def tool_entry(spec: TaskSpec) -> dict[str, Any] | None:
    """A tool task's ``tools`` in the table: names, result mode, call budget, and each
    registered tool's argument schema and time limit (the C++ runtime constrains and
    checks calls with them; its callbacks bring only the code). A tool not registered in
    the exporting process has no schema there, and the C++ runtime refuses the task
    naming it; the Python router reads tools from its registry and never needs these."""
    if spec.tools is None:
        return None
    schemas, timeouts = {}, {}
    for name in spec.tools.names:
        try:
            tool = get_tool(name)
        except ConfigError:
            continue
        schemas[name], timeouts[name] = tool.parameters, tool.timeout_s
    return {
        "names": list(spec.tools.names),
        "result": spec.tools.result,
        "max_call_tokens": spec.tools.max_call_tokens,
        "schemas": schemas,
        "timeouts": timeouts,
    }


def build_table(
    specs: dict[str, TaskSpec],
    adapters: Iterable[str],
    separate: bool,
    tok: ChatTokenizer,
    stop_ids: Sequence[int],
) -> TaskTable:
    """The table of ``specs``; tasks with an adapter (``separate`` LoRA) take slots 1, 2, ...
    in the order of ``specs``, as the engine fills them on load."""
    with_adapter = set(adapters) if separate else set()
    entries, slot = {}, 0
    for name, spec in specs.items():
        adapter = name if name in with_adapter else None
        slot = slot + 1 if adapter else slot
        entries[name] = build_entry(spec, tok, slot if adapter else 0, adapter)
    return TaskTable(entries, sorted(set(stop_ids)))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def stop_ids_of(tok: ChatTokenizer, eos: Any) -> list[int]:
    """The end-of-sequence ids of a tokenizer and a model config's ``eos_token_id``."""
    ids = {i for i in (tok.eos_token_id,) if i is not None}
    ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return sorted(ids)


def write_task_table(
    folder: Path,
    specs: dict[str, TaskSpec],
    manifest: Manifest,
    tokenizer_dir: Path,
    merged: str | None = None,
) -> TaskTable | None:
    """Build and write the task table of an engine folder for a bundle's tasks (None,
    and nothing written, when the tokenizer has no chat template to render prompts).

    ``merged``: the task whose adapter the engine's weights hold; the table then has
    that task alone, on slot 0 with no adapter to fill."""
    tok = ChatTokenizer(tokenizer_dir)
    if tok.chat_template is None:
        return None
    separate = manifest.lora_mode != "merged" and merged is None
    stops = stop_ids_of(tok, manifest.model.eos_token_id)
    if merged is not None:
        specs = {name: spec for name, spec in specs.items() if name == merged}
    table = build_table(specs, manifest.adapters, separate, tok, stops)
    table.write(folder)
    return table

"""The task router: a request names its task; the router gives its prompt, adapter slot,
decoding parameters, stop rule and constraint, and parses the output by the task's kind.

The prompt is the conversation :func:`tinyllm.tasks.conversation` builds (the task's
instruction as the system turn, its template around the input as the user turn), rendered
with the bundle's chat template, so serving and evaluation see the same prompt. An engine
exported with a task table (:mod:`tinyllm.tasktable`) has that rendering done once:
the router puts the input between the table's text, and reads the label sequences and the
prefix every prompt of the task starts with from it. Outputs
are parsed and checked with :mod:`tinyllm.verifiers`: an invalid output comes back with
``valid=False``, ``value=None`` and the reason, never passed on as if it were fine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tinyllm.argschema import validation_error
from tinyllm.chat import ChatTokenizer
from tinyllm.errors import UnknownTaskError
from tinyllm.runtime.constraints import JsonTokens
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.tasks import Example, TaskSpec, conversation
from tinyllm.tasktable import TaskEntry, TaskTable, answer_budget, build_entry, common_prefix
from tinyllm.toolbox import get_tool
from tinyllm.tools import Tool, ToolCall, ToolError, parse_call, result_text
from tinyllm.verifiers import answer_text, parse_json_output, verify


@dataclass(frozen=True)
class TaskOutput:
    """One served request's result.

    ``value`` is the parsed answer (the label, the JSON object, or the text) when ``valid``,
    else None with the reason in ``error``. ``text`` is the raw generated text; for a
    task with tools it is the answer (the tool's result, or what the model wrote after
    it) and ``tool_call`` holds the call.
    """

    task: str | None
    text: str
    value: Any
    valid: bool
    error: str | None
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    latency_s: float
    finish_reason: str
    token_ids: tuple[int, ...] = ()
    tool_call: ToolCall | None = None


class LabelTrie:
    """Token trie over a task's label strings, for constrained decoding.

    Args:
        sequences: the token ids of each label (as the model would write it).
        eos: the end-of-sequence token allowed after a complete label (None: none).
    """

    def __init__(self, sequences: Sequence[Sequence[int]], eos: int | None) -> None:
        self.root: dict[int, Any] = {}
        self.eos = eos
        for seq in sequences:
            node = self.root
            for token in seq:
                node = node.setdefault(token, {})
            node[-1] = {}  # end of a label

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that may follow ``prefix`` (EOS where a label is complete)."""
        node = self.root
        for token in prefix:
            node = node.get(token, {})
        tokens = [t for t in node if t != -1]
        if -1 in node and self.eos is not None:
            tokens.append(self.eos)
        return tokens

    def complete(self, prefix: Sequence[int]) -> bool:
        """``prefix`` spells a whole label and no longer label continues it."""
        return self.allowed(prefix) in ([], [self.eos])


def mask_logits(logits: np.ndarray, allowed: Sequence[int]) -> np.ndarray:
    """``logits [V]`` with every token outside ``allowed`` set to -inf."""
    masked = np.full_like(logits, -np.inf)
    index = np.asarray(allowed, np.int64)
    masked[index] = logits[index]
    return masked


@dataclass(frozen=True)
class Route:
    """How to serve one request: prompt tokens, adapter slot, decoding, stop and parsing.

    ``trie`` constrains a label task to its labels; ``json`` keeps a JSON task's output
    valid JSON syntax (see :mod:`tinyllm.runtime.constraints`). The first ``prefix_len``
    prompt tokens are the task's fixed prefix (the prefix cache may hold their KV).
    ``build_s`` and ``tokenize_s`` are the seconds rendering and tokenizing the prompt took.
    ``tools``: the output is a call of one of these tools (constrained to their schemas
    when ``json``); the engine runs it (:mod:`tinyllm.runtime.toolrunner`).
    ``variant``: which prefix of the task ``prefix_len`` counts, for the prefix cache's key:
    "" for the task's own prefix, the shots' fingerprint when worked examples come before
    the input (then the prefix runs through them).
    """

    task: TaskSpec | None
    prompt: list[int]
    slot: int
    config: GenerationConfig
    first_line: bool
    trie: LabelTrie | None
    json: bool = False
    prefix_len: int = 0
    build_s: float = 0.0
    tokenize_s: float = 0.0
    tools: tuple[Tool, ...] = ()
    execute_tools: bool = True
    variant: str = ""

    def parse(self, text: str) -> tuple[Any, bool, str | None]:
        """(value, valid, error) of a generated text (a call, for a tool task's call)."""
        if self.task is None:
            return text, True, None
        if self.tools:
            return check_call(self.tools, text)
        return parse_output(self.task, text)


def check_call(tools: Sequence[Tool], text: str) -> tuple[Any, bool, str | None]:
    """(``{"name", "arguments"}``, valid, error) of a call, checked against its tool's schema."""
    try:
        name, arguments = parse_call(text)
    except ToolError as e:
        return None, False, str(e)
    schemas = {t.name: t.parameters for t in tools}
    if name not in schemas:
        return None, False, f"the call names {name[:40]!r}, not one of {sorted(schemas)}"
    error = validation_error(schemas[name], arguments)
    if error:
        return None, False, f"tool {name}: bad arguments: {error}"
    return {"name": name, "arguments": arguments}, True, None


def parse_output(task: TaskSpec, raw: str) -> tuple[Any, bool, str | None]:
    """Parse ``raw`` by the task's output kind and run its verifiers: (value, valid, error)."""
    answer = answer_text(task, raw)
    value: Any = answer
    if task.output.kind == "label" and answer not in task.output.labels:
        return None, False, f"{answer[:40]!r} is not one of the labels {task.output.labels}"
    if task.output.kind == "json":
        try:
            value = parse_json_output(answer)
        except ValueError as e:
            return None, False, f"not valid JSON ({e})"
    verdict = verify(task, answer)
    if not verdict.ok:
        return None, False, verdict.reason
    return value, True, None


@dataclass(frozen=True)
class ServedTask:
    """Everything the router knows about one served task, replaced as a whole: a request
    routed while the task is added or removed sees the old record or the new one, never
    half of each."""

    spec: TaskSpec
    slot: int
    entry: TaskEntry
    tools: tuple[Tool, ...]
    trie: LabelTrie | None


class Router:
    """Maps task names to routes; tasks and their adapter slots change while serving.

    Thread-safe: requests are routed on their callers' threads while ``add`` and
    ``remove`` run on others; each task is one :class:`ServedTask` swapped under a lock.
    ``merged``: the task whose adapter the engine's weights hold (``--merge-adapter``):
    the only task such an engine serves, which its refusals of other tasks say.
    """

    def __init__(
        self,
        tokenizer: ChatTokenizer,
        constrain: bool = True,
        table: TaskTable | None = None,
        merged: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.constrain = constrain
        self.table = table
        self.merged = merged
        self._served: dict[str, ServedTask] = {}
        self._lock = threading.Lock()
        self._texts: dict[int, str] = {}
        self._json: JsonTokens | None = None
        self._shot_prefixes: dict[tuple[str, str], list[int]] = {}

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        """The tasks served now, by name (a copy)."""
        with self._lock:
            return {name: t.spec for name, t in self._served.items()}

    @property
    def slots(self) -> dict[str, int]:
        """The adapter slot of each task served now (a copy; 0: the base model)."""
        with self._lock:
            return {name: t.slot for name, t in self._served.items()}

    def slot(self, name: str) -> int | None:
        """The adapter slot of task ``name``, None when it is not served."""
        with self._lock:
            served = self._served.get(name)
        return None if served is None else served.slot

    def add(self, spec: TaskSpec, slot: int) -> None:
        """Serve ``spec`` with adapter ``slot`` (0: the base model); its tools, if any,
        must be registered (:func:`tinyllm.toolbox.register_tool`). Requests see the task
        only once all of it is ready."""
        self.publish(self.prepare(spec), slot)

    def prepare(self, spec: TaskSpec) -> ServedTask:
        """Everything serving ``spec`` needs (its prompt rendered and tokenized, its tools,
        its label trie), not served yet: :meth:`publish` serves it. Slow for a task added
        after export (a chat template per render), so callers run it holding no lock."""
        tools = tuple(get_tool(n) for n in spec.tools.names) if spec.tools else ()
        entry = self.table.entry(spec) if self.table is not None else None
        if entry is None:  # a task added after export: render it here, once
            entry = build_entry(spec, self.tokenizer, 0, None)  # the slot comes at publish
        # a table written before answer_budget kept max_new_tokens, which can cut a label
        entry = replace(entry, max_new_tokens=answer_budget(entry.max_new_tokens, entry.label_ids))
        trie = None
        if spec.output.kind == "label" and self.constrain:  # a tool task's answer uses it
            trie = LabelTrie(entry.label_ids, self.tokenizer.eos_token_id)
        return ServedTask(spec, 0, entry, tools, trie)

    def publish(self, ready: ServedTask, slot: int) -> None:
        """Serve a task :meth:`prepare` made, with adapter ``slot`` (0: the base model;
        routes take it from here, never from the entry)."""
        with self._lock:
            self._served[ready.spec.name] = replace(ready, slot=slot)

    def remove(self, name: str) -> int:
        """Stop serving a task; returns its adapter slot."""
        with self._lock:
            served = self._served.pop(name, None)
        if served is None:
            raise self._unknown(name)
        return served.slot

    def spec(self, name: str) -> TaskSpec:
        """The task called ``name``; an unknown name lists the tasks served."""
        return self._lookup(name).spec

    def _lookup(self, name: str) -> ServedTask:
        with self._lock:
            served = self._served.get(name)
        if served is None:
            raise self._unknown(name)
        return served

    def _unknown(self, name: str) -> UnknownTaskError:
        if self.merged is not None:
            return UnknownTaskError(
                f"task {name!r} is not served: this engine has the adapter of task "
                f"{self.merged!r} merged into its weights and serves only that task; "
                f"export an engine with LoRA slots, or one with --merge-adapter {name}"
            )
        known = ", ".join(sorted(self.tasks)) or "none"
        return UnknownTaskError(f"unknown task {name!r}; this engine serves: {known}")

    def route(
        self,
        name: str,
        text: str,
        max_new_tokens: int | None,
        temperature: float | None,
        shots: list[Example] | None = None,
        execute_tools: bool = True,
    ) -> Route:
        """The route of one request for task ``name`` with input ``text`` (``shots``:
        worked examples put before the input, as evaluation's few-shot prompts;
        ``execute_tools`` False: a tool task returns the call itself, unexecuted)."""
        served = self._lookup(name)  # one record: the task as it was when routed
        spec, slot, entry = served.spec, served.slot, served.entry
        start = time.perf_counter()
        prompt_text = self._prompt_text(spec, entry, text, shots)
        built = time.perf_counter()
        prompt = self.tokenizer.encode(prompt_text)
        tokenized = time.perf_counter()
        tools = served.tools
        prefix_len, variant = common_prefix(prompt, entry.prefix_ids), ""
        if shots:
            prefix_len, variant = self._shots_prefix(spec, entry, shots, prompt)
        budget = spec.tools.max_call_tokens if spec.tools else entry.max_new_tokens
        config = GenerationConfig(
            max_new_tokens=max_new_tokens or budget,
            temperature=temperature or 0.0,
            speculate=spec.output.speculates,
        )
        if tools:
            return Route(
                spec,
                prompt,
                slot,
                config,
                False,
                None,
                self.constrain,
                prefix_len,
                built - start,
                tokenized - built,
                tools,
                execute_tools,
                variant,
            )
        kind = spec.output.kind
        return Route(
            spec,
            prompt,
            slot,
            config,
            kind != "json",
            served.trie,
            kind == "json" and self.constrain,
            prefix_len,
            built - start,
            tokenized - built,
            variant=variant,
        )

    def _shots_prefix(
        self, spec: TaskSpec, entry: TaskEntry, shots: list[Example], prompt: list[int]
    ) -> tuple[int, str]:
        """(prefix length, variant) of a prompt with worked examples: the tokens before
        the input, which every request with the same shots shares (the prompt rendered
        around an empty input, cut to what ``prompt`` has in common with it)."""
        variant = json.dumps([[s.input, s.output] for s in shots])
        key = (spec.name, variant)
        ids = self._shot_prefixes.get(key)
        if ids is None:
            ids = self.tokenizer.encode(self._prompt_text(spec, entry, "", shots))
            if len(self._shot_prefixes) >= 64:  # a few shot sets per task are typical
                self._shot_prefixes.clear()
            self._shot_prefixes[key] = ids
        return common_prefix(prompt, ids), variant

    def _prompt_text(
        self, spec: TaskSpec, entry: TaskEntry, text: str, shots: list[Example] | None
    ) -> str:
        """The request's prompt: the task table's rendering where it is exact and there
        are no shots, else the chat template over the task's conversation."""
        if entry.exact and not shots:
            return entry.render(text)
        shots = list(shots or [])
        if spec.tools and shots:  # a tool task's shots show calls (loaded only then)
            from tinyllm.toolcalling import call_shots

            shots = call_shots(spec, shots)
        return self.tokenizer.apply_chat_template(conversation(spec, text, shots))

    def after_call(self, route: Route, call: list[int], result: str) -> Route:
        """The route that writes a tool task's answer: the prompt, the call the model wrote
        (``call`` token ids) and the tool's result (:func:`tinyllm.tools.result_text`)."""
        spec = route.task
        if spec is None:
            raise UnknownTaskError("a tool call needs a task")
        ids = route.prompt + call + self.tokenizer.encode(result_text(result))
        kind = spec.output.kind
        with self._lock:
            served = self._served.get(spec.name)
        if served is not None and served.spec != spec:
            served = None  # the task was re-added with another spec since the call began
        config = GenerationConfig(
            max_new_tokens=served.entry.max_new_tokens if served else spec.output.max_new_tokens,
            temperature=route.config.temperature,
            seed=route.config.seed,
            speculate=spec.output.speculates,
        )
        # the answer keeps to the labels, unless the task was re-added with other ones
        trie = served.trie if served is not None else None
        json = kind == "json" and self.constrain
        return Route(
            spec,
            ids,
            route.slot,
            config,
            kind != "json",
            trie,
            json,
            route.prefix_len,
            variant=route.variant,
        )

    def raw(self, prompt: str | list[dict[str, str]], config: GenerationConfig) -> Route:
        """A route without a task: the base model (slot 0) on a plain prompt or messages."""
        start = time.perf_counter()
        text = prompt if isinstance(prompt, str) else self.tokenizer.apply_chat_template(prompt)
        built = time.perf_counter()
        ids = self.tokenizer.encode(text)
        tokenized = time.perf_counter()
        return Route(
            None, ids, 0, config, False, None, build_s=built - start, tokenize_s=tokenized - built
        )

    def raw_ids(self, ids: list[int], config: GenerationConfig, slot: int) -> Route:
        """A route without a task over token ids, with adapter ``slot`` (0: base model)."""
        return Route(None, ids, slot, config, False, None)

    @property
    def json_tokens(self) -> JsonTokens:
        """Which tokens may follow a JSON prefix (the vocabulary's texts, decoded once)."""
        if self._json is None:
            texts = [self.token_text(i) for i in range(self.tokenizer.vocab_size)]
            self._json = JsonTokens(texts, self.tokenizer.eos_token_id)
        return self._json

    def token_text(self, token: int) -> str:
        """The text of one token (empty for special tokens), cached."""
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self.tokenizer.decode([token])
        return text

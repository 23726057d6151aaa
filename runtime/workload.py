"""Workloads for ``tinyllm profile``: the requests a profile sends, from where the user says.

- ``builtin``: the bundle's own tasks, Zipf-skewed popularity with log-normal input
  lengths over a fixed text (one seed gives the same requests); a bundle without tasks,
  or ``prompt_len``/``new_tokens`` given, gets plain completions of exactly that many
  prompt tokens and new tokens (end of sequence ignored).
- ``SUITE.yaml``: the test inputs of the suite's tasks, round-robin.
- ``REQUESTS.jsonl``: one request per line, ``{"task": NAME, "input": TEXT}`` or
  ``{"prompt": TEXT}``, each optionally with ``"max_new_tokens"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.errors import ConfigError

TEXT = (
    "the room was clean and quiet but the service at the front desk felt slow while "
    "our flight to boston leaves on monday morning please book two seats near a window "
    "prices rose again this quarter as demand for small efficient models kept growing"
)
WORDS = TEXT.split()
DEFAULT_PROMPT_LEN = 128
DEFAULT_NEW_TOKENS = 64


@dataclass(frozen=True)
class WorkItem:
    """One request of a workload.

    ``task`` None is a plain completion on the base model: of ``text``, or of exactly
    the token ids ``ids`` (with end of sequence ignored, so it makes ``max_new_tokens``).
    """

    task: str | None
    text: str | None = None
    ids: tuple[int, ...] | None = None
    max_new_tokens: int | None = None

    @property
    def kind(self) -> str:
        """The task's name, or ``<completion>``."""
        return self.task or "<completion>"


def task_mix(tasks: list[str], n: int, seed: int = 0, mean_words: float = 24.0) -> list[WorkItem]:
    """``n`` task requests: Zipf task popularity, log-normal input lengths (words)."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, len(tasks) + 1) ** 1.1
    choice = rng.choice(len(tasks), size=n, p=popularity / popularity.sum())
    sigma = 0.8  # a long tail of long inputs
    words = np.clip(rng.lognormal(np.log(mean_words) - sigma**2 / 2, sigma, n), 2, 400)
    return [
        WorkItem(tasks[int(choice[i])], " ".join(rng.choice(WORDS, size=int(words[i]))))
        for i in range(n)
    ]


def synthetic(
    n: int, prompt_len: int, new_tokens: int, vocab: int, seed: int = 0
) -> list[WorkItem]:
    """``n`` plain completions of ``prompt_len`` random token ids making ``new_tokens``."""
    if prompt_len < 1 or new_tokens < 1:
        raise ConfigError(
            f"prompt_len and new_tokens must be >= 1, got {prompt_len} and {new_tokens}"
        )
    rng = np.random.default_rng(seed)
    low = min(100, vocab - 1)  # above the special tokens, where a vocabulary allows
    return [
        WorkItem(
            None,
            ids=tuple(int(t) for t in rng.integers(low, vocab, prompt_len)),
            max_new_tokens=new_tokens,
        )
        for _ in range(n)
    ]


def read_jsonl(path: Path, limit: int | None = None) -> list[WorkItem]:
    """The requests of a JSONL file; a bad line is an error naming its line number."""
    items = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            items.append(_item(line, f"{path} line {number}"))
    if not items:
        raise ConfigError(
            f"{path} has no requests: write one JSON object per line, "
            '{"task": NAME, "input": TEXT} or {"prompt": TEXT}'
        )
    return items[:limit] if limit is not None else items


def _item(line: str, where: str) -> WorkItem:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"task", "input", "prompt", "max_new_tokens"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (keys: task, input, prompt, max_new_tokens)"
        )
    limit = data.get("max_new_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{where}: max_new_tokens must be an integer >= 1, got {limit!r}")
    if "task" in data:
        task, text = data["task"], data.get("input")
        if not isinstance(task, str) or not isinstance(text, str) or "prompt" in data:
            raise ConfigError(f'{where}: a task request is {{"task": NAME, "input": TEXT}}')
        return WorkItem(task, text, max_new_tokens=limit)
    if not isinstance(data.get("prompt"), str) or "input" in data:
        raise ConfigError(f'{where}: give "task" and "input", or "prompt" (a plain completion)')
    return WorkItem(None, data["prompt"], max_new_tokens=limit)


def read_suite(path: Path, n: int) -> tuple[list[WorkItem], dict[str, Any]]:
    """``n`` requests over the test inputs of a suite's tasks (round-robin), and the specs."""
    from tinyllm.suite import load_split, load_tasks, prepare_tasks

    suite = load_tasks(path)
    tasks = list(suite.tasks)
    prepare_tasks(tasks)
    inputs = {t.name: [ex.input for ex in load_split(suite, t, "test")] for t in tasks}
    empty = [name for name, texts in inputs.items() if not texts]
    if empty or not tasks:
        raise ConfigError(f"{path}: task {empty[0] if empty else '?'!r} has no test inputs")
    items = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        texts = inputs[task.name]
        items.append(WorkItem(task.name, texts[(i // len(tasks)) % len(texts)]))
    return items, {t.name: t for t in tasks}

"""Evaluation: run every task's test split through a model and score it.

The model is anything with ``generate(conversations, max_new_tokens) -> texts`` (a
:class:`Generator`); :class:`TorchGenerator` wraps a bundle's transformers model. The
engine backend plugs in the same way.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from tinyllm.config import to_dict
from tinyllm.metrics import score
from tinyllm.suite import load_split
from tinyllm.tasks import Message, Suite, TaskSpec, conversation
from tinyllm.verifiers import answer_text, verify

# `conversation` and `Message` live in tinyllm.tasks; they stay importable from here.
__all__ = [
    "EngineGenerator",
    "EvalReport",
    "Generator",
    "Message",
    "TaskResult",
    "TorchGenerator",
    "conversation",
    "evaluate_task",
]


class Generator(Protocol):
    """Greedy text generation over chat conversations."""

    def generate(self, conversations: list[list[Message]], max_new_tokens: int) -> list[str]:
        """One completion per conversation (the assistant's reply, special tokens removed)."""
        ...


class TorchGenerator:
    """Batched greedy generation with a transformers model (left padding)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(self, conversations: list[list[Message]], max_new_tokens: int) -> list[str]:
        """One greedy completion per conversation."""
        import torch

        texts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        return [str(t) for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


class EngineGenerator:
    """Batched greedy generation with an exported engine (``tinyllm.runtime.Engine``)."""

    def __init__(self, engine: Any, adapter: str | None = None) -> None:
        self.engine = engine
        self.adapter = adapter  # the bundle task whose LoRA adapter generation uses

    def generate(self, conversations: list[list[Message]], max_new_tokens: int) -> list[str]:
        """One greedy completion per conversation."""
        from tinyllm.runtime import GenerationConfig

        tok = self.engine.tokenizer
        prompts = [tok.encode(tok.apply_chat_template(c)) for c in conversations]
        results = self.engine.generate_ids(
            prompts, GenerationConfig(max_new_tokens=max_new_tokens), adapter=self.adapter
        )
        return [r.text for r in results]


@dataclass(frozen=True)
class TaskResult:
    """One task's score on its test split."""

    task: str
    metric: str
    score: float
    n: int
    invalid_rate: float
    ms_per_example: float
    rejections: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class EvalReport:
    """Scores of every evaluated task, with how they were obtained."""

    bundle: str
    bundle_hash: str
    suite: str
    few_shot: int
    limit: int | None
    batch_size: int
    backend: str
    results: list[TaskResult]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        result: dict[str, Any] = to_dict(self)
        return result

    def format(self) -> str:
        """The per-task table ``tinyllm eval`` prints."""
        shots = f"{self.few_shot}-shot" if self.few_shot else "zero-shot"
        head = f"{'task':<12}{'metric':<13}{'score':>7}{'n':>6}{'invalid':>9}{'ms/ex':>9}"
        title = f"{self.bundle} ({self.backend}, {shots}, batch {self.batch_size})"
        lines = [title, head, "-" * len(head)]
        for r in self.results:
            lines.append(
                f"{r.task:<12}{r.metric:<13}{r.score:>7.3f}{r.n:>6}"
                f"{100 * r.invalid_rate:>8.1f}%{r.ms_per_example:>9.0f}"
            )
        lines.append(f"total {self.seconds:.0f}s")
        return "\n".join(lines)


def evaluate_task(
    generator: Generator,
    suite: Suite,
    task: TaskSpec,
    *,
    limit: int | None = None,
    few_shot: int = 0,
    batch_size: int = 8,
    progress: bool = True,
) -> TaskResult:
    """Score one task's test split; outputs are verified and scored after answer extraction."""
    from tqdm import tqdm

    examples = load_split(suite, task, "test", limit)
    shots = []
    if few_shot:
        train = load_split(suite, task, "train")
        shots = random.Random(0).sample(train, min(few_shot, len(train)))
    conversations = [conversation(task, ex.input, shots) for ex in examples]
    # Batch prompts of similar length together: less padding, same results.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input))
    raw: list[str] = [""] * len(examples)
    start = time.perf_counter()
    with tqdm(total=len(examples), desc=task.name, disable=not progress, leave=False) as bar:
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            outs = generator.generate([conversations[j] for j in idx], task.output.max_new_tokens)
            for j, out in zip(idx, outs, strict=True):
                raw[j] = out
            bar.update(len(idx))
    elapsed = time.perf_counter() - start
    answers = [answer_text(task, r) for r in raw]
    verdicts = [verify(task, a) for a in answers]
    reasons = Counter(v.reason.split(":")[0] for v in verdicts if not v.ok)
    return TaskResult(
        task=task.name,
        metric=task.metric,
        score=score(task.metric, answers, [ex.output for ex in examples]),
        n=len(examples),
        invalid_rate=sum(not v.ok for v in verdicts) / max(len(examples), 1),
        ms_per_example=1000 * elapsed / max(len(examples), 1),
        rejections=dict(reasons),
        samples=[
            {"input": ex.input, "reference": ex.output, "output": raw[k]}
            for k, ex in enumerate(examples[:5])
        ],
    )

"""Evaluation: run every task's test split through a model and score it.

The model is anything that answers a task's inputs (a :class:`Generator`):
:class:`TorchGenerator` wraps a bundle's transformers model; the engine backend
(``tinyllm.runtime.generator.EngineGenerator``) sends the inputs through the engine's
task router and decode loop, exactly as serving does. The core never imports the runtime.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tinyllm.config import to_dict
from tinyllm.errors import ConfigError
from tinyllm.metrics import score
from tinyllm.suite import load_split, prepare_tasks
from tinyllm.tasks import Example, Message, Suite, TaskSpec, conversation
from tinyllm.verifiers import answer_text, verify

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.bundle import Bundle

# `conversation` and `Message` live in tinyllm.tasks; they stay importable from here.
__all__ = [
    "BundleGenerator",
    "EvalReport",
    "Generator",
    "Message",
    "TaskResult",
    "TorchGenerator",
    "conversation",
    "evaluate_bundle",
    "evaluate_task",
]


class Generator(Protocol):
    """Answers a task's inputs (greedy)."""

    def answer(
        self, task: TaskSpec, inputs: list[str], shots: list[Example], done: Callable[[int], object]
    ) -> list[str]:
        """One raw completion per input (``shots``: worked examples before each input);
        ``done(n)`` reports progress."""
        ...


class BundleGenerator(Generator, Protocol):
    """A generator over a bundle's model that can switch to one task's LoRA adapter."""

    def with_adapter(
        self, task: str, adapter: LoraAdapter | None
    ) -> AbstractContextManager[Generator]:
        """This generator with ``task``'s adapter (None: the base model) for a ``with`` block."""
        ...

    def close(self) -> None:
        """Release what the generator holds (an engine's decode loop)."""
        ...


class TorchGenerator:
    """Batched greedy generation with a transformers model (left padding)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def answer(
        self, task: TaskSpec, inputs: list[str], shots: list[Example], done: Callable[[int], object]
    ) -> list[str]:
        """Greedy completions, in batches of inputs of similar length (less padding)."""
        conversations = [conversation(task, text, shots) for text in inputs]
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        raw: list[str] = [""] * len(inputs)
        budget = task.tools.max_call_tokens if task.tools else task.output.max_new_tokens
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            outs = self.generate([conversations[j] for j in idx], budget)
            if task.tools:  # the outputs are calls: run them, as the engine does
                from tinyllm.toolcalling import answers_after_calls

                prompts = [self.prompt(conversations[j]) for j in idx]

                def more(
                    ids: list[int], after: list[str], prompts: list[str] = prompts
                ) -> list[str]:
                    texts = [prompts[i] + a for i, a in zip(ids, after, strict=True)]
                    return self.generate_text(texts, task.output.max_new_tokens)

                outs = answers_after_calls(task, outs, more)
            for j, out in zip(idx, outs, strict=True):
                raw[j] = out
            done(len(idx))
        return raw

    def prompt(self, messages: list[Message]) -> str:
        """The chat-template text of a conversation, ending where the answer starts."""
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def generate(self, conversations: list[list[Message]], max_new_tokens: int) -> list[str]:
        """One greedy completion per conversation."""
        return self.generate_text([self.prompt(c) for c in conversations], max_new_tokens)

    def generate_text(self, texts: list[str], max_new_tokens: int) -> list[str]:
        """One greedy completion per prompt text (:func:`tinyllm.torchkit.generate_text`)."""
        from tinyllm.torchkit import generate_text

        return generate_text(self.model, self.tokenizer, texts, max_new_tokens)

    @contextmanager
    def with_adapter(self, task: str, adapter: LoraAdapter | None) -> Iterator[Generator]:
        """The adapter folded into the weights for the ``with`` block, restored after."""
        from tinyllm.models import adapter_applied

        with adapter_applied(self.model, adapter):
            yield self

    def close(self) -> None:
        """Nothing to release (the model is freed with the generator)."""


def torch_generator(bundle: Bundle, batch_size: int = 8) -> tuple[BundleGenerator, str]:
    """The bundle's weights as a transformers model (needs ``tinyllm[torch]``), labelled."""
    from tinyllm.models import load_model

    loaded = load_model(bundle)
    return TorchGenerator(loaded.model, loaded.tokenizer, batch_size), "torch"


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
    progress: bool = True,
) -> TaskResult:
    """Score one task's test split; outputs are verified and scored after answer extraction."""
    from tqdm import tqdm

    examples = load_split(suite, task, "test", limit)
    shots = []
    if few_shot:
        train = load_split(suite, task, "train")
        if task.tools:  # the shots show calls: the first few_shot that trace, same order
            from tinyllm.toolcalling import call_shots

            shots = call_shots(task, random.Random(0).sample(train, len(train)), few_shot)
        else:
            shots = random.Random(0).sample(train, min(few_shot, len(train)))
    start = time.perf_counter()
    with tqdm(total=len(examples), desc=task.name, disable=not progress, leave=False) as bar:
        raw = generator.answer(task, [ex.input for ex in examples], shots, bar.update)
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


def check_eval_args(limit: int | None, few_shot: int, batch_size: int) -> None:
    """Reject an evaluation's bad sizes before anything loads."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of examples, got {limit}")
    if batch_size < 1 or few_shot < 0:
        raise ConfigError("batch_size must be >= 1 and few_shot >= 0")


def evaluate_bundle(
    bundle: Bundle,
    suite: Suite,
    tasks: Sequence[TaskSpec],
    *,
    load: Callable[[Bundle, int], tuple[BundleGenerator, str]] = torch_generator,
    suite_name: str = "builtin",
    limit: int | None = None,
    few_shot: int = 0,
    batch_size: int = 8,
    progress: bool = True,
) -> EvalReport:
    """Score each task's test split with a bundle's model, each task with its LoRA adapter.

    Args:
        bundle: the bundle to evaluate.
        suite: where the tasks' data comes from; ``tasks`` are some of its tasks.
        load: builds the generator and its label from the bundle and the batch size
            (default: the torch model); timed with the rest.
        suite_name: how the report names the suite.
        batch_size: prompts generated together.
        limit, few_shot, progress: as :func:`evaluate_task`.
    """
    check_eval_args(limit, few_shot, batch_size)
    start = time.perf_counter()
    prepare_tasks(tasks)
    generator, label = load(bundle, batch_size)
    results = []
    for task in tasks:
        # The torch generator folds the task's adapter (if the bundle has one) into the
        # weights while that task runs; an engine puts it in one of its LoRA slots.
        has_adapter = task.name in bundle.manifest.adapters
        adapter = bundle.adapter(task.name) if has_adapter else None
        with generator.with_adapter(task.name, adapter) as task_generator:
            results.append(
                evaluate_task(
                    task_generator,
                    suite,
                    task,
                    limit=limit,
                    few_shot=few_shot,
                    progress=progress,
                )
            )
    generator.close()
    return EvalReport(
        bundle=str(bundle.path),
        bundle_hash=bundle.hash,
        suite=suite_name,
        few_shot=few_shot,
        limit=limit,
        batch_size=batch_size,
        backend=label,
        results=results,
        seconds=time.perf_counter() - start,
    )

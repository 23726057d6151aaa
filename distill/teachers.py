"""Teachers: anything that answers a task's inputs, behind one protocol.

A teacher returns candidate answers, at most ``k`` per input, as answer text in the form
the task expects (a label, a JSON object, a line of text). Data generation
(:mod:`tinyllm.distill.labelling`) verifies them and keeps the best. Implementations:

- :class:`OracleTeacher`: the task's own reference outputs (tests, and an upper bound);
- :class:`LocalTeacher`: a bundle or Hugging Face folder run with transformers; it also
  exposes its torch model and :meth:`LocalTeacher.logits` for logit distillation;
- :class:`~tinyllm.distill.endpoint.OpenAITeacher`: an OpenAI-compatible chat endpoint;
- :class:`~tinyllm.distill.pipeline.ToolPipelineTeacher`: an LLM that picks tools, tools
  that compute.

:func:`tinyllm.distill.teacher_specs.teacher_from_spec` builds one from a CLI string.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tinyllm.errors import ConfigError, TinyLLMError, missing_dependency
from tinyllm.tasks import Example, Suite, TaskSpec
from tinyllm.verifiers import answer_text, parse_json_output

if TYPE_CHECKING:
    import torch


class TeacherError(TinyLLMError):
    """A teacher failed to answer (endpoint down, bad response, unknown input)."""


@runtime_checkable
class Teacher(Protocol):
    """Answers a task's inputs: at most ``k`` candidate answers per input."""

    name: str

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        """Candidate answers per input (answer text as the task expects it).

        Args:
            task: the task the inputs belong to (prompt, output kind, labels, schema).
            inputs: raw inputs (before the task's template).
            k: candidates wanted per input; a deterministic teacher (temperature 0, the
                oracle) may return fewer, never more, and never none.
            temperature: sampling temperature; 0 is greedy.
        """
        ...


def canonical_answer(task: TaskSpec, raw: str) -> str:
    """The answer in a raw reply; JSON answers re-serialized compactly like the suite's data."""
    text = answer_text(task, raw)
    if task.output.kind == "json":
        try:
            return json.dumps(parse_json_output(text), ensure_ascii=False)
        except ValueError:
            return text
    return text


def check_k(k: int, temperature: float) -> None:
    """Reject a bad number of candidates or temperature."""
    if k < 1:
        raise ConfigError(f"k must be >= 1 candidate per input, got {k}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")


def check_candidates(
    teacher: str, inputs: Sequence[str], candidates: object, k: int
) -> list[list[str]]:
    """A teacher's answer lists, checked: one list per input, at most ``k`` strings each.

    Raises a :class:`TeacherError` naming the teacher and the input otherwise (a ``None``
    candidate would fail deep inside a verifier).
    """
    if not isinstance(candidates, list) or len(candidates) != len(inputs):
        got = len(candidates) if isinstance(candidates, list) else type(candidates).__name__
        raise TeacherError(
            f"teacher {teacher!r} returned {got} answer lists for {len(inputs)} inputs"
        )
    for text, answers in zip(inputs, candidates, strict=True):
        if not isinstance(answers, list):
            raise TeacherError(
                f"teacher {teacher!r} returned a {type(answers).__name__} instead of a list "
                f"of candidates for input {text[:60]!r}"
            )
        if len(answers) > k:
            raise TeacherError(
                f"teacher {teacher!r} returned {len(answers)} candidates for input "
                f"{text[:60]!r}, more than k={k}"
            )
        for answer in answers:
            if not isinstance(answer, str):
                raise TeacherError(
                    f"teacher {teacher!r} returned a {type(answer).__name__} candidate for "
                    f"input {text[:60]!r}; candidates must be answer text (str)"
                )
    return candidates


class OracleTeacher:
    """The task's own reference outputs: an upper bound and a test double, not a model.

    Answers only inputs that occur in one of the task's splits; any other input is a
    :class:`TeacherError`.
    """

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.name = "oracle"
        self._answers: dict[str, dict[str, str]] = {}

    def _table(self, task: TaskSpec) -> dict[str, str]:
        if task.name not in self._answers:
            from tinyllm.suite import load_split, prepare_tasks

            prepare_tasks([task])
            table: dict[str, str] = {}
            for split in ("train", "validation", "test"):
                for ex in load_split(self.suite, task, split):
                    table.setdefault(ex.input, ex.output)
            self._answers[task.name] = table
        return self._answers[task.name]

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        """One candidate per input: its reference output."""
        check_k(k, temperature)
        table = self._table(task)
        missing = [text for text in inputs if text not in table]
        if missing:
            raise TeacherError(
                f"oracle teacher: {len(missing)} input(s) of task {task.name!r} are not in its "
                f"data (first: {missing[0][:60]!r}); the oracle only knows reference outputs"
            )
        return [[table[text]] for text in inputs]


class LocalTeacher:
    """A local causal LM (a tinyllm bundle or a Hugging Face folder) run with transformers.

    For logit distillation use :attr:`model` and :attr:`tokenizer` directly, or
    :meth:`logits` (teacher and student must share the tokenizer).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "local",
        suite: Suite | None = None,
        few_shot: int = 0,
        batch_size: int = 8,
        seed: int = 0,
    ) -> None:
        """Wrap a loaded model.

        Args:
            model: a transformers causal LM.
            tokenizer: its tokenizer (with a chat template).
            name: how the teacher is recorded in provenance.
            suite: where few-shot examples come from (needed when ``few_shot`` > 0).
            few_shot: worked examples from the train split put before each input.
            batch_size: prompts generated together.
            seed: torch seed set before each sampling call (reproducible candidates).
        """
        if few_shot and suite is None:
            raise ConfigError("LocalTeacher: few_shot > 0 needs the suite the shots come from")
        if batch_size < 1 or few_shot < 0:
            raise ConfigError("LocalTeacher: batch_size must be >= 1 and few_shot >= 0")
        self.model, self.tokenizer = model, tokenizer
        self.name, self.suite, self.few_shot = name, suite, few_shot
        self.batch_size, self.seed = batch_size, seed
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._shots: dict[str, list[Example]] = {}

    @classmethod
    def from_bundle(cls, path: str | Path, **kwargs: Any) -> LocalTeacher:
        """A teacher from a tinyllm bundle (its weights as a transformers model)."""
        from tinyllm.bundle import Bundle
        from tinyllm.models import load_model

        loaded = load_model(Bundle.open(path))
        loaded.model.eval()
        kwargs.setdefault("name", f"bundle:{Path(path).name}")
        return cls(loaded.model, loaded.tokenizer, **kwargs)

    @classmethod
    def from_hf(cls, path: str | Path, **kwargs: Any) -> LocalTeacher:
        """A teacher from a local Hugging Face folder (any causal LM transformers loads)."""
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise missing_dependency("transformers", "torch", "A local teacher") from e
        if not Path(path).is_dir():
            raise ConfigError(f"hf teacher: {path} is not a folder with a Hugging Face model")
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        kwargs.setdefault("name", f"hf:{Path(path).name}")
        return cls(model, tokenizer, **kwargs)

    def shots(self, task: TaskSpec) -> list[Example]:
        """The task's few-shot examples (the same ones ``tinyllm eval --few-shot`` uses)."""
        if not self.few_shot or self.suite is None:
            return []
        if task.name not in self._shots:
            from tinyllm.suite import load_split

            train = load_split(self.suite, task, "train")
            self._shots[task.name] = random.Random(0).sample(train, min(self.few_shot, len(train)))
        return self._shots[task.name]

    def prompts(self, task: TaskSpec, inputs: Sequence[str]) -> list[str]:
        """The chat-formatted prompt text per input, ending with the assistant turn's start."""
        from tinyllm.tasks import conversation

        shots = self.shots(task)
        return [
            str(
                self.tokenizer.apply_chat_template(
                    conversation(task, text, shots), tokenize=False, add_generation_prompt=True
                )
            )
            for text in inputs
        ]

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        """``k`` sampled answers per input (one greedy answer when temperature is 0)."""
        import torch

        from tinyllm.torchkit import generate_text

        check_k(k, temperature)
        n = k if temperature > 0 else 1
        prompts = self.prompts(task, inputs)
        torch.manual_seed(self.seed)
        result: list[list[str]] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = generate_text(
                self.model,
                self.tokenizer,
                prompts[start : start + self.batch_size],
                task.output.max_new_tokens,
                samples=n,
                temperature=temperature,
            )
            answers = [canonical_answer(task, t) for t in texts]
            result.extend(answers[i : i + n] for i in range(0, len(answers), n))
        return result

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits of the teacher, no gradient.

        Args:
            input_ids: [B, T] token ids in the teacher's (shared) vocabulary.
            attention_mask: [B, T] 1 for real tokens, 0 for padding.

        Returns:
            [B, T, V] float logits.
        """
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out.logits.float()  # [B, T, V]

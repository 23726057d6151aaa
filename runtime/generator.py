"""An exported engine as an evaluation generator (:class:`tinyllm.evaluation.BundleGenerator`).

Each test input is a task request, exactly as ``Engine.run`` and ``tinyllm serve`` take
it: the task's prompt, adapter slot, stop rules and constraints (unless the engine was
loaded with ``constrain=False``), through the engine's one decode loop, so what
evaluation measures is what serving returns. It lives in the runtime, not in the core
evaluation module, so the core never imports the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from tinyllm.tasks import Example, TaskSpec

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.runtime.engine import Engine


class EngineGenerator:
    """Answers a task's inputs with an engine, through its task router."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def answer(
        self, task: TaskSpec, inputs: list[str], shots: list[Example], done: Callable[[int], object]
    ) -> list[str]:
        """Submit every input as a request of ``task`` and wait for the texts."""
        self._serve(task)
        futures = [
            self.engine.submit(task.name, text, shots=shots or None, wait=True) for text in inputs
        ]
        for future in futures:
            future.add_done_callback(lambda _: done(1))
        return [f.result().text for f in futures]

    def with_adapter(
        self, task: str, adapter: LoraAdapter | None
    ) -> AbstractContextManager[EngineGenerator]:
        """The router already serves each task with the bundle's adapter for it."""
        return nullcontext(self)

    def close(self) -> None:
        """Stop the engine's decode loop."""
        self.engine.close()

    def _serve(self, task: TaskSpec) -> None:
        """Serve ``task`` as evaluated (its spec from the suite), with the bundle's adapter
        for it when the bundle keeps adapters separate."""
        if self.engine.tasks.get(task.name) == task:
            return
        bundle = self.engine.bundle
        separate = bundle.manifest.lora_mode != "merged"
        has_adapter = separate and task.name in bundle.manifest.adapters
        if task.name in self.engine.tasks:
            self.engine.remove_task(task.name)
        self.engine.add_task(task, bundle.adapter(task.name) if has_adapter else None)

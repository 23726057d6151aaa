"""An exported engine as an evaluation generator (:class:`tinyllm.evaluation.Generator`).

It lives in the runtime, not in the core evaluation module, so the core never imports
the runtime: evaluation knows only the generator protocol.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.tasks import Message

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter


class EngineGenerator:
    """Batched greedy generation with an exported engine (``tinyllm.runtime.Engine``)."""

    def __init__(self, engine: Any, adapter: str | None = None) -> None:
        self.engine = engine
        self.adapter = adapter  # the bundle task whose LoRA adapter generation uses

    def generate(self, conversations: list[list[Message]], max_new_tokens: int) -> list[str]:
        """One greedy completion per conversation."""
        tok = self.engine.tokenizer
        prompts = [tok.encode(tok.apply_chat_template(c)) for c in conversations]
        results = self.engine.generate_ids(
            prompts, GenerationConfig(max_new_tokens=max_new_tokens), adapter=self.adapter
        )
        return [r.text for r in results]

    def with_adapter(
        self, task: str, adapter: LoraAdapter | None
    ) -> AbstractContextManager[EngineGenerator]:
        """Rows use ``task``'s LoRA slot when the bundle has its adapter (else the base)."""
        return nullcontext(self if adapter is None else EngineGenerator(self.engine, task))

"""Adapter slots of a multi-LoRA engine: which task's adapter fills which slot.

Slot 0 is the base model (all zeros). The stacked tensors are bound to the session once;
filling a slot writes it in place, so adding a task needs no re-export and no restart.
A removed task's slot is reused only after its last in-flight request finished.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinyllm.adapters import LoraAdapter, stack_adapters
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    from tinyllm.runtime.session import DecoderSession


class AdapterSlots:
    """The engine's LoRA slots and their owners.

    Args:
        config: the model config.
        slots: slots of the exported engine (0: no multi-LoRA inputs).
        rank: the engine's LoRA rank.
        targets: the projections the engine adapts.
        dtype: the engine's float dtype.
    """

    def __init__(
        self, config: ModelConfig, slots: int, rank: int, targets: tuple[str, ...], dtype: str
    ) -> None:
        self.config = config
        self.rank = rank
        self.targets = targets
        self.dtype = np.dtype(dtype)
        self.tensors = stack_adapters(config, [None] * slots, rank, targets, self.dtype)
        self.owner: list[str | None] = ["<base>"] + [None] * max(slots - 1, 0)
        self.in_use = [0] * max(slots, 1)
        self.retired: set[int] = set()
        self.session: DecoderSession | None = None

    def bind(self, session: DecoderSession) -> None:
        """Bind the stacked tensors to ``session``; later fills write into the bound arrays."""
        if self.tensors:
            session.set_lora(self.tensors)
            self.tensors = session.lora
            self.session = session

    @property
    def count(self) -> int:
        """Slots of the engine (including the base slot)."""
        return len(self.owner) if self.tensors else 0

    def free(self) -> int:
        """Slots an added task could take now."""
        return sum(o is None and i == 0 for o, i in zip(self.owner, self.in_use, strict=False))

    def fill(self, task: str, adapter: LoraAdapter) -> int:
        """Write ``adapter`` into a free slot for ``task`` and return the slot."""
        if not self.tensors:
            raise ConfigError(
                f"task {task!r} has an adapter but this engine has no LoRA slots; export with "
                "lora_slots > 0 (api.export does so by default for bundles with adapters)"
            )
        extra = sorted(set(adapter.targets) - set(self.targets))
        if extra:
            raise ConfigError(
                f"task {task!r}: the engine adapts {list(self.targets)}, not {extra[0]!r}"
            )
        adapter.check(self.config, f"adapter of task {task!r}")
        for slot in range(1, len(self.owner)):
            if self.owner[slot] is None and self.in_use[slot] == 0:
                one = stack_adapters(self.config, [adapter], self.rank, self.targets, self.dtype)
                for name, tensor in one.items():
                    self.tensors[name][:, slot] = tensor[:, 0]
                if self.session is not None:
                    self.session.sync_lora()  # device copies of the stacks follow
                self.owner[slot] = task
                return slot
        raise ConfigError(
            f"all {len(self.owner) - 1} adapter slots are taken; remove a task first, or "
            "export the engine with more lora_slots (api.export(..., lora_spare=N))"
        )

    def release(self, slot: int) -> None:
        """The slot's task was removed: free it once no request uses it."""
        if slot == 0:
            return
        self.owner[slot] = None
        if self.in_use[slot]:
            self.retired.add(slot)
            self.owner[slot] = "<retired>"

    def acquire(self, slot: int) -> None:
        """A request starts using the slot."""
        self.in_use[slot] += 1

    def done(self, slot: int) -> None:
        """A request using the slot ended."""
        self.in_use[slot] -= 1
        if self.in_use[slot] == 0 and slot in self.retired:
            self.retired.discard(slot)
            self.owner[slot] = None

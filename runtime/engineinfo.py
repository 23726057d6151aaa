"""engine.json: how an engine was exported (a leaf schema shared by export and serving)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineInfo:
    """engine.json: how the engine was exported. ``merged_adapter``: the task whose adapter
    export folded into the weights (``--merge-adapter``); the engine serves only it.
    ``greedy_ids``: the graph also outputs each row's argmax (``--greedy-ids``); engine.json
    has the key only when it is true, so older engines read as before."""

    target: str
    flavour: str
    precision: str
    float_dtype: str
    max_seq_len: int
    model: str
    block_size: int = 0
    lora_slots: int = 0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()
    merged_adapter: str | None = None
    greedy_ids: bool = False

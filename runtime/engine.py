"""The in-process engine: load a bundle's exported engine and generate text.

Needs only numpy, tokenizers, jinja2 and onnxruntime (no torch).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tinyllm.bundle import Bundle, Verify
from tinyllm.errors import BundleError, ConfigError, EngineClosedError
from tinyllm.manifest import EngineEntry
from tinyllm.runtime.enginefile import check_graph, read_engine_info, verify_engine_files
from tinyllm.runtime.sampling import GenerationConfig, sample
from tinyllm.runtime.scheduler import Policy, SchedulerConfig
from tinyllm.runtime.service import TaskService
from tinyllm.runtime.serving import Server, ServingOptions
from tinyllm.runtime.session import DecoderSession, SessionSpec, make_session
from tinyllm.runtime.slots import AdapterSlots
from tinyllm.runtime.tokenizer import ChatTokenizer

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Generation:
    """One prompt's result."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: FinishReason


@dataclass(frozen=True)
class EngineInfo:
    """engine.json: how the engine was exported."""

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


class _Row:
    """Decoding state of one sequence."""

    def __init__(self, prompt: list[int], seed: int | None) -> None:
        self.prompt = prompt
        self.tokens: list[int] = []
        self.rng = np.random.default_rng(seed)
        self.done: FinishReason | None = None
        self.text = ""


class Engine(TaskService):
    """Generate with an exported engine of a bundle, and serve its tasks (``run``,
    ``submit``, ``stream_task``, ... from :class:`TaskService`). Create it with
    :meth:`Engine.load`."""

    def __init__(
        self,
        bundle: Bundle,
        info: EngineInfo,
        session: DecoderSession,
        tok: ChatTokenizer,
        serving: ServingOptions | None = None,
    ):
        self.bundle = bundle
        self.info = info
        self.session = session
        self.tokenizer = tok
        self.max_batch = session.max_batch
        self.stop_ids = {i for i in (tok.eos_token_id,) if i is not None}
        eos = bundle.config.eos_token_id
        self.stop_ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self._lock = threading.Lock()
        self.serving = serving or ServingOptions(SchedulerConfig(max_rows=self.max_batch))
        self._server: Server | None = None
        self._closed = False
        self._serve_lock = threading.Lock()
        self._slots: AdapterSlots | None = None  # generate()'s adapter slots (not serving's)
        self._slot_of: dict[str, int] = {}

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike[str] | Bundle,
        *,
        engine: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        max_batch: int = 8,
        max_seq_len: int | None = None,
        queue_size: int = 64,
        max_tasks_per_step: int = 4,
        scheduler: Policy = "continuous",
        chunk_size: int = 256,
        prefill_tokens: int = 512,
        aging: float = 20.0,
        constrain: bool = True,
        verify: Verify = "sha256",
    ) -> Engine:
        """Load an engine of a bundle.

        Args:
            bundle: the bundle (path or opened).
            engine: which of its engines (default: the only one, or the first for the device).
            device: "cpu" or "cuda" ("cuda" without a CUDA provider is an error).
            threads: intra-op threads (default: the CPUs this process may use).
            max_batch: rows generated together (KV memory is reserved for all of them).
            max_seq_len: context per row (default: the export's maximum, capped at 4096).
            queue_size: serving: requests waiting beyond the ``max_batch`` in flight.
            max_tasks_per_step: serving: at most this many distinct tasks in one step (β).
            scheduler: serving policy, ``continuous`` batching or ``fifo`` static batches.
            chunk_size: serving: longer prompts are prefilled in chunks of this many tokens.
            prefill_tokens: serving: padded prompt tokens prefilled per step.
            aging: serving: predicted output tokens forgiven per second a request waits.
            constrain: serving: label tasks decode only their labels (a token trie).
            verify: ``"sha256"`` checks the hash of every file the engine reads (digests
                are remembered by file identity, so a reload is fast); ``"size"`` only
                sizes. engine.json is always checked against the graph.
        """
        options = ServingOptions(
            SchedulerConfig(
                max_rows=max_batch,
                queue_size=queue_size,
                max_tasks_per_step=max_tasks_per_step,
                chunk_size=chunk_size,
                prefill_tokens=prefill_tokens,
                aging=aging,
                policy=scheduler,
            ),
            constrain,
        )
        opened = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle, verify="size")
        entry = _pick_engine(opened, engine, device)
        folder = opened.path / entry.path
        verify_engine_files(opened, entry, verify)
        info = read_engine_info(folder, EngineInfo)
        seq = min(max_seq_len or min(info.max_seq_len, 4096), info.max_seq_len)
        tok = ChatTokenizer(opened.tokenizer_dir)
        spec = SessionSpec(
            info.flavour, info.float_dtype, seq, info.lora_slots, info.lora_rank, info.lora_targets
        )
        onnx_session = make_session(folder / info.model, device, threads)
        check_graph(info, onnx_session, opened.config, folder)
        session = DecoderSession(
            onnx_session,
            opened.config,
            spec,
            max_batch,
            tok.pad_token_id,
        )
        return cls(opened, info, session, tok, options)

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        """Token ids of a prompt (rendered with the chat template when ``chat``)."""
        text = (
            self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
            if chat
            else prompt
        )
        return self.tokenizer.encode(text)

    def generate(
        self,
        prompts: str | Sequence[str],
        config: GenerationConfig | None = None,
        *,
        chat: bool = False,
    ) -> list[Generation]:
        """Generate for one or more prompts (batched, up to ``max_batch`` at a time)."""
        items = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.generate_ids([self.encode(p, chat) for p in items], config)

    def generate_ids(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig | None = None,
        *,
        adapter: str | None = None,
    ) -> list[Generation]:
        """Generate from token ids; results are the same as one prompt at a time.

        Args:
            prompts: token ids per prompt.
            config: decoding parameters (default: greedy).
            adapter: a task of the bundle whose LoRA adapter every row uses (None: the
                base model). It takes one of the engine's LoRA slots the first time.
        """
        config = config or GenerationConfig()
        if self._closed:
            raise EngineClosedError("the engine is closed; load a new one to generate")
        slot = self._adapter_slot(adapter)
        results: list[Generation] = []
        for start in range(0, len(prompts), self.max_batch):
            chunk = [list(p) for p in prompts[start : start + self.max_batch]]
            rows = self._start(chunk, config, start)
            for _ in self._steps(rows, config, live_text=False, slot=slot):
                pass
            for r in rows:
                text = r.text if config.stop else self.tokenizer.decode(r.tokens)
                results.append(Generation(text, r.tokens, len(r.prompt), r.done or "length"))
        return results

    def stream(
        self, prompt: str, config: GenerationConfig | None = None, *, chat: bool = False
    ) -> Iterator[str]:
        """Yield the generated text piece by piece; joined, it equals ``generate``'s text."""
        config = config or GenerationConfig()
        if self._closed:
            raise EngineClosedError("the engine is closed; load a new one to generate")
        rows = self._start([self.encode(prompt, chat)], config, 0)
        sent = 0
        for _ in self._steps(rows, config, live_text=True):
            text = rows[0].text
            # Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) until it completes.
            ready = len(text.rstrip("\ufffd")) if rows[0].done is None else len(text)
            if ready > sent:
                yield text[sent:ready]
                sent = ready

    def _start(self, prompts: list[list[int]], config: GenerationConfig, offset: int) -> list[_Row]:
        limit = self.session.spec.max_seq_len
        for i, p in enumerate(prompts):
            if not p:
                raise ConfigError(f"prompt {offset + i} is empty")
            if len(p) >= limit:
                raise ConfigError(
                    f"prompt {offset + i} has {len(p)} tokens; the engine's context is {limit} "
                    "tokens (prompt plus output): shorten the prompt, or load the engine "
                    "with a larger max_seq_len"
                )
        seeds = [
            None if config.seed is None else config.seed + offset + i for i in range(len(prompts))
        ]
        return [_Row(p, s) for p, s in zip(prompts, seeds, strict=True)]

    def _adapter_slot(self, task: str | None) -> int:
        """The LoRA slot of ``task``'s adapter for generate() (0: base), filled once."""
        if task is None:
            return 0
        if task not in self.bundle.manifest.adapters:
            known = ", ".join(sorted(self.bundle.manifest.adapters)) or "none"
            raise ConfigError(
                f"no LoRA adapter for task {task!r} in {self.bundle.path} (adapters: {known})"
            )
        with self._lock:
            if task not in self._slot_of:
                if self._slots is None:
                    self._slots = self._new_slots()
                    self._slots.bind(self.session)
                self._slot_of[task] = self._slots.fill(task, self.bundle.adapter(task))
            return self._slot_of[task]

    def _steps(
        self, rows: list[_Row], config: GenerationConfig, live_text: bool, slot: int = 0
    ) -> Iterator[None]:
        """Run prefill and decode steps until every row is done; yield after each step.

        Rows' text is re-decoded each step only where it is read then (``live_text``, or
        stop strings to search); otherwise it is decoded once at the end. Every row uses
        LoRA slot ``slot``.
        """
        index = np.full(len(rows), slot, np.int64) if slot else None
        with self._lock:
            logits = self.session.prefill([r.prompt for r in rows], index)
            while True:
                for row, row_logits in zip(rows, logits, strict=True):
                    if row.done is None:
                        self._advance(row, row_logits, config, live_text)
                yield
                if all(r.done for r in rows):
                    return
                last = [r.tokens[-1] if r.tokens else self.session.pad_id for r in rows]
                held = [len(r.prompt) + len(r.tokens) - 1 for r in rows]
                logits = self.session.decode(last, held, index)

    def _advance(
        self, row: _Row, logits: np.ndarray, config: GenerationConfig, live_text: bool
    ) -> None:
        token = sample(logits, config, row.rng)
        if token in self.stop_ids and not config.ignore_eos:
            row.done = "stop"
            return
        row.tokens.append(token)
        if live_text or config.stop:
            row.text = self.tokenizer.decode(row.tokens)
        for stop in config.stop:
            cut = row.text.find(stop)
            if cut >= 0:
                row.text, row.done = row.text[:cut], "stop"
                return
        full = len(row.prompt) + len(row.tokens) >= self.session.spec.max_seq_len
        if len(row.tokens) >= config.max_new_tokens or full:
            row.done = "length"


def _pick_engine(bundle: Bundle, name: str | None, device: str) -> EngineEntry:
    engines = bundle.manifest.engines
    if not engines:
        raise BundleError(
            f"{bundle.path} has no exported engine; run `tinyllm export {bundle.path} "
            "--target onnx-cpu` first"
        )
    if name is not None:
        if name not in engines:
            raise BundleError(f"{bundle.path} has no engine {name!r}; it has: {', '.join(engines)}")
        return engines[name]
    wanted = "onnx-cuda" if device == "cuda" else "onnx-cpu"
    for entry in engines.values():
        if entry.target == wanted:
            return entry
    return next(iter(engines.values()))

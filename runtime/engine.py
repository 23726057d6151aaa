"""The in-process engine: load a bundle's exported engine, generate text, serve tasks.

Everything the engine runs (``generate``, ``stream``, task requests, evaluation, HTTP)
goes through one decode loop (:mod:`tinyllm.runtime.serving`): one scheduler, one KV
cache and one table of adapter slots per engine.

Needs only numpy, tokenizers, jinja2 and onnxruntime (no torch).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tinyllm.bundle import Bundle, Verify
from tinyllm.chat import ChatTokenizer
from tinyllm.errors import BundleError, ConfigError
from tinyllm.manifest import EngineEntry
from tinyllm.runtime.enginefile import check_graph, read_engine_info, verify_engine_files
from tinyllm.runtime.engineinfo import EngineInfo
from tinyllm.runtime.ortsession import make_session
from tinyllm.runtime.router import TaskOutput
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.runtime.scheduler import Policy, SchedulerConfig
from tinyllm.runtime.service import TaskService
from tinyllm.runtime.serving import Server, ServingOptions
from tinyllm.runtime.servingdefaults import ServingDefaults, read_defaults
from tinyllm.runtime.session import DecoderSession, SessionSpec
from tinyllm.runtime.speculative import check_exact
from tinyllm.tasktable import TaskTable

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Generation:
    """One prompt's result."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: FinishReason


def _exact_settings(settings: ServingDefaults, info: EngineInfo) -> ServingDefaults:
    """``settings`` with ``fast_forward`` resolved for the engine (on where its verify runs
    are exact); speculation or fast-forwarding that would change its outputs is refused."""
    ask = settings.fast_forward
    on = check_exact(settings.speculate, info.flavour, info.precision, ask, info.float_dtype)
    return replace(settings, fast_forward=on)


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
        table: TaskTable | None = None,
    ):
        self.bundle = bundle
        self.info = info
        self.session = session
        self.tokenizer = tok
        self.table = table
        self.max_batch = session.max_batch
        self.stop_ids = {i for i in (tok.eos_token_id,) if i is not None}
        eos = bundle.config.eos_token_id
        self.stop_ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.serving = serving or ServingOptions(SchedulerConfig(max_rows=self.max_batch))
        self._server: Server | None = None
        self._closed = False
        self._serve_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike[str] | Bundle,
        *,
        engine: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        max_batch: int | None = None,
        max_seq_len: int | None = None,
        queue_size: int | None = None,
        max_tasks_per_step: int | None = None,
        scheduler: Policy | None = None,
        chunk_size: int | None = None,
        prefill_tokens: int | None = None,
        aging: float | None = None,
        constrain: bool | None = None,
        prefix_cache_mb: float | None = None,
        speculate: int | None = None,
        fast_forward: bool | None = None,
        verify: Verify = "sha256",
    ) -> Engine:
        """Load an engine of a bundle.

        A serving setting left None comes from the engine's ``serving.json`` (written by
        ``tinyllm profile --apply``), else from the built-in defaults
        (:class:`~tinyllm.runtime.servingdefaults.ServingDefaults`).

        Args:
            bundle: the bundle (path or opened).
            engine: which of its engines (default: the only one, or the first for the device).
            device: "cpu", "cuda" or "tensorrt" (without its provider, an error). On
                "cuda" an ``onnx-cuda`` engine keeps its KV cache, adapters and logits on
                the GPU (docs/gpu.md); "tensorrt" also checks the GPU and TensorRT the
                engine was built for. An engine exported with ``--merge-adapter TASK``
                serves TASK only and refuses other tasks and adapters (docs/gpu.md).
            threads: intra-op threads (default: the CPUs this process may use).
            max_batch: rows generated together (KV address space is reserved for all of
                them; a row's memory becomes resident as its tokens fill it).
            max_seq_len: context per row (default: the export's maximum, capped at 4096;
                an unused context costs address space, not memory).
            queue_size: requests waiting beyond the ``max_batch`` in flight.
            max_tasks_per_step: at most this many distinct tasks in one step (β).
            scheduler: ``continuous`` batching or ``fifo`` static batches.
            chunk_size: longer prompts are prefilled in chunks of this many tokens.
            prefill_tokens: padded prompt tokens prefilled per step.
            aging: predicted output tokens forgiven per second a request waits.
            constrain: label tasks decode only their labels (a token trie), JSON tasks
                only valid JSON; False serves the raw model.
            prefix_cache_mb: memory for the per-task prefix cache (KV of the prompt text
                every request of a task starts with); 0 turns it off.
            speculate: most tokens drafted from the prompt and verified in one step, for
                greedy requests of tasks that speculate (``output.speculate``) and
                ``GenerationConfig(speculate=True)``; outputs are unchanged; 0 turns it off.
                int4/int8 ``ort`` engines refuse it (it would change their outputs).
            fast_forward: greedy constrained requests (tool calls, JSON) write the text
                their constraint forces in one verify step instead of one step a token;
                outputs are unchanged. None (the default): on for float32 engines whose
                verify steps are exact; int4/int8 ``ort`` engines refuse True.
            verify: ``"sha256"`` checks the hash of every file the engine reads (digests
                are remembered by file identity, so a reload is fast); ``"size"`` only
                sizes. engine.json is always checked against the graph.
        """
        opened = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle, verify="size")
        entry = pick_engine(opened, engine, device)
        check_device_target(opened, entry, device)
        folder = opened.path / entry.path
        verify_engine_files(opened, entry, verify)
        settings = read_defaults(folder).with_given(
            threads=threads,
            max_batch=max_batch,
            queue_size=queue_size,
            max_tasks_per_step=max_tasks_per_step,
            scheduler=scheduler,
            chunk_size=chunk_size,
            prefill_tokens=prefill_tokens,
            aging=aging,
            constrain=constrain,
            prefix_cache_mb=prefix_cache_mb,
            speculate=speculate,
            fast_forward=fast_forward,
        )
        info = read_engine_info(folder, EngineInfo)
        settings = _exact_settings(settings, info)
        seq = min(max_seq_len or min(info.max_seq_len, 4096), info.max_seq_len)
        tok = ChatTokenizer(opened.tokenizer_dir)
        spec = SessionSpec(
            info.flavour, info.float_dtype, seq, info.lora_slots, info.lora_rank, info.lora_targets
        )
        onnx_session = open_session(folder / info.model, device, settings.threads)
        check_graph(info, onnx_session, opened.config, folder)
        session = DecoderSession(
            onnx_session,
            opened.config,
            spec,
            settings.max_batch,
            tok.pad_token_id,
            device="cuda" if device == "cuda" else None,  # cuda: device-resident buffers
        )
        return cls(opened, info, session, tok, settings.options(), TaskTable.read(folder))

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
        """Generate for one or more prompts (batched with everything else the engine runs)."""
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

        The prompts join the engine's one decode loop (the scheduler that serves tasks),
        waiting for room in its queue rather than failing when it is full.

        Args:
            prompts: token ids per prompt.
            config: decoding parameters (default: greedy); prompt ``i`` samples with
                ``seed + i`` when a seed is given.
            adapter: a task of the bundle whose LoRA adapter every row uses (None: the
                base model; an engine exported with ``--merge-adapter TASK`` has no other
                weights than TASK's merged ones, so None and TASK run the same).
        """
        config = config or GenerationConfig()
        server = self._serving()
        for i, p in enumerate(prompts):
            server.check_prompt(list(p), f"prompt {i}")
        futures = []
        for i, p in enumerate(prompts):
            seeded = config if config.seed is None else replace(config, seed=config.seed + i)
            futures.append(self.submit_ids(p, seeded, adapter=adapter, wait=True))
        return [_generation(f.result()) for f in futures]

    def submit_ids(
        self,
        prompt: Sequence[int],
        config: GenerationConfig | None = None,
        *,
        adapter: str | None = None,
        wait: bool = False,
    ) -> Future[TaskOutput]:
        """Queue one prompt of token ids (a plain completion) on the decode loop.

        Args:
            prompt: token ids.
            config: decoding parameters (default: greedy).
            adapter: a task of the bundle whose LoRA adapter the row uses (None: base;
                see :meth:`generate_ids` for an engine with a merged adapter).
            wait: wait for room in a full queue instead of raising QueueFullError.
        """
        server = self._serving()
        slot = self._adapter_slot(server, adapter)
        route = server.router.raw_ids(list(prompt), config or GenerationConfig(), slot)
        return server.submit(route, None, None, wait=wait)

    def stream(
        self, prompt: str, config: GenerationConfig | None = None, *, chat: bool = False
    ) -> Iterator[str]:
        """Yield the generated text piece by piece; joined, it equals ``generate``'s text."""
        config = config or GenerationConfig()
        ids = self.encode(prompt, chat)
        server = self._serving()
        server.check_prompt(ids)
        return self._stream(server.router.raw_ids(ids, config, 0), None)

    def _adapter_slot(self, server: Server, task: str | None) -> int:
        """The LoRA slot of ``task``'s adapter for generate() (0: base), filled once.

        An engine with a merged adapter has it in slot 0 and no other."""
        merged = self.info.merged_adapter
        if task is None or task == merged:
            return 0
        if merged is not None:
            raise ConfigError(
                f"this engine has the adapter of task {merged!r} merged into its weights: it "
                f"runs that adapter (or adapter=None, the same weights), not {task!r}'s; "
                f"export an engine with LoRA slots, or one with --merge-adapter {task}"
            )
        if task not in self.bundle.manifest.adapters:
            known = ", ".join(sorted(self.bundle.manifest.adapters)) or "none"
            raise ConfigError(
                f"no LoRA adapter for task {task!r} in {self.bundle.path} (adapters: {known})"
            )
        return server.adapter_slot(task, self.bundle.adapter)


def _generation(output: TaskOutput) -> Generation:
    return Generation(
        output.text,
        list(output.token_ids),
        output.prompt_tokens,
        "stop" if output.finish_reason == "stop" else "length",
    )


def open_session(model: Path, device: str, threads: int | None) -> Any:
    """The ONNX Runtime session of an engine's ``model`` on ``device``: "tensorrt" opens
    the folder's EPContext model after checking the GPU and TensorRT it was built for."""
    if device == "tensorrt":
        from tinyllm.runtime.tensorrt import tensorrt_session

        return tensorrt_session(model, threads)
    return make_session(model, device, threads)


def check_device_target(bundle: Bundle, entry: EngineEntry, device: str) -> None:
    """device='tensorrt' runs only TensorRT engines: any other is a clear error."""
    if device == "tensorrt" and entry.target != "tensorrt":
        raise ConfigError(
            f"device='tensorrt' runs TensorRT engines; {entry.path} of {bundle.path} is "
            f"target {entry.target!r}: export one with `tinyllm export BUNDLE --target "
            "tensorrt`, or load this one with device='cpu' or 'cuda'"
        )


def pick_engine(bundle: Bundle, name: str | None, device: str) -> EngineEntry:
    """The engine ``name`` of a bundle, or (None) the first one for ``device``."""
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
    wanted = {"cuda": "onnx-cuda", "tensorrt": "tensorrt"}.get(device, "onnx-cpu")
    for entry in engines.values():
        if entry.target == wanted:
            return entry
    return next(iter(engines.values()))

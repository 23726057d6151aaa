"""Greedy batched generation with llama.cpp through llama-cpp-python's low-level API.

llama-cpp-python's ``Llama`` generates one sequence; llama.cpp itself decodes many: each
row of the batch gets its own sequence id (and so its own KV), a step puts one token per
row into one ``llama_batch`` and asks for logits only at those positions. That is how
llama.cpp's own ``batched`` example runs several streams, so this is the peer at batch 8.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


class LlamaBatchRunner:
    """One model and context for ``len(prompts)`` rows; ``generate(n)`` restarts them."""

    def __init__(self, path: str, prompts: list[list[int]], max_new: int, threads: int) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.prompts = prompts
        rows, length = len(prompts), len(prompts[0])
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        per_row = length + max_new + 8
        params.n_ctx = rows * per_row
        params.n_batch = params.n_ubatch = rows * length  # the whole prompt in one decode
        params.n_seq_max = rows
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.vocab_size = llama_cpp.llama_vocab_n_tokens(vocab)
        self.batch = llama_cpp.llama_batch_init(rows * length, 0, 1)
        self.kv_unified = bool(params.kv_unified)

    def settings(self) -> dict[str, Any]:
        lib = self.lib
        return {
            "n_threads": lib.llama_n_threads(self.ctx),
            "n_threads_batch": lib.llama_n_threads_batch(self.ctx),
            "n_seq_max": lib.llama_n_seq_max(self.ctx),
            "kv_unified": self.kv_unified,
            "spinning": "ggml's default polling (llama-cpp-python does not expose it)",
            "llama_cpp_python": lib.__version__,
        }

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """entries: (token, position, sequence id, wants logits)."""
        b = self.batch
        b.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
            b.seq_id[i][0], b.logits[i] = seq, logits
        if self.lib.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def _argmax(self, index: int) -> int:
        pointer = self.lib.llama_get_logits_ith(self.ctx, index)
        logits = np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), (self.vocab_size,)
        )
        return int(logits.argmax())

    def generate(self, n: int) -> list[int]:
        """Exactly ``n`` greedy tokens per row; returns row 0's."""
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        length = len(self.prompts[0])
        entries = [
            (token, pos, row, pos == length - 1)
            for row, prompt in enumerate(self.prompts)
            for pos, token in enumerate(prompt)
        ]
        self._decode(entries)
        last = [row * length + length - 1 for row in range(len(self.prompts))]
        out: list[list[int]] = [[] for _ in self.prompts]
        for step in range(n):
            tokens = [self._argmax(i) for i in last]
            for row, token in enumerate(tokens):
                out[row].append(token)
            if step == n - 1:
                break
            self._decode([(t, length + step, row, True) for row, t in enumerate(tokens)])
            last = list(range(len(tokens)))
        return out[0]

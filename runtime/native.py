"""The native runtime (``runtime/cpp/``, libtinyllm): where it was built, and a ctypes binding.

``make cpp`` builds it into ``build/cpp/`` of a source checkout (``make test`` does too, and
a sanitizer build into ``build/cpp-asan/``). ``$TINYLLM_NATIVE_LIBRARY`` points at another
``libtinyllm.so``. The binding here is thin and meant for tests and tools: C++ programs use
``tinyllm/tinyllm.h`` or ``tinyllm/tinyllm.hpp`` directly (docs/cpp.md).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyllm.errors import TinyLLMError

REPO = Path(__file__).resolve().parents[1]
LIBRARY = "libtinyllm.so"
FINISH_REASONS = ("stop", "length")


class NativeError(TinyLLMError):
    """A libtinyllm call failed: ``status`` is the C status name, the message its text."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def build_dir(build: str = "cpp") -> Path:
    """The CMake build folder of a source checkout (``cpp`` or ``cpp-asan``)."""
    return REPO / "build" / build


def library_path(build: str = "cpp") -> Path:
    """Path of the built ``libtinyllm.so`` (``$TINYLLM_NATIVE_LIBRARY`` overrides).

    Raises TinyLLMError, saying how to build it, when there is none.
    """
    override = os.environ.get("TINYLLM_NATIVE_LIBRARY")
    path = Path(override) if override else build_dir(build) / LIBRARY
    if not path.is_file():
        raise TinyLLMError(
            f"the native runtime is not built: {path} does not exist; run `make cpp` in the "
            "source checkout (or set TINYLLM_NATIVE_LIBRARY to a built libtinyllm.so)"
        )
    return path


def tool_path(name: str, build: str = "cpp") -> Path:
    """Path of a built program: ``tinyllm-run``, or the test driver ``tinyllm_api_check``."""
    path = build_dir(build) / name
    if not path.is_file():
        raise TinyLLMError(f"{path} does not exist; run `make cpp` (or `make cpp-asan`) first")
    return path


class _Prompt(ctypes.Structure):
    _fields_ = [
        ("text", ctypes.c_char_p),
        ("text_len", ctypes.c_size_t),
        ("ids", ctypes.POINTER(ctypes.c_int32)),
        ("n_ids", ctypes.c_size_t),
        ("adapter", ctypes.c_char_p),
    ]


class _LoadOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("engine", ctypes.c_char_p),
        ("threads", ctypes.c_int32),
        ("max_batch", ctypes.c_int32),
        ("max_seq_len", ctypes.c_int32),
        ("verify_hashes", ctypes.c_int32),
        ("fast_forward", ctypes.c_int32),
    ]


class _GenerationConfig(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("max_new_tokens", ctypes.c_int32),
        ("temperature", ctypes.c_double),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_double),
        ("has_seed", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("stop", ctypes.POINTER(ctypes.c_char_p)),
        ("n_stop", ctypes.c_size_t),
        ("ignore_eos", ctypes.c_int32),
    ]


class _Result(ctypes.Structure):
    _fields_ = [
        ("text", ctypes.POINTER(ctypes.c_char)),
        ("text_len", ctypes.c_size_t),
        ("token_ids", ctypes.POINTER(ctypes.c_int32)),
        ("n_tokens", ctypes.c_size_t),
        ("prompt_tokens", ctypes.c_size_t),
        ("finish_reason", ctypes.c_int),
    ]


_STATS_COUNTS = ("prefill_calls", "decode_steps", "prompt_tokens", "generated_tokens")
_STATS_SECONDS = ("prefill_seconds", "decode_seconds", "generate_seconds")


class _Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in _STATS_COUNTS] + [
        (name, ctypes.c_double) for name in _STATS_SECONDS
    ]


_STREAM_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t
)
_P = ctypes.c_void_p
_SIZE = ctypes.POINTER(ctypes.c_size_t)
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "tinyllm_version": (ctypes.c_char_p, []),
    "tinyllm_last_error": (ctypes.c_char_p, []),
    "tinyllm_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    "tinyllm_free": (None, [_P]),
    "tinyllm_tokenizer_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_P)]),
    "tinyllm_tokenizer_free": (None, [_P]),
    "tinyllm_encode": (
        ctypes.c_int,
        [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_P), _SIZE],
    ),
    "tinyllm_decode": (
        ctypes.c_int,
        [_P, _P, ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(_P), _SIZE],
    ),
    "tinyllm_token_to_id": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int32)]),
    "tinyllm_text_stream_new": (ctypes.c_int, [_P, ctypes.c_int, ctypes.POINTER(_P)]),
    "tinyllm_text_stream_push": (
        ctypes.c_int,
        [_P, ctypes.c_int32, ctypes.POINTER(_P), _SIZE],
    ),
    "tinyllm_text_stream_finish": (
        ctypes.c_int,
        [_P, ctypes.POINTER(_P), _SIZE],
    ),
    "tinyllm_text_stream_free": (None, [_P]),
    "tinyllm_load_options_init": (None, [ctypes.POINTER(_LoadOptions)]),
    "tinyllm_engine_load": (
        ctypes.c_int,
        [ctypes.c_char_p, ctypes.POINTER(_LoadOptions), ctypes.POINTER(_P)],
    ),
    "tinyllm_engine_free": (None, [_P]),
    "tinyllm_engine_tokenizer": (_P, [_P]),
    "tinyllm_generation_config_init": (None, [ctypes.POINTER(_GenerationConfig)]),
    "tinyllm_generate": (
        ctypes.c_int,
        [
            _P,
            ctypes.POINTER(_Prompt),
            ctypes.c_size_t,
            ctypes.POINTER(_GenerationConfig),
            _STREAM_FN,
            _P,
            ctypes.POINTER(_P),
        ],
    ),
    "tinyllm_results_count": (ctypes.c_size_t, [_P]),
    "tinyllm_results_get": (ctypes.c_int, [_P, ctypes.c_size_t, ctypes.POINTER(_Result)]),
    "tinyllm_results_free": (None, [_P]),
    "tinyllm_engine_get_stats": (ctypes.c_int, [_P, ctypes.POINTER(_Stats)]),
}


def load_library(path: str | os.PathLike[str] | None = None) -> ctypes.CDLL:
    """libtinyllm through ctypes, with every function's signature declared."""
    lib = ctypes.CDLL(str(path or library_path()))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def check(lib: ctypes.CDLL, status: int) -> None:
    """Raise NativeError for a failed status, with the thread's last-error message."""
    if status != 0:
        name = lib.tinyllm_status_name(status).decode()
        raise NativeError(name, lib.tinyllm_last_error().decode("utf-8", "replace"))


@dataclass(frozen=True)
class NativeGeneration:
    """One prompt's result from libtinyllm (as the Python engine's Generation)."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    streamed: str


@dataclass(frozen=True)
class NativeStats:
    """An engine's counters since it was loaded (``tinyllm_engine_get_stats``): graph runs
    and their wall time inside ONNX Runtime, whoever ran them (``generate``, task runs or
    a server's loop); ``generate_seconds`` counts ``generate`` calls only, all included."""

    prefill_calls: int
    decode_steps: int
    prompt_tokens: int
    generated_tokens: int
    prefill_seconds: float
    decode_seconds: float
    generate_seconds: float

    @property
    def runs(self) -> int:
        """ONNX Runtime runs of the graph, prefill and decode."""
        return self.prefill_calls + self.decode_steps

    @property
    def ort_seconds(self) -> float:
        """Wall time inside ONNX Runtime's runs."""
        return self.prefill_seconds + self.decode_seconds

    def since(self, before: NativeStats) -> NativeStats:
        """The counts and times from ``before`` (an earlier reading) to this one."""
        return NativeStats(
            *[getattr(self, k) - getattr(before, k) for k in _STATS_COUNTS + _STATS_SECONDS]
        )


class NativeTokenizer:
    """A libtinyllm tokenizer: a tokenizer.json file or a folder holding one."""

    def __init__(self, lib: ctypes.CDLL, path: str | os.PathLike[str] | None, handle: Any = None):
        self.lib = lib
        self._owned = handle is None
        if handle is None:
            raw = _P()
            check(lib, lib.tinyllm_tokenizer_load(str(path).encode(), ctypes.byref(raw)))
            handle = raw
        self.handle = handle

    def close(self) -> None:
        """Free the tokenizer (an engine's tokenizer is freed with its engine)."""
        if self._owned and self.handle:
            self.lib.tinyllm_tokenizer_free(self.handle)
        self.handle = None

    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids of UTF-8 bytes (invalid UTF-8 raises NativeError)."""
        ids, n = _P(), ctypes.c_size_t()
        check(self.lib, self.lib.tinyllm_encode(self.handle, data, len(data), ids, n))
        try:
            return list(ctypes.cast(ids, ctypes.POINTER(ctypes.c_int32))[: n.value])
        finally:
            self.lib.tinyllm_free(ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self.encode_bytes(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of ``ids``."""
        array = (ctypes.c_int32 * len(ids))(*ids)
        text, n = _P(), ctypes.c_size_t()
        status = self.lib.tinyllm_decode(self.handle, array, len(ids), int(skip_special), text, n)
        check(self.lib, status)
        try:
            return ctypes.string_at(text, n.value).decode("utf-8")
        finally:
            self.lib.tinyllm_free(text)

    def stream(self, ids: Sequence[int], skip_special: bool = True) -> list[str]:
        """The pieces a text stream yields for ``ids`` pushed one by one, then finished."""
        stream, piece, n = _P(), _P(), ctypes.c_size_t()
        lib = self.lib
        check(lib, lib.tinyllm_text_stream_new(self.handle, int(skip_special), stream))
        pieces = []
        try:
            for i in ids:
                check(lib, lib.tinyllm_text_stream_push(stream, i, piece, n))
                pieces.append(ctypes.string_at(piece, n.value).decode("utf-8"))
            check(lib, lib.tinyllm_text_stream_finish(stream, piece, n))
            pieces.append(ctypes.string_at(piece, n.value).decode("utf-8"))
        finally:
            lib.tinyllm_text_stream_free(stream)
        return pieces


class NativeEngine:
    """A libtinyllm engine of a bundle (see tinyllm_engine_load). ``fast_forward``: forced
    text in one verify run, None on where exact, False off, True on (refused where not
    exact), as the Python engine's."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        bundle: str | os.PathLike[str],
        *,
        engine: str | None = None,
        max_batch: int = 8,
        max_seq_len: int = 0,
        threads: int = 0,
        verify_hashes: bool = False,
        fast_forward: bool | None = None,
    ) -> None:
        self.lib = lib
        options = _LoadOptions()
        lib.tinyllm_load_options_init(ctypes.byref(options))
        options.engine = engine.encode() if engine else None
        options.max_batch, options.max_seq_len, options.threads = max_batch, max_seq_len, threads
        options.verify_hashes = int(verify_hashes)
        options.fast_forward = 0 if fast_forward is None else 1 if fast_forward else -1
        raw = _P()
        check(lib, lib.tinyllm_engine_load(str(bundle).encode(), ctypes.byref(options), raw))
        self.handle: Any = raw
        self.tokenizer = NativeTokenizer(lib, None, lib.tinyllm_engine_tokenizer(raw))
        self.keep: dict[str, Any] = {}  # ctypes callbacks the engine calls (its tools)

    def close(self) -> None:
        """Free the engine."""
        if self.handle:
            self.lib.tinyllm_engine_free(self.handle)
        self.handle = None

    def stats(self) -> NativeStats:
        """The engine's counters since it was loaded."""
        raw = _Stats()
        check(self.lib, self.lib.tinyllm_engine_get_stats(self.handle, ctypes.byref(raw)))
        counts = [int(getattr(raw, k)) for k in _STATS_COUNTS]
        return NativeStats(*counts, *[float(getattr(raw, k)) for k in _STATS_SECONDS])

    def generate(
        self,
        prompts: Sequence[Sequence[int] | str],
        config: Any = None,
        adapters: Sequence[str | None] | None = None,
    ) -> list[NativeGeneration]:
        """Generate for token-id or text prompts; ``config`` is a GenerationConfig (or None)."""
        raw = (_Prompt * len(prompts))()
        keep: list[Any] = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                data = p.encode("utf-8")
                raw[i].text, raw[i].text_len = data, len(data)
            else:
                ids = (ctypes.c_int32 * len(p))(*p)
                raw[i].ids, raw[i].n_ids = ids, len(p)
                keep.append(ids)
            if adapters and adapters[i]:
                raw[i].adapter = str(adapters[i]).encode()
        c = _GenerationConfig()
        self.lib.tinyllm_generation_config_init(ctypes.byref(c))
        if config is not None:
            c.max_new_tokens, c.temperature = config.max_new_tokens, config.temperature
            c.top_k, c.top_p, c.ignore_eos = config.top_k, config.top_p, int(config.ignore_eos)
            c.has_seed, c.seed = int(config.seed is not None), config.seed or 0
            stops = (ctypes.c_char_p * max(len(config.stop), 1))(
                *[s.encode("utf-8") for s in config.stop]
            )
            c.stop, c.n_stop = stops, len(config.stop)
            keep.append(stops)
        pieces: dict[int, bytes] = {}

        def on_text(user: Any, index: int, piece: Any, n: int) -> int:
            pieces[index] = pieces.get(index, b"") + ctypes.string_at(piece, n)
            return 0

        results = _P()
        status = self.lib.tinyllm_generate(
            self.handle, raw, len(prompts), ctypes.byref(c), _STREAM_FN(on_text), None, results
        )
        check(self.lib, status)
        try:
            return [self._result(results, i, pieces) for i in range(len(prompts))]
        finally:
            self.lib.tinyllm_results_free(results)

    def _result(self, results: Any, i: int, pieces: dict[int, bytes]) -> NativeGeneration:
        r = _Result()
        check(self.lib, self.lib.tinyllm_results_get(results, i, ctypes.byref(r)))
        return NativeGeneration(
            text=ctypes.string_at(r.text, r.text_len).decode("utf-8"),
            token_ids=list(r.token_ids[: r.n_tokens]),
            prompt_tokens=int(r.prompt_tokens),
            finish_reason=FINISH_REASONS[r.finish_reason],
            streamed=pieces.get(i, b"").decode("utf-8"),
        )

"""Bad inputs through the C API: each is a status and a message, never a crash."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tinyllm.runtime.native import NativeEngine, NativeError, NativeTokenizer


def fails(call: Callable[[], object], status: str, match: str) -> None:
    with pytest.raises(NativeError, match=match) as err:
        call()
    assert err.value.status == status


@pytest.fixture()
def bundle(llama_engines: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny-llama engines bundle that a test may break."""
    dst = tmp_path / "copy.tllm"
    shutil.copytree(llama_engines, dst)
    return dst


def edit_manifest(bundle: Path, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_null_handles_and_pointers(lib: ctypes.CDLL) -> None:
    out, n = ctypes.c_void_p(), ctypes.c_size_t()
    calls = [
        lib.tinyllm_engine_load(None, None, ctypes.byref(out)),
        lib.tinyllm_engine_load(b"x", None, None),
        lib.tinyllm_encode(None, b"a", 1, ctypes.byref(out), ctypes.byref(n)),
        lib.tinyllm_decode(None, None, 0, 1, ctypes.byref(out), ctypes.byref(n)),
        lib.tinyllm_tokenizer_load(None, ctypes.byref(out)),
        lib.tinyllm_text_stream_new(None, 1, ctypes.byref(out)),
        lib.tinyllm_generate(
            None,
            None,
            0,
            None,
            lib.tinyllm_generate.argtypes[4](),
            None,
            ctypes.byref(out),
        ),
        lib.tinyllm_results_get(None, 0, None),
    ]
    for status in calls:
        assert lib.tinyllm_status_name(status) == b"TINYLLM_INVALID_ARGUMENT"
        assert b"is NULL" in lib.tinyllm_last_error()
    lib.tinyllm_engine_free(None)  # freeing NULL is allowed
    lib.tinyllm_tokenizer_free(None)
    lib.tinyllm_results_free(None)
    assert lib.tinyllm_results_count(None) == 0


def test_missing_and_corrupt_bundles(lib: ctypes.CDLL, bundle: Path, tmp_path: Path) -> None:
    err = "TINYLLM_BUNDLE_ERROR"
    fails(lambda: NativeEngine(lib, tmp_path / "nope.tllm"), err, "the path does not exist")
    (tmp_path / "file.tllm").write_text("x")
    fails(lambda: NativeEngine(lib, tmp_path / "file.tllm"), err, "a bundle is a folder")
    fails(lambda: NativeEngine(lib, tmp_path), err, "has no manifest.json")
    (bundle / "manifest.json").write_text("{not json")
    fails(lambda: NativeEngine(lib, bundle), err, "manifest.json: not valid JSON at byte 1")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda m: m["files"].update({"../outside.txt": {"sha256": "0", "size": 1}}),
            "must be a relative path inside the bundle",
        ),
        (
            lambda m: m["files"].update({"/etc/passwd": {"sha256": "0", "size": 1}}),
            "must be a relative path inside the bundle",
        ),
        (lambda m: m.update(schema_version=2), "written by a newer tinyllm"),
        (lambda m: m.update(surprise=1), 'unknown key "surprise"'),
        (lambda m: m["model"].update(hidden_size="64"), "hidden_size: expected an integer"),
        (lambda m: m["files"].pop("weights.safetensors"), 'must list "weights.safetensors"'),
        (
            lambda m: m["engines"]["onnx-cpu-fp32"].update(path="../elsewhere"),
            "must be a relative path",
        ),
    ],
)
def test_bad_manifests_are_named(
    lib: ctypes.CDLL, bundle: Path, edit: Callable[[dict], None], match: str
) -> None:  # type: ignore[type-arg]
    edit_manifest(bundle, edit)
    fails(lambda: NativeEngine(lib, bundle), "TINYLLM_BUNDLE_ERROR", match)


def test_files_are_checked(lib: ctypes.CDLL, bundle: Path, tmp_path: Path) -> None:
    err = "TINYLLM_BUNDLE_ERROR"
    onnx_data = next((bundle / "engines" / "onnx-cpu-fp32").glob("*.data"))
    original = onnx_data.read_bytes()
    onnx_data.write_bytes(original[:-10])
    fails(lambda: NativeEngine(lib, bundle), err, "truncated or replaced file")
    corrupted = bytearray(original)
    corrupted[100] ^= 0xFF
    onnx_data.write_bytes(bytes(corrupted))
    NativeEngine(lib, bundle).close()  # sizes only by default
    fails(lambda: NativeEngine(lib, bundle, verify_hashes=True), err, "sha256 does not match")
    onnx_data.write_bytes(original)
    NativeEngine(lib, bundle, verify_hashes=True).close()
    # A listed file that is a symbolic link out of the bundle is refused.
    tokenizer = bundle / "tokenizer" / "tokenizer.json"
    outside = tmp_path / "outside.json"
    shutil.move(tokenizer, outside)
    tokenizer.symlink_to(outside)
    fails(lambda: NativeEngine(lib, bundle), err, "resolves outside the bundle")


def test_engine_choice_and_description(
    lib: ctypes.CDLL, bundle: Path, exported: Path, reseal: Callable[[Path], None]
) -> None:
    err = "TINYLLM_BUNDLE_ERROR"
    fails(
        lambda: NativeEngine(lib, bundle, engine="gpu"),
        err,
        'no engine "gpu"; it has: onnx-cpu-fp32',
    )
    fails(
        lambda: NativeEngine(lib, exported, engine="onnx-standard-fp32"),
        "TINYLLM_UNSUPPORTED",
        "standard flavour",
    )
    info = bundle / "engines" / "onnx-cpu-fp32" / "engine.json"
    data = json.loads(info.read_text())
    info.write_text(json.dumps({**data, "extra": 1}))
    reseal(bundle)
    fails(lambda: NativeEngine(lib, bundle), err, 'unknown key "extra"')
    info.write_text(json.dumps({**data, "model": "../../manifest.json"}))
    reseal(bundle)
    fails(lambda: NativeEngine(lib, bundle), err, "relative path inside the bundle")


def test_broken_graph_is_a_bundle_error(
    lib: ctypes.CDLL, bundle: Path, reseal: Callable[[Path], None]
) -> None:
    model = bundle / "engines" / "onnx-cpu-fp32" / "model.onnx"
    model.write_bytes(b"not an onnx graph")
    reseal(bundle)
    fails(
        lambda: NativeEngine(lib, bundle),
        "TINYLLM_BUNDLE_ERROR",
        "ONNX Runtime cannot load this engine",
    )


def test_prompt_errors(lib: ctypes.CDLL, llama_engines: Path) -> None:
    engine = NativeEngine(lib, llama_engines, max_seq_len=16)
    fails(
        lambda: engine.generate([[5] * 16]),
        "TINYLLM_CONTEXT_ERROR",
        "prompt 0 has 16 tokens; the engine's context is 16",
    )
    fails(lambda: engine.generate([[]]), "TINYLLM_CONTEXT_ERROR", "prompt 0 is empty")
    fails(lambda: engine.generate([""]), "TINYLLM_CONTEXT_ERROR", "prompt 0 is empty")
    fails(lambda: engine.generate([[10**6]]), "TINYLLM_INVALID_ARGUMENT", "outside the vocabulary")
    fails(
        lambda: engine.generate(["ok"], adapters=["sentiment"]),
        "TINYLLM_NOT_FOUND",
        "no LoRA adapter",
    )
    tok = NativeTokenizer(lib, llama_engines / "tokenizer")
    fails(lambda: tok.encode_bytes(b"\xe4\xb8"), "TINYLLM_TOKENIZER_ERROR", "not valid UTF-8")
    fails(lambda: tok.decode([-1]), "TINYLLM_TOKENIZER_ERROR", "negative")
    assert engine.generate(["ok"])[0].prompt_tokens > 0  # still usable after the errors


def test_missing_onnxruntime_is_a_runtime_error(
    lib: ctypes.CDLL, llama_engines: Path, tmp_path: Path
) -> None:
    """ONNX Runtime is loaded once per process, so this runs in a fresh one."""
    code = (
        "import sys\n"
        "from tinyllm.runtime.native import NativeEngine, NativeError, load_library\n"
        "try:\n"
        f"    NativeEngine(load_library(), {str(llama_engines)!r})\n"
        "except NativeError as e:\n"
        "    print(e.status, e)\n"
    )
    env = {"TINYLLM_ORT_LIBRARY": str(tmp_path / "libonnxruntime.so.1"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("TINYLLM_RUNTIME_ERROR")
    assert (
        "cannot load the ONNX Runtime library" in out.stdout and "TINYLLM_ORT_LIBRARY" in out.stdout
    )

"""The C++ runtime's benchmarks: cpp_task_parity.py (Python and C++ answers agree) and
cpp_process.py (a process of each answering one request)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinyllm.runtime import native


def test_cpp_task_parity_benchmark_end_to_end(
    bench: Path,
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    native_problem: Callable[[Callable[[], object]], str],
) -> None:
    """cpp_task_parity.py's main: Python and C++ answers of a tiny two-task bundle agree;
    a C++ side that answers differently is counted as a mismatch (the comparison can
    fail)."""
    import tinyllm

    if problem := native_problem(native.library_path):
        pytest.skip(f"the C++ runtime is not built: {problem}")
    import cpp_task_parity

    from tinyllm.runtime.nativetasks import NativeTasks

    suite = tinyllm.api.load_tasks()
    tasks = [suite.task(n) for n in ("sentiment", "intent")]
    child = tinyllm.api.add_tasks(tiny_llama_bundle, tmp_path / "t.tllm", tasks, {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=256)
    out = tmp_path / "parity.json"
    cpp_task_parity.main([str(bundle.path), "--inputs", "3", "--threads", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert set(r["tasks"]) == {"sentiment", "intent"}
    for row in r["tasks"].values():
        assert row == {"requests": 3, "tokens": 3, "values": 3, "mismatch": None}

    real_run = NativeTasks.run

    def shifted(self: NativeTasks, requests: Any, *a: Any, **kw: Any) -> Any:
        import dataclasses

        outs = real_run(self, requests, *a, **kw)
        return [dataclasses.replace(o, token_ids=(*o.token_ids, 0), value="x") for o in outs]

    monkeypatch.setattr(NativeTasks, "run", shifted)
    r = cpp_task_parity.compare(bundle.path, None, 2, 1)
    for row in r["tasks"].values():
        assert (row["tokens"], row["values"]) == (0, 0) and row["mismatch"]["cpp"] is not None


def test_cpp_process_benchmark_end_to_end(
    bench: Path,
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    native_problem: Callable[[Callable[[], object]], str],
) -> None:
    """cpp_process.py's main: tinyllm-run and a Python process answer the same request;
    times and peak RSS are reported per side; runtimes that answer differently are an
    error."""
    import argparse

    import tinyllm

    if problem := native_problem(lambda: native.tool_path("tinyllm-run")):
        pytest.skip(f"the C++ runtime is not built: {problem}")
    import cpp_process

    suite = tinyllm.api.load_tasks()
    intent = [suite.task("intent")]
    child = tinyllm.api.add_tasks(tiny_llama_bundle, tmp_path / "t.tllm", intent, {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=512)
    out = tmp_path / "cpp-process.json"
    argv = [str(bundle.path), "--task", "intent", "--text", "wake me at 7", "--rounds", "1"]
    argv += ["--threads", "1", "--max-batch", "2", "--max-seq-len", "512", "--json", str(out)]
    cpp_process.main(argv)
    r = json.loads(out.read_text())
    assert r["answer"]
    for side in ("python", "cpp"):
        assert r["sides"][side]["seconds"]["median"] > 0
        assert r["sides"][side]["rss_mib"]["median"] > 10
    assert r["cpp_over_python"]["rss_mib"]["median"] > 0

    real = cpp_process.commands

    def other_answer(a: argparse.Namespace) -> dict[str, list[str]]:
        cmds = real(a)
        cmds["python"] = [sys.executable, "-c", "print('something else')"]
        return cmds

    monkeypatch.setattr(cpp_process, "commands", other_answer)
    with pytest.raises(RuntimeError, match="answered differently"):
        cpp_process.main(argv)

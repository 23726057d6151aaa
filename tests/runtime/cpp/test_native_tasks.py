"""Task requests through libtinyllm answer as the Python runtime does: the same prompt ids
and task prefix for every built-in task, the same tokens, text, parsed value, valid flag
and finish reason under the label trie and the JSON constraint, with adapters."""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

import pytest

import tinyllm
from tinyllm.runtime import Engine
from tinyllm.runtime.native import NativeEngine, NativeError
from tinyllm.runtime.nativetasks import NativeTasks

ODD = ["", " ", "x", "é😀 混合 text", "line one\nline two", "  padded  ", "tab\there", "\u200f rtl"]


@pytest.fixture(scope="module")
def suite_sample() -> dict[str, list[str]]:
    """60 inputs of each built-in task (validation and test splits), seeded."""
    from tinyllm.suite import load_split

    tinyllm.api.prepare_data()
    suite = tinyllm.api.load_tasks()
    rng = random.Random(0)
    sample = {}
    for task in suite.tasks:
        inputs = [ex.input for s in ("validation", "test") for ex in load_split(suite, task, s)]
        sample[task.name] = rng.sample(inputs, min(60, len(inputs)))
    return sample


@pytest.fixture(scope="module")
def all_tasks(tiny_llama_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama serving every built-in task (no adapters), exported with its task table."""
    folder = tmp_path_factory.mktemp("alltasks")
    suite = tinyllm.api.load_tasks()
    child = tinyllm.api.add_tasks(tiny_llama_bundle, folder / "tasks.tllm", list(suite.tasks), {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", folder / "all.tllm", max_seq_len=256)
    return bundle.path


def test_prompt_ids_equal_the_python_router(
    lib: ctypes.CDLL, all_tasks: Path, suite_sample: dict[str, list[str]]
) -> None:
    python = Engine.load(all_tasks)
    native = NativeEngine(lib, all_tasks)
    tasks = NativeTasks(native)
    assert tasks.names() == sorted(suite_sample)
    checked = 0
    for name, inputs in suite_sample.items():
        for text in inputs + ODD:
            route = python._route(name, text, None, None)
            ids, prefix = tasks.prompt(name, text)
            assert ids == route.prompt, (name, text)
            assert prefix == route.prefix_len > 0, (name, text)
            checked += 1
    assert checked == sum(len(v) + len(ODD) for v in suite_sample.values())
    with pytest.raises(NativeError, match='TINYLLM_NOT_FOUND: unknown task "nope"'):
        tasks.prompt("nope", "x")
    native.close()
    python.close()


def same_outputs(native: list, python: list) -> None:
    assert [o.token_ids for o in native] == [tuple(o.token_ids) for o in python]
    assert [o.text for o in native] == [o.text for o in python]
    assert [o.finish_reason for o in native] == [o.finish_reason for o in python]
    assert [o.valid for o in native] == [o.valid for o in python]
    assert [o.value for o in native] == [o.value for o in python]
    assert [o.error is None for o in native] == [o.error is None for o in python]


def test_task_outputs_equal_the_python_runtime(
    lib: ctypes.CDLL, served: Path, suite_sample: dict[str, list[str]]
) -> None:
    """Label (trie, adapter), JSON (constraint, adapter) and text tasks, in one batch."""
    python = Engine.load(served, max_batch=4)
    native = NativeEngine(lib, served, max_batch=4)
    tasks = NativeTasks(native)
    requests = [(t, x) for t in ("sentiment", "booking", "rewrite") for x in suite_sample[t][:8]]
    requests += [("sentiment", x) for x in ODD[1:]]
    random.Random(1).shuffle(requests)
    want = [python.run(t, x) for t, x in requests]
    got = tasks.run(requests)
    same_outputs(got, want)
    assert {o.valid for o in got} == {True, False}  # random weights: both kinds occur
    assert all(
        o.value in ("negative", "neutral", "positive")
        for o, (t, _) in zip(got, requests, strict=True)
        if t == "sentiment"
    )
    native.close()
    python.close()


def test_unconstrained_outputs_equal_the_python_runtime(
    lib: ctypes.CDLL, served: Path, suite_sample: dict[str, list[str]]
) -> None:
    python = Engine.load(served, max_batch=4, constrain=False)
    native = NativeEngine(lib, served, max_batch=4)
    requests = [(t, x) for t in ("sentiment", "booking") for x in suite_sample[t][:4]]
    same_outputs(
        NativeTasks(native).run(requests, constrain=False), [python.run(t, x) for t, x in requests]
    )
    native.close()
    python.close()


def test_task_errors(lib: ctypes.CDLL, served: Path) -> None:
    native = NativeEngine(lib, served, max_batch=2, max_seq_len=64)
    tasks = NativeTasks(native)
    with pytest.raises(NativeError) as e:
        tasks.run([("nope", "x")])
    assert e.value.status == "TINYLLM_NOT_FOUND" and "serves: booking, rewrite, sentiment" in str(
        e.value
    )
    with pytest.raises(NativeError) as e:
        tasks.run([("sentiment", "word " * 100)])
    assert e.value.status == "TINYLLM_CONTEXT_ERROR" and "context is 64 tokens" in str(e.value)
    with pytest.raises(NativeError) as e:
        tasks.run([("sentiment", "x")], max_new_tokens=-1)
    assert e.value.status == "TINYLLM_INVALID_ARGUMENT"
    native.close()


def test_an_engine_with_a_merged_adapter_serves_its_task_alone(
    lib: ctypes.CDLL, served: Path, tmp_path: Path, suite_sample: dict[str, list[str]]
) -> None:
    """``--merge-adapter sentiment``: libtinyllm serves sentiment with Python's answers (the
    adapter is in the weights, slot 0) and refuses booking's task and adapter."""
    from tinyllm.runtime.sampling import GenerationConfig

    name = "onnx-cpu-fp32-sentiment"
    bundle, _ = tinyllm.export(
        served, "onnx-cpu", tmp_path / "m.tllm", max_seq_len=256, merge_adapter="sentiment"
    )
    python = Engine.load(bundle.path, engine=name, max_batch=4)
    native = NativeEngine(lib, bundle.path, engine=name, max_batch=4)
    tasks = NativeTasks(native)
    assert tasks.names() == ["sentiment"]
    requests = [("sentiment", x) for x in suite_sample["sentiment"][:6]]
    same_outputs(tasks.run(requests), [python.run(t, x) for t, x in requests])
    with pytest.raises(NativeError) as e:
        tasks.run([("booking", "x")])
    assert e.value.status == "TINYLLM_NOT_FOUND" and "serves: sentiment" in str(e.value)
    greedy = GenerationConfig(max_new_tokens=6, ignore_eos=True)
    want = python.generate_ids([[5, 6, 7]], greedy, adapter="sentiment")[0].token_ids
    assert list(native.generate([[5, 6, 7]], greedy, ["sentiment"])[0].token_ids) == want
    with pytest.raises(NativeError) as e:
        native.generate([[5, 6, 7]], greedy, ["booking"])
    assert "merged into its weights and serves only that task" in str(e.value)
    native.close()
    python.close()

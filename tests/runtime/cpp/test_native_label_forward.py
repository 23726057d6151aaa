"""libtinyllm writes a label's tail that the trie forces without a model run, as the Python
loop does (runtime/serving.py ``_finish_label``): the same outputs as the Python engine,
the same ``label_forwarded`` count, and one decode run fewer per forwarded token; a batch
stops computing a row once it is done."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

import tinyllm
from tinyllm.runtime import Engine
from tinyllm.runtime.native import NativeEngine, NativeError
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetasks import NativeTasks
from tinyllm.runtime.nativetrace import RunTracer

INPUTS = [
    "Wake me at 6 tomorrow",
    "How much is in my savings account?",
    "Send 40 euros to Maria",
    "Will it rain in Oslo on Sunday?",
    "Play something by Nina Simone",
    "Get me a room in Lisbon for two nights",
]


@pytest.fixture(scope="module")
def intents(tiny_qwen2_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 serving the built-in intent task (12 labels, several tokens each), and
    sentiment and rewrite (rows of other lengths, for a batch)."""
    folder = tmp_path_factory.mktemp("intents")
    suite = tinyllm.api.load_tasks()
    specs = [suite.task(n) for n in ("intent", "sentiment", "rewrite")]
    child = tinyllm.api.add_tasks(tiny_qwen2_bundle, folder / "t.tllm", specs, {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", folder / "intent.tllm", max_seq_len=256)
    return bundle.path


def python_runs(bundle: Path, forward: bool) -> tuple[list, dict]:
    """Python's answers, one request at a time, and its stats; ``forward`` False: every
    label token from a model run (the reference)."""
    engine = Engine.load(bundle, max_batch=1)
    if not forward:
        engine._serving()._finish_label = lambda live: None  # type: ignore[method-assign]
    outputs = [engine.run("intent", x) for x in INPUTS]
    stats = engine.stats()
    engine.close()
    return outputs, stats


def test_forced_label_tails_skip_their_runs_as_in_python(lib: ctypes.CDLL, intents: Path) -> None:
    want, py_stats = python_runs(intents, forward=True)
    _, ref_stats = python_runs(intents, forward=False)
    forwarded = py_stats["speculation"]["label_forwarded"]
    assert forwarded > 0 and ref_stats["decode_runs"] - py_stats["decode_runs"] == forwarded

    native = NativeEngine(lib, intents, max_batch=1)
    tasks = NativeTasks(native)
    assert tasks.speculation()["label_forwarded"] == 0
    got = [tasks.run([("intent", x)])[0] for x in INPUTS]  # tinyllm_run_tasks, one at a time
    assert [o.token_ids for o in got] == [tuple(o.token_ids) for o in want]
    assert [o.value for o in got] == [o.value for o in want] and all(o.valid for o in got)
    assert tasks.speculation()["label_forwarded"] == forwarded
    # one decode run a token the model picked, as Python's: `forwarded` fewer than the reference
    assert native.stats().decode_steps == py_stats["decode_runs"]

    server = NativeServer(native)  # the serving loop, one request at a time
    before = native.stats()
    try:
        served = [server.submit("intent", x).wait() for x in INPUTS]
    finally:
        server.close()
    assert [o.token_ids for o in served] == [o.token_ids for o in got]
    assert tasks.speculation()["label_forwarded"] == 2 * forwarded
    assert native.stats().since(before).decode_steps == py_stats["decode_runs"]
    with pytest.raises(NativeError, match=r"INVALID_ARGUMENT: stats\.struct_size is 8"):
        tasks.speculation(struct_size=8)
    native.close()


def test_a_batch_computes_only_the_rows_still_generating(lib: ctypes.CDLL, intents: Path) -> None:
    """Each row alone needs some decode runs; together, run s spans the rows (lowest to
    highest) that need at least s, so finished rows at the ends are not computed."""
    requests = [(t, x) for x in INPUTS[:2] for t in ("intent", "sentiment", "rewrite")]
    native = NativeEngine(lib, intents, max_batch=len(requests))
    tasks = NativeTasks(native)
    needs, alone = [], []
    for request in requests:
        before = native.stats()
        alone.append(tasks.run([request], max_new_tokens=6)[0])
        needs.append(native.stats().since(before).decode_steps)
    assert len(set(needs)) > 1  # rows finish at different steps (else nothing to check)
    tracer = RunTracer(native)
    tracer.start()
    together = tasks.run(requests, max_new_tokens=6)
    runs, _ = tracer.take()
    native.close()
    assert [o.token_ids for o in together] == [o.token_ids for o in alone]
    decodes = [(r.first_row, r.rows) for r in runs if r.kind == "decode"]
    spans = []
    for step in range(1, max(needs) + 1):
        rows = [i for i, n in enumerate(needs) if n >= step]
        spans.append((rows[0], rows[-1] - rows[0] + 1))
    assert decodes == spans

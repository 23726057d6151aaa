"""Tasks with tools in the C++ runtime answer as the Python runtime does: the same tiny
tool bundle served by both gives the same calls (constrained to the tools' schemas),
results and answers, with Python tool functions registered as C callbacks through
ctypes; a missing callback, a failing tool, schema-invalid arguments, a cut call, a
callback past its time limit and a table without tools are clear errors."""

from __future__ import annotations

import ctypes
import json
import re
from pathlib import Path

import pytest
from tooltasks import EXPRESSIONS, TIME, TOOL_TASKS, bundle_tools

from tinyllm.runtime import Engine
from tinyllm.runtime.native import NativeEngine, NativeError
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetasks import NativeTaskOutput, NativeTasks
from tinyllm.tasktable import TaskTable
from tinyllm.toolbox import calculator

INPUTS = ["What is 2 plus 3?", "hello", "7 over 2", "Solve 2*x = 4 for x."]


def _native(lib: ctypes.CDLL, bundle: Path, **options: int) -> tuple[NativeEngine, NativeTasks]:
    engine = NativeEngine(lib, bundle, **options)
    tasks = NativeTasks(engine)
    for tool in bundle_tools():
        if tool.name != "n_nocb":
            tasks.register_tool(tool)
    return engine, tasks


def same_answers(native: list[NativeTaskOutput], python: list) -> None:  # type: ignore[type-arg]
    for got, want in zip(native, python, strict=True):
        assert got.token_ids == tuple(want.token_ids)
        assert (got.text, got.valid, got.value, got.error) == (
            want.text,
            want.valid,
            want.value,
            want.error,
        )
        assert got.finish_reason == want.finish_reason
        assert got.tool_call is not None and want.tool_call is not None
        a, b = got.tool_call, want.tool_call
        assert (a.name, a.arguments, a.result, a.error) == (b.name, b.arguments, b.result, b.error)


def test_the_task_table_carries_the_tools(tool_bundle: Path) -> None:
    folder = next((tool_bundle / "engines").iterdir())
    table = TaskTable.read(folder)
    assert table is not None
    tools = table.tasks["two"].tools
    assert tools is not None and tools["names"] == ["n_short", "n_fixed"]
    assert tools["schemas"]["n_fixed"]["properties"]["expression"]["enum"] == EXPRESSIONS
    assert tools["timeouts"] == {"n_short": 5.0, "n_fixed": 5.0} and tools["result"] == "answer"
    assert table.tasks["slow"].tools["timeouts"] == {"n_slow": 0.2}  # type: ignore[index]
    assert table.tasks["calc_ctx"].tools["result"] == "context"  # type: ignore[index]


def test_calls_and_answers_equal_the_python_runtime(lib: ctypes.CDLL, tool_bundle: Path) -> None:
    """Result as the answer and in context, one or two tools, a failing tool, free
    strings, a pattern, schema-invalid arguments: batched in run_tasks and through the server."""
    python = Engine.load(tool_bundle, max_batch=4)
    native, tasks = _native(lib, tool_bundle, max_batch=4)
    requests = [
        (t, x)
        for t in ("calc", "calc_ctx", "two", "broken", "free", "picky", "clock")
        for x in INPUTS
    ]
    want = [python.run(t, x) for t, x in requests]
    got = tasks.run(requests)
    same_answers(got, want)
    by_task = {
        t: [o for (name, _), o in zip(requests, got, strict=True) if name == t] for t in TOOL_TASKS
    }
    for out in by_task["calc"]:  # the tool's result is the answer
        call = out.tool_call
        assert call is not None and call.arguments["expression"] in EXPRESSIONS
        assert out.valid and out.text == call.result == out.value == calculator(
            call.arguments["expression"]
        )
    for out in by_task["calc_ctx"]:  # the model wrote its answer after the call and result
        assert out.tool_call is not None and out.tool_call.result is not None
        written = python.tokenizer.decode(list(out.token_ids))
        assert written.startswith('{"name": "n_fixed"')
    for out in by_task["broken"]:
        assert not out.valid and out.value is None and out.text == ""
        assert out.error == "tool n_broken: ValueError: the tool broke"
    for out in by_task["picky"]:  # the constraint keeps the enum; the pattern is checked after
        assert out.error == "tool n_picky: bad arguments: 'expression' does not match '^Z'"
    for out in by_task["clock"]:  # the pattern holds the random model to a time
        call = out.tool_call
        assert (
            call is not None and call.error is None and re.fullmatch(TIME, call.arguments["when"])
        )
    assert {o.tool_call.name for o in by_task["two"]} <= {"n_short", "n_fixed"}  # type: ignore[union-attr]
    server = NativeServer(native)
    served = [server.submit(t, x) for t, x in requests]
    same_answers([r.wait() for r in served], want)
    stats = server.stats()
    assert stats["completed"] == len(requests) and stats["invalid"] == sum(
        not o.valid for o in want
    )
    server.close()
    native.close()
    python.close()


def test_cut_and_unconstrained_calls_are_refused_with_the_reason(
    lib: ctypes.CDLL, tool_bundle: Path
) -> None:
    python = Engine.load(tool_bundle, max_batch=2)
    native, tasks = _native(lib, tool_bundle, max_batch=2)
    want = [python.run("free", x, max_new_tokens=10) for x in INPUTS[:2]]
    got = tasks.run([("free", x) for x in INPUTS[:2]], max_new_tokens=10)
    same_answers(got, want)
    assert all(
        o.error == "the call was cut at 10 tokens before it was complete; raise the task's "
        "tools.max_call_tokens"
        for o in got
    )
    python.close()
    free = Engine.load(tool_bundle, max_batch=2, constrain=False)
    want = [free.run("calc", x, max_new_tokens=12) for x in INPUTS[:2]]
    got = tasks.run([("calc", x) for x in INPUTS[:2]], max_new_tokens=12, constrain=False)
    free.close()
    for g, w in zip(got, want, strict=True):  # the random model writes no call on its own
        assert g.token_ids == tuple(w.token_ids) and not g.valid and not w.valid
        assert w.error is not None and w.error.startswith("the tool call is not valid JSON")
        assert g.error is not None and g.error.startswith("the tool call is not valid JSON")
    native.close()


def test_missing_callbacks_and_unknown_tools_are_clear_errors(
    lib: ctypes.CDLL, tool_bundle: Path
) -> None:
    native, tasks = _native(lib, tool_bundle, max_batch=2)
    server = NativeServer(native)
    for run in (
        lambda: tasks.run([("calc", "x"), ("nocb", "x")]),
        lambda: server.submit("nocb", "x"),
    ):
        with pytest.raises(NativeError) as e:
            run()
        assert e.value.status == "TINYLLM_NOT_FOUND"
        assert 'task "nocb" calls tool "n_nocb", which has no callback' in str(e.value)
    server.close()
    with pytest.raises(NativeError) as e:
        tasks.register_callback("nope", lambda arguments: (True, ""))
    assert e.value.status == "TINYLLM_NOT_FOUND" and 'calls a tool named "nope"' in str(e.value)
    tasks.register_callback("n_nocb", lambda arguments: (True, "7"))  # registered now: served
    out = tasks.run([("nocb", "x")])[0]
    assert out.valid and out.value == "7" and out.tool_call is not None
    native.close()


def test_a_callback_past_its_time_limit_fails_the_call(lib: ctypes.CDLL, tool_bundle: Path) -> None:
    """A C callback cannot be interrupted: it runs to its end (0.6 s), and its result,
    past the tool's 0.2 s limit, is dropped; a served request's deadline passes during it."""
    native, tasks = _native(lib, tool_bundle, max_batch=2)
    out = tasks.run([("slow", "What is 2 plus 3?")])[0]
    call = out.tool_call
    assert call is not None and call.result is None and call.seconds >= 0.6 and not out.valid
    assert str(out.error).startswith("tool n_slow: no result within 0.2 s (the callback ran ")
    assert "cannot be interrupted" in str(out.error)
    server = NativeServer(native)
    with pytest.raises(NativeError) as e:
        server.submit("slow", "What is 2 plus 3?", deadline_s=0.5).wait()
    assert e.value.status == "TINYLLM_DEADLINE_EXCEEDED" and "during its tool call" in str(e.value)
    server.close()
    native.close()


def test_a_table_written_before_tools_refuses_tool_tasks(
    lib: ctypes.CDLL, tool_bundle: Path, tmp_path: Path
) -> None:
    import hashlib
    import shutil

    old = tmp_path / "old.tllm"
    shutil.copytree(tool_bundle, old)
    folder = next((old / "engines").iterdir())
    table = json.loads((folder / "tasks.json").read_text())
    for entry in table["tasks"].values():
        del entry["tools"]
    data = (json.dumps(table, indent=2) + "\n").encode()
    (folder / "tasks.json").write_bytes(data)
    manifest = json.loads((old / "manifest.json").read_text())
    name = f"engines/{folder.name}/tasks.json"
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (old / "manifest.json").write_text(json.dumps(manifest, indent=2))
    native = NativeEngine(lib, old, max_batch=2)
    with pytest.raises(NativeError) as e:
        NativeTasks(native).run([("calc", "x")])
    assert e.value.status == "TINYLLM_UNSUPPORTED" and "re-export the engine" in str(e.value)
    native.close()


def test_raw_calls_are_the_answer_unexecuted_as_in_python(
    lib: ctypes.CDLL, tool_bundle: Path
) -> None:
    """``execute_tools=False`` (raw_tool_calls): the call, checked against its schema, is
    the answer; no callback runs, none need be registered; batched and served."""
    python = Engine.load(tool_bundle, max_batch=4)
    requests = [(t, x) for t in ("calc", "calc_ctx", "two", "picky", "nocb") for x in INPUTS]
    want = [python.run(t, x, execute_tools=False) for t, x in requests]
    cut = [python.run("free", x, max_new_tokens=10, execute_tools=False) for x in INPUTS[:2]]
    python.close()
    native = NativeEngine(lib, tool_bundle, max_batch=4)  # no callbacks
    tasks = NativeTasks(native)
    got = tasks.run(requests, execute_tools=False)
    for g, w in zip(got, want, strict=True):
        assert g.token_ids == tuple(w.token_ids) and (g.text, g.valid) == (w.text, w.valid)
        assert g.value == w.value and g.tool_call is not None and g.tool_call.result is None
    valid = [g for g in got if g.valid]
    assert valid and all(
        g.value == {"name": g.tool_call.name, "arguments": g.tool_call.arguments}  # type: ignore[union-attr]
        and str(g.tool_call.error).startswith("not run")  # type: ignore[union-attr]
        for g in valid
    )
    picky = [g for (t, _), g in zip(requests, got, strict=True) if t == "picky"]
    assert all(
        g.error == "tool n_picky: bad arguments: 'expression' does not match '^Z'" for g in picky
    )
    short = tasks.run([("free", x) for x in INPUTS[:2]], max_new_tokens=10, execute_tools=False)
    assert [(g.token_ids, g.valid) for g in short] == [(tuple(w.token_ids), False) for w in cut]
    with pytest.raises(NativeError, match="raw_tool_calls"):  # executing needs the callbacks
        tasks.run(requests[:1])

    server = NativeServer(native)
    pieces: list[list[str]] = [[] for _ in requests]

    def sink(i: int):  # type: ignore[no-untyped-def]
        return lambda piece: pieces[i].append(piece) is None  # True: go on

    served = [
        server.submit(t, x, execute_tools=False, on_text=sink(i))
        for i, (t, x) in enumerate(requests)
    ]
    answers = [r.wait() for r in served]
    stats = server.stats()
    server.close()
    assert [(a.token_ids, a.value, a.error) for a in answers] == [
        (g.token_ids, g.value, g.error) for g in got
    ]
    assert ["".join(p) for p in pieces] == [a.text for a in answers]  # the call is streamed
    assert stats["completed"] == len(requests) and stats["invalid"] == sum(not g.valid for g in got)
    native.close()


def test_task_options_from_an_earlier_header_are_read_as_theirs(
    lib: ctypes.CDLL, tool_bundle: Path
) -> None:
    """A struct_size that ends before raw_tool_calls gets the fields it has (the call is
    executed, so the missing callback is refused); any other size is refused."""
    from tinyllm.runtime.nativetasks import _TaskOptions, _TaskRequest

    native = NativeEngine(lib, tool_bundle, max_batch=1)
    NativeTasks(native)  # declares the task functions
    request = _TaskRequest(b"calc", b"x", 1)
    for size, status, message in (
        (_TaskOptions.raw_tool_calls.offset, "TINYLLM_NOT_FOUND", "has no callback"),
        (8, "TINYLLM_INVALID_ARGUMENT", "options.struct_size is 8"),
    ):
        options = _TaskOptions()
        lib.tinyllm_task_options_init(ctypes.byref(options))
        options.struct_size, options.raw_tool_calls = size, 1
        results = ctypes.c_void_p()
        rc = lib.tinyllm_run_tasks(
            native.handle, ctypes.byref(request), 1, ctypes.byref(options), ctypes.byref(results)
        )
        assert lib.tinyllm_status_name(rc).decode() == status
        assert message in lib.tinyllm_last_error().decode()
    native.close()

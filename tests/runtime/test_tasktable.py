"""The task table: prompts from tasks.json equal the chat template's, on every built-in task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tinyllm
from tinyllm.chat import ChatTokenizer
from tinyllm.errors import BundleError
from tinyllm.evaluation import conversation
from tinyllm.runtime import Engine
from tinyllm.suite import load_split, prepare
from tinyllm.tasks import TaskSpec
from tinyllm.tasktable import TaskTable, build_table, common_prefix

ODD = ["", " ", "\n\nx", "{input}", "<|im_end|>", "naïve café 😀", "  lead", "trail  \n"]


def inputs(task: TaskSpec, n: int = 50) -> list[str]:
    """The first ``n`` test inputs of a built-in task, plus awkward strings."""
    prepare(task)
    return [ex.input for ex in load_split(tinyllm.api.load_tasks(), task, "test", n)] + ODD


def check_table(tok: ChatTokenizer) -> int:
    """Assert every built-in task's table prompt ids equal the template's; returns checks."""
    specs = {t.name: t for t in tinyllm.api.load_tasks().select(None)}
    table = build_table(specs, [], True, tok, [0])
    checked = 0
    for name, spec in specs.items():
        entry = table.tasks[name]
        assert entry.exact and entry.prefix_ids, name
        for text in inputs(spec):
            expected = tok.encode(tok.apply_chat_template(conversation(spec, text, [])))
            got = tok.encode(entry.render(text))
            assert got == expected, (name, text)
            # The cached prefix is a prefix of every prompt (BPE merges stay inside it).
            assert common_prefix(got, entry.prefix_ids) == len(entry.prefix_ids), (name, text)
            checked += 1
    return checked


def test_table_prompts_equal_the_chat_template_tiny(tiny_llama_bundle: Path) -> None:
    tok = ChatTokenizer(tinyllm.open_bundle(tiny_llama_bundle).tokenizer_dir)
    assert check_table(tok) == 6 * (50 + len(ODD))


@pytest.mark.slow
def test_table_prompts_equal_the_chat_template_smollm2(smollm2_bundle: Path) -> None:
    # The imported bundle's tokenizer folder is the GGUF's tokenizer, saved by transformers.
    assert check_table(ChatTokenizer(smollm2_bundle / "tokenizer")) == 6 * (50 + len(ODD))


def test_export_writes_the_table_and_the_router_uses_it(served: Path, tmp_path: Path) -> None:
    folder = served / "engines" / "onnx-cpu-fp32"
    data = json.loads((folder / "tasks.json").read_text())
    assert sorted(data["tasks"]) == ["booking", "rewrite", "sentiment"]
    sentiment = data["tasks"]["sentiment"]
    assert sentiment["prompt"].count("{input}") == 1 and sentiment["output"] == "label"
    assert sorted(t["slot"] for t in data["tasks"].values()) == [0, 1, 2]  # rewrite: no adapter
    assert data["tasks"]["rewrite"]["slot"] == 0 and data["tasks"]["booking"]["json_root"] == "{"
    assert len(sentiment["label_ids"]) == len(sentiment["labels"]) > 0
    # The router takes the table's text: a doctored table changes the prompt it builds.
    engine = Engine.load(served)
    assert engine.table is not None
    slots = engine._serving().router.slots  # the engine fills slots as the table says
    assert slots == {name: task["slot"] for name, task in data["tasks"].items()}
    route = engine._serving().router.route("sentiment", "fine", None, None)
    assert route.prompt == engine.tokenizer.encode(engine.table.tasks["sentiment"].render("fine"))
    assert route.prefix_len == len(engine.table.tasks["sentiment"].prefix_ids) > 0
    engine.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    doctored = json.loads(json.dumps(data))
    doctored["tasks"]["sentiment"]["before"] = "SAY NOTHING "
    (copy / "tasks.json").write_text(json.dumps(doctored))
    table = TaskTable.read(copy)
    assert (
        table is not None
        and table.tasks["sentiment"].render("x") == "SAY NOTHING x" + (sentiment["after"])
    )


def test_a_changed_spec_is_rendered_not_read_from_a_stale_table(served: Path) -> None:
    import dataclasses

    engine = Engine.load(served)
    spec = engine.tasks["rewrite"]
    changed = dataclasses.replace(spec, instruction="Rewrite it in French.")
    assert engine.table is not None and engine.table.entry(spec) is not None
    assert engine.table.entry(changed) is None  # the table was built from the old spec
    engine.remove_task("rewrite")
    engine.add_task(changed)
    prompt = engine._serving().router.route("rewrite", "hi", None, None).prompt
    tok = engine.tokenizer
    assert prompt == tok.encode(tok.apply_chat_template(conversation(changed, "hi", [])))
    engine.close()


def test_add_tasks_rewrites_the_table_of_exported_engines(
    tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    exported, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    table = TaskTable.read(exported.path / "engines" / "onnx-cpu-fp32")
    assert table is not None and table.tasks == {}
    intent = tinyllm.api.load_tasks().task("intent")
    child = tinyllm.api.add_tasks(exported.path, tmp_path / "c.tllm", [intent])
    table = TaskTable.read(child.path / "engines" / "onnx-cpu-fp32")
    assert table is not None and list(table.tasks) == ["intent"]
    parent_table = TaskTable.read(exported.path / "engines" / "onnx-cpu-fp32")
    assert parent_table is not None and parent_table.tasks == {}  # the parent is untouched


def test_bad_tables_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "tasks.json").write_text(json.dumps({"schema": 99, "tasks": {}, "stop_ids": []}))
    with pytest.raises(BundleError, match=r"task table schema 99.*re-export"):
        TaskTable.read(tmp_path)
    (tmp_path / "tasks.json").write_text(json.dumps({"schema": 1, "tasks": {"a": {"x": 1}}}))
    with pytest.raises(BundleError, match="not a valid task table"):
        TaskTable.read(tmp_path)
    (tmp_path / "tasks.json").write_text("{not json")
    with pytest.raises(BundleError, match="not a valid task table"):
        TaskTable.read(tmp_path)
    assert TaskTable.read(tmp_path / "missing") is None  # an engine exported before tables


def test_a_tool_tasks_entry_carries_its_tools_schemas_for_the_cpp_runtime() -> None:
    import dataclasses

    from tinyllm.tasks import ToolUse
    from tinyllm.tasktable import tool_entry
    from tinyllm.toolbox import get_tool

    arithmetic = tinyllm.api.load_tasks().task("arithmetic")
    spec = dataclasses.replace(
        arithmetic, tools=ToolUse(["calculator", "not_registered"], "context", 40)
    )
    calculator = get_tool("calculator")
    assert tool_entry(spec) == {
        "names": ["calculator", "not_registered"],
        "result": "context",
        "max_call_tokens": 40,
        # a tool the exporting process has not registered has no schema: C++ refuses it
        "schemas": {"calculator": calculator.parameters},
        "timeouts": {"calculator": calculator.timeout_s},
    }
    assert tool_entry(dataclasses.replace(arithmetic, tools=None)) is None

"""`tinyllm distill` end to end on a tiny model: bundle, report, curriculum, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from callsuite import sums_suite_at, sums_targets, sums_task

import tinyllm
from tinyllm.api import distill
from tinyllm.cli import main
from tinyllm.errors import ConfigError, TaskError
from tinyllm.tasks import write_examples


def test_cli_quick_writes_adapters_and_prints_the_report(
    tiny_llama_bundle: Path, color_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "student.tllm"
    report_json = tmp_path / "report.json"
    args = ["distill", str(color_suite), "--student", str(tiny_llama_bundle), "-o", str(out)]
    main([*args, "--quick", "--steps", "3", "--eval-limit", "4", "--json", str(report_json)])
    printed = capsys.readouterr().out
    assert "zero-shot" in printed and "color" in printed and "shade" in printed
    bundle = tinyllm.open_bundle(out)
    assert set(bundle.manifest.adapters) == {"color", "shade"}
    assert bundle.manifest.lora_mode == "separate"
    assert set(bundle.task_specs()) == {"color", "shade"}
    data = json.loads(report_json.read_text())
    rows = {r["task"]: r for r in data["rows"]}
    assert rows["color"]["teacher"] == 1.0  # oracle: the references score themselves
    assert rows["color"]["steps"] == 3 and rows["color"]["train_examples"] == 48


def test_curriculum_reports_decisions_and_early_stops(
    tiny_llama_bundle: Path, color_suite: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    report = distill(
        color_suite,
        student=tiny_llama_bundle,
        out=tmp_path / "mt.tllm",
        curriculum=True,
        quick=True,
        steps=4,
        eval_limit=2,
        progress=False,
        log=lines.append,
    )
    stages = {d["task"]: d["stage"] for d in report.decisions}
    assert stages == {"color": "low-resource", "shade": "low-resource"}  # 48 < 1000
    assert all("48 train examples < 1000" in d["reason"] for d in report.decisions)
    assert any(line.startswith("curriculum stage 1: color") for line in lines)
    assert set(tinyllm.open_bundle(tmp_path / "mt.tllm").manifest.adapters) == {"color", "shade"}
    assert sum(r.steps for r in report.rows) == 4  # one shared run, split between tasks


def test_bad_distill_inputs(tiny_llama_bundle: Path, color_suite: Path, tmp_path: Path) -> None:
    common = {"student": tiny_llama_bundle, "quick": True, "progress": False}
    with pytest.raises(ConfigError, match="unknown distillation method"):
        distill(color_suite, out=tmp_path / "a.tllm", method="dpo", **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="neither a bundle folder nor a preset"):
        distill(color_suite, out=tmp_path / "a.tllm", student="nope", quick=True)
    with pytest.raises(ConfigError, match="teacher"):
        distill(color_suite, out=tmp_path / "a.tllm", teacher="nonsense:x", **common)  # type: ignore[arg-type]
    write_examples(color_suite.parent / "train.jsonl", [])
    with pytest.raises(TaskError, match="no training examples"):
        distill(color_suite, out=tmp_path / "b.tllm", **common)  # type: ignore[arg-type]


def test_grpo_on_a_tool_task_spends_half_its_steps_learning_the_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses
    from types import SimpleNamespace

    import tinyllm.distill.grpo as grpo_module
    from tinyllm.distill.recipe import DistillOptions, trained_adapters
    from tinyllm.distill.sft import TrainConfig, TrainResult
    from tinyllm.tasks import ToolUse

    seen: list[tuple[str, int, int]] = []

    def fake(model, tokenizer, task, examples, config, grpo, progress=False):  # type: ignore[no-untyped-def]
        seen.append((task.name, config.steps, grpo.sft_steps))
        return "adapter", TrainResult([1.0])

    monkeypatch.setattr(grpo_module, "train_grpo_lora", fake)
    suite = tinyllm.api.load_tasks()
    plain = suite.task("arithmetic")
    tools = dataclasses.replace(plain, name="calls", tools=ToolUse(["calculator"], "answer"))
    options = DistillOptions(train=TrainConfig(steps=9))
    loaded = SimpleNamespace(model=None, tokenizer=None)
    data = {"arithmetic": [], "calls": []}
    trained_adapters(loaded, suite, [plain, tools], data, "grpo", "oracle", options, print, False)
    assert seen == [("arithmetic", 9, 0), ("calls", 5, 4)]
    # The same plan on the trl backend.
    import tinyllm.distill.trlgrpo as trlgrpo_module

    seen.clear()

    def fake_trl(model, tokenizer, task, examples, config, grpo, trl_options):  # type: ignore[no-untyped-def]
        seen.append((task.name, config.steps, grpo.sft_steps))
        return "adapter", TrainResult([1.0])

    monkeypatch.setattr(trlgrpo_module, "train_grpo_lora_trl", fake_trl)
    on_trl = dataclasses.replace(options, backend="trl")
    trained_adapters(loaded, suite, [plain, tools], data, "grpo", "oracle", on_trl, print, False)
    assert seen == [("arithmetic", 9, 0), ("calls", 5, 4)]


def test_bad_backend_choices(tiny_llama_bundle: Path, color_suite: Path, tmp_path: Path) -> None:
    common = {"student": tiny_llama_bundle, "quick": True, "progress": False}
    out = tmp_path / "a.tllm"
    with pytest.raises(ConfigError, match="unknown training backend 'jax'"):
        distill(color_suite, out=out, backend="jax", **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="the curriculum trains with method 'sft' or 'kd', not"):
        distill(color_suite, out=out, backend="trl", curriculum=True, method="grpo", **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="grad_accum, precision: options of --backend trl"):
        distill(color_suite, out=out, grad_accum=2, precision="bf16", **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="need a run_dir"):
        distill(color_suite, out=out, backend="trl", checkpoint_every=5, **common)  # type: ignore[arg-type]
    context = sums_suite_at(tmp_path, "context")
    with pytest.raises(ConfigError, match=r"context \(sums\) is built on our loop only"):
        distill(context, out=out, backend="trl", method="grpo", **common)  # type: ignore[arg-type]
    assert not out.exists()


def test_cli_kd_on_a_tool_task_from_a_local_teacher(
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tinyllm distill --method kd` on calls, with a local teacher sharing the tokenizer
    (tiny-qwen2: another model, the same tiny tokenizer); the evaluation runs the student's
    calls with the tool. The teacher's labels are the references here: a tiny random
    model's own answers would trace to no call."""
    import tinyllm.distill.recipe as recipe_module
    import tinyllm.toolcalling as toolcalling
    from tinyllm.suite import load_split

    suite = sums_suite_at(tmp_path, "context")
    teacher = tinyllm.import_model("tiny-qwen2", tmp_path / "teacher.tllm").path
    monkeypatch.setattr(
        recipe_module,
        "teacher_data",
        lambda suite, task, teacher, limit, out_dir, log: load_split(suite, task, "train", limit),
    )
    executed: list[str] = []
    real_execute = toolcalling.execute_call

    def execute(task, text):  # type: ignore[no-untyped-def]
        executed.append(text)
        return real_execute(task, text)

    monkeypatch.setattr(toolcalling, "execute_call", execute)
    out, report_json = tmp_path / "student.tllm", tmp_path / "report.json"
    args = ["distill", str(suite), "--student", str(tiny_llama_bundle), "-o", str(out)]
    args += ["--teacher", f"bundle:{teacher}", "--method", "kd", "--quick", "--steps", "2"]
    main([*args, "--eval-limit", "4", "--json", str(report_json)])
    logged = capsys.readouterr().err
    assert "sums: 4/4 examples traced to a tool call" in logged
    assert "shares the student's tokenizer: logit KD" in logged
    (row,) = json.loads(report_json.read_text())["rows"]
    assert row["steps"] == 2 and row["train_examples"] == 4
    assert "sums" in tinyllm.open_bundle(out).manifest.adapters
    assert len(executed) == 8  # the student's and the zero-shot base's calls, 4 each


def test_kd_on_calls_without_teacher_logits_is_sft_on_the_traced_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    import tinyllm.distill.sft as sft_module
    from tinyllm.distill.recipe import DistillOptions, trained_adapters
    from tinyllm.distill.sft import TrainResult

    seen: list[tuple[str, list[str]]] = []

    def fake(model, tokenizer, task, examples, config, progress=False, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((task.name, [e.output for e in examples]))
        return "adapter", TrainResult([1.0])

    monkeypatch.setattr(sft_module, "train_lora", fake)
    lines: list[str] = []
    targets = sums_targets("answer", 2)
    loaded = SimpleNamespace(model=None, tokenizer=None)
    trained_adapters(
        loaded, None, [sums_task("answer")], {"sums": targets}, "kd", "openai:gpt@http://x",
        DistillOptions(), lines.append, False,
    )  # fmt: skip
    assert "sequence-level KD (SFT on its outputs)" in lines[0]
    assert seen == [("sums", [e.output for e in targets])]
    assert seen[0][1][0] == '{"name": "calculator", "arguments": {"expression": "2 + 3"}}'

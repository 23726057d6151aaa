"""The tool pipeline loop: routing by log-likelihood, tool calls, retries, LLM fallback."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tinyllm import api
from tinyllm.distill.pipeline import ToolPipelineTeacher, builtin_pipeline
from tinyllm.distill.teacher_specs import teacher_from_spec
from tinyllm.distill.teachers import LocalTeacher
from tinyllm.distill.tools import BUILTIN_TOOLS, Tool
from tinyllm.errors import ConfigError

SUITE = api.load_tasks("builtin")
ARITHMETIC, DATES = SUITE.task("arithmetic"), SUITE.task("dates")


@pytest.fixture()
def tiny_llm(tiny_llama_bundle: Path) -> LocalTeacher:
    return LocalTeacher.from_bundle(tiny_llama_bundle)


def prefer(pipeline: ToolPipelineTeacher, ranking: list[str], monkeypatch: Any) -> None:
    """Make the LLM's log-likelihoods rank the options in this order."""

    def score(task: Any, inputs: Any, options: list[str]) -> list[list[float]]:
        return [[-float(ranking.index(o)) for o in options] for _ in inputs]

    monkeypatch.setattr(pipeline, "_score", score)
    monkeypatch.setattr(pipeline, "_prior", lambda task, options: dict.fromkeys(options, 0.0))


def test_scoring_is_a_log_likelihood_per_option(tiny_llm: LocalTeacher) -> None:
    pipeline = ToolPipelineTeacher(tiny_llm, BUILTIN_TOOLS)
    inputs = ["What is 2 plus 3?", "Solve 2*x + 7 = 8 + 4*x - 11 for x, please."]
    options = ["calculator", "none"]
    scores = pipeline._score(ARITHMETIC, inputs, options)  # batched, left-padded
    tok = tiny_llm.tokenizer
    firsts = [[tok(o, add_special_tokens=False)["input_ids"][0]] for o in options]
    for text, row in zip(inputs, scores, strict=True):
        prompt = tok.apply_chat_template(
            pipeline.routing_prompt(ARITHMETIC, text), tokenize=False, add_generation_prompt=True
        )
        assert row == pytest.approx(pipeline._sequence_scores(prompt, firsts), abs=1e-4)
        assert all(s < 0 for s in row)


def test_the_chosen_tool_answers(tiny_llm: LocalTeacher, monkeypatch: Any) -> None:
    pipeline = ToolPipelineTeacher(tiny_llm, BUILTIN_TOOLS)
    prefer(pipeline, ["calculator", "date_parser", "booking_extractor", "none"], monkeypatch)
    assert pipeline.label(ARITHMETIC, ["What is 2 plus 3?", "Solve 2*x = 8 for x."], k=4) == [
        ["5"],
        ["4"],
    ]
    assert [t.answered_by for t in pipeline.trace] == ["calculator", "calculator"]


def test_a_failing_tool_makes_the_llm_choose_again(
    tiny_llm: LocalTeacher, monkeypatch: Any
) -> None:
    pipeline = ToolPipelineTeacher(tiny_llm, BUILTIN_TOOLS, max_steps=2)
    prefer(pipeline, ["date_parser", "calculator", "booking_extractor", "none"], monkeypatch)
    assert pipeline.label(ARITHMETIC, ["What is 6 times 7?"]) == [["42"]]
    steps = pipeline.trace[0].steps
    assert [(s.option, s.ok) for s in steps] == [("date_parser", False), ("calculator", True)]
    assert "expected 'Reference time" in steps[0].error


def test_the_llm_answers_when_no_tool_fits(tiny_llm: LocalTeacher, monkeypatch: Any) -> None:
    wrong = Tool("shout", "answers in capitals", lambda text: text.upper())
    pipeline = ToolPipelineTeacher(tiny_llm, [wrong], max_steps=3)
    prefer(pipeline, ["shout", "none"], monkeypatch)
    got = pipeline.label(
        DATES,
        ["Reference time: 2025-01-01 10:00 (Wednesday). Expression: now"],
        k=3,
        temperature=1.0,
    )
    assert len(got[0]) == 3  # the tool's answer failed the verifier; the LLM sampled 3
    trace = pipeline.trace[0]
    assert trace.answered_by == "llm"
    assert [s.option for s in trace.steps] == ["shout", "none"]
    assert "answer rejected: iso_datetime" in trace.steps[0].error


def test_pipeline_configuration_errors(tiny_llm: LocalTeacher, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unique and not 'none'"):
        ToolPipelineTeacher(tiny_llm, [BUILTIN_TOOLS[0], BUILTIN_TOOLS[0]])
    with pytest.raises(ConfigError, match="max_steps"):
        ToolPipelineTeacher(tiny_llm, BUILTIN_TOOLS, max_steps=0)
    with pytest.raises(ConfigError, match="tinyllm import smollm2-135m"):
        builtin_pipeline(tmp_path / "missing.tllm")
    with pytest.raises(ConfigError, match="needs its LLM bundle"):
        teacher_from_spec(f"pipeline:builtin:{tmp_path / 'missing.tllm'}")


def test_pipeline_spec_with_a_bundle(tiny_llama_bundle: Path) -> None:
    teacher = teacher_from_spec(f"pipeline:builtin:{tiny_llama_bundle}", SUITE)
    assert isinstance(teacher, ToolPipelineTeacher)
    assert sorted(teacher.tools) == ["booking_extractor", "calculator", "date_parser"]


def test_choice_is_calibrated_by_a_content_free_prior(
    tiny_llm: LocalTeacher, monkeypatch: Any
) -> None:
    pipeline = ToolPipelineTeacher(tiny_llm, BUILTIN_TOOLS)

    def score(task: Any, inputs: list[str], options: list[str]) -> list[list[float]]:
        # "none" is likelier for every input, most of all for the content-free "N/A".
        table = {
            "N/A": {"calculator": -5.0, "none": -0.5},
            "a": {"calculator": -3.0, "none": -1.0},
            "b": {"calculator": -6.0, "none": -0.9},
        }
        return [[table[text][o] for o in options] for text in inputs]

    monkeypatch.setattr(pipeline, "_score", score)
    allowed = [{"calculator", "none"}] * 2
    assert pipeline.choose(ARITHMETIC, ["a", "b"], allowed) == ["calculator", "none"]
    assert pipeline.choose(ARITHMETIC, ["a"], [{"none"}]) == ["none"]


@pytest.mark.slow
def test_worked_example_runs_on_a_tiny_model(tiny_llama_bundle: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "tool_pipeline", Path(__file__).parents[2] / "examples" / "tool_pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    row = example.measure("dates", 3, str(tiny_llama_bundle))
    assert row["n"] == 3 and row["metric"] == "exact_match"
    # Only date_parser can pass the dates verifier, and it is exact there: every tool
    # answer is right, so the pipeline scores at least its share of tool answers.
    assert row["pipeline"] >= row["answered_by_tool"]
    assert sum(row["first_picks"].values()) == 3
    assert 0 <= row["right_first_pick"] <= 1

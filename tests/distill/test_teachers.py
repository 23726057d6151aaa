"""Teachers: the oracle, a local model (tiny bundle) and the CLI spec parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tinyllm.distill.labelling import label_task
from tinyllm.distill.teacher_specs import teacher_from_spec
from tinyllm.distill.teachers import (
    LocalTeacher,
    OracleTeacher,
    Teacher,
    TeacherError,
)
from tinyllm.errors import ConfigError
from tinyllm.tasks import Suite


def test_oracle_answers_with_reference_outputs(toy_suite: Suite) -> None:
    oracle = OracleTeacher(toy_suite)
    assert isinstance(oracle, Teacher)
    assert oracle.label(toy_suite.task("mood"), ["awful", "good"], k=4) == [
        ["negative"],
        ["positive"],
    ]
    with pytest.raises(TeacherError, match="not in its data \\(first: 'unseen'\\)"):
        oracle.label(toy_suite.task("mood"), ["unseen"])


def test_oracle_labels_everything_it_knows(toy_suite: Suite, tmp_path: Path) -> None:
    task = toy_suite.task("mood")
    stats = label_task(
        task,
        ["good", "bad", "nice"],
        teacher_from_spec("oracle", toy_suite),
        tmp_path / "out",
        k=2,
        progress=False,
    )
    assert (stats.accepted, stats.acceptance_rate, stats.teacher) == (3, 1.0, "oracle")


def test_local_teacher_samples_k_candidates(tiny_llama_bundle: Path, toy_suite: Suite) -> None:
    teacher = LocalTeacher.from_bundle(tiny_llama_bundle, suite=toy_suite, few_shot=2)
    assert teacher.name == "bundle:tiny-llama.tllm"
    task = toy_suite.task("mood")
    sampled = teacher.label(task, ["good", "bad", "so-so"], k=3, temperature=1.0)
    assert [len(c) for c in sampled] == [3, 3, 3]
    assert all(isinstance(a, str) for c in sampled for a in c)
    assert teacher.label(task, ["good", "bad", "so-so"], k=3, temperature=1.0) == sampled
    greedy = teacher.label(task, ["good", "bad"], k=3)
    assert [len(c) for c in greedy] == [1, 1]
    prompt = teacher.prompts(task, ["so-so"])[0]
    assert prompt.count("Answer positive or negative.") == 1 and "so-so" in prompt
    assert len(teacher.shots(task)) == 2


def test_local_teacher_logits_match_the_model(tiny_llama_bundle: Path) -> None:
    teacher = teacher_from_spec(f"bundle:{tiny_llama_bundle}")
    assert isinstance(teacher, LocalTeacher)
    ids = torch.tensor([[1, 5, 9, 3], [0, 0, 4, 7]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    logits = teacher.logits(ids, mask)
    vocab = teacher.model.config.vocab_size
    assert logits.shape == (2, 4, vocab) and logits.dtype == torch.float32
    with torch.no_grad():
        want = teacher.model(input_ids=ids[:1]).logits
    torch.testing.assert_close(logits[:1], want.float())


@pytest.mark.parametrize(
    "spec", ["", "bundle:", "openai:gpt-4o", "pipeline:", "pipeline:nomodule", "teacher"]
)
def test_bad_teacher_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="teacher"):
        teacher_from_spec(spec)


def test_oracle_and_few_shot_need_a_suite() -> None:
    with pytest.raises(ConfigError, match="needs the suite"):
        teacher_from_spec("oracle")
    with pytest.raises(ConfigError, match="few_shot > 0 needs the suite"):
        LocalTeacher(object(), object(), few_shot=1)


def test_pipeline_spec_imports_a_factory() -> None:
    with pytest.raises(ConfigError, match="cannot import it"):
        teacher_from_spec("pipeline:tinyllm.distill.teachers:no_such_function")
    with pytest.raises(ConfigError, match="not a Teacher"):
        teacher_from_spec("pipeline:tinyllm.distill.teachers:TeacherError")

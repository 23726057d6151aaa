"""Training data balanced over input wordings (distill/balance.py, `distill --balance`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tinyllm.distill.balance import balanced, quotas, wording
from tinyllm.distill.recipe import DistillOptions, student_and_data
from tinyllm.errors import ConfigError, TaskError
from tinyllm.suite import load_tasks
from tinyllm.tasks import Example, write_examples


def arithmetic(common: int = 90, rare: int = 10) -> list[Example]:
    """``common`` "What is a plus b?" and ``rare`` "Put together a and b." examples."""
    common_ones = [Example(f"What is {i} plus -{i + 1}?", "-1") for i in range(common)]
    rare_ones = [Example(f"Put together -{i}.5 and {i}.", "-0.5") for i in range(rare)]
    return common_ones + rare_ones


def wordings(examples: list[Example]) -> Counter[str]:
    return Counter(wording(ex.input) for ex in examples)


def test_wording_drops_numbers_signs_and_one_letter_names() -> None:
    assert wording("Put together -0.993 and 39.") == "put together and"
    assert wording("Put together 4 and 7.1.") == "put together and"
    assert wording("Solve 126*y = 110*y + 80 for y.") == "solve for"
    assert wording("What is -3 less than 5?") == "what is less than"
    assert wording("What is -3 minus 5?") != wording("What is -3 less than 5?")
    assert wording("-2 + (3 - 4)") == ""


def test_quotas_sum_to_the_total_and_follow_the_temperature() -> None:
    counts = {"a": 90, "b": 10}
    assert quotas(counts, 100, 1.0) == counts  # T = 1: the shares as they are
    assert quotas(counts, 100, 2.0) == {"a": 75, "b": 25}  # sqrt(90) : sqrt(10) = 3 : 1
    assert quotas(counts, 100, 1e9) == {"a": 50, "b": 50}
    odd = {"a": 7, "b": 5, "c": 1}
    for t in (0.5, 1.0, 1.7, 3.0, 1e9):
        assert sum(quotas(odd, 13, t).values()) == 13
    assert quotas(odd, 13, 1e9) == {"a": 5, "b": 4, "c": 4}  # the extra draw: largest remainder


def test_balanced_redraws_the_shares_and_keeps_the_size() -> None:
    data = arithmetic()
    out, summary = balanced(data, 2.0, seed=3)
    assert len(out) == len(data)
    assert wordings(out) == {"what is plus": 75, "put together and": 25}
    assert wordings(data) == {"what is plus": 90, "put together and": 10}  # input untouched
    # The rare wording repeats its 10 examples evenly; the common one is subsampled
    # without repeats.
    rare = Counter(ex.input for ex in out if ex.input.startswith("Put"))
    assert len(rare) == 10 and set(rare.values()) == {2, 3}
    common = Counter(ex.input for ex in out if ex.input.startswith("What"))
    assert len(common) == 75 and set(common.values()) == {1}
    assert (summary.wordings, summary.before, summary.after) == (2, (0.1, 0.9), (0.25, 0.75))
    line = summary.line("arithmetic", 2.0)
    assert line == (
        "arithmetic: training data balanced over 2 wordings at temperature 2 "
        "(shares 10.0-90.0% -> 25.0-75.0%)"
    )


def test_balanced_at_temperature_one_is_a_shuffle_and_the_seed_fixes_the_order() -> None:
    data = arithmetic()
    out, _ = balanced(data, 1.0, seed=0)
    assert sorted(ex.input for ex in out) == sorted(ex.input for ex in data)
    assert [ex.input for ex in out] != [ex.input for ex in data]
    assert balanced(data, 1.0, seed=0)[0] == out
    assert balanced(data, 1.0, seed=1)[0] != out


def test_balanced_groups_by_a_given_key() -> None:
    data = [Example(f"item {i}", "x", {"module": "m1" if i < 8 else "m2"}) for i in range(10)]
    by_number = {ex.input: ex.meta["module"] for ex in data}
    out, summary = balanced(data, 1e9, key=by_number.__getitem__)
    assert Counter(ex.meta["module"] for ex in out) == {"m1": 5, "m2": 5}
    assert summary.wordings == 2


def test_bad_temperature_and_empty_data_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="balance temperature must be > 0, got 0"):
        balanced(arithmetic(), 0.0)
    with pytest.raises(TaskError, match="no training examples to balance"):
        balanced([], 2.0)
    with pytest.raises(ConfigError, match="balance is a sampling temperature and must be > 0"):
        DistillOptions.sized(balance=-1.0)
    assert DistillOptions.sized().balance is None
    assert DistillOptions.sized(balance=2.0).balance == 2.0


def test_the_recipe_balances_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(
        "tasks:\n"
        "  - name: sums\n"
        "    description: add two numbers\n"
        "    instruction: Answer with the number.\n"
        '    template: "{input}"\n'
        "    output: {kind: text, max_new_tokens: 8}\n"
        "    verifiers: [number]\n"
        "    metric: exact_match\n"
        "    data: {train: train.jsonl, validation: train.jsonl, test: train.jsonl}\n"
    )
    data = arithmetic()
    write_examples(tmp_path / "train.jsonl", data)
    suite = load_tasks(tmp_path / "suite.yaml")
    student = tmp_path / "student.tllm"
    student.mkdir()  # an existing folder is taken as the student bundle, unopened here
    lines: list[str] = []
    for balance, shares in [(None, {90, 10}), (1e9, {50})]:
        options = DistillOptions.sized(balance=balance)
        _, got = student_and_data(
            suite, suite.tasks, "oracle", student, tmp_path / "out.tllm", options, lines.append
        )
        assert set(wordings(got["sums"]).values()) == shares
    assert lines == [
        "sums: training data balanced over 2 wordings at temperature 1e+09 "
        "(shares 10.0-90.0% -> 50.0-50.0%)"
    ]

"""Evaluation: scripted generators give known scores; the torch path runs end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import tinyllm
from tinyllm.api import evaluate
from tinyllm.cli import main
from tinyllm.errors import ConfigError, TaskError
from tinyllm.evaluation import TorchGenerator, conversation, evaluate_task
from tinyllm.tasks import Example, TaskSpec, load_suite, write_examples


@pytest.fixture()
def suite_file(tmp_path: Path) -> Path:
    examples = [Example(f"item {i}", "yes" if i % 2 else "no") for i in range(6)]
    for split in ("train", "validation", "test"):
        write_examples(tmp_path / f"{split}.jsonl", examples)
    task = {
        "name": "parity",
        "description": "odd or even",
        "instruction": "Answer yes or no.",
        "template": "Is it odd? {input}",
        "output": {"kind": "label", "labels": ["yes", "no"]},
        "verifiers": ["label_in_set"],
        "metric": "accuracy",
        "data": {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"tasks": [task]}))
    return path


class Scripted:
    """Answers from a table keyed by the last user message; records batch sizes."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[int] = []

    def answer(
        self, task: TaskSpec, inputs: list[str], shots: list[Example], done: Callable[[int], object]
    ) -> list[str]:
        self.calls.append(len(inputs))
        done(len(inputs))
        return [self.answers[conversation(task, text, shots)[-1]["content"]] for text in inputs]


def test_scores_invalid_rate_and_rejections(suite_file: Path) -> None:
    suite = load_suite(suite_file)
    answers = {
        f"Is it odd? item {i}": a for i, a in enumerate(["no", "Yes.", "yes", "maybe", "no", "yes"])
    }
    gen = Scripted(answers)
    result = evaluate_task(gen, suite, suite.task("parity"), progress=False)
    # refs: no yes no yes no yes -> right: 0, 1, 4, 5 -> 4/6; "maybe" is invalid.
    assert result.score == pytest.approx(4 / 6)
    assert result.invalid_rate == pytest.approx(1 / 6)
    assert result.rejections == {"label_in_set": 1}
    assert gen.calls == [6] and result.n == 6
    limited = evaluate_task(gen, suite, suite.task("parity"), limit=2, progress=False)
    assert limited.n == 2 and limited.score == 1.0  # "no" and "Yes." both right


def test_few_shot_conversation(suite_file: Path) -> None:
    task = load_suite(suite_file).task("parity")
    shots = [Example("item 1", "yes")]
    msgs = conversation(task, "item 9", shots)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"] == "Is it odd? item 1" and msgs[2]["content"] == "yes"


def test_batched_generation_equals_one_by_one(tiny_llama_bundle: Path) -> None:
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    gen = TorchGenerator(loaded.model, loaded.tokenizer)
    texts = ("hi", "Book a table for four in Lisbon on Friday evening", "What is 17 plus 25?")
    convs = [[{"role": "user", "content": text}] for text in texts]
    batched = gen.generate(convs, max_new_tokens=8)
    single = [gen.generate([c], max_new_tokens=8)[0] for c in convs]
    assert batched == single
    assert all(isinstance(t, str) for t in batched)


def test_evaluate_bundle_end_to_end_and_cli(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = evaluate(tiny_llama_bundle, suite_file, limit=3, progress=False)
    (result,) = report.results
    assert result.n == 3 and 0.0 <= result.score <= 1.0 and result.ms_per_example > 0
    assert report.bundle_hash == tinyllm.open_bundle(tiny_llama_bundle).hash
    out = tmp_path / "eval.json"
    main(
        [
            "eval",
            str(tiny_llama_bundle),
            "--tasks",
            str(suite_file),
            "--limit",
            "2",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "parity" in printed and "accuracy" in printed
    assert json.loads(out.read_text())["results"][0]["n"] == 2


def test_bad_eval_inputs(tiny_llama_bundle: Path, suite_file: Path) -> None:
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        evaluate(tiny_llama_bundle, suite_file, names=["nope"])
    with pytest.raises(ConfigError, match="limit must be a positive"):
        evaluate(tiny_llama_bundle, suite_file, limit=0)


def first_line(text: str) -> str:
    """``text`` cut after its first line of content, as the router stops label tasks."""
    body = text.lstrip()
    return text[: len(text) - len(body) + len(body.split("\n")[0])]


def test_engine_backend_matches_torch_backend(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path
) -> None:
    exported, _ = tinyllm.export(
        tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=256
    )
    torch_report = evaluate(exported.path, suite_file, limit=4, progress=False)
    raw = evaluate(
        exported.path, suite_file, limit=4, backend="engine", constrain=False, progress=False
    )
    served = evaluate(exported.path, suite_file, limit=4, backend="engine", progress=False)
    assert raw.backend == "engine onnx-cpu-fp32, raw" and torch_report.backend == "torch"
    assert served.backend == "engine onnx-cpu-fp32, constrained"
    # Unconstrained, the engine gives torch's greedy text, cut as served: at the first line.
    outputs = [s["output"] for s in raw.results[0].samples]
    assert outputs == [first_line(s["output"]) for s in torch_report.results[0].samples]
    # Constrained, every answer is one of the task's labels (the random model's are not).
    labels = load_suite(suite_file).task("parity").output.labels
    assert all(s["output"] in labels for s in served.results[0].samples)
    assert served.results[0].invalid_rate == 0.0
    with pytest.raises(ConfigError, match="backend must be 'torch' or 'engine'"):
        evaluate(exported.path, suite_file, backend="tpu")


def test_engine_backend_applies_task_adapters(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path
) -> None:
    import numpy as np

    from tinyllm.adapters import LoraAdapter, adapter_shapes
    from tinyllm.bundle import Bundle

    base = Bundle.open(tiny_llama_bundle)
    targets = ("q_proj", "v_proj", "up_proj", "down_proj")
    rng = np.random.default_rng(0)
    tensors = {
        k: rng.standard_normal(s).astype(np.float32) * 0.3
        for k, s in adapter_shapes(base.config, 4, targets).items()
    }
    adapter = LoraAdapter(rank=4, alpha=8.0, targets=targets, tensors=tensors)
    task = load_suite(suite_file).task("parity")
    with_task = tinyllm.api.add_tasks(base.path, tmp_path / "a.tllm", [task], {"parity": adapter})
    exported, _ = tinyllm.export(with_task.path, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=256)
    torch_out = evaluate(exported.path, suite_file, limit=6, progress=False).results[0].samples
    raw = evaluate(
        exported.path, suite_file, limit=6, backend="engine", constrain=False, progress=False
    )
    engine_out = raw.results[0].samples
    base_out = evaluate(tiny_llama_bundle, suite_file, limit=6, progress=False).results[0].samples
    outputs = [s["output"] for s in engine_out]
    # The engine used the adapter too, and the adapter changes the answers.
    assert outputs == [first_line(s["output"]) for s in torch_out]
    assert outputs != [first_line(s["output"]) for s in base_out]
    from tinyllm.runtime import Engine

    engine = Engine.load(exported.path)
    with pytest.raises(ConfigError, match=r"no LoRA adapter for task 'nope'.*adapters: parity"):
        engine.generate_ids([[1, 2, 3]], adapter="nope")

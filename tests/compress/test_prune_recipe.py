"""api.prune / `tinyllm prune` end to end on tiny-llama: a valid child bundle that runs,
exports and verifies; bad requests are clear errors that write nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import tinyllm
from tinyllm import api
from tinyllm.cli import main
from tinyllm.errors import ConfigError, TinyLLMError
from tinyllm.tasks import Example, write_examples

WORDS = ["spotless", "lovely", "dirty", "noisy", "table", "Lisbon", "Friday", "four"]


@pytest.fixture()
def suite_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    tasks = []
    for name, labels in (("mood", ["good", "bad"]), ("topic", ["room", "trip"])):
        examples = [Example(" ".join(rng.choice(WORDS, 6)), labels[i % 2]) for i in range(12)]
        for split in ("train", "validation", "test"):
            write_examples(tmp_path / f"{name}-{split}.jsonl", examples)
        write_examples(tmp_path / f"{name}-empty.jsonl", [])
        tasks.append(
            {
                "name": name,
                "description": name,
                "instruction": f"Classify the {name}.",
                "template": "Text: {input}",
                "output": {"kind": "label", "labels": labels},
                "verifiers": ["label_in_set"],
                "metric": "accuracy",
                "data": {s: f"{name}-{s}.jsonl" for s in ("train", "validation", "test")},
            }
        )
    empty = {**tasks[0], "name": "empty", "data": {**tasks[0]["data"], "train": "mood-empty.jsonl"}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"tasks": [*tasks, empty]}))
    return tmp_path / "suite.yaml"


def test_prune_writes_a_child_that_runs_and_exports(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path
) -> None:
    child, report = api.prune(
        tiny_llama_bundle,
        tmp_path / "pruned.tllm",
        0.7,
        tasks=suite_file,
        names=["mood", "topic"],
        calib_samples=4,
        min_vocab=0,
        heal_steps=3,
        heal_batch_size=2,
        progress=False,
    )
    parent = tinyllm.open_bundle(tiny_llama_bundle)
    plan = report.plan
    assert plan.params_after <= 0.7 * parent.config.num_parameters()
    assert child.config.num_parameters() == plan.params_after
    assert child.config.vocab_size < parent.config.vocab_size  # the tasks use few tokens
    assert "vocabulary" in plan.steps and len(report.healing.losses) == 3
    assert "prune plan" in report.format()
    reopened = tinyllm.open_bundle(child.path)  # validates every shape against the config
    assert reopened.manifest.stage == "compress"
    assert reopened.manifest.lineage[0].hash == parent.hash
    stats = json.loads((child.path / "stats/prune.json").read_text())
    assert stats["plan"]["vocab_size"] == child.config.vocab_size
    # The rewritten tokenizer and the model agree: special ids, and text generates.
    loaded = tinyllm.load_torch_model(child)
    assert loaded.tokenizer.convert_tokens_to_ids("<|im_end|>") == child.config.eos_token_id
    assert len(loaded.tokenizer) == child.config.vocab_size
    exported, verification = tinyllm.export(
        child.path, "onnx-cpu", tmp_path / "pruned-cpu.tllm", max_seq_len=128
    )
    assert verification.passed
    from tinyllm.runtime import Engine, GenerationConfig

    engine = Engine.load(exported.path)
    out = engine.generate_ids([engine.tokenizer.encode("Text: lovely table")], GenerationConfig(4))
    assert out[0].token_ids and max(out[0].token_ids) < child.config.vocab_size


def test_cli_prints_the_plan(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.tllm"
    main(
        [
            "prune",
            str(tiny_llama_bundle),
            "--ratio",
            "0.9",
            "-o",
            str(out),
            "--tasks",
            str(suite_file),
            "--task",
            "mood",
            "--calib-samples",
            "2",
            "--heal-steps",
            "0",
        ]
    )
    printed = capsys.readouterr().out
    assert "prune plan (target ratio 0.900)" in printed and f"wrote {out}" in printed
    assert (
        tinyllm.open_bundle(out).config.num_parameters()
        <= 0.9 * tinyllm.open_bundle(tiny_llama_bundle).config.num_parameters()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 0.0}, r"\(0, 1\]"),
        ({"ratio": 1.5}, r"\(0, 1\]"),
        ({"ratio": 0.8, "calib_samples": 0}, "calib_samples"),
        ({"ratio": 0.8, "names": ["empty"]}, "calibration set is empty"),
        ({"ratio": 0.8, "names": ["nope"]}, "nope"),
        ({"ratio": 0.01, "names": ["mood"]}, "impossible"),
    ],
)
def test_bad_requests_are_clear_errors_and_write_nothing(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path, kwargs: dict, message: str
) -> None:
    out = tmp_path / "bad.tllm"
    with pytest.raises(TinyLLMError, match=message):
        api.prune(tiny_llama_bundle, out, tasks=suite_file, heal_steps=0, progress=False, **kwargs)
    assert not out.exists()


def test_cli_bad_ratio_is_one_line_error(
    tiny_llama_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", str(tiny_llama_bundle), "--ratio", "1.2", "-o", str(tmp_path / "x.tllm")])
    assert exit_info.value.code == 1
    assert "prune ratio must be in (0, 1]" in capsys.readouterr().err


def test_compress_prunes_then_quantizes(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "small.tllm"
    args = f"compress {tiny_llama_bundle} -o {out} --quant int4-rtn --prune 0.8"
    main([*args.split(), "--tasks", str(suite_file), "--task", "mood", "--calib-samples", "4"])
    pruned = api.open_bundle(tmp_path / "small-pruned.tllm")
    small = api.open_bundle(out)
    parent = api.open_bundle(tiny_llama_bundle)
    assert pruned.config.num_parameters() <= 0.8 * parent.config.num_parameters()
    assert small.config == pruned.config
    assert small.quant_spec() is not None and small.quant_spec().bits == 4  # type: ignore[union-attr]
    assert small.manifest.lineage[0].hash == pruned.manifest.content_hash()


def test_vocab_samples_decide_the_kept_vocabulary(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path
) -> None:
    required = []
    for n in (1, 1000):
        _, report = api.prune(
            tiny_llama_bundle,
            tmp_path / f"v{n}.tllm",
            0.9,
            tasks=suite_file,
            names=["mood", "topic"],
            calib_samples=2,
            vocab_samples=n,
            min_vocab=0,
            heal_steps=0,
            progress=False,
        )
        required.append(report.required_vocab)
    assert required[0] < required[1]  # one conversation per task uses fewer tokens


def test_pruning_a_quantized_bundle_is_refused(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path
) -> None:
    quantized, _ = api.compress(
        tiny_llama_bundle,
        tmp_path / "q.tllm",
        quant="int4-rtn",
        tasks=suite_file,
        names=["mood"],
        progress=False,
    )
    out = tmp_path / "p.tllm"
    with pytest.raises(ConfigError, match=r"q\.tllm is quantized \(int4\): prune its float"):
        api.prune(quantized.path, out, tasks=suite_file, heal_steps=0, progress=False)
    assert not out.exists()


def test_an_output_path_equal_to_the_input_is_refused(
    tiny_llama_bundle: Path, suite_file: Path, tmp_path: Path, snapshot
) -> None:
    copy = tmp_path / "in.tllm"
    shutil.copytree(tiny_llama_bundle, copy)
    before = snapshot(copy)
    same = str(copy) + "/"  # the same folder, spelled differently
    with pytest.raises(ConfigError, match="is the input bundle"):
        api.prune(copy, same, tasks=suite_file, heal_steps=0, overwrite=True, progress=False)
    with pytest.raises(ConfigError, match="is the input bundle"):
        api.compress(
            copy,
            same,
            quant="int4-rtn",
            tasks=suite_file,
            names=["mood"],
            overwrite=True,
            progress=False,
        )
    with pytest.raises(ConfigError, match="is the input bundle"):
        api.add_tasks(copy, same, [], overwrite=True)
    assert snapshot(copy) == before

"""Loading an engine: sha256 of the files it reads, engine.json checked against the graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tinyllm import integrity
from tinyllm.cli import main
from tinyllm.errors import BundleError, ConfigError
from tinyllm.runtime import Engine, GenerationConfig


def _flip_last_byte(path: Path) -> None:
    """A same-size corruption (as a bad disk or copy would leave)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_engine_json(bundle: Path, engine: str, reseal: Any, **changes: Any) -> None:
    path = bundle / "engines" / engine / "engine.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    reseal(bundle)  # the manifest's hashes agree: only the graph can tell the lie


def test_same_size_corruption_of_the_engine_is_refused(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.tllm"
    shutil.copytree(exported, broken)
    _flip_last_byte(broken / "engines" / "onnx-cpu-fp32" / "model.onnx.data")
    with pytest.raises(BundleError, match=r"model\.onnx\.data: sha256 does not match"):
        Engine.load(broken)
    with pytest.raises(SystemExit):
        main(["generate", str(broken), "hi", "--max-new-tokens", "2"])
    assert "model.onnx.data: sha256 does not match" in capsys.readouterr().err
    main(["generate", str(broken), "hi", "--max-new-tokens", "2", "--verify", "size"])
    Engine.load(broken, verify="size")  # only when asked for: sizes alone
    with pytest.raises(ConfigError, match="verify must be 'sha256' or 'size'"):
        Engine.load(exported, verify="crc")  # type: ignore[arg-type]


def test_a_warm_load_reads_no_file_for_hashing(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYLLM_HASH_CACHE", str(tmp_path / "hashes.json"))
    monkeypatch.setattr(integrity, "RACY_S", 0.0)
    hashed: list[Path] = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda p: hashed.append(p) or real(p))
    Engine.load(exported)
    names = {p.relative_to(exported).as_posix() for p in hashed}
    assert "engines/onnx-cpu-fp32/model.onnx.data" in names
    assert "tokenizer/tokenizer.json" in names
    assert "weights.safetensors" not in names  # the engine does not read it
    hashed.clear()
    Engine.load(exported)
    assert hashed == []


@pytest.mark.parametrize(
    ("engine", "changes", "field"),
    [
        ("onnx-cpu-fp32", {"max_seq_len": 4096}, "max_seq_len"),
        ("onnx-cpu-fp32", {"flavour": "standard"}, "flavour"),
        ("onnx-standard-fp32", {"flavour": "ort"}, "flavour"),
        ("onnx-cpu-fp32", {"float_dtype": "float16"}, "float_dtype"),
        ("onnx-cpu-fp32", {"precision": "int4"}, "precision"),
        ("onnx-cpu-fp32", {"lora_slots": 4, "lora_rank": 8}, "lora_slots"),
    ],
)
def test_a_lying_engine_json_is_refused(
    exported: Path, tmp_path: Path, reseal, engine: str, changes: dict, field: str
) -> None:
    broken = tmp_path / "lie.tllm"
    shutil.copytree(exported, broken)
    _edit_engine_json(broken, engine, reseal, **changes)
    with pytest.raises(BundleError, match=rf"{engine}/engine\.json: field '{field}' says"):
        Engine.load(broken, engine=engine)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lora_slots": 9}, "lora_slots"),
        ({"lora_rank": 2}, "lora_rank"),
        ({"lora_slots": 0}, "lora_slots"),
        ({"lora_targets": ["q_proj"]}, "lora_targets"),
    ],
)
def test_a_lying_lora_shape_is_refused(
    served: Path, tmp_path: Path, reseal, changes: dict, field: str
) -> None:
    broken = tmp_path / "lie.tllm"
    shutil.copytree(served, broken)
    _edit_engine_json(broken, "onnx-cpu-fp32", reseal, **changes)
    with pytest.raises(BundleError, match=rf"engine\.json: field '{field}' says"):
        Engine.load(broken)


def test_a_broken_engine_json_names_itself(exported: Path, tmp_path: Path, reseal) -> None:
    broken = tmp_path / "bad.tllm"
    shutil.copytree(exported, broken)
    path = broken / "engines" / "onnx-cpu-fp32" / "engine.json"
    for text, message in [
        ("{not json", "engine.json: not valid JSON"),
        ("[1]", "engine.json: expected a JSON object"),
    ]:
        path.write_text(text)
        reseal(broken)
        with pytest.raises(BundleError, match=message):
            Engine.load(broken, engine="onnx-cpu-fp32")
    original = json.loads((exported / "engines" / "onnx-cpu-fp32" / "engine.json").read_text())
    for changes, message in [
        ({"max_seq_len": "long"}, r"engine\.json\.max_seq_len: expected an integer"),
        ({"model": "../../manifest.json"}, "field 'model'.*relative path inside the bundle"),
        ({"model": "x/model.onnx"}, "field 'model' must name a file of the engine folder"),
    ]:
        path.write_text(json.dumps({**original, **changes}))
        reseal(broken)
        with pytest.raises(BundleError, match=message):
            Engine.load(broken, engine="onnx-cpu-fp32")


def test_the_exported_graph_carries_its_engine_json(exported: Path) -> None:
    engine = Engine.load(exported)
    stamped = engine.session.sess.get_modelmeta().custom_metadata_map
    assert stamped["tinyllm.max_seq_len"] == "256" == str(engine.info.max_seq_len)
    assert stamped["tinyllm.flavour"] == "ort" and stamped["tinyllm.precision"] == "fp32"
    out = engine.generate("hello", GenerationConfig(max_new_tokens=2, ignore_eos=True))
    assert len(out[0].token_ids) == 2

"""Bundle: validation on load, clear errors on bad bundles, atomic writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import tinyllm
from tinyllm.bundle import Bundle, BundleWriter
from tinyllm.errors import BundleError, BundleExistsError, SchemaVersionError
from tinyllm.manifest import SCHEMA_VERSION, parse_manifest
from tinyllm.tensorfile import read_header


def test_open_reads_manifest_and_counts_parameters(tiny_llama_bundle: Path) -> None:
    bundle = Bundle.open(tiny_llama_bundle)
    assert bundle.manifest.schema_version == SCHEMA_VERSION
    assert bundle.manifest.stage == "import"
    assert bundle.manifest.source == {"kind": "preset", "ref": "tiny-llama"}
    assert set(bundle.manifest.files) >= {"weights.safetensors", "tokenizer/tokenizer.json"}
    report = tinyllm.inspect(tiny_llama_bundle)
    assert report.parameters == bundle.config.num_parameters() == 361_088
    assert report.parameters_by_kind["embedding"] == 512 * 128
    assert "lm_head" not in report.parameters_by_kind  # tied: stored once
    assert report.hash == bundle.hash and len(bundle.hash) == 64


def test_manifest_hash_is_stable_and_covers_files(tiny_llama_bundle: Path) -> None:
    text = (tiny_llama_bundle / "manifest.json").read_text()
    first = parse_manifest(text, "m").content_hash()
    assert parse_manifest(text, "m").content_hash() == first
    data = json.loads(text)
    data["files"]["weights.safetensors"]["sha256"] = "0" * 64
    assert parse_manifest(json.dumps(data), "m").content_hash() != first


def test_truncated_weights_are_rejected(bundle_copy: Path, snapshot, reseal) -> None:
    weights = bundle_copy / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    before = snapshot(bundle_copy)
    with pytest.raises(BundleError, match=r"weights\.safetensors.*truncated"):
        Bundle.open(bundle_copy)
    # Behind the size check, the header check catches it too.
    reseal(bundle_copy)
    with pytest.raises(BundleError, match=r"weights\.safetensors: file is truncated"):
        Bundle.open(bundle_copy)
    assert snapshot(bundle_copy).keys() == before.keys()


def test_header_check_catches_truncation_without_manifest(bundle_copy: Path) -> None:
    weights = bundle_copy / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:20])
    with pytest.raises(BundleError, match="truncated or not safetensors"):
        read_header(weights)
    weights.write_bytes(data[:-1])
    with pytest.raises(BundleError, match="truncated"):
        read_header(weights)
    weights.write_bytes(b"abc")
    with pytest.raises(BundleError, match="not a safetensors file"):
        read_header(weights)


def test_wrong_schema_version(bundle_copy: Path, snapshot) -> None:
    path = bundle_copy / "manifest.json"
    for version, hint in ((SCHEMA_VERSION + 1, "upgrade tinyllm"), (0, "re-create")):
        data = json.loads(path.read_text())
        data["schema_version"] = version
        path.write_text(json.dumps(data))
        before = snapshot(bundle_copy)
        with pytest.raises(SchemaVersionError, match=f"schema_version {version}.*{hint}"):
            Bundle.open(bundle_copy)
        assert snapshot(bundle_copy) == before


def test_manifest_naming_a_missing_file(bundle_copy: Path, snapshot) -> None:
    (bundle_copy / "tokenizer" / "tokenizer_config.json").unlink()
    before = snapshot(bundle_copy)
    with pytest.raises(BundleError, match=r"tokenizer_config\.json: the manifest lists .* missing"):
        Bundle.open(bundle_copy)
    assert snapshot(bundle_copy) == before


def test_modified_file_fails_hash_check(bundle_copy: Path) -> None:
    tok = bundle_copy / "tokenizer" / "tokenizer.json"
    data = bytearray(tok.read_bytes())
    data[10] ^= 1
    tok.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"tokenizer\.json: sha256 does not match"):
        Bundle.open(bundle_copy)
    Bundle.open(bundle_copy, verify="size")  # same size: only the full check sees it


def test_tensor_shape_mismatch(bundle_copy: Path, snapshot, reseal) -> None:
    weights = bundle_copy / "weights.safetensors"
    tensors = load_file(str(weights))
    name = "model.layers.1.mlp.up_proj.weight"
    tensors[name] = np.zeros((255, 128), dtype=np.float32)
    save_file(tensors, str(weights))
    reseal(bundle_copy)
    before = snapshot(bundle_copy)
    with pytest.raises(BundleError, match=rf"{name}' has shape \[255, 128\].*needs \[256, 128\]"):
        Bundle.open(bundle_copy)
    assert snapshot(bundle_copy) == before


def test_missing_and_unexpected_tensors(bundle_copy: Path, reseal) -> None:
    weights = bundle_copy / "weights.safetensors"
    tensors = load_file(str(weights))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    save_file(tensors, str(weights))
    reseal(bundle_copy)
    with pytest.raises(BundleError, match=r"unexpected tensor 'lm_head.weight'"):
        Bundle.open(bundle_copy)
    del tensors["lm_head.weight"], tensors["model.norm.weight"]
    save_file(tensors, str(weights))
    reseal(bundle_copy)
    with pytest.raises(BundleError, match=r"tensor 'model.norm.weight' is missing"):
        Bundle.open(bundle_copy)


def test_manifest_errors_name_the_key(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    original = json.loads(path.read_text())
    cases = [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"model": {**original["model"], "hidden_sise": 3}}, "model: unknown key 'hidden_sise'"),
        ({"model": {**original["model"], "hidden_size": "big"}}, "hidden_size: expected an int"),
        ({"stage": "baking"}, "stage: 'baking' is not one of"),
        ({"files": {"../etc/passwd": {"sha256": "0", "size": 1}}}, "must be a relative path"),
    ]
    for change, message in cases:
        path.write_text(json.dumps({**original, **change}))
        with pytest.raises(BundleError, match=message):
            Bundle.open(bundle_copy)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.open(bundle_copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.open(tmp_path / "nope.tllm")
    (tmp_path / "file.tllm").write_text("x")
    with pytest.raises(BundleError, match="a bundle is a folder"):
        Bundle.open(tmp_path / "file.tllm")
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        Bundle.open(tmp_path)


def test_existing_output_is_not_overwritten_without_asking(
    tiny_llama_bundle: Path, snapshot
) -> None:
    before = snapshot(tiny_llama_bundle)
    with pytest.raises(BundleExistsError, match=r"already exists.*--force"):
        tinyllm.import_model("tiny-qwen2", tiny_llama_bundle)
    assert snapshot(tiny_llama_bundle) == before


def test_failed_write_leaves_no_bundle_and_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "half.tllm"
    with pytest.raises(RuntimeError), BundleWriter(out) as writer:
        writer.save_tensors("weights.safetensors", {"x": np.zeros(3, dtype=np.float32)})
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_original(bundle_copy: Path, snapshot) -> None:
    before = snapshot(bundle_copy)
    with pytest.raises(tinyllm.TinyLLMError, match="unknown preset"):
        tinyllm.import_model("no-such-model", bundle_copy, overwrite=True)
    assert snapshot(bundle_copy) == before
    # A write whose result does not validate never replaces the original either.
    bundle = Bundle.open(bundle_copy)
    with (
        pytest.raises(BundleError, match=r"must list 'weights.safetensors'"),
        BundleWriter(bundle_copy, overwrite=True) as writer,
    ):
        writer.path("tokenizer/tokenizer.json").write_text("{}")
        writer.commit(bundle.manifest)
    assert snapshot(bundle_copy) == before
    assert [p.name for p in bundle_copy.parent.iterdir()] == [bundle_copy.name]


def test_overwrite_replaces_atomically_and_keeps_lineage_by_hash(
    bundle_copy: Path, tiny_llama_bundle: Path
) -> None:
    parent = Bundle.open(tiny_llama_bundle)
    # Rewrite the bundle onto itself, as a later stage does: files come from the parent.
    with BundleWriter(bundle_copy, overwrite=True) as writer:
        for name in parent.manifest.files:
            writer.copy_file(parent.path / name, name)
        child = writer.commit(
            dataclasses.replace(
                parent.manifest, stage="export", lineage=[parent.manifest.ref(str(parent.path))]
            )
        )
    reopened = Bundle.open(bundle_copy)
    assert reopened.hash == child.hash != parent.hash
    assert reopened.manifest.lineage[0].hash == parent.hash
    assert "tiny-llama" in tinyllm.inspect(bundle_copy).format().split("lineage")[1]
    assert [p.name for p in bundle_copy.parent.iterdir()] == [bundle_copy.name]

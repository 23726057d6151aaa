"""Fuzz the bundle readers: manifest.json, a whole bundle, safetensors headers, tasks.json.

Random JSON, random bytes and mutations of valid files: the only outcomes allowed are
success or a TinyLLMError (a clear error), never another exception. Bounded here
(``TINYLLM_FUZZ_EXAMPLES``, default 60 per test); docs/reliability.md gives the long run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllm.bundle import Bundle
from tinyllm.errors import TinyLLMError
from tinyllm.manifest import parse_manifest
from tinyllm.tasktable import TaskTable
from tinyllm.tensorfile import read_header

EXAMPLES = int(os.environ.get("TINYLLM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def mutate(data: Any, draw: st.DataObject) -> Any:
    """``data`` with one node replaced, a key removed or a key added, at a random depth."""
    if isinstance(data, dict) and data and draw.draw(st.booleans()):
        key = draw.draw(st.sampled_from(sorted(data)))
        action = draw.draw(st.sampled_from(["descend", "delete", "replace"]))
        out = dict(data)
        if action == "delete":
            del out[key]
        elif action == "replace":
            out[key] = draw.draw(json_values)
        else:
            out[key] = mutate(data[key], draw)
        return out
    if isinstance(data, list) and data and draw.draw(st.booleans()):
        i = draw.draw(st.integers(0, len(data) - 1))
        return [*data[:i], mutate(data[i], draw), *data[i + 1 :]]
    if isinstance(data, dict) and draw.draw(st.booleans()):
        return {**data, draw.draw(st.text(max_size=8)): draw.draw(json_values)}
    return draw.draw(json_values)


def _only_clear_errors(call: Any) -> None:
    with contextlib.suppress(TinyLLMError):  # anything else fails the test
        call()


@FUZZ
@given(text=st.text(max_size=200) | json_values.map(json.dumps))
def test_manifest_parser_on_random_text(text: str) -> None:
    _only_clear_errors(lambda: parse_manifest(text, "fuzz"))


@FUZZ
@given(draw=st.data())
def test_manifest_parser_on_mutated_manifests(tiny_llama_bundle: Path, draw: st.DataObject) -> None:
    valid = json.loads((tiny_llama_bundle / "manifest.json").read_text())
    text = json.dumps(mutate(valid, draw))
    _only_clear_errors(lambda: parse_manifest(text, "fuzz"))


@pytest.fixture(scope="module")
def bundle_for_fuzz(tiny_llama_bundle: Path) -> Any:
    folder = Path(tempfile.mkdtemp(prefix="tinyllm-fuzz-"))
    copy = folder / "b.tllm"
    shutil.copytree(tiny_llama_bundle, copy)
    yield copy
    shutil.rmtree(folder, ignore_errors=True)


@settings(parent=FUZZ, max_examples=max(EXAMPLES // 3, 10))
@given(draw=st.data())
def test_bundle_open_on_mutated_manifests(
    bundle_for_fuzz: Path, tiny_llama_bundle: Path, draw: st.DataObject
) -> None:
    valid = json.loads((tiny_llama_bundle / "manifest.json").read_text())
    (bundle_for_fuzz / "manifest.json").write_text(json.dumps(mutate(valid, draw)))
    _only_clear_errors(lambda: Bundle.open(bundle_for_fuzz, verify="size"))


@FUZZ
@given(data=st.binary(max_size=300))
def test_safetensors_header_on_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    _only_clear_errors(lambda: read_header(path))


@FUZZ
@given(header=json_values, body=st.binary(max_size=64))
def test_safetensors_header_on_random_json(tmp_path: Path, header: Any, body: bytes) -> None:
    raw = json.dumps(header).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    _only_clear_errors(lambda: read_header(path))


@FUZZ
@given(draw=st.data())
def test_safetensors_header_on_mutated_headers(tmp_path: Path, draw: st.DataObject) -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [24, 28]},
    }
    raw = json.dumps(mutate(header, draw)).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(28))
    _only_clear_errors(lambda: read_header(path))


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1.5, 24.0, True, "24"], ids=repr)
def test_safetensors_offsets_and_shapes_must_be_integers(tmp_path: Path, bad: Any) -> None:
    """Found by the long fuzz run: an infinite offset raised OverflowError; 24.0 and True
    were read as 24 and 1."""
    path = tmp_path / "x.safetensors"
    for entry in (
        {"dtype": "U8", "shape": [24], "data_offsets": [0, bad]},
        {"dtype": "U8", "shape": [bad], "data_offsets": [0, 24]},
    ):
        raw = json.dumps({"a": entry}).encode()
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(24))
        with pytest.raises(TinyLLMError, match="malformed header entry for tensor 'a'"):
            read_header(path)
    raw = json.dumps({"a": {"dtype": "U8", "shape": [24], "data_offsets": [0, 24]}}).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(24))
    assert read_header(path)[0]["a"].shape == (24,)  # the same entry with integers reads


def _task_table() -> dict[str, Any]:
    entry = {
        "name": "t",
        "spec_hash": "x",
        "before": "<s>",
        "after": "</s>",
        "exact": True,
        "prefix_ids": [1, 2],
        "slot": 1,
        "adapter": None,
        "max_new_tokens": 8,
        "output": "label",
        "first_line": True,
        "labels": ["a"],
        "label_ids": [[5]],
        "json_root": "",
        "prompt": "<s>{input}</s>",
    }
    return {"schema": 1, "stop_ids": [2], "tasks": {"t": entry}}


def test_the_valid_task_table_reads(tmp_path: Path) -> None:
    (tmp_path / "tasks.json").write_text(json.dumps(_task_table()))
    table = TaskTable.read(tmp_path)
    assert table is not None and table.tasks["t"].label_ids == [[5]]


@FUZZ
@given(draw=st.data(), raw=st.binary(max_size=100))
def test_task_table_reader(tmp_path: Path, draw: st.DataObject, raw: bytes) -> None:
    choice = draw.draw(st.sampled_from(["bytes", "json", "mutated"]))
    if choice == "bytes":
        (tmp_path / "tasks.json").write_bytes(raw)
    elif choice == "json":
        (tmp_path / "tasks.json").write_text(json.dumps(draw.draw(json_values)))
    else:
        (tmp_path / "tasks.json").write_text(json.dumps(mutate(_task_table(), draw)))
    try:
        table = TaskTable.read(tmp_path)
    except TinyLLMError:
        return
    for entry in table.tasks.values() if table else ():  # what loads is well typed
        assert all(type(i) is int for i in entry.prefix_ids)
        assert isinstance(entry.before, str) and type(entry.slot) is int

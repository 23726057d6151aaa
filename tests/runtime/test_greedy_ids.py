"""Engines exported with ``greedy_ids``: the graph's argmax output, the session steps that
bring back only ids, the serving loop that uses them for plain greedy rows (and logits for
every other row), export verification of the ids, and engine.json's record of the option."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

import tinyllm
from tinyllm.cli import cli
from tinyllm.errors import BundleError, ConfigError
from tinyllm.runtime import Engine, GenerationConfig
from tinyllm.runtime.builder import BuildOptions, DecoderBuilder, build_decoder
from tinyllm.runtime.deviceplan import Copy, plan
from tinyllm.runtime.session import DecoderSession
from tinyllm.runtime.verify import VerificationError

GREEDY = GenerationConfig(max_new_tokens=10, ignore_eos=True)
SAMPLED = GenerationConfig(max_new_tokens=10, temperature=0.9, seed=3, ignore_eos=True)
# Different lengths (a right-padded prefill) and different continuations.
PROMPTS = [[5, 9, 14, 2], [301, 7], [44, 45, 46, 47, 48, 49], [120], [9, 9, 9]]


@pytest.fixture(scope="module")
def engines(
    tiny_llama_bundle: Path, exported: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """tiny-llama's onnx-cpu fp32 and int4 and onnx-standard fp32 engines, with greedy ids
    (ids.tllm; the standard one by the CLI's --greedy-ids) and without (plain.tllm: the
    shared ``exported`` bundle plus int4)."""
    folder = tmp_path_factory.mktemp("greedy")
    ids, _ = tinyllm.export(
        tiny_llama_bundle, "onnx-cpu", folder / "ids.tllm", max_seq_len=256, greedy_ids=True
    )
    tinyllm.export(ids.path, "onnx-cpu", quant="int4", max_seq_len=256, greedy_ids=True)
    args = ["export", str(ids.path), "--target", "onnx-standard", "--max-seq-len", "256"]
    result = CliRunner().invoke(cli, [*args, "--greedy-ids"])
    assert result.exit_code == 0, result.output
    tinyllm.export(exported, "onnx-cpu", folder / "plain.tllm", quant="int4", max_seq_len=256)
    return folder


class Spy:
    """Counts the session's logits steps and ids-only steps."""

    def __init__(self, session: DecoderSession) -> None:
        self.calls: dict[str, int] = {}
        for name in ("decode", "decode_ids", "prefill_rows", "prefill_ids", "verify"):
            setattr(session, name, self.wrap(name, getattr(session, name)))

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return counted


def graph_outputs(graph: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(
        zip(["logits", "greedy_ids"], sess.run(["logits", "greedy_ids"], feeds), strict=True)
    )


def ranked(graph: onnx.ModelProto, vocab: int) -> onnx.ModelProto:
    """A copy of a ``logits_index`` graph with the values whose rank it leaves open (for
    the verify step's [B, P]) given rank 1 (logits rank 2): onnx.checker requires a shape
    on every graph input and output, with or without greedy ids."""
    copy = onnx.ModelProto()
    copy.CopyFrom(graph)
    dims = {"logits_index": ["batch"], "greedy_ids": ["batch"], "logits": ["batch", vocab]}
    for value in [*copy.graph.input, *copy.graph.output]:
        if value.name in dims and not value.type.tensor_type.HasField("shape"):
            value.type.CopyFrom(
                onnx.helper.make_tensor_type_proto(
                    value.type.tensor_type.elem_type, dims[value.name]
                )
            )
    return copy


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_graph_output_is_the_argmax_of_every_logits_row(
    tiny_llama_bundle: Path, precision: str
) -> None:
    """The standard graph with greedy ids passes the ONNX checker (full check, with shape
    inference); its ids are numpy's argmax of its own logits, int64, for
    ``logits_index`` [B] and [B, P] and for all-position logits."""
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    c, weights = bundle.config, load_file(str(bundle.weights_path))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, c.vocab_size, (3, 5))
    dtype = np.float16 if precision == "fp16" else np.float32
    for all_logits in (False, True):
        options = BuildOptions("standard", precision, 32, all_logits=all_logits, greedy_ids=True)  # type: ignore[arg-type]
        graph = build_decoder(c, weights, options)
        onnx.checker.check_model(graph if all_logits else ranked(graph, c.vocab_size), True)
        assert [o.name for o in graph.graph.output][-1] == "greedy_ids"
        kv = np.zeros((3, c.num_key_value_heads, 0, c.head_dim), dtype)
        feeds: dict[str, np.ndarray] = {
            "input_ids": ids,
            "position_ids": np.tile(np.arange(5), (3, 1)),
            "attention_mask": np.ones((3, 5), np.int64),
            **{f"past_{k}.{i}": kv for i in range(c.num_hidden_layers) for k in ("key", "value")},
        }
        indexes = (
            [None] if all_logits else [np.array([4, 2, 0]), np.array([[0, 3], [1, 4], [2, 2]])]
        )
        for index in indexes:
            if index is not None:
                feeds["logits_index"] = index
            out = graph_outputs(graph, feeds)
            assert out["greedy_ids"].dtype == np.int64
            assert out["greedy_ids"].shape == out["logits"].shape[:-1]
            np.testing.assert_array_equal(out["greedy_ids"], out["logits"].argmax(-1))
            assert len(np.unique(out["greedy_ids"])) > 1  # rows that differ, not one id


def test_fp16_contrib_op_engine_verifies_its_ids(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    """onnx-cuda (the ort flavour in fp16), verified on the CPU provider: its ids pass
    export verification and equal the argmax of its fp16 logits."""
    bundle, verification = tinyllm.export(
        tiny_llama_bundle, "onnx-cuda", tmp_path / "h.tllm", max_seq_len=64, greedy_ids=True
    )
    assert verification.passed and all(c.id_misses == 0 for c in verification.checks)
    s = Engine.load(bundle.path, max_batch=2).session
    logits = s.prefill(PROMPTS[:2])
    assert logits.dtype == np.float16
    np.testing.assert_array_equal(s.ids, logits.argmax(-1))
    ids = s.decode_ids([3, 4], [4, 2]).copy()  # a view of the session's buffer
    np.testing.assert_array_equal(ids, s.decode([3, 4], [4, 2]).argmax(-1))


def test_graph_without_the_option_has_no_ids_output(tiny_llama_bundle: Path) -> None:
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    graph = build_decoder(bundle.config, load_file(str(bundle.weights_path)), BuildOptions())
    assert [o.name for o in graph.graph.output if not o.name.startswith("present")] == ["logits"]


@pytest.mark.parametrize("engine", ["onnx-cpu-fp32", "onnx-cpu-int4", "onnx-standard-fp32"])
def test_greedy_tokens_equal_with_and_without_the_option(engines: Path, engine: str) -> None:
    """Batched greedy generation gives the same tokens token for token; the engine with
    greedy ids ran its steps without fetching logits, the other with logits."""
    plain = Engine.load(engines / "plain.tllm", engine=engine, max_batch=4)
    ids = Engine.load(engines / "ids.tllm", engine=engine, max_batch=4)
    assert (plain.session.greedy_ids, ids.session.greedy_ids) == (False, True)
    spy_plain, spy_ids = Spy(plain.session), Spy(ids.session)
    try:
        want = [g.token_ids for g in plain.generate_ids(PROMPTS, GREEDY)]
        got = [g.token_ids for g in ids.generate_ids(PROMPTS, GREEDY)]
    finally:
        plain.close()
        ids.close()
    assert got == want
    assert len({tuple(t) for t in want}) > 2  # rows that differ, not one repeated answer
    assert set(spy_plain.calls) == {"decode", "prefill_rows"}
    assert set(spy_ids.calls) == {"decode_ids", "prefill_ids"}


def test_rows_that_need_logits_get_them(engines: Path) -> None:
    """A sampling row in the batch makes the step fetch logits: its seeded tokens and the
    greedy rows' tokens equal the engine without the option."""
    plain = Engine.load(engines / "plain.tllm", max_batch=4)
    ids = Engine.load(engines / "ids.tllm", max_batch=4)
    spy = Spy(ids.session)
    try:
        runs = []
        for engine in (plain, ids):
            futures = [
                engine.submit_ids(p, SAMPLED if i == 1 else GREEDY)
                for i, p in enumerate(PROMPTS[:3])
            ]
            runs.append([f.result(timeout=60).token_ids for f in futures])
    finally:
        plain.close()
        ids.close()
    assert runs[1] == runs[0]
    assert spy.calls.get("decode", 0) > 0  # steps with the sampling row read logits


def test_constrained_rows_get_logits(served: Path, tmp_path: Path) -> None:
    """Label and JSON tasks (constrained) answer as on the engine without greedy ids;
    their steps read logits."""
    bundle, _ = tinyllm.export(
        served, "onnx-cpu", tmp_path / "s.tllm", max_seq_len=256, greedy_ids=True
    )
    plain = Engine.load(served, max_batch=4)
    ids = Engine.load(bundle.path, max_batch=4)
    spy = Spy(ids.session)
    text = "Book a table for two in Oslo on Friday at 8pm"
    try:
        for task in ("sentiment", "booking"):
            want, got = plain.run(task, text), ids.run(task, text)
            assert (got.text, got.output_tokens) == (want.text, want.output_tokens)
    finally:
        plain.close()
        ids.close()
    assert spy.calls.get("decode_ids", 0) == 0 and spy.calls.get("prefill_ids", 0) == 0


def test_speculative_verify_steps_read_logits(engines: Path) -> None:
    """Greedy rows that draft tokens verify them on logits; the tokens are those of the
    engine without greedy ids and without drafts."""
    from tinyllm.runtime.speculative import SpeculationOptions

    config = GenerationConfig(max_new_tokens=12, ignore_eos=True, speculate=True)
    prompts = [[310] * 8, [8, 8, 8, 8, 5, 8, 8]]  # outputs that copy the prompt
    plain = Engine.load(engines / "plain.tllm", max_batch=2)
    ids = Engine.load(engines / "ids.tllm", max_batch=2, speculate=4)
    ids._serving().speculation = SpeculationOptions(draft_tokens=4, max_rows=2)
    spy = Spy(ids.session)
    try:
        want = [g.token_ids for g in plain.generate_ids(prompts, config)]
        got = [g.token_ids for g in ids.generate_ids(prompts, config)]
        stats = ids.stats()["speculation"]
    finally:
        plain.close()
        ids.close()
    assert got == want
    assert stats["steps"] > 0 and stats["accepted"] > 0
    assert spy.calls["verify"] == stats["steps"]


def test_verification_catches_a_wrong_greedy_id(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine whose ids are not its logits' argmax fails export and leaves nothing
    behind: ArgMin (right shape, wrong ids) fails verification; ArgMax over the wrong axis
    (ids over the batch, [V]) fails at the first step, as ONNX Runtime checks the shape."""

    def wrong(op: str, axis: int) -> Callable[[DecoderBuilder, str], None]:
        def build(self: DecoderBuilder, logits: str) -> None:
            self.g.op(op, [logits], ["greedy_ids"], axis=axis, keepdims=0)
            self.g.output("greedy_ids", onnx.TensorProto.INT64, None)

        return build

    cases: list[tuple[str, int, type[Exception], str]] = [
        ("ArgMin", -1, VerificationError, "differs from the logits' argmax at 51 steps"),
        ("ArgMax", 0, Exception, "greedy_ids"),
    ]
    for op, axis, error, message in cases:
        monkeypatch.setattr(DecoderBuilder, "greedy_ids", wrong(op, axis))
        out = tmp_path / f"{op}{axis}.tllm"
        with pytest.raises(error, match=message):
            tinyllm.export(tiny_llama_bundle, "onnx-cpu", out, max_seq_len=64, greedy_ids=True)
        assert not out.exists()


def test_engine_json_records_the_option_and_older_engines_load(engines: Path) -> None:
    folder = engines / "ids.tllm" / "engines" / "onnx-cpu-fp32"
    data = json.loads((folder / "engine.json").read_text())
    assert data["greedy_ids"] is True
    manifest = tinyllm.open_bundle(engines / "ids.tllm").manifest
    assert manifest.engines["onnx-cpu-fp32"].info["greedy_ids"] is True
    plain = engines / "plain.tllm" / "engines" / "onnx-cpu-fp32" / "engine.json"
    assert "greedy_ids" not in json.loads(plain.read_text())  # as engines before the option
    engine = Engine.load(engines / "plain.tllm")
    assert not engine.info.greedy_ids and not engine.session.greedy_ids
    with pytest.raises(ConfigError, match="greedy_ids"):
        engine.session.decode_ids([5], [3])


def test_engine_json_that_hides_or_invents_the_option_is_rejected(
    engines: Path, tmp_path: Path, reseal: Callable[[Path], None]
) -> None:
    import shutil

    for source, edit in (
        ("ids", lambda d: d.pop("greedy_ids")),
        ("plain", lambda d: d.update(greedy_ids=True)),
    ):
        copy = tmp_path / f"{source}.tllm"
        shutil.copytree(engines / f"{source}.tllm", copy)
        path = copy / "engines" / "onnx-cpu-fp32" / "engine.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        reseal(copy)
        with pytest.raises(BundleError, match="greedy_ids"):
            Engine.load(copy, engine="onnx-cpu-fp32")


def test_device_session_brings_back_ids_alone(engines: Path) -> None:
    """The device-resident session (run on the CPU here) copies back only the ids in an
    ids step, ids and logits in a logits step: each as the plan says."""
    host = Engine.load(engines / "ids.tllm", max_batch=2, max_seq_len=64)
    s = host.session
    dev = DecoderSession(s.sess, s.c, s.spec, 2, s.pad_id, device="cpu")
    prompts = PROMPTS[:2]
    np.testing.assert_array_equal(
        dev.prefill_ids(0, prompts, [0, 0]), s.prefill_ids(0, prompts, [0, 0])
    )
    lengths = [len(p) for p in prompts]
    by_name: Callable[[list[Copy]], list[Copy]] = lambda cs: sorted(cs, key=lambda c: c.name)  # noqa: E731
    tokens = [3, 4]
    want = s.decode(tokens, lengths).argmax(-1)
    got = dev.decode_ids(tokens, lengths)
    np.testing.assert_array_equal(got, want)
    greedy = plan(host.info, host.bundle.config, 2, 64, "cuda", greedy=True).decode_copies
    assert by_name(dev.copies) == by_name(greedy)
    assert [c.name for c in dev.copies if c.direction == "d2h"] == ["greedy_ids"]
    logits = dev.decode(tokens, lengths)
    np.testing.assert_array_equal(dev.ids, logits.argmax(-1))
    full = plan(host.info, host.bundle.config, 2, 64, "cuda").decode_copies
    assert by_name(dev.copies) == by_name(full)


@pytest.mark.gpu
def test_cuda_ids_steps_leave_logits_on_the_device(engines: Path) -> None:
    cpu = Engine.load(engines / "ids.tllm", max_batch=4, max_seq_len=64)
    cuda = Engine.load(engines / "ids.tllm", device="cuda", max_batch=4, max_seq_len=64)
    try:
        want = [g.token_ids for g in cpu.generate_ids(PROMPTS, GREEDY)]
        assert [g.token_ids for g in cuda.generate_ids(PROMPTS, GREEDY)] == want
        cuda.session.decode_ids([5], [3])
        planned = plan(cuda.info, cuda.bundle.config, 1, 64, "cuda", greedy=True).decode_copies
        assert sorted(cuda.session.copies, key=lambda c: c.name) == sorted(
            planned, key=lambda c: c.name
        )
    finally:
        cpu.close()
        cuda.close()

"""Device-resident sessions (devicebuffers.py, session.py's ``device=``): KV, adapters
and logits as OrtValues bound with IO binding. The CPU tests run the very code a CUDA
session runs, with the OrtValues on the "cpu" device, against the host-array path; the
gpu-marked tests run it on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinyllm
from tinyllm.errors import ConfigError, TinyLLMError
from tinyllm.runtime import Engine, GenerationConfig
from tinyllm.runtime.deviceplan import Copy, plan
from tinyllm.runtime.session import DecoderSession

GREEDY = GenerationConfig(max_new_tokens=12, ignore_eos=True)


def device_twin(engine: Engine, device: str = "cpu") -> Engine:
    """The same engine with a device-resident session on ``device`` (same ONNX session)."""
    s = engine.session
    session = DecoderSession(s.sess, s.c, s.spec, s.max_batch, s.pad_id, device=device)
    return Engine(engine.bundle, engine.info, session, engine.tokenizer, engine.serving)


def by_name(copies: list[Copy]) -> list[Copy]:
    return sorted(copies, key=lambda c: (c.direction, c.name))


@pytest.fixture(scope="module")
def quantized(tiny_llama_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama with int4 and int8 ``ort`` engines."""
    folder = tmp_path_factory.mktemp("deviceio")
    first, _ = tinyllm.export(
        tiny_llama_bundle, "onnx-cpu", folder / "q.tllm", quant="int4", max_seq_len=128
    )
    bundle, _ = tinyllm.export(first.path, "onnx-cpu", quant="int8", max_seq_len=128)
    return bundle.path


def test_steps_equal_host_path_and_copies_equal_the_plan(exported: Path) -> None:
    host = Engine.load(exported, engine="onnx-cpu-fp32", max_batch=4, max_seq_len=128)
    dev = device_twin(Engine.load(exported, engine="onnx-cpu-fp32", max_batch=4, max_seq_len=128))
    h, d = host.session, dev.session
    assert d.device == "cpu" and d.kv == [] and len(d.kv_dev) == 2 * d.layers
    assert d.kv_bytes == h.kv_bytes
    prompts = [host.encode("Hello there"), host.encode("The quick brown fox jumps")]
    np.testing.assert_allclose(d.prefill(prompts), h.prefill(prompts), atol=1e-5)
    lengths = [len(p) for p in prompts]
    for step in range(4):
        tokens = [7 + step, 11 + step]
        want = h.decode(tokens, lengths).copy()
        got = d.decode(tokens, lengths)
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert (got.argmax(-1) == want.argmax(-1)).all()
        lengths = [n + 1 for n in lengths]
        # The copies of this decode step, counted by the session, are the plan's.
        planned = plan(dev.info, dev.bundle.config, 2, 128, "cuda").decode_copies
        assert by_name(d.copies) == by_name(planned)
        assert (
            h.copies == []
            and plan(host.info, host.bundle.config, 2, 128, "cpu").decode_copies == []
        )
    # A continued prompt (prefill after past tokens) and a verify step of three tokens.
    more = [5, 6, 7]
    np.testing.assert_allclose(
        d.prefill_rows(1, [more], [lengths[1]]), h.prefill_rows(1, [more], [lengths[1]]), atol=1e-5
    )
    past = lengths[0]
    np.testing.assert_allclose(d.verify(0, more, past), h.verify(0, more, past), atol=1e-5)
    assert [c.name for c in d.copies if c.direction == "d2h"] == ["logits"]
    assert [c.shape for c in d.copies if c.direction == "d2h"] == [(1, 3, d.c.vocab_size)]


def test_device_kv_is_what_the_model_reads(exported: Path) -> None:
    """The bound device buffers are live: rewriting a row's KV (write_kv) changes the next
    step, and read_kv returns what the steps wrote (the host path's values)."""
    host = Engine.load(exported, engine="onnx-cpu-fp32", max_batch=2, max_seq_len=64)
    dev = device_twin(Engine.load(exported, engine="onnx-cpu-fp32", max_batch=2, max_seq_len=64))
    ids = host.encode("Hello there, how are you")
    host.session.prefill([ids])
    dev.session.prefill([ids])
    read = zip(dev.session.read_kv(0, len(ids)), host.session.read_kv(0, len(ids)), strict=True)
    for a, b in read:
        np.testing.assert_allclose(a, b, atol=1e-5)
    saved = dev.session.read_kv(0, len(ids))
    before = dev.session.decode([9], [len(ids)]).copy()
    dev.session.write_kv(0, [np.zeros_like(k) for k in saved])
    assert np.abs(dev.session.decode([9], [len(ids)]) - before).max() > 1e-3
    dev.session.write_kv(0, saved)
    np.testing.assert_allclose(dev.session.decode([9], [len(ids)]), before, atol=1e-6)


@pytest.mark.parametrize("name", ["onnx-cpu-fp32", "onnx-cpu-int4", "onnx-cpu-int8"])
def test_greedy_tokens_equal_host_path(exported: Path, quantized: Path, name: str) -> None:
    path = exported if name.endswith("fp32") else quantized
    host = Engine.load(path, engine=name, max_batch=4, max_seq_len=128)
    dev = device_twin(Engine.load(path, engine=name, max_batch=4, max_seq_len=128))
    prompts = ["Hello there", "One two three four", "a"]
    try:
        want = [g.token_ids for g in host.generate(prompts, GREEDY)]
        assert [g.token_ids for g in dev.generate(prompts, GREEDY)] == want
    finally:
        host.close()
        dev.close()


def test_multi_lora_rows_and_slot_fills_reach_the_device(served: Path) -> None:
    """Rows under different adapters equal the host path, for adapters filled into slots
    after the session bound its device copies (sync_lora), through the serving loop."""
    host = Engine.load(served, max_batch=4)
    dev = device_twin(Engine.load(served, max_batch=4))
    inputs = ["The room was spotless", "Book a table for two in Oslo on Friday at 8pm"]
    try:
        for task in ("sentiment", "booking", "rewrite"):
            for text in inputs:
                want, got = host.run(task, text), dev.run(task, text)
                assert (got.text, got.output_tokens) == (want.text, want.output_tokens)
        got = dev.generate_ids([host.encode("hello")], GREEDY, adapter="sentiment")
        want = host.generate_ids([host.encode("hello")], GREEDY, adapter="sentiment")
        base = host.generate_ids([host.encode("hello")], GREEDY)
        assert got[0].token_ids == want[0].token_ids
        assert want[0].token_ids != base[0].token_ids  # the adapter matters here
        assert any(c.name.startswith("lora_") for c in dev.session.setup_copies)
    finally:
        host.close()
        dev.close()


def test_unsynced_adapter_writes_do_not_reach_the_device(
    exported: Path, tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    """Without sync_lora a device session runs its old adapter copies: the check above
    would catch a fill that forgot to upload."""
    bundle, _ = tinyllm.export(
        tiny_llama_bundle,
        "onnx-cpu",
        tmp_path / "l.tllm",
        lora_slots=2,
        lora_rank=2,
        max_seq_len=64,
    )
    host = Engine.load(bundle.path).session
    dev = device_twin(Engine.load(bundle.path)).session
    rng = np.random.default_rng(0)
    tensors = host.empty_lora()
    for value in tensors.values():
        value[:, 1] = rng.standard_normal(value.shape[2:]).astype(np.float32) * 0.5
    host.set_lora(tensors)
    dev.set_lora({k: np.zeros_like(v) for k, v in tensors.items()})
    ids, slot = [3, 4, 5, 6], np.array([1])
    for name, value in dev.lora.items():  # written in place, as AdapterSlots.fill does
        value[:] = tensors[name]
    stale = dev.prefill([ids], slot).copy()
    want = host.prefill([ids], slot)
    assert np.abs(stale - want).max() > 1e-3
    dev.sync_lora()
    np.testing.assert_allclose(dev.prefill([ids], slot), want, atol=1e-5)


def test_bad_device_requests(exported: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(TinyLLMError) as e:
            Engine.load(exported, device="cuda")
        message = str(e.value)
        assert "CUDAExecutionProvider" in message
        assert "pip install 'tinyllm[gpu]'" in message and "tinyllm doctor" in message
    s = Engine.load(exported, engine="onnx-cpu-fp32").session
    with pytest.raises(ConfigError, match="device must be one of cpu, cuda, got 'tpu'"):
        DecoderSession(s.sess, s.c, s.spec, s.max_batch, s.pad_id, device="tpu")


def test_standard_flavour_keeps_host_arrays(exported: Path) -> None:
    """The standard graph concatenates its KV, so a device request keeps host arrays
    (the plan says its KV crosses each step)."""
    s = Engine.load(exported, engine="onnx-standard-fp32").session
    twin = DecoderSession(s.sess, s.c, s.spec, s.max_batch, s.pad_id, device="cpu")
    assert twin.device is None and len(twin.kv) == 2 * twin.layers


@pytest.mark.gpu
def test_cuda_fp32_greedy_tokens_equal_cpu(exported: Path) -> None:
    prompts = ["Hello there", "One two three four"]
    cpu = Engine.load(exported, engine="onnx-cpu-fp32", max_batch=4, max_seq_len=128)
    cuda = Engine.load(
        exported, engine="onnx-cpu-fp32", device="cuda", max_batch=4, max_seq_len=128
    )
    assert cuda.session.device == "cuda" and cuda.session.kv == []
    assert [g.token_ids for g in cuda.generate(prompts, GREEDY)] == [
        g.token_ids for g in cpu.generate(prompts, GREEDY)
    ]
    planned = plan(cuda.info, cuda.bundle.config, 1, 128, "cuda").decode_copies
    cuda.session.decode([5], [3])
    assert by_name(cuda.session.copies) == by_name(planned)


@pytest.mark.gpu
def test_cuda_fp16_logits_within_tolerance_of_cpu(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cuda", tmp_path / "h.tllm", max_seq_len=128)
    cpu = Engine.load(bundle.path, max_batch=2, max_seq_len=128)  # fp16 graph, CPU provider
    cuda = Engine.load(bundle.path, device="cuda", max_batch=2, max_seq_len=128)
    ids = cpu.encode("Hello there, how are you")
    a = cpu.session.prefill([ids]).astype(np.float32)
    b = cuda.session.prefill([ids]).astype(np.float32)
    np.testing.assert_allclose(b, a, atol=2e-2, rtol=2e-2)
    assert (a.argmax(-1) == b.argmax(-1)).all()
    for step in range(4):
        a = cpu.session.decode([int(a.argmax())], [len(ids) + step]).astype(np.float32)
        b = cuda.session.decode([int(b.argmax())], [len(ids) + step]).astype(np.float32)
        np.testing.assert_allclose(b, a, atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
def test_cuda_multi_lora_rows_equal_cpu(served: Path) -> None:
    cpu = Engine.load(served, max_batch=4)
    cuda = Engine.load(served, device="cuda", engine="onnx-cpu-fp32", max_batch=4)
    try:
        for task in ("sentiment", "booking", "rewrite"):
            want = cpu.run(task, "Book a table for two in Oslo on Friday at 8pm")
            got = cuda.run(task, "Book a table for two in Oslo on Friday at 8pm")
            assert (got.text, got.output_tokens) == (want.text, want.output_tokens)
    finally:
        cpu.close()
        cuda.close()

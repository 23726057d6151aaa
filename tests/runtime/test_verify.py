"""Export verification can fail: broken engines fail it at every precision and accuracy
level, and MatMulNBits reproduces every packing we write (RTN symmetric and asymmetric,
GPTQ, NNCF) at both accuracy levels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tinyllm
from tinyllm.models import build_reference
from tinyllm.quantformat import PackedWeight, read_weights
from tinyllm.runtime import export as export_module
from tinyllm.runtime.export import ExportOptions, dequantized, packed_weights, write_engine
from tinyllm.runtime.verify import (
    VerificationError,
    criterion_for,
    prompt_ids,
    verify_engine,
    verify_export,
)
from tinyllm.tokenizer import load_hf_tokenizer

LEVELS = (0, 4)


def _engine(
    bundle: Any,
    packed: dict[str, PackedWeight],
    folder: Path,
    level: int,
    monkeypatch: pytest.MonkeyPatch,
    quant: str = "int4",
) -> Any:
    """Write an int engine whose MatMulNBits weights are exactly ``packed``."""
    monkeypatch.setattr(export_module, "packed_weights", lambda *_: packed)
    options = ExportOptions(quant=quant, accuracy_level=level, max_seq_len=128)
    info, _ = write_engine(bundle, folder, options)
    return info


def _weights(bundle: Any) -> dict[str, np.ndarray]:
    return read_weights(bundle)[1]


def _rtn(bundle: Any, symmetric: bool, quant: str = "int4") -> dict[str, PackedWeight]:
    options = ExportOptions(quant=quant, symmetric=symmetric)
    return packed_weights(_weights(bundle), bundle.config.tie_word_embeddings, options)


def _truth(bundle: Any, packed: dict[str, PackedWeight]) -> dict[str, np.ndarray]:
    """The weights an onnx-cpu int engine of ``packed`` computes with (float lookup)."""
    tied = bundle.config.tie_word_embeddings
    return dequantized(_weights(bundle), packed, tied=tied, lookup=False)


class ZeroSession:
    """An engine session that returns all-zero logits (and has no greedy ids output)."""

    greedy_ids = False

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def prefill(self, prompts: Any) -> np.ndarray:
        return np.zeros((len(prompts), self.vocab), np.float32)

    def decode(self, tokens: Any, lengths: Any) -> np.ndarray:
        return np.zeros((len(tokens), self.vocab), np.float32)


@pytest.mark.parametrize(
    ("precision", "level"), [("fp32", 0), ("fp16", 0), ("int4", 0), ("int4", 4), ("int8", 4)]
)
@pytest.mark.parametrize("which", ["tiny_llama_bundle", "tiny_qwen2_bundle"])
def test_zeroed_logits_fail_every_criterion(
    which: str, precision: str, level: int, request: pytest.FixtureRequest
) -> None:
    bundle = tinyllm.open_bundle(request.getfixturevalue(which))
    reference = build_reference(bundle.config, _weights(bundle))
    tokenizer = load_hf_tokenizer(bundle.tokenizer_dir)
    result = verify_engine(
        ZeroSession(bundle.config.vocab_size),  # type: ignore[arg-type]
        reference,
        tokenizer,
        precision,
        criterion_for(precision, level),
    )
    assert not result.passed
    assert all(c.max_rel_err >= 0.5 for c in result.checks)  # zeros miss by half the range


def _scaled_layer0(packed: dict[str, PackedWeight]) -> dict[str, PackedWeight]:
    """Layer 0's scales doubled (a wrong scale tensor, a bad write)."""
    return {
        n: PackedWeight(p.qweight, p.scales * 2, p.zero_points, p.bits, p.block_size, p.in_features)
        if n.startswith("model.layers.0.")
        else p
        for n, p in packed.items()
    }


def _swapped_zero_points(packed: dict[str, PackedWeight]) -> dict[str, PackedWeight]:
    """Neighbouring blocks' zero points swapped (the two nibbles of each byte)."""
    out = {}
    for n, p in packed.items():
        assert p.zero_points is not None
        swapped = ((p.zero_points & 0x0F) << 4) | (p.zero_points >> 4)
        out[n] = PackedWeight(p.qweight, p.scales, swapped, p.bits, p.block_size, p.in_features)
    return out


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("corrupt", [_scaled_layer0, _swapped_zero_points])
def test_corrupted_int_engines_fail_verification(
    tiny_qwen2_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    level: int,
    corrupt: Any,
) -> None:
    bundle = tinyllm.open_bundle(tiny_qwen2_bundle)
    good = _rtn(bundle, symmetric=False)
    truth = _truth(bundle, good)  # what the engine should compute
    info = _engine(bundle, corrupt(good), tmp_path / "bad", level, monkeypatch)
    assert not verify_export(bundle, tmp_path / "bad", info, truth, level).passed
    info = _engine(bundle, good, tmp_path / "good", level, monkeypatch)  # the control
    assert verify_export(bundle, tmp_path / "good", info, truth, level).passed


def _gptq(bundle: Any, symmetric: bool) -> dict[str, PackedWeight]:
    from tinyllm.compress.gptq import gptq_quantize

    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, w in _weights(bundle).items():
        if name.endswith("_proj.weight"):
            x = torch.randn(w.shape[1], 64, generator=gen)  # layer inputs [K, n]
            result = gptq_quantize(torch.from_numpy(w), 2 * x @ x.T / 64, symmetric=symmetric)
            out[name] = result.packed
    return out


def _nncf(bundle: Any, symmetric: bool) -> dict[str, PackedWeight]:
    from tinyllm.compress.nncf_backend import nncf_quantize

    model = tinyllm.load_torch_model(bundle).model
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    data = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    results = nncf_quantize(model, bundle.config, 4, 32, symmetric, False, data)
    return {name: r.packed for name, r in results.items()}


PACKINGS = {
    "rtn-sym": lambda b: _rtn(b, True),
    "rtn-asym": lambda b: _rtn(b, False),
    "rtn-asym-int8": lambda b: _rtn(b, False, "int8"),
    "gptq-asym": lambda b: _gptq(b, False),
    "gptq-sym": lambda b: _gptq(b, True),
    "nncf-asym": lambda b: _nncf(b, False),
    "nncf-sym": lambda b: _nncf(b, True),
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("packing", sorted(PACKINGS))
def test_matmulnbits_reproduces_every_packing(
    tiny_qwen2_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    packing: str,
    level: int,
) -> None:
    bundle = tinyllm.open_bundle(tiny_qwen2_bundle)
    packed = PACKINGS[packing](bundle)
    symmetric = "-sym" in packing
    assert packed and all((p.zero_points is None) == symmetric for p in packed.values())
    quant = "int8" if packing.endswith("int8") else "int4"
    info = _engine(bundle, packed, tmp_path / "e", level, monkeypatch, quant)
    result = verify_export(bundle, tmp_path / "e", info, _truth(bundle, packed), level)
    assert result.passed, result.format()
    if level == 0:  # float activations: exact up to float rounding
        assert all(c.max_abs_err < 1e-4 and c.greedy_agreement == 1.0 for c in result.checks)
    else:
        assert all(c.max_rel_err < 0.03 for c in result.checks)


class _Tok:
    """A tokenizer with no token for any verification prompt (placeholder vocabulary)."""

    def __init__(self, ids: list[int] | None = None, size: int = 50) -> None:
        self.ids, self.size = ids or [], size

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": list(self.ids)}

    def __len__(self) -> int:
        return self.size


def test_prompts_that_tokenize_to_nothing_fall_back_to_fixed_ids() -> None:
    prompts = prompt_ids(_Tok(), vocab_size=64)
    assert len(prompts) == 3 and all(len(ids) == 12 for _, ids in prompts)
    assert all(0 <= i < 50 for _, ids in prompts for i in ids)  # within both vocabularies
    assert prompts == prompt_ids(_Tok(), vocab_size=64)  # the same every time
    assert "no tokens for prompt 1" in prompts[0][0]
    with pytest.raises(VerificationError, match="id 70, outside the model's vocabulary of 64"):
        prompt_ids(_Tok([3, 70]), vocab_size=64)

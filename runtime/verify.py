"""Export verification: engine logits against the torch model, prefill and decode steps.

Both models see the same tokens: the prompt, then the torch model's greedy tokens (teacher
forcing), so every step compares logits for the same input. torch is imported here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.bundle import Bundle
from tinyllm.errors import TinyLLMError
from tinyllm.runtime.engineinfo import EngineInfo
from tinyllm.runtime.session import DecoderSession, SessionSpec, make_session

PROMPTS = (
    "The room was spotless and the staff were friendly.",
    "Book a table for four people in Lisbon on Friday evening.",
    "What is 17 plus 25? Answer:",
)
# Max |logit difference| allowed against a reference computed with the same (dequantized)
# weights. MatMulNBits at accuracy level 4 rounds activations to int8 per block, which
# moves SmolLM2's logits by up to ~1.6 (measured): that mode gets its own tolerance.
TOLERANCE = {"fp32": 1e-3, "fp16": 0.25, "int-float": 1e-3, "int-int8": 3.0}


def tolerance_for(precision: str, accuracy_level: int) -> float:
    """The verification tolerance of an engine."""
    if precision in ("int4", "int8"):
        return TOLERANCE["int-int8" if accuracy_level == 4 else "int-float"]
    return TOLERANCE[precision]


class VerificationError(TinyLLMError):
    """The exported engine does not reproduce the torch model."""


@dataclass(frozen=True)
class PromptCheck:
    """One prompt's comparison over prefill + decode steps."""

    prompt: str
    steps: int
    max_abs_err: float
    mean_abs_err: float
    greedy_agreement: float


@dataclass(frozen=True)
class Verification:
    """The verification table of one engine."""

    precision: str
    tolerance: float
    checks: list[PromptCheck]
    passed: bool

    def format(self) -> str:
        """Printable table."""
        lines = [
            f"verification ({self.precision}, tolerance {self.tolerance:g})",
            f"{'prompt':<44}{'steps':>6}{'max|err|':>11}{'mean|err|':>11}{'greedy':>8}",
        ]
        for c in self.checks:
            lines.append(
                f"{c.prompt[:42]:<44}{c.steps:>6}{c.max_abs_err:>11.2e}"
                f"{c.mean_abs_err:>11.2e}{100 * c.greedy_agreement:>7.0f}%"
            )
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def verify_engine(
    session: DecoderSession,
    reference: Any,
    tokenizer: Any,
    precision: str,
    tolerance: float,
    decode_steps: int = 16,
) -> Verification:
    """Compare ``session`` with the torch ``reference`` model on :data:`PROMPTS`."""
    import torch

    checks = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        errors, agree = [], []
        with torch.inference_mode():
            out = reference(torch.tensor([ids]), use_cache=True)
            ref = out.logits[0, -1].float().numpy()
            got = session.prefill([ids])[0].astype(np.float32)
            held = len(ids)
            for step in range(decode_steps + 1):
                errors.append(np.abs(got - ref))
                agree.append(int(got.argmax()) == int(ref.argmax()))
                if step == decode_steps:
                    break
                token = int(ref.argmax())
                out = reference(
                    torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True
                )
                ref = out.logits[0, -1].float().numpy()
                got = session.decode([token], [held])[0].astype(np.float32)
                held += 1
        checks.append(
            PromptCheck(
                prompt,
                decode_steps + 1,
                float(max(e.max() for e in errors)),
                float(np.mean([e.mean() for e in errors])),
                float(np.mean(agree)),
            )
        )
    passed = all(c.max_abs_err <= tolerance for c in checks)
    if precision == "fp32":
        passed = passed and all(c.greedy_agreement == 1.0 for c in checks)
    return Verification(precision, tolerance, checks, passed)


def verify_export(
    bundle: Bundle,
    folder: Path,
    info: EngineInfo,
    weights: Mapping[str, np.ndarray],
    accuracy_level: int,
) -> Verification:
    """Verify a freshly written engine folder against a torch model with ``weights``.

    ``weights`` are those the engine computes with (dequantized where quantized), so the
    check isolates the graph from the quantization error. CUDA engines run on CUDA when
    torch sees a GPU, else on the CPU provider.
    """
    import torch

    from tinyllm.models import build_reference
    from tinyllm.tokenizer import load_hf_tokenizer

    reference = build_reference(bundle.config, dict(weights))
    spec = SessionSpec(
        info.flavour,
        info.float_dtype,
        min(info.max_seq_len, 1024),
        info.lora_slots,
        info.lora_rank,
        info.lora_targets,
    )
    device = "cuda" if info.target == "onnx-cuda" and torch.cuda.is_available() else "cpu"
    session = DecoderSession(
        make_session(folder / info.model, device, None), bundle.config, spec, max_batch=1, pad_id=0
    )
    tokenizer = load_hf_tokenizer(bundle.tokenizer_dir)
    tolerance = tolerance_for(info.precision, accuracy_level)
    return verify_engine(session, reference, tokenizer, info.precision, tolerance)

"""Export verification: engine logits against the torch model, prefill and decode steps.

Both models see the same tokens: the prompt, then the torch model's greedy tokens (teacher
forcing), so every step compares logits for the same input. An engine with a
``greedy_ids`` output must also give, at every step, exactly the argmax of its own logits
(an id that differs fails the engine, whatever the tolerance). torch is imported here only.
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
from tinyllm.runtime.ortsession import make_session
from tinyllm.runtime.session import DecoderSession, SessionSpec

PROMPTS = (
    "The room was spotless and the staff were friendly.",
    "Book a table for four people in Lisbon on Friday evening.",
    "What is 17 plus 25? Answer:",
)
# Max |logit difference| allowed against a reference computed with the same (dequantized)
# weights: absolute for float engines and for int engines computing in float (accuracy
# level 0, where MatMulNBits is exact up to float rounding). At accuracy level 4,
# MatMulNBits rounds activations to int8 per block, which moves logits in proportion to
# their scale: that mode is held to a fraction of the reference's logit range (max - min
# over the vocabulary, per step; measured up to 0.038 on SmolLM2-135M int4, 0.009 on the
# tiny test models) plus greedy agreement. An all-zero output misses by at least half the
# range, so no bound here can pass it.
TOLERANCE = {"fp32": 1e-3, "fp16": 0.25, "int-float": 1e-3, "int-int8": 0.08}
RELATIVE = frozenset({"int-int8"})
# Fraction of steps (over every prompt) whose greedy token must match the reference's.
# Teacher forcing feeds both the same tokens, so a near-tie may flip at int8 activations.
MIN_GREEDY = {"fp32": 1.0, "fp16": 0.0, "int-float": 0.9, "int-int8": 0.75}
# Ids fed when a verification prompt tokenizes to nothing (a tokenizer without the
# characters of the prompts): fixed, so every export checks the same steps.
FALLBACK_IDS = 12


@dataclass(frozen=True)
class Criterion:
    """What an engine must meet: ``tolerance`` on the max |logit error| (a fraction of
    the reference's logit range when ``relative``), and a greedy agreement floor."""

    mode: str
    tolerance: float
    relative: bool
    min_greedy: float


def criterion_for(precision: str, accuracy_level: int) -> Criterion:
    """The verification criterion of an engine."""
    if precision in ("int4", "int8"):
        mode = "int-int8" if accuracy_level == 4 else "int-float"
    else:
        mode = precision
    return Criterion(mode, TOLERANCE[mode], mode in RELATIVE, MIN_GREEDY[mode])


def tolerance_for(precision: str, accuracy_level: int) -> float:
    """The verification tolerance of an engine (relative to the logit range at level 4)."""
    return criterion_for(precision, accuracy_level).tolerance


class VerificationError(TinyLLMError):
    """The exported engine does not reproduce the torch model."""


@dataclass(frozen=True)
class PromptCheck:
    """One prompt's comparison over prefill + decode steps.

    ``max_rel_err`` is the largest per-step |error| over that step's reference logit range;
    ``id_misses``: steps whose ``greedy_ids`` output was not the argmax of the engine's own
    logits (0 for an engine without that output).
    """

    prompt: str
    steps: int
    max_abs_err: float
    mean_abs_err: float
    greedy_agreement: float
    logit_range: float = 0.0
    max_rel_err: float = 0.0
    id_misses: int = 0


@dataclass(frozen=True)
class Verification:
    """The verification table of one engine."""

    precision: str
    tolerance: float
    checks: list[PromptCheck]
    passed: bool
    relative: bool = False
    min_greedy: float = 0.0

    def format(self) -> str:
        """Printable table."""
        bound = f"{self.tolerance:g} x logit range" if self.relative else f"{self.tolerance:g}"
        greedy = f", greedy >= {100 * self.min_greedy:.0f}%" if self.min_greedy else ""
        lines = [
            f"verification ({self.precision}, tolerance {bound}{greedy})",
            f"{'prompt':<44}{'steps':>6}{'max|err|':>11}{'mean|err|':>11}{'range':>9}{'greedy':>8}",
        ]
        for c in self.checks:
            lines.append(
                f"{c.prompt[:42]:<44}{c.steps:>6}{c.max_abs_err:>11.2e}"
                f"{c.mean_abs_err:>11.2e}{c.logit_range:>9.3g}{100 * c.greedy_agreement:>7.0f}%"
            )
        misses = sum(c.id_misses for c in self.checks)
        if misses:
            lines.append(f"greedy_ids output differs from the logits' argmax at {misses} steps")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def prompt_ids(tokenizer: Any, vocab_size: int) -> list[tuple[str, list[int]]]:
    """(label, token ids) of each verification prompt.

    A prompt the tokenizer turns into no tokens is replaced by fixed ids, so that an
    engine is verified whatever its tokenizer; an id beyond the model's vocabulary is an
    error (the tokenizer does not belong to this model).
    """
    out: list[tuple[str, list[int]]] = []
    for prompt in PROMPTS:
        ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if not ids:
            rng = np.random.default_rng(len(out))
            usable = max(1, min(vocab_size, len(tokenizer)))
            ids = [int(i) for i in rng.integers(0, usable, FALLBACK_IDS)]
            prompt = f"(no tokens for prompt {len(out) + 1}: ids {ids[:4]}...)"
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise VerificationError(
                f"the tokenizer encodes {prompt!r} to id {bad[0]}, outside the model's "
                f"vocabulary of {vocab_size}: the tokenizer does not belong to this model"
            )
        out.append((prompt, ids))
    return out


def verify_engine(
    session: DecoderSession,
    reference: Any,
    tokenizer: Any,
    precision: str,
    criterion: Criterion,
    decode_steps: int = 16,
    vocab_size: int | None = None,
) -> Verification:
    """Compare ``session`` with the torch ``reference`` model on :data:`PROMPTS`."""
    vocab = vocab_size or int(reference.config.vocab_size)
    checks = [
        compare(session, reference, prompt, ids, decode_steps)
        for prompt, ids in prompt_ids(tokenizer, vocab)
    ]
    passed = judge(checks, criterion)
    return Verification(
        precision, criterion.tolerance, checks, passed, criterion.relative, criterion.min_greedy
    )


def compare(
    session: DecoderSession, reference: Any, prompt: str, ids: list[int], decode_steps: int
) -> PromptCheck:
    """Logits of ``session`` against ``reference`` for the prefill of ``ids`` and
    ``decode_steps`` decode steps, both fed the reference's greedy tokens."""
    import torch

    errors, ranges, agree = [], [], []
    misses = 0
    with torch.inference_mode():
        out = reference(torch.tensor([ids]), use_cache=True)
        ref = out.logits[0, -1].float().numpy()  # [V]
        got = session.prefill([ids])[0].astype(np.float32)  # [V]
        held = len(ids)
        for step in range(decode_steps + 1):
            misses += id_missed(session, got)
            errors.append(np.abs(got - ref))
            ranges.append(float(ref.max() - ref.min()))
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
    relative = [e.max() / max(r, 1e-12) for e, r in zip(errors, ranges, strict=True)]
    return PromptCheck(
        prompt,
        decode_steps + 1,
        float(np.max([e.max() for e in errors])),  # np.max keeps a NaN, max() may drop it
        float(np.mean([e.mean() for e in errors])),
        float(np.mean(agree)),
        float(min(ranges)),
        float(np.max(relative)),
        misses,
    )


def id_missed(session: DecoderSession, logits: np.ndarray) -> bool:
    """Whether the greedy id the session's graph gave with ``logits [V]`` (its last step,
    one row) is not their argmax; False for a graph without greedy ids."""
    if not session.greedy_ids:
        return False
    if session.ids is None or session.ids.shape != (1,):
        raise VerificationError("the engine has a greedy_ids output but gave no id for the step")
    return int(session.ids[0]) != int(np.argmax(logits))


def judge(checks: list[PromptCheck], criterion: Criterion) -> bool:
    """Whether the checks meet the criterion (NaN errors never pass)."""
    errors = [c.max_rel_err if criterion.relative else c.max_abs_err for c in checks]
    within = all(e <= criterion.tolerance for e in errors)  # False for NaN
    steps = sum(c.steps for c in checks)
    greedy = sum(c.greedy_agreement * c.steps for c in checks) / max(steps, 1)
    ids_exact = all(c.id_misses == 0 for c in checks)
    return within and greedy >= criterion.min_greedy and ids_exact


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
    criterion = criterion_for(info.precision, accuracy_level)
    return verify_engine(
        session,
        reference,
        tokenizer,
        info.precision,
        criterion,
        vocab_size=bundle.config.vocab_size,
    )

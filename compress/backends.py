"""The quantization backends behind one interface, and the one registry that names them.

A backend turns the float linear weights of a loaded decoder into packed weights
(:class:`tinyllm.compress.gptq.QuantResult`). The quantization recipe
(:func:`tinyllm.compress.quantize.quantize_bundle`) owns everything around it:
calibration, folding a merged adapter, the per-task error report, writing the bundle.

- ``rtn``: round-to-nearest per group, no calibration data.
- ``gptq``: GPTQ on the Hessian of all tasks' calibration data pooled.
- ``mlgptq``: multi-task GPTQ, the per-task Hessians combined by element-wise max.
- ``nncf``: NNCF weight compression (data-free; ``awq`` adds AWQ + scale estimation).

The quant string (``int4-mlgptq``) is parsed here, once: :func:`parse_quant`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.bundle import Bundle
    from tinyllm.compress.gptq import QuantResult
    from tinyllm.compress.hessian import Calibration, TaskHessians
    from tinyllm.compress.mlgptq import QuantSettings
    from tinyllm.tasks import Suite

BITS_NAMES = ("int4", "int8")


@dataclass(frozen=True)
class QuantJob:
    """What a backend quantizes.

    ``loaded`` is the float model with its tokenizer (a merged adapter already folded);
    ``weights`` its float state dict by HF name (W [N, K] for the linears);
    ``task_hessians`` each calibrated task's Hessians (empty when none were collected).
    """

    loaded: Any
    source: Bundle
    suite: Suite
    settings: QuantSettings
    calibration: Calibration
    task_hessians: Mapping[str, TaskHessians]
    weights: dict[str, Any]
    fold: tuple[str, LoraAdapter] | None
    progress: bool


@dataclass(frozen=True)
class BackendOutput:
    """What a backend made.

    ``results``: the quantized linears by weight name. ``weights``: the float weights the
    rest of the bundle is written from (a backend may change them, as AWQ does).
    ``rescaled``: adapters moved into the backend's scaled space (AWQ). ``error_results``:
    the quantized weights in the float space of ``weights`` when ``results`` are not (AWQ),
    for the per-task error report.
    """

    results: dict[str, QuantResult]
    weights: dict[str, Any]
    rescaled: dict[str, LoraAdapter] = field(default_factory=dict)
    error_results: Mapping[str, QuantResult] | None = None


@runtime_checkable
class QuantBackend(Protocol):
    """A quantization method: its name, whether it needs calibration Hessians, and the step
    that quantizes a job's weights."""

    @property
    def name(self) -> str:
        """The method's name in quant strings (``int4-NAME``)."""
        ...

    @property
    def needs_hessians(self) -> bool:
        """Whether the recipe collects each task's calibration Hessians before it runs
        (for the method itself or for its per-task error report)."""
        ...

    def quantize(self, job: QuantJob) -> BackendOutput:
        """Quantize every decoder linear of ``job``."""
        ...


@dataclass(frozen=True)
class SweepBackend:
    """RTN, pooled GPTQ or multi-task GPTQ: one sweep over the decoder's linears
    (:func:`tinyllm.compress.mlgptq.quantize_weights`); they differ in the Hessian."""

    name: str
    needs_hessians: bool

    def quantize(self, job: QuantJob) -> BackendOutput:
        """Quantize the linears of ``job.weights`` layer by layer, with a progress bar."""
        from tqdm import tqdm

        from tinyllm.adapters import PROJECTIONS
        from tinyllm.compress.mlgptq import quantize_weights

        config = job.source.config
        total = len(PROJECTIONS) * config.num_hidden_layers
        with tqdm(total=total, desc="quantize", disable=not job.progress) as bar:
            results = quantize_weights(
                job.weights, config, job.settings, job.task_hessians, lambda _: bar.update()
            )
        return BackendOutput(results, job.weights)


@dataclass(frozen=True)
class NncfBackend:
    """NNCF weight compression (:mod:`tinyllm.compress.nncf_backend`), stored in our
    packing; with ``settings.awq`` it calibrates AWQ on every task's samples and moves
    the separate adapters into AWQ's scaled space."""

    name: str = "nncf"
    # NNCF does not read them, but the per-task error report does (as for GPTQ).
    needs_hessians: bool = True

    def quantize(self, job: QuantJob) -> BackendOutput:
        """Compress the loaded model with NNCF (in place) and read its weights back."""
        from tinyllm.compress.nncf_backend import awq_scales, rescale_adapter, unscale_results

        results = nncf_quantize_job(job)
        # Keep any float tensor NNCF changed (its compressed embedding is uint8 there: the
        # float one stays).
        after = job.loaded.model.state_dict()
        weights = {
            k: after[k] if after[k].is_floating_point() else v for k, v in job.weights.items()
        }
        if not job.settings.awq:
            return BackendOutput(results, weights)
        scales = awq_scales(weights, results, job.source.config)
        folded = job.fold[0] if job.fold else None
        rescaled = {
            t: rescale_adapter(job.source.adapter(t), scales)
            for t in job.source.manifest.adapters
            if t != folded
        }
        return BackendOutput(results, weights, rescaled, unscale_results(results, scales))


def nncf_quantize_job(job: QuantJob) -> dict[str, QuantResult]:
    """NNCF-compressed weights in our packing; AWQ calibrates on every task's samples,
    data-free compression traces one input."""
    from tinyllm.compress.hessian import calibration_texts
    from tinyllm.compress.nncf_backend import nncf_quantize
    from tinyllm.suite import load_split

    settings, cal, tokenizer = job.settings, job.calibration, job.loaded.tokenizer
    data = []
    for task in cal.tasks if settings.awq else cal.tasks[:1]:
        examples = load_split(job.suite, task, "train")
        samples = cal.samples if settings.awq else 1
        for text in calibration_texts(task, examples, samples, tokenizer, cal.seed):
            data.append(dict(tokenizer(text, return_tensors="pt", add_special_tokens=False)))
    return nncf_quantize(
        job.loaded.model,
        job.source.config,
        settings.bits,
        settings.group_size,
        settings.symmetric,
        settings.awq,
        data,
    )


BACKENDS: dict[str, QuantBackend] = {}


def register(backend: QuantBackend) -> QuantBackend:
    """Add a backend to the registry under its name (a name is registered once)."""
    if not isinstance(backend, QuantBackend):
        raise ConfigError(
            f"{backend!r} is not a quantization backend (name, needs_hessians, quantize)"
        )
    if backend.name in BACKENDS:
        raise ConfigError(f"a quantization backend named {backend.name!r} is registered already")
    BACKENDS[backend.name] = backend
    return backend


for _backend in (
    SweepBackend("rtn", needs_hessians=False),
    SweepBackend("gptq", needs_hessians=True),
    SweepBackend("mlgptq", needs_hessians=True),
    NncfBackend(),
):
    register(_backend)


def backend(name: str) -> QuantBackend:
    """The registered backend ``name``; an unknown name is an error listing the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown quantization backend {name!r}; known backends: {', '.join(BACKENDS)}"
        ) from None


def parse_quant(quant: str) -> tuple[int, str]:
    """``int4-mlgptq`` -> (4, "mlgptq"); ``int4-nncf-awq`` -> (4, "nncf-awq").

    The bits are int4 or int8; the method is a registered backend (``nncf`` also takes
    ``-awq``). Anything else is an error naming the choices.
    """
    bits_part, _, method = quant.partition("-")
    methods = [*BACKENDS, "nncf-awq"]
    if bits_part not in BITS_NAMES or method not in methods:
        choices = f"{'|'.join(BITS_NAMES)} followed by -{', -'.join(methods)} (int4-mlgptq)"
        raise ConfigError(f"unknown quantization {quant!r}; use {choices}")
    return int(bits_part[3:]), method

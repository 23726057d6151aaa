"""TensorRT engines through ONNX Runtime's TensorRT execution provider.

Export builds the standard-flavour graph (fp16, or int4/int8 QDQ weights) as for
``onnx-standard``, verifies it on the CPU provider, then has the TensorRT EP build an
engine for batch 1..max_batch and the whole sequence range, dumping an EPContext model
(``model_ctx.onnx``) that points at the serialized engine file beside it. ``trt.json``
records the build settings and the TensorRT, CUDA and GPU the engine was built for: a
TensorRT engine runs only there, so load compares them with what it finds and says to
rebuild on a mismatch.

The shape profiles, EP options and the record are pure functions (tested on the CPU);
only :func:`build_engine` and :func:`tensorrt_session` need a GPU. None of this has run on
a GPU yet (docs/gpu.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.adapters import merge_adapter
from tinyllm.config import ModelConfig
from tinyllm.errors import BundleError, ConfigError, TinyLLMError

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle

RECORD_FILE = "trt.json"
CONTEXT_MODEL = "model_ctx.onnx"
TRT_EP = "TensorrtExecutionProvider"
MERGE_HINT = (
    "export with an adapter merged instead: `tinyllm export BUNDLE --target tensorrt "
    "--merge-adapter TASK` folds TASK's adapter into the base (no LoRA slots); that engine "
    "serves TASK only, so export one per task (docs/gpu.md)"
)


class TensorRTMismatchError(TinyLLMError):
    """The engine was built for another GPU or TensorRT than this machine has."""


@dataclass(frozen=True)
class BuildRecord:
    """trt.json: what a TensorRT engine was built with and for."""

    tensorrt_version: str
    cuda_version: str
    gpu_name: str
    onnxruntime_version: str
    precision: str
    max_batch: int
    max_seq_len: int
    lora_slots: int
    context_model: str
    engine_files: tuple[str, ...]
    profile_min: str
    profile_opt: str
    profile_max: str


def profile_shapes(
    config: ModelConfig, max_batch: int, max_seq_len: int, lora_slots: int = 0
) -> tuple[str, str, str]:
    """(min, opt, max) ``trt_profile_*_shapes`` strings for batch 1..max_batch and the
    sequence range, over every dynamic input of the standard graph.

    A call feeds ``seq`` new tokens after ``past`` held ones: ``1 <= seq``, ``0 <= past``,
    ``past + seq <= max_seq_len``. opt is a decode step of a full batch halfway through the
    context (the shape serving runs most).
    """
    if max_batch < 1 or max_seq_len < 2:
        raise TinyLLMError(
            f"a TensorRT profile needs max_batch >= 1 and max_seq_len >= 2, "
            f"got {max_batch} and {max_seq_len}"
        )
    kv, head = config.num_key_value_heads, config.head_dim
    half = max_seq_len // 2
    # (batch, seq, past) of each profile; the mask covers past + seq positions
    points = [(1, 1, 0), (max_batch, 1, half), (max_batch, max_seq_len, max_seq_len - 1)]
    out = []
    for b, s, p in points:
        parts = [
            f"input_ids:{b}x{s}",
            f"logits_index:{b}",
            f"position_ids:{b}x{s}",
            f"attention_mask:{b}x{min(p + s, max_seq_len)}",
        ]
        if lora_slots:
            parts.append(f"lora_index:{b}")
        for i in range(config.num_hidden_layers):
            parts += [f"past_{kind}.{i}:{b}x{kv}x{p}x{head}" for kind in ("key", "value")]
        out.append(",".join(parts))
    return out[0], out[1], out[2]


def fix_logits_index(model: Any) -> None:
    """Declare the graph's ``logits_index`` as ``[batch]`` (in place): TensorRT profiles
    need every input's rank, and the standard graph leaves it open for the speculative
    verify step (``[B, P]``), which a TensorRT engine therefore does not offer."""
    for value in model.graph.input:
        if value.name == "logits_index":
            value.type.tensor_type.shape.Clear()
            value.type.tensor_type.shape.dim.add().dim_param = "batch"
            return
    raise TinyLLMError("the graph has no logits_index input: not a tinyllm decoder graph")


def merged_weights(
    bundle: Bundle, weights: dict[str, np.ndarray], task: str
) -> dict[str, np.ndarray]:
    """The base weights with ``task``'s adapter folded in (the TensorRT fallback when the
    EP cannot take the multi-LoRA graph); an engine of them serves that task only."""
    manifest = bundle.manifest
    if manifest.lora_mode == "merged":
        raise ConfigError(
            f"--merge-adapter {task}: {bundle.path}'s adapters are already merged into its "
            "base weights (lora_mode merged); export it without --merge-adapter"
        )
    if task not in manifest.adapters:
        have = ", ".join(sorted(manifest.adapters)) or "none"
        raise ConfigError(
            f"--merge-adapter {task}: {bundle.path} has no LoRA adapter for task {task!r} "
            f"(adapters: {have}); name the task whose adapter to fold into the base"
        )
    return merge_adapter(weights, bundle.config, bundle.adapter(task))


def ep_options(
    folder: Path, precision: str, shapes: tuple[str, str, str], *, dump: bool
) -> dict[str, str]:
    """TensorRT EP options: fp16 kernels (int weights run as weight-only QDQ GEMMs with
    fp16 activations), the profiles, the engine cache in ``folder``, and (``dump``) writing
    the EPContext model with the engine in a file beside it (embed mode 0).

    When dumping, the EP takes ``trt_engine_cache_path`` relative to the context model's
    folder and writes that path into the model (``ep_cache_context``); an absolute one is
    refused as an error in its log and would name the export's staging folder, which the
    finished bundle no longer has. So the dump gives none: the engine file goes beside the
    context model, named relative to it, and the bundle can move."""
    low, opt, high = shapes
    options = {
        "trt_fp16_enable": "True" if precision != "fp32" else "False",
        "trt_profile_min_shapes": low,
        "trt_profile_opt_shapes": opt,
        "trt_profile_max_shapes": high,
        "trt_engine_cache_enable": "True",
        "trt_timing_cache_enable": "False",
    }
    if dump:
        return options | {
            "trt_dump_ep_context_model": "True",
            "trt_ep_context_file_path": str(folder / CONTEXT_MODEL),
            "trt_ep_context_embed_mode": "0",
        }
    return options | {"trt_engine_cache_path": str(folder)}


def write_record(folder: Path, record: BuildRecord) -> None:
    """Write trt.json."""
    data = {**asdict(record), "engine_files": list(record.engine_files)}
    (folder / RECORD_FILE).write_text(json.dumps(data, indent=2) + "\n")


def read_record(folder: Path) -> BuildRecord:
    """trt.json of an engine folder; missing or malformed is a BundleError saying to rebuild."""
    path = folder / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["engine_files"] = tuple(data["engine_files"])
        return BuildRecord(**data)
    except FileNotFoundError as e:
        raise BundleError(
            f"{path}: missing; rebuild with `tinyllm export --target tensorrt`"
        ) from e
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(
            f"{path}: not a TensorRT build record ({e}); rebuild with "
            "`tinyllm export --target tensorrt`"
        ) from e


def check_record(record: BuildRecord, gpu_name: str, tensorrt_version: str) -> None:
    """Raise :class:`TensorRTMismatchError` unless this machine's GPU and TensorRT are the
    ones the engine was built for (a TensorRT engine is tied to both)."""
    wrong = []
    if record.gpu_name != gpu_name:
        wrong.append(f"GPU {record.gpu_name!r}, this machine has {gpu_name!r}")
    if record.tensorrt_version != tensorrt_version:
        wrong.append(f"TensorRT {record.tensorrt_version}, this machine has {tensorrt_version}")
    if wrong:
        raise TensorRTMismatchError(
            "this TensorRT engine was built for " + "; ".join(wrong) + ": rebuild it here "
            "with `tinyllm export BUNDLE --target tensorrt` (TensorRT engines are tied to "
            "the GPU and TensorRT version that built them)"
        )


def lora_rejected(error: Exception, lora_slots: int) -> TinyLLMError:
    """The error when the TensorRT EP cannot take the multi-LoRA graph, with the fallback."""
    return TinyLLMError(
        f"ONNX Runtime's TensorRT EP could not build the multi-LoRA graph ({lora_slots} "
        f"adapter slots: GatherND over stacked lora_A/lora_B inputs) and said: {error}. "
        + MERGE_HINT
    )


def machine() -> tuple[str, str, str, str]:
    """(GPU name, TensorRT version, CUDA version, onnxruntime version) found here."""
    import onnxruntime as ort

    from tinyllm.runtime.hostinfo import gpus, native_libraries

    found, _ = gpus()
    libs = {lib.name: lib for lib in native_libraries() if lib.found}
    trt = libs.get("tensorrt")
    cuda = libs.get("cuda-runtime")
    return (
        found[0].name if found else "",
        getattr(trt, "version", "") or "",
        getattr(cuda, "version", "") or "",
        ort.__version__,
    )


def build_engine(
    folder: Path,
    model: str,
    config: ModelConfig,
    *,
    precision: str,
    max_batch: int,
    max_seq_len: int,
    lora_slots: int,
) -> BuildRecord:
    """Have the TensorRT EP build ``folder/model`` and dump the EPContext model; write
    and return trt.json. Needs a GPU with ONNX Runtime's TensorRT EP (see
    :func:`tinyllm.runtime.targets.require_tensorrt`)."""
    import onnxruntime as ort

    shapes = profile_shapes(config, max_batch, max_seq_len, lora_slots)
    options = ep_options(folder, precision, shapes, dump=True)
    before = set(folder.iterdir())
    try:
        ort.InferenceSession(
            str(folder / model), providers=[(TRT_EP, options), "CUDAExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own exception types
        if lora_slots:
            raise lora_rejected(e, lora_slots) from e
        raise TinyLLMError(f"ONNX Runtime's TensorRT EP could not build {model}: {e}") from e
    if not (folder / CONTEXT_MODEL).is_file():
        raise TinyLLMError(f"the TensorRT EP wrote no {CONTEXT_MODEL} into {folder}")
    engines = sorted(p.name for p in set(folder.iterdir()) - before if p.name != CONTEXT_MODEL)
    gpu, trt, cuda, ort_version = machine()
    record = BuildRecord(
        trt, cuda, gpu, ort_version, precision, max_batch, max_seq_len, lora_slots,
        CONTEXT_MODEL, tuple(engines), *shapes,
    )  # fmt: skip
    write_record(folder, record)
    return record


def tensorrt_session(model: Path, threads: int | None) -> Any:
    """An InferenceSession of the EPContext model of ``model``'s engine folder, after
    checking this machine's GPU and TensorRT against trt.json."""
    import onnxruntime as ort

    from tinyllm.runtime.targets import require_tensorrt

    require_tensorrt("device='tensorrt' cannot run here")
    folder = model.parent
    record = read_record(folder)
    gpu, trt, _, _ = machine()
    check_record(record, gpu, trt)
    shapes = (record.profile_min, record.profile_opt, record.profile_max)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = [(TRT_EP, ep_options(folder, record.precision, shapes, dump=False))]
    return ort.InferenceSession(
        str(folder / record.context_model),
        sess_options=options,
        providers=[*providers, "CUDAExecutionProvider", "CPUExecutionProvider"],
    )

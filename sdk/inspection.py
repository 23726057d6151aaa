"""What a bundle holds, summarized for people (``tinyllm inspect``) and for tools (JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any

from tinyllm.bundle import Bundle
from tinyllm.config import to_dict
from tinyllm.manifest import BundleRef

PARAMETER_KINDS = ("embedding", "attention", "mlp", "norm", "lm_head")


def parameter_kind(name: str) -> str:
    """Which part of the model a weight belongs to (one of PARAMETER_KINDS)."""
    if name.startswith("lm_head."):
        return "lm_head"
    if "embed_tokens" in name:
        return "embedding"
    if ".self_attn." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    return "norm"


@dataclass(frozen=True)
class Inspection:
    """A bundle's summary: model, parameters by kind, size, tasks, adapters, engines, lineage."""

    path: str
    name: str
    stage: str
    hash: str
    source: dict[str, str]
    model: dict[str, Any]
    dtype: str
    quantization: dict[str, Any] | None
    parameters: int
    parameters_by_kind: dict[str, int]
    size_bytes: int
    tasks: list[str] = field(default_factory=list)
    adapters: dict[str, int] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)
    lineage: list[BundleRef] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        result: dict[str, Any] = to_dict(self)
        return result

    def format(self) -> str:
        """Human-readable report, as ``tinyllm inspect`` prints it."""
        m = self.model
        lines = [
            f"bundle      {self.path}",
            f"name        {self.name} (stage: {self.stage}, hash {self.hash[:12]})",
            f"source      {self.source.get('kind', '?')}: {self.source.get('ref', '?')}",
            f"model       {m['family']}: {m['num_hidden_layers']} layers, hidden "
            f"{m['hidden_size']}, mlp {m['intermediate_size']}, heads "
            f"{m['num_attention_heads']}/{m['num_key_value_heads']} (q/kv), head_dim "
            f"{m['head_dim']}, vocab {m['vocab_size']}, context {m['max_position_embeddings']}"
            + (", tied embeddings" if m["tie_word_embeddings"] else ""),
            f"parameters  {self.parameters:,} ({self.parameters / 1e6:.1f}M)",
        ]
        for kind, count in self.parameters_by_kind.items():
            share = 100 * count / max(self.parameters, 1)
            lines.append(f"  {kind:<10}{count:>14,}  {share:5.1f}%")
        quant = "none"
        if self.quantization is not None:
            q = self.quantization
            quant = (
                f"{q.get('method')} int{q.get('bits')}, group {q.get('group_size')}, "
                f"{'symmetric' if q.get('symmetric') else 'asymmetric'}, "
                f"{len(q.get('tensors', []))} weights packed ({q.get('backend')})"
            )
        lines += [
            f"dtype       {self.dtype}; quantization: {quant}",
            f"size        {self.size_bytes / 2**20:.1f} MiB on disk",
            f"tasks       {', '.join(self.tasks) or '(none)'}",
            "adapters    "
            + (", ".join(f"{k} (rank {r})" for k, r in self.adapters.items()) or "(none)"),
            "engines     " + (", ".join(f"{k} ({t})" for k, t in self.engines.items()) or "(none)"),
            "lineage     "
            + (
                " <- ".join(f"{r.name} [{r.stage}, {r.hash[:12]}]" for r in self.lineage)
                or "(no parent: imported)"
            ),
        ]
        return "\n".join(lines)


def inspect_bundle(bundle: Bundle) -> Inspection:
    """Summarize a validated bundle, reading only tensor headers (no weights, no torch)."""
    by_kind = dict.fromkeys(PARAMETER_KINDS, 0)
    shapes = bundle.config.weight_shapes()
    for name, info in bundle.tensor_infos().items():
        if name.endswith((".scales", ".zero_points")):
            continue  # packed weights count as the parameters they encode
        if name.endswith(".qweight"):
            name = name.removesuffix(".qweight")
            by_kind[parameter_kind(name)] += prod(shapes[name])
            continue
        by_kind[parameter_kind(name)] += prod(info.shape)
    man = bundle.manifest
    return Inspection(
        path=str(bundle.path),
        name=man.name,
        stage=man.stage,
        hash=bundle.hash,
        source=dict(man.source),
        model=man.model.to_dict(),
        dtype=man.dtype,
        quantization=man.quantization,
        parameters=sum(by_kind.values()),
        parameters_by_kind={k: v for k, v in by_kind.items() if v},
        size_bytes=bundle.size_bytes(),
        tasks=sorted(man.tasks),
        adapters={k: a.rank for k, a in man.adapters.items()},
        engines={k: e.target for k, e in man.engines.items()},
        lineage=list(man.lineage),
    )

"""ONNX Runtime's op profiler, read for ``tinyllm profile``.

Exported graphs have unnamed nodes, so before profiling each node is named
``L{layer}/{component}/{op}#{index}`` in a copy of the graph held in memory (the bundle
is not touched): the layer and the component (attention projections, attention, MLP,
norms, lm head, LoRA, embedding) come from the weights a node reads, else from the nodes
that feed it. ONNX Runtime's profile (``SessionOptions.enable_profiling``, Chrome trace
JSON) then has one ``*_kernel_time`` event per node run; each is put in the run
(``model_run`` event) that holds it, and each run is a prefill or a decode as the decode
loop recorded it. Nodes ONNX Runtime fused into new ones keep no name of ours: they are
reported under their op type with layer ``?``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tinyllm.errors import TinyLLMError

LAYER = re.compile(r"layers\.(\d+)\.")
NORM_OPS = {"SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"}
COMPONENTS = (
    "embedding",
    "attention proj",
    "attention",
    "mlp",
    "norms",
    "lora",
    "lm head",
    "other",
)


@dataclass(frozen=True)
class NodeLabel:
    """Where a node sits in the model."""

    layer: str  # "0".."N-1", "embed", "head", or "?"
    component: str
    op: str
    lora_path: bool = False  # its output is (part of) a LoRA delta
    passes: str = ""  # what a consumer without weights inherits (default: from component)

    def inherited(self) -> str:
        """The component a consumer without weights of its own gets from this node."""
        if self.passes:
            return self.passes
        return {"attention proj": "attention", "norms": "other"}.get(self.component, self.component)


def label_graph(model: Path) -> tuple[bytes, dict[str, NodeLabel]]:
    """The graph with every node named after its layer and component, and the labels.

    The weights stay in the model's external data file (not read here).
    """
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    graph = proto.graph
    weights = {t.name for t in graph.initializer}
    lora_inputs = {i.name for i in graph.input if i.name.startswith("lora_")}
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            if out:  # "" is an optional output left out
                producer[out] = index
    labels: dict[int, NodeLabel] = {}
    order = _topological(graph.node, producer)
    for index in order:
        labels[index] = _label(graph.node[index], weights, lora_inputs, producer, labels)
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name in producer:
                consumers.setdefault(producer[name], []).append(index)
    for index in reversed(order):  # LoRA gathers read no layer's value: take their user's
        if labels[index].layer == "?" and labels[index].component == "lora":
            layers = [labels[c].layer for c in consumers.get(index, []) if labels[c].layer != "?"]
            if layers:
                labels[index] = replace(labels[index], layer=layers[0])
    names = {}
    for index, node in enumerate(graph.node):
        label = labels[index]
        node.name = f"L{label.layer}/{label.component}/{label.op}#{index}"
        names[node.name] = label
    return proto.SerializeToString(), names


def _topological(nodes: Any, producer: dict[str, int]) -> list[int]:
    """Node indices, each after the nodes that feed it (the file need not be in order)."""
    order: list[int] = []
    state: dict[int, int] = {}  # 1: visiting, 2: done
    for root in range(len(nodes)):
        stack = [(root, False)]
        while stack:
            index, leaving = stack.pop()
            if leaving:
                state[index] = 2
                order.append(index)
                continue
            if state.get(index):
                continue
            state[index] = 1
            stack.append((index, True))
            for name in nodes[index].input:
                feeder = producer.get(name)
                if feeder is not None and not state.get(feeder):
                    stack.append((feeder, False))
    return order


def _label(
    node: Any,
    weights: set[str],
    lora_inputs: set[str],
    producer: dict[str, int],
    done: dict[int, NodeLabel],
) -> NodeLabel:
    """A node's label from its weights, else from the nodes that feed it."""
    own = [name for name in node.input if name in weights]
    fed = [done[producer[name]] for name in node.input if name in producer]
    lora = [f for f in fed if f.lora_path]
    base = [f for f in fed if not f.lora_path]
    if lora or any(n in lora_inputs for n in node.input):
        if node.op_type == "Add" and base and lora:  # y + delta: back on the base path
            return NodeLabel(base[0].layer, "lora", node.op_type, passes=base[0].inherited())
        return NodeLabel((base or lora)[0].layer if fed else "?", "lora", node.op_type, True)
    layer = next((m.group(1) for m in map(LAYER.search, own) if m), None)
    if any(n.startswith("lm_head") for n in own) or (
        node.op_type in ("Gemm", "MatMulNBits") and "model.embed_tokens.weight" in own
    ):
        return NodeLabel("head", "lm head", node.op_type)
    if node.op_type == "Gather" and "model.embed_tokens.weight" in own:
        return NodeLabel("embed", "embedding", node.op_type)
    if node.op_type in NORM_OPS or any(n.endswith("norm.weight") for n in own):
        return NodeLabel(layer or "head", "norms", node.op_type)
    if layer is not None and any(".self_attn." in n for n in own):
        return NodeLabel(layer, "attention proj", node.op_type)
    if layer is not None and any(".mlp." in n for n in own):
        return NodeLabel(layer, "mlp", node.op_type)
    if node.op_type == "GroupQueryAttention":
        return NodeLabel(fed[0].layer if fed else "?", "attention", node.op_type)
    if not fed:
        return NodeLabel(layer or "?", "other", node.op_type)
    first = next((f for f in fed if f.inherited() != "other"), fed[0])
    component = first.inherited()
    if first.layer == "head" and first.component == "norms":
        component = "lm head"  # the logits row gather after the final norm
    return NodeLabel(first.layer, component, node.op_type)


@dataclass
class OpTable:
    """Kernel microseconds per key, prefill and decode apart."""

    prefill: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    decode: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, kind: str, key: str, us: float) -> None:
        """Add ``us`` to ``key`` in the ``kind`` column."""
        (self.prefill if kind == "prefill" else self.decode)[key] += us

    def rows(self) -> list[dict[str, Any]]:
        """Rows sorted by total time: key, prefill_ms, decode_ms, total_ms."""
        keys = set(self.prefill) | set(self.decode)
        rows: list[dict[str, Any]] = [
            {
                "key": k,
                "prefill_ms": self.prefill.get(k, 0.0) / 1e3,
                "decode_ms": self.decode.get(k, 0.0) / 1e3,
            }
            for k in keys
        ]
        for r in rows:
            r["total_ms"] = r["prefill_ms"] + r["decode_ms"]
        return sorted(rows, key=lambda r: -r["total_ms"])


@dataclass
class OpProfile:
    """ONNX Runtime's profile of a run, aggregated."""

    by_op: OpTable
    by_layer: OpTable
    by_component: OpTable
    runs: dict[str, int]  # runs per kind
    kernel_ms: dict[str, float]  # kernel time per kind
    run_ms: dict[str, float]  # ONNX Runtime's own run time (model_run) per kind
    measured_ms: dict[str, float]  # the run calls as the decode loop timed them
    events: list[dict[str, Any]]  # node and run events, moved onto the loop's clock (µs)

    def coverage(self) -> float:
        """Kernel time over the measured run time (1.0: the ops account for all of it)."""
        measured = sum(self.measured_ms.values())
        return sum(self.kernel_ms.values()) / measured if measured > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the events)."""
        return {
            "by_op_type": self.by_op.rows(),
            "by_layer": self.by_layer.rows(),
            "by_component": self.by_component.rows(),
            "runs": self.runs,
            "kernel_ms": self.kernel_ms,
            "model_run_ms": self.run_ms,
            "measured_run_ms": self.measured_ms,
            "kernel_coverage": self.coverage(),
        }


def read_profile(
    path: Path,
    labels: dict[str, NodeLabel],
    runs: list[tuple[str, float, float]],
    origin: float,
) -> OpProfile:
    """Aggregate ONNX Runtime's profile JSON.

    Args:
        path: the file ``end_profiling()`` wrote.
        labels: node name -> label (from :func:`label_graph`).
        runs: every run of the session as the loop timed it: (kind, start, end), in
            ``time.perf_counter`` seconds, in order.
        origin: the perf_counter second that is 0 in the trace.
    """
    try:
        events = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TinyLLMError(f"{path}: ONNX Runtime's profile cannot be read ({e})") from e
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    nodes = sorted(
        (e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")),
        key=lambda e: e["ts"],
    )
    if len(model_runs) != len(runs):
        raise TinyLLMError(
            f"{path}: ONNX Runtime profiled {len(model_runs)} runs, the loop timed {len(runs)}"
        )
    # ONNX Runtime's clock starts at the session; line it up with the loop's run starts.
    shifts = sorted(
        (s - origin) * 1e6 - r["ts"] for r, (_, s, _) in zip(model_runs, runs, strict=True)
    )
    shift = shifts[len(shifts) // 2] if shifts else 0.0
    profile = OpProfile(OpTable(), OpTable(), OpTable(), {}, {}, {}, {}, [])
    for kind, begin, end in runs:
        profile.runs[kind] = profile.runs.get(kind, 0) + 1
        profile.measured_ms[kind] = profile.measured_ms.get(kind, 0.0) + (end - begin) * 1e3
    i = 0
    for run, (kind, _, _) in zip(model_runs, runs, strict=True):
        last = run["ts"] + run["dur"]
        profile.run_ms[kind] = profile.run_ms.get(kind, 0.0) + run["dur"] / 1e3
        profile.events.append(_moved(run, shift, f"ONNX Runtime {kind} run"))
        while i < len(nodes) and nodes[i]["ts"] < run["ts"]:
            i += 1  # a node outside every run (none expected)
        while i < len(nodes) and nodes[i]["ts"] <= last:
            node = nodes[i]
            i += 1
            name = node["name"].removesuffix("_kernel_time")
            op = node.get("args", {}).get("op_name", name)
            label = labels.get(name, NodeLabel("?", "other", op))
            profile.by_op.add(kind, label.op, node["dur"])
            profile.by_layer.add(kind, label.layer, node["dur"])
            profile.by_component.add(kind, label.component, node["dur"])
            profile.kernel_ms[kind] = profile.kernel_ms.get(kind, 0.0) + node["dur"] / 1e3
            profile.events.append(_moved(node, shift, name))
    return profile


def _moved(event: dict[str, Any], shift: float, name: str) -> dict[str, Any]:
    """A trace event of ONNX Runtime's, shifted onto the loop's clock."""
    return {
        "name": name,
        "cat": "onnxruntime",
        "ph": "X",
        "ts": event["ts"] + shift,
        "dur": event["dur"],
        "pid": 1,
        "tid": 2 if event.get("cat") == "Node" else 1,
        "args": {"op": event.get("args", {}).get("op_name", "")},
    }

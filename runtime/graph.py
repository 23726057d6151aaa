"""A small ONNX graph writer: nodes, initializers, inputs and outputs with unique names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"
OPSET = 17
DTYPES = {
    np.dtype("float32"): TensorProto.FLOAT,
    np.dtype("float16"): TensorProto.FLOAT16,
    np.dtype("int64"): TensorProto.INT64,
    np.dtype("int32"): TensorProto.INT32,
    np.dtype("uint8"): TensorProto.UINT8,
}

Dim = int | str


class Graph:
    """Accumulates an ONNX graph; :meth:`model` returns the ModelProto."""

    def __init__(self, name: str, opset: int = OPSET) -> None:
        self.name = name
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0
        self._constants: dict[tuple[Any, ...], str] = {}

    def fresh(self, hint: str) -> str:
        """A new unique value name."""
        self._count += 1
        return f"{hint}_{self._count}"

    def weight(self, name: str, array: np.ndarray) -> str:
        """Add an initializer (a weight) and return its name."""
        data = np.ascontiguousarray(array).reshape(array.shape)  # a scalar stays a scalar
        self.initializers.append(numpy_helper.from_array(data, name))
        return name

    def tensor(self, tensor: onnx.TensorProto) -> str:
        """Add a ready-made initializer (e.g. int4 data numpy cannot hold); returns its name."""
        self.initializers.append(tensor)
        return tensor.name

    def const(
        self, values: Sequence[int] | Sequence[float] | int | float, dtype: str = "int64"
    ) -> str:
        """A (deduplicated) constant tensor: a 1-D list, or a scalar."""
        array = np.asarray(values, dtype=dtype)
        key = (dtype, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.weight(self.fresh("const"), array)
        return self._constants[key]

    def input(self, name: str, elem_type: int, shape: Sequence[Dim] | None) -> str:
        """Declare a graph input (``shape`` None: any rank)."""
        dims = None if shape is None else list(shape)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, dims))
        return name

    def output(self, name: str, elem_type: int, shape: Sequence[Dim] | None) -> None:
        """Declare a graph output (the value must be produced under that name)."""
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        outputs: int | Sequence[str] = 1,
        domain: str = "",
        **attrs: Any,
    ) -> list[str]:
        """Add a node; returns its output names (generated unless given)."""
        names = (
            [self.fresh(op_type.lower()) for _ in range(outputs)]
            if isinstance(outputs, int)
            else list(outputs)
        )
        self.nodes.append(helper.make_node(op_type, list(inputs), names, domain=domain, **attrs))
        return names

    def op1(self, op_type: str, inputs: Sequence[str], domain: str = "", **attrs: Any) -> str:
        """Add a single-output node and return its output name."""
        return self.op(op_type, inputs, 1, domain, **attrs)[0]

    def model(self) -> onnx.ModelProto:
        """The finished model (its opset, plus the com.microsoft domain)."""
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, initializer=self.initializers
        )
        opsets = [helper.make_opsetid("", self.opset), helper.make_opsetid(MS_DOMAIN, 1)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="tinyllm")
        model.ir_version = 10 if self.opset >= 21 else 9  # int4 types came with IR 10
        return model

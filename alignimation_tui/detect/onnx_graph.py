"""A small ONNX writer: a network described in numpy, written as the bytes of an ONNX model that
OpenCV's ``cv2.dnn.readNetFromONNX`` reads from memory.

Why: on a CPU our networks (MTCNN's three, dlib's face descriptor) run in OpenCV, which every run
has imported anyway, instead of torch, whose import alone costs a small folder more than its whole
detection (1.2-1.5 s). The weights stay where the packages install them; the graphs are built from
them at load time (milliseconds), so nothing derived from them is stored or downloaded.

Only what the networks need: a graph of nodes with int, float and int-list attributes, float32
and int64 initializers, float32 inputs and outputs. The encoding is protobuf's wire format
(varints, length-delimited fields, little-endian floats) with the field numbers of ``onnx.proto``.
"""
from __future__ import annotations

import struct

import numpy as np

_FLOAT, _INT64 = 1, 7  # TensorProto.DataType
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7  # AttributeProto.AttributeType


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int64 is its two's complement, ten bytes
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Message:
    """A protobuf message as the pieces of its encoding and their total length: nesting a message
    adds its key and length in front, and the model's bytes are joined once at the end (the
    weights, 22 MB for dlib's network, are copied once, not once per level of nesting)."""

    __slots__ = ("parts", "size")

    def __init__(self):
        self.parts: list = []
        self.size = 0

    def _add(self, piece) -> "_Message":
        self.parts.append(piece)
        self.size += len(piece)
        return self

    def int(self, field: int, value: int) -> "_Message":
        return self._add(_varint(field << 3) + _varint(int(value)))

    def float(self, field: int, value: float) -> "_Message":
        return self._add(_varint(field << 3 | 5) + struct.pack("<f", value))

    def bytes(self, field: int, value) -> "_Message":
        """``value``: bytes, or a contiguous array's bytes as a memoryview (not copied here)."""
        self._add(_varint(field << 3 | 2) + _varint(len(value)))
        return self._add(value)

    def str(self, field: int, value: str) -> "_Message":
        return self.bytes(field, value.encode())

    def message(self, field: int, value: "_Message") -> "_Message":
        self._add(_varint(field << 3 | 2) + _varint(value.size))
        self.parts.extend(value.parts)
        self.size += value.size
        return self

    def encode(self) -> bytes | bytearray:
        """The bytes; with ``Computed`` parts, a bytearray they are written straight into."""
        if not any(isinstance(part, Computed) for part in self.parts):
            return b"".join(self.parts)
        out = bytearray(self.size)
        view, at = memoryview(out), 0
        for part in self.parts:
            n = len(part)
            if isinstance(part, Computed):
                part.write(out, at)
            else:
                view[at:at + n] = part
            at += n
        return out


class Computed:
    """A float32 tensor's raw data computed where it lands in the model's bytes: ``compute(out)``
    writes the (``shape``) values into ``out`` (a little-endian float32 array over those bytes).
    dlib's folded weights (22 MB) are then made once, not made and copied."""

    __slots__ = ("shape", "compute")

    def __init__(self, shape: tuple[int, ...], compute):
        self.shape, self.compute = tuple(int(d) for d in shape), compute

    def __len__(self) -> int:
        return 4 * int(np.prod(self.shape))

    def write(self, buffer: bytearray, at: int) -> None:
        self.compute(np.frombuffer(buffer, "<f4", len(self) // 4, at).reshape(self.shape))


def _attribute(name: str, value) -> _Message:
    out = _Message().str(1, name)
    if isinstance(value, float):
        return out.int(20, _ATTR_FLOAT).float(2, value)
    if isinstance(value, (list, tuple)):
        out.int(20, _ATTR_INTS)
        for v in value:
            out.int(8, v)
        return out
    return out.int(20, _ATTR_INT).int(3, value)


def _tensor(name: str, array) -> _Message:
    if isinstance(array, Computed):
        out = _Message()
        for d in array.shape:
            out.int(1, d)
        return out.int(2, _FLOAT).str(8, name).bytes(9, array)
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        array, dtype = array.astype("<i8", copy=False), _INT64
    else:  # (22 MB of dlib's weights: not copied once more when they are float32 already)
        array, dtype = array.astype("<f4", copy=False), _FLOAT
    out = _Message()
    for d in array.shape:
        out.int(1, d)
    return out.int(2, dtype).str(8, name).bytes(9, memoryview(np.ascontiguousarray(array)).cast("B"))


def _value_info(name: str, shape) -> _Message:
    dims = _Message()
    for d in shape:
        dims.message(1, _Message().str(2, d) if isinstance(d, str) else _Message().int(1, d))
    tensor_type = _Message().int(1, _FLOAT).message(2, dims)
    return _Message().str(1, name).message(2, _Message().message(1, tensor_type))


class Graph:
    """Nodes added in order; ``node`` returns its output's name, so a network reads as code:

        g = Graph("pnet"); x = g.input("x", ("n", 3, "h", "w"))
        y = g.node("Conv", x, g.weight("w", w), g.weight("b", b), pads=[0, 0, 0, 0])
    """

    def __init__(self, name: str):
        self.name = name
        self._graph = _Message()  # nodes, initializers, inputs and outputs, in any order
        self._count = 0

    def input(self, name: str, shape) -> str:
        self._graph.message(11, _value_info(name, shape))
        return name

    def weight(self, name: str, array) -> str:
        """``array``: a numpy array, or float32 values ``Computed`` as the model's bytes are made."""
        self._graph.message(5, _tensor(name, array))
        return name

    def node(self, op: str, *inputs: str, name: str | None = None, **attrs) -> str:
        self._count += 1
        out = name or f"{op.lower()}_{self._count}"
        node = _Message()
        for i in inputs:
            node.str(1, i)
        node.str(2, out).str(3, out).str(4, op)
        for k, v in attrs.items():
            node.message(5, _attribute(k, v))
        self._graph.message(1, node)
        return out

    def output(self, name: str, shape) -> None:
        self._graph.message(12, _value_info(name, shape))

    def to_bytes(self, opset: int = 13) -> bytes:
        graph = _Message()
        graph.parts, graph.size = list(self._graph.parts), self._graph.size
        graph.str(2, self.name)
        model = _Message().int(1, 7).str(2, "alignimation-tui").message(7, graph)
        return model.message(8, _Message().str(1, "").int(2, opset)).encode()

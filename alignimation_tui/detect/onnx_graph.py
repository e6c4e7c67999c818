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


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(int(value))


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode())


def _attribute(name: str, value) -> bytes:
    out = _str(1, name)
    if isinstance(value, float):
        return out + _int(20, _ATTR_FLOAT) + _varint(2 << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, (list, tuple)):
        return out + _int(20, _ATTR_INTS) + b"".join(_int(8, v) for v in value)
    return out + _int(20, _ATTR_INT) + _int(3, value)


def _tensor(name: str, array: np.ndarray) -> bytes:
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        array, dtype = array.astype("<i8"), _INT64
    else:
        array, dtype = array.astype("<f4"), _FLOAT
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, dtype) + _str(8, name) + _bytes(9, np.ascontiguousarray(array).tobytes())


def _value_info(name: str, shape) -> bytes:
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    tensor_type = _int(1, _FLOAT) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


class Graph:
    """Nodes added in order; ``node`` returns its output's name, so a network reads as code:

        g = Graph("pnet"); x = g.input("x", ("n", 3, "h", "w"))
        y = g.node("Conv", x, g.weight("w", w), g.weight("b", b), pads=[0, 0, 0, 0])
    """

    def __init__(self, name: str):
        self.name = name
        self._nodes: list[bytes] = []
        self._inits: list[bytes] = []
        self._inputs: list[bytes] = []
        self._outputs: list[bytes] = []
        self._count = 0

    def input(self, name: str, shape) -> str:
        self._inputs.append(_value_info(name, shape))
        return name

    def weight(self, name: str, array: np.ndarray) -> str:
        self._inits.append(_tensor(name, array))
        return name

    def node(self, op: str, *inputs: str, name: str | None = None, **attrs) -> str:
        self._count += 1
        out = name or f"{op.lower()}_{self._count}"
        body = b"".join(_str(1, i) for i in inputs) + _str(2, out) + _str(3, out) + _str(4, op)
        body += b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items())
        self._nodes.append(body)
        return out

    def output(self, name: str, shape) -> None:
        self._outputs.append(_value_info(name, shape))

    def to_bytes(self, opset: int = 13) -> bytes:
        graph = (b"".join(_bytes(1, n) for n in self._nodes) + _str(2, self.name)
                 + b"".join(_bytes(5, t) for t in self._inits)
                 + b"".join(_bytes(11, i) for i in self._inputs)
                 + b"".join(_bytes(12, o) for o in self._outputs))
        opset_id = _str(1, "") + _int(2, opset)
        return _int(1, 7) + _str(2, "alignimation-tui") + _bytes(7, graph) + _bytes(8, opset_id)

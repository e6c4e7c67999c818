"""Our networks in OpenCV's ``dnn`` on a CPU: MTCNN's three (facenet-pytorch's weights) and dlib's
face descriptor (the face_recognition_models weights), with no torch import.

The same layers as the torch modules in ``mtcnn_nets`` and ``dlib_resnet``, the same weights read
from the same installed files, written as ONNX graphs (``onnx_graph``) and read by OpenCV from
memory. Outputs agree with the torch modules to ~1e-6 (a test checks them); OpenCV runs these small
networks 1.5-4x faster than torch here and is imported by every run anyway, where torch's import
alone costs 1.2-1.5 s.

A ``cv2.dnn.Net`` must not run on two threads at once: a thread that finds every copy busy builds
another from the same bytes, kept for later calls (``CvNet``).
"""
from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .mtcnn_common import FACTOR
from .onnx_graph import Computed, Graph

# --------------------------------------------------------------------------------------------
# torch's legacy .pt files (facenet-pytorch's weights), read without torch

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64,
           "IntStorage": np.int32, "HalfStorage": np.float16}


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype
        self.data: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        data = self.storage.data
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, [s * item for s in self.stride])
        return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: _Tensor(storage, offset, size, stride)
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a weights file")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        return self.storages.setdefault(key, _Storage(_DTYPES[storage_type]))


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A state dict saved by ``torch.save`` in its legacy (pre-1.6, non-zip) format, as numpy
    arrays: four pickles (magic number, protocol, system info, the dict with its tensors as
    references to storages), the storage keys, then each storage's element count and bytes."""
    with open(path, "rb") as f:
        if pickle.load(f) != 0x1950A86A20F9469CFC6C or pickle.load(f) != 1001:
            raise ValueError(f"{path} is not a legacy torch weights file")
        info = pickle.load(f)
        if not info.get("little_endian", True):
            raise ValueError(f"{path} is big-endian")
        unpickler = _Unpickler(f)
        state = unpickler.load()
        for key in pickle.load(f):
            storage = unpickler.storages[key]
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            size = count * np.dtype(storage.dtype).itemsize
            storage.data = np.frombuffer(f.read(size), storage.dtype, count)
    return {name: value.array() for name, value in state.items()}


# --------------------------------------------------------------------------------------------
# the graphs


def _conv(g: Graph, x: str, sd: dict, name: str, out: str | None = None) -> str:
    w, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
    return g.node("Conv", x, g.weight(f"{name}.w", w), g.weight(f"{name}.b", b), name=out,
                  kernel_shape=list(w.shape[2:]), strides=[1, 1], pads=[0] * 4)


def _prelu(g: Graph, x: str, sd: dict, name: str, spatial: bool = True) -> str:
    slope = sd[f"{name}.weight"]
    return g.node("PRelu", x, g.weight(f"{name}.slope", slope.reshape(-1, 1, 1) if spatial else slope))


def _dense(g: Graph, x: str, sd: dict, name: str, weight: np.ndarray | None = None, out: str | None = None) -> str:
    w = sd[f"{name}.weight"] if weight is None else weight
    return g.node("Gemm", x, g.weight(f"{name}.w", w), g.weight(f"{name}.b", sd[f"{name}.bias"]), name=out, transB=1)


def _trunk(g: Graph, x: str, sd: dict, pools: list) -> str:
    """facenet's convolutions ``conv1``, ``conv2``, ... each with its PReLU, then the max pooling
    (kernel, stride; ceil mode) given for it, or none."""
    for k, pool in enumerate(pools, 1):
        x = _prelu(g, _conv(g, x, sd, f"conv{k}"), sd, f"prelu{k}")
        if pool is not None:
            x = g.node("MaxPool", x, kernel_shape=[pool[0]] * 2, strides=[pool[1]] * 2, ceil_mode=1)
    return x


def _flat_dense(g: Graph, x: str, sd: dict, dense: str, prelu: str, channels: int) -> str:
    """Flatten the 3x3 feature map and the dense layer after it, with its PReLU (``_unpermuted``)."""
    x = g.node("Flatten", x, axis=1)
    return _prelu(g, _dense(g, x, sd, dense, _unpermuted(sd[f"{dense}.weight"], channels, 3, 3)), sd, prelu, False)


def _unpermuted(w: np.ndarray, c: int, h: int, wd: int) -> np.ndarray:
    """facenet's R- and O-Net flatten (N, C, H, W) as permute(0, 3, 2, 1) (W, H, C order, from the
    original Caffe models' transposed input); ONNX's Flatten keeps C, H, W order. The dense layer's
    columns are reordered instead: column (c, h, w) takes the weight of column (w, h, c)."""
    ci, hi, wi = np.meshgrid(np.arange(c), np.arange(h), np.arange(wd), indexing="ij")
    return w[:, (wi * h * c + hi * c + ci).ravel()]


def pnet_graph(sd: dict) -> bytes:
    g = Graph("pnet")
    x = _trunk(g, g.input("x", ("n", 3, "h", "w")), sd, [(2, 2), None, None])
    _conv(g, x, sd, "conv4_2", out="reg")
    g.node("Softmax", _conv(g, x, sd, "conv4_1"), axis=1, name="prob")
    g.output("reg", ("n", 4, "oh", "ow"))
    g.output("prob", ("n", 2, "oh", "ow"))
    return g.to_bytes()


def rnet_graph(sd: dict) -> bytes:
    g = Graph("rnet")
    x = _trunk(g, g.input("x", ("n", 3, 24, 24)), sd, [(3, 2), (3, 2), None])
    x = _flat_dense(g, x, sd, "dense4", "prelu4", 64)
    _dense(g, x, sd, "dense5_2", out="reg")
    g.node("Softmax", _dense(g, x, sd, "dense5_1"), axis=1, name="prob")
    g.output("reg", ("n", 4))
    g.output("prob", ("n", 2))
    return g.to_bytes()


def onet_graph(sd: dict) -> bytes:
    g = Graph("onet")
    x = _trunk(g, g.input("x", ("n", 3, 48, 48)), sd, [(3, 2), (3, 2), (2, 2), None])
    x = _flat_dense(g, x, sd, "dense5", "prelu5", 128)
    _dense(g, x, sd, "dense6_2", out="reg")
    _dense(g, x, sd, "dense6_3", out="points")
    g.node("Softmax", _dense(g, x, sd, "dense6_1"), axis=1, name="prob")
    g.output("reg", ("n", 4))
    g.output("points", ("n", 10))
    g.output("prob", ("n", 2))
    return g.to_bytes()


def space_to_depth(x: np.ndarray, f: int = 2) -> np.ndarray:
    """(N, C, H, W) -> (N, C*f*f, H/f, W/f): each f x f block of pixels as channels, channel
    c*f*f + dy*f + dx holding pixel (f*y + dy, f*x + dx) of channel c (H and W divisible by f)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * f * f, h // f, w // f)


def packed_kernel(w: np.ndarray, f: int = 2) -> np.ndarray:
    """A stride-``f`` kernel (O, C, k, k) as the stride-1 kernel over ``space_to_depth``'s input:
    (O, C*f*f, ceil(k/f), ceil(k/f)), the taps past k zero."""
    o, c, kh, kw = w.shape
    ph, pw = -(-kh // f), -(-kw // f)
    full = np.zeros((o, c, ph * f, pw * f), w.dtype)
    full[:, :, :kh, :kw] = w
    return full.reshape(o, c, ph, f, pw, f).transpose(0, 1, 3, 5, 2, 4).reshape(o, c * f * f, ph, pw)


def folded_weight(weight: np.ndarray, gamma: np.ndarray) -> Computed:
    """A convolution's weight times its affine layer's gamma (per output channel), float32,
    computed into the model's bytes as they are made (``onnx_graph.Computed``)."""
    weight, gamma = np.asarray(weight), np.asarray(gamma).reshape(-1, 1, 1, 1)
    if weight.dtype != np.float32 or gamma.dtype != np.float32:  # (float32 the file's: as ``*`` gives them)
        return Computed(weight.shape, lambda out: np.copyto(out, (weight * gamma).astype(np.float32)))
    return Computed(weight.shape, lambda out: np.multiply(weight, gamma, out=out))


def dlib_graph(layers: list[dict], size: int = 150, packed: bool = False) -> bytes:
    """dlib's face ResNet (``dlib_resnet.read_dat``'s layers) for (N, 3, size, size) RGB 0..255:
    the input's mean subtraction and 1/256 scale folded into the first convolution (it has no
    padding, so exactly), each affine layer into its convolution, and dlib's add_prev (the sum
    into the larger of each dimension, zero-padding the other at the end) as explicit Pads.
    ``packed``: the input is ``space_to_depth(chips, 2)`` (N, 12, size/2, size/2) and the first
    convolution (7x7, stride 2) runs as the same sums at stride 1 with a 4x4 kernel
    (``packed_kernel``): OpenCV ran it 1.7-2.3x as fast so (a 3-channel input uses its
    vector units poorly), a sixth of the descriptor's time; the outputs agree to ~1e-5
    (the same products, added in another order)."""
    from .dlib_dat import BLOCKS

    first, rest = layers[0], layers[1:]
    if first["type"] != "input":
        raise ValueError("not a dlib input_rgb_image_sized network")
    con = [l for l in rest if l["type"] == "con"]
    aff = [l for l in rest if l["type"] == "affine"]
    fc = [l for l in rest if l["type"] == "fc"]
    if len(con) != 1 + 2 * len(BLOCKS) or len(aff) != len(con) or len(fc) != 1:
        raise ValueError(f"unexpected layers: {len(con)} con, {len(aff)} affine, {len(fc)} fc")
    folded = []
    for k, (c, a) in enumerate(zip(con, aff)):
        w = c["weight"] * a["gamma"].reshape(-1, 1, 1, 1) if k == 0 else folded_weight(c["weight"], a["gamma"])
        folded.append((w, (c["bias"] * a["gamma"] + a["beta"]).astype(np.float32), c))
    w0, b0, c0 = folded[0]
    w0 = w0.astype(np.float32, copy=False)
    mean = np.asarray(first["mean"], np.float64).reshape(1, 3, 1, 1)
    b0 = (b0 - (w0.astype(np.float64) * mean / 256.0).sum((1, 2, 3))).astype(np.float32)
    w0 = (w0.astype(np.float64) / 256.0).astype(np.float32)

    stride0, pad0 = c0["stride"][0], c0["pad"][0]
    if packed:
        if stride0 != 2 or pad0 != 0 or size % 2:
            raise ValueError("a packed input needs a first convolution of stride 2 without padding, an even size")
        w0, stride0 = packed_kernel(w0, 2), 1
    g = Graph("dlib_resnet")
    x = g.input("x", ("n", 12, size // 2, size // 2) if packed else ("n", 3, size, size))

    def conv(x: str, k: int, w, b, stride: int, pad: int) -> str:
        return g.node("Conv", x, g.weight(f"c{k}.w", w), g.weight(f"c{k}.b", b), kernel_shape=list(w.shape[2:]),
                      strides=[stride, stride], pads=[pad] * 4)

    def out_len(n: int, k: int, s: int, p: int) -> int:
        return (n + 2 * p - k) // s + 1

    x = conv(x, 0, w0, b0, stride0, pad0)
    n = out_len(size // 2 if packed else size, w0.shape[2], stride0, pad0)
    x = g.node("MaxPool", g.node("Relu", x), kernel_shape=[3, 3], strides=[2, 2])
    n = out_len(n, 3, 2, 0)
    channels = w0.shape[0]
    for k, (cin, cout, down) in enumerate(BLOCKS):
        (w1, b1, c1), (w2, b2, c2) = folded[1 + 2 * k], folded[2 + 2 * k]
        if c1["stride"][0] != (2 if down else 1) or c1["pad"][0] != (0 if down else 1) or cin != channels:
            raise ValueError(f"block {k}: unexpected stride, padding or channels")
        y = conv(g.node("Relu", conv(x, 1 + 2 * k, w1, b1, c1["stride"][0], c1["pad"][0])), 2 + 2 * k,
                 w2, b2, c2["stride"][0], c2["pad"][0])
        ny = out_len(out_len(n, 3, c1["stride"][0], c1["pad"][0]), 3, 1, c2["pad"][0])
        skip, ns = x, n
        if down:
            skip, ns = g.node("AveragePool", x, kernel_shape=[2, 2], strides=[2, 2]), n // 2
        m = max(ny, ns)
        if ny < m:
            y = g.node("Pad", y, g.weight(f"pad{k}y", np.array([0, 0, 0, 0, 0, 0, m - ny, m - ny])))
        if ns < m or cout > cin:
            skip = g.node("Pad", skip, g.weight(f"pad{k}s", np.array([0, 0, 0, 0, 0, cout - cin, m - ns, m - ns])))
        x, n, channels = g.node("Relu", g.node("Add", y, skip)), m, cout
    x = g.node("Flatten", g.node("GlobalAveragePool", x), axis=1)
    w = fc[0]["weight"]
    g.node("Gemm", x, g.weight("fc.w", w), g.weight("fc.b", np.zeros(w.shape[0], np.float32)), transB=1, name="out")
    g.output("out", ("n", int(w.shape[0])))
    return g.to_bytes()


# --------------------------------------------------------------------------------------------
# running them


class CvNet:
    """One network's ONNX bytes and its output names; ``run`` gives the input to a ``cv2.dnn.Net``
    no other thread is running and returns the outputs in order. The nets are kept for the next
    call, on whichever thread it comes: one per thread that ran at the same time, each built once
    (a net built on a thread that loaded the weights and then ended is used by the next thread
    that asks), or at most ``most`` of them: a thread that finds them all busy then waits for one."""

    def __init__(self, model: bytes, outputs: tuple[str, ...], most: int | None = None):
        self.model = model
        self.outputs = outputs
        self.most = most
        self._idle: list = [self._build()]  # a graph OpenCV cannot read fails here, at load time
        self._count = 1
        self._lock = threading.Condition()

    def _build(self):
        import cv2

        return cv2.dnn.readNetFromONNX(np.frombuffer(self.model, np.uint8))

    @property
    def built(self) -> int:
        """How many nets are idle (built and not running): for tests."""
        return len(self._idle)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        with self._lock:
            if not self._idle and self.most is not None and self._count >= self.most:
                self._lock.wait_for(lambda: self._idle)
            net = self._idle.pop() if self._idle else None
            if net is None:
                self._count += 1  # (built below, outside the lock)
        if net is None:
            try:
                net = self._build()
            except BaseException:
                with self._lock:
                    self._count -= 1
                raise
        try:
            net.setInput(np.ascontiguousarray(x, np.float32))
            # copies: OpenCV may hand out its own output buffers, which the next forward overwrites
            return tuple(np.array(o) for o in net.forward(list(self.outputs)))
        finally:
            with self._lock:
                self._idle.append(net)
                self._lock.notify()


@contextmanager
def cv2_threads(n: int):
    """OpenCV's own thread count inside the block (it is process-wide), then the one before."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(max(1, n))
    try:
        yield
    finally:
        cv2.setNumThreads(before)


@dataclass
class CvMtcnn:
    """``mtcnn_nets.Mtcnn``'s counterpart in OpenCV: the three networks and the same settings."""

    pnet: CvNet
    rnet: CvNet
    onet: CvNet
    device: str = "cpu"
    min_face_size: float = 20
    thresholds: tuple = (0.6, 0.7, 0.7)
    factor: float = FACTOR


def load_cv_mtcnn(folder: Path, min_face_size: float, thresholds) -> CvMtcnn:
    sd = {name: read_state_dict(Path(folder) / f"{name}.pt") for name in ("pnet", "rnet", "onet")}
    return CvMtcnn(CvNet(pnet_graph(sd["pnet"]), ("reg", "prob")),
                   CvNet(rnet_graph(sd["rnet"]), ("reg", "prob")),
                   CvNet(onet_graph(sd["onet"]), ("reg", "points", "prob")),
                   min_face_size=min_face_size, thresholds=tuple(thresholds))


# Copies of dlib's descriptor network: one. Each took 40 ms of CPU and 36 MB of fresh pages to
# build (9,000 page faults); a second, for the second detection worker, cost a small folder's cold
# run more than that worker's waits for the one (a few faces' 9 ms each, now and then).
DESCRIPTOR_NETS = 1


class CvFaceNet:
    """``dlib_resnet.DlibFaceNet``'s counterpart in OpenCV: (N, 150, 150, 3) uint8 RGB chips ->
    (N, 128) float32 descriptors."""

    def __init__(self, net: CvNet, packed: bool = False):
        self.net = net
        self.packed = packed  # the graph's input is ``space_to_depth`` of the chips (``dlib_graph``)

    @classmethod
    def from_file(cls, path=None, packed: bool = True) -> "CvFaceNet":
        from .dlib_dat import read_dat

        return cls(CvNet(dlib_graph(read_dat(path), packed=packed), ("out",), most=DESCRIPTOR_NETS), packed)

    def embed(self, chips: np.ndarray, batch: int = 32) -> np.ndarray:
        from .dlib_dat import as_chips

        chips = as_chips(chips)
        out = []
        for i in range(0, len(chips), batch):
            x = chips[i:i + batch].transpose(0, 3, 1, 2)
            x = space_to_depth(x, 2) if self.packed else x
            out.append(self.net.run(x.astype(np.float32))[0])
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)

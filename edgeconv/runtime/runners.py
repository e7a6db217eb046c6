"""One runner per runtime, one tiny interface (Polygraphy-style): float32 NHWC model inputs in, float32 outputs out.

Runners quantize integer inputs and dequantize integer outputs with the artifact's own scale / zero-point, and
transpose for NCHW ONNX files, so every comparison downstream works on plain float arrays.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError, first_line


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints; -1 / None for dynamic
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": [int(s) if s is not None else -1 for s in self.shape], "dtype": self.dtype}
        if self.scale is not None:
            d["quantization"] = {"scale": self.scale, "zero_point": self.zero_point}
        return d


def quantize(x: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale, zero_point, axis: int = 0) -> np.ndarray:
    """``(q - zero_point) * scale`` as float32; ``scale`` / ``zero_point`` per tensor (scalars or length 1) or per
    channel along ``axis`` (TFLite's ``quantized_dimension``)."""
    scale, zero_point = np.asarray(scale, np.float64).reshape(-1), np.asarray(zero_point, np.float64).reshape(-1)
    if scale.size == 1:
        return ((q.astype(np.float64) - zero_point[0]) * scale[0]).astype(np.float32)
    shape = [1] * q.ndim
    shape[axis] = -1
    return ((q.astype(np.float64) - zero_point.reshape(shape)) * scale.reshape(shape)).astype(np.float32)


@runtime_checkable
class Runner(Protocol):
    """What every runtime offers (Polygraphy's runner interface): a name, I/O specs, and ``run``. Adding a runtime
    means adding one class with these members."""

    kind: str  # "keras" | "tflite" | "onnx"
    name: str

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """float32 NHWC model inputs (N, H, W, C) -> one float32 array per output, in the model's output order."""
        ...


def _keras_spec(t) -> TensorSpec:
    return TensorSpec(str(getattr(t, "name", "")), tuple(-1 if s is None else int(s) for s in t.shape),
                      str(getattr(t, "dtype", "float32")))


class KerasRunner:
    """The reference: the Keras model in inference mode.

    ``compiled=True`` runs it as one ``tf.function`` traced once for any batch size (:func:`compiled_forward`),
    ~10-20x faster than Keras' eager call on a MobileNet; the outputs differ from eager ones by float32 rounding only
    (the reference-noise floor of :mod:`edgeconv.verify.validate` covers that)."""

    kind = "keras"

    def __init__(self, model, batch_size: int = 32, compiled: bool = False):
        self.model = model
        self.batch_size = batch_size
        self.compiled = compiled
        self.name = getattr(model, "name", "keras")

    @property
    def inputs(self) -> list[TensorSpec]:
        return [_keras_spec(t) for t in self.model.inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_keras_spec(t) for t in self.model.outputs]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        outs: list[list[np.ndarray]] = []
        call = compiled_forward(self.model) if self.compiled else (lambda b: self.model(b, training=False))
        for i in range(0, len(x), self.batch_size):
            y = call(x[i:i + self.batch_size])
            ys = list(y) if isinstance(y, (list, tuple)) else [y]
            outs.append([np.asarray(t, np.float32) for t in ys])
        return [np.concatenate(parts, axis=0) for parts in zip(*outs)]


_COMPILED: "weakref.WeakKeyDictionary" = None  # model -> its tf.function, made once per model


def compiled_forward(model):
    """``model(x, training=False)`` as a ``tf.function`` with a dynamic batch dimension: traced once per model (and
    cached while the model lives), so batched and one-image calls share one graph."""
    global _COMPILED
    import weakref

    import tensorflow as tf

    if _COMPILED is None:
        _COMPILED = weakref.WeakKeyDictionary()
    fn = _COMPILED.get(model)
    if fn is None:
        t = model.inputs[0]
        spec = tf.TensorSpec((None, *t.shape[1:]), tf.as_dtype(getattr(t, "dtype", "float32") or "float32"))
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)
        _COMPILED[model] = fn
    return fn


def output_order(names: list[str]) -> list[int]:
    """Keras 3 exports name outputs ``output_0``, ``output_1``, ...; keep Keras' order where the names say it."""
    keys = []
    for i, n in enumerate(names):
        m = re.search(r"(\d+)$", n)
        keys.append((int(m.group(1)) if m else i, i))
    return [i for _, i in sorted(keys)]


class LiteRTRunner:
    """A .tflite file on the LiteRT interpreter (``ai_edge_litert``), XNNPACK on by default as on a phone's CPU."""

    kind = "tflite"

    def __init__(self, path_or_bytes, num_threads: int = 1, xnnpack: bool = True,
                 preserve_all_tensors: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs = dict(num_threads=num_threads, experimental_preserve_all_tensors=preserve_all_tensors)
        if not xnnpack or preserve_all_tensors:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            if isinstance(path_or_bytes, (bytes, bytearray)):
                self.interpreter = Interpreter(model_content=bytes(path_or_bytes), **kwargs)
                self.name = "tflite"
            else:
                self.interpreter = Interpreter(model_path=str(path_or_bytes), **kwargs)
                self.name = Path(path_or_bytes).name
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise EdgeconvError(f"cannot load TFLite model {self.name if hasattr(self, 'name') else ''}: "
                                f"{first_line(e)}") from None
        self._in = self.interpreter.get_input_details()
        outs = self.interpreter.get_output_details()
        self._out = [outs[i] for i in output_order([o["name"] for o in outs])]
        if len(self._in) != 1:
            raise EdgeconvError(f"{self.name}: only single-input image models are supported, found {len(self._in)}")

    @property
    def batch_size(self) -> int:
        """The input's batch dimension as the file declares it (-1: dynamic)."""
        return int(self._in[0]["shape_signature"][0])

    @property
    def input_details(self) -> list[dict]:
        return list(self._in)

    @property
    def output_details(self) -> list[dict]:
        """LiteRT's output details in the model's output order."""
        return list(self._out)

    def ops(self) -> list[dict]:
        """Every node of the model (op name, index, input and output tensor indices), in execution order.
        ``_get_ops_details`` is the interpreter's only node list; this is the one place edgeconv calls it."""
        return list(self.interpreter._get_ops_details())  # noqa: SLF001

    def tensors(self) -> list[dict]:
        return list(self.interpreter.get_tensor_details())

    @staticmethod
    def _spec(d) -> TensorSpec:
        scale, zp = d["quantization"]
        q = np.issubdtype(d["dtype"], np.integer) and scale != 0
        return TensorSpec(d["name"], tuple(int(s) for s in d["shape_signature"]), np.dtype(d["dtype"]).name,
                          float(scale) if q else None, int(zp) if q else None)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self._spec(d) for d in self._in]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [self._spec(d) for d in self._out]

    def set_input(self, xb: np.ndarray) -> None:
        """Set the (float) input, quantizing it for integer-input files, resizing for a new batch size."""
        d = self._in[0]
        if tuple(d["shape"]) != xb.shape:
            self.interpreter.resize_tensor_input(d["index"], xb.shape)
            self.interpreter.allocate_tensors()
        dt = np.dtype(d["dtype"])
        if np.issubdtype(dt, np.integer):
            scale, zp = d["quantization"]
            xb = quantize(xb, dt, scale, zp)
        else:
            xb = xb.astype(dt)
        self.interpreter.set_tensor(d["index"], xb)

    def invoke(self) -> None:
        try:
            self.interpreter.invoke()
        except RuntimeError as e:  # e.g. an op the converter emitted in a type LiteRT has no kernel for
            raise EdgeconvError(f"LiteRT cannot run {self.name}: {first_line(e)}") from None

    def tensor(self, index: int) -> np.ndarray:
        """A tensor's current value (needs ``preserve_all_tensors=True`` for intermediate tensors)."""
        return self.interpreter.get_tensor(index)

    def _get_outputs(self) -> list[np.ndarray]:
        ys = []
        for d in self._out:
            y = self.interpreter.get_tensor(d["index"])
            if np.issubdtype(y.dtype, np.integer):
                scale, zp = d["quantization"]
                y = dequantize(y, scale, zp)
            ys.append(np.asarray(y, np.float32))
        return ys

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        step = 1 if self.batch_size == 1 else len(x)
        outs = []
        for i in range(0, len(x), step):
            self.set_input(np.ascontiguousarray(x[i:i + step], np.float32))
            self.invoke()
            outs.append(self._get_outputs())
        return [np.concatenate(parts, axis=0) for parts in zip(*outs)]


# onnxruntime's type strings -> numpy dtype names ("tensor(float)" is float32, "tensor(double)" float64)
ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(bfloat16)": "bfloat16", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
              "tensor(int16)": "int16", "tensor(uint16)": "uint16", "tensor(int32)": "int32",
              "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
              "tensor(bool)": "bool", "tensor(string)": "str"}


def onnx_dtype_name(ort_type: str) -> str:
    """``tensor(float16)`` -> ``float16``; an unknown type keeps onnxruntime's own spelling."""
    return ORT_DTYPES.get(ort_type, ort_type)


class OnnxRunner:
    """An .onnx file on onnxruntime's CPU provider; ``layout="nchw"`` transposes NHWC inputs for NCHW files."""

    kind = "onnx"

    def __init__(self, path_or_bytes, num_threads: int = 1, layout: str = "nhwc"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = num_threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        src = bytes(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
        self.name = "onnx" if isinstance(src, bytes) else Path(src).name
        try:
            self.session = ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgeconvError(f"cannot load ONNX model {self.name}: {first_line(e)}") from None
        if layout not in ("nhwc", "nchw"):
            raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
        self.layout = layout
        self._in = self.session.get_inputs()
        self._out = self.session.get_outputs()
        if len(self._in) != 1:
            raise EdgeconvError(f"{self.name}: only single-input image models are supported, found {len(self._in)}")

    @staticmethod
    def _spec(t) -> TensorSpec:
        return TensorSpec(t.name, tuple(s if isinstance(s, int) else -1 for s in t.shape), onnx_dtype_name(t.type))

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self._spec(t) for t in self._in]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [self._spec(t) for t in self._out]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x, np.float32)
        if self.layout == "nchw":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        batch = self._in[0].shape[0]
        step = 1 if batch == 1 else len(x)
        outs = []
        for i in range(0, len(x), step):
            try:
                ys = self.session.run(None, {self._in[0].name: x[i:i + step]})
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
                raise EdgeconvError(f"onnxruntime cannot run {self.name}: {first_line(e)}") from None
            outs.append([np.asarray(y, np.float32) for y in ys])
        return [np.concatenate(parts, axis=0) for parts in zip(*outs)]


def runner_for(path, num_threads: int = 1, layout: str = "nhwc", xnnpack: bool = True):
    """The runner for an artifact file, chosen by its suffix."""
    p = Path(path)
    if p.suffix == ".tflite":
        return LiteRTRunner(p, num_threads=num_threads, xnnpack=xnnpack)
    if p.suffix in (".onnx", ".ort"):  # onnxruntime loads the ORT format (onnxruntime Mobile's) by its suffix
        return OnnxRunner(p, num_threads=num_threads, layout=layout)
    if p.suffix in (".keras", ".h5"):
        from edgeconv.pipeline.load import load_keras_file

        return KerasRunner(load_keras_file(p))
    raise EdgeconvError(f"{p}: not an artifact edgeconv can run (expected .tflite, .onnx or .keras)")

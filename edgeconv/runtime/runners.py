"""One runner per runtime, one tiny interface (Polygraphy-style): float32 NHWC model inputs in, float32 outputs out.

Runners quantize integer inputs and dequantize integer outputs with the artifact's own scale / zero-point, and
transpose for NCHW ONNX files, so every comparison downstream works on plain float arrays.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
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
    tensor: str | None = None  # the file's own tensor name, when the output is known by another (a signature key)

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": [int(s) if s is not None else -1 for s in self.shape], "dtype": self.dtype}
        if self.tensor is not None:
            d["tensor"] = self.tensor
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
        """float32 NHWC model inputs (N, H, W, C) -> one float32 array per output, in ``outputs``' order (the
        reference's when the runner was given its output names)."""
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
        """Named as every artifact names them (:func:`keras_output_names`)."""
        return [replace(_keras_spec(t), name=n) for t, n in zip(self.model.outputs, keras_output_names(self.model))]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import keras

        outs: list[list[np.ndarray]] = []
        call = compiled_forward(self.model) if self.compiled else (lambda b: self.model(b, training=False))
        for i in range(0, len(x), self.batch_size):
            y = call(x[i:i + self.batch_size])
            ys = keras.tree.flatten(y)  # a list, a tuple or a dict of outputs: model.outputs' order
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
        spec = tf.TensorSpec((None, *t.shape[1:]), tf.float32)  # runners take float32; Keras casts as eagerly
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)
        _COMPILED[model] = fn
    return fn


def _safe_name(name: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", (name or "").split(":")[0])
    return name or fallback


def keras_output_names(model) -> list[str]:
    """The names every artifact gives the model's outputs, in the model's output order: the Keras layer that
    computes each output (``output_names``; tensor names like ``keras_tensor_57`` change with every model loaded in
    the process), made safe for file formats; ``output_<i>`` when a name is missing or two would clash. The trace
    (TFLite signature keys), the ONNX graph, the metadata and every report use these names."""
    outputs = list(getattr(model, "outputs", None) or [])
    given = list(getattr(model, "output_names", None) or [])
    if len(given) != len(outputs):
        given = [getattr(getattr(getattr(t, "_keras_history", None), "operation", None), "name", None)
                 for t in outputs]
    names = [_safe_name(n or "", f"output_{i}") for i, n in enumerate(given)]
    if len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(names))]
    return names


_KERAS_DEFAULT = re.compile(r"^output_(\d+)$")


def match_outputs(want: list[str], have: list[str], what: str = "the artifact") -> list[int]:
    """For each name in ``want`` (the reference's output names, in its order), the index of that output in
    ``have`` (an artifact's output names, in its own order). Matched by name, never by position: converters
    reorder outputs (the TFLite converter sorts them by signature key). Files whose outputs carry Keras' default
    export keys ``output_<i>`` (edgeconv before named signatures) map key ``i`` to the reference's output ``i``. A
    single output on both sides needs no proof. Anything else is an :class:`EdgeconvError` naming both lists."""
    if len(want) == 1 and len(have) == 1:
        return [0]
    if len(want) == len(have):
        pos = {n: i for i, n in enumerate(have)}
        if len(pos) == len(have) and all(n in pos for n in want):
            return [pos[n] for n in want]
        keys = [_KERAS_DEFAULT.match(n) for n in have]
        if all(keys) and sorted(int(k.group(1)) for k in keys) == list(range(len(have))):
            by_index = {int(k.group(1)): i for i, k in enumerate(keys)}
            return [by_index[i] for i in range(len(want))]
    raise EdgeconvError(f"cannot match the outputs of {what} to the reference's by name: it has "
                        f"{', '.join(have) or 'none'}, the reference {', '.join(want) or 'none'}")


def _keras_default_order(names: list[str]) -> list[int]:
    """Outputs named ``output_<i>`` (Keras' default export keys) in ``i`` order; any other naming: as they are."""
    keys = [_KERAS_DEFAULT.match(n) for n in names]
    if len(names) > 1 and all(keys):
        return sorted(range(len(names)), key=lambda i: int(keys[i].group(1)))
    return list(range(len(names)))


def with_outputs(model: bytes, names) -> bytes:
    """``model`` with its tensors named in ``names`` also listed as outputs of its first subgraph, after its own.

    What XNNPACK computes inside its delegate is not readable after ``invoke`` (and the builtin kernels that keep
    every tensor, ``preserve_all_tensors``, run MobileNetV3-Small 5x slower): a tensor listed as an output is
    written out by any runtime and never overwritten by a later op."""
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    from edgeconv.tflite.introspect import tensor_name

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    sg = m.subgraphs[0]
    ins, outs = [int(i) for i in sg.inputs], [int(o) for o in sg.outputs]
    extra = [i for i, t in enumerate(sg.tensors) if tensor_name(t) in names and i not in ins and i not in outs]
    if not extra:
        return model
    sg.outputs = outs + extra
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


class TensorProbe:
    """``model`` with the tensors named in ``names`` read as model outputs (:func:`with_outputs`), on LiteRT (XNNPACK,
    1 thread): each tensor as the op that wrote it left it, at XNNPACK speed. ``missing``: names it cannot read (a
    tensor of another subgraph)."""

    def __init__(self, model: bytes, names):
        names = set(names)
        self.runner = LiteRTRunner(with_outputs(model, names))
        interp = self.runner.interpreter
        self.input = interp.get_input_details()[0]
        self.inputs = [d["name"] for d in interp.get_input_details() if d["name"] in names]
        self.tensors = [(d["name"], d["index"]) for d in interp.get_output_details() if d["name"] in names]
        self.missing = names - {n for n, _ in self.tensors} - set(self.inputs)

    def run(self, x: np.ndarray):
        """Yields, per input of ``x`` (model inputs, float), {tensor name: its values} (views valid until the next
        input)."""
        interp = self.runner.interpreter
        for i in range(len(x)):
            interp.set_tensor(self.input["index"], x[i:i + 1].astype(self.input["dtype"]))
            interp.invoke()
            got = {n: x[i] for n in self.inputs}
            got.update((n, interp.get_tensor(t)) for n, t in self.tensors)
            yield got


class LiteRTRunner:
    """A .tflite file on the LiteRT interpreter (``ai_edge_litert``), XNNPACK on by default as on a phone's CPU."""

    kind = "tflite"

    def __init__(self, path_or_bytes, num_threads: int = 1, xnnpack: bool = True,
                 preserve_all_tensors: bool = False, output_names: list[str] | None = None):
        """``output_names``: the reference's output names, in its order; ``run`` then returns the outputs in that
        order, matched by the file's signature keys (:func:`match_outputs`). Without it: the file's order."""
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
        names = self._signature_names(outs)
        self.file_output_names = list(names)  # the outputs' names in the file's own order
        order = (match_outputs(list(output_names), names, self.name) if output_names is not None
                 else _keras_default_order(names))
        self._out = [outs[i] for i in order]
        self._out_names = [names[i] for i in order]
        if len(self._in) != 1:
            raise EdgeconvError(f"{self.name}: only single-input image models are supported, found {len(self._in)}")

    def _signature_names(self, outs: list[dict]) -> list[str]:
        """Each output's name: its key in the file's one signature (edgeconv traces with the Keras output names as
        keys), else the tensor's name."""
        sigs = self.interpreter.get_signature_list()
        by_index: dict[int, str] = {}
        if len(sigs) == 1:
            runner = self.interpreter.get_signature_runner(next(iter(sigs)))
            by_index = {int(d["index"]): key for key, d in runner.get_output_details().items()}
        return [by_index.get(int(d["index"]), d["name"]) for d in outs]

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
    def _spec(d, name: str | None = None) -> TensorSpec:
        scale, zp = d["quantization"]
        q = np.issubdtype(d["dtype"], np.integer) and scale != 0
        return TensorSpec(name or d["name"], tuple(int(s) for s in d["shape_signature"]), np.dtype(d["dtype"]).name,
                          float(scale) if q else None, int(zp) if q else None,
                          tensor=d["name"] if name and name != d["name"] else None)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self._spec(d) for d in self._in]

    @property
    def outputs(self) -> list[TensorSpec]:
        """One spec per output, in ``run``'s order, named by the signature key (``tensor``: the tensor's name)."""
        return [self._spec(d, n) for d, n in zip(self._out, self._out_names)]

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

    def __init__(self, path_or_bytes, num_threads: int = 1, layout: str = "nhwc",
                 output_names: list[str] | None = None):
        """``output_names``: the reference's output names, in its order; ``run`` then returns the outputs in that
        order, matched by the graph's output names (:func:`match_outputs`). Without it: the graph's order."""
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
        outs = self.session.get_outputs()
        names = [o.name for o in outs]
        order = (match_outputs(list(output_names), names, self.name) if output_names is not None
                 else _keras_default_order(names))
        self._out = [outs[i] for i in order]
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
                ys = self.session.run([o.name for o in self._out], {self._in[0].name: x[i:i + step]})
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
                raise EdgeconvError(f"onnxruntime cannot run {self.name}: {first_line(e)}") from None
            outs.append([np.asarray(y, np.float32) for y in ys])
        return [np.concatenate(parts, axis=0) for parts in zip(*outs)]


def runner_for(path, num_threads: int = 1, layout: str = "nhwc", xnnpack: bool = True,
               output_names: list[str] | None = None):
    """The runner for an artifact file, chosen by its suffix; ``output_names``: see :class:`LiteRTRunner`."""
    p = Path(path)
    if p.suffix == ".tflite":
        return LiteRTRunner(p, num_threads=num_threads, xnnpack=xnnpack, output_names=output_names)
    if p.suffix in (".onnx", ".ort"):  # onnxruntime loads the ORT format (onnxruntime Mobile's) by its suffix
        return OnnxRunner(p, num_threads=num_threads, layout=layout, output_names=output_names)
    if p.suffix in (".keras", ".h5"):
        from edgeconv.pipeline.load import load_keras_file

        return KerasRunner(load_keras_file(p))
    raise EdgeconvError(f"{p}: not an artifact edgeconv can run (expected .tflite, .onnx or .keras)")

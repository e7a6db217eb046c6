"""Every tf2onnx / Keras 3 workaround edgeconv needs, each with the bug it works around (tf2onnx 1.17, Keras 3.15).

Checked and *not* needed with the pinned versions (kept here so nobody re-adds them):
- numpy >= 2 (``np.cast`` / ``np.object`` in tf2onnx's constant folding, patched by Keras' own ``tf2onnx_lib.py``):
  fixed in tf2onnx 1.17, its ``rewrite_constant_fold`` no longer uses them.
- Keras 3 models without ``output_names`` / ``_get_save_spec`` (tf2onnx ``from_keras`` assumed tf.keras):
  edgeconv never calls ``from_keras``; :func:`edgeconv.onnx.convert.convert_onnx` traces its own ``tf.function``
  with a fixed ``TensorSpec`` and names the ONNX outputs itself, so no Keras-internal attribute is touched.
  Measured: ``from_keras`` converts Functional models (MobileNetV3Small, a custom-Layer model, two outputs) but
  fails on a Keras 3 ``Sequential`` with ``KeyError: 'keras_tensor_<n>'`` (it maps ``output_names`` to graph
  tensors); ``from_function`` converts all of them, in about the same time.
"""
from __future__ import annotations

import contextlib
import logging

from edgeconv.errors import EdgeconvError, first_line

TF2ONNX_LOGGER = "tf2onnx"


class _Collect(logging.Handler):
    """Keeps tf2onnx's warnings as records instead of printing them (with tracebacks) to the user's terminal."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def summaries(self) -> list[str]:
        """One line per distinct problem, e.g. ``tf2onnx: Failed to apply optimize_transpose (ValueError: ...)``."""
        out = []
        for r in self.records:
            line = f"tf2onnx: {first_line(r.getMessage())}"
            if r.exc_info and r.exc_info[1] is not None:
                line += f" ({type(r.exc_info[1]).__name__}: {first_line(r.exc_info[1])})"
            if line not in out:
                out.append(line)
        return out


@contextlib.contextmanager
def quiet_tf2onnx():
    """Route tf2onnx's Python logging into a collector for the duration of a conversion.

    tf2onnx logs INFO lines for every step and, when one of its optimizers crashes, a WARNING with a full traceback
    (it catches the error and carries on with the unoptimized graph: onnx/tensorflow-onnx#1729). The user gets one
    line per problem (``collector.summaries()``) instead. Logger state is restored afterwards.
    """
    loggers = [logging.getLogger(n) for n in (TF2ONNX_LOGGER, "tensorflow")]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    collector = _Collect()
    try:
        for lg, level in zip(loggers, (logging.WARNING, logging.ERROR)):
            lg.handlers = []
            lg.propagate = False
            lg.setLevel(level)
        loggers[0].addHandler(collector)
        yield collector
    finally:
        for lg, level, propagate, handlers in saved:
            lg.handlers = handlers
            lg.propagate = propagate
            lg.setLevel(level)


@contextlib.contextmanager
def transpose_optimizer_scalar_add_fix():
    """Work around tf2onnx's transpose-optimizer crash "max() arg is an empty sequence".

    Bug (tf2onnx 1.17 ``TransposeOptimizer._add_handler``): a bias-less Conv followed by ``Add`` with a *scalar*
    constant (h-swish's ``x + 3`` right after a Conv that had no bias, the usual Conv+BN case) reaches
    ``bias_size = max(numpy_val.shape)`` with an empty shape and raises ValueError. tf2onnx catches it, logs a
    traceback and drops the whole transpose optimization: MobileNetV3Small keeps 106 Transpose nodes instead of 2.
    Fix: a scalar addend cannot become a per-channel Conv bias, so treat it like any other broadcastable Add
    (``_handle_node_having_branches``, which pushes the transpose through). Patched only while the block runs.
    """
    try:
        from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer
    except ImportError:  # tf2onnx layout changed: run unpatched, the crash is still reported as one warning line
        yield
        return
    original = TransposeOptimizer._add_handler

    def _add_handler(self, trans, node):
        const = node.inputs[1] if len(node.inputs) > 1 else None
        if const is not None and const.is_const() and const.get_tensor_value(as_list=False).ndim == 0:
            return self._handle_node_having_branches(trans, node)
        return original(self, trans, node)

    TransposeOptimizer._add_handler = _add_handler
    try:
        yield
    finally:
        TransposeOptimizer._add_handler = original


_ERFC_REGISTERED = False


def register_erfc_handler() -> None:
    """Teach tf2onnx the TF op ``Erfc``, which it does not know (tf2onnx 1.17: "Tensorflow op [Erfc] is not
    supported"). Keras 3's exact ``gelu`` (ViT's MLP) computes ``0.5 * x * erfc(-x / sqrt(2))``, so every ViT failed
    to convert. ONNX has ``Erf`` (opset 9+), and erfc(x) = 1 - erf(x) exactly in real numbers; in float32 the
    difference is below 1 ulp of the gelu result because gelu multiplies it by x. Registered once per process."""
    global _ERFC_REGISTERED
    if _ERFC_REGISTERED:
        return
    import numpy as np
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:  # noqa: F841 - registered by the decorator
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            x = node.input[0]
            dtype = ctx.get_dtype(x)
            from tf2onnx import utils

            one = ctx.make_const(utils.make_name("one"), np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype)))
            erf = ctx.make_node("Erf", [x])
            ctx.remove_node(node.name)
            ctx.make_node("Sub", [one.output[0], erf.output[0]], name=node.name, outputs=node.output)

    _ERFC_REGISTERED = True


@contextlib.contextmanager
def grouped_conv_without_xla():
    """Trace grouped convolutions as plain ``Conv2D`` ops while the block runs.

    Keras 3.15's TensorFlow backend wraps a grouped convolution (ResNeXt, ShuffleNet) in ``tf.function(
    jit_compile=True)`` because TF's CPU kernel does not run it. Traced for tf2onnx, that becomes an XLA
    ``StatefulPartitionedCall`` tf2onnx cannot look into, and conversion fails. While tracing nothing runs on the
    CPU, and ``tf.nn.convolution`` records a ``Conv2D`` with the grouped kernel, which tf2onnx converts to an ONNX
    ``Conv`` with ``group``. Keras' function is restored afterwards (running a grouped conv still uses XLA).
    """
    try:
        from keras.src.backend.tensorflow import nn as tf_nn
    except ImportError:  # Keras layout changed: run unpatched; a failure is reported as one line
        yield
        return
    original = tf_nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        import tensorflow as tf

        fmt = tf_nn.backend.standardize_data_format(data_format)
        channels = inputs.shape[-1] if fmt == "channels_last" else inputs.shape[1]
        if channels == kernel.shape[-2] or not tf.inside_function():
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(inputs, kernel, strides, padding.upper(),
                                 data_format=tf_nn._convert_data_format(fmt, len(inputs.shape)),
                                 dilations=dilation_rate)

    tf_nn.conv = conv
    try:
        yield
    finally:
        tf_nn.conv = original


def quant_pre_process_no_cwd(src: str, dst: str) -> None:
    """onnxruntime's ``quant_pre_process`` without its one write into the *current directory*.

    Bug worked around (onnxruntime 1.32, ``tools/symbolic_shape_infer.py``): when symbolic shape inference is
    incomplete (e.g. ViT), ``SymbolicShapeInference.infer_shapes`` saves ``sym_shape_infer_temp.onnx`` plus an
    external-data file into the process's working directory before raising, and leaves them there. A library must
    neither write into the caller's folder nor ``chdir`` to avoid it, so this runs the same inference loop on the
    in-memory model (no save on failure) and then calls ``quant_pre_process`` with ``skip_symbolic_shape=True`` on
    the inferred model; the remaining steps (onnxruntime's optimizer, ONNX shape inference) work in temp folders.
    Raises :class:`EdgeconvError` when the shape inference is incomplete, as ``quant_pre_process`` would.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(src)
    sym = SymbolicShapeInference(2**31 - 1, False, False, 0)  # int_max, auto_merge, guess_output_rank, verbose
    sym._preprocess(model)  # noqa: SLF001 - the body of infer_shapes, minus its save into the cwd
    complete = False
    while sym.run_:
        complete = sym._infer_impl()  # noqa: SLF001
    sym._update_output_from_vi()  # noqa: SLF001
    if not complete:
        raise EdgeconvError("Incomplete symbolic shape inference")
    inferred = dst + ".sym.onnx"
    onnx.save(sym.out_mp_, inferred)
    quant_pre_process(inferred, dst, skip_symbolic_shape=True)


@contextlib.contextmanager
def quiet_logger(name: str | None = None, level: int = logging.ERROR):
    """Raise one logger's level for the block (None: the root logger). onnxruntime.quantization reports through the
    *root* logger ("Please consider to run pre-processing"); onnxruntime.tools' ORT converter through
    "ort_format_model.utils" at DEBUG, propagating to a root handler it installs. Neither belongs on the user's
    terminal."""
    lg = logging.getLogger(name)
    old = lg.level
    lg.setLevel(level)
    try:
        yield
    finally:
        lg.setLevel(old)

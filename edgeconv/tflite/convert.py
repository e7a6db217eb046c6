"""SavedModel -> .tflite bytes for one precision (TFLiteConverter.from_saved_model)."""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError, first_line

IO_TYPES = ("int", "uint8", "float")


def io_dtype_name(precision: str, io_type: str) -> str:
    """The I/O dtype a calibrated precision gets for ``io_type``: "int" -> int8 (int16 for int16x8), "uint8" ->
    uint8 for int8 (what MediaPipe Tasks and TFLite's hosted quantized models take; int16x8 has no uint8 interface
    and keeps float I/O), "float" -> float32."""
    if io_type == "int":
        return "int16" if precision == "int16x8" else "int8"
    if io_type == "uint8" and precision == "int8":
        return "uint8"
    return "float32"


@contextlib.contextmanager
def _quiet():
    """The converter prints MLIR and absl chatter to stdout/stderr; keep the user's terminal clean."""
    import logging

    old = logging.getLogger("tensorflow").level
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger("tensorflow").setLevel(old)


def _representative(x: np.ndarray):
    def gen():
        for i in range(len(x)):
            yield [np.ascontiguousarray(x[i:i + 1], np.float32)]

    return gen


def make_converter(saved_model_dir: str | os.PathLike, precision: str, calibration: np.ndarray | None = None,
                   io_type: str = "int"):
    """A configured ``tf.lite.TFLiteConverter`` for ``precision`` (fp32, fp16, dynamic, int8, int16x8)."""
    import tensorflow as tf

    conv = saved_model_converter(saved_model_dir)
    if precision == "fp32":
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        pass
    elif precision in ("int8", "int16x8"):
        if calibration is None or len(calibration) == 0:
            raise EdgeconvError(f"{precision} needs calibration data")
        if io_type not in IO_TYPES:
            raise EdgeconvError(f"io_type must be one of {IO_TYPES}, got {io_type!r}")
        conv.representative_dataset = _representative(calibration)
        if precision == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            int_type = tf.int8
        else:
            # Ops without a 16x8 kernel (HARD_SWISH today) stay float instead of failing the whole conversion;
            # the manifest's op list shows which ones did.
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS]
            int_type = tf.int16
        io = io_dtype_name(precision, io_type)
        if io != "float32":
            conv.inference_input_type = conv.inference_output_type = tf.uint8 if io == "uint8" else int_type
    else:
        raise EdgeconvError(f"unknown TFLite precision {precision!r}")
    return conv


def convert_tflite(saved_model_dir: str | os.PathLike, precision: str, calibration: np.ndarray | None = None,
                   io_type: str = "int") -> bytes:
    """Convert the traced SavedModel to TFLite bytes at ``precision``; ``calibration`` are float32 model inputs."""
    conv = make_converter(saved_model_dir, precision, calibration, io_type)
    try:
        with _quiet():
            return bytes(conv.convert())
    except Exception as e:  # the converter raises ConverterError / RuntimeError with long MLIR dumps
        msg = first_line(e, prefer="error")
        raise EdgeconvError(f"TFLite {precision} conversion failed: {msg.strip()}") from None


def saved_model_converter(saved_model_dir: str | os.PathLike):
    """``tf.lite.TFLiteConverter.from_saved_model(dir)`` without its first Python load of the whole SavedModel,
    which it makes only to read the signature keys (1-1.5 s for a MobileNet, every conversion; ``convert()`` loads
    it again for debug info, then imports the folder in C++). The keys come from ``saved_model.pb``; the rule for ``model.export`` folders (a ``serve``
    endpoint next to ``serving_default``: convert ``serving_default``) is from_saved_model's own. Anything else
    goes through from_saved_model. Same converter, same bytes (tests/test_tflite_convert.py)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.lite.python.lite import TFLiteConverterBase, TFLiteSavedModelConverterV2
    from tensorflow.lite.python.lite import conversion_metadata_fb

    pb = saved_model_pb2.SavedModel()
    try:
        pb.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
        keys = ({k for k in pb.meta_graphs[0].signature_def if not k.startswith("__")}  # not the init op
                if len(pb.meta_graphs) == 1 else set())
    except (OSError, ValueError, IndexError):  # not one readable meta graph: TF's own path says what is wrong
        keys = set()
    if keys in ({"serving_default"}, {"serve", "serving_default"}) and tf.executing_eagerly():
        # from_saved_model records the source kind in the file's conversion metadata this way
        TFLiteConverterBase._set_original_model_type(conversion_metadata_fb.ModelType.TF_SAVED_MODEL)
        conv = TFLiteSavedModelConverterV2(str(saved_model_dir), {"serve"}, ["serving_default"])
        if conv.saved_model_dir:
            return conv
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))

"""ONNX for phones: the ORT format (onnxruntime Mobile) and which nodes onnxruntime runs in integer kernels.

- :func:`write_ort` converts an .onnx file with onnxruntime's own converter
  (``onnxruntime.tools.convert_onnx_models_to_ort``, the ``python -m onnxruntime.tools.convert_onnx_models_to_ort``
  CLI) and returns the ``.ort`` bytes plus the required-operators config a reduced onnxruntime build takes
  (``build.sh --minimal_build --include_ops_by_config <file>``).
- :func:`integer_kernel_coverage` is the ONNX analogue of an XNNPACK coverage table: it lets onnxruntime optimize the
  graph (``SessionOptions.optimized_model_filepath``, level ORT_ENABLE_ALL, CPU provider) and counts which nodes
  became integer kernels (``QLinearConv``, ``QLinearAdd``, ...) and which compute nodes stayed float between
  ``DequantizeLinear`` and ``QuantizeLinear``. The optimized graph may hold contrib (``com.microsoft``) ops; it is
  only inspected.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from pathlib import Path

from edgeconv.errors import EdgeconvError, first_line
from edgeconv.onnx.compat import quiet_logger

#: onnxruntime's integer kernels (ONNX and com.microsoft domains)
INTEGER_OPS = frozenset({
    "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul",
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearGlobalAveragePool",
    "QLinearAveragePool", "QLinearConcat", "QLinearReduceMean", "QLinearWhere", "QAttention", "NhwcMaxPool",
})
#: ops that only move, reshape or convert data (no arithmetic worth counting as float compute)
MOVEMENT_OPS = frozenset({
    "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Concat", "Split", "Slice", "Gather",
    "Pad", "Shape", "Cast", "Expand", "Tile", "MaxPool", "ReorderInput", "ReorderOutput", "Resize",
    "SpaceToDepth", "DepthToSpace",
})
CONVERSION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
CONV_OPS = frozenset({"Conv", "ConvTranspose", "FusedConv", "NhwcFusedConv"})
INTEGER_CONV_OPS = frozenset({"QLinearConv", "ConvInteger"})

ORT_TARGETS = ("arm", "amd64")


def _session_options(threads: int = 1, config: dict | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, str(v))
    return so


def _model_bytes(onnx_path_or_bytes) -> bytes:
    if isinstance(onnx_path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(onnx_path_or_bytes)
    p = Path(onnx_path_or_bytes)
    if not p.is_file():
        raise EdgeconvError(f"ONNX file not found: {p}")
    return p.read_bytes()


def write_ort(onnx_path_or_bytes, out_dir, *, name: str | None = None, target_platform: str = "arm",
              type_reduction: bool = False) -> tuple[bytes, str]:
    """Write ``<out_dir>/<name>.ort`` and ``<out_dir>/<name>.required_operators.config`` with onnxruntime's
    converter; -> (ORT-format bytes, config text).

    ``target_platform`` "arm" (phones; the default) makes the converter leave out the x86-only NCHWc layout and allow
    int8 QDQ fusions as ARM builds do; "amd64" keeps NCHWc. ``type_reduction`` writes
    ``required_operators_and_types.config`` (per-op type lists for a smaller build) instead. ``name`` defaults to the
    file's stem ("model" for bytes). The .ort is fully optimized ("Fixed" style) for the CPU provider.
    """
    if target_platform not in ORT_TARGETS:
        raise EdgeconvError(f"target_platform must be one of {ORT_TARGETS}, got {target_platform!r}")
    data = _model_bytes(onnx_path_or_bytes)
    if name is None:
        name = "model" if isinstance(onnx_path_or_bytes, (bytes, bytearray, memoryview)) \
            else Path(onnx_path_or_bytes).stem
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    config_stem = "required_operators_and_types" if type_reduction else "required_operators"
    with tempfile.TemporaryDirectory(prefix="edgeconv-ort-") as tmp:
        src = Path(tmp, f"{name}.onnx")
        src.write_bytes(data)
        log = io.StringIO()
        try:
            # the converter prints progress lines and logs an INFO line through its own logger
            with contextlib.redirect_stdout(log), quiet_logger("ort_format_model.utils", logging.WARNING):
                convert_onnx_models_to_ort(src, output_dir=Path(tmp, "out"),
                                           optimization_styles=[OptimizationStyle.Fixed],
                                           target_platform=target_platform, enable_type_reduction=type_reduction)
        except Exception as e:  # onnxruntime raises its own types
            msg = first_line(e)
            raise EdgeconvError(f"onnxruntime cannot convert {name} to the ORT format: {msg}") from None
        ort_file = Path(tmp, "out", f"{name}.ort")
        config_file = Path(tmp, "out", f"{name}.{config_stem}.config")
        if not ort_file.is_file() or not config_file.is_file():
            raise EdgeconvError(f"onnxruntime's converter wrote no .ort/.config for {name}: "
                                f"{log.getvalue().strip().splitlines()[-1:]}")
        ort_bytes = ort_file.read_bytes()
        # the config's header names the file it was generated from: name the published one, not the temp folder
        config = config_file.read_text().replace(str(ort_file), f"{name}.ort")
    (out / f"{name}.ort").write_bytes(ort_bytes)
    (out / f"{name}.{config_stem}.config").write_text(config)
    return ort_bytes, config


def optimized_graph(onnx_bytes: bytes, *, config: dict | None = None,
                    disabled_optimizers: list[str] | None = None):
    """The ModelProto onnxruntime (CPU provider, ORT_ENABLE_ALL, 1 thread) runs for ``onnx_bytes``."""
    import onnx
    import onnxruntime as ort

    so = _session_options(1, config)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory(prefix="edgeconv-ortopt-") as tmp:
        path = Path(tmp, "optimized.onnx")
        so.optimized_model_filepath = str(path)
        try:
            ort.InferenceSession(bytes(onnx_bytes), sess_options=so, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=disabled_optimizers)
        except Exception as e:  # onnxruntime raises its own types
            msg = first_line(e)
            raise EdgeconvError(f"onnxruntime cannot load the ONNX model: {msg}") from None
        return onnx.load(str(path))


def _kind(op: str) -> str:
    if op in INTEGER_OPS:
        return "integer"
    if op in CONVERSION_OPS:
        return "conversion"
    if op in MOVEMENT_OPS:
        return "movement"
    return "float"


def integer_kernel_coverage(onnx_bytes, *, config: dict | None = None) -> dict:
    """What onnxruntime's CPU provider runs for an (int8) ONNX model, from its own optimized graph.

    Returns a dict:

    - ``ops``: {op type: count} of the optimized graph (contrib ops keep their plain name, e.g. "QLinearConv");
    - ``integer`` / ``float`` / ``conversion`` / ``movement``: the same counts split by kind (float = arithmetic on
      float tensors, e.g. Conv, Mul, HardSigmoid, Softmax, GlobalAveragePool);
    - ``float_islands``: [{"name", "op", "from_dq", "to_q"}] for float compute nodes fed by a DequantizeLinear or
      feeding a QuantizeLinear: quantized data that leaves integer arithmetic for one op and comes back;
    - ``convs`` / ``integer_convs`` / ``float_convs``: Conv nodes of the *input* graph, and how many of the
      optimized graph's convolutions are integer (QLinearConv, ConvInteger) or float (Conv, fused or not);
    - ``all_convs_integer``: every convolution runs in an integer kernel;
    - ``quantize`` / ``dequantize``: QuantizeLinear / DequantizeLinear nodes left (1 + 1 = the float model boundary).

    ``config``: extra session config entries, e.g. {"session.qdqisint8allowed": "1"} to see what an ARM build
    (which allows int8 QDQ fusions) would fuse.
    """
    import onnx

    data = _model_bytes(onnx_bytes)
    source = onnx.load_from_string(data)
    opt = optimized_graph(data, config=config)
    ops = Counter(n.op_type for n in opt.graph.node)
    by_kind: dict[str, Counter] = {k: Counter() for k in ("integer", "float", "conversion", "movement")}
    for op, n in ops.items():
        by_kind[_kind(op)][op] += n
    producer = {o: n for n in opt.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in opt.graph.node:
        for s in n.input:
            consumers.setdefault(s, []).append(n)
    islands = []
    for n in opt.graph.node:
        if _kind(n.op_type) != "float":
            continue
        from_dq = any(getattr(producer.get(s), "op_type", None) == "DequantizeLinear" for s in n.input)
        to_q = any(c.op_type == "QuantizeLinear" for o in n.output for c in consumers.get(o, []))
        if from_dq or to_q:
            islands.append({"name": n.name, "op": n.op_type, "from_dq": from_dq, "to_q": to_q})
    convs = sum(n.op_type in CONV_OPS or n.op_type in INTEGER_CONV_OPS for n in source.graph.node)  # QOperator
    integer_convs = sum(ops[o] for o in INTEGER_CONV_OPS)
    float_convs = sum(ops[o] for o in CONV_OPS)
    return {
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        **{k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for k, v in by_kind.items()},
        "float_islands": islands,
        "convs": convs, "integer_convs": integer_convs, "float_convs": float_convs,
        "all_convs_integer": convs > 0 and float_convs == 0 and integer_convs >= convs,
        "quantize": ops.get("QuantizeLinear", 0), "dequantize": ops.get("DequantizeLinear", 0),
    }


def coverage_rows(cov: dict) -> list[list]:
    """Table rows (kind, op, count) of :func:`integer_kernel_coverage`, integer kernels first."""
    rows = []
    for kind in ("integer", "float", "conversion", "movement"):
        rows += [[kind, op, n] for op, n in cov[kind].items()]
    return rows

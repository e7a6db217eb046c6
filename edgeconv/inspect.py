"""What is inside one artifact: I/O with quantization, op histogram, XNNPACK / GPU-delegate coverage, size by tensor
type and the metadata edgeconv embedded (``edgeconv inspect FILE``).

XNNPACK coverage is *measured*, not looked up: the file is loaded in LiteRT with its default delegate (XNNPACK, as on
a phone's CPU). The delegate replaces every partition it claims with one ``DELEGATE`` node; LiteRT keeps the original
nodes in its node list (only the execution plan drops them), so ``_get_ops_details()`` lists the original nodes
followed by the ``DELEGATE`` nodes with each partition's boundary tensors as inputs / outputs. Walking back from a
partition's outputs through the original producers until its inputs gives exactly the nodes it replaced; every
original node in no partition runs on TFLite's own (reference / optimized) kernels. XNNPACK does not log why it
declines a node (its partitioning pass runs without a logging context), so the reason given for a fallback is the
measured one from :data:`KNOWN_XNNPACK_GAPS` when the (op, dtype) pair is in it, otherwise the node's tensor types.

GPU compatibility is TensorFlow's own check: ``tf.lite.experimental.Analyzer.analyze(gpu_compatibility=True)``,
whose text (printed from C++) is captured and parsed.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeconv.errors import EdgeconvError, first_line
from edgeconv.fileio import sha256_file

__all__ = ["InspectReport", "inspect_artifact", "xnnpack_coverage", "gpu_compatibility", "KNOWN_XNNPACK_GAPS"]

# (op, activation dtype) pairs measured on LiteRT 2.3 (ai-edge-litert) that the XNNPACK delegate declines.
KNOWN_XNNPACK_GAPS = {
    ("HARD_SWISH", "int8"): "XNNPACK's delegate has no int8 HARD_SWISH: it runs on TFLite's kernel between two "
                            "XNNPACK partitions (edgeconv's int8 export rewrites it, see edgeconv.tflite.rewrite)",
    ("HARD_SWISH", "uint8"): "XNNPACK's delegate has no quantized HARD_SWISH",
    ("SOFTMAX", "int8"): "XNNPACK's delegate has no int8 SOFTMAX (cheap: it runs once, on the logits)",
    ("HARD_SWISH", "int16"): "no XNNPACK int16 kernels (int16x8 runs on TFLite's kernels)",
    ("AVERAGE_POOL_2D", "int8"): "XNNPACK's delegate declined int8 AVERAGE_POOL_2D in every model measured "
                                 "(ShuffleNet)",
    ("RELU", "int8"): "XNNPACK's delegate declined a stand-alone int8 RELU whose output quantization differs from "
                      "its input's (ShuffleNet, after CONCATENATION)",
}


@dataclass
class InspectReport:
    path: str
    format: str  # "tflite" | "onnx"
    bytes: int
    sha256: str
    inputs: list[dict]
    outputs: list[dict]
    ops: dict  # op name -> count
    size_by_type: dict  # constant (weight) bytes per tensor dtype
    tensor_types: dict = field(default_factory=dict)  # number of tensors per dtype
    xnnpack: dict | None = None  # TFLite: measured delegate coverage
    gpu: dict | None = None  # TFLite: TF analyzer's GPU-delegate compatibility
    metadata: dict | None = None  # what edgeconv embedded (edgeconv.pipeline.metadata), None when nothing
    tflite_metadata: dict | None = None  # Android's standard TFLITE_METADATA, decoded (TFLite only)
    mediapipe: list[str] | None = None  # why MediaPipe Tasks would refuse the file ([] = loads), TFLite only
    onnx_kernels: dict | None = None  # ONNX: which nodes onnxruntime's optimized graph runs in integer kernels
    opset: int | None = None  # ONNX
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary_lines(self) -> list[str]:
        out = [f"{self.path}: {self.format}, {self.bytes / 1e6:.3f} MB, sha256 {self.sha256[:16]}..."]
        if self.opset is not None:
            out.append(f"opset: {self.opset}")
        if self.xnnpack is not None:
            x = self.xnnpack
            out.append(f"XNNPACK: {x['delegated_nodes']} of {x['total_nodes']} nodes delegated in "
                       f"{x['partitions']} partition(s)")
            for f in x["fallback"]:
                out.append(f"  not delegated: #{f['index']} {f['op']} ({'/'.join(f['dtypes'])}): {f['reason']}")
        if self.gpu is not None:
            g = self.gpu
            out.append("GPU delegate: " + ("compatible" if g["compatible"] else "NOT compatible")
                       + (f" ({g['note']})" if g.get("note") else ""))
            out += [f"  {i}" for i in g["issues"]]
        if self.metadata:
            m = self.metadata
            out.append(f"metadata: model {m.get('model', {}).get('name')} v{m.get('model', {}).get('version')}, "
                       f"edgeconv {m.get('edgeconv_version')}, labels: {len(m.get('labels') or [])}")
        else:
            out.append("metadata: none embedded")
        if self.tflite_metadata:
            tm = self.tflite_metadata
            ins = tm.get("inputs") or [{}]
            outs = tm.get("outputs") or [{}]
            out.append(f"TFLITE_METADATA: {tm.get('name')} v{tm.get('version')}, input {ins[0].get('color_space')} "
                       f"mean {ins[0].get('mean')} std {ins[0].get('std')}, labels: "
                       f"{len(outs[0].get('labels') or [])}" if len(outs) == 1 else
                       f"TFLITE_METADATA: {tm.get('name')} v{tm.get('version')}, input {ins[0].get('color_space')} "
                       f"mean {ins[0].get('mean')} std {ins[0].get('std')}, {len(outs)} outputs: "
                       + "; ".join(f"{o.get('name')} ({o.get('description')}"
                                   + (f", {len(o['labels'])} labels" if o.get("labels") else "") + ")" for o in outs))
        elif self.format == "tflite":
            out.append("TFLITE_METADATA: none (phone APIs such as MediaPipe Tasks need it)")
        if self.onnx_kernels is not None:
            k = self.onnx_kernels
            out.append(f"onnxruntime (CPU, optimized graph): {k['integer_convs']} of {k['convs']} Convs in integer "
                       f"kernels; integer ops {sum(k['integer'].values())}, float compute ops "
                       f"{sum(k['float'].values())} ({', '.join(f'{o} x{n}' for o, n in k['float'].items()) or '-'}), "
                       f"{len(k['float_islands'])} float islands between (De)QuantizeLinear")
        if self.mediapipe is not None:
            out.append("MediaPipe Tasks: " + ("loads it" if not self.mediapipe else
                                              "would refuse or misread it: " + "; ".join(self.mediapipe)))
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _read(path) -> tuple[Path, bytes]:
    p = Path(path)
    if not p.is_file():
        raise EdgeconvError(f"{p}: no such file")
    if p.suffix not in (".tflite", ".onnx"):
        raise EdgeconvError(f"{p}: edgeconv inspects .tflite and .onnx files")
    return p, p.read_bytes()


def inspect_artifact(path, *, xnnpack: bool = True, gpu: bool = True) -> InspectReport:
    """Inspect one ``.tflite`` or ``.onnx`` file. ``xnnpack`` / ``gpu`` turn the (TFLite-only) delegate checks off."""
    p, data = _read(path)
    if p.suffix == ".onnx":
        return _inspect_onnx(p, data)
    return _inspect_tflite(p, data, xnnpack=xnnpack, gpu=gpu)


# ---------------------------------------------------------------------------------------------------------- TFLite
def _dtype_name(t) -> str:
    import numpy as np

    return np.dtype(t).name


def _inspect_tflite(p: Path, data: bytes, xnnpack: bool, gpu: bool) -> InspectReport:
    from edgeconv.tflite.introspect import tflite_details
    from edgeconv.pipeline.metadata import read_metadata

    details = tflite_details(data)
    rep = InspectReport(path=str(p), format="tflite", bytes=len(data), sha256=sha256_file(p),
                        inputs=details["inputs"], outputs=details["outputs"], ops=details["ops"],
                        size_by_type=constant_bytes_by_type(data), tensor_types=details["tensor_types"])
    rep.metadata = read_metadata(data)
    from edgeconv.tflite import android_metadata

    rep.tflite_metadata = android_metadata.read_metadata(data)
    rep.mediapipe = android_metadata.mediapipe_problems(data)
    if xnnpack:
        rep.xnnpack = xnnpack_coverage(data)
    if gpu:
        try:
            rep.gpu = gpu_compatibility(data)
        except Exception as e:  # the analyzer is experimental API; its absence must not break inspect
            rep.warnings.append(f"GPU compatibility check unavailable: {first_line(e)}")
    return rep


def constant_bytes_by_type(data: bytes) -> dict:
    """Bytes of constant tensor data (weights, biases, constants) per tensor type, from the FlatBuffer itself."""
    import numpy as np

    from edgeconv.tflite.introspect import read_model_object

    model = read_model_object(data)
    out: Counter = Counter()
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    seen = set()
    for sg in model.subgraphs:
        for t in sg.tensors:
            b = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
            if b is None or b.data is None or t.buffer in seen:
                continue
            seen.add(t.buffer)  # shared buffers (deduplicated constants) count once
            out[names.get(t.type, str(t.type))] += int(np.asarray(b.data).size)
    return dict(sorted(out.items()))


def xnnpack_coverage(data: bytes, num_threads: int = 1) -> dict:
    """Which nodes the XNNPACK delegate takes, measured by loading the model with it (see the module docstring)."""
    from edgeconv.console import quiet_native
    from edgeconv.runtime.runners import LiteRTRunner

    with quiet_native() as cap:
        r = LiteRTRunner(data, num_threads=num_threads, xnnpack=True)
    ops = r.ops()
    tensors = {t["index"]: t for t in r.tensors()}
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    producer = {int(t): o["index"] for o in original for t in o["outputs"]}
    by_index = {o["index"]: o for o in original}
    delegated: set[int] = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            n = producer.get(t)
            if t in stop or n is None or n in delegated:
                continue
            delegated.add(n)
            todo += [int(i) for i in by_index[n]["inputs"] if int(i) >= 0]
    by_op: dict = {}
    fallback = []
    for o in original:
        name = o["op_name"]
        e = by_op.setdefault(name, {"total": 0, "delegated": 0})
        e["total"] += 1
        if o["index"] in delegated:
            e["delegated"] += 1
            continue
        dtypes = sorted({_dtype_name(tensors[int(t)]["dtype"]) for t in list(o["inputs"]) + list(o["outputs"])
                         if int(t) >= 0 and int(t) in tensors})
        act = _dtype_name(tensors[int(o["outputs"][0])]["dtype"]) if len(o["outputs"]) else "?"
        reason = KNOWN_XNNPACK_GAPS.get((name, act),
                                        "not claimed by the XNNPACK delegate (it does not log why)")
        fallback.append({"index": int(o["index"]), "op": name, "dtypes": dtypes, "reason": reason})
    return {"delegate": "XNNPACK" if delegates or "XNNPACK" in cap.text else "none",
            "total_nodes": len(original), "delegated_nodes": len(delegated), "partitions": len(delegates),
            "by_op": dict(sorted(by_op.items())), "fallback": fallback,
            "method": "LiteRT with its default XNNPACK delegate; original nodes reachable inside each DELEGATE "
                      "node's boundary tensors"}


_GPU_OK = re.compile(r"looks compatible with GPU delegate(?: on TFLite runtime version (\d[\w.\-]*\w))?")


def gpu_compatibility(data: bytes) -> dict:
    """TF's model analyzer with ``gpu_compatibility=True``: compatible or not, and the issues it lists."""
    import tensorflow as tf

    from edgeconv.console import quiet_native

    with quiet_native() as cap:
        tf.lite.experimental.Analyzer.analyze(model_content=bytes(data), gpu_compatibility=True)
    text = cap.text
    return parse_gpu_analysis(text)


def parse_gpu_analysis(text: str) -> dict:
    """Parse the analyzer's text: it prints ``GPU COMPATIBILITY WARNING: <why>`` after each incompatible ``Op#N``
    line, then a per-subgraph summary, and "looks compatible with GPU delegate" only when every node passed."""
    ok = _GPU_OK.search(text)
    issues, last_op = [], ""
    for ln in text.splitlines():
        line = ln.strip()
        if line.startswith("Op#"):
            last_op = line.split("(")[0]
        elif line.startswith("GPU COMPATIBILITY WARNING:"):
            why = line.split(":", 1)[1].strip()
            issues.append(why if why.startswith("Subgraph#") or not last_op else f"{last_op}: {why}")
            last_op = ""
    note = f"TF analyzer, TFLite runtime {ok.group(1)}" if ok and ok.group(1) else "TF analyzer"
    return {"compatible": bool(ok) and not issues, "issues": issues, "note": note}


# ------------------------------------------------------------------------------------------------------------ ONNX
def _inspect_onnx(p: Path, data: bytes) -> InspectReport:
    import numpy as np
    import onnx
    from onnx import helper

    from edgeconv.onnx.introspect import onnx_details, onnx_opset

    proto = onnx.load_from_string(data)
    layout = "nchw" if _looks_nchw(proto) else "nhwc"
    details = onnx_details(data, layout)
    sizes: Counter = Counter()
    for init in proto.graph.initializer:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type))
        sizes[dt.name] += int(np.prod(init.dims, dtype=np.int64)) * dt.itemsize
    opset = onnx_opset(proto)
    meta = {m.key: m.value for m in proto.metadata_props}
    from edgeconv.pipeline.metadata import METADATA_NAME, parse_metadata

    kernels = None
    if any(op in details["ops"] for op in ("QuantizeLinear", "DequantizeLinear", "QLinearConv")):
        from edgeconv.onnx.mobile import integer_kernel_coverage

        kernels = integer_kernel_coverage(data)
    return InspectReport(path=str(p), format="onnx", bytes=len(data), sha256=sha256_file(p),
                         inputs=details["inputs"], outputs=details["outputs"], ops=details["ops"],
                         size_by_type=dict(sorted(sizes.items())), opset=opset,
                         metadata=parse_metadata(meta[METADATA_NAME]) if METADATA_NAME in meta else None,
                         onnx_kernels=kernels)


def _looks_nchw(proto) -> bool:
    """An image input whose dim 1 is 1 or 3 and last dim is larger is an NCHW input (edgeconv's --nchw files)."""
    try:
        dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    except (IndexError, AttributeError):
        return False
    return len(dims) == 4 and dims[1] in (1, 3) and dims[3] > 4

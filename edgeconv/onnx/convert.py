"""Keras model -> ONNX bytes through tf2onnx, with optional NCHW input and verified HardSwish/HardSigmoid fusion.

The model is traced as a ``tf.function`` with a fixed ``TensorSpec`` and converted with
``tf2onnx.convert.from_function``: this touches no Keras-internal attribute (``output_names``, ``_get_save_spec``),
which is what breaks ``from_keras`` across Keras versions. tf2onnx's own problems are handled in
:mod:`edgeconv.onnx.compat`. The bytes are deterministic: same model and options -> same file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.runtime.runners import keras_output_names

MIN_OPSET, MAX_OPSET = 13, 18  # per-axis QuantizeLinear needs 13; tf2onnx 1.17 knows opsets up to 18
PARITY_ATOL = 1e-5  # a rewrite is kept only if outputs move by at most this (relative to max(1, |output|))


@dataclass
class OnnxResult:
    model_bytes: bytes
    input_names: list[str]
    output_names: list[str]
    leftover_transposes: int
    rewrites: list[str] = field(default_factory=list)  # e.g. ["HardSwish x3", "HardSigmoid x1"]
    warnings: list[str] = field(default_factory=list)  # one line each, for the user
    layout: str = "nhwc"


def _tensor_name(name: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", (name or "").split(":")[0])
    return name or fallback


def _input_name(model) -> str:
    """The InputLayer's name (``image``); Keras 3 names the tensor itself ``keras_tensor_<n>``."""
    history = getattr(model.inputs[0], "_keras_history", None)
    layer_name = getattr(history[0], "name", "") if history else ""
    return _tensor_name(layer_name or model.inputs[0].name, "input")


def _trace(model, batch_size, tf):
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise EdgeconvError(f"{model.name}: the model has no defined input (a subclassed model?); wrap it in "
                            f"a Functional model first: inp = keras.Input(shape); keras.Model(inp, model(inp))")
    if len(inputs) != 1:
        raise EdgeconvError(f"{model.name}: only single-input image models can be exported to ONNX, "
                            f"found {len(model.inputs)} inputs")
    in_name = _input_name(model)
    dtype = getattr(model.inputs[0], "dtype", "float32") or "float32"
    sig = [tf.TensorSpec((batch_size, *model.input_shape[1:]), tf.as_dtype(dtype), name=in_name)]

    @tf.function(input_signature=sig, autograph=False)
    def forward(x):
        import keras

        return keras.tree.flatten(model(x, training=False))  # list, tuple or dict outputs: model.outputs' order

    return forward, sig, in_name


def _freeze_captured_inputs(proto, forward, in_name: str) -> None:
    """Turn graph inputs that are captured constants into initializers.

    tf2onnx freezes variables but leaves *eager tensors* the traced function captured as extra graph inputs: Keras 3's
    ``Normalization`` layer (inside every keras.applications EfficientNet) keeps its mean and variance as such
    tensors, so the ONNX asked for 3 inputs. Their values are known at trace time; they become initializers."""
    from onnx import numpy_helper

    cf = forward.get_concrete_function()
    values = {internal.name: ext for ext, internal in zip(cf.captured_inputs, cf.graph.internal_captures)
              if ext.dtype.name != "resource"}
    keep = []
    for inp in proto.graph.input:
        if inp.name != in_name and not inp.name.startswith(f"{in_name}:") and inp.name in values:
            proto.graph.initializer.append(numpy_helper.from_array(np.asarray(values[inp.name]), inp.name))
        else:
            keep.append(inp)
    del proto.graph.input[:]
    proto.graph.input.extend(keep)


def _stable_order(graph) -> None:
    """Topologically sort the nodes with a key that does not depend on tf2onnx's run-to-run choices.

    tf2onnx's own topological sort varies between processes (set iteration order), so equal models gave different
    bytes. Kahn's algorithm here picks, among ready nodes, the smallest (name without ``__N``, op type, positions of
    the producers of its inputs).
    """
    import heapq

    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    waiting = [sum(s in producer for s in n.input) for n in nodes]
    users: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for s in n.input:
            if s in producer:
                users.setdefault(producer[s], []).append(i)
    position: dict[int, int] = {}

    def key(i):
        n = nodes[i]
        ins = tuple(f"#{position[producer[s]]:08d}" if s in producer else "=" + _base(s) for s in n.input)
        return (_base(n.name), n.op_type, ins, i)

    ready = [key(i) for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    while ready:
        i = heapq.heappop(ready)[-1]
        position[i] = len(position)
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, key(u))
    if len(position) != len(nodes):  # a cycle cannot come out of tf2onnx; keep its order rather than drop nodes
        return
    ordered = sorted(range(len(nodes)), key=position.__getitem__)
    new = [nodes[i] for i in ordered]
    del graph.node[:]
    graph.node.extend(new)


def _base(name: str) -> str:
    return re.sub(r"__\d+", "", name)


def _canonical_names(graph) -> None:
    """Make the names independent of tf2onnx's run-to-run choices, so the same model gives the same bytes.

    tf2onnx numbers the nodes it inserts with a process-wide counter (``Transpose__123``) and, when it merges
    duplicate constants, keeps whichever name it met first (which varies between runs). Initializers are renamed
    after their first consumer (``<node>:in<k>``) and sorted; remaining ``__N`` suffixes are renumbered in order
    of first appearance.
    """
    inits = {i.name: i for i in graph.initializer}
    new_init: dict[str, str] = {}
    for n in graph.node:
        for k, s in enumerate(n.input):
            if s in inits and s not in new_init:
                new_init[s] = f"{n.name}:in{k}"
    numbers: dict[str, str] = {}
    io = {v.name for v in list(graph.input) + list(graph.output)}

    def fix(name: str) -> str:
        if name in io:
            return name
        if name in new_init:
            name = new_init[name]
        return re.sub(r"__(\d+)", lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers))), name)

    for n in graph.node:
        n.name = fix(n.name)
        n.input[:] = [fix(s) for s in n.input]
        n.output[:] = [fix(s) for s in n.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info) + list(graph.initializer):
        vi.name = fix(vi.name)
    ordered = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)


def _rename_outputs(graph, names: list[str]) -> None:
    taken = {n for node in graph.node for n in node.output} | {i.name for i in graph.initializer}
    for out, new in zip(graph.output, names):
        old = out.name
        if old == new:
            continue
        if new in taken:  # a node inside the graph already uses this name: keep tf2onnx's
            continue
        for node in graph.node:
            node.input[:] = [new if s == old else s for s in node.input]
            node.output[:] = [new if s == old else s for s in node.output]
        out.name = new


def _parity_inputs(model, verify_inputs) -> np.ndarray:
    if verify_inputs is not None:
        return np.asarray(verify_inputs, np.float32)
    rng = np.random.default_rng(0)
    shape = (2, *model.input_shape[1:])
    # both usual input ranges: normalized ([-1, 1]) and raw pixels (a model with a Rescaling layer)
    return np.concatenate([rng.uniform(-1, 1, shape), rng.uniform(0, 255, shape)]).astype(np.float32)


def max_rel_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """max |a - b| / max(1, |a|) over every output (inf if shapes differ)."""
    if len(a) != len(b) or any(y is None or x.shape != y.shape for x, y in zip(a, b)):
        return float("inf")
    return max(float(np.max(np.abs(x - y)) / max(1.0, float(np.max(np.abs(x))))) for x, y in zip(a, b))


def _run_all(proto, names: list[str], x, layout: str) -> dict[str, np.ndarray]:
    """Run ``proto`` with ``names`` (float tensors) added as outputs; -> {name: value} for outputs and those."""
    import onnx
    from onnx import TensorProto, helper

    from edgeconv.runtime.runners import OnnxRunner

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    known = {o.name for o in model.graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names
                              if n not in known and types.get(n) == TensorProto.FLOAT)
    runner = OnnxRunner(model.SerializeToString(), layout=layout)
    return dict(zip([o.name for o in runner.outputs], runner.run(x)))


def _verified(proto, rewrite, x, layout: str, warnings: list[str], what: str):
    """Apply ``rewrite(proto) -> (proto, count or counts)``; keep it only if onnxruntime still gives the same
    values, within :data:`PARITY_ATOL`, for the graph outputs *and* every tensor both graphs compute (the final
    output alone can hide a wrong activation, e.g. a near-uniform softmax)."""
    new, counts = rewrite(proto)
    if not (any(counts.values()) if isinstance(counts, dict) else counts):
        return proto, counts
    produced = [o for n in new.graph.node for o in n.output]
    common = sorted(set(produced) & {o for n in proto.graph.node for o in n.output})
    ref, got = _run_all(proto, common, x, layout), _run_all(new, common, x, layout)
    names = [o.name for o in proto.graph.output] + [n for n in common if n in ref and n in got]
    diff = max_rel_diff([ref[n] for n in names], [got.get(n) for n in names])
    if not diff <= PARITY_ATOL:
        warnings.append(f"onnx: {what} not applied (it would change outputs by {diff:.2e} > {PARITY_ATOL:g})")
        return proto, {} if isinstance(counts, dict) else 0
    return new, counts


def convert_onnx(model, *, opset: int = 17, batch_size: int | None = 1, nchw: bool = False,
                 verify_inputs=None, rewrite: bool = True) -> OnnxResult:
    """Convert a Keras 3 model to ONNX bytes.

    ``batch_size`` None gives a dynamic batch. ``nchw`` makes the ONNX input NCHW (tf2onnx ``inputs_as_nchw``).
    ``verify_inputs`` (float32 NHWC model inputs) are used to check graph rewrites; seeded random inputs otherwise.
    """
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise UsageError(f"ONNX opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    import onnx
    import tensorflow as tf
    import tf2onnx

    from edgeconv.onnx.rewrite import drop_noop_reshapes, fuse_hard_activations
    from edgeconv.onnx.compat import (grouped_conv_without_xla, quiet_tf2onnx, register_erfc_handler,
                                 transpose_optimizer_scalar_add_fix)

    forward, sig, in_name = _trace(model, batch_size, tf)
    layout = "nchw" if nchw else "nhwc"
    register_erfc_handler()
    try:
        with (quiet_tf2onnx() as log, transpose_optimizer_scalar_add_fix(),
              grouped_conv_without_xla()):
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=sig, opset=int(opset),
                                                     inputs_as_nchw=[f"{in_name}:0"] if nchw else None)
    except Exception as e:  # tf2onnx raises many types; the user gets one line
        msg = first_line(e)
        raise EdgeconvError(f"tf2onnx cannot convert {model.name}: {msg}") from None
    warnings = log.summaries()
    _freeze_captured_inputs(proto, forward, in_name)
    graph = proto.graph
    graph.name = _tensor_name(model.name, "model")
    proto.producer_name, proto.doc_string, graph.doc_string = "edgeconv (tf2onnx)", "", ""  # doc: tf.function id
    _rename_outputs(graph, keras_output_names(model))
    x = _parity_inputs(model, verify_inputs)
    proto, _ = _verified(proto, drop_noop_reshapes, x, layout, warnings, "no-op Reshape removal")
    rewrites: list[str] = []
    if rewrite:
        proto, counts = _verified(proto, fuse_hard_activations, x, layout, warnings, "HardSwish/HardSigmoid fusion")
        rewrites = [f"{op} x{n}" for op, n in counts.items() if n]
    _stable_order(proto.graph)
    _canonical_names(proto.graph)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise EdgeconvError(f"tf2onnx produced an invalid ONNX model for {model.name}: "
                            f"{first_line(e)}") from None
    transposes = sum(n.op_type == "Transpose" for n in proto.graph.node)
    warnings = [f"{w}; {transposes} Transpose nodes left" if "optimize_transpose" in w else w for w in warnings]
    return OnnxResult(model_bytes=proto.SerializeToString(deterministic=True),
                      input_names=[i.name for i in proto.graph.input],
                      output_names=[o.name for o in proto.graph.output], leftover_transposes=transposes,
                      rewrites=rewrites, warnings=warnings, layout=layout)

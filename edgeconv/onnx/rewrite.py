"""Graph rewrites that make tf2onnx output better for mobile runtimes: h-swish / hard-sigmoid fusion.

tf2onnx writes Keras' ``hard_swish`` and the tutorials' ``x * tf.nn.relu6(x + 3) / 6`` as four elementwise ops
(``Add(x, 3) -> Clip(0, 6) -> Mul(1/6) -> Mul(x)``) and the squeeze-excite hard-sigmoid as three. ONNX has single ops
for both (``HardSwish``, opset >= 14; ``HardSigmoid(alpha=1/6, beta=0.5)``), which runtimes implement as one kernel
and quantizers treat as one activation. :func:`fuse_hard_activations` finds, in any operand order:

- ``t = x + 3`` (``Add`` with a single-valued constant 3),
- ``r = relu6(t)`` as ``Clip(t, 0, 6)``, ``Min(Max(t, 0), 6)``, ``Max(Min(t, 6), 0)`` or ``Min(Relu(t), 6)``,
- hard-sigmoid ``s = r / 6`` (``Div`` by 6 or ``Mul`` by 1/6) and h-swish ``x * s`` or ``(x * r) / 6``.

Every intermediate tensor must have exactly one consumer and not be a graph output, so nothing else changes.
The caller (:func:`edgeconv.onnx.convert.convert_onnx`) keeps the result only if onnxruntime outputs still match.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

HARD_SWISH_MIN_OPSET = 14
_RTOL = 1e-6


class _Graph:
    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.nodes = list(graph.node)  # one set of node objects for every lookup below (identity matters)
        self.outputs = {o.name for o in graph.output}
        self.consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = defaultdict(list)
        for n in self.nodes:
            for s in n.input:
                self.consumers[s].append(n)

    def const_is(self, name: str, value: float) -> bool:
        v = self.consts.get(name)
        return v is not None and v.size == 1 and np.issubdtype(v.dtype, np.floating) and \
            abs(float(v.ravel()[0]) - value) <= _RTOL * max(1.0, abs(value))

    def only_consumer(self, tensor: str):
        """The single node reading ``tensor`` (None if several, none, or it is a graph output)."""
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def other_input(self, node, tensor: str):
        """For a binary node that reads ``tensor``, the name of its other input."""
        if len(node.input) != 2 or tensor not in node.input:
            return None
        return node.input[1] if node.input[0] == tensor else node.input[0]


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _relu6(g: _Graph, t: str):
    """If ``t`` flows only into a relu6, -> (output tensor, nodes) of that relu6."""
    n = g.only_consumer(t)
    if n is None:
        return None
    if n.op_type == "Clip" and n.input[0] == t:
        if len(n.input) == 3 and g.const_is(n.input[1], 0.0) and g.const_is(n.input[2], 6.0):
            return n.output[0], [n]
        if len(n.input) == 1 and _attr(n, "min") == 0.0 and _attr(n, "max") == 6.0:  # opset < 11 form
            return n.output[0], [n]
        return None
    if n.op_type not in ("Max", "Min", "Relu"):
        return None
    if n.op_type != "Relu" and not g.const_is(g.other_input(n, t) or "", 0.0 if n.op_type == "Max" else 6.0):
        return None
    m = g.only_consumer(n.output[0])
    want = "Max" if n.op_type == "Min" else "Min"
    bound = 0.0 if want == "Max" else 6.0
    if m is None or m.op_type != want or not g.const_is(g.other_input(m, n.output[0]) or "", bound):
        return None
    return m.output[0], [n, m]


def _div6(g: _Graph, t: str):
    """If ``t`` flows only into ``/ 6`` (Div by 6 or Mul by 1/6), -> (output, node)."""
    n = g.only_consumer(t)
    if n is None:
        return None
    if n.op_type == "Div" and n.input[0] == t and g.const_is(n.input[1], 6.0):
        return n.output[0], n
    if n.op_type == "Mul" and g.const_is(g.other_input(n, t) or "", 1.0 / 6.0):
        return n.output[0], n
    return None


def _mul_by(g: _Graph, t: str, x: str):
    """If ``t`` flows only into ``Mul(t, x)``, -> (output, node)."""
    n = g.only_consumer(t)
    if n is not None and n.op_type == "Mul" and g.other_input(n, t) == x:
        return n.output[0], n
    return None


def _match(g: _Graph, add, allow_hswish: bool):
    """-> (op_type, x, output tensor, matched nodes) for a hard activation starting at ``add``, or None."""
    if add.op_type != "Add" or len(add.input) != 2:
        return None
    for x, c in (add.input, reversed(add.input)):
        if x != c and g.const_is(c, 3.0):
            break
    else:
        return None
    r = _relu6(g, add.output[0])
    if r is None:
        return None
    r_out, nodes = r
    nodes = [add, *nodes]
    s = _div6(g, r_out)
    if s is not None:  # hard-sigmoid, maybe followed by * x
        h = _mul_by(g, s[0], x) if allow_hswish else None
        if h is not None:
            return "HardSwish", x, h[0], nodes + [s[1], h[1]]
        return "HardSigmoid", x, s[0], nodes + [s[1]]
    m = _mul_by(g, r_out, x) if allow_hswish else None
    if m is not None:  # (x * relu6(x + 3)) / 6
        d = _div6(g, m[0])
        if d is not None:
            return "HardSwish", x, d[0], nodes + [m[1], d[1]]
    return None


def _opset(model) -> int:
    from edgeconv.onnx.introspect import onnx_opset

    return onnx_opset(model) or 0


def fuse_hard_activations(model_proto):
    """-> (new ModelProto, {"HardSwish": n, "HardSigmoid": m}); the input proto is not modified."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    allow_hswish = _opset(model) >= HARD_SWISH_MIN_OPSET
    counts = {"HardSwish": 0, "HardSigmoid": 0}
    graph = model.graph
    g = _Graph(graph)
    removed: set[int] = set()
    replacement: dict[int, object] = {}  # index of the first matched node -> the fused node
    index = {id(n): i for i, n in enumerate(g.nodes)}
    for add in g.nodes:
        if index[id(add)] in removed:
            continue
        m = _match(g, add, allow_hswish)
        if m is None or any(index[id(n)] in removed for n in m[3]):
            continue
        op, x, out, nodes = m
        attrs = {"alpha": 1.0 / 6.0, "beta": 0.5} if op == "HardSigmoid" else {}
        fused = helper.make_node(op, [x], [out], name=nodes[-1].name, **attrs)
        removed.update(index[id(n)] for n in nodes)
        replacement[index[id(nodes[0])]] = fused
        counts[op] += 1
    if not removed:
        return model, counts
    new_nodes = []
    for i, n in enumerate(g.nodes):
        if i in replacement:
            new_nodes.append(replacement[i])
        elif i not in removed:
            new_nodes.append(n)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _prune(graph)
    return model, counts


def _prune(graph) -> None:
    """Drop initializers nothing reads and value_info of tensors nothing produces any more."""
    used = {s for n in graph.node for s in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    produced = {o for n in graph.node for o in n.output}
    info = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(info)


def drop_noop_reshapes(model_proto):
    """-> (new ModelProto, number of Reshape nodes removed): Reshapes whose output shape equals their input shape
    are bypassed, and a Reshape feeding only another Reshape is skipped (the second one alone gives the same result).

    tf2onnx's transpose optimizer turns transposes of tensors with 1x1 spatial size into Reshapes, and how many of
    them survive its later passes varies from process to process; removing the no-op ones makes the graph (and so
    the file) the same on every run, and smaller.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    graph = model.graph
    removed = 0
    while True:
        inferred = onnx.shape_inference.infer_shapes(model).graph
        shapes = {}
        for vi in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
            dims = vi.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                shapes[vi.name] = tuple(d.dim_value for d in dims)
        consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        g = _Graph(graph)
        victim = None
        for n in g.nodes:
            if n.op_type != "Reshape" or n.output[0] in g.outputs:
                continue
            src = g.producer.get(n.input[0])
            if shapes.get(n.input[0]) is not None and shapes.get(n.input[0]) == shapes.get(n.output[0]):
                victim = (n, n.input[0])  # no-op: consumers read the input directly
                break
            if src is not None and src.op_type == "Reshape" and g.only_consumer(src.output[0]) is n and \
                    n.input[1] in consts and 0 not in consts[n.input[1]].tolist():
                victim = (src, src.input[0])  # Reshape(Reshape(x)): the outer one alone will do
                break
        if victim is None:
            break
        node, source = victim
        for user in g.consumers.get(node.output[0], []):
            user.input[:] = [source if s == node.output[0] else s for s in user.input]
        graph.node.remove(node)
        removed += 1
    _prune(graph)
    return model, removed

"""QDQ graph rewrites that let onnxruntime run a quantized MobileNet-style graph with integer kernels end to end.

onnxruntime's quantizer (``quantize_static``, QDQ format) leaves two things onnxruntime's CPU provider cannot run in
integer arithmetic, and one it runs slowly; they are rewritten here without changing what the graph computes
(measured on keras.applications MobileNetV3 at 224x224, onnxruntime 1.32, 1 thread, benchmarks/onnx_int8_speed.py):

- **Hard-sigmoid islands.** onnxruntime has no ``HardSwish`` kernel: it inlines the function body
  (``x * HardSigmoid(x)``), and has no integer ``HardSigmoid`` either, so every h-swish and every squeeze-excite gate
  ran as ``DequantizeLinear -> HardSigmoid (float) -> QuantizeLinear -> QLinearMul`` (28 float islands in
  MobileNetV3-Small). :func:`hard_sigmoid_to_add` writes ``HardSigmoid(x) = clip(x + beta/alpha, 0, 1/alpha) * alpha``
  as an ``Add`` of a quantized constant whose output ``QuantizeLinear`` has ``1/alpha`` times the scale: the
  ``QuantizeLinear`` saturation *is* the clip, and its codes are those of hard-sigmoid at the original scale, which
  the unchanged ``DequantizeLinear`` after it reads. onnxruntime fuses that into ``QLinearAdd``. Same codes as before
  (bit-identical outputs measured), 2.5x less time per h-swish.
- **Input rescaling.** A Keras ``Rescaling`` layer at the input becomes ``Mul``/``Add`` by scalars; quantized, that is
  ``QuantizeLinear -> QLinearMul -> QLinearAdd`` over the whole input image, and the pixel grid falls exactly on
  rounding ties (x / 127.5 - 1 at scale 2/255), which onnxruntime's integer ``QLinearAdd`` rounds differently from
  the QDQ reference (45% of input codes off by one). :func:`fold_input_affine` removes both ops: the input
  ``QuantizeLinear`` codes are read by a ``DequantizeLinear`` whose scale and zero point include the affine map, with
  the scale chosen so the zero point is an integer (no ties). One pass over the image instead of three.

- **Depthwise channel counts.** onnxruntime's x86 int8 depthwise kernel is 1.5-2x slower when the channel count is
  not a multiple of 16 (MobileNetV3's 72, 88, 120, 184, 200). :func:`pad_depthwise_channels` (on the *float* graph,
  before quantization) adds zero channels to those blocks; the outputs do not change.

The first two rewrites leave a ``QuantizeLinear``/``DequantizeLinear`` pair with *different* parameters on purpose: the
integer codes are reinterpreted, which is valid ONNX and evaluates the same in the QDQ reference (float) semantics
and in onnxruntime's fused kernels. Each function works in place and returns how many sites it changed.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

#: ops that only move or reshape data: their DequantizeLinear -> op -> QuantizeLinear keep equal parameters
MOVEMENT_OPS = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})


class _Index:
    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in graph.node:
            for s in n.input:
                self.consumers[s].append(n)
        self.inits = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self._np = numpy_helper
        self.names = {n.name for n in graph.node} | set(self.inits) | set(self.producer)

    def array(self, name: str):
        t = self.inits.get(name)
        return None if t is None else self._np.to_array(t)

    def scalar(self, name: str):
        """A one-element initializer as a 0-d array (tf2onnx writes some scalars as (1, 1, 1, 1)), else None."""
        v = self.array(name)
        return v.reshape(()) if v is not None and v.size == 1 else None

    def qparams(self, node):
        """(scale, zero point) of a scalar Quantize/DequantizeLinear; the zero point defaults to uint8 0."""
        s = self.scalar(node.input[1]) if len(node.input) > 1 else None
        z = self.scalar(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        return (None, None) if s is None or z is None else (float(s), z)

    def only_consumer(self, tensor: str):
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def const_value(self, tensor: str):
        """Float value of a scalar constant given as an initializer or as DequantizeLinear(initializer)."""
        if tensor in self.inits:
            v = self.scalar(tensor)
            return None if v is None or not np.issubdtype(v.dtype, np.floating) else float(v)
        p = self.producer.get(tensor)
        if p is None or p.op_type != "DequantizeLinear":
            return None
        q = self.scalar(p.input[0])
        s, z = self.qparams(p)
        if q is None or s is None:
            return None
        return float((int(q) - int(z)) * np.float32(s))

    def fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def add_init(self, base: str, value) -> str:
        name = self.fresh(base)
        t = self._np.from_array(np.asarray(value), name)
        self.graph.initializer.append(t)
        self.inits[name] = t
        return name


def _attr(node, name, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def decompose_hard_swish(model) -> int:
    """Float graph: ``HardSwish(x)`` -> ``Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))``, ONNX's own definition of
    HardSwish (and what onnxruntime inlines anyway). Done before quantization so the quantizer sees the same graph
    with or without onnxruntime's pre-processing."""
    from onnx import helper

    graph = model.graph
    idx = _Index(graph)
    new, count = [], 0
    for n in graph.node:
        if n.op_type != "HardSwish" or n.domain not in ("", "ai.onnx"):
            new.append(n)
            continue
        base = n.name or n.output[0]
        hs = idx.fresh(f"{base}/hard_sigmoid")
        new.append(helper.make_node("HardSigmoid", [n.input[0]], [hs], name=hs, alpha=1.0 / 6.0, beta=0.5))
        new.append(helper.make_node("Mul", [n.input[0], hs], list(n.output), name=idx.fresh(f"{base}/mul")))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new)
    return count


def hard_sigmoid_to_add(model) -> int:
    """QDQ graph: ``DQ -> HardSigmoid(alpha, beta) -> Q(s, z)`` -> ``DQ -> Add(x, DQ(beta/alpha)) -> Q(s/alpha, z)``.

    Only where the output ``QuantizeLinear`` is per-tensor, its zero point is the lowest code (range starts at 0,
    as calibrated for a hard-sigmoid) and its range ends at or below 1, so that its saturation reproduces the clip
    to [0, 1] exactly; the ``DequantizeLinear`` after it keeps (s, z) and so reads hard-sigmoid values."""
    from onnx import helper

    graph = model.graph
    idx = _Index(graph)
    count = 0
    for n in list(graph.node):
        if n.op_type != "HardSigmoid" or n.domain not in ("", "ai.onnx") or n.output[0] in idx.outputs:
            continue
        alpha, beta = float(_attr(n, "alpha", 0.2)), float(_attr(n, "beta", 0.5))
        src = idx.producer.get(n.input[0])
        q = idx.only_consumer(n.output[0])
        if alpha <= 0 or beta <= 0 or src is None or src.op_type != "DequantizeLinear" or q is None \
                or q.op_type != "QuantizeLinear":
            continue
        s, z = idx.qparams(q)
        if s is None or not np.issubdtype(z.dtype, np.integer):
            continue
        info = np.iinfo(z.dtype)
        if int(z) != info.min or (info.max - int(z)) * s > 1.0 + 1e-6:
            continue
        base = n.name or n.output[0]
        c_q = idx.add_init(f"{base}/offset_quantized", np.array(1, np.uint8))
        c_s = idx.add_init(f"{base}/offset_scale", np.array(beta / alpha, np.float32))
        c_z = idx.add_init(f"{base}/offset_zero_point", np.array(0, np.uint8))
        c = idx.fresh(f"{base}/offset")
        graph.node.append(helper.make_node("DequantizeLinear", [c_q, c_s, c_z], [c], name=c))
        n.op_type = "Add"
        del n.attribute[:]
        n.input[:] = [n.input[0], c]
        q.input[1] = idx.add_init(f"{q.input[1]}/times_{1 / alpha:g}", np.array(s / alpha, np.float32))
        count += 1
    if count:
        toposort(graph)
    return count


def _const_rank(idx: _Index, op, dq) -> int:
    """Rank of the constant operand of a binary ``op`` (broadcasting it may not add dimensions)."""
    name = op.input[1] if op.input[0] == dq.output[0] else op.input[0]
    p = idx.producer.get(name)
    v = idx.array(p.input[0] if p is not None and p.op_type == "DequantizeLinear" else name)
    return 0 if v is None else v.ndim


def _single_dq(idx: _Index, q):
    """The one DequantizeLinear reading ``q``'s output (None if there are others, or it is a graph output)."""
    d = idx.only_consumer(q.output[0])
    return d if d is not None and d.op_type == "DequantizeLinear" else None


def fold_input_affine(model) -> int:
    """QDQ graph: ``input -> Q0 -> DQ -> Mul(a) -> Q -> DQ -> Add(b) -> Q -> DQ ...`` (scalar constants, a > 0,
    optionally with Transpose/Reshape steps in between) -> ``input -> Q0' -> ... -> DQ'`` where the last DequantizeLinear
    reads the input codes with the affine map folded into its scale and zero point.

    Q0' keeps Q0's zero point z0 and gets scale s0 * t, t >= 1 the smallest stretch that makes b / (a s0 t) an
    integer k; then DQ' = (s0 t a, z0 - k) gives a x + b for every code, and the covered range of a x + b contains
    the calibrated one (same resolution up to t). Returns the number of Mul/Add nodes removed."""
    graph = model.graph
    if len(graph.input) != 1:
        return 0
    idx = _Index(graph)
    q0 = idx.only_consumer(graph.input[0].name)
    if q0 is None or q0.op_type != "QuantizeLinear" or len(q0.input) < 3:
        return 0
    s0, z0 = idx.qparams(q0)
    if s0 is None or not s0 > 0:
        return 0
    a, b, steps, q = 1.0, 0.0, [], q0
    while True:
        dq = _single_dq(idx, q)
        op = idx.only_consumer(dq.output[0]) if dq is not None else None
        nq = idx.only_consumer(op.output[0]) if op is not None else None
        if nq is None or nq.op_type != "QuantizeLinear":
            break
        if op.op_type in ("Mul", "Add") and len(op.input) == 2:
            c = idx.const_value(op.input[1] if op.input[0] == dq.output[0] else op.input[0])
            rank = len(graph.input[0].type.tensor_type.shape.dim)
            if c is None or (op.op_type == "Mul" and not c > 0) or _const_rank(idx, op, dq) > rank:
                break
            a, b = (a * c, b * c) if op.op_type == "Mul" else (a, b + c)
        elif op.op_type not in MOVEMENT_OPS or op.input[0] != dq.output[0]:
            break
        steps.append((dq, op, nq))
        q = nq
    if not any(op.op_type in ("Mul", "Add") for _, op, _ in steps):
        return 0
    # moves after the last Mul/Add stay in the chain: their Q/DQ keep equal parameters, so onnxruntime still drops
    # them, and the reinterpreting DequantizeLinear comes after them
    last_dqs = idx.consumers.get(steps[-1][2].output[0], []) if steps else []
    if not steps or steps[-1][2].output[0] in idx.outputs or not last_dqs or \
            any(d.op_type != "DequantizeLinear" for d in last_dqs):
        return 0
    info = np.iinfo(z0.dtype)
    k = b / (a * s0)
    if abs(k - round(k)) <= 1e-6 * max(1.0, abs(k)):
        k_int = int(round(k))
    else:
        k_int = int(np.trunc(k))
        if k_int == 0:
            return 0
    t = 1.0 if k_int == 0 else b / (a * s0 * k_int)
    z_out = int(z0) - k_int
    if not info.min <= z_out <= info.max or not t >= 1.0 - 1e-9:
        return 0
    q_s = idx.add_init(f"{q0.input[1]}/folded", np.array(s0 * t, np.float32))
    q_z = idx.add_init(f"{q0.input[2]}/folded", np.array(z0, z0.dtype))
    dq_s = idx.add_init(f"{q0.input[1]}/folded_affine", np.array(s0 * t * a, np.float32))
    dq_z = idx.add_init(f"{q0.input[2]}/folded_affine", np.array(z_out, z0.dtype))
    q0.input[1], q0.input[2] = q_s, q_z
    cur, removed, drop = q0.output[0], 0, set()
    for dq, op, nq in steps:
        if op.op_type in MOVEMENT_OPS:  # codes pass through unchanged
            dq.input[:] = [cur, q_s, q_z]
            nq.input[1], nq.input[2] = q_s, q_z
            cur = nq.output[0]
        else:
            drop.update((id(dq), id(op), id(nq)))
            removed += 1
    for d in last_dqs:
        d.input[:] = [cur, dq_s, dq_z]
    keep = [n for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(keep)
    prune(graph)
    return removed


def toposort(graph) -> None:
    """Stable topological order (nodes keep their relative order where the data flow allows)."""
    avail = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for n in pending:
            if all(s in avail for s in n.input):
                ordered.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("the graph has a cycle or reads an undefined tensor")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def prune(graph) -> None:
    """Drop nodes whose outputs nothing reads, then initializers nothing reads."""
    outs = {o.name for o in graph.output}
    while True:
        used = {s for n in graph.node for s in n.input} | outs
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {s for n in graph.node for s in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


#: float ops that act on every channel alike: a tensor flowing through them keeps its channel count
_CHANNELWISE = frozenset({"Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "LeakyRelu", "Mul", "Add", "Pad",
                          "GlobalAveragePool", "Identity"})


def _conv_group(node) -> int:
    return int(_attr(node, "group", 1))


def _channel_region(idx: _Index, start: str, channels: int):
    """The set of float tensors connected to ``start`` through channel-wise ops and depthwise convs, bounded by
    ordinary convs: -> (tensors, producers, consumers, depthwise) or None when something else touches it.

    producers: group-1 Convs writing a region tensor (their output channels get padded); consumers: group-1 Convs
    reading one (their input channels get padded); depthwise: Convs with group == channels inside the region."""
    tensors, todo = set(), [start]
    producers, consumers, depthwise, seen_nodes = {}, {}, {}, set()

    def const_ok(name: str) -> bool:  # scalars (or absent optional inputs) only
        if name == "":
            return True
        v = idx.array(name)
        if v is None:
            v_from = idx.producer.get(name)
            if v_from is not None and v_from.op_type == "Constant":
                return False
            return None  # not a constant: a tensor
        return v.size == 1

    def visit(node, via_output: bool):
        key = id(node)
        if key in seen_nodes:
            return True
        seen_nodes.add(key)
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            return False
        if op == "Conv":
            g = _conv_group(node)
            if g == channels and g > 1:
                depthwise[key] = node
                todo.extend([node.input[0], node.output[0]])
                return idx.array(node.input[1]) is not None and (len(node.input) < 3 or idx.array(node.input[2])
                                                                 is not None)
            if g != 1 or idx.array(node.input[1]) is None or (len(node.input) > 2 and idx.array(node.input[2]) is None):
                return False
            if via_output:
                producers[key] = node
            else:
                consumers[key] = node
            return True
        if op not in _CHANNELWISE:
            return False
        if op == "Pad":
            pads = idx.array(node.input[1]) if len(node.input) > 1 else None
            if pads is None or len(pads) != 8 or pads[1] != 0 or pads[5] != 0 or len(node.input) > 3:
                return False
            if len(node.input) > 2 and node.input[2] and const_ok(node.input[2]) is not True:
                return False
            todo.extend([node.input[0], node.output[0]])
            return True
        for s in node.input:
            c = const_ok(s)
            if c is False:
                return False
            if c is None:
                todo.append(s)
        todo.extend(node.output)
        return True

    while todo:
        t = todo.pop()
        if t in tensors:
            continue
        if t in idx.outputs or t in {i.name for i in idx.graph.input}:
            return None
        tensors.add(t)
        p = idx.producer.get(t)
        if p is None or not visit(p, via_output=True):
            return None
        for c in idx.consumers.get(t, []):
            if not visit(c, via_output=False):
                return None
    return tensors, producers, consumers, depthwise


def pad_depthwise_channels(model, multiple: int = 16) -> int:
    """Float NCHW graph: give every depthwise Conv whose channel count is not a multiple of ``multiple`` (and the
    channel-wise ops, squeeze-excite and convs around it) zero channels up to the next multiple.

    onnxruntime's x86 int8 depthwise kernel is 1.5-2x slower for such channel counts (72, 88, 120, 184, 200 in
    MobileNetV3; measured 90 us for 72 channels at 28x28 vs 55 us padded to 80). New output channels of the
    producing convs get zero weights and bias, new depthwise filters are zero, and the consuming convs get zero
    weights for the new input channels: the graph computes the same outputs (new channels hold f(0), e.g. 0 or
    hard-sigmoid(0) = 0.5, and the consumers ignore them). Value infos are dropped (shapes change).
    Returns the number of depthwise convs padded."""
    graph = model.graph
    done, handled = 0, set()
    while True:
        idx = _Index(graph)
        target = None
        for n in graph.node:
            w = idx.array(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
            g = _conv_group(n) if n.op_type == "Conv" else 1
            if w is not None and g > 1 and n.output[0] not in handled and w.shape[0] == g and w.shape[1] == 1 \
                    and g % multiple:
                target = n
                break
        if target is None:
            break
        handled.add(target.output[0])
        c = _conv_group(target)
        region = _channel_region(idx, target.input[0], c)
        if region is None:
            continue
        _, producers, consumers, depthwise = region
        if not producers or not consumers or \
                any(idx.array(n.input[1]).shape[0] != c for n in producers.values()) or \
                any(idx.array(n.input[1]).ndim != 4 or idx.array(n.input[1]).shape[1] != c
                    for n in consumers.values()):
            continue
        new_c = -(-c // multiple) * multiple
        extra = new_c - c

        def grow(node, k: int, axis: int = 0):
            """Append ``extra`` zero slices along ``axis`` to the initializer at input ``k`` of ``node``."""
            a = idx.array(node.input[k])
            shape = list(a.shape)
            shape[axis] = extra
            node.input[k] = idx.add_init(f"{node.input[k]}/padded{new_c}",
                                         np.concatenate([a, np.zeros(shape, a.dtype)], axis=axis))

        for n in [*producers.values(), *depthwise.values()]:
            grow(n, 1)
            if len(n.input) > 2 and n.input[2]:
                grow(n, 2)
        for n in depthwise.values():
            for a in n.attribute:
                if a.name == "group":
                    a.i = new_c
            handled.add(n.output[0])
        for n in consumers.values():
            grow(n, 1, axis=1)
        done += len(depthwise)
        del graph.value_info[:]
    if done:
        prune(graph)
    return done


MAX_PREFIX_CONVS = 6  # the float first block of float_first_block_nodes holds at most this many Convs


def _conv_io(idx: _Index, node):
    """(input channels, output channels, kernel elements) of a Conv with an initializer weight, else None."""
    w = idx.array(node.input[1]) if len(node.input) > 1 else None
    if w is None or w.ndim != 4:
        return None
    return w.shape[1] * _conv_group(node), w.shape[0], w.shape[2] * w.shape[3]


def float_first_block_nodes(model) -> list[str]:
    """Names of the nodes from the input through the first inverted-residual block (stem conv, first depthwise
    conv, its squeeze-excite and projection), for keeping them float: [] when the graph does not start that way.

    The block ends where the next 1x1 Conv expands the channels again; the nodes before it must hand exactly one
    tensor to the rest of the graph. Unnamed nodes in the prefix get names (in place) so the quantizer can exclude
    them. Measured on x86 (onnxruntime 1.32, 1 thread): these layers have few channels at high resolution, where
    onnxruntime's int8 kernels are slower than its float NCHWc ones (MobileNetV3-Small's stem conv 360 vs 137 us)."""
    graph = model.graph
    idx = _Index(graph)
    nodes = list(graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv" and n.domain in ("", "ai.onnx")]
    dw = next((i for i in convs[:3] if _conv_group(nodes[i]) > 1 and (_conv_io(idx, nodes[i]) or (0, -1))[0]
               == _conv_group(nodes[i])), None)
    if dw is None:
        return []
    cut = None
    for k, i in enumerate(convs):
        if i <= dw or k > MAX_PREFIX_CONVS:
            continue
        io = _conv_io(idx, nodes[i])
        if io is None or _conv_group(nodes[i]) != 1 or io[2] != 1 or io[1] <= io[0]:
            continue
        produced = {o for n in nodes[:i] for o in n.output}
        needed = {s for n in nodes[i:] for s in n.input} | idx.outputs
        if len(produced & needed) == 1:  # not a squeeze-excite expand conv: the block hands on one tensor
            cut = i
            break
    if cut is None:
        return []
    names = []
    for i, n in enumerate(nodes[:cut]):
        if not n.name:
            n.name = idx.fresh(f"first_block_{n.op_type}_{i}")
        names.append(n.name)
    return names

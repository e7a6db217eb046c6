"""edgeconv.onnx.rewrite: HardSwish/HardSigmoid fusion and no-op Reshape removal keep outputs equal (onnxruntime)."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import build_tiny_mnv3
from edgeconv.onnx.convert import convert_onnx
from edgeconv.onnx.rewrite import drop_noop_reshapes, fuse_hard_activations
from edgeconv.runtime.runners import OnnxRunner

SHAPE = [1, 4, 5, 5]


def make_model(nodes, consts: dict, opset: int = 17, out: str = "y", shape=SHAPE, out_shape=None):
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(v, np.float32), name=k) for k, v in consts.items()]
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, **attrs) for op, ins, outs, attrs in nodes], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape or shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model, x):
    return OnnxRunner(model.SerializeToString()).session.run(None, {"x": x})[0]


def ops(model):
    return [n.op_type for n in model.graph.node]


X = np.linspace(-8, 8, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)  # covers both bends of relu6(x+3)
C = {"three": 3.0, "zero": 0.0, "six": 6.0, "sixth": 1 / 6}
RELU6_CLIP = [("Clip", ["t", "zero", "six"], ["r"], {})]
RELU6_MINMAX = [("Max", ["t", "zero"], ["m"], {}), ("Min", ["m", "six"], ["r"], {})]
RELU6_MAXMIN = [("Min", ["six", "t"], ["m"], {}), ("Max", ["zero", "m"], ["r"], {})]
RELU6_RELU = [("Relu", ["t"], ["m"], {}), ("Min", ["m", "six"], ["r"], {})]
ADD = [("Add", ["x", "three"], ["t"], {})]
ADD_SWAPPED = [("Add", ["three", "x"], ["t"], {})]

CASES = {
    # keras Activation("hard_swish"): Add/Clip/Mul(1/6)/Mul(x)
    "hswish_mul_sixth": (ADD + RELU6_CLIP + [("Mul", ["r", "sixth"], ["s"], {}), ("Mul", ["x", "s"], ["y"], {})],
                         "HardSwish"),
    # tutorial layer: Mul(1/6, relu6) then x * that, operands swapped
    "hswish_tutorial": (ADD_SWAPPED + RELU6_CLIP + [("Mul", ["sixth", "r"], ["s"], {}),
                                                    ("Mul", ["s", "x"], ["y"], {})], "HardSwish"),
    # (x * relu6(x + 3)) / 6 with Div, relu6 as Max/Min
    "hswish_div_after": (ADD + RELU6_MINMAX + [("Mul", ["x", "r"], ["p"], {}), ("Div", ["p", "six"], ["y"], {})],
                         "HardSwish"),
    "hswish_relu_min": (ADD + RELU6_RELU + [("Div", ["r", "six"], ["s"], {}), ("Mul", ["x", "s"], ["y"], {})],
                        "HardSwish"),
    # V3 squeeze-excite hard-sigmoid: ReLU(6)(x + 3) * (1/6)
    "hsigmoid_mul": (ADD + RELU6_CLIP + [("Mul", ["r", "sixth"], ["y"], {})], "HardSigmoid"),
    "hsigmoid_div_minmax": (ADD + RELU6_MAXMIN + [("Div", ["r", "six"], ["y"], {})], "HardSigmoid"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fusion_keeps_outputs(case):
    nodes, op = CASES[case]
    model = make_model(nodes, C)
    fused, counts = fuse_hard_activations(model)
    assert ops(fused) == [op]
    assert counts == {"HardSwish": int(op == "HardSwish"), "HardSigmoid": int(op == "HardSigmoid")}
    assert [t.name for t in fused.graph.initializer] == []  # the constants went with the ops
    ref, got = run(model, X), run(fused, X)
    assert np.max(np.abs(ref - got)) <= 1e-5
    assert ops(model) == [n[0] for n in nodes]  # input model untouched


@pytest.mark.parametrize("name,nodes,consts", [
    ("x+2", ADD + RELU6_CLIP + [("Mul", ["r", "sixth"], ["s"], {}), ("Mul", ["x", "s"], ["y"], {})],
     {**C, "three": 2.0}),
    ("clip 0..5", ADD + RELU6_CLIP + [("Mul", ["r", "sixth"], ["y"], {})], {**C, "six": 5.0}),
    ("/ 5", ADD + RELU6_CLIP + [("Div", ["r", "six"], ["y"], {})], {**C, "six": 5.0}),
    ("per-channel 3", ADD + RELU6_CLIP + [("Mul", ["r", "sixth"], ["y"], {})],
     {**C, "three": np.full((1, 4, 1, 1), 3.0)}),
])
def test_non_matching_patterns_are_not_fused(name, nodes, consts):
    model = make_model(nodes, consts)
    fused, counts = fuse_hard_activations(model)
    assert counts == {"HardSwish": 0, "HardSigmoid": 0}
    assert ops(fused) == ops(model)


def test_intermediate_with_another_consumer_is_not_fused():
    nodes = ADD + RELU6_CLIP + [("Mul", ["r", "sixth"], ["s"], {}), ("Mul", ["x", "s"], ["h"], {}),
                                ("Add", ["h", "r"], ["y"], {})]  # r is also read elsewhere
    fused, counts = fuse_hard_activations(make_model(nodes, C))
    assert counts == {"HardSwish": 0, "HardSigmoid": 0}


def test_opset_13_gets_hardsigmoid_times_x():
    """HardSwish exists from opset 14; below that the h-swish keeps its Mul around a fused HardSigmoid."""
    nodes, _ = CASES["hswish_mul_sixth"]
    model = make_model(nodes, C, opset=13)
    fused, counts = fuse_hard_activations(model)
    assert counts == {"HardSwish": 0, "HardSigmoid": 1}
    assert ops(fused) == ["HardSigmoid", "Mul"]
    assert np.max(np.abs(run(model, X) - run(fused, X))) <= 1e-5


def count_keras_hard_activations(model) -> tuple[int, int]:
    """(h-swish, hard-sigmoid) count of the tiny model: its layers are named after them."""
    names = [layer.name for layer in model.layers]
    return sum("hswish" in n for n in names), sum("hsigmoid" in n for n in names)


@pytest.mark.parametrize("hswish", ["builtin", "tutorial"])
def test_fusion_on_exported_tiny_mnv3(hswish):
    import keras
    import onnx

    keras.utils.set_random_seed(0)
    model = build_tiny_mnv3(hswish=hswish)
    raw = onnx.load_from_string(convert_onnx(model, rewrite=False).model_bytes)
    assert "HardSwish" not in ops(raw)
    fused, counts = fuse_hard_activations(raw)
    n_hswish, n_hsig = count_keras_hard_activations(model)
    assert (n_hswish, n_hsig) == (3, 1)
    assert counts == {"HardSwish": n_hswish, "HardSigmoid": n_hsig}
    assert ops(fused).count("HardSwish") == n_hswish and ops(fused).count("HardSigmoid") == n_hsig
    assert "Clip" in ops(fused)  # the plain ReLU6 stays a Clip
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    ref = OnnxRunner(raw.SerializeToString()).run(x)[0]
    got = OnnxRunner(fused.SerializeToString()).run(x)[0]
    assert np.max(np.abs(ref - got)) <= 1e-5


def test_noop_reshapes_are_dropped():
    shape = [1, 4, 1, 1]
    consts = {"same": shape, "flat": [1, 4], "back": shape}
    nodes = [("Reshape", ["x", "same"], ["a"], {}), ("Relu", ["a"], ["b"], {}),
             ("Reshape", ["b", "flat"], ["c"], {}), ("Reshape", ["c", "back"], ["d"], {}),
             ("Neg", ["d"], ["y"], {})]
    from onnx import numpy_helper

    model = make_model(nodes, {}, shape=shape)
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(v, np.int64), name=k) for k, v in consts.items())
    cleaned, removed = drop_noop_reshapes(model)
    assert removed == 3 and ops(cleaned) == ["Relu", "Neg"]
    x = np.arange(-2, 2, dtype=np.float32).reshape(shape)
    assert np.array_equal(run(model, x), run(cleaned, x))


def test_reshape_that_changes_shape_is_kept():
    from onnx import numpy_helper

    model = make_model([("Reshape", ["x", "flat"], ["y"], {})], {}, shape=[1, 4, 1, 1], out_shape=[1, 4])
    model.graph.initializer.append(numpy_helper.from_array(np.asarray([1, 4], np.int64), name="flat"))
    cleaned, removed = drop_noop_reshapes(model)
    assert removed == 0 and ops(cleaned) == ["Reshape"]


def test_convert_onnx_rejects_a_rewrite_that_changes_outputs(monkeypatch):
    """The parity gate: a fusion that moves outputs is dropped, the original graph kept, and the user told."""
    import keras

    import edgeconv.onnx.rewrite as rewrite

    real = rewrite.fuse_hard_activations

    def off_by_a_bit(proto):
        fused, counts = real(proto)
        for n in fused.graph.node:
            for a in n.attribute:
                if n.op_type == "HardSigmoid" and a.name == "beta":
                    a.f = 0.51
        return fused, counts

    monkeypatch.setattr(rewrite, "fuse_hard_activations", off_by_a_bit)
    keras.utils.set_random_seed(0)
    model = build_tiny_mnv3()
    res = convert_onnx(model)
    assert res.rewrites == []
    assert len(res.warnings) == 1 and res.warnings[0].startswith("onnx: HardSwish/HardSigmoid fusion not applied")
    import onnx

    assert "HardSigmoid" not in ops(onnx.load_from_string(res.model_bytes))
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    assert np.max(np.abs(OnnxRunner(res.model_bytes).run(x)[0] - np.asarray(model(x)))) <= 1e-4

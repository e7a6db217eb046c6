"""edgeconv.onnx.mobile + the QDQ rewrites of edgeconv.onnx.qdq: integer-kernel coverage of ONNX int8 in
onnxruntime, and the ORT format (.ort) for onnxruntime Mobile. Small random-weight models: these tests check graph
structure and runtime agreement, not accuracy (tests/test_onnx_quant.py checks that on a trained model)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.onnx.mobile import integer_kernel_coverage, write_ort
from edgeconv.onnx.quantize import quantize_onnx_int8


def _session(model, level=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    if level is not None:
        so.graph_optimization_level = level
    src = model if isinstance(model, (bytes, str)) else str(model)
    return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


def _run(sess, x):
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def tiny(digits):
    """(fp32 ONNX, int8 ONNX, calibration pixels, other pixels) of the tiny MobileNetV3-style model: Rescaling,
    h-swish, squeeze-excite with hard-sigmoid (random weights)."""
    import keras

    from helpers import build_tiny_mnv3
    from edgeconv.onnx.convert import convert_onnx

    keras.utils.set_random_seed(0)
    (xtr, _), (xte, _) = digits
    fp32 = convert_onnx(build_tiny_mnv3(), verify_inputs=xtr[:4])
    warnings: list[str] = []
    int8 = quantize_onnx_int8(fp32.model_bytes, xtr[:64], warnings=warnings)
    assert warnings == []  # every rewrite kept, pre-processing worked
    return fp32.model_bytes, int8, xtr[:64], xte[:16]


def test_int8_runs_every_conv_and_activation_in_integer_kernels(tiny):
    import onnx

    fp32, int8, _, _ = tiny
    cov = integer_kernel_coverage(int8)
    n_conv = sum(n.op_type == "Conv" for n in onnx.load_from_string(fp32).graph.node)
    assert cov["convs"] == n_conv == 8 and cov["all_convs_integer"], cov
    assert cov["integer_convs"] == n_conv and cov["float_convs"] == 0
    # h-swish, the squeeze-excite gate and the input rescaling no longer leave integer arithmetic
    assert not {"HardSigmoid", "HardSwish", "Mul", "Conv"} & set(cov["float"]), cov["float"]
    assert cov["integer"]["QLinearAdd"] >= 4 and cov["integer"]["QLinearMul"] >= 4, cov["integer"]
    assert not [i for i in cov["float_islands"] if i["op"] in ("HardSigmoid", "Mul", "Conv")]
    assert cov["quantize"] == 1  # the float input only
    assert cov["float"] == {"Softmax": 1}  # the output softmax stays float (probabilities below 1/256 survive)
    # the float model, for contrast: no integer kernel at all
    cov32 = integer_kernel_coverage(fp32)
    assert cov32["integer"] == {} and cov32["integer_convs"] == 0 and not cov32["all_convs_integer"]


def test_int8_is_uint8_activations_int8_weights(tiny):
    import onnx
    from onnx import TensorProto

    _, int8, _, _ = tiny
    proto = onnx.load_from_string(int8)
    inits = {t.name: t for t in proto.graph.initializer}
    acts = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert acts and all(inits[n.input[2]].data_type == TensorProto.UINT8 for n in acts)
    kernels = [t for t in proto.graph.initializer if len(t.dims) == 4]
    assert kernels and all(t.data_type == TensorProto.INT8 for t in kernels)


def test_rewritten_qdq_graph_means_the_same_in_reference_and_fused_kernels(tiny):
    """The rewrites reinterpret codes through QuantizeLinear/DequantizeLinear pairs with different parameters: the
    graph evaluated op by op (no optimization: float DQ -> op -> Q) and onnxruntime's fused integer kernels agree,
    and both stay close to the float model."""
    import onnxruntime as ort

    from edgeconv.verify.compare import sqnr_db

    fp32, int8, _, x = tiny
    ref = _run(_session(fp32), x)
    fused = _run(_session(int8), x)
    plain = _run(_session(int8, ort.GraphOptimizationLevel.ORT_DISABLE_ALL), x)
    assert np.abs(fused - plain).max() <= 3 / 255  # the softmax output's quantization step is 1/255
    assert sqnr_db(ref, fused) > 20 and sqnr_db(ref, plain) > 20


@pytest.mark.parametrize("const_shape", [(), (1, 1, 1, 1)])  # tf2onnx writes both (the latter with --nchw)
def test_input_rescaling_folded_into_input_quantization(const_shape):
    """input -> Mul(1/127.5) -> Add(-1) (keras Rescaling(1/127.5, offset=-1)) -> Transpose -> Conv: the int8 graph
    quantizes the pixels once and reads the codes with the rescaling in the DequantizeLinear parameters."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeconv.verify.compare import sqnr_db

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Mul", ["image", "a"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"]),
         helper.make_node("Transpose", ["y"], ["t"], perm=[0, 3, 1, 2]),
         helper.make_node("Conv", ["t", "w", "bias"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["out"])], "affine",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 12, 12, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 12, 12])],
        initializer=[numpy_helper.from_array(np.full(const_shape, 1 / 127.5, np.float32), "a"),
                     numpy_helper.from_array(np.full(const_shape, -1.0, np.float32), "b"),
                     numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(8, np.float32), "bias")])
    fp32 = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    pixels = rng.integers(0, 256, (40, 12, 12, 3)).astype(np.float32)
    warnings: list[str] = []
    int8 = quantize_onnx_int8(fp32, pixels[:32], warnings=warnings)
    assert warnings == []
    proto = onnx.load_from_string(int8)
    assert not [n for n in proto.graph.node if n.op_type in ("Mul", "Add")]
    cov = integer_kernel_coverage(int8)
    assert cov["all_convs_integer"] and cov["float"] == {} and cov["quantize"] == 1, cov
    x = pixels[32:]
    assert sqnr_db(_run(_session(fp32), x), _run(_session(int8), x)) > 30


def test_ort_format_runs_and_matches_onnx(tiny, tmp_path):
    fp32, int8, _, x = tiny
    for name, model in (("tiny_int8", int8), ("tiny_fp32", fp32)):
        ort_bytes, config = write_ort(model, tmp_path, name=name)
        path = tmp_path / f"{name}.ort"
        assert path.read_bytes() == ort_bytes and ort_bytes[4:8] == b"ORTM"  # flatbuffer file identifier
        assert (tmp_path / f"{name}.required_operators.config").read_text() == config
        assert f"- {name}.ort" in config and str(tmp_path) not in config
        ops = {op for line in config.splitlines() if line and not line.startswith("#")
               for op in line.split(";")[2].split(",")}
        if name == "tiny_int8":
            assert {"QLinearConv", "QLinearAdd", "QLinearMul"} <= ops, config
        else:
            assert "Conv" in ops and "QLinearConv" not in ops, config
        got = _run(_session(str(path)), x)
        want = _run(_session(model), x)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_ort_format_from_a_file_path_and_bad_inputs(tiny, tmp_path):
    _, int8, _, _ = tiny
    src = tmp_path / "m.onnx"
    src.write_bytes(int8)
    ort_bytes, _ = write_ort(src, tmp_path / "out")
    assert (tmp_path / "out" / "m.ort").read_bytes() == ort_bytes
    with pytest.raises(EdgeconvError, match="not found"):
        write_ort(tmp_path / "missing.onnx", tmp_path)
    with pytest.raises(EdgeconvError, match="target_platform"):
        write_ort(src, tmp_path, target_platform="riscv")
    with pytest.raises(EdgeconvError, match="cannot"):
        write_ort(b"not an onnx model", tmp_path)


def _se_block(c: int = 24):
    """NCHW float graph: 1x1 expand to ``c`` -> h-swish -> 3x3 depthwise -> ReLU -> squeeze-excite (hard-sigmoid
    gate) -> 1x1 project, the MobileNetV3 block shape."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)

    def init(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "we", "be"], ["e"], kernel_shape=[1, 1]),
        helper.make_node("HardSigmoid", ["e"], ["eh"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["e", "eh"], ["es"]),
        helper.make_node("Conv", ["es", "wd", "bd"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c),
        helper.make_node("Relu", ["d"], ["dr"]),
        helper.make_node("GlobalAveragePool", ["dr"], ["p"]),
        helper.make_node("Conv", ["p", "w1", "b1"], ["s1"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["s1"], ["s1r"]),
        helper.make_node("Conv", ["s1r", "w2", "b2"], ["s2"], kernel_shape=[1, 1]),
        helper.make_node("HardSigmoid", ["s2"], ["g"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["dr", "g"], ["se"]),
        helper.make_node("Conv", ["se", "wp", "bp"], ["out"], kernel_shape=[1, 1]),
    ]
    inits = [init("we", c, 8, 1, 1), init("be", c), init("wd", c, 1, 3, 3), init("bd", c), init("w1", 8, c, 1, 1),
             init("b1", 8), init("w2", c, 8, 1, 1), init("b2", c), init("wp", 16, c, 1, 1), init("bp", 16)]
    g = helper.make_graph(nodes, "se_block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 10, 10])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_depthwise_channels_padded_to_multiples_of_16_without_changing_outputs():
    import onnx
    from onnx import numpy_helper

    from edgeconv.onnx.qdq import pad_depthwise_channels

    model = _se_block(24)
    before = model.SerializeToString()
    assert pad_depthwise_channels(model) == 1
    onnx.checker.check_model(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dw = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[0] == "es")
    assert inits[dw.input[1]].shape == (32, 1, 3, 3) and any(a.name == "group" and a.i == 32 for a in dw.attribute)
    proj = next(n for n in model.graph.node if n.output[0] == "out")
    assert inits[proj.input[1]].shape == (16, 32, 1, 1) and not inits[proj.input[1]][:, 24:].any()
    x = np.random.default_rng(0).normal(0, 1, (3, 8, 10, 10)).astype(np.float32)
    np.testing.assert_allclose(_run(_session(model.SerializeToString()), x), _run(_session(before), x),
                               rtol=0, atol=1e-5)
    assert pad_depthwise_channels(model) == 0  # already aligned
    aligned = _se_block(32)
    assert pad_depthwise_channels(aligned) == 0


def test_int8_of_an_unaligned_se_block_is_all_integer():
    from edgeconv.verify.compare import sqnr_db

    fp32 = _se_block(24).SerializeToString()
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (32, 10, 10, 8)).astype(np.float32)  # NHWC, as edgeconv passes calibration data
    warnings: list[str] = []
    int8 = quantize_onnx_int8(fp32, calib, nchw=True, warnings=warnings)
    assert warnings == []
    import onnx

    kernels = [t for t in onnx.load_from_string(int8).graph.initializer if len(t.dims) == 4]
    assert [32, 1, 3, 3] in [list(t.dims) for t in kernels]  # the depthwise conv was padded from 24 to 32
    cov = integer_kernel_coverage(int8)
    assert cov["all_convs_integer"] and cov["float"] == {}, cov
    x = rng.normal(0, 1, (8, 8, 10, 10)).astype(np.float32)
    assert sqnr_db(_run(_session(fp32), x), _run(_session(int8), x)) > 20


def test_float_first_block_keeps_stem_and_first_block_float(tiny):
    import onnx

    from edgeconv.verify.compare import sqnr_db
    from edgeconv.onnx.qdq import float_first_block_nodes

    fp32, int8, calib, x = tiny
    names = float_first_block_nodes(onnx.load_from_string(fp32))
    convs = [n for n in onnx.load_from_string(fp32).graph.node if n.op_type == "Conv"]
    # stem, first depthwise and its two squeeze-excite convs; the first expanding 1x1 conv (b1_project) is the cut
    assert len([n for n in convs if n.name in names]) == 4
    warnings: list[str] = []
    mixed = quantize_onnx_int8(fp32, calib, warnings=warnings, float_first_block=True)
    assert warnings == []
    cov = integer_kernel_coverage(mixed)
    assert cov["integer_convs"] == 4 and cov["float_convs"] == 4 and not cov["all_convs_integer"], cov
    ref = _run(_session(fp32), x)
    assert sqnr_db(ref, _run(_session(mixed), x)) > 20
    # a graph that does not start with stem + depthwise block: nothing kept float
    assert float_first_block_nodes(_se_block(32)) == []

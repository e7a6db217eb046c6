"""The export-sensitive activations of the zoo's MobileNets compute exactly their formulas, and every registry entry
declares exactly the sensitive activations its model contains.

Keras 3 writes them as (``keras/src/applications/mobilenet*.py``):
- relu6: ``layers.ReLU(6.0)`` (MobileNet V1 / V2);
- hard-swish: ``layers.Activation("hard_swish")`` (MobileNet V3);
- hard-sigmoid: ops, ``layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)``, the gate of V3's squeeze-excite blocks. It has no
  layer of its own, so it is found as that pattern in the graph and checked through a sub-model cut from the model
  (from the Add's input to the Multiply's output).
"""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv import models

MOBILE = ["mobilenet_v1", "mobilenet_v2", "mobilenetv3_small", "mobilenetv3_large"]
V3 = ["mobilenetv3_small", "mobilenetv3_large"]
# The other models of the same modules: checked for their declared activations only (swish / none).
OTHERS = ["efficientnet_b0", "inception_v3", "inception_v4", "inception_resnet_v2"]

# -8..8 in steps of 0.1, plus the kinks (-3, 0, 3, 6) and their float32 neighbours. Zero's neighbours are the
# smallest *normal* floats: the nearest ones are denormals, which oneDNN flushes to zero (a CPU setting, not a
# formula error).
_KINKS = np.array([-6.0, -3.0, 0.0, 3.0, 6.0], np.float32)
_TINY = np.finfo(np.float32).tiny
_BELOW = np.where(_KINKS == 0, -_TINY, np.nextafter(_KINKS, np.float32(-np.inf)))
_ABOVE = np.where(_KINKS == 0, _TINY, np.nextafter(_KINKS, np.float32(np.inf)))
GRID = np.unique(np.concatenate([
    np.linspace(-8, 8, 161, dtype=np.float32), _KINKS, _BELOW, _ABOVE,
])).astype(np.float32)


def np_relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


def np_hard_sigmoid(x):
    return np_relu6(x + 3.0) / 6.0


def np_hard_swish(x):
    return x * np_relu6(x + 3.0) / 6.0


# keras' activation function names -> the registry's names (keras 3 calls swish "silu", hard-swish "hard_silu").
_KERAS_NAMES = {"relu6": "relu6", "hard_silu": "hard_swish", "hard_swish": "hard_swish", "silu": "swish",
                "swish": "swish", "hard_sigmoid": "hard_sigmoid", "gelu": "gelu"}


def _walk(model):
    for op in model.operations:
        if hasattr(op, "operations") and op is not model:  # a nested model
            yield from _walk(op)
        else:
            yield op


def _call_args(op):
    nodes = op._inbound_nodes
    assert len(nodes) == 1, f"{op.name} is called {len(nodes)} times"
    return nodes[0].arguments.args


def _consumers(op):
    return [node.operation for node in op._outbound_nodes]


def _is_op(op, cls_name: str) -> bool:
    return type(op).__name__ == cls_name and type(op).__module__.startswith("keras.src.ops")


def _scalar_arg(op):
    """The one Python-number argument of a binary op like ``x + 3.0`` (None if there is not exactly one)."""
    scalars = [a for a in _call_args(op) if isinstance(a, (int, float))]
    return float(scalars[0]) if len(scalars) == 1 else None


def _is_relu6(layer) -> bool:
    return (type(layer).__name__ == "ReLU" and layer.max_value is not None and float(layer.max_value) == 6.0
            and float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0)


def _hard_sigmoid_pattern(relu6):
    """``(add, relu6, mul)`` if this ReLU(6) layer is the clip of ``relu6(x + 3) * (1/6)``, else None."""
    (source,) = [a for a in _call_args(relu6) if hasattr(a, "_keras_history")]
    add = source._keras_history.operation
    consumers = _consumers(relu6)
    if not (_is_op(add, "Add") and _scalar_arg(add) == 3.0 and len(consumers) == 1):
        return None
    mul = consumers[0]
    if not (_is_op(mul, "Multiply") and _scalar_arg(mul) is not None and np.isclose(_scalar_arg(mul), 1 / 6)):
        return None
    return add, relu6, mul


def scan(model) -> dict[str, list]:
    """Every export-sensitive activation in the graph, by registry name."""
    found = {name: [] for name in models.SENSITIVE_ACTIVATIONS}
    for op in _walk(model):
        if _is_relu6(op):
            pattern = _hard_sigmoid_pattern(op)
            found["hard_sigmoid" if pattern else "relu6"].append(pattern or op)
        fn = getattr(op, "activation", None)  # Activation layers and fused activations (Conv2D(activation=...))
        if callable(fn) and _KERAS_NAMES.get(getattr(fn, "__name__", "")):
            found[_KERAS_NAMES[fn.__name__]].append(op)
    return found


_BUILT: dict = {}


def small_model(name):
    """The model as the zoo tests build it small (cached: each is built once per session)."""
    if name not in _BUILT:
        info = models.model_info(name)
        s = max(info.min_input_size, 32)
        _BUILT[name] = models.create_model(name, input_shape=(s, s, 3), classes=7, **info.small_kwargs)
    return _BUILT[name]


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    yield
    _BUILT.clear()


@pytest.mark.parametrize("name", MOBILE + OTHERS)
def test_registry_declares_exactly_the_activations_in_the_graph(name):
    info = models.model_info(name)
    found = scan(small_model(name))
    counts = {k: len(v) for k, v in found.items()}
    for act in models.SENSITIVE_ACTIVATIONS:
        if act in info.activations:
            assert counts[act] > 0, f"{name} declares {act} but its graph has none ({counts})"
        else:
            assert counts[act] == 0, f"{name} contains {counts[act]} {act} but does not declare it ({counts})"


@pytest.mark.parametrize("name", MOBILE)
def test_every_relu6_layer_is_min_max_0_6(name):
    model = small_model(name)
    relu6 = [op for op in _walk(model) if _is_relu6(op)]  # including the clips inside V3's hard-sigmoids
    assert relu6, f"{name} has no ReLU(6) layer"
    want = np_relu6(GRID)
    for layer in relu6:
        got = np.asarray(layer(GRID[None, :]))[0]
        np.testing.assert_array_equal(got, want, err_msg=f"{name}/{layer.name}")


@pytest.mark.parametrize("name", V3)
def test_every_hard_swish_layer_is_x_relu6_x_plus_3_over_6(name):
    layers = scan(small_model(name))["hard_swish"]
    assert layers
    for layer in layers:
        assert type(layer).__name__ == "Activation", f"{layer.name}: hard-swish fused into a {type(layer).__name__}"
        got = np.asarray(layer(GRID[None, :]))[0].astype(np.float64)
        want = np_hard_swish(GRID.astype(np.float64))
        # keras computes x * (relu6(x + 3) / 6): at most a float32 rounding away from x * relu6(x + 3) / 6
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{name}/{layer.name}")
        at = dict(zip(GRID.tolist(), got.tolist()))
        assert (at[-6.0], at[-3.0], at[0.0], at[3.0], at[6.0]) == (0.0, 0.0, 0.0, 3.0, 6.0)


@pytest.mark.parametrize("name", V3)
def test_every_squeeze_excite_gate_is_hard_sigmoid(name):
    import keras

    model = small_model(name)
    patterns = scan(model)["hard_sigmoid"]
    se_muls = [op for op in _walk(model) if op.name.endswith("squeeze_excite_mul")]
    assert se_muls and len(patterns) == len(se_muls), f"{len(patterns)} hard-sigmoids for {len(se_muls)} SE blocks"
    gates = {id(mul.output) for _, _, mul in patterns}
    for se_mul in se_muls:
        # the SE multiply scales the block's features by a hard-sigmoid of the excitation
        assert any(id(t) in gates for t in _call_args(se_mul)[0]), f"{se_mul.name} is not gated by a hard-sigmoid"
    want = np_hard_sigmoid(GRID.astype(np.float64))
    for add, _, mul in patterns:
        (x_in,) = [a for a in _call_args(add) if hasattr(a, "_keras_history")]
        gate = keras.Model(x_in, mul.output)  # exactly relu6(x + 3) * (1/6), cut out of the model
        channels = x_in.shape[-1]
        x = np.repeat(GRID[:, None], channels, axis=1).reshape(len(GRID), *x_in.shape[1:-1], channels)
        got = np.asarray(gate(x)).reshape(len(GRID), -1)
        for c in range(channels):
            np.testing.assert_allclose(got[:, c], want, rtol=1e-6, atol=1e-7, err_msg=f"{name}/{mul.name}")
        at = dict(zip(GRID.tolist(), got[:, 0].tolist()))
        assert (at[-6.0], at[-3.0], at[0.0], at[3.0], at[6.0]) == (0.0, 0.0, 0.5, 1.0, 1.0)


@pytest.mark.parametrize("name", V3)
def test_v3_relu_blocks_are_plain_relu_and_minimalistic_has_no_sensitive_activation(name):
    model = small_model(name)
    relus = [op for op in _walk(model) if type(op).__name__ == "ReLU" and not _is_relu6(op)]
    assert relus and all(op.max_value is None for op in relus)  # the "RE" blocks: uncapped ReLU, as in the paper
    minimal = models.create_model(name, input_shape=(32, 32, 3), classes=7, alpha=0.75, minimalistic=True)
    assert {k: len(v) for k, v in scan(minimal).items() if v} == {}

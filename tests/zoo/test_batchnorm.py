"""models.batchnorm: BatchNorm statistics re-estimated from data give every BN output ~zero mean / unit variance."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv import models
from edgeconv.models.batchnorm import batchnorm_layers, estimate_batchnorm_statistics


def _inputs(n=16, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("name", ["mobilenetv3_small", "efficientnet_b0"])
def test_bn_outputs_are_normalized_and_activations_keep_their_scale(name):
    import keras

    keras.utils.set_random_seed(0)
    info = models.model_info(name)
    m = models.create_model(name, input_shape=(32, 32, 3), classes=10, **info.small_kwargs)
    x = _inputs()
    before = np.asarray(m(x))
    n = estimate_batchnorm_statistics(m, x)
    bns = batchnorm_layers(m)
    assert n == len(bns) > 10
    probe = keras.Model(m.inputs, [bn.output for bn in bns])
    outs = probe(x)
    for bn, y in zip(bns, outs):
        y = np.asarray(y, np.float64).reshape(-1, y.shape[-1])
        gamma = np.asarray(bn.gamma) if bn.scale else 1.0
        beta = np.asarray(bn.beta) if bn.center else 0.0
        z = (y - beta) / gamma  # undo the affine part: what is left is (x - mean) / sqrt(var + eps)
        np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3, err_msg=bn.name)
        # exactly normalized: variance v / (v + eps) with v the estimated (= batch) variance of the BN input
        v = np.asarray(bn.moving_variance, np.float64)
        np.testing.assert_allclose(z.var(0), v / (v + bn.epsilon), rtol=2e-2, atol=1e-5, err_msg=bn.name)
    after = np.asarray(m(x))
    # the random net's output no longer ignores its input
    assert after.std(axis=0).max() > 10 * before.std(axis=0).max()
    # momentum and dropout are restored
    assert all(bn.momentum != 0 for bn in bns)


def test_model_without_batchnorm_is_left_alone():
    m = models.create_model("vgg11", input_shape=(32, 32, 3), classes=10, **models.model_info("vgg11").small_kwargs)
    w = [np.array(v) for v in m.get_weights()]
    assert estimate_batchnorm_statistics(m, _inputs(4)) == 0
    assert all(np.array_equal(a, b) for a, b in zip(w, m.get_weights()))


def test_needs_two_inputs():
    m = models.create_model("mobilenet_v1", input_shape=(32, 32, 3), classes=10,
                            **models.model_info("mobilenet_v1").small_kwargs)
    with pytest.raises(ValueError, match="at least 2"):
        estimate_batchnorm_statistics(m, _inputs(1))

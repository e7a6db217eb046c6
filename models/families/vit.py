"""Vision Transformer (Dosovitskiy et al. 2020): ViT-B/16, ViT-B/32 and ViT-L/16 as timm builds them
(``vit_base_patch16_224``, ``vit_base_patch32_224``, ``vit_large_patch16_224``), in the keras.applications idiom.

Layout: patch embedding (a ``patch x patch`` convolution with stride ``patch``, with bias) -> flatten to tokens ->
prepend a learned class token (:class:`ClassToken`) -> add a learned position embedding (:class:`PositionEmbedding`)
-> ``depth`` pre-norm transformer blocks -> LayerNorm -> the class token -> fully connected + softmax. A block is
``x + MHA(LN(x))`` then ``x + MLP(LN(x))``; LayerNorm eps 1e-6; the MLP is Dense(mlp_dim) -> GELU -> Dense(hidden).
timm's fused ``qkv`` Linear (hidden -> 3 x hidden, bias) plus ``proj`` has exactly the weights of Keras'
``MultiHeadAttention`` with bias (query / key / value / output projections), so the counts equal timm's.
No dropout (timm's defaults are 0).

GELU is the exact, erf-based one: ``Activation("gelu")`` is ``keras.activations.gelu(x, approximate=False)``, as
timm's ``nn.GELU()``; TFLite converts it to its GELU op (``approximate=False``).

The two custom layers are registered (``edgeconv>ClassToken``, ``edgeconv>PositionEmbedding``) so a saved
``.keras`` file reloads once this module is imported. The position embedding is sized from the input shape when
the layer is built: ``(H / patch) * (W / patch) + 1`` tokens, so any input whose sides are multiples of the patch
size works (random weights; resizing pretrained embeddings is not needed here). Layer names follow timm:
``patch_embed``, ``cls_token``, ``pos_embed``, ``block3_norm1``, ``block3_attn``, ``block3_mlp_fc1``,
``block3_mlp_gelu``, ``norm``, ``predictions``.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from ..preprocessing import MINUS1_1
from ..registry import register_model

LN_EPSILON = 1e-6  # timm ViT: partial(nn.LayerNorm, eps=1e-6)
SMALL = {"depth": 2, "hidden_size": 64, "num_heads": 4, "mlp_dim": 128}
# what the three registry entries share; each adds its params and reference
_REGISTRY_ENTRY = dict(family="vit", input_shape=(224, 224, 3), preprocessing=MINUS1_1, activations=("gelu",),
                       min_input_size=32, width_kwargs=tuple(SMALL), small_kwargs=SMALL)


@keras.saving.register_keras_serializable(package="edgeconv")
class ClassToken(layers.Layer):
    """Prepends one learned token to a sequence: (batch, n, d) -> (batch, n + 1, d)."""

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]), initializer=self.initializer)

    def call(self, x):
        token = ops.broadcast_to(ops.cast(self.token, x.dtype), (ops.shape(x)[0], 1, ops.shape(x)[-1]))
        return ops.concatenate([token, x], axis=1)

    def compute_output_shape(self, input_shape):
        n = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], n, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "initializer": keras.initializers.serialize(self.initializer)}


@keras.saving.register_keras_serializable(package="edgeconv")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding of shape (1, tokens, d), sized from the input when the layer is built."""

    def __init__(self, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer or keras.initializers.TruncatedNormal(stddev=0.02))

    def build(self, input_shape):
        if input_shape[1] is None:
            raise ValueError(f"{self.name} needs a fixed number of tokens, got input shape {input_shape}")
        self.embedding = self.add_weight(name="embedding", shape=(1, input_shape[1], input_shape[2]),
                                         initializer=self.initializer)

    def call(self, x):
        return x + ops.cast(self.embedding, x.dtype)

    def get_config(self):
        return {**super().get_config(), "initializer": keras.initializers.serialize(self.initializer)}


def encoder_block(x, num_heads, mlp_dim, name):
    """Pre-norm transformer block: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))`` with an exact GELU."""
    hidden = x.shape[-1]
    y = layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_norm1")(x)
    y = layers.MultiHeadAttention(num_heads, key_dim=hidden // num_heads, name=f"{name}_attn")(y, y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_norm2")(x)
    y = layers.Dense(mlp_dim, name=f"{name}_mlp_fc1")(y)
    y = layers.Activation("gelu", name=f"{name}_mlp_gelu")(y)
    y = layers.Dense(hidden, name=f"{name}_mlp_fc2")(y)
    return layers.Add(name=f"{name}_add2")([x, y])


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _vit(input_shape, classes, patch, depth, hidden_size, num_heads, mlp_dim, name):
    for value, what in ((depth, "depth"), (hidden_size, "hidden_size"), (num_heads, "num_heads"),
                        (mlp_dim, "mlp_dim")):
        _positive_int(value, what)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads})")
    height, width = input_shape[0], input_shape[1]
    if height % patch or width % patch:
        raise ValueError(f"{name} needs an input whose height and width are multiples of the patch size {patch}, "
                         f"got {height}x{width}")

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(hidden_size, patch, strides=patch, name="patch_embed")(inputs)
    x = layers.Reshape(((height // patch) * (width // patch), hidden_size), name="patch_tokens")(x)
    x = ClassToken(name="cls_token")(x)
    x = PositionEmbedding(name="pos_embed")(x)
    for i in range(depth):
        x = encoder_block(x, num_heads, mlp_dim, name=f"block{i}")
    x = layers.LayerNormalization(epsilon=LN_EPSILON, name="norm")(x)
    x = x[:, 0]  # the class token
    x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)


@register_model(**_REGISTRY_ENTRY, params=86_567_656, reference_params=86_567_656,
                reference_source="timm vit_base_patch16_224 (ViT paper: 86 M)")
def vit_b16(input_shape=(224, 224, 3), classes=1000, depth=12, hidden_size=768, num_heads=12, mlp_dim=3072,
            name="vit_b16"):
    """ViT-Base/16: 12 blocks, hidden 768, 12 heads, MLP 3072, 16x16 patches; params equal timm's exactly.

    ``depth``, ``hidden_size``, ``num_heads`` and ``mlp_dim`` override the size (tests use a 2-block, 64-wide
    model). Height and width must be multiples of 16. Inputs in [-1, 1] (timm's mean = std = 0.5).
    """
    return _vit(input_shape, classes, 16, depth, hidden_size, num_heads, mlp_dim, name)


@register_model(**_REGISTRY_ENTRY, params=88_224_232, reference_params=88_224_232,
                reference_source="timm vit_base_patch32_224")
def vit_b32(input_shape=(224, 224, 3), classes=1000, depth=12, hidden_size=768, num_heads=12, mlp_dim=3072,
            name="vit_b32"):
    """ViT-Base/32: 12 blocks, hidden 768, 12 heads, MLP 3072, 32x32 patches; params equal timm's exactly.

    ``depth``, ``hidden_size``, ``num_heads`` and ``mlp_dim`` override the size (tests use a 2-block, 64-wide
    model). Height and width must be multiples of 32. Inputs in [-1, 1] (timm's mean = std = 0.5).
    """
    return _vit(input_shape, classes, 32, depth, hidden_size, num_heads, mlp_dim, name)


@register_model(**_REGISTRY_ENTRY, params=304_326_632, reference_params=304_326_632,
                reference_source="timm vit_large_patch16_224 (ViT paper: 307 M)")
def vit_l16(input_shape=(224, 224, 3), classes=1000, depth=24, hidden_size=1024, num_heads=16, mlp_dim=4096,
            name="vit_l16"):
    """ViT-Large/16: 24 blocks, hidden 1024, 16 heads, MLP 4096, 16x16 patches; params equal timm's exactly.

    304 M parameters (1.2 GB of float32): build it small (the ``depth`` / ``hidden_size`` / ``num_heads`` /
    ``mlp_dim`` overrides) unless the full model is really wanted. Height and width must be multiples of 16.
    Inputs in [-1, 1] (timm's mean = std = 0.5).
    """
    return _vit(input_shape, classes, 16, depth, hidden_size, num_heads, mlp_dim, name)

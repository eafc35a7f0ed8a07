"""CNN denoisers as Flax NNX modules: DnCNN and U-Net, optionally bias-free.

Both are residual: they predict the noise n and return x - n (Zhang et al. 2017).
Input and output are NHWC float32 images, single channel by default.

Shape legend: B batch, H height, W width, C channels (image), F features, T tokens
(H*W at the U-Net bottleneck).

Bias-free (`bias_free=True`, Mohan et al., ICLR 2020): no additive constants anywhere
(convolutions without bias, normalisation without mean subtraction or shift). With ReLU
and average pooling the network is then positively homogeneous, f(a x) = a f(x) for
a > 0 (in eval mode), which is what lets it generalise across noise levels.

References: Zhang, Zuo, Chen, Meng & Zhang, IEEE TIP 26, 3142 (2017) (DnCNN);
Ronneberger, Fischer & Brox, MICCAI (2015) (U-Net); Mohan, Kadkhodaie, Simoncelli &
Fernandez-Granda, ICLR (2020) (bias-free CNNs).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["BiasFreeBatchNorm", "DnCNN", "UNet", "image_extremes", "impulse_features"]


def _check_gate(gate: float, mask: bool = True) -> None:
    if not 0.0 <= gate < 1.0:
        raise ValueError(
            f"impulse gate must be a pixel fraction in [0, 1), got {gate!r}"
        )
    if gate and not mask:
        raise ValueError(f"impulse_gate={gate!r} needs impulse_mask=True")


def image_extremes(
    x_BxHxWxC: Float[Array, "B H W C"], gate: float = 0.0
) -> Float[Array, "B 3 C"]:
    """Per image and channel: (min, max, s) over H and W, stacked on axis 1.

    s = mean |x|, the scale of `impulse_features`. gate > 0 switches the features
    off (s = 0) unless the image looks impulse-corrupted: both its min and its max
    must each be shared by at least max(3, gate * H * W) pixels. Continuous noise
    leaves one pixel at each extreme; salt-and-pepper noise (and images with both
    dead and saturated pixels) puts many at both; shot noise at low dose puts many
    pixels at zero but few at the maximum, so its zero counts are not marked as
    pepper. gate = 0 marks the extremes of every image.
    """
    _check_gate(gate)
    x, axes = x_BxHxWxC, (1, 2)
    lo, hi, s = x.min(axes), x.max(axes), jnp.abs(x).mean(axes)
    if gate > 0:
        need = max(3, math.ceil(gate * x.shape[1] * x.shape[2]))
        n_lo = (x == lo[:, None, None, :]).sum(axes)
        n_hi = (x == hi[:, None, None, :]).sum(axes)
        s = jnp.where((n_lo >= need) & (n_hi >= need), s, jnp.zeros_like(s))
    return jnp.stack([lo, hi, s], 1)


def impulse_features(
    x_BxHxWxC: Float[Array, "B H W C"],
    extremes_Bx3xC: Float[Array, "B 3 C"] | None = None,
    gate: float = 0.0,
) -> Float[Array, "B H W 2C"]:
    """Where impulse noise can sit: s * [x == min x, x == max x] per image and channel.

    Salt-and-pepper noise (and dead or saturated detector pixels) sets pixels to the
    image's extreme values, which a convolution with a local receptive field cannot
    see. These two channels mark the pixels tied with the minimum (pepper) and the
    maximum (salt) of each image, the detection step of switching median filters
    (Hwang & Haddad, IEEE TIP 4, 499 (1995)). s = mean |x| over the image, so for a
    > 0 the features of a x are a times those of x: a bias-free network stays
    positively homogeneous. Shape (B, H, W, C) -> (B, H, W, 2C); pepper channels
    first. `extremes_Bx3xC` (from `image_extremes` of the whole image) replaces the
    statistics of x itself, so that a tile is marked as its full image would be;
    otherwise they are `image_extremes(x, gate)`.
    """
    x = x_BxHxWxC
    e = image_extremes(x, gate) if extremes_Bx3xC is None else extremes_Bx3xC
    if e.shape != (x.shape[0], 3, x.shape[-1]):
        raise ValueError(
            f"extremes must have shape (B, 3, C) = {(x.shape[0], 3, x.shape[-1])} "
            f"(min, max, mean |x| per image and channel), got {e.shape}"
        )
    lo, hi, s = (e[:, i, None, None, :].astype(x.dtype) for i in range(3))
    zero = jnp.zeros_like(x)
    pepper, salt = jnp.where(x == lo, s, zero), jnp.where(x == hi, s, zero)
    return jax.lax.stop_gradient(jnp.concatenate([pepper, salt], axis=-1))


def _set_impulse_options(model, channels: int, mask: bool, gate: float) -> int:
    """Store channels, impulse_mask and impulse_gate on a model; return the input
    channels of its first layer (C, or 3C with the two impulse channels per C)."""
    _check_gate(gate, mask)
    model.channels = channels
    model.impulse_mask = bool(mask)
    model.impulse_gate = float(gate)
    return 3 * channels if mask else channels


def _with_impulse_features(x_BxHxWxC: Array, model, extremes) -> Array:
    if not model.impulse_mask:
        return x_BxHxWxC
    feats = impulse_features(x_BxHxWxC, extremes, model.impulse_gate)
    return jnp.concatenate([x_BxHxWxC, feats], axis=-1)


class BiasFreeBatchNorm(nnx.Module):
    """Batch norm without additive terms: y = gamma x / sigma (Mohan et al. 2020, 3).

    sigma is the batch standard deviation per feature while training and its running
    average in eval mode (then the layer is linear in x).
    """

    def __init__(
        self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5
    ):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = False

    def __call__(self, x_BxHxWxF: Array) -> Array:
        if self.use_running_average:
            var_F = self.var[...]
        else:
            var_F = jnp.var(x_BxHxWxF, axis=(0, 1, 2))
            m = jnp.asarray(self.momentum, jnp.float32)
            self.var[...] = m * self.var[...] + (1 - m) * jax.lax.stop_gradient(var_F)
        inv_F = self.scale[...] / jnp.sqrt(var_F + jnp.float32(self.epsilon))
        return x_BxHxWxF * inv_F.reshape(1, 1, 1, -1)


def _check_input(x: Array, channels: int, multiple: int) -> None:
    if x.ndim != 4 or x.shape[-1] != channels:
        raise ValueError(
            f"input must be NHWC (B, H, W, {channels}), got shape {x.shape}; add a "
            "channel axis with x[..., None]"
        )
    if x.shape[1] % multiple or x.shape[2] % multiple:
        raise ValueError(
            f"input height and width must be multiples of {multiple} for this U-Net "
            f"(depth {multiple.bit_length() - 1}), got {x.shape[1:3]}; pad the image "
            "(denoise_image does this)"
        )


class DnCNN(nnx.Module):
    """DnCNN: conv-ReLU, (depth - 2) x conv-BN-ReLU, conv; returns x - noise.

    Args:
      depth: number of convolutions (17 in the paper; >= 2).
      features: channels of the hidden convolutions (64 in the paper).
      channels: image channels C.
      kernel_size: odd convolution size (3).
      batch_norm: batch norm in the middle layers.
      bias_free: drop every additive constant (see module docstring).
      impulse_mask: also feed `impulse_features` (pixels at the image's extremes)
        to the first convolution; this makes the output depend on the whole input
        (its min and max), not only on the receptive field.
      impulse_gate: mark the extremes only in images where both are shared by at
        least this fraction of the pixels (see `image_extremes`); 0 marks always.
    Attributes:
      receptive_radius: pixels on each side that influence one output pixel.
      size_multiple: input sizes must be multiples of this (1).
    """

    def __init__(
        self,
        depth: int = 17,
        features: int = 64,
        *,
        channels: int = 1,
        kernel_size: int = 3,
        batch_norm: bool = True,
        bias_free: bool = False,
        impulse_mask: bool = False,
        impulse_gate: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if depth < 2 or features < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"need depth >= 2, features >= 1 and an odd kernel_size, got depth="
                f"{depth}, features={features}, kernel_size={kernel_size}"
            )
        bias = not bias_free
        k = (kernel_size, kernel_size)
        fin = _set_impulse_options(self, channels, impulse_mask, impulse_gate)
        self.receptive_radius = depth * (kernel_size // 2)
        self.size_multiple = 1
        self.first = nnx.Conv(fin, features, k, use_bias=bias, rngs=rngs)
        self.middle = nnx.List(
            [
                nnx.Conv(
                    features, features, k, use_bias=bias and not batch_norm, rngs=rngs
                )
                for _ in range(depth - 2)
            ]
        )
        if batch_norm:
            self.norms = nnx.List(
                [
                    BiasFreeBatchNorm(features)
                    if bias_free
                    else nnx.BatchNorm(features, momentum=0.9, rngs=rngs)
                    for _ in range(depth - 2)
                ]
            )
        else:
            self.norms = None
        self.last = nnx.Conv(features, channels, k, use_bias=bias, rngs=rngs)

    def __call__(
        self, x_BxHxWxC: Float[Array, "B H W C"], extremes=None
    ) -> Float[Array, "B H W C"]:
        """x - noise; `extremes` (B, 3, C): see `impulse_features` (impulse_mask)."""
        _check_input(x_BxHxWxC, self.channels, 1)
        h_BxHxWxF = jax.nn.relu(
            self.first(_with_impulse_features(x_BxHxWxC, self, extremes))
        )
        for i, conv in enumerate(self.middle):
            h_BxHxWxF = conv(h_BxHxWxF)
            if self.norms is not None:
                h_BxHxWxF = self.norms[i](h_BxHxWxF)
            h_BxHxWxF = jax.nn.relu(h_BxHxWxF)
        noise_BxHxWxC = self.last(h_BxHxWxF)
        return x_BxHxWxC - noise_BxHxWxC


class _Block(nnx.Module):
    """Two 3x3 conv-ReLU layers."""

    def __init__(self, fin: int, fout: int, *, bias: bool, rngs: nnx.Rngs):
        self.a = nnx.Conv(fin, fout, (3, 3), use_bias=bias, rngs=rngs)
        self.b = nnx.Conv(fout, fout, (3, 3), use_bias=bias, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return jax.nn.relu(self.b(jax.nn.relu(self.a(x))))


def _avg_pool2(x_BxHxWxF: Array) -> Array:
    b, h, w, f = x_BxHxWxF.shape
    return x_BxHxWxF.reshape(b, h // 2, 2, w // 2, 2, f).mean(axis=(2, 4))


def _upsample2(x_BxHxWxF: Array) -> Array:
    return jnp.repeat(jnp.repeat(x_BxHxWxF, 2, axis=1), 2, axis=2)


class _Attention(nnx.Module):
    """Self-attention over the H*W bottleneck tokens, added residually."""

    def __init__(self, features: int, heads: int, *, bias: bool, rngs: nnx.Rngs):
        try:
            from physattn.nn import ThermoAttention
        except ImportError as e:  # being written in parallel (physattn/nn.py)
            raise ImportError(
                "attention_heads > 0 needs physattn.nn.ThermoAttention, which could "
                f"not be imported ({e}); use attention_heads=0"
            ) from e
        self.attn = ThermoAttention(
            num_heads=heads,
            in_features=features,
            use_bias=bias,
            rngs=rngs,
        )

    def __call__(self, x_BxHxWxF: Array) -> Array:
        b, h, w, f = x_BxHxWxF.shape
        t_BxTxF = x_BxHxWxF.reshape(b, h * w, f)
        return x_BxHxWxF + self.attn(t_BxTxF).reshape(b, h, w, f)


class UNet(nnx.Module):
    """U-Net denoiser: `depth` 2x down/up-samplings with skip connections; x - noise.

    Level l has features * 2^l channels; downsampling is 2x2 average pooling,
    upsampling is nearest-neighbour followed by concatenation with the skip and a
    conv block. Input H, W must be multiples of 2^depth.

    Args:
      depth: number of downsamplings (>= 1).
      features: channels at the finest level.
      channels: image channels C.
      bias_free: drop every additive constant (see module docstring).
      attention_heads: > 0 adds a `physattn.nn.ThermoAttention` self-attention layer
        over the bottleneck tokens (residual); 0 (default) disables it.
      impulse_mask: also feed `impulse_features` (pixels at the image's extremes)
        to the first block; this makes the output depend on the whole input (its min
        and max), not only on the receptive field.
      impulse_gate: mark the extremes only in images where both are shared by at
        least this fraction of the pixels (see `image_extremes`); 0 marks always.
    Attributes:
      receptive_radius: pixels on each side that influence one output pixel.
      size_multiple: 2^depth.
    """

    def __init__(
        self,
        depth: int = 3,
        features: int = 32,
        *,
        channels: int = 1,
        bias_free: bool = False,
        attention_heads: int = 0,
        impulse_mask: bool = False,
        impulse_gate: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if depth < 1 or features < 1 or attention_heads < 0:
            raise ValueError(
                f"need depth >= 1, features >= 1, attention_heads >= 0, got depth="
                f"{depth}, features={features}, attention_heads={attention_heads}"
            )
        bias = not bias_free
        f = [features * 2**level for level in range(depth + 1)]
        fin = _set_impulse_options(self, channels, impulse_mask, impulse_gate)
        self.depth = depth
        self.size_multiple = 2**depth
        # upper bound: 4 convs per level (3x3 at scale 2^l), pooling misalignment
        self.receptive_radius = sum(5 * 2**level for level in range(depth)) + 2 * (
            2**depth
        )
        self.down = nnx.List(
            [
                _Block(fin if i == 0 else f[i - 1], f[i], bias=bias, rngs=rngs)
                for i in range(depth)
            ]
        )
        self.bottom = _Block(f[depth - 1], f[depth], bias=bias, rngs=rngs)
        self.attention = (
            _Attention(f[depth], attention_heads, bias=bias, rngs=rngs)
            if attention_heads
            else None
        )
        self.up = nnx.List(
            [_Block(f[i + 1] + f[i], f[i], bias=bias, rngs=rngs) for i in range(depth)]
        )
        self.out = nnx.Conv(f[0], channels, (1, 1), use_bias=bias, rngs=rngs)

    def __call__(
        self, x_BxHxWxC: Float[Array, "B H W C"], extremes=None
    ) -> Float[Array, "B H W C"]:
        """x - noise; `extremes` (B, 3, C): see `impulse_features` (impulse_mask)."""
        _check_input(x_BxHxWxC, self.channels, self.size_multiple)
        skips = []
        h = _with_impulse_features(x_BxHxWxC, self, extremes)
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = _avg_pool2(h)
        h = self.bottom(h)
        if self.attention is not None:
            h = self.attention(h)
        for i in reversed(range(self.depth)):
            h = self.up[i](jnp.concatenate([_upsample2(h), skips[i]], axis=-1))
        noise_BxHxWxC = self.out(h)
        return x_BxHxWxC - noise_BxHxWxC

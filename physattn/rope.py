"""Rotary position embedding (RoPE) and partial p-RoPE.

Feature pairs (x_i, x_{i + H/2}) (the "split halves" convention of GPT-NeoX/LLaMA/Gemma)
are rotated by the angle m * omega_i at position m, with omega_i = base^(-2i/H). Then
<R(m) q, R(n) k> depends on positions only through m - n, because R(m)^T R(n) =
R(n - m). p-RoPE (`fraction` < 1) keeps the r = 2 * round(fraction * H / 2) highest
frequencies and leaves the remaining H - r features unrotated (r rounded half up).

Reference: Su et al., "RoFormer" (2021) eq. 15; Barbero et al., "Round and Round We Go!
What makes Rotary Positional Encodings useful?" (ICLR 2025) for p-RoPE.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from physattn import _checks


def rotated_pairs(head_dim: int, fraction: float = 1.0) -> int:
    """Number of feature pairs RoPE rotates: floor(fraction * head_dim / 2 + 1/2)."""
    if not isinstance(head_dim, int | np.integer) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be an even integer >= 2, got {head_dim!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    return int(np.floor(fraction * head_dim / 2 + 0.5))


def frequencies(
    head_dim: int, *, base: float = 10000.0, fraction: float = 1.0
) -> Float[Array, " half"]:
    """Angular frequencies omega_i = base^(-2i/H) [rad/position], 0 for unrotated pairs.

    Shape (head_dim // 2,), highest frequency first.
    """
    if not base > 1.0:
        raise ValueError(f"base must be > 1, got {base!r}")
    n_rot = rotated_pairs(head_dim, fraction)
    i = np.arange(head_dim // 2)
    omega = base ** (-2.0 * i / head_dim)
    return jnp.asarray(np.where(i < n_rot, omega, 0.0))


def apply_rope(
    x: Float[ArrayLike, "*lead H"],
    positions: ArrayLike,
    *,
    base: float = 10000.0,
    fraction: float = 1.0,
) -> Float[Array, "*lead H"]:
    """Rotate the features of `x` (..., H) by the angles positions * omega.

    positions: integer or float positions that broadcast (numpy rules, right-aligned)
      against x.shape[:-1]; for (B, T, N, H) pass (B, T, 1) or (T, 1).
    The rotation is computed in float32 or wider and cast back to x's dtype.
    """
    x = _checks.float_array(x, "x")
    if x.ndim < 1:
        raise ValueError(f"x must have a feature axis, got shape {x.shape}")
    head_dim = x.shape[-1]
    omega = frequencies(head_dim, base=base, fraction=fraction)
    pos = jnp.asarray(positions)
    lead = x.shape[:-1]
    try:
        ok = np.broadcast_shapes(pos.shape, lead) == lead
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"positions of shape {pos.shape} must broadcast to x.shape[:-1] = {lead}; "
            "for (B, T, N, H) inputs pass positions of shape (B, T, 1) or (T, 1)"
        )
    dtype = _checks.compute_dtype(x.dtype)
    pos = pos.astype(dtype).reshape((1,) * (len(lead) - pos.ndim) + pos.shape)
    omega = omega.astype(dtype).reshape((1,) * len(lead) + omega.shape)
    angle = jnp.broadcast_to(pos, lead)[..., None] * omega
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    xf = x.astype(dtype)
    x1, x2 = xf[..., : head_dim // 2], xf[..., head_dim // 2 :]
    out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.astype(x.dtype)

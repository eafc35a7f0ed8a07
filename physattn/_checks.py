"""Input validation shared by physattn: early, specific errors (DESIGN.md principle 8).

Checks on values (T > 0, ...) run only when the value is concrete; under `jit` a traced
temperature cannot be inspected, and the caller's contract (documented per function)
applies.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def float_array(x: Any, name: str) -> jax.Array:
    """`x` as a JAX array of a floating dtype; integer/bool/complex input is refused."""
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating-point array (bfloat16, float16, float32 or "
            f"float64), got dtype {arr.dtype}; cast it first, e.g. "
            f"{name}.astype(jnp.float32)"
        )
    return arr


def compute_dtype(*dtypes) -> jnp.dtype:
    """The dtype reductions run in: the widest input float, and at least float32."""
    widest = max((jnp.dtype(d) for d in dtypes), key=lambda d: d.itemsize)
    return widest if widest.itemsize > 4 else jnp.dtype(jnp.float32)


def is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def temperature(t: Any, dtype, name: str = "temperature") -> jax.Array:
    """A positive temperature cast to `dtype`; checked when concrete."""
    if isinstance(t, bool) or (
        hasattr(t, "dtype") and not jnp.issubdtype(jnp.asarray(t).dtype, jnp.number)
    ):
        raise ValueError(f"{name} must be a positive number, got {t!r}")
    if is_concrete(t):
        values = np.asarray(t)
        if (
            np.iscomplexobj(values)
            or not np.all(np.isfinite(values))
            or np.any(values <= 0)
        ):
            raise ValueError(
                f"{name} must be finite and > 0 (in units of the scores), got {t!r}"
            )
    return jnp.asarray(t).astype(dtype)


def mask(m: Any, shape: tuple[int, ...], name: str = "mask") -> jax.Array | None:
    """A boolean key mask broadcastable to `shape`, or None."""
    if m is None:
        return None
    arr = jnp.asarray(m)
    if arr.dtype != jnp.bool_:
        raise ValueError(
            f"{name} must be boolean (True = key attended), got dtype {arr.dtype}"
        )
    try:
        ok = np.broadcast_shapes(arr.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {arr.shape} does not broadcast to the scores' shape "
            f"{tuple(shape)}"
        )
    arr = arr.reshape((1,) * (len(shape) - arr.ndim) + arr.shape)
    return jnp.broadcast_to(arr, shape)


def at_least_1d(x: jax.Array, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(
            f"{name} must have at least one key along its last axis, got shape "
            f"{x.shape}"
        )


def broadcast_rows(t: jax.Array, row_shape: tuple[int, ...], name: str) -> jax.Array:
    """Broadcast a per-row parameter (scalar or row-shaped) to `row_shape`."""
    try:
        ok = np.broadcast_shapes(t.shape, row_shape) == tuple(row_shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {t.shape} does not broadcast to the row shape "
            f"{tuple(row_shape)} (scores.shape[:-1])"
        )
    t = t.reshape((1,) * (len(row_shape) - t.ndim) + t.shape)
    return jnp.broadcast_to(t, row_shape)

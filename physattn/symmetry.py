"""Continuous symmetries of attention logits, with and without RoPE.

Logits s_mn = q_m . k_n with q = x W_Q, k = x W_K are invariant under the
reparametrisation W_Q -> W_Q A, W_K -> W_K A^{-T} for every invertible A (group GL,
dimension H^2), or every orthogonal A (group O, H(H-1)/2). Each generator is a zero
(Goldstone) mode of any loss that depends on the weights only through the logits. RoPE
breaks the symmetry explicitly: A must commute with the position rotations R(m) for
every m, which (for distinct frequencies) leaves one complex scalar per rotated pair
(GL: 2 real dimensions; O: the SO(2) rotation, 1) and the full group on the H - r
unrotated features:

    dim GL = r + (H - r)^2,        dim O = r/2 + (H - r)(H - r - 1)/2,

with r = 2 * rotated pairs (`physattn.rope.rotated_pairs`). `numerical_dimension`
measures the same number as the null space of the logits' tangent map over the group's
Lie algebra, which the tests compare with the closed form.

Reference: Barbero et al., "Round and Round We Go!" (ICLR 2025); for the symmetry
counting, Goldstone's theorem (Weinberg, QFT vol. 2, sec. 19.2) in its parameter-space
form (zero modes of the loss Hessian).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from physattn import rope as _rope

_GROUPS = ("GL", "O")


def _check_group(group: str) -> None:
    if group not in _GROUPS:
        raise ValueError(f"group must be one of {_GROUPS}, got {group!r}")


def symmetry_dimension(
    head_dim: int, *, rope: bool, group: str, fraction: float = 1.0
) -> int:
    """Dimension of the continuous reparametrisation symmetry of the logits.

    Closed form (module docstring); `rope=False` ignores `fraction`.
    """
    _check_group(group)
    r = 2 * _rope.rotated_pairs(head_dim, fraction if rope else 0.0)
    n = head_dim - r
    if group == "GL":
        return r + n * n
    return r // 2 + n * (n - 1) // 2


def _algebra_basis(head_dim: int, group: str) -> np.ndarray:
    eye = np.eye(head_dim)
    if group == "GL":
        return np.einsum("ai,bj->abij", eye, eye).reshape(-1, head_dim, head_dim)
    basis = [
        np.outer(eye[a], eye[b]) - np.outer(eye[b], eye[a])
        for a in range(head_dim)
        for b in range(a + 1, head_dim)
    ]
    return np.array(basis).reshape(-1, head_dim, head_dim)


def numerical_dimension(
    head_dim: int,
    *,
    rope: bool,
    group: str,
    fraction: float = 1.0,
    key: PRNGKeyArray,
    d_model: int | None = None,
    n_tokens: int | None = None,
    base: float = 10000.0,
    rtol: float = 1e-9,
) -> int:
    """Symmetry dimension measured as dim(algebra) - rank of the logits' tangent map.

    For each Lie-algebra generator A the tangent of the logits along
    (dW_Q, dW_K) = (W_Q A, -W_K A^T) is computed with `jax.jvp` at random weights and
    inputs; generators whose tangent vanishes are symmetries. Run in float64.
    """
    _check_group(group)
    d_model = head_dim + 3 if d_model is None else d_model
    n_tokens = 2 * head_dim + 8 if n_tokens is None else n_tokens
    kx, kq, kk = jax.random.split(key, 3)
    with jax.enable_x64(True):
        f64 = jnp.float64
        x = jax.random.normal(kx, (n_tokens, d_model), f64)
        w_q = jax.random.normal(kq, (d_model, head_dim), f64)
        w_k = jax.random.normal(kk, (d_model, head_dim), f64)
        pos = jnp.arange(n_tokens, dtype=f64)
        frac = fraction if rope else 0.0

        def logits(w_q, w_k):
            q = _rope.apply_rope(x @ w_q, pos, base=base, fraction=frac)
            k = _rope.apply_rope(x @ w_k, pos, base=base, fraction=frac)
            return (q @ k.T).reshape(-1)

        basis = jnp.asarray(_algebra_basis(head_dim, group))

        def tangent(a):
            return jax.jvp(logits, (w_q, w_k), (w_q @ a, -w_k @ a.T))[1]

        m = np.asarray(jax.jit(jax.vmap(tangent))(basis))
        scale = float(jnp.linalg.norm(logits(w_q, w_k)))
    # Generators have unit norm, so a tangent is small relative to the logits' size.
    sv = np.linalg.svd(m, compute_uv=False)
    rank = int(np.sum(sv > rtol * scale))
    return basis.shape[0] - rank


def loss_hessian_spectrum(
    head_dim: int,
    *,
    rope: bool,
    fraction: float = 1.0,
    key: PRNGKeyArray,
    d_model: int | None = None,
    n_tokens: int | None = None,
    base: float = 10000.0,
) -> np.ndarray:
    """Eigenvalues (ascending) of the Hessian of a logits-matching loss at its minimum.

    loss(W_Q, W_K) = (1/2) ||s(W_Q, W_K) - s(W_Q*, W_K*)||^2 over random inputs,
    evaluated at W = W*: the Hessian is J^T J and its zero eigenvalues are the
    Goldstone modes, as many as `symmetry_dimension(head_dim, rope=rope, group="GL")`.
    Shape (2 * d_model * head_dim,). Run in float64.
    """
    d_model = head_dim + 2 if d_model is None else d_model
    n_tokens = 2 * head_dim + 8 if n_tokens is None else n_tokens
    kx, kq, kk = jax.random.split(key, 3)
    frac = fraction if rope else 0.0
    with jax.enable_x64(True):
        f64 = jnp.float64
        x = jax.random.normal(kx, (n_tokens, d_model), f64)
        w0 = jnp.concatenate(
            [
                jax.random.normal(kq, (d_model * head_dim,), f64),
                jax.random.normal(kk, (d_model * head_dim,), f64),
            ]
        )
        pos = jnp.arange(n_tokens, dtype=f64)

        def logits(w):
            w_q, w_k = w.reshape(2, d_model, head_dim)
            q = _rope.apply_rope(x @ w_q, pos, base=base, fraction=frac)
            k = _rope.apply_rope(x @ w_k, pos, base=base, fraction=frac)
            return (q @ k.T).reshape(-1)

        target = logits(w0)
        loss = lambda w: 0.5 * jnp.sum((logits(w) - target) ** 2)
        hess = np.asarray(jax.jit(jax.hessian(loss))(w0))
    return np.linalg.eigvalsh(0.5 * (hess + hess.T))


def count_zero_modes(eigenvalues: np.ndarray, rtol: float = 1e-9) -> int:
    """Eigenvalues below rtol times the largest in magnitude."""
    ev = np.asarray(eigenvalues)
    return int(np.sum(np.abs(ev) < rtol * np.max(np.abs(ev))))

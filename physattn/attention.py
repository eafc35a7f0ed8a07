"""Fused dot-product attention that measures its own thermodynamics.

Letters (as in `jax.nn.dot_product_attention`): B batch, T queries (target), S keys
(source), N query heads, K key/value heads, G = N // K heads per group, H head size.

With temperature T (default sqrt(H)) the logits are x = q.k / T + bias, exactly the
logits of `jax.nn.dot_product_attention(..., scale=1/T)`, and p = softmax(x). For the
thermodynamics the bias is an energy shift in score units: the scores are
s = q.k + T * bias, so that p = softmax(s / T) is the same distribution and the
statistics equal `physattn.thermo.observables(s, T, mask)`:

    log Z = logsumexp(x),  F = -T log Z,  U = -<s> = -T <x>,
    S = -sum p log p,      C = Var_p(s) / T^2 = Var_p(x).

Masked keys (mask False, outside the causal triangle, or logit -inf) are excluded
exactly. A query row with no key left (fully masked) returns output 0 (jax returns the
mean of the values there) and statistics 0 with `valid` False; it gets zero gradient.

Implementations (all agree to float32 rounding; see tests/physattn/test_attention.py):
  "reference"  materialises the (B,N,T,S) logits; statistics from `physattn.thermo`.
  "chunked"    `physattn.attention_chunked`: lax loops over (block_q x block_k) tiles,
               online softmax and moments, custom VJP with recomputation; O(T + S)
               memory. Gradients of out and of every statistic.
  "pallas"     `physattn.attention_pallas`: a Pallas GPU kernel for the forward pass
               (no bias/mask; causal allowed), backward through the chunked VJP.
               Off GPU it runs in Pallas interpret mode (slow; for tests).
  None         "pallas" on a GPU when the call is supported; else "reference" for
               tiny problems (B*N*T*S <= 2**16: fewest ops, and the only path with
               forward-mode AD, e.g. jax.hessian); else "chunked", which on CPU
               was also faster than the materialising paths from T = 512 up
               (benchmarks/attention.py).

References: Vaswani et al. (2017) for scaled dot-product attention; Dao (2023),
FlashAttention-2, Alg. 1/2; Milakov & Gimelshein (2018) for the online softmax.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from physattn import _checks, attention_chunked, thermo
from physattn.thermo import Thermo

IMPLEMENTATIONS = (None, "reference", "chunked", "pallas")
DEFAULT_BLOCK = (512, 512)
_REFERENCE_MAX_LOGITS = 2**16


def _check_qkv(query: Any, key: Any, value: Any):
    q = _checks.float_array(query, "query")
    k = _checks.float_array(key, "key")
    v = _checks.float_array(value, "value")
    for name, a in (("query", q), ("key", k), ("value", v)):
        if a.ndim not in (3, 4):
            raise ValueError(
                f"{name} must have rank 4 (B, T|S, N|K, H) or rank 3 (T|S, N|K, H), "
                f"got shape {a.shape}"
            )
    if not q.ndim == k.ndim == v.ndim:
        raise ValueError(
            f"query, key and value must have the same rank, got shapes {q.shape}, "
            f"{k.shape} and {v.shape}"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(
            f"query, key and value must share a dtype, got {q.dtype}, {k.dtype} and "
            f"{v.dtype}; cast them first"
        )
    if k.shape != v.shape:
        raise ValueError(
            f"key and value must have the same shape (B, S, K, H), got key {k.shape} "
            f"and value {v.shape}"
        )
    if q.ndim == 3:
        q, k, v = q[None], k[None], v[None]
    B, _, N, H = q.shape
    if k.shape[0] != B:
        raise ValueError(
            f"query and key must share the batch size B, got query {q.shape} and key "
            f"{k.shape}"
        )
    if k.shape[3] != H:
        raise ValueError(
            f"query and key must share the head size H, got {H} (query {q.shape}) and "
            f"{k.shape[3]} (key {k.shape})"
        )
    if k.shape[2] < 1 or N % k.shape[2] != 0:
        raise ValueError(
            f"the number of query heads N={N} must be a multiple of the number of "
            f"key/value heads K={k.shape[2]} (grouped-query attention)"
        )
    if k.shape[1] < 1 or q.shape[1] < 1:
        raise ValueError(
            f"query and key need at least one position, got {q.shape} and {k.shape}"
        )
    return q, k, v


def _as_4d(a: jax.Array, name: str, shape: tuple[int, ...]) -> jax.Array:
    """Left-pad the rank to 4 and check broadcasting to (B, N, T, S)."""
    if a.ndim > 4:
        raise ValueError(f"{name} must have rank <= 4, got shape {a.shape}")
    a = a.reshape((1,) * (4 - a.ndim) + a.shape)
    if any(d not in (1, n) for d, n in zip(a.shape, shape, strict=True)):
        raise ValueError(
            f"{name} of shape {a.shape} does not broadcast to (B, N, T, S) = {shape}"
        )
    return a


def _check_bias_mask(bias: Any, mask: Any, shape: tuple[int, ...]):
    if bias is not None:
        bias = _as_4d(_checks.float_array(bias, "bias"), "bias", shape)
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(
                f"mask must be boolean (True = key attended), got dtype {mask.dtype}; "
                "use mask.astype(bool) or pass an additive float bias instead"
            )
        mask = _as_4d(mask, "mask", shape)
    return bias, mask


def _check_block(block_size: Any) -> tuple[int, int]:
    if block_size is None:
        return DEFAULT_BLOCK
    sizes = (block_size, block_size) if np.ndim(block_size) == 0 else block_size
    ok = len(sizes) == 2 and all(
        isinstance(b, int | np.integer) and not isinstance(b, bool) and b > 0
        for b in sizes
    )
    if not ok:
        raise ValueError(
            "block_size must be a positive int or a pair (block_q, block_k) of "
            f"positive ints, got {block_size!r}"
        )
    return int(sizes[0]), int(sizes[1])


def _row_temperature(temperature: Any, head_dim: int, rows: tuple, dtype) -> Array:
    """Temperature broadcast to the (B, T, N) rows; default sqrt(H)."""
    t = float(head_dim) ** 0.5 if temperature is None else temperature
    t = _checks.temperature(t, dtype)
    return _checks.broadcast_rows(t, rows, "temperature")


def _pallas_support(q, k, bias, mask, block) -> str | None:
    """Why the Pallas kernel cannot run this call, or None if it can."""
    from physattn import attention_pallas

    return attention_pallas.unsupported(q, k, bias, mask, block)


def _choose(implementation: Any, q, k, bias, mask, block) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}"
        )
    if implementation is not None:
        return implementation
    on_gpu = jax.default_backend() == "gpu"
    if on_gpu and _pallas_support(q, k, bias, mask, block) is None:
        return "pallas"
    B, T, N, _ = q.shape
    if B * N * T * k.shape[1] <= _REFERENCE_MAX_LOGITS:
        return "reference"
    return "chunked"


def dot_product_attention(
    query: Float[ArrayLike, "B T N H"],
    key: Float[ArrayLike, "B S K H"],
    value: Float[ArrayLike, "B S K H"],
    bias: Float[ArrayLike, "#B #N #T #S"] | None = None,
    mask: Bool[ArrayLike, "#B #N #T #S"] | None = None,
    *,
    is_causal: bool = False,
    temperature: Any = None,
    implementation: str | None = None,
    return_stats: bool = False,
    block_size: int | tuple[int, int] | None = None,
) -> Float[Array, "B T N H"] | tuple[Float[Array, "B T N H"], Thermo]:
    """softmax(q.k / T + bias) v over the keys, optionally with its `Thermo`.

    Args:
      query: (B, T, N, H) or (T, N, H), floating.
      key, value: (B, S, K, H) or (S, K, H), same dtype as query; N % K == 0.
      bias: additive logits broadcastable to (B, N, T, S) (score shift T * bias).
      mask: boolean, broadcastable to (B, N, T, S); False excludes a key.
      is_causal: exclude keys j > i (top-left aligned, as jax).
      temperature: T > 0 [score units]: scalar or broadcastable to (B, T, N);
        default sqrt(H), i.e. jax's default scale 1/sqrt(H).
      implementation: None, "reference", "chunked" or "pallas" (module docstring).
      return_stats: also return `Thermo` with fields of shape (B, T, N) (or (T, N)).
      block_size: tile size (block_q, block_k) or one int for both ("chunked",
        "pallas"); default (512, 512).
    Returns:
      out of the query's dtype and shape; with return_stats, (out, Thermo) whose
      fields are float32 (float64 for float64 input).
    """
    q, k, v = _check_qkv(query, key, value)
    unbatched = jnp.ndim(query) == 3
    B, T, N, H = q.shape
    S = k.shape[1]
    bias, mask = _check_bias_mask(bias, mask, (B, N, T, S))
    block = _check_block(block_size)
    if not isinstance(is_causal, bool | np.bool_):
        raise ValueError(f"is_causal must be a bool, got {is_causal!r}")
    if not isinstance(return_stats, bool | np.bool_):
        raise ValueError(f"return_stats must be a bool, got {return_stats!r}")
    impl = _choose(implementation, q, k, bias, mask, block)
    dtype = _checks.compute_dtype(q.dtype)
    temp = _row_temperature(temperature, H, (B, T, N), dtype)
    if impl == "pallas":
        reason = _pallas_support(q, k, bias, mask, block)
        if reason is not None:
            raise ValueError(
                f"implementation='pallas' cannot run this call: {reason}; use "
                "implementation='chunked' (same results) or None"
            )
    if impl == "reference":
        out, stats = _reference(q, k, v, bias, mask, bool(is_causal), temp)
    else:
        out, stats = _blocked(
            q,
            k,
            v,
            bias,
            mask,
            temp,
            bool(is_causal),
            block,
            bool(return_stats),
            impl == "pallas",
        )
    if unbatched:
        out = out[0]
        stats = jax.tree.map(lambda a: a[0], stats)
    return (out, stats) if return_stats else out


def _causal_mask(T: int, S: int) -> jax.Array:
    return jnp.tril(jnp.ones((T, S), dtype=bool))[None, None]


@functools.partial(jax.jit, static_argnames=("is_causal",))
def _reference(q, k, v, bias, mask, is_causal, temp):
    """Materialised logits; statistics from `thermo.observables` (the oracle)."""
    B, T, N, H = q.shape
    _, S, K, _ = k.shape
    dtype = temp.dtype
    qg = q.reshape(B, T, K, N // K, H)
    s = jnp.einsum("btkgh,bskh->bkgts", qg, k, preferred_element_type=dtype)
    s = s.astype(dtype).reshape(B, N, T, S)
    t_rows = jnp.transpose(temp, (0, 2, 1))  # (B, N, T)
    if bias is not None:
        s = s + t_rows[..., None] * bias.astype(dtype)
    full = (B, N, T, S)
    m = None if mask is None else jnp.broadcast_to(mask, full)
    if is_causal:
        c = jnp.broadcast_to(_causal_mask(T, S), full)
        m = c if m is None else m & c
    stats = thermo.observables(s, t_rows, m)
    p = thermo.gibbs(s, t_rows, m)
    pg = p.reshape(B, K, N // K, T, S)
    out = jnp.einsum(
        "bkgts,bskh->btkgh", pg.astype(v.dtype), v, preferred_element_type=dtype
    )
    out = out.reshape(B, T, N, H).astype(v.dtype)
    return out, jax.tree.map(lambda a: jnp.transpose(a, (0, 2, 1)), stats)


def _pad_axis(a, axis: int, size: int, value):
    if a is None or a.shape[axis] in (1, size):
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, size - a.shape[axis])
    return jnp.pad(a, pad, constant_values=value)


def _group(a, K: int):
    """(Bb, Nb, Tb, Sb) -> (Bb, Kb, Gb, Tb, Sb), keeping size-1 broadcast axes."""
    if a is None:
        return None
    Bb, Nb, Tb, Sb = a.shape
    return a.reshape(Bb, 1, 1, Tb, Sb) if Nb == 1 else a.reshape(Bb, K, Nb // K, Tb, Sb)


@functools.partial(jax.jit, static_argnames=("is_causal", "block", "stats", "pallas"))
def _blocked(q, k, v, bias, mask, temp, is_causal, block, stats, pallas):
    """Pad to whole tiles, move to the (B,K,G,T,H) layout and call the chunked core."""
    B, T, N, H = q.shape
    _, S, K, _ = k.shape
    G = N // K
    dtype = temp.dtype
    bq, bk = min(block[0], T), min(block[1], S)
    Tp, Sp = -(-T // bq) * bq, -(-S // bk) * bk
    q5 = jnp.transpose(q.reshape(B, T, K, G, H), (0, 2, 3, 1, 4))
    q4 = _pad_axis(q5.reshape(B * K, G, T, H), 2, Tp, 0)
    k3 = _pad_axis(jnp.transpose(k, (0, 2, 1, 3)).reshape(B * K, S, H), 1, Sp, 0)
    v3 = _pad_axis(jnp.transpose(v, (0, 2, 1, 3)).reshape(B * K, S, H), 1, Sp, 0)
    it = jnp.transpose((1 / temp).reshape(B, T, K, G), (0, 2, 3, 1))
    it = _pad_axis(it.reshape(B * K, G, T), 2, Tp, 1).astype(dtype)
    bias5 = _pad_axis(_pad_axis(_group(bias, K), 3, Tp, 0), 4, Sp, 0)
    mask5 = _pad_axis(_pad_axis(_group(mask, K), 3, Tp, False), 4, Sp, False)
    cfg = attention_chunked.Config(bool(is_causal), bq, bk, bool(stats), T, S)
    forward = None
    if pallas:
        from physattn import attention_pallas

        forward = attention_pallas.forward_impl(cfg, (B, K, G))
    core = attention_chunked.make_core(cfg, (B, K, G), forward)
    res = core(q4, k3, v3, it, bias5, mask5)

    def rows(a):  # (B*K, G, Tp) -> (B, T, N)
        a = a[..., :T].reshape(B, K, G, T)
        return jnp.transpose(a, (0, 3, 1, 2)).reshape(B, T, N)

    out = res.out[:, :, :T].reshape(B, K, G, T, H)
    out = jnp.transpose(out, (0, 3, 1, 2, 4)).reshape(B, T, N, H)
    lse, ent, var = rows(res.log_partition), rows(res.entropy), rows(res.variance)
    valid = rows(res.valid) > 0
    zero = jnp.zeros((), dtype)
    stats_out = Thermo(
        log_partition=lse,
        free_energy=jnp.where(valid, -temp * lse, zero),
        energy=jnp.where(valid, -temp * (lse - ent), zero),
        entropy=ent,
        heat_capacity=var,
        valid=valid,
    )
    return out.astype(q.dtype), stats_out

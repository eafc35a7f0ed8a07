"""Blockwise (flash) attention with online thermodynamic moments, O(T + S) memory.

Internal layout (letters as in `physattn.attention`): queries q_(BK)xGxTxH, keys and
values k_(BK)xSxH, inverse temperature per query row it_(BK)xGxT, logits
x = it * q.k + bias. Only (B*K, G*block_q, block_k) tiles of logits ever exist: the G
query heads that share a key head are stacked as extra query rows of one 3-D matmul.

Per row the forward pass keeps, over the key blocks seen so far: the running max m,
the softmax mass l = sum exp(x - m), the unnormalised output, and the Gibbs mean
<x - m> and variance Var(x) merged block by block with the parallel-variance rule of
Chan, Golub & LeVeque (1983) weighted by softmax mass, so that no moment is ever formed
as E[x^2] - E[x]^2. It returns log Z, S = log l - <x - m> (both terms >= 0, so S has
no cancellation) and C = Var_p(x) (= Var_p(s)/T^2).

The backward pass recomputes p block by block from the stored log Z (FlashAttention-2,
Dao 2023, Alg. 2) and folds the cotangents of the statistics into one weight per
logit: with d_j = x_j - <x>,
    d log Z / d x_j = p_j,   d S / d x_j = -p_j d_j,
    d Var / d x_j = p_j (d_j^2 - Var + 2 d_j),   d out / d x_j = p_j (v_j - out).

References: Milakov & Gimelshein (2018), online normaliser for softmax; Dao (2023),
FlashAttention-2, Alg. 1 (forward) and Alg. 2 (backward).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class Config(NamedTuple):
    """Static configuration of one chunked call (hashable)."""

    causal: bool
    block_q: int
    block_k: int
    stats: bool
    seq_q: int  # true T (before padding)
    seq_k: int  # true S (before padding)


class Core(NamedTuple):
    """Outputs of the core: out (B*K, G, T, H) and per-row (B*K, G, T) statistics."""

    out: jax.Array
    log_partition: jax.Array  # log Z of the logits x; 0 on empty rows
    entropy: jax.Array  # S = -sum p log p; 0 on empty rows
    variance: jax.Array  # Var_p(x) = heat capacity; 0 on empty rows
    valid: jax.Array  # 1.0 where the row has a key, else 0.0 (compute dtype)


def merge_moments(mu, var, mu_b, var_b, l_prev, l_blk, l_new, m_prev, m_safe, alpha):
    """Merge running (mu, var) with a block's (mu_b, var_b) of the shifted logits.

    Chan et al. (1979) parallel variance with weights a + b = 1 from the softmax mass:
    the running mean is re-centred from the old max m_prev to the new m_safe, and
    alpha = exp(m_prev - m_new) rescales the old mass l_prev. Empty parts (mass 0)
    contribute nothing. Shared by the chunked scan and the Pallas kernel.
    """
    zero, one = jnp.zeros((), mu.dtype), jnp.ones((), mu.dtype)
    mu_a = jnp.where(l_prev > 0, mu + (m_prev - m_safe), zero)
    ln = jnp.where(l_new > 0, l_new, one)
    a = alpha * l_prev / ln
    b = l_blk / ln
    delta = mu_b - mu_a
    return a * mu_a + b * mu_b, a * var + b * var_b + a * b * delta * delta


def _bmm(a, b, dtype, contract=(2, 1)):
    """Batched matmul over axis 0 with `dtype` accumulation (3-D operands).

    Plain 3-D dots keep XLA:CPU on its GEMM path; 5-D einsums with two consumers of
    one tile were measured 4x slower there.
    """
    dims = (((contract[0],), (contract[1],)), ((0,), (0,)))
    return lax.dot_general(a, b, dims, preferred_element_type=dtype).astype(dtype)


def _tile(a, starts: tuple, sizes: tuple[int, int], rows: tuple[int, int, int]):
    """(B?, K?, G?, Tb, Sb) operand -> its (B*K, G*bq, bk) tile (broadcast)."""
    if a is None:
        return None
    zero = jnp.zeros((), jnp.int32)
    idx = [zero] * 3
    shape = list(a.shape[:3])
    for ax, start, size in zip((3, 4), starts, sizes, strict=True):
        full = a.shape[ax] > 1
        idx.append(jnp.asarray(start).astype(jnp.int32) if full else zero)
        shape.append(size if full else 1)
    t = lax.dynamic_slice(a, idx, shape)
    B, K, G = rows
    t = jnp.broadcast_to(t, (B, K, G, *sizes))
    return t.reshape(B * K, G * sizes[0], sizes[1])


def _logits(cfg: Config, rows, q_blk, k_blk, it_blk, bias, mask, iq, ik, t=False):
    """Masked logits of one tile, (B*K, G*bq, bk) in the compute dtype, -inf excluded.

    q_blk (B*K, G*bq, H), k_blk (B*K, bk, H), it_blk (B*K, G*bq). With t=True the
    transposed tile (B*K, bk, G*bq) (keys along axis 1), as the backward pass uses.
    """
    bq, bk = cfg.block_q, cfg.block_k
    G = rows[2]
    dtype = it_blk.dtype
    qa, ka = (2, 1) if t else (1, 2)  # axes of query rows and keys in the tile

    def orient(a):
        return jnp.swapaxes(a, 1, 2) if t else a

    if t:
        x = _bmm(k_blk, q_blk, dtype, (2, 2)) * it_blk[:, None, :]
    else:
        x = _bmm(q_blk, k_blk, dtype, (2, 2)) * it_blk[..., None]
    starts = (iq * bq, ik * bk)
    if bias is not None:
        x = x + orient(_tile(bias, starts, (bq, bk), rows)).astype(dtype)
    shape = [1, 1, 1]
    shape[ka] = bk
    k_idx = ik * bk + lax.broadcasted_iota(jnp.int32, tuple(shape), ka)
    keep = (k_idx < cfg.seq_k) & (x > -jnp.inf)
    if cfg.causal:
        q_idx = iq * bq + lax.broadcasted_iota(jnp.int32, (G, bq), 1)
        shape = [1, 1, 1]
        shape[qa] = G * bq
        keep = keep & (k_idx <= q_idx.reshape(shape))
    if mask is not None:
        keep = keep & orient(_tile(mask, starts, (bq, bk), rows))
    return jnp.where(keep, x, jnp.asarray(-jnp.inf, dtype))


def _key_range(cfg: Config, iq, n_k):
    """Key blocks that can hold an unmasked key for query block iq (causal skip)."""
    if not cfg.causal:
        return n_k
    last_q = (iq + 1) * cfg.block_q - 1
    return jnp.minimum(n_k, last_q // cfg.block_k + 1)


def _q_tile(a, iq, bq):
    """(B*K, G, Tp, ...) -> the (B*K, G*bq, ...) rows of query block iq."""
    t = lax.dynamic_slice_in_dim(a, iq * bq, bq, axis=2)
    return t.reshape((t.shape[0], t.shape[1] * bq, *t.shape[3:]))


def forward(cfg: Config, rows, q, k, v, it, bias, mask) -> Core:
    """Online softmax with merged moments over key blocks (FlashAttention-2 Alg. 1)."""
    BK, G, Tp, H = q.shape
    Hv = v.shape[-1]
    dtype = it.dtype
    bq, bk = cfg.block_q, cfg.block_k
    n_q, n_k = Tp // bq, k.shape[1] // bk
    neg_inf = jnp.asarray(-jnp.inf, dtype)
    zero = jnp.zeros((), dtype)
    one = jnp.ones((), dtype)

    def q_block(iq):
        q_blk, it_blk = _q_tile(q, iq, bq), _q_tile(it, iq, bq)
        shape = (BK, G * bq)

        def body(ik, carry):
            m_prev, l_prev, acc, mu, var = carry
            k_blk = lax.dynamic_slice_in_dim(k, ik * bk, bk, axis=1)
            v_blk = lax.dynamic_slice_in_dim(v, ik * bk, bk, axis=1)
            x = _logits(cfg, rows, q_blk, k_blk, it_blk, bias, mask, iq, ik)
            m_new = jnp.maximum(m_prev, jnp.max(x, axis=-1))
            m_safe = jnp.where(m_new > -jnp.inf, m_new, zero)
            w = jnp.exp(x - m_safe[..., None])
            alpha = jnp.exp(m_prev - m_safe)
            l_blk = jnp.sum(w, axis=-1)
            l_new = alpha * l_prev + l_blk
            acc = alpha[..., None] * acc + _bmm(w.astype(v.dtype), v_blk, dtype)
            if cfg.stats:
                # Block moments about the running max, two-pass inside the tile;
                # contractions rather than reductions: XLA:CPU runs them as dots.
                z = jnp.where(w > 0, x - m_safe[..., None], zero)
                lb = jnp.where(l_blk > 0, l_blk, one)
                mu_b = jnp.einsum("...s,...s->...", w, z) / lb
                dz = z - mu_b[..., None]
                var_b = jnp.einsum("...s,...s->...", w * dz, dz) / lb
                mu, var = merge_moments(
                    mu, var, mu_b, var_b, l_prev, l_blk, l_new, m_prev, m_safe, alpha
                )
            return m_new, l_new, acc, mu, var

        init = (
            jnp.full(shape, neg_inf),
            jnp.zeros(shape, dtype),
            jnp.zeros((*shape, Hv), dtype),
            jnp.zeros(shape, dtype),
            jnp.zeros(shape, dtype),
        )
        m, l, acc, mu, var = lax.fori_loop(0, _key_range(cfg, iq, n_k), body, init)
        valid = l > 0
        ls = jnp.where(valid, l, one)
        log_l = jnp.log(ls)
        out = jnp.where(valid[..., None], acc / ls[..., None], zero)
        return Core(
            out=out.astype(v.dtype),
            log_partition=jnp.where(valid, m + log_l, zero),
            entropy=jnp.where(valid, log_l - mu, zero),
            variance=jnp.where(valid, var, zero),
            valid=valid.astype(dtype),
        )

    blocks = lax.map(q_block, jnp.arange(n_q, dtype=jnp.int32))

    def unblock(a):  # (n_q, BK, G * bq, ...) -> (BK, G, n_q * bq, ...)
        a = a.reshape((n_q, BK, G, bq, *a.shape[3:]))
        a = jnp.moveaxis(a, 0, 2)
        return a.reshape((BK, G, n_q * bq, *a.shape[4:]))

    return Core(*(unblock(a) for a in blocks))


def _backward(cfg: Config, rows, res, cts):
    """Recompute p tile by tile and accumulate dq, dk, dv, d(1/T), d bias (Alg. 2)."""
    q, k, v, it, bias, mask, core = res
    d_out, d_lse, d_ent, d_var = cts
    BK, G, Tp, H = q.shape
    dtype = it.dtype
    bq, bk = cfg.block_q, cfg.block_k
    n_q, n_k = Tp // bq, k.shape[1] // bk
    zero = jnp.zeros((), dtype)

    d_out = d_out.astype(v.dtype)
    # D_i = dO_i . out_i, the softmax-Jacobian row term (FlashAttention-2 Alg. 2).
    delta = jnp.sum(d_out.astype(dtype) * core.out.astype(dtype), axis=-1)
    lse = core.log_partition  # empty rows: every logit is -inf, so p = 0 there
    mean = lse - core.entropy  # <x> = log Z - S
    qs = (q.astype(dtype) * it[..., None]).astype(q.dtype)  # scaled queries for dk

    def k_block(carry, ik):
        dq_acc, dbias = carry
        k_blk = lax.dynamic_slice_in_dim(k, ik * bk, bk, axis=1)
        v_blk = lax.dynamic_slice_in_dim(v, ik * bk, bk, axis=1)

        def body(iq, inner):
            dk_blk, dv_blk, dq_acc, dbias = inner

            def sl(a):
                return _q_tile(a, iq, bq)

            q_blk, qs_blk, it_blk, do_blk = sl(q), sl(qs), sl(it), sl(d_out)

            def row(a):  # per-row (B*K, G*bq) values along axis 2 of the tile
                return sl(a)[:, None, :]

            # Transposed tiles (keys x query rows): 4 of the 5 GEMMs stay canonical.
            xt = _logits(cfg, rows, q_blk, k_blk, it_blk, bias, mask, iq, ik, t=True)
            pt = jnp.exp(xt - row(lse))
            c = _bmm(v_blk, do_blk, dtype, (2, 2)) - row(delta)
            if cfg.stats:
                d = jnp.where(pt > 0, xt - row(mean), zero)
                c = (
                    c
                    + row(d_lse)
                    - row(d_ent) * d
                    + row(d_var) * (d * d - row(core.variance) + 2 * d)
                )
            dxt = jnp.where(pt > 0, pt * c, zero)
            dxt_c = dxt.astype(q.dtype)
            dv_blk = dv_blk + _bmm(pt.astype(v.dtype), do_blk, dtype)
            dk_blk = dk_blk + _bmm(dxt_c, qs_blk, dtype)
            dx_c = jnp.swapaxes(dxt_c, 1, 2)
            dq_blk = _bmm(dx_c, k_blk, dtype).reshape(BK, G, bq, H)
            dq_old = lax.dynamic_slice_in_dim(dq_acc, iq * bq, bq, axis=2)
            dq_acc = lax.dynamic_update_slice_in_dim(
                dq_acc, dq_old + dq_blk, iq * bq, axis=2
            )
            if dbias is not None:
                dx5 = jnp.swapaxes(dxt, 1, 2).reshape((*rows, bq, bk))
                axes = tuple(i for i in range(5) if dbias.shape[i] == 1)
                contrib = jnp.sum(dx5, axis=axes, keepdims=True)
                start = [jnp.zeros((), jnp.int32)] * 5
                if dbias.shape[3] > 1:
                    start[3] = (iq * bq).astype(jnp.int32)
                if dbias.shape[4] > 1:
                    start[4] = (ik * bk).astype(jnp.int32)
                old = lax.dynamic_slice(dbias, start, contrib.shape)
                dbias = lax.dynamic_update_slice(dbias, old + contrib, start)
            return dk_blk, dv_blk, dq_acc, dbias

        lo = (ik * bk) // bq if cfg.causal else 0
        init = (
            jnp.zeros((BK, bk, H), dtype),
            jnp.zeros((BK, bk, v.shape[-1]), dtype),
            dq_acc,
            dbias,
        )
        dk_blk, dv_blk, dq_acc, dbias = lax.fori_loop(lo, n_q, body, init)
        return (dq_acc, dbias), (dk_blk, dv_blk)

    dbias0 = None if bias is None else jnp.zeros(bias.shape, dtype)
    (dq_t, dbias), (dk, dv) = lax.scan(
        k_block, (jnp.zeros(q.shape, dtype), dbias0), jnp.arange(n_k, dtype=jnp.int32)
    )

    def unblock(a):  # (n_k, BK, bk, H) -> (BK, n_k * bk, H)
        a = jnp.moveaxis(a, 0, 1)
        return a.reshape((a.shape[0], n_k * bk, *a.shape[3:]))

    # x = it * q.k: dq = it * sum_j dx k_j and d it = q . sum_j dx k_j.
    d_it = jnp.sum(q.astype(dtype) * dq_t, axis=-1)
    dq = (dq_t * it[..., None]).astype(q.dtype)
    dbias = None if bias is None else dbias.astype(bias.dtype)
    return (
        dq,
        unblock(dk).astype(k.dtype),
        unblock(dv).astype(v.dtype),
        d_it,
        dbias,
        None,
    )


@functools.cache
def make_core(cfg: Config, rows: tuple[int, int, int], forward_impl=None):
    """The differentiable core for one static config: (q, k, v, it, bias, mask) -> Core.

    Padded internal shapes: q (B*K, G, Tp, H), k and v (B*K, Sp, H), it (B*K, G, Tp),
    bias and mask (B?, K?, G?, Tp?, Sp?) with size-1 broadcast axes; rows = (B, K, G).
    `forward_impl(q, k, v, it, bias, mask) -> Core` may replace the forward pass (the
    Pallas kernel); the backward pass is always the chunked one.
    """
    if forward_impl is None:
        forward_impl = functools.partial(forward, cfg, rows)

    @jax.custom_vjp
    def core(q, k, v, it, bias, mask):
        return forward_impl(q, k, v, it, bias, mask)

    def fwd(q, k, v, it, bias, mask):
        out = forward_impl(q, k, v, it, bias, mask)
        return out, (q, k, v, it, bias, mask, out)

    def bwd(res, ct: Core):
        cts = (ct.out, ct.log_partition, ct.entropy, ct.variance)
        return _backward(cfg, rows, res, cts)

    core.defvjp(fwd, bwd)
    return core

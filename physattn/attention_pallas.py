"""Pallas (Triton GPU) forward kernel: flash attention plus its thermodynamics.

One program per (key/value head b, group member g, query block i) (FlashAttention-2,
Dao 2023, Alg. 1, parallel over query blocks, sec. 3.2): the query block stays in
SRAM while a `fori_loop` streams key/value blocks, keeping the running max, softmax
mass, output accumulator and the Chan-merged Gibbs mean and variance of the logits,
exactly as `physattn.attention_chunked.forward`. It writes out, log Z, S, Var_p(x)
and the row validity; gradients use the chunked backward pass (same residuals).

Supported: no bias and no mask (causal allowed), T and S multiples of the block
sizes, power-of-two head size >= 16, float16/bfloat16/float32. Off GPU the kernel runs
in Pallas interpret mode (slow; for tests at small sizes).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from physattn import attention_chunked
from physattn.attention_chunked import Config, Core


def unsupported(q, k, bias, mask, block) -> str | None:
    """Why the kernel cannot run attention on (B,T,N,H)/(B,S,K,H) inputs, or None."""
    T, H = q.shape[1], q.shape[3]
    S = k.shape[1]
    bq, bk = min(block[0], T), min(block[1], S)
    if bias is not None or mask is not None:
        return "the Pallas kernel takes no bias or mask (is_causal is supported)"
    if T % bq or S % bk:
        return (
            f"sequence lengths T={T}, S={S} must be multiples of the block sizes "
            f"(block_q={bq}, block_k={bk})"
        )
    if H < 16 or H & (H - 1):
        return f"head size H={H} must be a power of two >= 16"
    if q.dtype not in (jnp.float16, jnp.bfloat16, jnp.float32):
        return f"dtype {q.dtype} is not float16, bfloat16 or float32"
    if jax.default_backend() == "gpu" and (bq < 16 or bk < 16):
        return f"blocks ({bq}, {bk}) must be >= 16 on GPU"
    return None


def _kernel(
    q_ref,
    k_ref,
    v_ref,
    it_ref,
    o_ref,
    lse_ref,
    ent_ref,
    var_ref,
    ok_ref,
    *,
    cfg: Config,
    n_k: int,
):
    bq, bk = cfg.block_q, cfg.block_k
    dtype = it_ref.dtype
    iq = pl.program_id(2)
    q = q_ref[...]  # (bq, H)
    it = it_ref[...]  # (bq,)
    zero = jnp.zeros((), dtype)
    one = jnp.ones((), dtype)
    q_idx = iq * bq + lax.broadcasted_iota(jnp.int32, (bq, 1), 0)

    def body(ik, carry):
        m_prev, l_prev, acc, mu, var = carry
        k = k_ref[pl.ds(ik * bk, bk), :]
        v = v_ref[pl.ds(ik * bk, bk), :]
        s = lax.dot_general(
            q, k, (((1,), (1,)), ((), ())), preferred_element_type=dtype
        )
        x = s * it[:, None]
        keep = x > -jnp.inf
        if cfg.causal:
            k_idx = ik * bk + lax.broadcasted_iota(jnp.int32, (1, bk), 1)
            keep = keep & (k_idx <= q_idx)
        x = jnp.where(keep, x, -jnp.inf)
        m_new = jnp.maximum(m_prev, jnp.max(x, axis=1))
        m_safe = jnp.where(m_new > -jnp.inf, m_new, zero)
        w = jnp.exp(x - m_safe[:, None])
        alpha = jnp.exp(m_prev - m_safe)
        l_blk = jnp.sum(w, axis=1)
        l_new = alpha * l_prev + l_blk
        pv = lax.dot_general(
            w.astype(v.dtype),
            v,
            (((1,), (0,)), ((), ())),
            preferred_element_type=dtype,
        )
        acc = alpha[:, None] * acc + pv
        if cfg.stats:
            z = jnp.where(w > 0, x - m_safe[:, None], zero)
            lb = jnp.where(l_blk > 0, l_blk, one)
            mu_b = jnp.sum(w * z, axis=1) / lb
            dz = z - mu_b[:, None]
            var_b = jnp.sum(w * dz * dz, axis=1) / lb
            mu, var = attention_chunked.merge_moments(
                mu, var, mu_b, var_b, l_prev, l_blk, l_new, m_prev, m_safe, alpha
            )
        return m_new, l_new, acc, mu, var

    rows = (bq,)
    init = (
        jnp.full(rows, -jnp.inf, dtype),
        jnp.zeros(rows, dtype),
        jnp.zeros((bq, v_ref.shape[-1]), dtype),
        jnp.zeros(rows, dtype),
        jnp.zeros(rows, dtype),
    )
    hi = n_k
    if cfg.causal:  # skip key blocks entirely above the diagonal
        hi = jnp.minimum(n_k, ((iq + 1) * bq - 1) // bk + 1)
    m, l, acc, mu, var = lax.fori_loop(0, hi, body, init)
    valid = l > 0
    ls = jnp.where(valid, l, one)
    log_l = jnp.log(ls)
    o_ref[...] = jnp.where(valid[:, None], acc / ls[:, None], zero).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(valid, m + log_l, zero)
    ent_ref[...] = jnp.where(valid, log_l - mu, zero)
    var_ref[...] = jnp.where(valid, var, zero)
    ok_ref[...] = valid.astype(dtype)


def _forward(cfg: Config, rows, q, k, v, it, bias, mask) -> Core:
    """pallas_call over (B*K, G, T/block_q); same `Core` as the chunked forward."""
    del rows
    if bias is not None or mask is not None:
        raise ValueError("the Pallas kernel takes no bias or mask")
    BK, G, Tp, H = q.shape
    Sp, Hv = k.shape[1], v.shape[-1]
    bq, bk = cfg.block_q, cfg.block_k
    dtype = it.dtype
    interpret = jax.default_backend() != "gpu"
    kernel = functools.partial(_kernel, cfg=cfg, n_k=Sp // bk)
    sq = pl.squeezed
    row_spec = pl.BlockSpec((sq, sq, bq), lambda b, g, i: (b, g, i))
    params = {}
    if not interpret:
        from jax.experimental.pallas import triton as plgpu

        params = dict(compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=2))
    out = pl.pallas_call(
        kernel,
        grid=(BK, G, Tp // bq),
        in_specs=[
            pl.BlockSpec((sq, sq, bq, H), lambda b, g, i: (b, g, i, 0)),
            pl.BlockSpec((sq, Sp, H), lambda b, g, i: (b, 0, 0)),
            pl.BlockSpec((sq, Sp, Hv), lambda b, g, i: (b, 0, 0)),
            row_spec,
        ],
        out_specs=[
            pl.BlockSpec((sq, sq, bq, Hv), lambda b, g, i: (b, g, i, 0)),
            row_spec,
            row_spec,
            row_spec,
            row_spec,
        ],
        out_shape=[
            jax.ShapeDtypeStruct((BK, G, Tp, Hv), v.dtype),
            *[jax.ShapeDtypeStruct((BK, G, Tp), dtype)] * 4,
        ],
        interpret=interpret,
        name="thermo_flash_forward",
        **params,
    )(q, k, v, it)
    return Core(*out)


@functools.cache
def forward_impl(cfg: Config, rows: tuple[int, int, int]):
    """The kernel as a `forward_impl` for `attention_chunked.make_core` (cached)."""
    return functools.partial(_forward, cfg, rows)


def make_core(cfg: Config, rows: tuple[int, int, int]):
    """Differentiable core: Pallas forward, chunked (recomputing) backward."""
    return attention_chunked.make_core(cfg, rows, forward_impl(cfg, rows))

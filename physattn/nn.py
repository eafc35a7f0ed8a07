"""Flax NNX attention that measures, and can regulate, its own thermodynamics.

Letters: B batch, T query length, S key length, D features, N query heads,
K key/value heads, H head size.

`ThermoAttention` is `nnx.MultiHeadAttention` (same constructor and call) computed with
`physattn.attention.dot_product_attention`; each call sows the per-head `Thermo`
(fields of shape (B, T, N)) as `nnx.Intermediate` "thermo", so a training loop can log
entropy, free energy and heat capacity per head:

    y, inter = nnx.capture(model, nnx.Intermediate)(x)   # inter["thermo"][0]: Thermo

Outside `nnx.capture` nothing is sown (flax >= 0.12 deprecates sowing into module
attributes).

Entropy thermostat (`thermostat="controlled"`): attention-entropy collapse (Zhai et al.,
ICML 2023, "Stabilizing Transformer Training by Preventing Attention Entropy Collapse")
is a head freezing into a zero-temperature ground state as its logit scale grows. The
thermostat heats each head until its mean entropy over valid rows reaches a floor,
by Newton steps in u = log T that use the heat capacity the kernel already measures,
    dS/du = T dS/dT = C,    u <- u + (S_floor - S) / C   (safeguarded by bisection),
never cooling below the base temperature (a heater, not a normaliser). The
temperature is a controlled variable (stop-gradient), like a batch statistic; it is
sown as "temperature" (N,). `learn_temperature=True` adds a learned per-head factor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, ArrayLike, Bool, Float

from physattn.attention import dot_product_attention

Rope = Callable[[Array, Array], Array]  # rope(x_BxTxNxH, positions_BxTx1) -> same

THERMOSTATS = (None, "controlled")


def _default_kernel_init():
    return nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _head_mean(x_BxTxN: Array, valid_BxTxN: Array) -> Array:
    """Mean over valid rows per head, (N,)."""
    w = valid_BxTxN.astype(x_BxTxN.dtype)
    n = jnp.maximum(jnp.sum(w, axis=(0, 1)), jnp.ones((), w.dtype))
    return jnp.sum(x_BxTxN * w, axis=(0, 1)) / n


def thermostat_temperature(
    q_BxTxNxH: Array,
    k_BxSxKxH: Array,
    v_BxSxKxH: Array,
    base_N: Array,
    *,
    entropy_floor: float,
    steps: int = 6,
    max_step: float = 3.0,
    mask: Array | None = None,
    is_causal: bool = False,
    implementation: str | None = None,
) -> Float[Array, "N"]:  # noqa: F821, UP037
    """Per-head temperature >= base whose mean row entropy reaches `entropy_floor`.

    Safeguarded Newton in u = log T >= 0 with dS/du = C (the heat capacity); returns
    the lowest measured temperature whose entropy is >= the floor (the base when it
    already is). Stop-gradient throughout; `steps` attention passes with statistics.
    """
    q, k, v = (jax.lax.stop_gradient(a) for a in (q_BxTxNxH, k_BxSxKxH, v_BxSxKxH))
    base_N = jax.lax.stop_gradient(base_N)
    dtype = base_N.dtype
    floor = jnp.asarray(entropy_floor, dtype)

    def entropy_and_capacity(u_N):
        _, st = dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            is_causal=is_causal,
            temperature=base_N * jnp.exp(u_N),
            implementation=implementation,
            return_stats=True,
        )
        s_N = _head_mean(st.entropy.astype(dtype), st.valid)
        return s_N, _head_mean(st.heat_capacity.astype(dtype), st.valid)

    inf = jnp.full(base_N.shape, jnp.inf, dtype)

    def step(_, carry):
        # Safeguarded Newton: [lo, hi] brackets the root, hi is always feasible.
        u, lo, hi = carry
        s_N, c_N = entropy_and_capacity(u)
        ok = s_N >= floor
        hi = jnp.where(ok, jnp.minimum(hi, u), hi)
        lo = jnp.where(ok, lo, jnp.maximum(lo, u))
        du = (floor - s_N) / jnp.maximum(c_N, jnp.asarray(1e-6, dtype))
        new = u + jnp.clip(du, -max_step, max_step)
        bracketed = jnp.isfinite(hi)
        inside = (new > lo) & (new < hi)
        new = jnp.where(bracketed & ~inside, 0.5 * (lo + hi), new)
        new = jnp.where(bracketed, new, jnp.maximum(new, lo))
        return new, lo, hi

    zero = jnp.zeros(base_N.shape, dtype)
    u, _, hi = jax.lax.fori_loop(0, steps, step, (zero, zero, inf))
    # The lowest temperature measured to meet the floor, else the next Newton iterate
    # (the floor is out of reach within `steps`: the hottest point tried).
    u_N = jnp.where(jnp.isfinite(hi), hi, u)
    return base_N * jnp.exp(u_N)


class ThermoAttention(nnx.Module):
    """Multi-head attention (as `nnx.MultiHeadAttention`) that sows its `Thermo`.

    Constructor arguments as `nnx.MultiHeadAttention`, plus:
      rope: optional `rope(x_BxTxNxH, positions_BxTx1)` applied to q and k, e.g.
        `physattn.rope.apply_rope` or `functools.partial(apply_rope, fraction=0.5)`.
      temperature: base temperature [score units], default sqrt(H).
      thermostat: None or "controlled" (module docstring); entropy_floor [nats].
      learn_temperature: learn a per-head log-temperature offset (init 0).
      implementation, block_size: passed to `dot_product_attention`.
    Unsupported here: dropout on attention weights (the fused kernel never forms
    them) and autoregressive decoding caches.
    """

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        num_kv_heads: int | None = None,
        in_kv_features: int | None = None,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        precision: Any = None,
        kernel_init: Callable = _default_kernel_init(),
        out_kernel_init: Callable | None = None,
        bias_init: Callable = nnx.initializers.zeros_init(),
        out_bias_init: Callable | None = None,
        use_bias: bool = True,
        decode: bool | None = None,
        normalize_qk: bool = False,
        rope: Rope | None = None,
        temperature: float | None = None,
        thermostat: str | None = None,
        entropy_floor: float = 1.0,
        thermostat_steps: int = 6,
        learn_temperature: bool = False,
        implementation: str | None = None,
        block_size: int | tuple[int, int] | None = None,
        rngs: nnx.Rngs,
    ):
        qkv_features = in_features if qkv_features is None else qkv_features
        out_features = in_features if out_features is None else out_features
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        in_kv_features = in_features if in_kv_features is None else in_kv_features
        if qkv_features % num_heads != 0:
            raise ValueError(
                f"qkv_features={qkv_features} must be divisible by num_heads="
                f"{num_heads}"
            )
        if num_kv_heads < 1 or num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must be a multiple of num_kv_heads="
                f"{num_kv_heads}"
            )
        if dropout_rate != 0.0:
            raise ValueError(
                f"dropout_rate must be 0.0 for ThermoAttention (the fused kernel never "
                f"forms the attention weights), got {dropout_rate}"
            )
        if decode:
            raise ValueError("decode=True (autoregressive cache) is not supported")
        if thermostat not in THERMOSTATS:
            raise ValueError(
                f"thermostat must be one of {THERMOSTATS}, got {thermostat!r}"
            )
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not entropy_floor >= 0:
            raise ValueError(f"entropy_floor must be >= 0 nats, got {entropy_floor!r}")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = qkv_features // num_heads
        self.in_features, self.out_features = in_features, out_features
        self.dtype, self.param_dtype = dtype, param_dtype
        self.rope = rope
        self.base_temperature = (
            float(self.head_dim) ** 0.5 if temperature is None else float(temperature)
        )
        self.thermostat = thermostat
        self.entropy_floor = float(entropy_floor)
        self.thermostat_steps = int(thermostat_steps)
        self.implementation = implementation
        self.block_size = block_size

        def linear(fin, fout, **kw):
            return nnx.LinearGeneral(
                fin,
                fout,
                dtype=dtype,
                param_dtype=param_dtype,
                precision=precision,
                use_bias=use_bias,
                rngs=rngs,
                **kw,
            )

        H = self.head_dim
        self.query = linear(
            in_features, (num_heads, H), kernel_init=kernel_init, bias_init=bias_init
        )
        self.key = linear(
            in_kv_features,
            (num_kv_heads, H),
            kernel_init=kernel_init,
            bias_init=bias_init,
        )
        self.value = linear(
            in_kv_features,
            (num_kv_heads, H),
            kernel_init=kernel_init,
            bias_init=bias_init,
        )
        self.out = linear(
            (num_heads, H),
            out_features,
            axis=(-2, -1),
            kernel_init=out_kernel_init or kernel_init,
            bias_init=out_bias_init or bias_init,
        )
        if normalize_qk:
            ln = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            self.query_ln = nnx.LayerNorm(H, **ln)
            self.key_ln = nnx.LayerNorm(H, **ln)
        else:
            self.query_ln = nnx.data(None)
            self.key_ln = nnx.data(None)
        self.log_temperature = (
            nnx.Param(jnp.zeros((num_heads,), param_dtype))
            if learn_temperature
            else nnx.data(None)
        )

    def head_temperature(self) -> Float[Array, "N"]:  # noqa: F821, UP037
        """Base per-head temperature, including the learned factor (before control)."""
        t = jnp.full((self.num_heads,), self.base_temperature, jnp.float32)
        if self.log_temperature is not None:
            t = t * jnp.exp(self.log_temperature[...].astype(jnp.float32))
        return t

    def __call__(
        self,
        inputs_q: Float[ArrayLike, "B T D"],
        inputs_k: Float[ArrayLike, "B S D"] | None = None,
        inputs_v: Float[ArrayLike, "B S D"] | None = None,
        *,
        mask: Bool[ArrayLike, "#B #N #T #S"] | None = None,
        is_causal: bool = False,
        positions_q: ArrayLike | None = None,
        positions_k: ArrayLike | None = None,
        deterministic: bool | None = None,
        rngs: Any = None,
        sow_weights: bool = False,
    ) -> Float[Array, "B T D"]:
        """Attend from inputs_q to inputs_k/v; sows "thermo" (and "temperature").

        positions_q/positions_k: (B, T)/(B, S) integer positions for `rope` (passed
        as (B, T, 1) to broadcast over heads), default arange. `deterministic`,
        `rngs` and `sow_weights` exist for signature compatibility (no dropout;
        the weights are never formed).
        """
        del deterministic, rngs, sow_weights
        x_q = jnp.asarray(inputs_q)
        x_k = x_q if inputs_k is None else jnp.asarray(inputs_k)
        x_v = x_k if inputs_v is None else jnp.asarray(inputs_v)
        q_BxTxNxH = self.query(x_q)
        k_BxSxKxH = self.key(x_k)
        v_BxSxKxH = self.value(x_v)
        if self.query_ln is not None:
            q_BxTxNxH = self.query_ln(q_BxTxNxH)
            k_BxSxKxH = self.key_ln(k_BxSxKxH)
        if self.rope is not None:
            q_BxTxNxH = self.rope(q_BxTxNxH, _positions(positions_q, q_BxTxNxH))
            k_BxSxKxH = self.rope(k_BxSxKxH, _positions(positions_k, k_BxSxKxH))
        t_N = self.head_temperature()
        if self.thermostat == "controlled":
            heated_N = thermostat_temperature(
                q_BxTxNxH,
                k_BxSxKxH,
                v_BxSxKxH,
                t_N,
                entropy_floor=self.entropy_floor,
                steps=self.thermostat_steps,
                mask=mask,
                is_causal=is_causal,
                implementation=self.implementation,
            )
            # The heating factor is controlled; a learned base keeps its gradient.
            t_N = t_N * jax.lax.stop_gradient(heated_N / t_N)
        o_BxTxNxH, stats = dot_product_attention(
            q_BxTxNxH,
            k_BxSxKxH,
            v_BxSxKxH,
            mask=mask,
            is_causal=is_causal,
            temperature=t_N,
            implementation=self.implementation,
            return_stats=True,
            block_size=self.block_size,
        )
        if hasattr(self, "__captures__"):  # inside nnx.capture
            self.sow(nnx.Intermediate, "thermo", stats)
            self.sow(nnx.Intermediate, "temperature", t_N)
        return self.out(o_BxTxNxH)


def _positions(positions: ArrayLike | None, x_BxLxNxH: Array) -> Array:
    """Positions (B, L, 1) for rope, broadcast over the heads axis."""
    B, L = x_BxLxNxH.shape[:2]
    if positions is None:
        p = jnp.arange(L, dtype=jnp.int32)[None]
    else:
        p = jnp.asarray(positions)
        p = p.reshape((1,) * (2 - p.ndim) + p.shape)
    return jnp.broadcast_to(p, (B, L))[..., None]

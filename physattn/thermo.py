"""Softmax attention as a canonical ensemble (the "information gas").

A query row with raw scores s_i = q.k_i over n keys is a system of n states with
energies E_i = -s_i at temperature T (default sqrt(d_k)); attention weights are the
Gibbs distribution p_i = exp(-E_i/T) / Z. With k_B = 1 and energies in score units:

    log Z = logsumexp(s / T)           F = -T log Z           U = <E>_p
    S = -sum p log p = (U - F) / T     C = Var_p(E) / T^2 = dU/dT = -T d2F/dT2
                                         = Var_p(log p)  (the varentropy)

Every observable has shape `scores.shape[:-1]` (one value per query row). Reductions
run in float32 or wider whatever the input dtype. Keys with mask False (or a score of
-inf) are excluded exactly. A row with no key left has Z = 0: it is returned with all
five observables equal to 0 and `valid` False, never NaN, and contributes zero gradient.

Reference: Callen, *Thermodynamics* (1985) ch. 16 for the canonical ensemble;
Vaswani et al. (2017) for scaled dot-product attention, T = sqrt(d_k).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from physattn import _checks

Scalar = float | ArrayLike


class Thermo(NamedTuple):
    """Canonical-ensemble observables of attention rows (each of shape rows).

    Attributes:
      log_partition: log Z = logsumexp(s/T) [dimensionless].
      free_energy: F = -T log Z [score units].
      energy: U = <E> = -<s>_p [score units].
      entropy: S = -sum_i p_i log p_i [nats], 0 <= S <= log n.
      heat_capacity: C = Var_p(E)/T^2 [dimensionless, k_B = 1].
      valid: bool, False where a row has no unmasked key (then all fields are 0).
        None only when a Thermo is built by hand with five fields.
    """

    log_partition: Array
    free_energy: Array
    energy: Array
    entropy: Array
    heat_capacity: Array
    valid: Array | None = None


class FirstLaw(NamedTuple):
    """dU = heat + work + residual between two equilibrium states (shape rows).

    Attributes:
      d_energy: U1 - U0.
      heat: T_mid (S1 - S0): the spectrum's occupation changes (learning, new tokens).
      work: sum_i p_mid,i (E1_i - E0_i): the energy levels move at fixed occupation
        (inference: the query moves the levels).
      residual: d_energy - heat - work, O(step^3) for the midpoint rule used here.
    """

    d_energy: Array
    heat: Array
    work: Array
    residual: Array


class _Rows(NamedTuple):
    x: Array  # s/T with excluded keys set to 0, (..., n)
    mask: Array  # keys that count, (..., n)
    valid: Array  # rows with at least one key, (...)
    temperature: Array  # (...), compute dtype


def _rows(scores: Any, temperature: Any, mask: Any, name: str = "scores") -> _Rows:
    """Validate, cast to the compute dtype, divide by T with double-where masking."""
    s = _checks.float_array(scores, name)
    _checks.at_least_1d(s, name)
    dtype = _checks.compute_dtype(s.dtype)
    s = s.astype(dtype)
    m = _checks.mask(mask, s.shape)
    keep = s > -jnp.inf
    m = keep if m is None else m & keep
    t = _checks.temperature(temperature, dtype)
    t = _checks.broadcast_rows(t, s.shape[:-1], "temperature")
    s_safe = jnp.where(m, s, jnp.zeros((), dtype))
    x = s_safe / t[..., None]
    return _Rows(x=x, mask=m, valid=jnp.any(m, axis=-1), temperature=t)


class _Moments(NamedTuple):
    x_max: Array  # (...)
    log_zp: Array  # log sum exp(x - x_max), (...)
    p: Array  # Gibbs weights, 0 on excluded keys and empty rows, (..., n)
    z: Array  # x - x_max, 0 on excluded keys, (..., n)
    mean_z: Array  # <x - x_max>_p, (...)


def _moments(r: _Rows) -> _Moments:
    dtype = r.x.dtype
    lowest = jnp.asarray(jnp.finfo(dtype).min, dtype)
    x_max = jnp.max(jnp.where(r.mask, r.x, lowest), axis=-1)
    x_max = jax.lax.stop_gradient(jnp.where(r.valid, x_max, jnp.zeros((), dtype)))
    z = jnp.where(r.mask, r.x - x_max[..., None], jnp.zeros((), dtype))
    w = jnp.where(r.mask, jnp.exp(z), jnp.zeros((), dtype))
    zp = jnp.sum(w, axis=-1)
    zp = jnp.where(r.valid, zp, jnp.ones((), dtype))
    p = w / zp[..., None]
    return _Moments(
        x_max=x_max,
        log_zp=jnp.log(zp),
        p=p,
        z=z,
        mean_z=jnp.sum(p * z, axis=-1),
    )


def _observables(r: _Rows) -> Thermo:
    mo = _moments(r)
    t = r.temperature
    zero = jnp.zeros((), r.x.dtype)
    log_z = jnp.where(r.valid, mo.x_max + mo.log_zp, zero)
    energy = jnp.where(r.valid, -t * (mo.x_max + mo.mean_z), zero)
    # S = log Z' - <z>: both terms are >= 0, so no cancellation and S >= 0 exactly.
    entropy = mo.log_zp - mo.mean_z
    dz = mo.z - mo.mean_z[..., None]
    heat_capacity = jnp.sum(mo.p * dz * dz, axis=-1)
    return Thermo(
        log_partition=log_z,
        free_energy=jnp.where(r.valid, -t * log_z, zero),
        energy=energy,
        entropy=jnp.where(r.valid, entropy, zero),
        heat_capacity=jnp.where(r.valid, heat_capacity, zero),
        valid=r.valid,
    )


def observables(
    scores: Float[ArrayLike, "*rows n"],
    temperature: Scalar = 1.0,
    mask: Bool[ArrayLike, "*rows n"] | None = None,
) -> Thermo:
    """Thermo of each row of raw attention scores s = q.k (energies E = -s).

    Args:
      scores: (..., n) floating scores; keys along the last axis.
      temperature: T > 0, a scalar or one value per row (broadcast to `...`).
      mask: optional boolean (..., n), broadcastable; False excludes a key exactly.
    Returns:
      `Thermo` with fields of shape `scores.shape[:-1]`, dtype at least float32.
    """
    return _observables(_rows(scores, temperature, mask))


def gibbs(
    scores: Float[ArrayLike, "*rows n"],
    temperature: Scalar = 1.0,
    mask: Bool[ArrayLike, "*rows n"] | None = None,
) -> Float[Array, "*rows n"]:
    """Attention probabilities p = softmax(s/T) over unmasked keys.

    Excluded keys get p = 0; a row with no key gets p = 0 everywhere (see `valid`).
    """
    return _moments(_rows(scores, temperature, mask)).p


def _scores_qk(q: Any, k: Any) -> tuple[Array, int]:
    q = _checks.float_array(q, "q")
    k = _checks.float_array(k, "k")
    if q.ndim < 2 or k.ndim < 2:
        raise ValueError(
            f"q and k need shapes (..., T, d) and (..., S, d), got q {q.shape} and "
            f"k {k.shape}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share the feature size d: q has {q.shape[-1]} "
            f"(shape {q.shape}), k has {k.shape[-1]} (shape {k.shape})"
        )
    if q.shape[:-2] != k.shape[:-2]:
        raise ValueError(
            f"q and k must share leading (batch) axes: q {q.shape}, k {k.shape}"
        )
    dtype = _checks.compute_dtype(q.dtype, k.dtype)
    s = jnp.einsum(
        "...td,...sd->...ts", q, k.astype(q.dtype), preferred_element_type=dtype
    )
    return s.astype(dtype), q.shape[-1]


def _default_temperature(temperature: Any, d: int) -> Any:
    return float(d) ** 0.5 if temperature is None else temperature


def from_qk(
    q: Float[ArrayLike, "*batch T d"],
    k: Float[ArrayLike, "*batch S d"],
    temperature: Scalar | None = None,
    mask: Bool[ArrayLike, "*batch T S"] | None = None,
) -> Thermo:
    """Thermo of attention from queries and keys; rows are queries, shape (..., T).

    Scores s = q.k are accumulated in float32 or wider; default T = sqrt(d).
    """
    s, d = _scores_qk(q, k)
    return observables(s, _default_temperature(temperature, d), mask)


def free_energy_functional(
    r: Float[ArrayLike, "*rows n"],
    energies: Float[ArrayLike, "*rows n"],
    temperature: Scalar,
) -> Float[Array, "*rows"]:
    """Gibbs free-energy functional F[r] = sum_i r_i E_i + T sum_i r_i log r_i.

    For r on the simplex it is minimised uniquely by the Gibbs distribution p (softmax
    of -E/T) and F[r] - F[p] = T KL(r || p) (Gibbs variational principle; Callen 1985
    eq. 16.19). 0 log 0 = 0; r is not renormalised.
    """
    r = _checks.float_array(r, "r")
    e = _checks.float_array(energies, "energies")
    if r.shape != e.shape:
        raise ValueError(
            f"r and energies must have the same shape, got {r.shape} and {e.shape}"
        )
    dtype = _checks.compute_dtype(r.dtype, e.dtype)
    r, e = r.astype(dtype), e.astype(dtype)
    t = _checks.broadcast_rows(
        _checks.temperature(temperature, dtype), r.shape[:-1], "temperature"
    )
    entropy_term = jnp.sum(jax.scipy.special.xlogy(r, r), axis=-1)
    return jnp.sum(r * e, axis=-1) + t * entropy_term


def _key_moments(q: Any, k: Any, temperature: Any, mask: Any):
    s, d = _scores_qk(q, k)
    p = gibbs(s, _default_temperature(temperature, d), mask)
    t = _checks.temperature(_default_temperature(temperature, d), s.dtype)
    kk = jnp.asarray(k).astype(s.dtype)
    mean_k = jnp.einsum("...ts,...sd->...td", p, kk)
    return p, kk, mean_k, t


def polarization(
    q: Float[ArrayLike, "*batch T d"],
    k: Float[ArrayLike, "*batch S d"],
    temperature: Scalar | None = None,
    mask: Bool[ArrayLike, "*batch T S"] | None = None,
) -> Float[Array, "*batch T d"]:
    """Dipole moment of the gas in the field q: P = <k>_p = -dF/dq."""
    return _key_moments(q, k, temperature, mask)[2]


def _key_covariance(q, k, temperature, mask):
    p, kk, mean_k, t = _key_moments(q, k, temperature, mask)
    dk = kk[..., None, :, :] - mean_k[..., :, None, :]  # (..., T, S, d)
    cov = jnp.einsum("...ts,...tsa,...tsb->...tab", p, dk, dk)
    return cov, t


def _per_row(t: Array, cov: Array) -> Array:
    """Broadcast a scalar or (..., T) temperature against (..., T, d, d)."""
    t = jnp.broadcast_to(
        t.reshape((1,) * (cov.ndim - 2 - t.ndim) + t.shape), cov.shape[:-2]
    )
    return t[..., None, None]


def susceptibility(
    q: Float[ArrayLike, "*batch T d"],
    k: Float[ArrayLike, "*batch S d"],
    temperature: Scalar | None = None,
    mask: Bool[ArrayLike, "*batch T S"] | None = None,
) -> Float[Array, "*batch T d d"]:
    """chi = dP/dq = Cov_p(k)/T = -d2F/dq2 (fluctuation-dissipation theorem)."""
    cov, t = _key_covariance(q, k, temperature, mask)
    return cov / _per_row(t, cov)


def fisher_metric(
    q: Float[ArrayLike, "*batch T d"],
    k: Float[ArrayLike, "*batch S d"],
    temperature: Scalar | None = None,
    mask: Bool[ArrayLike, "*batch T S"] | None = None,
) -> Float[Array, "*batch T d d"]:
    """Fisher information of p(.|q) in q: g = Cov_p(k)/T^2 = Hessian_q log Z.

    Reference: Amari, *Information Geometry and Its Applications* (2016) sec. 2.3 (the
    Fisher metric of an exponential family is the Hessian of its log-partition).
    """
    cov, t = _key_covariance(q, k, temperature, mask)
    tt = _per_row(t, cov)
    return cov / (tt * tt)


def quenched_heat_capacity(
    energy: Float[ArrayLike, ...], temperature: Scalar, axis: int = 0
) -> Float[Array, ...]:
    """Sample-to-sample (quenched disorder) fluctuation Var_samples(U) / T^2.

    `energy` holds one internal energy U per sample (e.g. per sequence) along `axis`.
    """
    u = _checks.float_array(energy, "energy")
    if not -u.ndim <= axis < u.ndim:
        raise ValueError(f"axis {axis} is out of range for energy of shape {u.shape}")
    dtype = _checks.compute_dtype(u.dtype)
    t = _checks.temperature(temperature, dtype)
    return jnp.var(u.astype(dtype), axis=axis) / (t * t)


def first_law(
    scores0: Float[ArrayLike, "*rows n"],
    scores1: Float[ArrayLike, "*rows n"],
    temperature0: Scalar,
    temperature1: Scalar,
    mask: Bool[ArrayLike, "*rows n"] | None = None,
) -> FirstLaw:
    """Split dU between two states into heat T dS and work <dE> (midpoint rule).

    dU = sum_i p_i dE_i (work: levels move at fixed occupations, as when a query
    changes during inference) + sum_i E_i dp_i (heat = T dS: occupations change, as
    when learning reshapes the spectrum or tokens arrive). For finite steps the
    midpoint rule (p, T averaged over the two states) leaves a residual O(step^3).
    """
    s0 = _checks.float_array(scores0, "scores0")
    s1 = _checks.float_array(scores1, "scores1")
    if s0.shape != s1.shape:
        raise ValueError(
            f"scores0 and scores1 must have the same shape, got {s0.shape} and "
            f"{s1.shape}"
        )
    r0, r1 = _rows(s0, temperature0, mask, "scores0"), _rows(s1, temperature1, mask)
    th0, th1 = _observables(r0), _observables(r1)
    p_mid = 0.5 * (_moments(r0).p + _moments(r1).p)
    t_mid = 0.5 * (r0.temperature + r1.temperature)
    dtype = r0.x.dtype
    d_e = jnp.where(r0.mask, s0.astype(dtype) - s1.astype(dtype), 0.0)  # E = -s
    work = jnp.sum(p_mid * d_e, axis=-1)
    heat = t_mid * (th1.entropy - th0.entropy)
    d_energy = th1.energy - th0.energy
    return FirstLaw(d_energy, heat, work, d_energy - heat - work)


def chemical_potential(
    scores: Float[ArrayLike, "*rows n"],
    new_score: Float[ArrayLike, "*rows"],
    temperature: Scalar,
    mask: Bool[ArrayLike, "*rows n"] | None = None,
) -> Float[Array, "*rows"]:
    """mu = F(N+1) - F(N) for one key with score `new_score` added to each row.

    mu = -T log(1 + exp(s_new/T) / Z) = -T softplus(s_new/T - log Z) <= 0: adding a
    state never raises the free energy. For an empty row F(0) = 0 and mu = -s_new.
    """
    r = _rows(scores, temperature, mask)
    s_new = _checks.float_array(new_score, "new_score").astype(r.x.dtype)
    s_new = _checks.broadcast_rows(s_new, r.valid.shape, "new_score")
    log_z = _observables(r).log_partition
    x_new = s_new / r.temperature
    mu = -r.temperature * jax.nn.softplus(x_new - log_z)
    return jnp.where(r.valid, mu, -s_new)

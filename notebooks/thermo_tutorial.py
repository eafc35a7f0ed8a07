# %% [markdown]
# # Attention as a canonical ensemble: a tour of `physattn.thermo`
#
# A percent-format script (open it in Jupyter with jupytext, or run it with python).
# The test suite runs it with `SMOKE_TEST=1` at small sizes.
#
# A query q looks at n keys with scores s_i = q.k_i. Read the scores as negative
# energies E_i = -s_i of n states at temperature T = sqrt(d_k): the attention weights
# are the Gibbs distribution p_i = exp(s_i / T) / Z.

# %%
import os

import jax
import jax.numpy as jnp

from physattn import phase, thermo

SMOKE = os.environ.get("SMOKE_TEST") == "1"
d, n_keys = (16, 32) if SMOKE else (64, 512)
key_q, key_k = jax.random.split(jax.random.key(0))
q = jax.random.normal(key_q, (4, d))  # 4 queries
k = jax.random.normal(key_k, (n_keys, d))

# %% [markdown]
# ## Observables of every query row
# `from_qk` returns a `Thermo` NamedTuple; every field has one value per query.

# %%
th = thermo.from_qk(q, k)  # T = sqrt(d)
for name, value in th._asdict().items():
    print(f"{name:>14s}: {value}")
assert jnp.allclose(th.free_energy, th.energy - d**0.5 * th.entropy, atol=1e-4)

# %% [markdown]
# ## Masks: causal attention is a gas with fewer states
# Masked keys are excluded exactly; a row with no key left is flagged (`valid`).

# %%
mask = jnp.arange(n_keys)[None, :] < jnp.array([0, 1, 8, n_keys])[:, None]
th_m = thermo.from_qk(q, k, mask=mask)
print("entropy", th_m.entropy, "<= log n =", jnp.log(mask.sum(-1).clip(1)))
print("valid", th_m.valid)

# %% [markdown]
# ## The query as an external field
# Differentiating F = -T log Z in q gives the mean key (polarization), its response
# (susceptibility, = Cov(k)/T by fluctuation-dissipation) and the Fisher metric.

# %%
P = thermo.polarization(q, k)
g = thermo.fisher_metric(q, k)
print("polarization", P.shape, "Fisher metric", g.shape)
print("largest Fisher eigenvalue per query", jnp.linalg.eigvalsh(g)[:, -1])

# %% [markdown]
# ## Heat capacity: where the gas changes state
# C(T) = Var_p(E)/T^2 peaks where T matches the gaps of the score spectrum. For one key
# above another it is exactly the Schottky anomaly.

# %%
temps = jnp.geomspace(0.05, 100.0, 40 if SMOKE else 200)
curve = phase.heat_capacity_curve(q @ k.T, temps)
print("peak temperatures", curve.peak_temperature, "vs sqrt(d) =", d**0.5)
two = phase.heat_capacity_curve(jnp.array([1.0, 0.0]), temps)
print("two-level peak T*/gap =", float(two.peak_temperature), "(exact 0.4168)")

# %%
if not SMOKE:
    import matplotlib.pyplot as plt

    plt.semilogx(temps, curve.heat_capacity.T)
    plt.axvline(d**0.5, ls=":", color="gray")
    plt.xlabel("temperature T")
    plt.ylabel("heat capacity C")
    plt.show()

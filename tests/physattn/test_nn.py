"""physattn.nn.ThermoAttention: a drop-in nnx.MultiHeadAttention that sows Thermo."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from physattn.attention import dot_product_attention
from physattn.nn import ThermoAttention
from physattn.rope import apply_rope


def _x(seed, B=2, T=7, D=16):
    return jax.random.normal(jax.random.key(seed), (B, T, D), jnp.float32)


def _run(model, *args, **kwargs):
    """Call the model under nnx.capture; (output, Thermo, temperature (N,))."""
    y, inter = nnx.capture(model, nnx.Intermediate)(*args, **kwargs)
    return y, inter["thermo"][0], inter["temperature"][0]


@pytest.mark.parametrize("num_kv_heads", [None, 2])
def test_matches_nnx_multi_head_attention(num_kv_heads):
    kw = dict(
        num_heads=4,
        in_features=16,
        qkv_features=32,
        out_features=8,
        num_kv_heads=num_kv_heads,
    )
    ours = ThermoAttention(**kw, rngs=nnx.Rngs(0))
    theirs = nnx.MultiHeadAttention(**kw, decode=False, rngs=nnx.Rngs(1))
    nnx.update(ours, nnx.state(theirs, nnx.Param))
    x, y = _x(0), _x(1, T=9)
    mask = jnp.asarray(np.random.default_rng(0).random((2, 1, 7, 9)) > 0.2)
    mask = mask.at[..., 0].set(True)  # no empty rows (jax averages values there)
    want = theirs(x, y, mask=mask)
    got = ours(x, y, mask=mask)
    assert got.shape == (2, 7, 8) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_sows_per_head_thermo():
    model = ThermoAttention(4, 16, qkv_features=32, rngs=nnx.Rngs(0))
    x = _x(2)
    _, stats, temp = _run(model, x, is_causal=True)
    assert stats.entropy.shape == (2, 7, 4) and temp.shape == (4,)
    q, k, v = model.query(x), model.key(x), model.value(x)
    _, want = dot_product_attention(q, k, v, is_causal=True, return_stats=True)
    for a, b in zip(stats, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # causal row 0 attends to one key: S = 0, C = 0
    np.testing.assert_allclose(np.asarray(stats.entropy[:, 0]), 0.0, atol=1e-6)
    model(x)  # outside nnx.capture: nothing sown, no warning
    assert not nnx.state(model, nnx.Intermediate)


def test_rope_hook_gives_translation_invariance():
    rope = functools.partial(apply_rope, base=100.0)
    model = ThermoAttention(2, 16, qkv_features=16, rope=rope, rngs=nnx.Rngs(0))
    plain = ThermoAttention(2, 16, qkv_features=16, rngs=nnx.Rngs(0))
    x = _x(3)
    pos = jnp.arange(7, dtype=jnp.int32)[None]
    a = model(x, positions_q=pos, positions_k=pos)
    b = model(x, positions_q=pos + 11, positions_k=pos + 11)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.asarray(a), np.asarray(plain(x)), atol=1e-3)


def _collapse_curve(thermostat, scales, floor=1.5):
    """Mean entropy per head as the query weights are scaled up adversarially."""
    model = ThermoAttention(
        4,
        16,
        qkv_features=32,
        thermostat=thermostat,
        entropy_floor=floor,
        rngs=nnx.Rngs(0),
    )
    x = _x(4, T=32)
    kernel = model.query.kernel[...]

    @nnx.jit
    def entropy(model):
        _, stats, temp = _run(model, x)
        return jnp.mean(stats.entropy, axis=(0, 1)), temp

    out = []
    for c in scales:
        model.query.kernel[...] = kernel * c
        out.append(entropy(model))
    return out


def test_thermostat_prevents_entropy_collapse():
    floor, scales = 1.5, (1.0, 30.0, 1000.0)
    plain = _collapse_curve(None, scales, floor)
    held = _collapse_curve("controlled", scales, floor)
    assert float(plain[0][0].min()) > floor  # healthy at init
    assert float(plain[-1][0].max()) < 0.1  # collapsed: near-one-hot attention
    for (_, t_plain), (s_held, t_held) in zip(plain, held, strict=True):
        assert np.all(np.asarray(s_held) >= floor - 1e-4)
        np.testing.assert_array_less(np.asarray(t_plain) - 1e-6, np.asarray(t_held))
    # At init no heating is needed; the heated temperature tracks the logit scale.
    np.testing.assert_allclose(np.asarray(held[0][1]), np.sqrt(8.0), rtol=1e-6)
    ratio = np.asarray(held[-1][1]) / np.asarray(held[1][1])
    np.testing.assert_allclose(ratio, 1000.0 / 30.0, rtol=0.05)


def test_training_step_with_thermostat_and_learned_temperature():
    model = ThermoAttention(
        2,
        8,
        qkv_features=8,
        thermostat="controlled",
        learn_temperature=True,
        entropy_floor=0.5,
        rngs=nnx.Rngs(0),
    )
    x = _x(5, T=6, D=8)
    traces = []

    @nnx.jit
    def grads(model, x):
        traces.append(1)

        def loss(model):
            y, stats, _ = _run(model, x, is_causal=True)
            return jnp.mean(y * y) - 0.1 * jnp.mean(stats.entropy)

        return nnx.grad(loss)(model)

    g = grads(model, x)
    grads(model, x + 1)
    assert len(traces) == 1
    leaves = jax.tree.leaves(g)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in leaves)
    assert float(jnp.abs(g["log_temperature"][...]).sum()) > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(qkv_features=30), "divisible by num_heads"),
        (dict(num_kv_heads=3), "multiple of num_kv_heads"),
        (dict(dropout_rate=0.1), "dropout_rate"),
        (dict(thermostat="berendsen"), "thermostat must be one of"),
        (dict(entropy_floor=-1.0), "entropy_floor"),
        (dict(temperature=0.0), "temperature"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        functools.partial(ThermoAttention, 4, 16, rngs=nnx.Rngs(0))(**kwargs)

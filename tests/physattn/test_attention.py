"""physattn.attention: every implementation against jax.nn and a float64 oracle."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physattn import thermo
from physattn.attention import dot_product_attention

IMPLS = ("reference", "chunked")
STAT_FIELDS = ("log_partition", "free_energy", "energy", "entropy", "heat_capacity")


def _inputs(seed, B=2, T=11, S=13, N=4, K=2, H=8, dtype=jnp.float32, scale=1.0):
    rng = np.random.default_rng(seed)
    q = scale * rng.normal(size=(B, T, N, H))
    k = rng.normal(size=(B, S, K, H))
    v = rng.normal(size=(B, S, K, H))
    return tuple(jnp.asarray(a, dtype) for a in (q, k, v))


def _mask(seed, shape, p=0.3):
    return jnp.asarray(np.random.default_rng(seed).random(shape) > p)


def _close(a, b, rtol, what=""):
    """Normwise relative closeness: max|a - b| <= rtol * max(|b|, 1e-30)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert np.all(np.isfinite(a)), what
    err = np.max(np.abs(a - b)) if a.size else 0.0
    scale = max(np.max(np.abs(b)) if b.size else 0.0, 1e-30)
    assert err <= rtol * scale, f"{what}: max err {err:.3g}, scale {scale:.3g}"


def _stats_close(s, ref, rtol, atol=0.0):
    np.testing.assert_array_equal(np.asarray(s.valid), np.asarray(ref.valid))
    for f in STAT_FIELDS:
        a = np.asarray(getattr(s, f), np.float64)
        b = np.asarray(getattr(ref, f), np.float64)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f)


def _f64(*arrays):
    return tuple(None if a is None else jnp.asarray(a, jnp.float64) for a in arrays)


# ---- reference against jax.nn.dot_product_attention -------------------------------

CASES = {
    "plain": dict(),
    "causal": dict(is_causal=True),
    "mask": dict(mask="full"),
    "bias": dict(bias=True),
    "all": dict(is_causal=True, mask="full", bias=True),
    "mha": dict(K=4),
    "mqa": dict(K=1, mask="keys"),
}


def _case(name, seed=0, dtype=jnp.float32, T=11, S=13):
    c = dict(CASES[name])
    K = c.pop("K", 2)
    q, k, v = _inputs(seed, T=T, S=S, K=K, dtype=dtype)
    B, T, N, _ = q.shape
    S = k.shape[1]
    mask = {"full": (B, N, T, S), "keys": (B, 1, 1, S), None: None}[c.pop("mask", None)]
    mask = None if mask is None else _mask(seed + 1, mask)
    bias = None
    if c.pop("bias", False):
        rng = np.random.default_rng(seed + 2)
        bias = jnp.asarray(rng.normal(size=(1, N, T, S)), dtype)
    return q, k, v, bias, mask, c


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_jax_nn_and_float64_thermo(name, impl):
    """Output against jax.nn; Thermo(s = q.k + T bias, T) in float64 is the oracle."""
    q, k, v, bias, mask, kw = _case(name)
    t = 1.7
    want = jax.nn.dot_product_attention(q, k, v, bias, mask, scale=1 / t, **kw)
    got, stats = dot_product_attention(
        q,
        k,
        v,
        bias,
        mask,
        temperature=t,
        implementation=impl,
        return_stats=True,
        block_size=(4, 8),
        **kw,
    )
    assert got.dtype == q.dtype and got.shape == q.shape
    valid = np.asarray(stats.valid)  # jax averages the values on empty rows
    _close(np.asarray(got)[valid], np.asarray(want)[valid], 1e-5, name)
    assert np.all(np.asarray(got)[~valid] == 0)

    q64, k64, b64 = _f64(q, k, bias)
    B, T, N, H = q.shape
    K = k.shape[2]
    s = jnp.einsum("btkgh,bskh->bkgts", q64.reshape(B, T, K, N // K, H), k64)
    s = s.reshape(B, N, T, -1)
    if b64 is not None:
        s = s + t * b64
    m = jnp.ones(s.shape, bool) if mask is None else jnp.broadcast_to(mask, s.shape)
    if kw.get("is_causal"):
        m = m & jnp.tril(jnp.ones(s.shape[-2:], bool))[None, None]
    ref = jax.tree.map(lambda a: jnp.swapaxes(a, 1, 2), thermo.observables(s, t, m))
    for f in STAT_FIELDS:
        assert getattr(stats, f).dtype == jnp.float32
    _stats_close(stats, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name,block", [(n, (3, 5)) for n in CASES] + [("all", (16, 16)), ("mask", 1)]
)
def test_chunked_matches_reference_float64(name, block):
    q, k, v, bias, mask, kw = _case(name, dtype=jnp.float64)
    ref_o, ref_s = dot_product_attention(
        q, k, v, bias, mask, implementation="reference", return_stats=True, **kw
    )
    got_o, got_s = dot_product_attention(
        q,
        k,
        v,
        bias,
        mask,
        implementation="chunked",
        return_stats=True,
        block_size=block,
        **kw,
    )
    _close(got_o, ref_o, 1e-12, "out")
    _stats_close(got_s, ref_s, rtol=1e-11, atol=1e-12)


# ---- numerically hard rows -------------------------------------------------------


def _spread_inputs(spread=1000.0, S=40, seed=0):
    """Logits x = s exactly representable in float32, spanning `spread`.

    q = e_0 and T = 1, so x_j = k_j[0]. Row 0: half the keys within O(1) of the top
    and the rest down to -spread (S ~ log(S/2), C ~ 1: E[x^2] - E[x]^2 would lose all
    digits). Row 1: a single key on top, the next 1 below, the rest spread.
    Row 2: uniform over [0, spread]. Row 3: fully masked.
    """
    rng = np.random.default_rng(seed)
    H = 4
    rows = np.zeros((4, S))
    rows[0, : S // 2] = spread + rng.normal(size=S // 2)
    rows[0, S // 2 :] = rng.uniform(0, spread, size=S - S // 2)
    rows[1] = rng.uniform(-spread, 0, size=S)
    rows[1, :2] = [spread / 2, spread / 2 - 1.0]
    rows[2] = rng.uniform(0, spread, size=S)
    rows[3] = rng.normal(size=S)
    T = rows.shape[0]
    q = np.zeros((1, T, T, H), np.float32)  # head n reads feature 0 of key head n
    k = np.zeros((1, S, T, H), np.float32)
    for n in range(T):
        q[0, :, n, 0] = 1.0
        k[0, :, n, 0] = rows[n]
    v = rng.normal(size=(1, S, T, H)).astype(np.float32)
    mask = np.ones((1, T, T, S), bool)
    mask[0, 3, :, :] = False  # head 3 fully masked
    return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(mask)


@pytest.mark.parametrize("impl", IMPLS)
def test_spread_of_1000_and_empty_rows(impl):
    q, k, v, mask = _spread_inputs()
    out, st = dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        temperature=1.0,
        implementation=impl,
        return_stats=True,
        block_size=(2, 8),
    )
    ref_o, ref = dot_product_attention(
        *_f64(q, k, v),
        mask=mask,
        temperature=1.0,
        implementation="reference",
        return_stats=True,
    )
    assert all(np.all(np.isfinite(np.asarray(a))) for a in st[:5])
    np.testing.assert_array_equal(np.asarray(st.valid)[0, :, 3], False)
    assert np.all(np.asarray(st.valid)[0, :, :3])
    _stats_close(st, ref, rtol=1e-4, atol=1e-6)
    # The varied rows have O(1) entropy and heat capacity: checked relatively too.
    assert float(ref.heat_capacity[0, 0, 0]) > 0.1 and float(ref.entropy[0, 0, 0]) > 1
    valid = np.asarray(st.valid)
    _close(np.asarray(out)[valid], np.asarray(ref_o)[valid], 1e-5)
    assert np.all(np.asarray(out)[~valid] == 0)


def _loss(impl, mask=None, is_causal=False, block=(4, 8)):
    """A loss using the output and all five statistics, with fixed weights."""

    def f(q, k, v, bias, t):
        o, s = dot_product_attention(
            q,
            k,
            v,
            bias,
            mask,
            is_causal=is_causal,
            temperature=t,
            implementation=impl,
            return_stats=True,
            block_size=block,
        )
        w = jnp.cos(jnp.arange(o.size, dtype=o.dtype)).reshape(o.shape)
        terms = (
            jnp.sum(o * w).astype(s.entropy.dtype),
            1.3 * jnp.sum(s.entropy),
            0.7 * jnp.sum(s.heat_capacity),
            0.1 * jnp.sum(s.free_energy),
            0.2 * jnp.sum(s.energy),
            0.5 * jnp.sum(s.log_partition),
        )
        return functools.reduce(jnp.add, terms)

    return f


@pytest.mark.parametrize(
    "name,dtype,rtol",
    [
        ("all", jnp.float64, 1e-10),
        ("mqa", jnp.float64, 1e-10),
        ("all", jnp.float32, 1e-4),
    ],
)
def test_gradients_of_output_and_stats(name, dtype, rtol):
    q, k, v, bias, mask, kw = _case(name, dtype=dtype)
    if bias is None:
        bias = jnp.zeros((1, 1, 1, k.shape[1]), dtype)  # exercise a broadcast bias
    t = jnp.asarray(1.9, dtype)
    causal = kw.get("is_causal", False)
    args = (q, k, v, bias, t)
    g_ref = jax.grad(_loss("reference", mask, causal), argnums=range(5))(*args)
    g = jax.grad(_loss("chunked", mask, causal), argnums=range(5))(*args)
    for name_, a, b in zip("q k v bias T".split(), g, g_ref, strict=True):
        assert a.dtype == b.dtype
        _close(a, b, rtol, name_)


def test_gradients_match_finite_differences():
    q, k, v, bias, mask, kw = _case("all", dtype=jnp.float64, T=5, S=6)
    t = jnp.asarray(1.3, jnp.float64)
    f = _loss("chunked", mask, True, block=(2, 4))
    args = (q, k, v, bias, t)
    grads = jax.grad(f, argnums=range(5))(*args)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(3):  # central differences along random directions
        d = [jnp.asarray(rng.normal(size=np.shape(a)), jnp.float64) for a in args]
        plus = f(*(a + eps * da for a, da in zip(args, d, strict=True)))
        minus = f(*(a - eps * da for a, da in zip(args, d, strict=True)))
        fd = (plus - minus) / (2 * eps)
        ad = sum(jnp.vdot(g, da) for g, da in zip(grads, d, strict=True))
        np.testing.assert_allclose(float(ad), float(fd), rtol=1e-6)


def test_empty_rows_have_zero_finite_gradients():
    q, k, v, mask = _spread_inputs(spread=10.0, S=12)
    f = _loss("chunked", mask, block=(2, 4))
    g = jax.grad(f, argnums=(0, 1, 2))(q, k, v, None, 1.0)
    for a in g:
        assert np.all(np.isfinite(np.asarray(a)))
    assert np.all(np.asarray(g[0])[:, :, 3] == 0)  # masked head: no gradient
    assert np.all(np.asarray(g[1])[:, :, 3] == 0)


@pytest.mark.parametrize("B,T,S,block", [(1, 300, 300, 128), (1, 64, 200, 64)])
def test_causal_block_skipping_and_padding(B, T, S, block):
    q, k, v = _inputs(3, B=B, T=T, S=S, N=2, K=1, H=4, dtype=jnp.float64)
    for causal in (False, True):
        ref = dot_product_attention(
            q, k, v, is_causal=causal, implementation="reference", return_stats=True
        )
        got = dot_product_attention(
            q,
            k,
            v,
            is_causal=causal,
            implementation="chunked",
            return_stats=True,
            block_size=block,
        )
        _close(got[0], ref[0], 1e-12)
        _stats_close(got[1], ref[1], rtol=1e-11, atol=1e-12)


# ---- transforms, dtypes, temperatures ---------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_jit_equals_eager_and_no_retrace(impl):
    q, k, v, bias, mask, kw = _case("all")

    traces = []  # chex.assert_max_traces keys on the code object, shared by params

    @jax.jit
    def f(q, k, v, bias):
        traces.append(1)
        return dot_product_attention(
            q,
            k,
            v,
            bias,
            mask,
            implementation=impl,
            return_stats=True,
            block_size=4,
            **kw,
        )

    eager = dot_product_attention(
        q,
        k,
        v,
        bias,
        mask,
        implementation=impl,
        return_stats=True,
        block_size=4,
        **kw,
    )
    jitted = f(q, k, v, bias)
    f(q + 1, k, v, bias)  # same shapes: no new trace, no new compile
    assert len(traces) == 1
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_vmap_equals_loop():
    q, k, v = _inputs(4, B=3)
    f = functools.partial(
        dot_product_attention,
        implementation="chunked",
        return_stats=True,
        block_size=4,
    )
    batched = jax.vmap(f)(q, k, v)  # vmap over B of unbatched (T, N, H) inputs
    for b in range(q.shape[0]):
        single = f(q[b], k[b], v[b])
        for a, c in zip(jax.tree.leaves(single), jax.tree.leaves(batched), strict=True):
            np.testing.assert_allclose(
                np.asarray(a), np.asarray(c)[b], rtol=1e-6, atol=1e-6
            )


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16_accumulates_in_float32(impl):
    q, k, v, bias, mask, kw = _case("all", dtype=jnp.bfloat16)
    out, st = dot_product_attention(
        q, k, v, bias, mask, implementation=impl, return_stats=True, block_size=4, **kw
    )
    assert out.dtype == jnp.bfloat16
    assert st.entropy.dtype == jnp.float32
    q32, k32, v32 = (a.astype(jnp.float32) for a in (q, k, v))
    ref_o, ref_s = dot_product_attention(
        q32,
        k32,
        v32,
        bias.astype(jnp.float32),
        mask,
        implementation="reference",
        return_stats=True,
        **kw,
    )
    valid = np.asarray(ref_s.valid)
    _close(np.asarray(out, np.float32)[valid], np.asarray(ref_o)[valid], 2e-2)
    _stats_close(st, ref_s, rtol=2e-2, atol=2e-2)
    g = jax.grad(lambda q: _loss(impl, mask, True, 4)(q, k, v, bias, 1.5))(q)
    assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))


@pytest.mark.parametrize("impl", IMPLS)
def test_per_row_temperature(impl):
    """A (N,) temperature is one temperature per head: matches per-head calls."""
    q, k, v = _inputs(5, N=4, K=2)
    temps = jnp.asarray([0.5, 1.0, 2.0, 4.0], jnp.float32)
    out, st = dot_product_attention(
        q,
        k,
        v,
        temperature=temps,
        implementation=impl,
        return_stats=True,
        block_size=4,
    )
    for n in range(4):
        o1, s1 = dot_product_attention(
            q,
            k,
            v,
            temperature=float(temps[n]),
            implementation=impl,
            return_stats=True,
            block_size=4,
        )
        _close(out[:, :, n], o1[:, :, n], 1e-6)
        _close(st.free_energy[:, :, n], s1.free_energy[:, :, n], 1e-6)


def test_default_implementation_and_temperature():
    q, k, v = _inputs(6)
    H = q.shape[-1]
    a, sa = dot_product_attention(q, k, v, return_stats=True)
    b, sb = dot_product_attention(
        q,
        k,
        v,
        temperature=float(np.sqrt(H)),
        implementation="chunked",
        return_stats=True,
    )
    _close(a, b, 1e-6)
    _close(sa.entropy, sb.entropy, 1e-5)


def test_thermodynamic_identities():
    """S = (U - F)/T and C = dU/dT (reverse mode through the custom VJP)."""
    q, k, v = _inputs(7, dtype=jnp.float64)

    def stats(t):
        return dot_product_attention(
            q,
            k,
            v,
            temperature=t,
            implementation="chunked",
            return_stats=True,
            block_size=4,
        )[1]

    t = 1.6
    st = stats(t)
    _close(st.entropy, (st.energy - st.free_energy) / t, 1e-12)
    du = jax.grad(lambda t: jnp.sum(stats(t).energy))(t)
    _close(du, jnp.sum(st.heat_capacity), 1e-10)


# ---- validation --------------------------------------------------------------------

BAD = [
    (dict(query=np.zeros((4, 8), np.float32)), "query must have rank"),
    (dict(query=np.zeros((1, 4, 3, 8), np.float32)), "multiple of the number"),
    (dict(query=np.zeros((1, 4, 4, 6), np.float32)), "head size"),
    (dict(query=np.zeros((2, 4, 4, 8), np.float32)), "batch size"),
    (dict(value=np.zeros((1, 5, 2, 8), np.float32)), "key and value"),
    (dict(value=np.zeros((1, 6, 2, 4), np.float32)), "key and value"),
    (dict(query=np.zeros((1, 4, 4, 8), np.int32)), "floating-point"),
    (dict(query=np.zeros((1, 4, 4, 8), np.float64)), "share a dtype"),
    (dict(mask=np.ones((1, 4, 4, 6), np.float32)), "mask must be boolean"),
    (dict(mask=np.ones((1, 4, 5, 6), bool)), "mask of shape"),
    (dict(bias=np.ones((3, 1, 1, 6), np.float32)), "bias of shape"),
    (dict(temperature=0.0), "temperature must be finite and > 0"),
    (dict(temperature=-1.0), "temperature must be finite and > 0"),
    (dict(implementation="xla"), "implementation must be one of"),
    (dict(block_size=0), "block_size"),
    (dict(block_size=(8, 8, 8)), "block_size"),
]


@pytest.mark.parametrize("kwargs,match", BAD)
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(
        query=np.zeros((1, 4, 4, 8), np.float32),
        key=np.zeros((1, 6, 2, 8), np.float32),
        value=np.zeros((1, 6, 2, 8), np.float32),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dot_product_attention(**args)


# ---- Pallas kernel (interpret mode off GPU; tiny shapes) --------------------------


def test_pallas_matches_reference_with_gradients():
    q, k, v = _inputs(8, B=1, T=16, S=32, N=4, K=2, H=16)
    for causal in (False, True):
        ref_o, ref_s = dot_product_attention(
            q, k, v, is_causal=causal, implementation="reference", return_stats=True
        )
        got_o, got_s = dot_product_attention(
            q,
            k,
            v,
            is_causal=causal,
            implementation="pallas",
            return_stats=True,
            block_size=8,
        )
        _close(got_o, ref_o, 1e-5)
        _stats_close(got_s, ref_s, rtol=1e-5, atol=1e-6)
    t = jnp.asarray(1.1, jnp.float32)
    args = (q, k, v, None, t)
    g = jax.grad(_loss("pallas", None, True, block=8), argnums=(0, 1, 2, 4))(*args)
    g_ref = jax.grad(_loss("reference", None, True), argnums=(0, 1, 2, 4))(*args)
    for a, b in zip(g, g_ref, strict=True):
        _close(a, b, 1e-4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bias=np.zeros((1, 1, 16, 32), np.float32)), "no bias or mask"),
        (dict(mask=np.ones((1, 1, 16, 32), bool)), "no bias or mask"),
        (dict(block_size=5), "multiples of the block sizes"),
    ],
)
def test_pallas_unsupported_calls_raise(kwargs, match):
    q, k, v = _inputs(8, B=1, T=16, S=32, N=4, K=2, H=16)
    with pytest.raises(ValueError, match=match):
        dot_product_attention(q, k, v, implementation="pallas", **kwargs)


def test_default_implementation_rule():
    from physattn import attention

    small = _inputs(9, B=1, T=8, S=8, N=2, K=1, H=16)
    q, k, _ = small
    assert attention._choose(None, q, k, None, None, (512, 512)) in (
        "reference",
        "pallas",
    )
    big_q = jax.ShapeDtypeStruct((1, 4096, 8, 64), jnp.float32)
    big_k = jax.ShapeDtypeStruct((1, 4096, 8, 64), jnp.float32)
    expected = "pallas" if jax.default_backend() == "gpu" else "chunked"
    assert attention._choose(None, big_q, big_k, None, None, (512, 512)) == expected

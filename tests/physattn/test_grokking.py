"""physattn.experiments.grokking: data, model, probes, determinism, validation.

Oracles: the labels by modular arithmetic in Python; the forward pass against a naive
all-positions causal transformer built on `jax.nn.dot_product_attention`; the probes
against `physattn.thermo` applied to scores and logits recomputed from the same
parameters.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physattn import thermo
from physattn.experiments import grokking
from physattn.experiments import grokking_model as gm

TINY = dict(
    p=7,
    train_fraction=0.6,
    d_model=16,
    n_heads=2,
    d_mlp=32,
    steps=200,
    log_every=50,
    stop_factor=0.0,
    smooth=3,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("grok")
    cfg = grokking.Config(**TINY, out_dir=str(out))
    return cfg, grokking.run(cfg), out


def test_tiny_run_writes_results(tiny_run):
    cfg, res, out = tiny_run
    assert res["steps"] == [0, 50, 100, 150, 200]
    L = len(res["steps"])
    c = res["curves"]
    assert np.shape(c["test.attn0.heat_capacity"]) == (L, cfg.n_heads)
    assert np.shape(c["train.out.entropy"]) == (L,)
    for name, v in c.items():
        assert np.all(np.isfinite(v)), name
    # Training works: the train loss falls.
    assert c["train.loss"][-1] < 0.5 * c["train.loss"][0]
    # Attention of the '=' query over 3 keys: 0 <= S <= log 3, C >= 0.
    s = np.asarray(c["test.attn0.entropy"])
    assert np.all(s >= 0) and np.all(s <= np.log(3) + 1e-6)
    assert np.all(np.asarray(c["test.attn0.heat_capacity"]) >= 0)
    saved = json.loads((out / f"{cfg.name}.json").read_text())
    assert saved["curves"]["test.loss"] == c["test.loss"]
    assert saved["config"]["p"] == 7
    assert (out / f"{cfg.name}.png").stat().st_size > 0
    assert set(res["analysis"]["onset"]) == {"0.5", "0.9", "0.95"}
    assert "test.attn0.heat_capacity.max" in res["analysis"]["peaks"]


def test_same_seed_same_curve_and_no_recompilation(tiny_run):
    cfg, res, _ = tiny_run
    again = grokking.run(grokking.Config(**TINY))
    assert again["curves"] == res["curves"]
    n_compiled = (gm._train_chunk._cache_size(), gm._probe._cache_size())
    other = grokking.run(grokking.Config(**TINY, seed=1))
    assert other["curves"]["train.loss"] != res["curves"]["train.loss"]
    # A new seed reuses the compiled step and probe (static_config is the cache key).
    assert (gm._train_chunk._cache_size(), gm._probe._cache_size()) == n_compiled


@pytest.mark.parametrize("op", gm.OPS)
def test_data_labels_and_split(op):
    cfg = grokking.Config(**{**TINY, "op": op})
    d = grokking.make_data(cfg)
    p = cfg.p
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    assert x.dtype == np.int32 and y.dtype == np.int32
    assert np.all(x[:, 2] == p)
    n = p * (p - 1) if op == "/" else p * p
    assert len(x) == n and len({tuple(r) for r in x[:, :2]}) == n
    assert len(d.y_train) == round(cfg.train_fraction * n)
    for (a, b, _), c in zip(x, y, strict=True):
        if op == "+":
            assert c == (a + b) % p
        elif op == "-":
            assert c == (a - b) % p
        elif op == "*":
            assert c == (a * b) % p
        else:
            assert b != 0 and (c * b) % p == a


def _naive_logits(params, x_BxT, cfg):
    """All positions, causal, read at '=' (the textbook model, no shortcut)."""
    x_BxTxD = params["embed_VxD"][x_BxT] + params["pos_TxD"][None]
    for lp in params["layers"]:
        q = jnp.einsum("btd,dnh->btnh", x_BxTxD, lp["w_q_DxNxH"])
        k = jnp.einsum("btd,dnh->btnh", x_BxTxD, lp["w_k_DxNxH"])
        v = jnp.einsum("btd,dnh->btnh", x_BxTxD, lp["w_v_DxNxH"])
        z = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        h = x_BxTxD + jnp.einsum("btnh,nhd->btd", z, lp["w_o_NxHxD"])
        m = jax.nn.relu(h @ lp["w_in_DxM"] + lp["b_in_M"][None, None])
        x_BxTxD = h + m @ lp["w_out_MxD"] + lp["b_out_D"][None, None]
    return x_BxTxD[:, -1] @ params["unembed_DxP"]


@pytest.mark.parametrize("n_layers", [1, 2])
def test_forward_matches_naive_transformer(n_layers):
    cfg = grokking.Config(**{**TINY, "n_layers": n_layers})
    params = gm.init_params(cfg, jax.random.key(3))
    d = grokking.make_data(cfg)
    got = gm.forward(params, d.x_test, cfg)
    want = _naive_logits(params, d.x_test, cfg)
    assert got.dtype == jnp.float32 and got.shape == (len(d.y_test), cfg.p)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_probes_equal_thermo_of_captured_scores():
    cfg = grokking.Config(**TINY)
    params = gm.init_params(cfg, jax.random.key(5))
    # Make the attention non-trivial (init scores are small).
    params["layers"][0]["w_q_DxNxH"] = 3.0 * params["layers"][0]["w_q_DxNxH"]
    d = grokking.make_data(cfg)
    pr = gm.probe(params, d, cfg)
    lp = params["layers"][0]
    for split, x, y in (("train", d.x_train, d.y_train), ("test", d.x_test, d.y_test)):
        x_BxTxD = (params["embed_VxD"][x] + params["pos_TxD"][None]).astype(jnp.float64)
        q_BxNxH = jnp.einsum(
            "bd,dnh->bnh", x_BxTxD[:, -1], lp["w_q_DxNxH"].astype(jnp.float64)
        )
        k_BxSxNxH = jnp.einsum(
            "bsd,dnh->bsnh", x_BxTxD, lp["w_k_DxNxH"].astype(jnp.float64)
        )
        s_BxNxS = jnp.einsum("bnh,bsnh->bns", q_BxNxH, k_BxSxNxH)
        t = np.sqrt(cfg.head_dim)
        th = thermo.observables(s_BxNxS, t)
        want = {
            "heat_capacity": jnp.mean(th.heat_capacity, 0),
            "quenched_heat_capacity": thermo.quenched_heat_capacity(th.energy, t),
            "entropy": jnp.mean(th.entropy, 0),
            "free_energy": jnp.mean(th.free_energy, 0),
            "energy": jnp.mean(th.energy, 0),
            "logit_scale": jnp.mean(jnp.std(s_BxNxS, axis=-1), 0) / t,
        }
        for name, w in want.items():
            np.testing.assert_allclose(
                pr[f"{split}.attn0.{name}"], w, rtol=2e-4, atol=2e-5, err_msg=name
            )
        assert float(jnp.min(want["heat_capacity"])) > 1e-2  # non-trivial check
        logits = gm.forward(params, x, cfg).astype(jnp.float64)
        th_out = thermo.observables(logits, 1.0)
        np.testing.assert_allclose(
            pr[f"{split}.out.heat_capacity"],
            jnp.mean(th_out.heat_capacity),
            rtol=2e-4,
        )
        np.testing.assert_allclose(
            pr[f"{split}.out.quenched_heat_capacity"],
            thermo.quenched_heat_capacity(th_out.energy, 1.0),
            rtol=2e-4,
        )
        np.testing.assert_allclose(
            pr[f"{split}.out.entropy"], jnp.mean(th_out.entropy), rtol=2e-4
        )
        logp = jax.nn.log_softmax(logits)
        nll = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))
        np.testing.assert_allclose(pr[f"{split}.loss"], nll, rtol=1e-4)
    norm = np.sqrt(
        sum(float(jnp.sum(a.astype(jnp.float64) ** 2)) for a in jax.tree.leaves(params))
    )
    np.testing.assert_allclose(pr["weight_norm"], norm, rtol=1e-5)


@pytest.mark.parametrize(
    "field, value",
    [
        ("p", 8),
        ("p", 2),
        ("op", "^"),
        ("train_fraction", 1.5),
        ("train_fraction", 0.001),
        ("n_layers", 0),
        ("d_model", 17),
        ("steps", 10),
        ("lr", -1.0),
        ("weight_decay", -0.1),
        ("smooth", 4),
        ("stop_factor", 0.5),
        ("implementation", "pallas"),
        ("seed", -1),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"Config.{field}"):
        grokking.Config(**{**TINY, field: value})


def test_run_refuses_non_config():
    with pytest.raises(ValueError, match="config must be a grokking.Config"):
        grokking.run({"p": 7})


def test_config_for_uses_per_p_defaults():
    cfg = grokking.config_for(23, seed=2)
    frac, steps = grokking.DEFAULTS[23]
    assert (cfg.p, cfg.train_fraction, cfg.steps, cfg.seed) == (23, frac, steps, 2)

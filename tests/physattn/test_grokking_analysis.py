"""grokking_analysis and grokking_cli on synthetic curves with known answers."""

import argparse
import json

import numpy as np
import pytest

from physattn.experiments import grokking, grokking_cli
from physattn.experiments import grokking_analysis as ga


def _sigmoid_acc(steps, onset, width=300.0):
    return 1.0 / (1.0 + np.exp(-(steps - onset) / width))


def test_onsets_of_a_known_sigmoid():
    steps = np.arange(0, 20_001, 100)
    acc = _sigmoid_acc(steps, 8_000.0)  # acc = a at onset + width log(a / (1 - a))
    on = ga.onsets(steps, acc)
    for a in (0.5, 0.9, 0.95):
        want = 8_000 + 300 * np.log(a / (1 - a))
        assert on[f"{a:g}"] == int(np.ceil(want / 100) * 100)
    assert ga.onsets(steps, 0.2 * acc) == {"0.5": None, "0.9": None, "0.95": None}


def test_smooth_is_a_centred_moving_average():
    y = np.array([0.0, 3.0, 0.0, 3.0, 0.0])
    np.testing.assert_allclose(ga.smooth(y, 3), [1.5, 1.0, 2.0, 1.0, 1.5])
    np.testing.assert_allclose(ga.smooth(y, 1), y)
    with pytest.raises(ValueError, match="window"):
        ga.smooth(y, 2)


def test_peak_of_a_noisy_bump_is_found_despite_a_spike():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 20_001, 100)
    y = np.exp(-(((steps - 6_000) / 1_500) ** 2)) + 0.02 * rng.standard_normal(
        steps.size
    )
    y[150] = 5.0  # a one-point spike at step 15000 survives no 7-point smoothing
    y[0] = 10.0  # the step-0 point is skipped
    step, height = ga.find_peak(steps, y, 11)
    assert abs(step - 6_000) <= 300
    assert 0.9 < height < 1.1


def test_analyze_leads_on_synthetic_run():
    steps = np.arange(0, 20_001, 100)
    curves = {
        "test.acc": _sigmoid_acc(steps, 8_000.0),
        "weight_norm": 30.0 - steps / 1_000.0,  # monotone: peak at the first step
        "test.loss": np.exp(-(((steps - 9_000) / 2_000) ** 2)),  # peaks after
        "test.attn0.heat_capacity": np.stack(
            [np.exp(-(((steps - c) / 1_000) ** 2)) for c in (5_000, 6_000)], axis=1
        ),
    }
    a = ga.analyze(steps, curves, 5)
    on = a["onset"]["0.5"]
    assert on == 8_000 and a["grokked"]
    pk = a["peaks"]
    assert pk["weight_norm"]["step"] == 100
    assert pk["test.loss"]["lead"]["0.5"] == 8_000 - 9_000
    assert pk["test.attn0.heat_capacity.max"]["step"] in (5_000, 6_000)
    assert pk["test.attn0.heat_capacity.mean"]["step"] == 5_500
    assert pk["test.attn0.heat_capacity.mean"]["lead"]["0.5"] == 2_500
    assert "test.acc" not in pk


ga_keys = ("0.5", "0.9", "0.95")


def _fake_result(onset, peak_c, peak_wn, peak_loss, p=23, d=128, seed=0):
    def pk(step):
        lead = None if onset is None else onset - step
        return {"step": step, "height": 1.0, "lead": dict.fromkeys(ga_keys, lead)}

    return {
        "config": {"p": p, "d_model": d, "n_layers": 1, "seed": seed},
        "analysis": {
            "onset": {"0.5": onset, "0.9": onset, "0.95": onset},
            "grokked": onset is not None,
            "peaks": {
                "test.attn0.heat_capacity.mean": pk(peak_c),
                "weight_norm": pk(peak_wn),
                "test.loss": pk(peak_loss),
            },
        },
    }


def test_summarize_counts_precedence_and_compares_with_baselines():
    # C peaks at 0.5 x onset in every run; weight norm at a random-ish fraction.
    runs = [
        _fake_result(1000, 500, 100, 1200),
        _fake_result(4000, 2000, 3900, 3000),
        _fake_result(2000, 1000, 1500, 2500),
        _fake_result(None, 100, 100, 100),  # did not grok: excluded
    ]
    s = ga.summarize(runs)
    assert s["grokked"] == 3 and s["runs"] == 4
    c = s["observables"]["test.attn0.heat_capacity.mean"]
    assert c["precedes"] == 3 and c["median_lead"] == 1000
    np.testing.assert_allclose(c["median_log_ratio"], np.log(2.0))
    np.testing.assert_allclose(c["iqr_log_ratio"], 0.0, atol=1e-12)
    assert c["beats_baselines"]
    loss = s["observables"]["test.loss"]
    assert loss["precedes"] == 1 and not loss["beats_baselines"]
    assert not s["observables"]["weight_norm"]["beats_baselines"]


def test_finite_size_fit_tells_power_law_from_saturation():
    p = np.array([19.0, 23.0, 31.0, 47.0, 59.0])
    power = ga.fit_finite_size(p, 0.1 * p**0.8)
    assert power["verdict"] == "transition"
    np.testing.assert_allclose(power["power"]["b"], 0.8, atol=0.01)
    sat = ga.fit_finite_size(p, 2.0 * p / (p + 20.0))
    assert sat["verdict"] == "crossover" and sat["delta_aic"] > 0
    np.testing.assert_allclose(sat["saturating"]["p0"], 20.0, rtol=0.02)
    with pytest.raises(ValueError, match="3 distinct p"):
        ga.fit_finite_size([19, 23], [1.0, 2.0])


def _write_run(runs_dir, p, seed, onset, peak, d=128):
    steps = list(range(0, 10_001, 100))
    res = _fake_result(onset, peak, 100, onset + 500, p=p, d=d, seed=seed)
    for name in grokking_cli.SIZE_OBSERVABLES:
        res["analysis"]["peaks"][name] = {
            "step": peak,
            "height": 0.01 * p,
            "lead": dict.fromkeys(ga_keys, onset - peak),
        }
    res["config"].update(train_fraction=0.5, op="+")
    res.update(
        name=f"grok_p{p}_add_f0.5_d{d}_L1_s{seed}",
        n_params=1000 * d,
        stopped_at=steps[-1],
        steps=steps,
        curves={"train.loss": [1.0] * len(steps), "test.loss": [2.0] * len(steps)},
        timings={"wall_s": 1.0},
    )
    (runs_dir / f"{res['name']}.json").write_text(json.dumps(res))


def test_summarize_dir_writes_tables(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for p in (19, 23, 31):
        for s in (0, 1):
            _write_run(runs, p, s, 3000, 1500)
    _write_run(runs, 31, 0, 3000, 1500, d=64)
    summary = grokking_cli.summarize_dir(tmp_path)
    md = (tmp_path / "grok_summary.md").read_text()
    assert "test.attn0.heat_capacity.mean | 6/6" in md
    fs = summary["finite_size"]["test.attn0.heat_capacity.mean"]
    assert fs["p"] == [19, 23, 31] and fs["fit"]["verdict"] == "transition"
    assert set(summary["width"]) == {
        "p19_d128_L1",
        "p23_d128_L1",
        "p31_d128_L1",
        "p31_d64_L1",
    }
    assert (tmp_path / "grok_finite_size.png").exists()
    assert json.loads((tmp_path / "grok_summary.json").read_text())["leads"]


def test_sweep_skips_finished_runs(tmp_path, monkeypatch):
    cfgs = grokking_cli.sweep_configs([23], [0, 1], runs_dir=tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    for c in cfgs:
        _write_run(tmp_path / "runs", 23, c.seed, 3000, 1500)
        assert (tmp_path / "runs" / f"{c.name}.json").exists()

    def boom(cfg, **kw):
        raise AssertionError(f"{cfg.name} was rerun")

    monkeypatch.setattr(grokking, "run", boom)
    summary = grokking_cli.sweep(cfgs, tmp_path, verbose=False)
    assert summary["leads"]["grokked"] == 2


def test_register_parses_the_sweep_command():
    parser = argparse.ArgumentParser(prog="physattn")
    sub = parser.add_subparsers(dest="command", required=True)
    grokking_cli.register(sub)
    args = parser.parse_args(
        "grok --p 19 23 31 47 59 --seeds 0 1 2 --out /tmp/x".split()
    )
    assert args.p == [19, 23, 31, 47, 59] and args.seeds == [0, 1, 2]
    assert args.widths == [128] and args.func is grokking_cli._main
    cfgs = grokking_cli.sweep_configs(
        args.p, args.seeds, widths=[32, 64], runs_dir="/tmp/x/runs"
    )
    assert len(cfgs) == 2 * 5 * 3
    assert {(c.d_model, c.d_mlp) for c in cfgs} == {(32, 128), (64, 256)}

"""Grokking with thermodynamic probes: does a heat-capacity peak announce it?

`run(config)` trains the Nanda et al. (ICLR 2023) transformer on (a op b) mod p with
full-batch AdamW (`log_every` steps per jitted `lax.scan`), and every `log_every`
steps probes, on the train and the test set:

- per layer and head, for the '=' query (the one the answer is read from), with
  T = sqrt(H): canonical heat capacity C = mean over examples of Var_p(E)/T^2,
  quenched heat capacity C_q = Var over examples of U / T^2, entropy S, free energy
  F, internal energy U and logit scale mean std_keys(s)/T (`physattn.thermo`);
- the same for the output softmax (logits as scores, T = 1);
- loss, accuracy, and the L2 norm of all weights.

It returns a results dict (config, settings, steps, curves, analysis, timings) and,
with `config.out_dir`, writes `<name>.json` and `<name>.png` there. The analysis
(onsets, smoothed peaks, leads) is in `grokking_analysis`; the sweep and the CLI in
`grokking_cli`. Default settings per modulus (train fraction, step budget) chosen so
every run groks are in `DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from typing import Any

import jax
import numpy as np

from physattn.experiments import grokking_analysis as analysis
from physattn.experiments.grokking_model import (
    Config,
    Data,
    _train_chunk,
    init_state,
    make_data,
    n_params,
    probe,
    static_config,
    train_chunk,
)

__all__ = ["Config", "DEFAULTS", "config_for", "run", "report", "Data", "make_data"]

# Per modulus: (train fraction, step budget), checked on 2 shared CPU cores
# (benchmarks/results/grokking_defaults_check.json and the sweep of 2026-12-04,
# benchmarks/results/grokking_sweep.md; test accuracy >= 0.9 / 0.95 at):
#   p = 19 is at the edge of grokking. f = 0.7 -> 1100 / 1300 (seed 0: no delay);
#           f = 0.65 -> seed 0 6400 / 7800, seed 2 3700 / 6500, seed 1 never
#           (0.9 not reached in 30000 steps); f = 0.6, seed 0: stalls at ~0.7;
#           f = 0.55 -> seed 0 3500 / 9100, seeds 1 and 2 never in 30000 steps
#           (seed 1: 0.9 at 48600, then oscillating 0.82-0.9 and never 0.95 in
#           100000 steps): so 0.65, where one seed in three does not grok;
#   p = 23: f = 0.5 -> 6800 / 7700 (benchmarks/results/grokking_p23.json), seed 1
#           8500 / 10700, seed 2 36600 / never (60000 steps; 0.9 not reached in
#           30000): so a 60000-step budget; f = 0.4 had not passed 0.2 by step 10000;
#   p = 31: f = 0.45 -> 4000 / 4900;  p = 59: f = 0.3 -> 11800 / 12600 (1170 s);
#   p = 47: f = 0.35 -> 18600 / 19900 (seed 0), 9800 / 10200 (seed 1).
# Other p: f = 4.2 ln(p) / p clipped to [0.3, 0.8]. The budget is an upper bound: runs
# stop at 1.5 x their 0.95 onset (Config.stop_factor).
DEFAULTS: dict[int, tuple[float, int]] = {
    19: (0.65, 30_000),
    23: (0.5, 60_000),
    31: (0.45, 30_000),
    47: (0.35, 30_000),
    59: (0.3, 30_000),
}


def config_for(p: int, **overrides: Any) -> Config:
    """The default `Config` for modulus p (train fraction and budget from DEFAULTS)."""
    ok = isinstance(p, int) and p > 1
    frac = min(max(round(4.2 * math.log(p) / p, 2), 0.3), 0.8) if ok else 0.5
    frac, steps = DEFAULTS.get(p, (frac, 30_000))
    kw = {"p": p, "train_fraction": frac, "steps": steps}
    kw.update(overrides)
    return Config(**kw)


def _to_host(records: list[dict]) -> dict[str, list]:
    host = jax.device_get(records)
    return {k: np.stack([r[k] for r in host]).tolist() for k in host[0]}


def run(config: Config, *, verbose: bool = False) -> dict[str, Any]:
    """Train with probes; return (and with `out_dir`, write) the results dict.

    Keys: config, n_params, steps (L,), curves {name: (L,) or (L, N) lists},
    analysis (`grokking_analysis.analyze`), stopped_at, timings {compile_s, train_s,
    wall_s, steps_per_s}, backend.
    """
    if not isinstance(config, Config):
        raise ValueError(
            f"config must be a grokking.Config, got {type(config).__name__}"
        )
    cfg = config
    t_start = time.perf_counter()
    data = make_data(cfg)
    state = init_state(cfg)
    records = [probe(state.params, data, cfg)]
    steps = [0]
    # Compile the training chunk once, untimed in steps_per_s.
    t0 = time.perf_counter()
    _train_chunk.lower(state, data, static_config(cfg), cfg.log_every).compile()
    compile_s = time.perf_counter() - t0
    stop_at = None
    t_train = time.perf_counter()
    for i in range(cfg.steps // cfg.log_every):
        state, _ = train_chunk(state, data, cfg, cfg.log_every)
        rec = probe(state.params, data, cfg)
        records.append(rec)
        step = (i + 1) * cfg.log_every
        steps.append(step)
        if cfg.stop_factor or verbose:
            acc = float(rec["test.acc"])  # one host sync per chunk
            if verbose and (i + 1) % 10 == 0:
                print(
                    f"[grok {cfg.name}] step {step} train loss "
                    f"{float(rec['train.loss']):.3g} test acc {acc:.3f}",
                    flush=True,
                )
            if cfg.stop_factor and stop_at is None and acc >= 0.95:
                stop_at = max(
                    math.ceil(cfg.stop_factor * step),
                    step + cfg.min_points_after * cfg.log_every,
                )
            if stop_at is not None and step >= stop_at:
                break
    jax.block_until_ready(state)
    train_s = time.perf_counter() - t_train
    curves = _to_host(records)
    result = {
        "config": dataclasses.asdict(cfg),
        "name": cfg.name,
        "n_params": n_params(cfg),
        "temperature": cfg.temperature,
        "steps": steps,
        "curves": curves,
        "analysis": analysis.analyze(steps, curves, cfg.smooth),
        "stopped_at": steps[-1],
        "timings": {
            "compile_s": compile_s,
            "train_s": train_s,
            "wall_s": time.perf_counter() - t_start,
            "steps_per_s": steps[-1] / train_s,
        },
        "backend": jax.default_backend(),
    }
    if cfg.out_dir is not None:
        write(result, cfg.out_dir)
    return result


def write(result: dict, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Write `<name>.png` then `<name>.json` (the json last: its existence marks a
    finished run for the sweep's skip logic)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    analysis.plot_run(result, out / f"{result['name']}.png")
    path = out / f"{result['name']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return path


def report(out_dir: str | pathlib.Path) -> str:
    """Demo section (quick: p = 23, one seed, ~1-2 min on 2 cores): Markdown."""
    from physattn.experiments import grokking_cli

    return grokking_cli.report(out_dir)

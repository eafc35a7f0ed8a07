"""How fast is grokking training with thermodynamic probes, and what do probes cost?

Question: train steps per second for (a + b) mod 59 (train fraction 0.3, the Nanda et
al. 2023 model: d 128, 4 heads, MLP 512) on CPU, for
  plain   a plain Flax NNX + optax loop (nnx.MultiHeadAttention over all positions,
          one jitted step per Python iteration, no probes): the peer;
  scan    `grokking_model.train_chunk`: `log_every` steps per jitted `lax.scan`,
          no probes;
  probed  the `grokking.run` loop: scan chunks + all probes every `log_every` steps
          (train and test sets, with the host sync run() does for early stopping).
The probes must cost under 20 %: one probe call (with its host sync) against one
`log_every`-step training chunk, each the best of many (robust on a shared machine);
the end-to-end ratio scan / probed - 1 is reported too. Each variant is compiled and
warmed up first (compile time reported separately), then timed `--repeats` times in
alternation with `jax.block_until_ready`; the best repeat is kept.

Run: .venv/bin/python benchmarks/grokking_speed.py  (~2 min on 2 cores)
Writes benchmarks/results/grokking_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from physattn.experiments import grokking_model as gm  # noqa: E402


class PlainTransformer(nnx.Module):
    """The same architecture written the ordinary way: all positions, causal mask."""

    def __init__(self, cfg: gm.Config, rngs: nnx.Rngs):
        D, V = cfg.d_model, cfg.p + 1
        self.embed = nnx.Embed(V, D, rngs=rngs)
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (gm.SEQ_LEN, D)) / 11.3)
        L = range(cfg.n_layers)
        self.attn = nnx.List(
            [
                nnx.MultiHeadAttention(
                    cfg.n_heads, D, use_bias=False, decode=False, rngs=rngs
                )
                for _ in L
            ]
        )
        self.w_in = nnx.List([nnx.Linear(D, cfg.d_mlp, rngs=rngs) for _ in L])
        self.w_out = nnx.List([nnx.Linear(cfg.d_mlp, D, rngs=rngs) for _ in L])
        self.unembed = nnx.Linear(D, cfg.p, use_bias=False, rngs=rngs)

    def __call__(self, x_BxT):
        x = self.embed(x_BxT) + self.pos[...][None]
        mask = nnx.make_causal_mask(x_BxT)
        for attn, w_in, w_out in zip(self.attn, self.w_in, self.w_out, strict=True):
            x = x + attn(x, mask=mask)
            x = x + w_out(jax.nn.relu(w_in(x)))
        return self.unembed(x[:, -1])


def plain_loop(cfg: gm.Config, data: gm.Data):
    """(init, run(n) -> None, compile_s) for the plain one-step-per-call loop."""
    model = PlainTransformer(cfg, nnx.Rngs(cfg.seed))
    opt = nnx.Optimizer(
        model,
        optax.adamw(cfg.lr, b1=cfg.beta1, b2=cfg.beta2, weight_decay=cfg.weight_decay),
        wrt=nnx.Param,
    )
    graphdef, state = nnx.split((model, opt))

    @jax.jit
    def step(state):
        model, opt = nnx.merge(graphdef, state)

        def loss_fn(model):
            logits = model(data.x_train)
            return optax.softmax_cross_entropy_with_integer_labels(
                logits, data.y_train
            ).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return nnx.state((model, opt)), loss

    box = {"state": state}
    t0 = time.perf_counter()
    box["state"], loss = step(box["state"])
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0

    def run(n: int):
        loss = None
        for _ in range(n):
            box["state"], loss = step(box["state"])
        jax.block_until_ready(loss)

    return run, compile_s


def scan_loop(cfg: gm.Config, data: gm.Data, probes: bool):
    box = {"state": gm.init_state(cfg)}
    t0 = time.perf_counter()
    box["state"], losses = gm.train_chunk(box["state"], data, cfg, cfg.log_every)
    if probes:
        jax.block_until_ready(gm.probe(box["state"].params, data, cfg))
    jax.block_until_ready(losses)
    compile_s = time.perf_counter() - t0

    def run(n: int):
        for _ in range(n // cfg.log_every):
            box["state"], losses = gm.train_chunk(
                box["state"], data, cfg, cfg.log_every
            )
            if probes:
                rec = gm.probe(box["state"].params, data, cfg)
                float(rec["test.acc"])  # the host sync run() does per chunk
        jax.block_until_ready(box["state"])

    return run, compile_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--p", type=int, default=59)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per repeat")
    parser.add_argument(
        "--plain-steps", type=int, default=100, help="timed steps of the plain loop"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    cfg = gm.Config(p=args.p, train_fraction=0.3, log_every=args.log_every)
    data = gm.make_data(cfg)
    variants = {
        "plain": plain_loop(cfg, data),
        "scan": scan_loop(cfg, data, probes=False),
        "probed": scan_loop(cfg, data, probes=True),
    }
    for run, _ in variants.values():  # warm-up
        run(cfg.log_every)
    n_steps = {"plain": args.plain_steps, "scan": args.steps, "probed": args.steps}
    best = {k: float("inf") for k in variants}
    for _ in range(args.repeats):
        for name, (run, _) in variants.items():
            t0 = time.perf_counter()
            run(n_steps[name])
            best[name] = min(best[name], time.perf_counter() - t0)
    rate = {k: n_steps[k] / t for k, t in best.items()}
    end_to_end = rate["scan"] / rate["probed"] - 1.0
    # Component timing, robust on a loaded machine: best-of-many probe calls (with
    # the host sync) against best-of-many training chunks of log_every steps.
    state = gm.init_state(cfg)
    t_chunk = t_probe = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        state, losses = gm.train_chunk(state, data, cfg, cfg.log_every)
        jax.block_until_ready(losses)
        t_chunk = min(t_chunk, time.perf_counter() - t0)
        for _ in range(5):
            t0 = time.perf_counter()
            float(gm.probe(state.params, data, cfg)["test.acc"])
            t_probe = min(t_probe, time.perf_counter() - t0)
    overhead = t_probe / t_chunk
    result = {
        "question": "train steps/s for grokking p=59 on CPU; cost of the probes",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "config": {
            "p": cfg.p,
            "train_fraction": cfg.train_fraction,
            "n_train": int(data.y_train.shape[0]),
            "n_test": int(data.y_test.shape[0]),
            "d_model": cfg.d_model,
            "log_every": cfg.log_every,
            "timed_steps": args.steps,
            "repeats": args.repeats,
        },
        "steps_per_s": rate,
        "compile_s": {k: c for k, (_, c) in variants.items()},
        "probe_overhead": overhead,
        "probe_s": t_probe,
        "chunk_s": t_chunk,
        "probe_overhead_end_to_end": end_to_end,
        "speedup_vs_plain": rate["probed"] / rate["plain"],
        "probe_overhead_ok": overhead < 0.2,
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grokking_speed.json").write_text(json.dumps(result, indent=1))
    print(
        f"grokking p={cfg.p}, {result['config']['n_train']} train examples, "
        f"{jax.default_backend()}"
    )
    print(f"{'variant':<8} {'steps/s':>9} {'vs plain':>9} {'compile [s]':>12}")
    for k in variants:
        print(
            f"{k:<8} {rate[k]:9.1f} {rate[k] / rate['plain']:9.2f} "
            f"{result['compile_s'][k]:12.1f}"
        )
    print(
        f"probe overhead: one probe {1e3 * t_probe:.1f} ms per {cfg.log_every}-step "
        f"chunk of {1e3 * t_chunk:.0f} ms = {100 * overhead:.1f} % (limit 20 %); "
        f"end to end (scan / probed - 1) {100 * end_to_end:.1f} % (load noise)"
    )
    if not result["probe_overhead_ok"]:
        raise SystemExit("probes cost more than 20 % of training time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

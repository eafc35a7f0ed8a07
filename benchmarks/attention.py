"""Question: what does measuring the thermodynamics cost, in time and memory?

physattn.attention.dot_product_attention (implementation="chunked", with and without
statistics; "reference" with statistics) against jax.nn.dot_product_attention
(implementation="xla") and naive einsum attention, float32, B=1, N=8, H=64, T = S.
Forward and forward+backward (the loss uses the entropy when statistics are on, so
their cotangents flow). Each case runs in its own subprocess: compile time (lower +
compile) apart from the median wall time of the compiled call after one warm-up
execution (`jax.block_until_ready`), peak resident memory (getrusage ru_maxrss, which
includes the ~0.3 GB of the JAX runtime itself; see the "runtime" row), and GFLOP/s
(model FLOPs: 4 B N T S H forward, 3x that forward+backward) against a measured
float32 matmul peak. Peers that materialise the (N, T, S) logits are skipped where
their estimated footprint exceeds --max-gb.

    python benchmarks/attention.py                 # full sweep (tens of minutes)
    python benchmarks/attention.py --sizes 512 2048

Writes benchmarks/results/attention.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

B, N, H = 1, 8, 64
SIZES = (512, 2048, 4096, 8192, 32768)
IMPLS = ("xla", "naive", "reference+stats", "chunked", "chunked+stats")
MODES = ("fwd", "fwd+bwd")
MATERIALISING = ("xla", "naive", "reference+stats")
RESULTS = Path(__file__).parent / "results" / "attention.json"


def _materialised_gb(impl: str, T: int, mode: str) -> float:
    """Peak of a materialising peer, in (N, T, S) float32 logit copies (measured:
    xla/naive ~2.4 forward, ~5.7 forward+backward; reference+stats ~9 and ~13)."""
    copies = {"fwd": 3, "fwd+bwd": 6}[mode]
    if impl == "reference+stats":
        copies = {"fwd": 10, "fwd+bwd": 14}[mode]
    return copies * B * N * T * T * 4 / 2**30


def _flops(T: int, mode: str) -> float:
    fwd = 4.0 * B * N * T * T * H
    return fwd if mode == "fwd" else 3.0 * fwd


def _case_fn(impl: str, mode: str):
    import jax
    import jax.numpy as jnp

    from physattn.attention import dot_product_attention

    def naive(q, k, v):
        s = jnp.einsum("btnh,bsnh->bnts", q, k) / jnp.sqrt(jnp.float32(H))
        p = jax.nn.softmax(s, axis=-1)
        return jnp.einsum("bnts,bsnh->btnh", p, v)

    def attend(q, k, v):
        """(out, entropy or None)."""
        if impl == "xla":
            return jax.nn.dot_product_attention(q, k, v, implementation="xla"), None
        if impl == "naive":
            return naive(q, k, v), None
        name, _, stats = impl.partition("+")
        if stats:
            out, st = dot_product_attention(
                q, k, v, implementation=name, return_stats=True
            )
            return out, st.entropy
        return dot_product_attention(q, k, v, implementation=name), None

    if mode == "fwd":
        return jax.jit(attend)

    def loss(q, k, v):
        out, entropy = attend(q, k, v)
        total = jnp.sum(out)
        return total if entropy is None else total + jnp.sum(entropy)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def run_case(impl: str, mode: str, T: int, budget_s: float, max_reps: int) -> dict:
    """Measure one case in this process (called in a fresh subprocess)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(kk, (B, T, N, H), jnp.float32) for kk in keys)
    jax.block_until_ready((q, k, v))
    fn = _case_fn(impl, mode)
    t0 = time.perf_counter()
    compiled = fn.lower(q, k, v).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(q, k, v))  # warm-up execution
    warm_s = time.perf_counter() - t0
    reps = int(min(max_reps, budget_s // max(warm_s, 1e-9)))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(q, k, v))
        times.append(time.perf_counter() - t0)
    # Too slow to repeat within the budget: the warm-up execution (already compiled)
    # is the measurement, and the row says so (reps = 0).
    wall = float(np.median(times)) if times else warm_s
    return dict(
        impl=impl,
        mode=mode,
        T=T,
        compile_s=compile_s,
        time_s=wall,
        reps=reps,
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        gflops=_flops(T, mode) / wall / 1e9,
    )


def runtime_rss() -> dict:
    """Resident memory of the runtime alone (jax imported, one tiny computation)."""
    import jax.numpy as jnp

    import physattn.attention  # noqa: F401

    jnp.ones(4).block_until_ready()
    return dict(peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Measured float32 GEMM rate [GFLOP/s] on this machine (n x n x n)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        ts.append(time.perf_counter() - t0)
    return 2.0 * n**3 / float(np.median(ts)) / 1e9


def _subprocess(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *args]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return dict(skipped=f"timed out after {timeout:.0f} s")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return dict(skipped=f"failed (rc {done.returncode}): {' '.join(tail)[:200]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict], peak: float) -> str:
    head = (
        "| T | mode | impl | time [s] | compile [s] | peak RSS [GB] | GFLOP/s "
        "| % matmul peak | vs xla |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    xla = {
        (r["T"], r["mode"]): r["time_s"]
        for r in rows
        if r.get("impl") == "xla" and "time_s" in r
    }
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {r['T']} | {r['mode']} | {r['impl']} | skipped: {r['skipped']} "
                "| | | | | |"
            )
            continue
        ref = xla.get((r["T"], r["mode"]))
        ratio = f"{r['time_s'] / ref:.2f}x" if ref else "-"
        reps = "" if r["reps"] else " (1 run)"
        lines.append(
            f"| {r['T']} | {r['mode']} | {r['impl']} | {r['time_s']:.3f}{reps} "
            f"| {r['compile_s']:.2f} | {r['peak_rss_gb']:.2f} | {r['gflops']:.1f} "
            f"| {100 * r['gflops'] / peak:.0f}% | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument(
        "--max-gb",
        type=float,
        default=8.0,
        help="skip materialising peers estimated above this [GB]",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="seconds of timed repetitions per case (after warm-up)",
    )
    p.add_argument("--reps", type=int, default=5, help="max timed repetitions")
    p.add_argument("--timeout", type=float, default=1800.0, help="per case [s]")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--case", help=argparse.SUPPRESS)  # impl,mode,T (subprocess)
    p.add_argument("--runtime", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.case:
        impl, mode, T = a.case.split(",")
        print(json.dumps(run_case(impl, mode, int(T), a.budget, a.reps)))
        return {}
    if a.runtime:
        print(json.dumps(runtime_rss()))
        return {}

    peak = matmul_peak()
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s", flush=True)
    runtime = _subprocess(["--runtime"], 300)
    rows: list[dict] = []
    result = dict(
        question="cost of fused thermodynamic statistics vs jax.nn attention",
        shape=dict(B=B, N=N, H=H, dtype="float32", T_equals_S=True),
        machine=dict(
            cpu_count=os.cpu_count(),
            platform=platform.platform(),
            load_average=os.getloadavg(),
        ),
        matmul_peak_gflops=peak,
        runtime_rss_gb=runtime.get("peak_rss_gb"),
        rows=rows,
        complete=False,
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for T in a.sizes:
        for mode in a.modes:
            for impl in a.impls:
                base = dict(impl=impl, mode=mode, T=T)
                est = _materialised_gb(impl, T, mode)
                if impl in MATERIALISING and est > a.max_gb:
                    row = base | dict(
                        skipped=f"O(T^2) logits, ~{est:.0f} GB > --max-gb {a.max_gb:g}"
                    )
                else:
                    row = base | _subprocess(
                        [
                            f"--case={impl},{mode},{T}",
                            f"--budget={a.budget}",
                            f"--reps={a.reps}",
                        ],
                        a.timeout,
                    )
                rows.append(row)
                print(json.dumps(row), flush=True)
                a.out.write_text(json.dumps(result, indent=1))  # partial results
    result["complete"] = True
    goals = {}
    for T, mode in ((4096, "fwd"), (4096, "fwd+bwd")):
        t = {
            r["impl"]: r.get("time_s") for r in rows if (r["T"], r["mode"]) == (T, mode)
        }
        if t.get("chunked+stats") and t.get("xla"):
            goals[f"chunked+stats / xla, T={T} {mode} (goal <= 1.3)"] = (
                t["chunked+stats"] / t["xla"]
            )
    big = [
        r
        for r in rows
        if r["T"] == 32768
        and r["mode"] == "fwd+bwd"
        and r["impl"].startswith("chunked")
        and "peak_rss_gb" in r
    ]
    for r in big:
        name = f"{r['impl']} T=32768 fwd+bwd peak RSS [GB] (goal < 4)"
        goals[name] = r["peak_rss_gb"]
    result["goals"] = goals
    a.out.write_text(json.dumps(result, indent=1))
    print()
    print(
        f"runtime alone: {runtime.get('peak_rss_gb', float('nan')):.2f} GB RSS; "
        f"matmul peak {peak:.1f} GFLOP/s"
    )
    print(_table(rows, peak))
    for name, value in goals.items():
        print(f"- {name}: {value:.2f}")
    return result


if __name__ == "__main__":
    main()

"""`make demo`: the main job on built-in defaults; writes results/REPORT.md.

Each capability contributes one section; the sections run in order and one that fails
is reported as failed (with its error) without losing the others.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import time
import traceback

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _sections():
    from physattn.experiments import dynamics_report, symmetry_report, thermo_report

    yield "physattn.thermo", thermo_report.run
    yield "physattn.lagrangian", dynamics_report.run
    yield "physattn.symmetry", symmetry_report.run

    from physattn.experiments import grokking

    yield "physattn.experiments.grokking", grokking.report

    from temsim import report as temsim_report

    yield "temsim.hrtem", temsim_report.run

    from temsim.denoise import report as denoise_report

    yield "temsim.denoise", denoise_report.report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import jax

    t_start = time.perf_counter()
    header = [
        "# physattn + temsim: demo report",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} on "
        f"{platform.machine()} ({os.cpu_count()} CPU cores), Python "
        f"{platform.python_version()}, JAX {jax.__version__} "
        f"({jax.default_backend()}). Rerun: `make demo`.",
        "",
    ]
    body, failed = [], []
    for name, section in _sections():
        t0 = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        try:
            body.append(section(out))
        except Exception:  # one broken section must not lose the others
            failed.append(name)
            body.append(f"## {name}: FAILED\n\n```\n{traceback.format_exc()}```\n")
        print(f"[demo] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
        # Write after every section, so an interrupted demo keeps what it finished.
        (out / "REPORT.md").write_text("\n".join(header + body))
    total = time.perf_counter() - t_start
    body.append(f"\n_Total demo time: {total:.1f} s._\n")
    (out / "REPORT.md").write_text("\n".join(header + body))
    print(f"[demo] wrote {out / 'REPORT.md'} in {total:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Clean-image simulators of `temsim.dataset`: random 2-D specimens to HRTEM images.

A simulator is fn(config, params, key) -> clean image (ny, nx) for one sample, with
`params` from `temsim.dataset.draw_parameters` and `key` the sample's structure key:

- "hrtem": a rotated, optionally multilayer (turbostratic) sheet of the drawn family
  (`temsim.structures`), with random displacements and vacancies, projected with the
  Lobato potential and imaged by multislice HRTEM (`temsim.hrtem_from_potential`)
  with the drawn defocus, Cs, astigmatism and focal spread;
- "synthetic": an analytic stand-in (three cosines of a hexagonal lattice with a
  defocus-dependent contrast), traceable, for tests and pipelines.

`SIMULATORS` is the one place a clean image is made.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LAYER_SPACING", "SIMULATORS", "SYNTHETIC_LATTICE", "Simulator"]

# interlayer spacing [Å] (graphite, 2H-MoS2 c/2, h-BN, black phosphorus b/2)
LAYER_SPACING = {"graphene": 3.35, "mos2": 6.15, "hbn": 3.33, "phosphorene": 5.24}
# lattice constant [Å] of the synthetic stand-in's hexagonal lattice, per family
SYNTHETIC_LATTICE = {"graphene": 2.46, "mos2": 3.18, "hbn": 2.504, "phosphorene": 3.31}


class Simulator(NamedTuple):
    """fn(config, params, key) -> clean (ny, nx) float64; traceable: jit-able fn."""

    fn: Callable[..., Any]
    traceable: bool


def _synthetic(config, params, key):
    """Analytic stand-in: a rotated hexagonal lattice of Gaussians, ~CTF contrast."""
    ny, nx = config.shape
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    lattice = [SYNTHETIC_LATTICE[f] for f in config.families]
    a = jnp.asarray(lattice, dt)[params["family"].astype(jnp.int32)]
    theta = jnp.deg2rad(params["rotation"]).astype(dt)
    y = jnp.arange(ny, dtype=dt)[:, None] * config.sampling
    x = jnp.arange(nx, dtype=dt)[None, :] * config.sampling
    shift = jax.random.uniform(key, (2,), dt, 0, 10)
    image = jnp.zeros((ny, nx), dt)
    for j in range(3):  # three reciprocal vectors at 120 degrees
        phi = theta + 2 * jnp.pi * j / 3
        g = 4 * jnp.pi / (jnp.sqrt(jnp.asarray(3.0, dt)) * a)
        arg = g * ((x + shift[1]) * jnp.cos(phi) + (y + shift[0]) * jnp.sin(phi))
        image = image + jnp.cos(arg)
    contrast = 0.05 * params["layers"] * jnp.cos(params["defocus"] / 50)
    return (1 + contrast.astype(dt) * image / 3).astype(dt)


@functools.lru_cache(maxsize=16)
def _sheet(family: str, radius: float):
    """(numbers, xy centred (n, 2), z (n,)) of a monolayer covering a disk [Å]."""
    from temsim import structures

    builder = structures.STRUCTURES[family]
    cell = builder(vacuum=0.0).cell.lengths()
    repeat = (int(2 * radius / cell[0]) + 2, int(2 * radius / cell[1]) + 2)
    atoms = builder(repeat=repeat, vacuum=0.0)
    xy = atoms.positions[:, :2] - atoms.cell.lengths()[:2] / 2
    z = atoms.positions[:, 2] - atoms.positions[:, 2].min()
    return atoms.numbers.copy(), xy, z, float(cell[0])


@functools.lru_cache(maxsize=16)
def _form_factors(numbers: tuple[int, ...], gpts, sampling, parametrization):
    from temsim import potential

    ky, kx = potential.spatial_frequencies(gpts, sampling)
    factors = potential.form_factors(numbers, gpts, sampling, parametrization)
    return jnp.asarray(factors), (jnp.asarray(ky), jnp.asarray(kx))


def _atoms(config, params: dict[str, float], rng, family: str):
    """(numbers, positions (n, 3), cell (lx, ly, lz)) of a rotated multilayer."""
    ny, nx = (n + 2 * config.margin for n in config.shape)
    lx, ly = nx * config.sampling, ny * config.sampling
    numbers0, xy0, z0, a = _sheet(family, 0.5 * math.hypot(lx, ly) + 5.0)
    spacing = LAYER_SPACING[family]
    vacuum = 2.0
    lz = z0.max() + (config.layers[1] - 1) * spacing + 2 * vacuum
    theta = math.radians(params["rotation"])
    rot = np.array(
        [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
    )
    numbers, positions = [], []
    for layer in range(int(params["layers"])):
        offset = rng.uniform(0, a, 2)  # turbostratic stacking
        xy = (xy0 + offset) @ rot.T + np.array([lx / 2, ly / 2])
        keep = (xy[:, 0] >= 0) & (xy[:, 0] < lx) & (xy[:, 1] >= 0) & (xy[:, 1] < ly)
        z = z0[keep] + vacuum + layer * spacing
        positions.append(np.column_stack([xy[keep], z]))
        numbers.append(numbers0[keep])
    numbers, positions = np.concatenate(numbers), np.concatenate(positions)
    positions = positions + rng.normal(0, params["displacement"], positions.shape)
    n_vac = int(round(params["vacancy"] * len(numbers)))
    keep = np.ones(len(numbers), bool)
    keep[rng.choice(len(numbers), n_vac, replace=False)] = False
    positions = positions[keep]
    positions[:, 0] %= lx
    positions[:, 1] %= ly
    return numbers[keep], positions, (lx, ly, lz)


def _hrtem(config, params, key):
    """Multislice HRTEM image (temsim.hrtem_from_potential) of a random structure.

    Atom groups are padded to a multiple of 32 per (species, slice), so the projection
    compiles once per family and size bucket, not once per sample.
    """
    from temsim import potential as pot
    from temsim.hrtem import hrtem_from_potential

    p = {k: float(v) for k, v in params.items()}
    family = config.families[int(p["family"])]
    seed = np.asarray(jax.random.key_data(key)).astype(np.uint64).tolist()
    rng = np.random.default_rng(seed)
    numbers, positions, (lx, ly, lz) = _atoms(config, p, rng, family)
    gpts = tuple(n + 2 * config.margin for n in config.shape)
    sampling = (ly / gpts[0], lx / gpts[1])
    n_slices = pot.n_slices_for(lz, config.slice_thickness)
    dz = lz / n_slices
    layout = pot.slice_layout(numbers, positions[:, 2], n_slices, dz)
    m = 32 * -(-layout.index.shape[-1] // 32)
    pad = ((0, 0), (0, 0), (0, m - layout.index.shape[-1]))
    factors, freqs = _form_factors(layout.numbers, gpts, sampling, "lobato")
    array = pot.project(
        jnp.asarray(positions[:, :2]),
        jnp.asarray(np.pad(layout.index, pad)),
        jnp.asarray(np.pad(layout.weight, pad)),
        factors,
        freqs,
    )
    image = hrtem_from_potential(
        pot.Potential(array, sampling, dz),
        energy=config.energy,
        defocus=p["defocus"],
        Cs=p["Cs"],
        C12=p["astigmatism"],
        phi12=p["astigmatism_angle"],
        semiangle_cutoff=config.semiangle_cutoff,
        focal_spread=p["focal_spread"],
    )
    mg = config.margin
    return image.array[mg : mg + config.shape[0], mg : mg + config.shape[1]]


SIMULATORS: dict[str, Simulator] = {
    "hrtem": Simulator(_hrtem, traceable=False),
    "synthetic": Simulator(_synthetic, traceable=True),
}
"""The only place a clean image is made: fn(config, params, structure_key)."""

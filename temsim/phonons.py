"""Frozen phonons: thermal diffuse scattering as an average over displaced atoms.

Each configuration displaces every atom by an independent Gaussian of standard deviation
sigma_Z [Å] per Cartesian direction (per element, e.g. from Debye-Waller factors:
sigma^2 = B / (8 pi^2)); the image is the mean of the configurations' intensities
(Kirkland 2010, Sec. 7.4; abTEM `FrozenPhonons`, whose `sigmas` mean the same).

With the infinite projection an atom's potential does not depend on its z within its
slice, and slice membership is kept from the undisplaced positions, so that all
configurations share one static layout and the whole simulation is `vmap`ped over
configurations (in batches of `batch_size`); only the (x, y) displacements matter.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import ase
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from temsim import parametrizations
from temsim.hrtem import image_wave
from temsim.image import Image
from temsim.multislice import multislice
from temsim.potential import (
    Potential,
    form_factors,
    grid,
    n_slices_for,
    occupied_layout,
    orthogonal_extent,
    project,
    scatter_slices,
    spatial_frequencies,
)
from temsim.units import check_energy

__all__ = ["atom_sigmas", "displacements", "frozen_phonons_hrtem", "rattle"]


def atom_sigmas(
    numbers: np.ndarray, sigmas: float | Mapping[str | int, float]
) -> np.ndarray:
    """Per-atom rms displacement [Å] (n,) from one number or a {element: sigma} map."""
    numbers = np.asarray(numbers)
    if isinstance(sigmas, Mapping):
        table = {parametrizations.atomic_number(k): v for k, v in sigmas.items()}
        missing = sorted(set(numbers.tolist()) - set(table))
        if missing:
            raise ValueError(
                f"sigmas must give an rms displacement for every element present; "
                f"missing Z = {missing} (got keys {list(sigmas)})"
            )
        values = np.array([table[int(z)] for z in numbers], dtype=np.float64)
    else:
        values = np.full(numbers.shape, sigmas, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"sigmas must be finite rms displacements >= 0 Å, got {sigmas!r}"
        )
    return values


def displacements(
    key: Array, sigmas: Float[Array, " n"], dims: int = 3
) -> Float[Array, "n dims"]:
    """Gaussian displacements [Å], shape (n, dims), std sigmas[i] per direction."""
    sigmas = jnp.asarray(sigmas, dtype=float)
    noise = jax.random.normal(key, (sigmas.shape[0], dims), dtype=sigmas.dtype)
    return noise * sigmas[:, None]


def rattle(
    atoms: ase.Atoms, *, key: Array, sigmas: float | Mapping[str | int, float]
) -> ase.Atoms:
    """A copy of `atoms` with every atom displaced by N(0, sigma_Z^2) per direction."""
    out = atoms.copy()
    s = atom_sigmas(atoms.numbers, sigmas)
    out.positions = atoms.positions + np.asarray(displacements(key, s))
    return out


def frozen_phonons_hrtem(
    atoms: ase.Atoms,
    *,
    key: Array,
    num_configs: int,
    sigmas: float | Mapping[str | int, float],
    energy: float,
    sampling: float | tuple[float, float],
    slice_thickness: float = 1.0,
    parametrization: str = "lobato",
    tilt: tuple[float, float] = (0.0, 0.0),
    batch_size: int | None = None,
    **optics,
) -> Image:
    """HRTEM image averaged over `num_configs` frozen-phonon configurations.

    Units and optics as `temsim.hrtem`; sigmas [Å] rms displacement per direction, one
    number or {element: sigma}. `key` is a JAX PRNG key; the same key gives the same
    image. I = (1/N) sum_c |F^-1[H F[psi_c]]|^2 (Kirkland 2010, Sec. 7.4).
    """
    check_energy(energy)
    if not isinstance(num_configs, int) or num_configs < 1:
        raise ValueError(f"num_configs must be an int >= 1, got {num_configs!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
    parametrizations.check_parametrization(parametrization)
    lx, ly, lz = orthogonal_extent(atoms)
    if len(atoms) == 0:
        raise ValueError("atoms must contain at least one atom, got an empty Atoms")
    shape, pixel = grid((ly, lx), sampling=sampling)
    n = n_slices_for(lz, slice_thickness)
    dz = lz / n
    per_atom = atom_sigmas(atoms.numbers, sigmas)
    layout, occupied = occupied_layout(atoms.numbers, atoms.positions[:, 2], n, dz)

    dtype = jnp.result_type(float)
    factors = jnp.asarray(
        form_factors(layout.numbers, shape, pixel, parametrization), dtype=dtype
    )
    ky, kx = (jnp.asarray(k, dtype=dtype) for k in spatial_frequencies(shape, pixel))
    index = jnp.asarray(layout.index)
    weight = jnp.asarray(layout.weight, dtype=dtype)
    xy0 = jnp.asarray(atoms.positions[:, :2], dtype=dtype)
    s = jnp.asarray(per_atom, dtype=dtype)

    static = dict(
        pixel=pixel,
        dz=dz,
        occupied=tuple(int(k) for k in occupied),
        n_slices=n,
        energy=float(energy),
        tilt=tuple(float(t) for t in tilt),
        optics=tuple(sorted((k, float(v)) for k, v in optics.items())),
        num_configs=num_configs,
        batch_size=batch_size or num_configs,
    )
    mean = _average(key, xy0, s, index, weight, factors, ky, kx, **static)
    meta = {
        "kind": "hrtem",
        "energy": float(energy),
        "num_configs": num_configs,
        "slice_thickness": dz,
        "parametrization": parametrization,
    }
    for name, value in optics.items():
        meta[name] = float(value)
    meta["semiangle_cutoff"] = float(optics.get("semiangle_cutoff", math.inf))
    return Image(mean, pixel, meta)


@functools.partial(
    jax.jit,
    static_argnames=(
        "pixel", "dz", "occupied", "n_slices", "energy", "tilt", "optics",
        "num_configs", "batch_size",
    ),
)  # fmt: skip
def _average(
    key, xy0, s, index, weight, factors, ky, kx, *, pixel, dz, occupied, n_slices,
    energy, tilt, optics, num_configs, batch_size,
):  # fmt: skip
    """Mean intensity over configurations, vmapped in batches (see the public API)."""

    def one_config(config_key):
        xy = xy0 + displacements(config_key, s, dims=2)
        compact = project(xy, index, weight, factors, (ky, kx))
        slices = scatter_slices(compact, np.asarray(occupied), n_slices)
        wave = multislice(Potential(slices, pixel, dz), energy=energy, tilt=tilt)
        return image_wave(wave, pixel, energy=energy, **dict(optics))

    keys = jax.random.split(key, num_configs)
    images = jax.lax.map(one_config, keys, batch_size=batch_size)
    return jnp.mean(images, axis=0)

"""Projected atomic potential of an orthogonal cell, slice by slice, in Fourier space.

Each slice k holds the projected potential of the atoms whose z lies in it (the
"infinite projection" of abTEM: an atom is assigned wholly to the slice that contains
its centre, even where its potential reaches across a slice boundary). In Fourier space

    v_k(q) = 2 pi a0 e sum_s f_s(|q|) S_sk(q),  S_sk = sum_(j in s,k) exp(-2 pi i q.r_j)

(Kirkland 2010, Ch. 5 and App. C), with f_s the analytic scattering factor of species
s: no real-space sampling, hence no aliasing of the atomic cores, exact sub-pixel
positions, periodic boundaries, and a spectrum band-limited to the grid's Nyquist box.
On the grid, v_k(r_n) = ifft2(v_k(q)) / (dx dy) [V Å].

Arrays are (n_slices, ny, nx): axis -1 is x (cell vector a), axis -2 is y (cell
vector b), slices run along z (cell vector c) from z = 0.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import ase
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from temsim import parametrizations
from temsim.units import POTENTIAL_PREFACTOR

__all__ = [
    "Potential",
    "SliceLayout",
    "grid",
    "occupied_layout",
    "potential_slices",
    "project",
    "scatter_slices",
    "slice_index",
    "slice_layout",
    "spatial_frequencies",
]


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Potential:
    """Projected potential slices of a periodic cell (an immutable pytree).

    Attributes:
      array: (n_slices, ny, nx) projected potential v_z [V Å]; the only leaf.
      sampling: (dy, dx) pixel size [Å]; static.
      slice_thickness: thickness of every slice [Å]; static.
    """

    array: Any
    sampling: tuple[float, float]
    slice_thickness: float

    @property
    def gpts(self) -> tuple[int, int]:
        return tuple(jnp.shape(self.array)[-2:])

    @property
    def n_slices(self) -> int:
        return jnp.shape(self.array)[-3]

    @property
    def extent(self) -> tuple[float, float]:
        """(height, width) of the cell [Å]."""
        return self.gpts[0] * self.sampling[0], self.gpts[1] * self.sampling[1]

    @property
    def thickness(self) -> float:
        """Total thickness [Å]."""
        return self.n_slices * self.slice_thickness

    def tree_flatten(self):
        return (self.array,), (self.sampling, self.slice_thickness)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], *aux)


class SliceLayout(NamedTuple):
    """Static assignment of atoms to (species, slice) groups, padded to a length M.

    numbers: (S,) atomic numbers; index: (S, K, M) atom indices (padding points at atom
    0); weight: (S, K, M) 1.0 for a real atom, 0.0 for padding (numpy arrays).
    """

    numbers: tuple[int, ...]
    index: np.ndarray
    weight: np.ndarray


def orthogonal_extent(atoms: ase.Atoms) -> tuple[float, float, float]:
    """Cell lengths (Lx, Ly, Lz) [Å] of an orthogonal axis-aligned cell (else raise)."""
    if not isinstance(atoms, ase.Atoms):
        raise ValueError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    lengths = np.diag(cell)
    off = cell - np.diag(lengths)
    if np.any(np.abs(off) > 1e-8 * max(1.0, float(np.max(np.abs(cell))))) or np.any(
        lengths <= 0
    ):
        raise ValueError(
            "atoms must have an orthogonal, axis-aligned cell with positive lengths "
            f"(a diagonal 3x3 matrix), got cell {cell.round(6).tolist()}; make "
            "hexagonal cells orthogonal with temsim.structures.orthogonalize_cell"
        )
    return tuple(float(x) for x in lengths)


def grid(
    extent: tuple[float, float],
    *,
    sampling: float | tuple[float, float] | None = None,
    gpts: int | tuple[int, int] | None = None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """(ny, nx) and the actual (dy, dx) [Å] for a (height, width) extent [Å].

    Give exactly one of `sampling` [Å] (rounded to fit: n = ceil(L / sampling)) or
    `gpts`.
    """
    if (sampling is None) == (gpts is None):
        raise ValueError(
            f"give exactly one of sampling (pixel size in Å) or gpts (number of grid "
            f"points), got sampling={sampling!r} and gpts={gpts!r}"
        )
    if gpts is not None:
        n = np.broadcast_to(np.asarray(gpts), (2,))
        if not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
            raise ValueError(
                f"gpts must be a positive integer or a pair (ny, nx), got {gpts!r}"
            )
        shape = (int(n[0]), int(n[1]))
    else:
        s = np.broadcast_to(np.asarray(sampling, dtype=np.float64), (2,))
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(
                f"sampling must be a positive pixel size in Å or a pair (dy, dx), "
                f"got {sampling!r}"
            )
        shape = tuple(
            int(math.ceil(L / d - 1e-9)) for L, d in zip(extent, s, strict=True)
        )
    return shape, (extent[0] / shape[0], extent[1] / shape[1])


def numpy_cache(fn):
    """Memoise a numpy-returning grid builder on hashable arguments (read-only arrays).

    Grid constants (frequencies, form factors, propagators) depend only on static
    configuration, so repeated simulations on one grid build them once.
    """
    cached = functools.lru_cache(maxsize=32)(fn)

    def freeze(out):
        if isinstance(out, np.ndarray):
            out.flags.writeable = False
        elif isinstance(out, tuple):
            for x in out:
                freeze(x)
        return out

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return freeze(cached(*args, **kwargs))
        except TypeError:  # unhashable argument: build without the cache
            return fn(*args, **kwargs)

    return wrapper


@numpy_cache
def spatial_frequencies(
    gpts: tuple[int, int], sampling: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """FFT-ordered spatial frequencies (ky, kx) [1/Å] (numpy float64, no 2 pi)."""
    return np.fft.fftfreq(gpts[0], sampling[0]), np.fft.fftfreq(gpts[1], sampling[1])


def n_slices_for(thickness: float, slice_thickness: float) -> int:
    """Number of equal slices of at most `slice_thickness` [Å] (abTEM's convention)."""
    if not np.isfinite(slice_thickness) or slice_thickness <= 0:
        raise ValueError(
            f"slice_thickness must be a positive length in Å, got {slice_thickness!r}"
        )
    return max(1, int(math.ceil(thickness / slice_thickness - 1e-9)))


def slice_index(z: np.ndarray, n_slices: int, dz: float) -> np.ndarray:
    """Slice of each atom: floor(z / dz), clipped to [0, n_slices - 1] (numpy)."""
    return np.clip(np.floor(np.asarray(z) / dz).astype(int), 0, n_slices - 1)


def _group(numbers: np.ndarray, k: np.ndarray, n_slices: int) -> SliceLayout:
    numbers = np.asarray(numbers)
    species = np.unique(numbers)
    groups = [
        [np.flatnonzero((numbers == s) & (k == i)) for i in range(n_slices)]
        for s in species
    ]
    m = max(1, max(len(g) for row in groups for g in row))
    index = np.zeros((len(species), n_slices, m), dtype=np.int32)
    weight = np.zeros((len(species), n_slices, m), dtype=np.float64)
    for a, row in enumerate(groups):
        for b, g in enumerate(row):
            index[a, b, : len(g)] = g
            weight[a, b, : len(g)] = 1.0
    return SliceLayout(tuple(int(s) for s in species), index, weight)


def slice_layout(numbers: np.ndarray, z: np.ndarray, n_slices: int, dz: float):
    """Group atoms by (species, slice) with padding to a common length M (numpy).

    An atom belongs to slice floor(z / dz), clipped to [0, n_slices - 1].
    """
    return _group(numbers, slice_index(z, n_slices, dz), n_slices)


def occupied_layout(
    numbers: np.ndarray, z: np.ndarray, n_slices: int, dz: float
) -> tuple[SliceLayout, np.ndarray]:
    """`slice_layout` over the occupied slices only, and their indices (numpy).

    Empty (vacuum) slices cost nothing to project: they are zero.
    """
    k = slice_index(z, n_slices, dz)
    occupied = np.unique(k)
    return _group(numbers, np.searchsorted(occupied, k), len(occupied)), occupied


def scatter_slices(compact: Array, occupied: np.ndarray, n_slices: int) -> Array:
    """(n_slices, ny, nx) array: `compact` at the `occupied` slices, zero elsewhere."""
    if len(occupied) == n_slices:
        return compact
    full = jnp.zeros((n_slices, *compact.shape[1:]), dtype=compact.dtype)
    return full.at[jnp.asarray(occupied)].set(compact)


@numpy_cache
def form_factors(numbers, gpts, sampling, parametrization) -> np.ndarray:
    """(S, ny, nx) 2 pi a0 e f_e(|q|) / (dx dy) [V] on the FFT grid, in float64."""
    ky, kx = spatial_frequencies(gpts, sampling)
    q2 = ky[:, None] ** 2 + kx[None, :] ** 2
    scale = POTENTIAL_PREFACTOR / (sampling[0] * sampling[1])
    return np.stack(
        [
            scale * parametrizations.scattering_factor_q2(z, q2, parametrization, xp=np)
            for z in numbers
        ]
    )


@jax.jit
def project(
    positions: Float[Array, "n 2"],
    index: Array,
    weight: Float[Array, "S K M"],
    factors: Float[Array, "S ny nx"],
    frequencies: tuple[Array, Array],
) -> Float[Array, "K ny nx"]:
    """Projected potential slices [V Å] from (x, y) positions [Å] and a slice layout.

    Shapes: positions (n, 2) as (x, y); index, weight (S, K, M); factors (S, ny, nx)
    from `form_factors`; frequencies (ky (ny,), kx (nx,)) [1/Å].
    v_k = ifft2(sum_s F_s(q) S_sk(q)), S_sk = sum_j w_j exp(-2 pi i (kx x_j + ky y_j)),
    the separable structure factor being a (ny, M) x (M, nx) matrix product per slice.
    """
    factors = jnp.asarray(factors)
    dtype = factors.dtype
    positions = jnp.asarray(positions).astype(dtype)
    index = jnp.asarray(index)
    ky, kx = (jnp.asarray(k).astype(dtype) for k in frequencies)

    def one_species(idx_KxM, w_KxM, factor):
        xy = positions[idx_KxM]  # (K, M, 2)
        phase_x = -2 * jnp.pi * xy[..., 0, None] * kx[None, None, :]  # (K, M, nx)
        phase_y = -2 * jnp.pi * xy[..., 1, None] * ky[None, None, :]  # (K, M, ny)
        ex = jax.lax.complex(jnp.cos(phase_x), jnp.sin(phase_x))
        ey = jax.lax.complex(jnp.cos(phase_y), jnp.sin(phase_y))
        ey = ey * w_KxM[..., None].astype(ey.dtype)
        structure = jnp.einsum("kmy,kmx->kyx", ey, ex)
        return structure * factor[None].astype(structure.dtype)

    spectra = jax.vmap(one_species)(index, weight.astype(dtype), factors)
    return jnp.fft.ifft2(jnp.sum(spectra, axis=0)).real.astype(dtype)


def potential_slices(
    atoms: ase.Atoms,
    *,
    sampling: float | tuple[float, float] | None = None,
    gpts: int | tuple[int, int] | None = None,
    slice_thickness: float = 1.0,
    parametrization: str = "lobato",
) -> Potential:
    """Projected potential slices of `atoms` in an orthogonal periodic cell.

    Units: sampling and slice_thickness [Å]; result array (n_slices, ny, nx) [V Å].
    The cell height is cut into n = ceil(Lz / slice_thickness) equal slices; each atom
    is assigned wholly to the slice containing its z (the infinite projection; atoms
    with z outside [0, Lz) go to the first/last slice). x, y are periodic.
    v_k(q) = 2 pi a0 e sum_j f_e(|q|) exp(-2 pi i q.r_j) over atoms j in slice k
    (Kirkland 2010, Ch. 5; abTEM's "infinite" projection).
    """
    parametrizations.check_parametrization(parametrization)
    lx, ly, lz = orthogonal_extent(atoms)
    shape, pixel = grid((ly, lx), sampling=sampling, gpts=gpts)
    n = n_slices_for(lz, slice_thickness)
    dz = lz / n
    numbers = atoms.numbers
    for z in np.unique(numbers):
        parametrizations.atomic_number(int(z))
    dtype = jnp.result_type(float)
    if len(atoms) == 0:
        return Potential(jnp.zeros((n, *shape), dtype=dtype), pixel, dz)
    layout, occupied = occupied_layout(numbers, atoms.positions[:, 2], n, dz)
    xy = atoms.positions[:, :2]
    compact = project_atoms(layout, xy, shape, pixel, parametrization)
    return Potential(scatter_slices(compact, occupied, n), pixel, dz)


def project_atoms(layout, positions_xy, gpts, sampling, parametrization):
    """`project` with the form factors and frequencies built for a grid (see there)."""
    dtype = jnp.result_type(float)
    factors = form_factors(layout.numbers, gpts, sampling, parametrization)
    ky, kx = spatial_frequencies(gpts, sampling)
    return project(
        jnp.asarray(positions_xy, dtype=dtype),
        jnp.asarray(layout.index),
        jnp.asarray(layout.weight, dtype=dtype),
        jnp.asarray(factors, dtype=dtype),
        (jnp.asarray(ky, dtype=dtype), jnp.asarray(kx, dtype=dtype)),
    )

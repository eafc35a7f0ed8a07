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
import os
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
    "available_memory",
    "check_memory",
    "compact_slices",
    "estimate_memory",
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


def device_cache(fn):
    """Memoise a builder of grid constants as device arrays (a few grids deep).

    Like `numpy_cache`, but the (tuple of) numpy result is converted once to JAX
    arrays, so repeated calls skip the host-to-device copy; built outside any trace.
    """

    @functools.lru_cache(maxsize=4)
    def cached(*args):
        with jax.ensure_compile_time_eval():
            out = fn(*args)
            if isinstance(out, tuple):
                return tuple(jnp.asarray(x) for x in out)
            return jnp.asarray(out)

    @functools.wraps(fn)
    def wrapper(*args):
        return cached(*args)

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


def _structure_spectra(positions, index, weight, ky, kx):
    """(G, ny, nx') structure factors sum_m w_m exp(-2 pi i (kx x_m + ky y_m)).

    Shapes: positions (n, 2) as (x, y); index, weight (G, M); ky (ny,), kx (nx',).
    Separable: a (ny, M) x (M, nx') complex matrix product per group, done as three
    real products (Gauss; about 2.5x faster than a complex GEMM on CPU): with
    exp(-i (px + py)) = cos - i sin, cos = cy cx - sy sx, sin = sy cx + cy sx, and
    k1 = (cy + sy) cx, k2 = cy (sx - cx), k3 = sy (cx + sx): cos = k1 - k3,
    sin = k1 + k2.
    """
    xy = positions[index]  # (G, M, 2)
    phase_x = 2 * jnp.pi * xy[..., 0, None] * kx[None, None, :]  # (G, M, nx')
    phase_y = 2 * jnp.pi * xy[..., 1, None] * ky[None, None, :]  # (G, M, ny)
    w = weight[..., None]
    cy, sy = w * jnp.cos(phase_y), w * jnp.sin(phase_y)
    return _separable_product(cy, sy, jnp.cos(phase_x), jnp.sin(phase_x))


def _separable_product(cy, sy, cx, sx):
    """sum_m (cy - i sy)_my (cx - i sx)_mx per group, by three real GEMMs (Gauss)."""
    product = functools.partial(jnp.einsum, "gmy,gmx->gyx")
    k1 = product(cy + sy, cx)
    k2 = product(cy, sx - cx)
    k3 = product(sy, cx + sx)
    return jax.lax.complex(k1 - k3, -(k1 + k2))


def _rows(index, weight, positions_xy):
    """Atoms of each group that share a y coordinate exactly (rows of a crystal).

    Returns x (G, M), the rows' y (G, U) and membership (G, U, M) holding the
    weights, U the most rows in a group (numpy).
    """
    x = positions_xy[index, 0]
    y = positions_xy[index, 1]
    real = weight > 0
    uniques = [np.unique(y[g][real[g]]) for g in range(index.shape[0])]
    n_rows = max(1, max(len(u) for u in uniques))
    rows_y = np.zeros((index.shape[0], n_rows))
    member = np.zeros((*rows_y.shape, index.shape[1]))
    for g, u in enumerate(uniques):
        rows_y[g, : len(u)] = u
        atoms = np.flatnonzero(real[g])
        member[g, np.searchsorted(u, y[g, atoms]), atoms] = weight[g, atoms]
    return x, rows_y, member


@functools.partial(jax.jit, static_argnames=("n_slices", "nx"))
def _project_rows(x, rows_y, member, factors, ky, kx, species, slices, *, n_slices,
                  nx):  # fmt: skip
    """`_project_groups` for atoms in rows of equal y (exact, cheaper for crystals).

    S(ky, kx) = sum_u exp(-2 pi i ky y_u) C_u(kx), C_u = sum_(m in row u) w_m
    exp(-2 pi i kx x_m): a (ny, U) x (U, nx') product instead of (ny, M) x (M, nx').
    """
    dtype = factors.dtype
    phase_x = 2 * jnp.pi * x[..., None] * kx[None, None, :]  # (G, M, nx')
    rows = functools.partial(jnp.einsum, "gum,gmx->gux", member)
    cx, sx = rows(jnp.cos(phase_x)), rows(jnp.sin(phase_x))  # (G, U, nx')
    phase_y = 2 * jnp.pi * rows_y[..., None] * ky[None, None, :]  # (G, U, ny)
    structure = _separable_product(jnp.cos(phase_y), jnp.sin(phase_y), cx, sx)
    structure = structure * factors[species].astype(structure.dtype)
    spectra = jnp.zeros((n_slices, *structure.shape[1:]), structure.dtype)
    spectra = spectra.at[slices].add(structure)
    return _to_real_space(spectra, nx).astype(dtype)


def _to_real_space(spectra, nx):
    """Real slices from Hermitian spectra kept on the half plane kx >= 0.

    The columns are fftfreq's first nx // 2 + 1 (for even nx the Nyquist column has
    kx = -1 / (2 dx), as in the full grid), so irfft2 equals Re(ifft2) of the full
    spectrum exactly: the potential is real, the spectrum Hermitian.
    """
    return jnp.fft.irfft2(spectra, s=(spectra.shape[-2], nx))


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
    the separable structure factor being a (ny, M) x (M, nx) matrix product per slice;
    only the half plane kx >= 0 is computed (v_k is real).
    """
    factors = jnp.asarray(factors)
    dtype = factors.dtype
    positions = jnp.asarray(positions).astype(dtype)
    index = jnp.asarray(index)
    ky, kx = (jnp.asarray(k).astype(dtype) for k in frequencies)
    nx = kx.shape[0]
    half = nx // 2 + 1
    n_species, n_slices, m = index.shape
    structure = _structure_spectra(
        positions,
        index.reshape(n_species * n_slices, m),
        weight.astype(dtype).reshape(n_species * n_slices, m),
        ky,
        kx[:half],
    ).reshape(n_species, n_slices, ky.shape[0], half)
    spectra = structure * factors[:, None, :, :half].astype(structure.dtype)
    return _to_real_space(jnp.sum(spectra, axis=0), nx).astype(dtype)


@functools.partial(jax.jit, static_argnames=("n_slices", "nx"))
def _project_groups(positions, index, weight, factors, ky, kx, species, slices, *,
                    n_slices, nx):  # fmt: skip
    """`project` over the non-empty (species, slice) groups only.

    index, weight (G, M); species, slices (G,) int; factors (S, ny, nx // 2 + 1) on
    the half plane; kx (nx // 2 + 1,). Returns (n_slices, ny, nx).
    """
    dtype = factors.dtype
    structure = _structure_spectra(positions, index, weight, ky, kx)
    structure = structure * factors[species].astype(structure.dtype)
    spectra = jnp.zeros((n_slices, *structure.shape[1:]), structure.dtype)
    spectra = spectra.at[slices].add(structure)
    return _to_real_space(spectra, nx).astype(dtype)


@device_cache
def _half_plane_constants(numbers, gpts, sampling, parametrization, dtype_name):
    """Half-plane form factors (S, ny, nx // 2 + 1) and (ky, kx) in `dtype_name`."""
    half = gpts[1] // 2 + 1
    dtype = np.dtype(dtype_name)
    # uncached float64 build: only the half-plane copy in `dtype_name` is kept
    factors = form_factors.__wrapped__(numbers, gpts, sampling, parametrization)
    factors = factors[..., :half]
    ky, kx = spatial_frequencies(gpts, sampling)
    return (
        np.ascontiguousarray(factors, dtype=dtype),
        ky.astype(dtype),
        kx[:half].astype(dtype),
    )


def available_memory() -> int | None:
    """Bytes available for new arrays: free accelerator memory, else the host's
    MemAvailable (/proc/meminfo), else free physical pages; None if unknown."""
    try:
        device = jax.devices()[0]
        if device.platform != "cpu":
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - a backend without memory stats
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# Complex (ny, nx) buffers alive at once in multislice + imaging: the wave, its
# spectrum, the transmission function and its spectrum, the propagator, the
# anti-aliasing aperture, the CTF and FFT scratch.
WAVE_BUFFERS = 8


def estimate_memory(
    gpts: tuple[int, int],
    n_slices: int,
    *,
    n_groups: int = 1,
    n_occupied: int | None = None,
    dtype=None,
) -> int:
    """Estimated peak bytes of a simulation on `gpts` with `n_slices` slices.

    potential (n_slices real slices) + projection workspace (n_groups complex
    half-plane structure factors, n_occupied spectra and real slices) + WAVE_BUFFERS
    complex (ny, nx) buffers for multislice and imaging.
    """
    itemsize = np.dtype(dtype or jnp.result_type(float)).itemsize
    n_occupied = n_slices if n_occupied is None else n_occupied
    pixels = int(gpts[0]) * int(gpts[1])
    half = int(gpts[0]) * (int(gpts[1]) // 2 + 1)
    real = itemsize * (n_slices + n_occupied) * pixels
    workspace = 2 * itemsize * (n_groups + n_occupied) * half
    waves = 2 * itemsize * WAVE_BUFFERS * pixels
    return real + workspace + waves


def check_memory(nbytes: int, *, gpts, n_slices: int, sampling, slice_thickness):
    """Raise ValueError if an estimated `nbytes` exceeds the available memory."""
    available = available_memory()
    if available is None or nbytes <= available:
        return
    raise ValueError(
        f"a {gpts[0]} x {gpts[1]} grid with {n_slices} slices (sampling "
        f"{tuple(round(s, 6) for s in sampling)} Å, slice_thickness "
        f"{slice_thickness:.4g} Å) needs about {nbytes / 2**30:.3g} GiB, but only "
        f"{available / 2**30:.3g} GiB of memory is available; use a coarser "
        f"sampling, thicker slices or a smaller cell"
    )


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
    compact, occupied, n = compact_slices(
        atoms,
        sampling=sampling,
        gpts=gpts,
        slice_thickness=slice_thickness,
        parametrization=parametrization,
    )
    array = scatter_slices(compact.array, occupied, n)
    return Potential(array, compact.sampling, compact.slice_thickness)


def compact_slices(
    atoms: ase.Atoms,
    *,
    sampling: float | tuple[float, float] | None = None,
    gpts: int | tuple[int, int] | None = None,
    slice_thickness: float = 1.0,
    parametrization: str = "lobato",
) -> tuple[Potential, np.ndarray, int]:
    """`potential_slices` without its vacuum: (occupied slices, their indices, n).

    The Potential holds only the K occupied slices (K, ny, nx) [V Å] (at least one:
    slice 0 of an empty cell); `occupied` (K,) their indices among the n slices of
    thickness `Potential.slice_thickness`. Arguments and checks as potential_slices.
    """
    parametrizations.check_parametrization(parametrization)
    lx, ly, lz = orthogonal_extent(atoms)
    shape, pixel = grid((ly, lx), sampling=sampling, gpts=gpts)
    n = n_slices_for(lz, slice_thickness)
    dz = lz / n
    numbers = atoms.numbers
    for z in np.unique(numbers):
        parametrizations.atomic_number(int(z))
    if len(atoms):
        layout, occupied = occupied_layout(numbers, atoms.positions[:, 2], n, dz)
        n_groups = int(layout.weight.any(axis=-1).sum())
    else:
        layout, occupied, n_groups = None, np.zeros(1, dtype=int), 0
    check_memory(
        estimate_memory(shape, n, n_groups=n_groups, n_occupied=len(occupied)),
        gpts=shape,
        n_slices=n,
        sampling=pixel,
        slice_thickness=dz,
    )
    if layout is None:
        empty = jnp.zeros((1, *shape), dtype=jnp.result_type(float))
        return Potential(empty, pixel, dz), occupied, n
    xy = atoms.positions[:, :2]
    compact = project_atoms(layout, xy, shape, pixel, parametrization)
    return Potential(compact, pixel, dz), occupied, n


def project_atoms(layout, positions_xy, gpts, sampling, parametrization):
    """`project` with the form factors and frequencies built for a grid (see there).

    Only the non-empty (species, slice) groups are projected; empty (vacuum) slices
    are zero. Where atoms stand in rows of equal y (crystals), the structure factor
    is factored through the rows (exact; `_project_rows`). Returns (K, ny, nx) for a
    layout of K slices.
    """
    dtype = jnp.result_type(float)
    n_species, n_slices, m = layout.index.shape
    occupied = np.flatnonzero(layout.weight.any(axis=-1).ravel())
    factors, ky, kx = _half_plane_constants(
        layout.numbers, tuple(gpts), tuple(sampling), parametrization,
        np.dtype(dtype).name,
    )  # fmt: skip
    index = layout.index.reshape(-1, m)[occupied]
    weight = layout.weight.reshape(-1, m)[occupied]
    species = jnp.asarray(occupied // n_slices, dtype=np.int32)
    slices = jnp.asarray(occupied % n_slices, dtype=np.int32)
    x, rows_y, member = _rows(index, weight, np.asarray(positions_xy, np.float64))
    if 2 * rows_y.shape[1] <= m:  # rows of a crystal: factor the product (exact)
        return _project_rows(
            jnp.asarray(x, dtype=dtype),
            jnp.asarray(rows_y, dtype=dtype),
            jnp.asarray(member, dtype=dtype),
            factors,
            ky,
            kx,
            species,
            slices,
            n_slices=n_slices,
            nx=int(gpts[1]),
        )
    return _project_groups(
        jnp.asarray(positions_xy, dtype=dtype),
        jnp.asarray(index),
        jnp.asarray(weight, dtype=dtype),
        factors,
        ky,
        kx,
        species,
        slices,
        n_slices=n_slices,
        nx=int(gpts[1]),
    )

"""Atomic structures for HRTEM: 2-D materials, zone-axis crystals, a supported particle.

All builders return `ase.Atoms` with an orthogonal, axis-aligned cell (what
`temsim.potential_slices` needs), the beam along z, atoms inside the cell. Randomness
(amorphous support, displacements, vacancies) comes from an explicit integer `seed`.
Lattice constants [Å]: graphene 2.46, hBN 2.504, MoS2 3.18 (thickness 3.19), Si 5.431,
SrTiO3 3.905, Au 4.08 (room-temperature values, e.g. Kittel, Introduction to Solid
State Physics, 8th ed., Table 4 of Ch. 1); black phosphorus a = 3.3136, c = 4.3763
(Brown & Rundqvist, Acta Cryst. 19, 684 (1965)).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import ase
import numpy as np
from ase.build import bulk, make_supercell, mx2
from ase.build import graphene as _ase_graphene

__all__ = [
    "STRUCTURES",
    "au_nanoparticle",
    "graphene",
    "hbn",
    "mos2",
    "orthogonalize_cell",
    "phosphorene",
    "random_displacements",
    "si110",
    "srtio3",
    "vacancies",
]


def _check_repeat(repeat, n=3) -> tuple[int, ...]:
    values = tuple(repeat) if np.ndim(repeat) else (repeat,) * n
    if len(values) != n or any(
        not isinstance(r, int | np.integer) or r < 1 for r in values
    ):
        raise ValueError(f"repeat must be {n} positive ints, got {repeat!r}")
    return tuple(int(r) for r in values)


def _to_diagonal(atoms: ase.Atoms) -> ase.Atoms:
    """Rotate an atoms object with mutually orthogonal cell vectors onto the axes."""
    atoms = atoms.copy()
    lengths = atoms.cell.lengths()
    atoms.set_cell(np.diag(lengths), scale_atoms=True)
    atoms.wrap()
    return atoms


def orthogonalize_cell(atoms: ase.Atoms, *, max_repetitions: int = 4) -> ase.Atoms:
    """Smallest orthogonal supercell of a cell whose c axis is perpendicular to a, b.

    Finds integers (n1, n2), |n| <= max_repetitions, with n1 a + n2 b perpendicular to a
    (for a hexagonal cell: a + 2b, giving the a x sqrt(3) a rectangle) and returns the
    supercell (a, n1 a + n2 b, c) rotated so that a || x, the beam along z.
    """
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    a, b, c = cell
    if abs(np.dot(a, c)) > 1e-6 or abs(np.dot(b, c)) > 1e-6 or np.linalg.norm(c) == 0:
        raise ValueError(
            f"atoms must have a cell whose c vector is perpendicular to a and b, got "
            f"cell {cell.round(4).tolist()}"
        )
    best = None
    reps = range(-max_repetitions, max_repetitions + 1)
    for n1, n2 in itertools.product(reps, reps):
        if n2 == 0:
            continue
        v = n1 * a + n2 * b
        if abs(np.dot(v, a)) < 1e-6 * np.dot(a, a) and (
            best is None or np.linalg.norm(v) < np.linalg.norm(best[2])
        ):
            best = (n1, n2, v)
    if best is None:
        raise ValueError(
            f"no orthogonal supercell with up to max_repetitions={max_repetitions} "
            f"repetitions of cell {cell.round(4).tolist()}; raise max_repetitions"
        )
    n1, n2, _ = best
    sign = 1 if n2 > 0 else -1
    supercell = make_supercell(atoms, [[1, 0, 0], [sign * n1, sign * n2, 0], [0, 0, 1]])
    return _to_diagonal(supercell)


def _layer(atoms: ase.Atoms, repeat, vacuum: float) -> ase.Atoms:
    nx, ny = _check_repeat(repeat, 2)
    if not vacuum >= 0:
        raise ValueError(f"vacuum must be >= 0 Å, got {vacuum!r}")
    atoms = orthogonalize_cell(atoms) * (nx, ny, 1)
    atoms.center(vacuum=vacuum, axis=2)
    return atoms


def graphene(*, a: float = 2.46, repeat=(1, 1), vacuum: float = 2.0) -> ase.Atoms:
    """Graphene monolayer, rectangular a x sqrt(3) a cell (4 atoms) x repeat [Å]."""
    return _layer(_ase_graphene("C2", a=a, vacuum=1.0), repeat, vacuum)


def hbn(*, a: float = 2.504, repeat=(1, 1), vacuum: float = 2.0) -> ase.Atoms:
    """Hexagonal boron nitride monolayer, rectangular cell (4 atoms) x repeat [Å]."""
    return _layer(_ase_graphene("BN", a=a, vacuum=1.0), repeat, vacuum)


def mos2(
    *, a: float = 3.18, thickness: float = 3.19, repeat=(1, 1), vacuum: float = 2.0
) -> ase.Atoms:
    """2H-MoS2 monolayer (S-Mo-S), rectangular a x sqrt(3) a cell (6 atoms) [Å]."""
    return _layer(
        mx2("MoS2", "2H", a=a, thickness=thickness, vacuum=1.0), repeat, vacuum
    )


def phosphorene(
    *,
    a: float = 3.3136,
    c: float = 4.3763,
    y: float = 0.10168,
    z: float = 0.08056,
    b: float = 10.478,
    repeat=(1, 1),
    vacuum: float = 2.0,
) -> ase.Atoms:
    """Phosphorene (one puckered layer of black phosphorus), a x c cell (4 atoms) [Å].

    x || zigzag (a), y || armchair (c), z: the beam. Black phosphorus is Cmce with P
    on 8f (0, y, z) (Brown & Rundqvist 1965); one layer holds (0, +-y, +-z) and
    (1/2, +-y, 1/2 -+ z), so the pucker is 2 y b = 2.13 Å and the bonds 2.22 and
    2.24 Å. A rectangular lattice of zigzag rows: a structure family unlike the
    hexagonal graphene/hBN/MoS2 (the held-out family of benchmarks/denoise.py).
    """
    h = y * b
    frac = [(0.0, z, h), (0.0, 1.0 - z, -h), (0.5, 0.5 - z, h), (0.5, 0.5 + z, -h)]
    positions = [(fx * a, fy * c, fz + h) for fx, fy, fz in frac]
    atoms = ase.Atoms("P4", positions=positions, cell=[a, c, 2 * h + 10.0], pbc=True)
    return _layer(atoms, repeat, vacuum)


def si110(*, a: float = 5.431, repeat=(1, 1, 1)) -> ase.Atoms:
    """Silicon (diamond) viewed along [110]: cell a x sqrt(2) a x sqrt(2) a (16 atoms).

    x || [001], y || [1-10], z || [110] (the beam); the dumbbells are 1.36 Å apart.
    """
    cubic = bulk("Si", "diamond", a=a, cubic=True)
    atoms = _to_diagonal(make_supercell(cubic, [[0, 0, 1], [1, -1, 0], [1, 1, 0]]))
    return atoms * _check_repeat(repeat)


def srtio3(*, a: float = 3.905, repeat=(1, 1, 1)) -> ase.Atoms:
    """Cubic perovskite SrTiO3 viewed along [001] (5 atoms per a^3 cell)."""
    scaled = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    atoms = ase.Atoms("SrTiO3", scaled_positions=scaled, cell=[a, a, a], pbc=True)
    return atoms * _check_repeat(repeat)


def au_nanoparticle(
    *,
    seed: int,
    radius: float = 8.0,
    extent: tuple[float, float] = (40.0, 40.0),
    support_thickness: float = 10.0,
    density: float = 2.0,
    min_distance: float = 1.3,
    vacuum: float = 2.0,
) -> ase.Atoms:
    """A spherical fcc gold particle on an amorphous-carbon support [Å, g/cm^3].

    The particle (Au a = 4.08, [001] along the beam) sits 1 Å above the support slab.
    The support is amorphous carbon at the given mass density: random sequential
    addition of uniformly drawn positions (from `seed`), rejecting any closer than
    `min_distance` to an accepted atom (periodic in x and y).
    """
    if not radius > 0 or not support_thickness >= 0 or not density > 0:
        raise ValueError(
            f"radius and density must be > 0 and support_thickness >= 0, got "
            f"{radius!r}, {density!r}, {support_thickness!r}"
        )
    lx, ly = extent
    if min(lx, ly) < 2 * radius:
        raise ValueError(f"extent {extent!r} must be at least the particle diameter")
    carbon = _random_packing(
        np.random.default_rng(seed),
        (lx, ly, support_thickness),
        round(density / 12.011 * 6.02214076e23 * 1e-24 * lx * ly * support_thickness),
        min_distance,
    )
    gold = bulk("Au", "fcc", a=4.08, cubic=True) * ((int(2 * radius / 4.08) + 2,) * 3)
    centre = gold.get_center_of_mass()
    keep = np.linalg.norm(gold.positions - centre, axis=1) <= radius
    au = gold.positions[keep] - centre
    z0 = support_thickness + 1.0 + radius
    au = au + np.array([lx / 2, ly / 2, z0])
    atoms = ase.Atoms(
        ["C"] * len(carbon) + ["Au"] * len(au),
        positions=np.concatenate([carbon, au]),
        cell=[lx, ly, 1.0],
        pbc=True,
    )
    atoms.center(vacuum=vacuum, axis=2)
    return atoms


def _random_packing(rng, box, n, min_distance, max_tries=200):
    """n points in a box [Å], periodic in x, y, pairwise >= min_distance apart."""
    box = np.asarray(box, dtype=np.float64)
    points = np.empty((0, 3))
    for _ in range(max_tries):
        if len(points) == n:
            return points
        trial = rng.uniform(0.0, 1.0, (n - len(points), 3)) * box
        for p in trial:
            d = p - points
            d[:, :2] -= box[:2] * np.round(d[:, :2] / box[:2])
            if len(points) == 0 or np.min(np.sum(d * d, axis=1)) >= min_distance**2:
                points = np.concatenate([points, p[None]])
    raise ValueError(
        f"could not place {n} atoms min_distance={min_distance} Å apart in a "
        f"{box.tolist()} Å box; lower density or min_distance"
    )


def random_displacements(atoms: ase.Atoms, sigma: float, *, seed: int) -> ase.Atoms:
    """A copy with every atom moved by N(0, sigma^2) [Å] per direction (numpy seed)."""
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0 Å, got {sigma!r}")
    out = atoms.copy()
    rng = np.random.default_rng(seed)
    out.positions = atoms.positions + rng.normal(0.0, sigma, atoms.positions.shape)
    return out


def vacancies(
    atoms: ase.Atoms, fraction: float, *, seed: int, element: str | None = None
) -> ase.Atoms:
    """A copy with round(fraction n) atoms (of `element` if given) removed at random."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    candidates = np.flatnonzero(
        np.ones(len(atoms), bool)
        if element is None
        else np.array(atoms.get_chemical_symbols()) == element
    )
    if element is not None and len(candidates) == 0:
        raise ValueError(
            f"element {element!r} is not in the structure, which has "
            f"{sorted(set(atoms.get_chemical_symbols()))}"
        )
    rng = np.random.default_rng(seed)
    remove = rng.choice(
        candidates, int(round(fraction * len(candidates))), replace=False
    )
    out = atoms.copy()
    del out[list(remove)]
    return out


STRUCTURES: dict[str, Callable[..., ase.Atoms]] = {
    "graphene": graphene,
    "hbn": hbn,
    "mos2": mos2,
    "phosphorene": phosphorene,
    "si110": si110,
    "srtio3": srtio3,
    "au_nanoparticle": au_nanoparticle,
}

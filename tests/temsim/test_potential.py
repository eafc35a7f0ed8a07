"""Projected potential slices in Fourier space (temsim.potential)."""

import math

import ase
import jax
import numpy as np
import pytest

import temsim
from temsim import potential as pot
from temsim.parametrizations import projected_potential


def _atoms(symbols, positions, cell):
    return ase.Atoms(symbols, positions=positions, cell=cell, pbc=True)


def test_q0_component_is_integral_from_fe0():
    """sum_pixels v_k dx dy = 2 pi a0 e sum_j f_e(0) over the slice's atoms."""
    atoms = _atoms(
        "CCAu", [[1.0, 2.0, 0.5], [3.3, 4.1, 0.7], [5.0, 5.0, 2.5]], [8, 9, 3]
    )
    p = temsim.potential_slices(atoms, gpts=(72, 64), slice_thickness=1.0)
    assert p.array.shape == (3, 72, 64)
    integral = np.asarray(p.array).sum(axis=(1, 2)) * p.sampling[0] * p.sampling[1]
    prefactor = 2 * math.pi * 0.529177210903 * 14.399645478  # 2 pi a0 e [V Å^2]
    f0 = {s: float(temsim.scattering_factor(s, 0.0)) for s in ("C", "Au")}
    expected = [2 * prefactor * f0["C"], 0.0, prefactor * f0["Au"]]
    np.testing.assert_allclose(integral, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("parametrization", ["lobato", "kirkland"])
def test_real_space_profile_matches_closed_form(parametrization):
    """A lone atom in a large cell: the Fourier route reproduces v_z(R) (Nyquist
    ringing and periodic images limit the agreement to a few 1e-3)."""
    atoms = _atoms("Si", [[8.0, 8.0, 1.0]], [16, 16, 2])
    p = temsim.potential_slices(
        atoms, sampling=0.04, slice_thickness=2.0, parametrization=parametrization
    )
    row = np.asarray(p.array)[0, 200, 200:]
    radius = np.arange(row.shape[0]) * p.sampling[1]
    sel = (radius >= 0.3) & (radius <= 1.5)
    closed = np.asarray(projected_potential("Si", radius[sel], parametrization))
    np.testing.assert_allclose(row[sel], closed, rtol=1.5e-2)


def test_slicing_and_assignment():
    atoms = _atoms("CC", [[1.0, 1.0, 0.2], [1.0, 1.0, 4.9]], [4, 4, 5.0])
    p = temsim.potential_slices(atoms, gpts=16, slice_thickness=1.2)
    # ceil(5 / 1.2) = 5 equal slices of 1.0 Å (abTEM's convention)
    assert p.n_slices == 5 and p.slice_thickness == pytest.approx(1.0)
    assert p.thickness == pytest.approx(5.0)
    nonzero = np.abs(np.asarray(p.array)).sum(axis=(1, 2)) > 0
    np.testing.assert_array_equal(nonzero, [True, False, False, False, True])


def test_whole_pixel_shift_rolls_the_array_and_cell_is_periodic():
    a = _atoms("N", [[2.0, 3.0, 0.5]], [6.4, 4.8, 1.0])
    b = _atoms("N", [[2.0 + 0.4 + 6.4, 3.0 - 0.3, 0.5]], [6.4, 4.8, 1.0])
    pa = np.asarray(temsim.potential_slices(a, sampling=0.1).array)
    pb = np.asarray(temsim.potential_slices(b, sampling=0.1).array)
    np.testing.assert_allclose(pb, np.roll(pa, (-3, 4), axis=(1, 2)), atol=1e-9)


def _kernel_inputs(atoms, gpts, sampling):
    lz = atoms.cell[2, 2]
    layout = pot.slice_layout(atoms.numbers, atoms.positions[:, 2], 2, lz / 2)
    factors = pot.form_factors(layout.numbers, gpts, sampling, "lobato")
    ky, kx = pot.spatial_frequencies(gpts, sampling)
    return layout, factors, (ky, kx)


def test_jit_equals_eager_and_vmap_equals_loop():
    atoms = _atoms("COC", [[1, 1, 0.5], [2, 3, 1.5], [3.5, 1, 1.7]], [4, 4, 2])
    gpts, sampling = (32, 32), (0.125, 0.125)
    layout, factors, freqs = _kernel_inputs(atoms, gpts, sampling)
    args = (layout.index, layout.weight, factors, freqs)
    xy = atoms.positions[:, :2]
    jitted = pot.project(xy, *args)
    with jax.disable_jit():
        eager = pot.project(xy, *args)
    np.testing.assert_allclose(jitted, eager, atol=1e-10)
    batch = xy[None] + np.random.default_rng(0).normal(0, 0.1, (3, *xy.shape))
    vmapped = jax.vmap(lambda p: pot.project(p, *args))(batch)
    looped = np.stack([pot.project(p, *args) for p in batch])
    np.testing.assert_allclose(vmapped, looped, atol=1e-10)


def test_pytree_roundtrip():
    p = temsim.potential_slices(_atoms("C", [[1, 1, 1]], [2, 2, 2]), gpts=8)
    leaves, tree = jax.tree_util.tree_flatten(p)
    q = jax.tree_util.tree_unflatten(tree, leaves)
    assert len(leaves) == 1 and q.sampling == p.sampling
    assert q.slice_thickness == p.slice_thickness


def test_empty_atoms_give_zero_potential():
    p = temsim.potential_slices(ase.Atoms(cell=[3, 3, 2]), gpts=8)
    assert p.array.shape == (2, 8, 8) and not np.any(np.asarray(p.array))


GOOD = _atoms("C", [[1, 1, 1]], [4, 4, 2])


@pytest.mark.parametrize(
    "atoms, kwargs, match",
    [
        (_atoms("C", [[1, 1, 1]], [[4, 0, 0], [2, 3, 0], [0, 0, 2]]), {"gpts": 8},
         "orthogonal, axis-aligned cell"),
        (GOOD, {"gpts": 8, "sampling": 0.1}, "exactly one of sampling"),
        (GOOD, {}, "exactly one of sampling"),
        (GOOD, {"sampling": -0.1}, "sampling must be a positive"),
        (GOOD, {"gpts": 0}, "gpts must be a positive"),
        (GOOD, {"gpts": 8, "slice_thickness": 0.0}, "slice_thickness must be"),
        (GOOD, {"gpts": 8, "parametrization": "doyle"}, "parametrization must be"),
        (_atoms("X", [[1, 1, 1]], [4, 4, 2]), {"gpts": 8}, "element must be"),
        ("graphene", {"gpts": 8}, "atoms must be an ase.Atoms"),
    ],
)  # fmt: skip
def test_bad_input_raises(atoms, kwargs, match):
    with pytest.raises(ValueError, match=match):
        temsim.potential_slices(atoms, **kwargs)


def test_vacuum_slices_are_skipped_without_changing_the_result():
    """potential_slices projects only occupied slices; the full layout agrees."""
    atoms = _atoms("CSi", [[1.0, 1.0, 0.5], [2.5, 3.0, 4.5]], [4, 4, 6])
    p = temsim.potential_slices(atoms, gpts=(24, 24), slice_thickness=1.0)
    layout = pot.slice_layout(atoms.numbers, atoms.positions[:, 2], 6, 1.0)
    full = pot.project_atoms(layout, atoms.positions[:, :2], (24, 24), p.sampling,
                             "lobato")  # fmt: skip
    np.testing.assert_allclose(p.array, full, atol=1e-10)
    compact, occupied = pot.occupied_layout(atoms.numbers, atoms.positions[:, 2], 6, 1)
    np.testing.assert_array_equal(occupied, [0, 4])
    assert compact.index.shape == (2, 2, 1)


def test_grid_beyond_available_memory_is_refused_before_allocating(monkeypatch):
    # 30 Å at 1e-4 Å: 3e5 x 3e5 pixels, about 2 TiB in float64
    atoms = _atoms("C", [[1, 1, 1]], [30, 30, 2])
    with pytest.raises(ValueError, match="coarser sampling, thicker slices") as info:
        temsim.potential_slices(atoms, sampling=1e-4)
    assert "300000 x 300000 grid with 2 slices" in str(info.value)
    assert "GiB of memory is available" in str(info.value)
    monkeypatch.setattr(pot, "available_memory", lambda: 1_000_000)
    estimate = pot.estimate_memory((96, 96), 2, n_groups=1, n_occupied=1)
    assert estimate > 1_000_000
    with pytest.raises(ValueError, match=r"needs about 0\.0\d+ GiB, but only"):
        temsim.potential_slices(atoms, gpts=96)
    temsim.potential_slices(atoms, gpts=32)  # fits in 1 MB


def test_available_memory_is_positive():
    available = pot.available_memory()
    assert available is None or available > 0


def test_rows_of_a_crystal_factor_exactly():
    """Atoms sharing a y coordinate (crystal rows) take the factored path in
    project_atoms; it equals the general per-atom kernel `project`."""
    from temsim import structures

    atoms = structures.mos2(repeat=(4, 3), vacuum=2.5)
    gpts, sampling = (40, 48), (atoms.cell[1, 1] / 40, atoms.cell[0, 0] / 48)
    layout, _ = pot.occupied_layout(atoms.numbers, atoms.positions[:, 2], 9, 8.19 / 9)
    index = layout.index.reshape(-1, layout.index.shape[-1])
    _, rows_y, _ = pot._rows(index, layout.weight.reshape(index.shape),
                             atoms.positions[:, :2])  # fmt: skip
    assert 2 * rows_y.shape[1] <= index.shape[1]  # the factored path is taken
    factored = pot.project_atoms(layout, atoms.positions[:, :2], gpts, sampling,
                                 "lobato")  # fmt: skip
    factors = pot.form_factors(layout.numbers, gpts, sampling, "lobato")
    general = pot.project(atoms.positions[:, :2], layout.index, layout.weight,
                          factors, pot.spatial_frequencies(gpts, sampling))  # fmt: skip
    np.testing.assert_allclose(factored, general, atol=1e-9 * np.abs(general).max())

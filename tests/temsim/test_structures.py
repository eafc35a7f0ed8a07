"""Structure builders (temsim.structures)."""

import numpy as np
import pytest
from ase.build import graphene as ase_graphene
from ase.neighborlist import neighbor_list

import temsim
from temsim import structures


def _nearest(atoms, a=None, b=None):
    i, j, d = neighbor_list("ijd", atoms, 3.5)
    symbols = np.array(atoms.get_chemical_symbols())
    keep = np.ones_like(d, bool)
    if a is not None:
        keep &= (symbols[i] == a) & (symbols[j] == b)
    return d[keep].min()


@pytest.mark.parametrize(
    "name, n_atoms, pair, distance",
    [
        ("graphene", 4, ("C", "C"), 1.4203),
        ("hbn", 4, ("B", "N"), 1.4457),
        ("mos2", 6, ("Mo", "S"), 2.4320),  # sqrt(a^2/3 + (t/2)^2)
        ("si110", 16, ("Si", "Si"), 2.3517),
        ("srtio3", 5, ("Ti", "O"), 1.9525),
        ("phosphorene", 4, ("P", "P"), 2.2240),
    ],
)
def test_crystals_are_orthogonal_and_have_the_right_bonds(
    name, n_atoms, pair, distance
):
    atoms = structures.STRUCTURES[name]()
    assert len(atoms) == n_atoms
    cell = atoms.cell[:]
    np.testing.assert_allclose(cell, np.diag(np.diag(cell)), atol=1e-9)
    assert _nearest(atoms, *pair) == pytest.approx(distance, abs=2e-3)
    p = temsim.potential_slices(atoms, sampling=0.2)  # accepted as is
    assert p.array.shape[0] >= 1


def test_phosphorene_is_threefold_bonded_and_puckered():
    # Black phosphorus (Brown & Rundqvist 1965): two in-plane bonds of 2.224 Å and
    # one inter-plane bond of 2.244 Å per atom; pucker 2 y b = 2.131 Å.
    atoms = structures.phosphorene(repeat=(3, 3))
    i, _, d = neighbor_list("ijd", atoms, 2.5)
    assert np.bincount(i, minlength=len(atoms)).tolist() == [3] * len(atoms)
    np.testing.assert_allclose(
        np.sort(d.reshape(-1))[::36], [2.224, 2.224, 2.244], atol=2e-3
    )
    z = atoms.positions[:, 2]
    assert z.max() - z.min() == pytest.approx(2 * 0.10168 * 10.478, abs=1e-9)


def test_orthogonalize_cell_keeps_density():
    hexagonal = ase_graphene("C2", a=2.46, vacuum=1.0)
    rect = structures.orthogonalize_cell(hexagonal)
    area_hex = abs(np.linalg.det(hexagonal.cell[:2, :2]))
    assert len(rect) / (rect.cell[0, 0] * rect.cell[1, 1]) == pytest.approx(
        len(hexagonal) / area_hex
    )
    assert rect.cell[1, 1] == pytest.approx(2.46 * np.sqrt(3))


def test_orthogonalize_cell_rejects_tilted_c():
    atoms = ase_graphene("C2", vacuum=1.0)
    atoms.cell[2] = [1.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="c vector is perpendicular"):
        structures.orthogonalize_cell(atoms)


def test_gold_nanoparticle_on_amorphous_carbon_is_seeded():
    kw = dict(radius=5.0, extent=(20.0, 20.0), support_thickness=5.0)
    a = structures.au_nanoparticle(seed=3, **kw)
    b = structures.au_nanoparticle(seed=3, **kw)
    c = structures.au_nanoparticle(seed=4, **kw)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.array_equal(a.positions, c.positions)
    symbols = np.array(a.get_chemical_symbols())
    carbon, gold = a[symbols == "C"], a[symbols == "Au"]
    density = len(carbon) * 12.011 / 6.02214076e23 / (20 * 20 * 5 * 1e-24)
    assert density == pytest.approx(2.0, rel=0.01)
    assert _nearest(carbon) >= 1.3 - 1e-9
    assert _nearest(gold) == pytest.approx(4.08 / np.sqrt(2), abs=1e-6)
    assert gold.positions[:, 2].min() > carbon.positions[:, 2].max()


def test_displacements_and_vacancies_are_seeded():
    atoms = structures.graphene(repeat=(5, 5))
    a = structures.random_displacements(atoms, 0.05, seed=1)
    np.testing.assert_array_equal(
        a.positions, structures.random_displacements(atoms, 0.05, seed=1).positions
    )
    assert np.std(a.positions - atoms.positions) == pytest.approx(0.05, rel=0.2)
    v = structures.vacancies(atoms, 0.1, seed=2)
    assert len(v) == len(atoms) - 10
    np.testing.assert_array_equal(
        v.positions, structures.vacancies(atoms, 0.1, seed=2).positions
    )
    mixed = structures.vacancies(
        structures.mos2(repeat=(3, 3)), 0.25, seed=0, element="S"
    )
    assert mixed.get_chemical_formula() == "Mo18S27"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: structures.graphene(repeat=(0, 1)), "repeat must be 2 positive"),
        (lambda: structures.si110(repeat=(1, 1)), "repeat must be 3 positive"),
        (lambda: structures.vacancies(structures.graphene(), 1.5, seed=0),
         r"fraction must be in \[0, 1\]"),
        (lambda: structures.vacancies(structures.graphene(), 0.5, seed=0,
                                      element="N"), "element 'N' is not in"),
        (lambda: structures.random_displacements(structures.graphene(), -1, seed=0),
         "sigma must be >= 0"),
        (lambda: structures.au_nanoparticle(seed=0, radius=30.0),
         "must be at least the particle diameter"),
    ],
)  # fmt: skip
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""Frozen-phonon averaging (temsim.phonons)."""

import jax
import numpy as np
import pytest

import temsim
from temsim import phonons, structures

KW = dict(energy=80e3, sampling=0.1, defocus=-40.0, Cs=-1e5, semiangle_cutoff=40.0)


@pytest.fixture(scope="module")
def atoms():
    return structures.hbn(repeat=(2, 1))


def test_zero_displacement_equals_static_image(atoms, key):
    static = temsim.hrtem(atoms, **KW).array
    frozen = temsim.frozen_phonons_hrtem(
        atoms, key=key, num_configs=2, sigmas=0.0, **KW
    )
    np.testing.assert_allclose(frozen.array, static, atol=1e-12)
    assert frozen.metadata["num_configs"] == 2


def test_same_key_same_image_and_batching_is_invisible(atoms, key):
    sigmas = {"B": 0.08, "N": 0.06}
    run = lambda k, b: (
        temsim.frozen_phonons_hrtem(
            atoms, key=k, num_configs=4, sigmas=sigmas, batch_size=b, **KW
        ).array
    )
    vmapped = run(key, None)
    # batches of 3 (a vmapped batch plus a remainder) == one vmap over all 4
    np.testing.assert_allclose(run(key, 3), vmapped, atol=1e-12)
    assert np.abs(np.asarray(run(jax.random.key(1), None) - vmapped)).max() > 1e-4


def test_averaging_damps_contrast(atoms, key):
    static = np.asarray(temsim.hrtem(atoms, **KW).array)
    frozen = np.asarray(
        temsim.frozen_phonons_hrtem(
            atoms, key=key, num_configs=8, sigmas=0.15, **KW
        ).array
    )
    assert frozen.std() < static.std()
    assert frozen.mean() == pytest.approx(static.mean(), abs=2e-3)


def test_displacement_statistics_are_gaussian_per_element(key):
    numbers = np.array([6] * 20000 + [79] * 20000)
    s = phonons.atom_sigmas(numbers, {"C": 0.1, "Au": 0.05})
    u = np.asarray(phonons.displacements(key, s))
    assert u.shape == (40000, 3)
    np.testing.assert_allclose(u[:20000].std(axis=0), 0.1, rtol=0.03)
    np.testing.assert_allclose(u[20000:].std(axis=0), 0.05, rtol=0.03)
    # Debye-Waller: <exp(-2 pi i q u)> = exp(-2 pi^2 sigma^2 q^2) for q = 2 / Å
    q = 2.0
    dw = np.mean(np.cos(2 * np.pi * q * u[:20000, 0]))
    assert dw == pytest.approx(np.exp(-2 * np.pi**2 * 0.01 * q**2), abs=0.02)


def test_rattle_is_reproducible(atoms, key):
    a, b = (
        phonons.rattle(atoms, key=key, sigmas=0.1),
        phonons.rattle(atoms, key=key, sigmas=0.1),
    )
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, atoms.positions)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigmas": {"B": 0.1}}, r"missing Z = \[7\]"),
        ({"sigmas": -0.1}, "sigmas must be finite"),
        ({"num_configs": 0}, "num_configs must be an int >= 1"),
        ({"batch_size": 0}, "batch_size must be None or an int"),
        ({"energy": 0.0}, "energy must be a positive"),
    ],
)
def test_bad_input_raises(atoms, key, kwargs, match):
    kw = dict(KW, num_configs=2, sigmas=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        temsim.frozen_phonons_hrtem(atoms, key=key, **kw)

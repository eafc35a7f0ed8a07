"""HRTEM image formation end to end (temsim.hrtem), with two outside oracles:
Kirkland's Fig. 5.12 and abTEM."""

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import temsim
from temsim import structures
from temsim.hrtem import hrtem_from_potential, image_wave
from temsim.multislice import antialias_aperture, multislice
from temsim.optics import angular_grid, chi


def test_kirkland_fig_5_12_single_atoms():
    """Kirkland 2010, Fig. 5.12: C, Si, Cu, Au, U in a 50 x 50 x 8 Å cell, 512^2 pixels,
    200 kV, Kirkland parametrization, defocus 700 Å, Cs 1.3 mm, aperture 10.37 mrad:
    the image ranges from 0.72 to 1.03 (we get 0.7219 and 1.0300)."""
    atoms = ase.Atoms(
        "CSiCuAuU",
        positions=[[x, 25.0, 4.0] for x in (5.0, 15.0, 25.0, 35.0, 45.0)],
        cell=[50.0, 50.0, 8.0],
    )
    image = temsim.hrtem(
        atoms, energy=200e3, sampling=50.0 / 512, defocus=700.0, Cs=1.3e7,
        semiangle_cutoff=10.37, slice_thickness=1.0, parametrization="kirkland",
    )  # fmt: skip
    array = np.asarray(image.array)
    assert array.shape == (512, 512)
    assert array.min() == pytest.approx(0.72, abs=0.01)
    assert array.max() == pytest.approx(1.03, abs=0.01)
    # the heavier the atom, the darker its centre (positive defocus = underfocus)
    centres = [array[256, int(round(x / (50 / 512)))] for x in (5, 15, 25, 35, 45)]
    assert np.all(np.diff(centres) < 0)
    assert image.metadata["defocus"] == 700.0 and image.metadata["energy"] == 200e3


def test_vacuum_images_to_one():
    image = temsim.hrtem(
        ase.Atoms(cell=[4, 4, 2]),
        energy=80e3,
        sampling=0.1,
        defocus=100.0,
        Cs=1e5,
        semiangle_cutoff=20.0,
    )
    np.testing.assert_allclose(image.array, 1.0, atol=1e-12)


def test_weak_phase_object_matches_linear_theory():
    """A weak scatterer (sigma v_z << 1): I = 1 + 2 sigma F^-1[sin(chi) A V] to first
    order, chi including the propagation to the slice's exit plane (C10 += dz)."""
    energy, dz = 80e3, 2.0
    atoms = ase.Atoms("H", positions=[[3.2, 3.2, 1.0]], cell=[6.4, 6.4, dz])
    optics = dict(defocus=80.0, Cs=5e5, semiangle_cutoff=40.0)
    p = temsim.potential_slices(atoms, sampling=0.1, slice_thickness=dz)
    # a tenth of hydrogen: the residual is second order in sigma v (2% at full H)
    p = temsim.Potential(0.1 * p.array, p.sampling, p.slice_thickness)
    image = np.asarray(hrtem_from_potential(p, energy=energy, **optics).array)
    alpha, phi = angular_grid(p.gpts, p.sampling, energy=energy)
    phase = np.asarray(chi(alpha, phi, energy=energy, C10=dz - 80.0, Cs=5e5))
    band = antialias_aperture(p.gpts, p.sampling) * (alpha <= 40e-3)
    v = np.fft.fft2(np.asarray(p.array)[0])
    linear = (
        2
        * float(temsim.energy2sigma(energy))
        * np.real(np.fft.ifft2(np.sin(phase) * band * v))
    )
    contrast = image - 1
    assert np.abs(contrast).max() > 5e-4
    np.testing.assert_allclose(contrast, linear, atol=0.003 * np.abs(linear).max())


def test_focal_spread_reduces_contrast():
    atoms = structures.graphene(repeat=(2, 1))
    kw = dict(energy=80e3, sampling=0.1, defocus=-50.0, Cs=-1e5)
    sharp = temsim.hrtem(atoms, **kw).array
    damped = temsim.hrtem(atoms, focal_spread=60.0, **kw).array
    assert float(jnp.std(damped)) < 0.9 * float(jnp.std(sharp))


def test_jit_equals_eager_and_vmap_over_defocus_equals_loop():
    atoms = structures.graphene(repeat=(2, 1))
    p = temsim.potential_slices(atoms, sampling=0.1)
    fn = lambda a: hrtem_from_potential(
        temsim.Potential(a, p.sampling, p.slice_thickness), energy=80e3,
        defocus=30.0, Cs=1e5,
    ).array  # fmt: skip
    with jax.disable_jit():
        eager = fn(p.array)
    np.testing.assert_allclose(jax.jit(fn)(p.array), eager, atol=1e-12)
    wave = multislice(p, energy=80e3)
    series = lambda d: image_wave(wave, p.sampling, energy=80e3, defocus=d, Cs=1e5)
    defoci = jnp.array([-50.0, 0.0, 70.0])
    np.testing.assert_allclose(
        jax.vmap(series)(defoci), np.stack([series(d) for d in defoci]), atol=1e-12
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"energy": -80e3}, "energy must be a positive"),
        ({"sampling": 0.0}, "sampling must be a positive"),
        ({"semiangle_cutoff": -1.0}, "semiangle_cutoff must be > 0"),
        ({"parametrization": "peng"}, "parametrization must be one of"),
        ({"spherical": 1.0}, "unknown aberration 'spherical'"),
    ],
)
def test_bad_input_raises(kwargs, match):
    kw = dict(energy=80e3, sampling=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        temsim.hrtem(structures.graphene(), **kw)


def test_hexagonal_cell_is_rejected_with_a_pointer():
    from ase.build import graphene

    with pytest.raises(ValueError, match="orthogonalize_cell"):
        temsim.hrtem(graphene(vacuum=2.0), energy=80e3, sampling=0.1)


def test_graphene_matches_abtem():
    """Side by side with abTEM (GPL, test-only): graphene at 80 kV, Lobato, 0.05 Å
    pixels, 1 Å slices, same CTF. Pearson >= 0.999 and relative RMS difference <= 1%
    after normalising both to unit mean (we get 0.999998 and 0.03%)."""
    abtem = pytest.importorskip("abtem")
    abtem.config.set({"precision": "float64", "device": "cpu"})
    atoms = structures.graphene(repeat=(4, 3))
    optics = dict(defocus=-60.0, Cs=-2e5, semiangle_cutoff=35.0)
    potential = abtem.Potential(
        atoms, sampling=0.05, slice_thickness=1.0, parametrization="lobato",
        projection="infinite",
    )  # fmt: skip
    exit_wave = abtem.PlaneWave(energy=80e3).multislice(potential)
    ctf = abtem.CTF(energy=80e3, soft=False, **optics)
    theirs = exit_wave.apply_ctf(ctf).intensity().compute(progress_bar=False).array
    theirs = np.asarray(theirs).T  # abTEM arrays are (x, y)
    ours = np.asarray(
        temsim.hrtem(atoms, energy=80e3, sampling=0.05, slice_thickness=1.0,
                     parametrization="lobato", **optics).array
    )  # fmt: skip
    assert ours.shape == theirs.shape
    a, b = ours / ours.mean(), theirs / theirs.mean()
    pearson = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    relative_rms = np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2))
    print(f"abTEM: pearson={pearson:.7f} relative_rms={relative_rms:.2e}")
    assert pearson >= 0.999, pearson
    assert relative_rms <= 0.01, relative_rms


def test_sampling_too_coarse_for_the_aperture_says_what_is_needed():
    """80 kV (lambda = 0.04176 Å), 35 mrad: the 2/3 band limit needs sampling <=
    (2/3) lambda / (2 alpha) = 0.3977 Å; 0.5 Å (0.492 Å pixels on graphene's cell)
    carries only 28.3 mrad."""
    kw = dict(energy=80e3, semiangle_cutoff=35.0)
    with pytest.raises(ValueError, match=r"sampling 0\.5 Å \(pixel") as info:
        temsim.hrtem(structures.graphene(), sampling=0.5, **kw)
    assert "(pixel 0.492 Å on the grid)" in str(info.value)
    assert "sampling <= 0.3977 Å" in str(info.value)
    assert "up to 28.29 mrad only" in str(info.value)
    temsim.hrtem(structures.graphene(), sampling=0.39, **kw)  # passes
    p = temsim.potential_slices(structures.graphene(), sampling=0.5)
    with pytest.raises(ValueError, match="sampling <= 0.3977 Å"):
        hrtem_from_potential(p, **kw)
    hrtem_from_potential(p, energy=80e3)  # no aperture: nothing to cut


def test_vacuum_skipping_gives_the_same_image():
    atoms = structures.mos2()
    p = temsim.potential_slices(atoms, sampling=0.1, slice_thickness=0.5)
    kw = dict(energy=80e3, defocus=30.0, Cs=1e5, semiangle_cutoff=30.0)
    full = hrtem_from_potential(p, **kw).array
    skipped = hrtem_from_potential(p, skip_vacuum=True, **kw).array
    np.testing.assert_allclose(skipped, full, atol=1e-12)
    np.testing.assert_allclose(temsim.hrtem(atoms, sampling=0.1, slice_thickness=0.5,
                                            **kw).array, full, atol=1e-12)  # fmt: skip

"""Clean-image simulators (temsim.specimens), checked through temsim.dataset."""

import numpy as np
import pytest

from temsim import dataset, specimens


def _strongest_frequency(image, sampling: float) -> float:
    """|k| [1/Å] of the strongest spatial frequency above 0.2/Å (Hann window)."""
    n = image.shape[0]
    x = np.asarray(image, np.float64)
    window = np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fft2((x - x.mean()) * window)) ** 2
    k = np.fft.fftfreq(n, d=sampling)
    kr = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    power[kr < 0.2] = 0.0  # below every reflection: window leakage of the mean
    return float(kr.ravel()[np.argmax(power)])


def _peak_of_one_image(family: str, **config) -> float:
    """Strongest frequency [1/Å] of one clean 128 x 128 image at 0.15 Å/px."""
    cfg = dataset.DatasetConfig(
        n_samples=1,
        shape=(128, 128),
        sampling=0.15,
        families=(family,),
        chunk=1,
        **config,
    )
    return _strongest_frequency(dataset.sample(cfg, 0).clean, 0.15)


def _reflections(family: str) -> np.ndarray:
    """|g| [1/Å] of the first reflections of the projected lattice."""
    h, k = np.meshgrid(np.arange(-3, 4), np.arange(-3, 4), indexing="ij")
    if family == "graphene":  # hexagonal, a = 2.46 Å: |g| = 2/(sqrt 3 a) sqrt(...)
        g = 2 / (np.sqrt(3) * 2.46) * np.sqrt(h**2 + k**2 + h * k)
    else:  # phosphorene: centred rectangular a x c, reflections with h + k even
        g = np.hypot(h / 3.3136, k / 4.3763)[(h + k) % 2 == 0]
    return np.unique(np.round(g[(g > 0) & (g < 0.95)], 4))


@pytest.mark.parametrize("family", ["graphene", "phosphorene"])
def test_family_lattice_shows_in_the_image_spectrum(family):
    # The strongest non-zero spatial frequency of a noise-free single-layer image is
    # a reflection of the family's lattice (which one depends on the CTF): the
    # structure reaches the image. For phosphorene it is also far from every
    # graphene reflection (graphene's 0.469/Å peak lies within 0.6 bins of
    # phosphorene's (02) ring, so the converse is not resolvable at 128 px).
    k_peak = _peak_of_one_image(
        family, layers=(1, 1), displacement=(0.0, 0.0), vacancy=(0.0, 0.0)
    )
    tol = 0.03  # 0.6 FFT bins (1 bin = 1 / (128 x 0.15 Å) = 0.052 / Å)
    assert np.min(np.abs(_reflections(family) - k_peak)) < tol, k_peak
    if family == "phosphorene":
        assert np.min(np.abs(_reflections("graphene") - k_peak)) > tol, k_peak


@pytest.mark.parametrize("family", ["graphene", "mos2"])
def test_synthetic_lattice_is_the_drawn_family(family):
    # hexagonal stand-in: first reflection at 2 / (sqrt(3) a); a one-family config
    # must use that family's a, not the first entry of FAMILIES
    a = specimens.SYNTHETIC_LATTICE[family]
    k_peak = _peak_of_one_image(family, simulator="synthetic")
    assert k_peak == pytest.approx(2 / (np.sqrt(3) * a), abs=0.03)


def test_every_family_has_a_builder_and_constants():
    from temsim import structures

    for family in dataset.FAMILIES:
        assert family in structures.STRUCTURES
        assert specimens.LAYER_SPACING[family] > 3.0
        assert specimens.SYNTHETIC_LATTICE[family] > 2.0

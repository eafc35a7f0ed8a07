import jax
import numpy as np
import pytest
from scipy import stats

from temsim import noise
from temsim.denoise import load_pretrained, psnr
from temsim.denoise.report import example_images
from temsim.denoise.tiling import denoise_image
from temsim.denoise.vst import anscombe, denoise_poisson, inverse_anscombe


def _expected_anscombe(lam: float) -> float:
    """E[A(X)], X ~ Poisson(lam), summed over the pmf (the analytic oracle)."""
    k = np.arange(0, int(lam + 40 * np.sqrt(lam + 1) + 40))
    return float(np.sum(stats.poisson.pmf(k, lam) * 2 * np.sqrt(k + 0.375)))


@pytest.mark.parametrize("lam", [0.5, 1.0, 3.0, 10.0, 100.0])
def test_inverse_maps_the_exact_expectation_back_to_the_mean(lam):
    expected = _expected_anscombe(lam)
    got = float(inverse_anscombe(expected))
    # closed-form approximation of the exact unbiased inverse: measured relative
    # error at most 0.37 % (lam = 1) on this grid; the algebraic inverse
    # (d/2)^2 - 3/8 is off by 23, 18, 8, 2.5 and 0.25 %
    assert got == pytest.approx(lam, rel=5e-3)
    algebraic = (expected / 2) ** 2 - 0.375
    assert abs(algebraic - lam) > 5 * abs(got - lam)


def test_zero_mean_and_below_map_to_zero():
    np.testing.assert_allclose(
        inverse_anscombe(np.array([0.0, 1.0, 1.2247449])), 0.0, atol=1e-6
    )


def test_anscombe_stabilises_the_variance():
    rng = np.random.default_rng(0)
    for lam in (5.0, 30.0, 300.0):
        v = float(np.var(anscombe(rng.poisson(lam, 200_000).astype(float))))
        assert v == pytest.approx(1.0, abs=0.03), (lam, v)


@pytest.fixture(scope="module")
def clean():
    images = example_images("blind")
    return np.stack([images[k] for k in sorted(images)])


def test_low_dose_denoising_beats_the_direct_path(clean):
    model = load_pretrained("blind")
    noisy = np.asarray(noise.poisson(jax.random.key(1), clean, 3.0), np.float32)
    direct = np.asarray(psnr(np.asarray(denoise_image(model, noisy)), clean))
    vst = denoise_poisson(model, noisy, 3.0)
    assert vst.shape == noisy.shape and vst.dtype == np.float32
    gain = np.asarray(psnr(np.asarray(vst), clean)) - direct
    # measured on the benchmark's 8 test images: +1.9 dB mean at 3 e/px
    assert np.mean(gain) > 1.0, gain


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"dose": 0.0}, ValueError, "dose must be finite and > 0"),
        ({"dose": float("nan")}, ValueError, "dose must be finite"),
        ({"dose": "3"}, TypeError, "dose must be a number"),
        ({"dose": 3.0, "image": -np.ones((16, 16))}, ValueError, "image must be >= 0"),
        ({"dose": 3.0, "image": np.full((16, 16), np.nan)}, ValueError, "NaN"),
    ],
)
def test_bad_input_is_refused(kwargs, err, match):
    image = kwargs.pop("image", np.ones((16, 16)))
    with pytest.raises(err, match=match):
        denoise_poisson(None, image, **kwargs)


def test_cli_dose_runs_the_anscombe_path(tmp_path, clean, capsys):
    from temsim import cli

    noisy = np.asarray(noise.poisson(jax.random.key(3), clean[0], 3.0), np.float32)
    np.save(tmp_path / "in.npy", noisy)
    args = ["denoise", str(tmp_path / "in.npy"), str(tmp_path / "o.npy")]
    assert cli.main([*args, "--dose", "3"]) == 0
    expected = np.asarray(denoise_poisson(load_pretrained("blind"), noisy, 3.0))
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), expected, atol=1e-6)
    bad = ["denoise", str(tmp_path / "in.npy"), str(tmp_path / "o2.npy")]
    assert cli.main([*bad, "--dose", "-1"]) == 2
    assert "dose must be finite and > 0" in capsys.readouterr().err
    assert not (tmp_path / "o2.npy").exists()  # nothing written on failure

"""Patch loader: pairs stay aligned under D4 augmentation, seeded order, sharding."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from temsim import dataset, noise
from temsim.loader import Loader, augment

# as in test_dataset.py: equal configs share compiled programs within one process
CONFIG = dataset.DatasetConfig(
    n_samples=16,
    shape=(32, 32),
    sampling=0.1,
    seed=3,
    chunk=2,
    simulator="synthetic",
    noise=noise.MixedSpec(types=("gaussian", "salt_and_pepper", "speckle")),
)

PATCH = 12


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    # the same config as test_dataset: in one pytest process the programs are cached
    return dataset.generate(CONFIG, tmp_path_factory.mktemp("l") / "d.zarr")


def _batches(ds, n, **kw):
    with Loader(ds, patch=PATCH, batch_size=4, **kw) as loader:
        out = []
        for b in loader:
            out.append(b)
            if len(out) == n:
                break
    return out


def _locate(patch, image):
    """All (oy, ox, k, flip) with augment(crop, k, flip) == patch."""
    ny, nx = image.shape
    found = []
    for k in range(4):
        for flip in (False, True):
            for oy in range(ny - PATCH + 1):
                for ox in range(nx - PATCH + 1):
                    crop = image[oy : oy + PATCH, ox : ox + PATCH]
                    if np.array_equal(augment(crop, k, flip), patch):
                        found.append((oy, ox, k, flip))
    return found


def test_patches_are_aligned_crops_under_d4(ds):
    (batch,) = _batches(ds, 1, seed=1)
    assert batch.noisy.shape == (4, PATCH, PATCH, 1)
    assert batch.noisy.dtype == np.float32
    assert batch.noisy.sharding.spec == PartitionSpec("data")
    for j, i in enumerate(batch.index):
        s = ds[int(i)]
        noisy = np.asarray(batch.noisy[j, ..., 0])
        matches = [
            np.array_equal(
                augment(s.noisy[oy : oy + PATCH, ox : ox + PATCH], k, f), noisy
            )
            for oy, ox, k, f in _locate(np.asarray(batch.clean[j, ..., 0]), s.clean)
        ]
        assert any(matches)


def test_order_is_seeded_and_an_epoch_visits_every_sample_once(ds):
    a = _batches(ds, 4, seed=5, epochs=1)
    b = _batches(ds, 4, seed=5, epochs=1)
    c = _batches(ds, 4, seed=6, epochs=1)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.noisy, y.noisy)
    ids = np.concatenate([x.index for x in a])
    np.testing.assert_array_equal(np.sort(ids), np.arange(16))
    assert not np.array_equal(ids, np.concatenate([x.index for x in c]))
    assert len(a) == 4  # epochs=1 ends the stream after 16 // 4 batches


def test_augmentation_draws_all_eight_symmetries(ds):
    counts = {}
    for b in _batches(ds, 8, seed=2, augment=True):
        for j, i in enumerate(b.index):
            found = _locate(np.asarray(b.clean[j, ..., 0]), ds[int(i)].clean)
            assert len(found) == 1  # the lattice is not symmetric to the last bit
            *_, k, flip = found[0]
            counts[(k, flip)] = counts.get((k, flip), 0) + 1
    assert len(counts) >= 6  # 32 draws over 8 symmetries: all 8 expected


def test_bad_arguments(ds):
    with pytest.raises(ValueError, match=r"patch must be an integer in \[1, 32\]"):
        Loader(ds, patch=64, batch_size=4)
    with pytest.raises(ValueError, match="batch_size must be a positive multiple"):
        Loader(ds, patch=8, batch_size=0)
    with pytest.raises(ValueError, match="fewer than batch_size=32"):
        Loader(ds, patch=8, batch_size=32)
    assert len(jax.local_devices()) >= 1

"""Streaming random training patches from a `temsim.dataset` store.

A background thread reads samples, cuts random patches, applies a random element of
the dihedral group D4 (rot90 by k, then an optional flip: 8 symmetries of the square
pixel grid, which the physics of a projected image does not prefer) and puts batches
on the local devices, split along the batch axis for data-parallel training.

Order is a pure function of (seed, epoch, step): each epoch is a permutation of the
finished samples (from numpy's Generator seeded with (seed, epoch)), cut into full
batches; with several hosts each takes every process_count-th batch
(`jax.process_index()`), so hosts see disjoint data without coordination.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from temsim import dataset as _dataset

__all__ = ["Batch", "Loader", "augment", "batch_at"]


class Batch(NamedTuple):
    """noisy, clean: (B, p, p, 1) float32 (channels last); index: (B,) sample ids."""

    noisy: jax.Array
    clean: jax.Array
    index: np.ndarray


def augment(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """rot90 by k quarter turns over the last two axes, then a left-right flip."""
    out = np.rot90(image, k, axes=(-2, -1))
    return np.flip(out, axis=-1) if flip else out


def _plan(ready: np.ndarray, seed: int, epoch: int, batch_size: int) -> np.ndarray:
    """(n_batches, B) sample ids of one epoch: a seeded permutation, full batches."""
    order = np.random.default_rng([seed, epoch]).permutation(ready)
    n = len(order) // batch_size
    return order[: n * batch_size].reshape(n, batch_size)


def batch_at(
    ds: _dataset.Dataset,
    ids: np.ndarray,
    *,
    patch: int,
    seed: int,
    epoch: int,
    step: int,
    augment_: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) patches (B, p, p) of samples `ids`: crops and D4 from the seed."""
    rng = np.random.default_rng([seed, epoch, step, 1])
    s = ds[np.asarray(ids)]
    ny, nx = ds.config.shape
    oy = rng.integers(0, ny - patch + 1, len(ids))
    ox = rng.integers(0, nx - patch + 1, len(ids))
    ks = rng.integers(0, 4, len(ids)) if augment_ else np.zeros(len(ids), int)
    flips = rng.integers(0, 2, len(ids)) if augment_ else np.zeros(len(ids), int)
    noisy, clean = [], []
    for j in range(len(ids)):
        window = (slice(oy[j], oy[j] + patch), slice(ox[j], ox[j] + patch))
        noisy.append(augment(s.noisy[j][window], ks[j], bool(flips[j])))
        clean.append(augment(s.clean[j][window], ks[j], bool(flips[j])))
    return np.stack(noisy), np.stack(clean)


class Loader:
    """Iterator of `Batch`es of random patches, prefetched in a background thread.

    ds: a Dataset or path; patch [pixels]; batch_size divisible by the number of
    `devices` (default all local devices); epochs: None for endless. Only samples
    finished when the loader starts are used. Use as a context manager or call
    close() to stop the thread.
    """

    def __init__(
        self,
        ds: _dataset.Dataset | str,
        *,
        patch: int,
        batch_size: int,
        seed: int = 0,
        augment: bool = True,
        epochs: int | None = None,
        devices=None,
        prefetch: int = 4,
    ):
        self.ds = ds if isinstance(ds, _dataset.Dataset) else _dataset.open(ds)
        ny, nx = self.ds.config.shape
        if not isinstance(patch, int) or not 1 <= patch <= min(ny, nx):
            raise ValueError(
                f"patch must be an integer in [1, {min(ny, nx)}] (the image is "
                f"{ny}x{nx}), got {patch!r}"
            )
        devices = list(jax.local_devices() if devices is None else devices)
        if (
            not isinstance(batch_size, int)
            or batch_size < 1
            or batch_size % len(devices)
        ):
            raise ValueError(
                f"batch_size must be a positive multiple of the {len(devices)} "
                f"devices, got {batch_size!r}"
            )
        self.ready = self.ds.ready()
        if len(self.ready) < batch_size:
            raise ValueError(
                f"{self.ds.path} has {len(self.ready)} finished samples, fewer than "
                f"batch_size={batch_size}; generate more first"
            )
        self.patch, self.batch_size, self.seed = patch, batch_size, seed
        self.augment, self.epochs = augment, epochs
        self.sharding = NamedSharding(
            Mesh(np.asarray(devices), ("data",)), PartitionSpec("data")
        )
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    @property
    def steps_per_epoch(self) -> int:
        return len(self.ready) // self.batch_size // jax.process_count()

    def _produce(self):
        proc, n_proc = jax.process_index(), jax.process_count()
        try:
            epoch = 0
            while not self._stop.is_set() and (
                self.epochs is None or epoch < self.epochs
            ):
                plan = _plan(self.ready, self.seed, epoch, self.batch_size)
                for step in range(proc, len(plan), n_proc):
                    noisy, clean = batch_at(
                        self.ds,
                        plan[step],
                        patch=self.patch,
                        seed=self.seed,
                        epoch=epoch,
                        step=step,
                        augment_=self.augment,
                    )
                    item = Batch(
                        jax.device_put(noisy[..., None], self.sharding),
                        jax.device_put(clean[..., None], self.sharding),
                        plan[step],
                    )
                    if not self._put(item):
                        return
                epoch += 1
            self._put(None)
        except Exception as e:  # forwarded to the consumer
            self._put(e)

    def _put(self, item) -> bool:
        """Queue `item` unless the loader is closed first; True if queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Batch]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc):
        self.close()

"""Reproducible, resumable (clean, noisy) HRTEM training sets in zarr.

Sample i is a pure function of (config, i): its key is fold_in(key(config.seed), i),
split into (parameters, structure, noise) keys. So any sample can be regenerated
exactly, and hosts/devices split the work without coordination.

Pipeline per sample: `draw_parameters` (structure family, layers, in-plane rotation,
defocus, Cs, two-fold astigmatism, focal spread, displacements, vacancies) -> the
simulator (`SIMULATORS[config.simulator]`, the one place that makes a clean image) ->
`temsim.noise.mixed` (noise type and level drawn per sample).

Store layout (zarr v3 group): attrs {"temsim_dataset": FORMAT, "config": {...}};
arrays clean, noisy (N, ny, nx) float32 chunked (chunk, ny, nx); params/<name> (N,)
float64; done (n_chunks,) uint8, one storage chunk per element. A chunk's data and
parameters are written first and its `done` flag last, so a killed run leaves at most
an unflagged chunk, which the next run rewrites; readers only see flagged chunks.

Scale-out: chunks are split over hosts by `jax.process_index()` (chunk c belongs to
process c % process_count; with `jax.distributed.initialize()` every host runs the
same `generate(config, path)` on a shared filesystem; process 0 creates the store,
the others wait for it). Within a host, the clean images are dispatched round-robin to
the local devices and the noise is applied under `jax.shard_map` over a 1-D mesh of
all local devices, a fixed per-sample program (`lax.map`), so the bytes written do not
depend on the number of devices or hosts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from temsim import noise
from temsim.image import Image
from temsim.specimens import LAYER_SPACING, SIMULATORS, Simulator  # noqa: F401

FORMAT = 1
FAMILIES = ("graphene", "mos2", "hbn", "phosphorene")
"""Every structure family a dataset can draw from (`temsim.structures` builders)."""
DEFAULT_FAMILIES = ("graphene", "mos2", "hbn")
"""`DatasetConfig.families` default (phosphorene is opt-in: the denoising benchmark
keeps it out of training as an unseen structure family)."""
PARAM_NAMES = (
    "family",
    "layers",
    "rotation",
    "defocus",
    "Cs",
    "astigmatism",
    "astigmatism_angle",
    "focal_spread",
    "displacement",
    "vacancy",
    "noise_kind",
    "noise_level",
)

__all__ = [
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "PARAM_NAMES",
    "SIMULATORS",
    "Dataset",
    "DatasetConfig",
    "Sample",
    "draw_parameters",
    "generate",
    "open",
    "sample",
]


# ------------------------------------------------------------------------ config


def _range(name: str, value, *, low=-math.inf, high=math.inf) -> tuple[float, float]:
    r = tuple(float(v) for v in value)
    if len(r) != 2 or not (low <= r[0] <= r[1] <= high) or not np.all(np.isfinite(r)):
        raise ValueError(
            f"{name} must be a range (low, high) with {low} <= low <= high <= {high}, "
            f"got {value!r}"
        )
    return r


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """What a dataset contains; JSON-serialisable (`to_dict`, `from_dict`, `load`).

    Units: sampling [Å/pixel], energy [eV], defocus/Cs/astigmatism/focal_spread and
    displacement (rms, per direction) [Å], rotation [degrees], semiangle_cutoff
    [mrad]. Ranges are (low, high), drawn uniformly (layers: integers, inclusive).
    shape (ny, nx) is the stored image; `margin` pixels are simulated on each side and
    cropped (the periodic seam of the rotated sheet falls there). `chunk` samples per
    storage chunk (the unit of resume). simulator: "hrtem" (multislice, temsim.hrtem)
    or "synthetic" (a fast analytic lattice image, for tests and pipelines).
    """

    n_samples: int = 1000
    shape: tuple[int, int] = (256, 256)
    sampling: float = 0.05
    seed: int = 0
    families: tuple[str, ...] = DEFAULT_FAMILIES
    energy: float = 80e3
    layers: tuple[int, int] = (1, 2)
    rotation: tuple[float, float] = (0.0, 360.0)
    defocus: tuple[float, float] = (-100.0, 100.0)
    Cs: tuple[float, float] = (-2e4, 2e4)
    astigmatism: tuple[float, float] = (0.0, 20.0)
    focal_spread: tuple[float, float] = (0.0, 30.0)
    semiangle_cutoff: float = 40.0
    displacement: tuple[float, float] = (0.0, 0.1)
    vacancy: tuple[float, float] = (0.0, 0.05)
    slice_thickness: float = 1.0
    margin: int = 8
    chunk: int = 16
    simulator: str = "hrtem"
    noise: noise.MixedSpec = noise.MixedSpec()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        if not isinstance(self.n_samples, int | np.integer) or self.n_samples < 1:
            raise ValueError(
                f"n_samples must be an integer >= 1, got {self.n_samples!r}"
            )
        shape = tuple(int(v) for v in np.broadcast_to(np.asarray(self.shape), (2,)))
        if min(shape) < 8:
            raise ValueError(f"shape must be (ny, nx) >= 8 pixels, got {self.shape!r}")
        set_("shape", shape)
        families = tuple(self.families)
        if not families or any(f not in FAMILIES for f in families):
            raise ValueError(
                f"families must be a non-empty subset of {FAMILIES}, got {families!r}"
            )
        set_("families", families)
        for name in ("sampling", "energy", "semiangle_cutoff", "slice_thickness"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 < v < math.inf):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        lay = _range("layers", self.layers, low=1)
        if lay != tuple(round(v) for v in lay):
            raise ValueError(
                f"layers must be integers (low, high), got {self.layers!r}"
            )
        set_("layers", tuple(int(v) for v in lay))
        set_("rotation", _range("rotation", self.rotation))
        set_("defocus", _range("defocus", self.defocus))
        set_("Cs", _range("Cs", self.Cs))
        set_("astigmatism", _range("astigmatism", self.astigmatism, low=0))
        set_("focal_spread", _range("focal_spread", self.focal_spread, low=0))
        set_("displacement", _range("displacement", self.displacement, low=0))
        set_("vacancy", _range("vacancy", self.vacancy, low=0, high=1))
        for name in ("seed", "margin", "chunk"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or v < (1 if name == "chunk" else 0):
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.simulator not in SIMULATORS:
            raise ValueError(
                f"simulator must be one of {tuple(SIMULATORS)}, got {self.simulator!r}"
            )
        if isinstance(self.noise, dict):
            set_("noise", noise.MixedSpec.from_dict(self.noise))
        if not isinstance(self.noise, noise.MixedSpec):
            raise ValueError(f"noise must be a MixedSpec or dict, got {self.noise!r}")

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists for tuples)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, noise.MixedSpec):
                v = v.to_dict()
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; allowed {sorted(known)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DatasetConfig:
        """From a JSON file."""
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config {path} is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"config {path} must hold a JSON object, got {d!r}")
        return cls.from_dict(d)


# -------------------------------------------------------------------- parameters


def _keys(config: DatasetConfig, index) -> tuple[Any, Any, Any]:
    """(parameters, structure, noise) keys of sample `index`."""
    k = jax.random.fold_in(jax.random.key(config.seed), index)
    return tuple(jax.random.split(k, 3))


@functools.partial(jax.jit, static_argnames="config")
def draw_parameters(config: DatasetConfig, key) -> dict[str, jax.Array]:
    """Per-sample physical parameters (float64 scalars; see PARAM_NAMES)."""
    ks = jax.random.split(key, 9)
    f64 = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

    def uniform(k, r):
        return (
            jax.random.uniform(k, (), f64, r[0], r[1])
            if r[1] > r[0]
            else (jnp.asarray(r[0], f64))
        )

    return {
        "family": jax.random.randint(ks[0], (), 0, len(config.families)).astype(f64),
        "layers": jax.random.randint(
            ks[1], (), config.layers[0], config.layers[1] + 1
        ).astype(f64),
        "rotation": uniform(ks[2], config.rotation),
        "defocus": uniform(ks[3], config.defocus),
        "Cs": uniform(ks[4], config.Cs),
        "astigmatism": uniform(ks[5], config.astigmatism),
        "astigmatism_angle": uniform(ks[6], (0.0, math.pi)),
        "focal_spread": uniform(ks[7], config.focal_spread),
        "displacement": uniform(ks[8], config.displacement),
        "vacancy": uniform(jax.random.fold_in(key, 9), config.vacancy),
    }


# -------------------------------------------------------------- sample and steps


def _add_noise(config: DatasetConfig, key, clean):
    """(noisy, kind, level) of one clean image (ny, nx); traced."""
    image = Image(clean, sampling=config.sampling)
    noisy, drawn = noise.mixed(key, image, config.noise)
    return noisy.array, drawn.kind, drawn.level


def sample(config: DatasetConfig, index: int) -> Sample:
    """Sample `index` computed alone on the default device (equal to the stored one)."""
    if not 0 <= index < config.n_samples:
        raise IndexError(f"index must be in [0, {config.n_samples}), got {index}")
    mesh = Mesh(np.asarray([jax.devices()[0]]), ("d",))
    clean, noisy, params = _compute(config, np.asarray([index]), mesh, config.chunk)
    return Sample(clean[0], noisy[0], {k: float(v[0]) for k, v in params.items()})


@functools.lru_cache(maxsize=8)
def _program(config: DatasetConfig, mesh: Mesh, with_clean: bool):
    """jit(keys (b, 3)[, clean (b, ny, nx)]) -> (clean, noisy, params) over a mesh.

    The batch is split over the mesh's "d" axis by shard_map, and each device runs
    `lax.map` of one single-sample program, so the bytes of sample i do not depend on
    the batch size or the number of devices.
    """
    sim = SIMULATORS[config.simulator]

    def one(args):
        keys3, clean = args if with_clean else (args, None)
        params = draw_parameters(config, keys3[0])
        if clean is None:
            clean = sim.fn(config, params, keys3[1])
        noisy, kind, level = _add_noise(config, keys3[2], clean)
        return clean, noisy, {**params, "noise_kind": kind, "noise_level": level}

    def per_device(*args):
        return jax.lax.map(one, args if with_clean else args[0])

    spec = PartitionSpec("d")
    in_specs = (spec, spec) if with_clean else (spec,)
    return jax.jit(
        jax.shard_map(
            per_device, mesh=mesh, in_specs=in_specs, out_specs=spec, check_vma=False
        )
    )


def _chunk_slice(config: DatasetConfig, c: int) -> slice:
    return slice(c * config.chunk, min((c + 1) * config.chunk, config.n_samples))


def _compute(config: DatasetConfig, idx: np.ndarray, mesh: Mesh, size: int):
    """(clean, noisy, params) of samples idx, spread over the mesh's devices.

    The batch is padded (repeating the last index) to `size` rounded up to a multiple
    of the device count, so that one compiled program serves every chunk.
    """
    devices = list(mesh.devices.flat)
    n = len(idx)
    size = -(-max(size, n) // len(devices)) * len(devices)
    padded = np.concatenate([idx, np.full(size - n, idx[-1])])
    keys = jax.vmap(lambda i: jnp.stack(_keys(config, i)))(jnp.asarray(padded))
    sharding = jax.sharding.NamedSharding(mesh, PartitionSpec("d"))
    sim = SIMULATORS[config.simulator]
    if sim.traceable:
        args = (jax.device_put(keys, sharding),)
    else:  # host-side structures; device work dispatched round-robin (async)
        params = jax.device_get(
            jax.vmap(functools.partial(draw_parameters, config))(keys[:, 0])
        )
        shape = (len(padded), *config.shape)
        placement = sharding.addressable_devices_indices_map(shape)
        owner = {}  # sample row -> device holding it
        for device, rows in placement.items():
            owner.update({j: device for j in range(len(padded))[rows[0]]})
        images = {}
        for j in range(n):  # dispatch is async, so the devices work concurrently
            with jax.default_device(owner[j]):
                p = {k: v[j] for k, v in params.items()}
                images[j] = jax.device_put(sim.fn(config, p, keys[j, 1]), owner[j])
        blocks = []
        for device, rows in placement.items():  # padding rows copy the last sample
            block = [images.get(j, images[n - 1]) for j in range(len(padded))[rows[0]]]
            blocks.append(jnp.stack([jax.device_put(a, device) for a in block]))
        clean = jax.make_array_from_single_device_arrays(shape, sharding, blocks)
        args = (jax.device_put(keys, sharding), clean)
    clean, noisy, params = _program(config, mesh, not sim.traceable)(*args)
    return (
        np.asarray(clean, np.float32)[:n],
        np.asarray(noisy, np.float32)[:n],
        {k: np.asarray(v, np.float64)[:n] for k, v in params.items()},
    )


# ------------------------------------------------------------------- storage


def _zarr():
    import zarr

    return zarr


def _check_path_free_or_ours(path: Path) -> bool:
    """True if `path` holds a temsim dataset, False if free; ValueError otherwise."""
    if not path.exists():
        return False
    if not path.is_dir():
        raise ValueError(
            f"{path} exists and is a file, not a temsim dataset; choose another --out "
            "path (nothing was written)"
        )
    if not any(path.iterdir()):
        return False
    try:
        group = _zarr().open_group(str(path), mode="r")
        ours = group.attrs.get("temsim_dataset") is not None
    except Exception:  # not a zarr group at all
        ours = False
    if not ours:
        raise ValueError(
            f"{path} is a non-empty directory that is not a temsim dataset; choose a "
            "new or empty --out path (nothing was written)"
        )
    return True


def _x64() -> bool:
    return bool(jax.config.jax_enable_x64)


def _config_diff(stored: dict, given: dict) -> list[str]:
    keys = sorted(set(stored) | set(given))
    return [
        f"{k}: stored {stored.get(k)!r}, given {given.get(k)!r}"
        for k in keys
        if stored.get(k) != given.get(k)
    ]


def _create_or_check(config: DatasetConfig, path: Path):
    zarr = _zarr()
    given = config.to_dict()
    if _check_path_free_or_ours(path):
        group = zarr.open_group(str(path), mode="r+")
        diff = _config_diff(dict(group.attrs["config"]), given)
        if group.attrs.get("x64") != _x64():
            diff.append(
                f"jax_enable_x64: stored {group.attrs.get('x64')}, now {_x64()}"
            )
        if diff:
            raise ValueError(
                f"{path} holds a dataset made with a different config ("
                + "; ".join(diff)
                + "); resume with the stored config (temsim.dataset.open(path).config) "
                "or write to a new path. Nothing was changed."
            )
    else:
        attrs = {"temsim_dataset": FORMAT, "config": given, "x64": _x64()}
        group = zarr.create_group(store=str(path), attributes=attrs)
    n, (ny, nx), ch = config.n_samples, config.shape, config.chunk
    arrays = {
        "clean": ((n, ny, nx), (ch, ny, nx), "float32", 0.0),
        "noisy": ((n, ny, nx), (ch, ny, nx), "float32", 0.0),
        "done": ((config.n_chunks,), (1,), "uint8", 0),
        **{f"params/{p}": ((n,), (ch,), "float64", np.nan) for p in PARAM_NAMES},
    }
    for name, (shape, chunks, dtype, fill) in arrays.items():
        try:
            arr = group[name]
        except KeyError:
            parent, _, leaf = name.rpartition("/")
            g = group
            if parent:
                try:
                    g = group[parent]
                except KeyError:
                    g = group.create_group(parent)
            arr = g.create_array(
                leaf, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill
            )
        if arr.shape != shape or arr.dtype != np.dtype(dtype):
            raise ValueError(
                f"{path}/{name} has shape {arr.shape} {arr.dtype}, expected {shape} "
                f"{dtype}; the store is damaged, write to a new path"
            )
    return group


def _local_mesh() -> Mesh:
    return Mesh(np.asarray(jax.local_devices()), ("d",))


def generate(
    config: DatasetConfig,
    path: str | os.PathLike,
    *,
    progress: bool | Callable[[int, int], None] = False,
    max_chunks: int | None = None,
    wait_s: float = 600.0,
) -> Dataset:
    """Write (or resume) the dataset `config` at `path`; returns `open(path)`.

    Only chunks not yet flagged done and owned by this process (c % process_count ==
    process_index) are computed. progress: True for a tqdm bar, or a callback
    (done_samples, total_samples). max_chunks: stop after that many (for tests).
    ValueError if `path` holds something else or a dataset of another config.
    """
    if not isinstance(config, DatasetConfig):
        raise ValueError(f"config must be a DatasetConfig, got {type(config).__name__}")
    path = Path(path)
    proc, n_proc = jax.process_index(), jax.process_count()
    if proc == 0:
        group = _create_or_check(config, path)
    else:  # process 0 creates the store; wait until it is complete
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if _check_path_free_or_ours(path):
                    group = _zarr().open_group(str(path), mode="r")
                    if all(k in group for k in ("clean", "noisy", "params", "done")):
                        group = _create_or_check(config, path)
                        break
            except ValueError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise ValueError(
                    f"process {proc}: no dataset appeared at {path} within {wait_s} s; "
                    "process 0 creates it (is the path on a shared filesystem?)"
                )
            time.sleep(1.0)
    done = np.asarray(group["done"][:])
    todo = [c for c in range(config.n_chunks) if c % n_proc == proc and not done[c]]
    if max_chunks is not None:
        todo = todo[:max_chunks]
    mesh = _local_mesh()
    total = config.n_samples
    n_done = sum(
        _chunk_slice(config, c).stop - _chunk_slice(config, c).start
        for c in range(config.n_chunks)
        if done[c]
    )
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=n_done, unit="sample", desc=str(path))
    params_group = group["params"]
    for c in todo:
        s = _chunk_slice(config, c)
        idx = np.arange(s.start, s.stop)
        clean, noisy, params = _compute(config, idx, mesh, config.chunk)
        group["clean"][s] = clean
        group["noisy"][s] = noisy
        for name in PARAM_NAMES:
            params_group[name][s] = params[name]
        group["done"][c] = 1  # last: the chunk is now visible and final
        n_done += s.stop - s.start
        if bar is not None:
            bar.update(s.stop - s.start)
        elif callable(progress):
            progress(n_done, total)
    if bar is not None:
        bar.close()
    return open(path)


# --------------------------------------------------------------------- reading


class Sample(NamedTuple):
    """clean, noisy: (..., ny, nx) float32 intensities; params: name -> value(s)."""

    clean: np.ndarray
    noisy: np.ndarray
    params: dict[str, Any]


class Dataset:
    """Read-only view of a stored dataset; safe to use while it is being written.

    len() is config.n_samples; ds[i] / ds[a:b] / ds[[i, j]] return a `Sample`;
    indexing an unfinished sample raises IndexError. `ready()` lists finished samples.
    """

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.is_dir():
            raise ValueError(f"{path} is not a temsim dataset (no such directory)")
        try:
            self._group = _zarr().open_group(str(path), mode="r")
            attrs = dict(self._group.attrs)
        except Exception as e:
            raise ValueError(
                f"{path} is not a temsim dataset (not zarr: {e})"
            ) from None
        if attrs.get("temsim_dataset") != FORMAT:
            raise ValueError(
                f"{path} is not a temsim dataset (format {attrs.get('temsim_dataset')})"
            )
        self.path = path
        self.config = DatasetConfig.from_dict(attrs["config"])

    def __len__(self) -> int:
        return self.config.n_samples

    @property
    def sampling(self) -> tuple[float, float]:
        return (self.config.sampling, self.config.sampling)

    def done_chunks(self) -> np.ndarray:
        return np.asarray(self._group["done"][:], bool)

    def ready(self) -> np.ndarray:
        """Indices of finished samples (re-read on each call)."""
        idx = np.arange(self.config.n_samples)
        return idx[np.repeat(self.done_chunks(), self.config.chunk)[: len(idx)]]

    @property
    def complete(self) -> bool:
        return bool(self.done_chunks().all())

    def __getitem__(self, index) -> Sample:
        n = self.config.n_samples
        if isinstance(index, int | np.integer):
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} samples")
            rows = np.asarray([index % n])
        elif isinstance(index, slice):
            rows = np.arange(n)[index]
        else:
            rows = np.asarray(index)
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
                raise IndexError(
                    f"index must be an int, slice or 1-D int array, got {index!r}"
                )
            if rows.size and (rows.min() < -n or rows.max() >= n):
                raise IndexError(f"indices out of range for {n} samples")
            rows = rows % n
        done = self.done_chunks()
        missing = rows[~done[rows // self.config.chunk]]
        if missing.size:
            raise IndexError(
                f"samples {missing[:5].tolist()} are not written yet "
                f"({int(done.sum())} of {len(done)} chunks done)"
            )
        g = self._group
        if isinstance(index, int | np.integer):
            i = int(rows[0])
            return Sample(
                g["clean"][i],
                g["noisy"][i],
                {k: float(g["params"][k][i]) for k in PARAM_NAMES},
            )
        sel = np.sort(rows) if rows.size else rows
        order = np.argsort(np.argsort(rows)) if rows.size else rows
        clean = np.asarray(g["clean"].get_orthogonal_selection((sel,)))[order]
        noisy = np.asarray(g["noisy"].get_orthogonal_selection((sel,)))[order]
        params = {
            k: np.asarray(g["params"][k].get_orthogonal_selection((sel,)))[order]
            for k in PARAM_NAMES
        }
        return Sample(clean, noisy, params)

    def __iter__(self) -> Iterator[Sample]:
        for i in self.ready():
            yield self[int(i)]

    def __repr__(self) -> str:
        done = self.done_chunks()
        return (
            f"Dataset({str(self.path)!r}, {len(self)} samples {self.config.shape}, "
            f"{int(done.sum())}/{len(done)} chunks done)"
        )


def open(path: str | os.PathLike) -> Dataset:  # noqa: A001 - the contract's name
    """A read-only `Dataset` view of the store at `path`."""
    return Dataset(path)

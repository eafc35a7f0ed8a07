"""Training denoisers: a pure, jitted step over `nnx.split` state; sharded; resumable.

The model is split once into (graphdef, params, batch_stats, other); `TrainState`
holds the step count, params, batch statistics and the optax state. `train_step`
is a pure function (state, noisy, clean) -> (state, metrics), jitted once with the
batch sharded over the local devices (mesh axis "data") and the state replicated, so
gradients are all-reduced by XLA. Checkpoints (orbax) every `checkpoint_every` steps
and at the end; rerunning the same `fit` call after a crash (even SIGKILL) restores
the latest checkpoint and continues with bit-identical losses, provided the data for
step s depends only on s (pass a callable `data(step)`; an iterator is fast-forwarded).

Optimiser: AdamW, learning rate with linear warm-up then cosine decay
(Loshchilov & Hutter, ICLR 2019). Losses: "l1", "l2", "ms_ssim" (1 - MS-SSIM) or a
weighted mix such as {"l1": 0.84, "ms_ssim": 0.16} (Zhao et al., IEEE TCI 3, 47
(2017)).

Shape legend: B batch (global, sharded over devices), H height, W width.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float

from temsim.denoise import metrics

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "fit",
    "loss_function",
    "make_optimizer",
    "make_optimizer_schedule",
    "make_train_step",
    "synthetic_data",
]

LOSSES = ("l1", "l2", "ms_ssim")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static training configuration.

    Attributes:
      steps: total optimisation steps.
      learning_rate: peak learning rate (after warm-up).
      warmup_steps: linear warm-up from 0.
      final_lr_fraction: cosine decay ends at learning_rate * this.
      weight_decay: AdamW decoupled weight decay.
      grad_clip: global-norm gradient clipping (None: off).
      loss: "l1", "l2", "ms_ssim" or a mapping name -> weight.
      checkpoint_dir: orbax checkpoint directory (None: no checkpoints, no resume).
      checkpoint_every: save every this many steps (and at the end).
      keep_checkpoints: how many recent checkpoints to keep.
      metrics_path: JSON-lines file, one {"step", "loss", "lr", "time"} per step.
      progress: show a tqdm progress bar (loss and ETA).
    """

    steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.01
    weight_decay: float = 1e-4
    grad_clip: float | None = 1.0
    loss: str | Mapping[str, float] = "l1"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    metrics_path: str | None = None
    progress: bool = True

    def __post_init__(self):
        if self.steps < 1 or self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise ValueError(
                f"steps, checkpoint_every and keep_checkpoints must be >= 1, got "
                f"{self.steps}, {self.checkpoint_every}, {self.keep_checkpoints}"
            )
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(
                f"warmup_steps must be in [0, steps={self.steps}), got "
                f"{self.warmup_steps}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        loss_function(self.loss)  # validates


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree; checkpointed whole)."""

    step: Array
    params: Any
    batch_stats: Any
    opt_state: Any


class TrainResult(NamedTuple):
    """Outcome of `fit`.

    Attributes:
      model: the trained model (a new NNX module; the input model is not modified).
      state: final `TrainState`.
      losses: (steps - start_step,) training loss of each step run in this call.
      start_step: the step training resumed from (0 for a fresh run).
    """

    model: nnx.Module
    state: TrainState
    losses: np.ndarray
    start_step: int


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with warm-up + cosine learning-rate schedule and optional clipping."""
    schedule = make_optimizer_schedule(config)
    adamw = optax.adamw(schedule, weight_decay=config.weight_decay)
    if config.grad_clip is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw)


def loss_function(
    spec: str | Mapping[str, float],
) -> Callable[[Array, Array], Array]:
    """loss(pred_BxHxW, clean_BxHxW) -> scalar mean over the batch.

    l1 = mean|p - c|, l2 = mean (p - c)^2, ms_ssim = 1 - mean MS-SSIM(p, c) (scales
    limited to what the patch size allows); a mapping gives sum_k w_k loss_k.
    """
    weights = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    bad = [k for k in weights if k not in LOSSES]
    if bad or not weights:
        raise ValueError(
            f"loss must be one of {LOSSES} or a mapping of them to weights, got "
            f"{spec!r}"
        )

    def loss(pred_BxHxW: Array, clean_BxHxW: Array) -> Array:
        total = jnp.zeros((), pred_BxHxW.dtype)
        d = pred_BxHxW - clean_BxHxW
        for name, w in weights.items():
            if name == "l1":
                term = jnp.mean(jnp.abs(d))
            elif name == "l2":
                term = jnp.mean(d * d)
            else:
                term = 1.0 - jnp.mean(metrics.ms_ssim(pred_BxHxW, clean_BxHxW))
            total = total + jnp.asarray(w, pred_BxHxW.dtype) * term
        return total

    return loss


def split_model(model: nnx.Module):
    """(graphdef, params, batch_stats, other) of an NNX model."""
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def make_train_step(
    graphdef: Any,
    other: Any,
    tx: optax.GradientTransformation,
    loss: Callable[[Array, Array], Array],
) -> Callable[[TrainState, Array, Array], tuple[TrainState, dict[str, Array]]]:
    """The pure training step (not jitted; `fit` jits it once with shardings)."""

    def train_step(
        state: TrainState,
        noisy_BxHxW: Float[Array, "B H W"],
        clean_BxHxW: Float[Array, "B H W"],
    ) -> tuple[TrainState, dict[str, Array]]:
        def objective(params):
            model = nnx.merge(graphdef, params, state.batch_stats, other, copy=True)
            model.train()
            pred_BxHxW = model(noisy_BxHxW[..., None])[..., 0]
            return loss(pred_BxHxW, clean_BxHxW), nnx.state(model, nnx.BatchStat)

        (value, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        # optax's Adam bias correction computes float ** int32, which strict dtype
        # promotion (the test suite's setting) refuses; the promotion is benign.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        new = TrainState(state.step + 1, params, batch_stats, opt_state)
        return new, {"loss": value, "grad_norm": optax.tree.norm(grads)}

    return train_step


def _as_batch(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x.array if hasattr(x, "array") else x, np.float32)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 3:
        raise ValueError(
            f"{name} batches must be (B, H, W) or (B, H, W, 1), got {a.shape}"
        )
    return a


def _batches(data: Any, start: int) -> Callable[[int], tuple[Any, Any]]:
    if callable(data):
        return data
    it = iter(data)
    for _ in range(start):  # fast-forward a deterministic iterator on resume
        next(it)
    return lambda step: next(it)


def _checkpoint_manager(config: TrainConfig):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints,
        enable_async_checkpointing=False,  # a checkpoint on disk is complete
        cleanup_tmp_directories=True,  # leftovers of a save cut by a crash
        create=True,
    )
    return ocp.CheckpointManager(
        Path(config.checkpoint_dir).absolute(), options=options
    )


def _save(manager, step: int, state: TrainState) -> None:
    import orbax.checkpoint as ocp

    leaves = {f"{i:04d}": x for i, x in enumerate(jax.tree.leaves(state))}
    manager.save(step, args=ocp.args.StandardSave(leaves))
    manager.wait_until_finished()


def _restore(manager, step: int, template: TrainState) -> TrainState:
    import orbax.checkpoint as ocp

    leaves, treedef = jax.tree.flatten(template)
    abstract = {
        f"{i:04d}": jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        for i, x in enumerate(leaves)
    }
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return jax.tree.unflatten(treedef, [restored[k] for k in sorted(restored)])


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop records past the checkpoint we resume from (written before a crash)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line)
        except (ValueError, KeyError):
            continue  # a line cut by the crash
    path.write_text("".join(k + "\n" for k in keep))


def fit(
    model: nnx.Module,
    data: Callable[[int], tuple[Any, Any]] | Iterable[tuple[Any, Any]],
    config: TrainConfig,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> TrainResult:
    """Train `model` on (noisy, clean) batches; resumes from `config.checkpoint_dir`.

    Args:
      model: NNX denoiser taking NHWC (B, H, W, 1); not modified.
      data: `data(step) -> (noisy, clean)` (preferred: resumable exactly), or an
        iterable of (noisy, clean) pairs; each array (B, H, W) or (B, H, W, 1), B a
        multiple of the number of devices.
      config: `TrainConfig`.
      devices: devices of the data-parallel mesh (default: all local devices).
    """
    devices = list(jax.local_devices() if devices is None else devices)
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    tx = make_optimizer(config)
    graphdef, params, batch_stats, other = split_model(model)
    state = TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params))
    state = jax.device_put(state, replicated)
    other = jax.device_put(other, replicated)
    step_fn = jax.jit(
        make_train_step(graphdef, other, tx, loss_function(config.loss)),
        in_shardings=(replicated, sharded, sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )

    manager = _checkpoint_manager(config) if config.checkpoint_dir else None
    start = 0
    if manager is not None and manager.latest_step() is not None:
        start = int(manager.latest_step())
        state = _restore(manager, start, state)
    metrics_path = Path(config.metrics_path) if config.metrics_path else None
    if metrics_path is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        if start == 0:
            metrics_path.write_text("")
        else:
            _trim_metrics(metrics_path, start)

    from tqdm.auto import tqdm

    get = _batches(data, start)
    losses = []
    schedule = make_optimizer_schedule(config)
    t0 = time.perf_counter()
    with tqdm(
        total=config.steps, initial=start, disable=not config.progress, unit="step"
    ) as bar:
        for step in range(start, config.steps):
            noisy, clean = get(step)
            noisy, clean = _as_batch(noisy, "noisy"), _as_batch(clean, "clean")
            if noisy.shape != clean.shape or noisy.shape[0] % len(devices):
                raise ValueError(
                    f"noisy and clean must have equal shapes with a batch divisible "
                    f"by {len(devices)} devices, got {noisy.shape} and {clean.shape}"
                )
            state, out = step_fn(
                state,
                jax.device_put(noisy, sharded),
                jax.device_put(clean, sharded),
            )
            loss = float(out["loss"])
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss} at step {step}; lower learning_rate or check data"
                )
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4g}")
            bar.update(1)
            if metrics_path is not None:
                record = {
                    "step": step + 1,
                    "loss": loss,
                    "grad_norm": float(out["grad_norm"]),
                    "lr": float(schedule(step)),
                    "time": round(time.perf_counter() - t0, 4),
                }
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            done = step + 1
            if manager is not None and (
                done % config.checkpoint_every == 0 or done == config.steps
            ):
                _save(manager, done, state)
    if manager is not None:
        manager.close()
    trained = nnx.merge(graphdef, state.params, state.batch_stats, other)
    return TrainResult(trained, state, np.asarray(losses), start)


def make_optimizer_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning-rate schedule used by `make_optimizer` (for logging)."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.steps,
        end_value=config.learning_rate * config.final_lr_fraction,
    )


def synthetic_data(
    *,
    batch_size: int = 8,
    size: int = 32,
    sigma: float | tuple[float, float] = 0.1,
    seed: int = 0,
) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """data(step) -> (noisy, clean) (B, size, size) float32: lattices plus noise.

    Clean: dark Gaussian atom columns (width 1-2 px) on a unit background, on a square
    lattice of random spacing (5-9 px), phase and rotation; noisy: clean plus Gaussian
    noise of standard deviation sigma (or uniform in [sigma_lo, sigma_hi] per image,
    for blind denoisers). Deterministic in (seed, step).
    """
    lo, hi = (sigma, sigma) if np.isscalar(sigma) else sigma
    gen = _synthetic_batch(batch_size, size)
    key = jax.random.key(seed)

    def data(step: int) -> tuple[np.ndarray, np.ndarray]:
        noisy, clean = gen(jax.random.fold_in(key, step), float(lo), float(hi))
        return np.asarray(noisy), np.asarray(clean)

    return data


def _synthetic_batch(batch_size: int, size: int):
    from temsim import noise

    yy, xx = jnp.meshgrid(
        jnp.arange(size, dtype=jnp.float32),
        jnp.arange(size, dtype=jnp.float32),
        indexing="ij",
    )

    def one(key, lo, hi):
        k = jax.random.split(key, 6)
        a = jax.random.uniform(k[0], (), jnp.float32, 5.0, 9.0)
        theta = jax.random.uniform(k[1], (), jnp.float32, 0.0, jnp.pi / 2)
        phase = jax.random.uniform(k[2], (2,), jnp.float32, 0.0, 1.0)
        width = jax.random.uniform(k[3], (), jnp.float32, 1.0, 2.0)
        c, s = jnp.cos(theta), jnp.sin(theta)
        u = (c * xx + s * yy) / a - phase[0]
        v = (-s * xx + c * yy) / a - phase[1]
        du = (u - jnp.round(u)) * a
        dv = (v - jnp.round(v)) * a
        clean = 1.0 - 0.5 * jnp.exp(-(du * du + dv * dv) / (2.0 * width * width))
        sigma = jax.random.uniform(k[4], (), jnp.float32, lo, hi)
        noisy = noise.gaussian(k[5], clean, sigma)
        return noisy.astype(jnp.float32), clean

    @jax.jit
    def batch(key, lo, hi):
        keys = jax.random.split(key, batch_size)
        lo = jnp.asarray(lo, jnp.float32)
        hi = jnp.asarray(hi, jnp.float32)
        return jax.vmap(one, in_axes=(0, None, None))(keys, lo, hi)

    return batch


def pairs_data(
    pairs: Any, *, batch_size: int = 8, patch: int = 64, seed: int = 0
) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """data(step) -> (noisy, clean) random patches from an indexable of pairs.

    `pairs[i]` is (clean, noisy) of shape (ny, nx) (the `temsim.dataset.open` view);
    each step draws `batch_size` images and one patch x patch crop of each,
    deterministically in (seed, step).
    """
    n = len(pairs)
    if n == 0:
        raise ValueError("pairs is empty")

    def data(step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, step])
        noisy, clean = [], []
        for i in rng.integers(0, n, batch_size):
            c, y = (np.asarray(getattr(a, "array", a), np.float32) for a in pairs[i])
            ny, nx = c.shape[-2:]
            if min(ny, nx) < patch:
                raise ValueError(f"patch={patch} exceeds image {i} of shape {c.shape}")
            a, b = rng.integers(0, ny - patch + 1), rng.integers(0, nx - patch + 1)
            clean.append(c[a : a + patch, b : b + patch])
            noisy.append(y[a : a + patch, b : b + patch])
        return np.stack(noisy), np.stack(clean)

    return data


MODEL_FILE = "model.json"
CONFIG_FILE = "train_config.json"


def build_model(spec: Mapping[str, Any], *, seed: int = 0) -> nnx.Module:
    """A DnCNN or UNet from {"kind": "dncnn"|"unet", **constructor keywords}."""
    from temsim.denoise import models

    kwargs = dict(spec)
    kind = kwargs.pop("kind", "dncnn")
    classes = {"dncnn": models.DnCNN, "unet": models.UNet}
    if kind not in classes:
        raise ValueError(f"model kind must be one of {sorted(classes)}, got {kind!r}")
    return classes[kind](**kwargs, rngs=nnx.Rngs(seed))


def save_specs(directory: str, model_spec: Mapping[str, Any], config: TrainConfig):
    """Write the model and training configuration next to the checkpoints."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / MODEL_FILE).write_text(json.dumps(dict(model_spec), indent=1))
    (d / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config), indent=1))


def load_model(directory: str, step: int | None = None) -> nnx.Module:
    """The model of the latest (or given) checkpoint written by `fit` + `save_specs`."""
    d = Path(directory)
    if not (d / MODEL_FILE).exists():
        raise ValueError(f"{d} has no {MODEL_FILE}; was it written by `temsim train`?")
    model = build_model(json.loads((d / MODEL_FILE).read_text()))
    config = TrainConfig(**json.loads((d / CONFIG_FILE).read_text()))
    tx = make_optimizer(config)
    graphdef, params, batch_stats, other = split_model(model)
    template = TrainState(
        jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params)
    )
    manager = _checkpoint_manager(dataclasses.replace(config, checkpoint_dir=str(d)))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint in {d}")
    state = _restore(manager, int(step), template)
    manager.close()
    return nnx.merge(graphdef, state.params, state.batch_stats, other)

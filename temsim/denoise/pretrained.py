"""Denoisers shipped inside the package, loaded offline: `load_pretrained`.

Each model is a directory temsim/denoise/pretrained/<name>/ holding
- model.json: the `temsim.denoise.train.build_model` spec ({"kind": "unet", ...});
- weights.npz: every array leaf of the model's `nnx.State` (params and batch
  statistics) as float32, keyed by its "/"-joined path ("down/0/a/kernel");
- README.md: provenance (training data, command, steps, wall time, metrics, date).

`save_pretrained` writes the first two from a trained model; `load_pretrained` builds
the model from the spec, checks every key and shape, and returns it in eval mode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

__all__ = ["available", "load_pretrained", "load_weights", "save_pretrained"]

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"


def _root() -> Path:
    return Path(str(resources.files("temsim.denoise") / "pretrained"))


def available() -> tuple[str, ...]:
    """Names of the shipped models (directories with model.json and weights.npz)."""
    root = _root()
    if not root.is_dir():
        return ()
    return tuple(
        sorted(
            d.name
            for d in root.iterdir()
            if (d / MODEL_FILE).is_file() and (d / WEIGHTS_FILE).is_file()
        )
    )


def _path_name(path: tuple[Any, ...]) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def state_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
    """{path: float32 array} of every leaf of `nnx.state(model)`."""
    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model)))[0]
    return {_path_name(p): np.asarray(x, np.float32) for p, x in leaves}


def load_weights(model: nnx.Module, arrays: Mapping[str, np.ndarray]) -> nnx.Module:
    """`model` with its leaves set from {path: array}; keys and shapes checked.

    `model` may be abstract (from `nnx.eval_shape`); a new module is returned, the
    input is not modified.
    """
    graphdef, state = nnx.split(model)
    pure = nnx.to_pure_dict(state)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
    names = [_path_name(p) for p, _ in leaves]
    missing = sorted(set(names) - set(arrays))
    extra = sorted(set(arrays) - set(names))
    if missing or extra:
        raise ValueError(
            f"weights do not match the model: missing {missing[:5]}, unexpected "
            f"{extra[:5]}"
        )
    new = []
    for name, (_, x) in zip(names, leaves, strict=True):
        a = np.asarray(arrays[name])
        if a.shape != x.shape:
            raise ValueError(
                f"weight {name!r} has shape {a.shape}, the model expects {x.shape}"
            )
        new.append(jax.numpy.asarray(a, x.dtype))
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, new))
    return nnx.merge(graphdef, state)


def save_pretrained(
    model: nnx.Module, spec: Mapping[str, Any], directory: str | Path
) -> Path:
    """Write model.json (`spec`) and weights.npz of `model` to `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / MODEL_FILE).write_text(json.dumps(dict(spec), indent=1) + "\n")
    np.savez_compressed(d / WEIGHTS_FILE, **state_arrays(model))
    return d


def load_directory(directory: str | Path) -> nnx.Module:
    """The model saved by `save_pretrained` in `directory`, in eval mode."""
    from temsim.denoise.train import build_model

    d = Path(directory)
    spec = json.loads((d / MODEL_FILE).read_text())
    # abstract init (no initialiser runs: eager init compiles for tens of seconds)
    abstract = nnx.eval_shape(lambda: build_model(spec))
    with np.load(d / WEIGHTS_FILE) as z:
        model = load_weights(abstract, {k: z[k] for k in z.files})
    model.eval()
    return model


def load_pretrained(name: str = "blind") -> nnx.Module:
    """A denoiser shipped with temsim, loaded offline from package data, eval mode.

    Args:
      name: "blind" (bias-free U-Net trained on Gaussian, Poisson, salt-and-pepper
        and speckle noise on simulated HRTEM images; see its README.md).
    Returns: an NNX model taking NHWC (B, H, W, 1) float32; use it with
      `temsim.denoise.denoise_image(model, image)`.
    """
    names = available()
    if name not in names:
        raise ValueError(f"name must be one of {names}, got {name!r}")
    return load_directory(_root() / name)

"""`Image`: a 2-D array with its pixel size, as a JAX pytree.

The array is the only leaf, so an `Image` goes through `jit`, `vmap` and `grad`; the
sampling (Å/pixel, (dy, dx)) and metadata (a flat dict of str -> str/number/bool) are
static and travel with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_Scalar = str | int | float | bool | None


def _as_sampling(sampling: Any) -> tuple[float, float]:
    values = np.broadcast_to(np.asarray(sampling, dtype=np.float64), (2,))
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            f"sampling must be a positive pixel size in Å (a number or (dy, dx)), "
            f"got {sampling!r}"
        )
    return float(values[0]), float(values[1])


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Image:
    """A real or complex image with its pixel size.

    Attributes:
      array: (..., ny, nx) values; leading axes are a batch (defocus series, ...).
      sampling: (dy, dx) pixel size [Å/pixel]; a single number means square pixels.
      metadata: flat mapping of simulation or acquisition parameters (energy [eV],
        defocus [Å], dose [e/Å^2], ...), kept as static data.
    """

    array: Any
    sampling: tuple[float, float]
    metadata: Mapping[str, _Scalar] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "sampling", _as_sampling(self.sampling))
        meta = dict(self.metadata)
        for name, value in meta.items():
            if not isinstance(name, str) or not isinstance(value, _Scalar):
                raise TypeError(
                    f"metadata must map str to str/int/float/bool/None, got "
                    f"{name!r}: {type(value).__name__}"
                )
        object.__setattr__(self, "metadata", meta)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(jnp.shape(self.array))

    @property
    def extent(self) -> tuple[float, float]:
        """(height, width) of the field of view [Å]."""
        ny, nx = self.shape[-2:]
        return ny * self.sampling[0], nx * self.sampling[1]

    def replace(self, **changes) -> Image:
        """A copy with some fields replaced (`metadata` entries are merged)."""
        if "metadata" in changes:
            changes["metadata"] = {**self.metadata, **changes["metadata"]}
        return dataclasses.replace(self, **changes)

    def tree_flatten(self):
        aux = (self.sampling, tuple(sorted(self.metadata.items())))
        return (self.array,), aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "array", children[0])
        object.__setattr__(obj, "sampling", aux[0])
        object.__setattr__(obj, "metadata", dict(aux[1]))
        return obj

"""Strict numerics for the whole suite (DESIGN.md principle 7).

- rank promotion raises: a silent broadcast of (n,) against (n, 1) is a bug here;
- dtype promotion is strict: float32 never meets float64 without an explicit cast;
- float64 is available, for physics identities checked to 1e-10; tests that are about
  float32/bfloat16 behaviour pass explicit dtypes;
- warnings are errors (pyproject.toml `filterwarnings`), narrow exceptions commented.
"""

import os

# Before jax is imported anywhere: CPU only, no accidental GPU/TPU probing noise.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis  # noqa: E402
import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Property-based tests: a fixed, small budget so the suite stays fast and reproducible.
hypothesis.settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, print_blob=True
)
hypothesis.settings.load_profile("ci")


@pytest.fixture
def key():
    """A fresh, fixed PRNG key per test."""
    return jax.random.key(0)

"""physattn.symmetry: closed-form symmetry dimensions against two numerical measures."""

import jax
import pytest

from physattn import symmetry

CASES = [
    (4, False, 1.0),
    (4, True, 1.0),
    (6, True, 0.34),
    (8, True, 1.0),
    (8, True, 0.5),
]


@pytest.mark.parametrize("group", ["GL", "O"])
@pytest.mark.parametrize("head_dim,rope,fraction", CASES)
def test_closed_form_matches_null_space_of_tangent_map(head_dim, rope, fraction, group):
    expected = symmetry.symmetry_dimension(
        head_dim, rope=rope, group=group, fraction=fraction
    )
    measured = symmetry.numerical_dimension(
        head_dim, rope=rope, group=group, fraction=fraction, key=jax.random.key(0)
    )
    assert measured == expected


def test_known_values():
    assert symmetry.symmetry_dimension(64, rope=False, group="GL") == 64 * 64
    assert symmetry.symmetry_dimension(64, rope=False, group="O") == 64 * 63 // 2
    assert symmetry.symmetry_dimension(64, rope=True, group="GL") == 64
    assert symmetry.symmetry_dimension(64, rope=True, group="O") == 32
    # p-RoPE with p = 1/4: 8 rotated pairs, 48 free features.
    assert (
        symmetry.symmetry_dimension(64, rope=True, group="GL", fraction=0.25)
        == 16 + 48 * 48
    )


@pytest.mark.parametrize(
    "head_dim,rope,fraction", [(4, False, 1.0), (4, True, 1.0), (6, True, 0.34)]
)
def test_goldstone_modes_are_the_zero_modes_of_the_loss_hessian(
    head_dim, rope, fraction
):
    ev = symmetry.loss_hessian_spectrum(
        head_dim, rope=rope, fraction=fraction, key=jax.random.key(1)
    )
    assert symmetry.count_zero_modes(ev) == symmetry.symmetry_dimension(
        head_dim, rope=rope, group="GL", fraction=fraction
    )
    assert ev.min() > -1e-9 * abs(ev).max()  # a minimum: no negative curvature


def test_bad_group():
    with pytest.raises(ValueError, match="group"):
        symmetry.symmetry_dimension(8, rope=True, group="SO")
    with pytest.raises(ValueError, match="head_dim"):
        symmetry.symmetry_dimension(7, rope=True, group="GL")

"""Index <-> Å conventions and input validation of metrics.grid."""

import numpy as np
import pytest

from metrics.grid import (
    angstrom_to_pixel,
    angstrom_to_voxel,
    check_points,
    check_positive,
    pixel_to_angstrom,
    voxel_to_angstrom,
)


def test_voxel_convention_explicit() -> None:
    # voxel [k, i, j] = [2, 3, 5] with v = 0.4 and origin (1, 2, 3) sits at
    # (1 + 3*0.4, 2 + 5*0.4, 3 + 2*0.4).
    pos = voxel_to_angstrom([[2, 3, 5]], 0.4, (1.0, 2.0, 3.0))
    np.testing.assert_allclose(pos, [[2.2, 4.0, 3.8]])
    np.testing.assert_allclose(angstrom_to_voxel(pos, 0.4, (1.0, 2.0, 3.0)), [[2, 3, 5]])


def test_round_trips_with_fractional_indices() -> None:
    rng = np.random.default_rng(0)
    idx = rng.uniform(0, 50, (20, 3))
    back = angstrom_to_voxel(voxel_to_angstrom(idx, 0.37, (-4, 1, 2)), 0.37, (-4, 1, 2))
    np.testing.assert_allclose(back, idx, atol=1e-12)
    pix = rng.uniform(0, 50, (20, 2))
    back2 = angstrom_to_pixel(pixel_to_angstrom(pix, 0.1, (3, -2)), 0.1, (3, -2))
    np.testing.assert_allclose(back2, pix, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1.0, np.nan, "a"])
def test_bad_spacing_names_argument(bad: object) -> None:
    with pytest.raises(ValueError, match="voxel_size"):
        voxel_to_angstrom([[0, 0, 0]], bad, (0, 0, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="r_match"):
        check_positive("r_match", bad)  # type: ignore[arg-type]


def test_bad_origin_and_points() -> None:
    with pytest.raises(ValueError, match="origin"):
        voxel_to_angstrom([[0, 0, 0]], 1.0, (0, 0))
    with pytest.raises(ValueError, match=r"positions must have shape \[N, 3\]"):
        check_points("positions", np.zeros((4, 4)), 3)
    with pytest.raises(ValueError, match="finite"):
        check_points("positions", [[0, np.nan, 0]], 3)

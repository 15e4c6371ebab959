"""The small scalar helpers of spatial_memory.geometry: angle wrapping and finite-number checks."""

from __future__ import annotations

import math

import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import finite_float, wrap_angle


@pytest.mark.parametrize(
    ("angle", "wrapped"),
    [
        (0.0, 0.0),
        (math.pi, -math.pi),
        (-math.pi, -math.pi),
        (3 * math.pi / 2, -math.pi / 2),
        (7.0, 7.0 - 2 * math.pi),
    ],
)
def test_wrap_angle_lands_in_minus_pi_to_pi(angle, wrapped):
    assert wrap_angle(angle) == pytest.approx(wrapped)
    assert -math.pi <= wrap_angle(angle) < math.pi


def test_finite_float_reads_numbers_and_refuses_the_rest():
    assert finite_float("2.5", "v") == 2.5 and finite_float(3, "v") == 3.0
    for bad, message in (
        (True, "must be a number"),
        ("x", "must be a number"),
        (None, "must be a number"),
        (math.nan, "must be finite"),
        (math.inf, "must be finite"),
    ):
        with pytest.raises(InvalidInputError, match=f"v {message}"):
            finite_float(bad, "v")

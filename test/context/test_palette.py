"""Keyframe palette: neighbouring numbers far apart in hue, readable text on every colour."""

from __future__ import annotations

import colorsys
import itertools

import numpy as np
import pytest

from spatial_memory.context.palette import (
    BLACK,
    WHITE,
    KeyframeStyle,
    contrast_ratio,
    keyframe_color,
    palette,
    relative_luminance,
)


def _hsv_hue_deg(rgb: tuple[int, int, int]) -> float:
    return 360.0 * colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))[0]


def _hue_dist(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def test_wcag_reference_values():
    assert contrast_ratio(BLACK, WHITE) == pytest.approx(21.0)
    assert contrast_ratio((119, 119, 119), WHITE) == pytest.approx(4.48, abs=0.01)  # the classic #777
    assert relative_luminance(WHITE) == pytest.approx(1.0)
    assert relative_luminance(BLACK) == 0.0


def test_sixteen_colours_neighbouring_hues_far_apart():
    hues = [_hsv_hue_deg(e.rgb) for e in palette(16)]
    gaps = [_hue_dist(a, b) for a, b in itertools.pairwise(hues)]
    assert min(gaps) >= 60.0, gaps


@pytest.mark.parametrize("n", [16, 32])
def test_text_colour_contrast_meets_aa(n):
    for entry in palette(n):
        assert entry.text_rgb in (BLACK, WHITE)
        assert entry.contrast == pytest.approx(contrast_ratio(entry.rgb, entry.text_rgb))
        assert entry.contrast >= 4.5, entry
        other = WHITE if entry.text_rgb == BLACK else BLACK
        assert entry.contrast >= contrast_ratio(entry.rgb, other)  # the better of the two


def test_sixteen_colours_all_distinct():
    rgb = np.array([e.rgb for e in palette(16)], dtype=float)
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=2) + np.eye(16) * 1e9
    assert d.min() > 40.0
    assert len({e.rgb for e in palette(64)}) == 64  # no cycling after 8 as in the prototype


def test_numbers_start_at_one_and_style_matches_entry():
    with pytest.raises(ValueError):
        keyframe_color(0)
    style = KeyframeStyle.for_number(3, frame_id=42)
    assert (style.rgb, style.text_rgb) == (keyframe_color(3).rgb, keyframe_color(3).text_rgb)
    assert style.frame_id == 42 and style.number == 3

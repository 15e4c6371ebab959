"""Keyframe colours: golden-angle hue steps in OKLCH, each paired with black or white text by WCAG contrast.

Keyframe number n (1-based) gets hue `HUE0 + (n - 1) * 137.5` degrees in the perceptual OKLCH space, so
consecutive numbers are 137.5 degrees apart on the colour wheel and the sequence never repeats (the
golden angle is irrational in degrees). Lightness cycles through three levels, which separates the pairs
whose hues do land close together (n and n + 8 are 20 degrees apart in hue but differ in lightness).
Colours outside the sRGB gamut are brought in by lowering their chroma. The text colour (black or white)
is whichever gives the higher WCAG 2 contrast ratio; by the WCAG formula one of the two always reaches at
least 4.58, so every entry meets the 4.5 AA target for normal text.

All colours are RGB tuples (not OpenCV's BGR): the map and the watermarks are RGB images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

GOLDEN_ANGLE_DEG = 180.0 * (3.0 - math.sqrt(5.0))  # 137.5077...
HUE0_DEG = 25.0  # keyframe 1 is a warm red
LIGHTNESS_LEVELS = (0.76, 0.52, 0.64)  # OKLab L, cycled by number
CHROMA = 0.17
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class PaletteEntry:
    """One keyframe colour: `rgb` fill, `text_rgb` (black or white) and their WCAG contrast ratio."""

    rgb: tuple[int, int, int]
    text_rgb: tuple[int, int, int]
    contrast: float
    hue_deg: float  # OKLCH hue the colour was made from


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _linear_to_srgb(c: float) -> float:
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1.0 / 2.4) - 0.055


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an 8-bit sRGB colour, in [0, 1]."""
    r, g, b = (_srgb_to_linear(c / 255.0) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two colours, in [1, 21]."""
    la, lb = relative_luminance(a), relative_luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def text_color_for(rgb: tuple[int, int, int]) -> tuple[tuple[int, int, int], float]:
    """Black or white, whichever reads better on `rgb`, with its contrast ratio."""
    on_black, on_white = contrast_ratio(rgb, BLACK), contrast_ratio(rgb, WHITE)
    return (BLACK, on_black) if on_black >= on_white else (WHITE, on_white)


def _oklab_to_linear_rgb(L: float, a: float, b: float) -> tuple[float, float, float]:
    # Björn Ottosson's OKLab definition (2020): LMS' from Lab, cube, then to linear sRGB.
    l_ = L + 0.3963377774 * a + 0.2158037573 * b
    m_ = L - 0.1055613458 * a - 0.0638541728 * b
    s_ = L - 0.0894841775 * a - 1.2914855480 * b
    lc, mc, sc = l_**3, m_**3, s_**3
    return (
        4.0767416621 * lc - 3.3077115913 * mc + 0.2309699292 * sc,
        -1.2684380046 * lc + 2.6097574011 * mc - 0.3413193965 * sc,
        -0.0041960863 * lc - 0.7034186147 * mc + 1.7076147010 * sc,
    )


def oklch_to_rgb(L: float, C: float, h_deg: float) -> tuple[int, int, int]:
    """8-bit sRGB of an OKLCH colour, lowering the chroma (bisection) until it fits the gamut."""
    h = math.radians(h_deg)

    def lin(c: float) -> tuple[float, float, float]:
        return _oklab_to_linear_rgb(L, c * math.cos(h), c * math.sin(h))

    if min(lin(C)) < 0.0 or max(lin(C)) > 1.0:
        lo, hi = 0.0, C
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            rgb = lin(mid)
            if min(rgb) < 0.0 or max(rgb) > 1.0:
                hi = mid
            else:
                lo = mid
        C = lo
    out = lin(C)
    return tuple(int(round(255.0 * min(1.0, max(0.0, _linear_to_srgb(min(1.0, max(0.0, c))))))) for c in out)


@lru_cache(maxsize=512)
def keyframe_color(number: int) -> PaletteEntry:
    """Palette entry of keyframe `number` (1-based, as drawn on the map and the watermarks)."""
    if number < 1:
        raise ValueError(f"keyframe numbers start at 1, got {number}")
    i = number - 1
    hue = (HUE0_DEG + i * GOLDEN_ANGLE_DEG) % 360.0
    rgb = oklch_to_rgb(LIGHTNESS_LEVELS[i % len(LIGHTNESS_LEVELS)], CHROMA, hue)
    text, contrast = text_color_for(rgb)
    return PaletteEntry(rgb=rgb, text_rgb=text, contrast=contrast, hue_deg=hue)


def palette(n: int) -> list[PaletteEntry]:
    """The first `n` keyframe colours (numbers 1..n)."""
    return [keyframe_color(k) for k in range(1, n + 1)]


@dataclass(frozen=True)
class KeyframeStyle:
    """How keyframe `number` (1-based) is drawn on the map and its watermark: fill and text colour (RGB)."""

    number: int
    frame_id: int
    rgb: tuple[int, int, int]
    text_rgb: tuple[int, int, int]

    @classmethod
    def for_number(cls, number: int, frame_id: int) -> KeyframeStyle:
        entry = keyframe_color(number)
        return cls(number=number, frame_id=frame_id, rgb=entry.rgb, text_rgb=entry.text_rgb)

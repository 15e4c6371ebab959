"""Watermarks: the keyframe's colour and number in a corner square; inputs untouched; sizes scale."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.context.config import MapConfig
from spatial_memory.context.palette import KeyframeStyle, keyframe_color
from spatial_memory.context.watermark import tile_images, watermark_box, watermark_image, watermark_images
from spatial_memory.errors import InvalidInputError

DEFAULT = MapConfig()


def _image(h=480, w=640, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _square(img: np.ndarray, cfg: MapConfig = DEFAULT) -> tuple[np.ndarray, int]:
    x0, y0, side = watermark_box(img.shape, cfg)
    return img[y0 : y0 + side, x0 : x0 + side], side


def _ink(pixels: np.ndarray, style: KeyframeStyle) -> np.ndarray:
    """Pixels nearer the text colour than the fill (anti-aliased text is rarely the exact colour)."""
    p = pixels.astype(int)
    return np.abs(p - style.text_rgb).sum(axis=-1) < np.abs(p - style.rgb).sum(axis=-1)


def _check(img: np.ndarray, style: KeyframeStyle, cfg: MapConfig = DEFAULT) -> int:
    sq, side = _square(img, cfg)
    assert (sq[0, side // 2] == style.text_rgb).all()  # border in the text colour
    inner = sq[side // 8 : -side // 8, side // 8 : -side // 8].reshape(-1, 3)
    fill = (inner == style.rgb).all(axis=1).sum()
    ink = _ink(inner, style).sum()
    assert fill > 0.4 * len(inner), "square not in the keyframe colour"
    assert ink > 0.02 * len(inner), "no number in the text colour"
    # left of the digits, inside the border: fill only
    assert (sq[side // 2 - 1 : side // 2 + 2, side // 16 + 1 : side // 8] == style.rgb).all()
    return int(ink)


@pytest.mark.parametrize("number", [1, 2, 7, 8, 12, 16])
def test_colour_and_number(number):
    style = KeyframeStyle.for_number(number, frame_id=100 + number)
    entry = keyframe_color(number)
    assert (style.rgb, style.text_rgb) == (entry.rgb, entry.text_rgb)  # the palette entry used
    src = _image()
    out = watermark_image(src, style)
    _check(out, style)
    x0, y0, side = watermark_box(src.shape, MapConfig())
    outside = np.ones(src.shape[:2], bool)
    outside[y0 : y0 + side, x0 : x0 + side] = False
    assert (out[outside] == src[outside]).all()  # nothing drawn outside the square


def test_the_number_is_drawn():
    s8 = KeyframeStyle.for_number(8, 0)
    base = np.zeros((240, 320, 3), np.uint8)

    def ink(number: int) -> np.ndarray:
        out = watermark_image(base, KeyframeStyle(number, 0, s8.rgb, s8.text_rgb))
        _check(out, s8)
        sq, side = _square(out)
        return _ink(sq[side // 8 : -side // 8, side // 8 : -side // 8], s8)

    one, eight, eighteen = ink(1), ink(8), ink(18)
    assert eight.sum() > one.sum()  # "8" has more ink than "1"
    assert (one ^ eight).sum() > 0.5 * eight.sum()  # and a different shape
    assert eighteen[:, : eighteen.shape[1] // 2].any() and eighteen[:, eighteen.shape[1] // 2 :].any()


def test_inputs_untouched_and_outputs_new():
    imgs = [_image(seed=i) for i in range(3)]
    copies = [im.copy() for im in imgs]
    styles = [KeyframeStyle.for_number(i + 1, i) for i in range(3)]
    out = watermark_images(imgs, styles)
    for src, keep, res in zip(imgs, copies, out, strict=True):
        assert (src == keep).all() and res is not src and not np.shares_memory(res, src)


def test_grayscale_and_rgba_become_rgb():
    style = KeyframeStyle.for_number(3, 0)
    gray = np.full((120, 160), 90, np.uint8)
    out = watermark_image(gray, style)
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    assert (out[-1, -1] == 90).all()
    _check(out, style)
    rgba = np.zeros((120, 160, 4), np.uint8)
    assert watermark_image(rgba, style).shape == (120, 160, 3)
    assert watermark_image(gray[:, :, None], style).shape == (120, 160, 3)


def test_square_scales_with_the_image_and_corner_is_configurable():
    cfg = MapConfig()
    small = watermark_box((120, 160), cfg)[2]
    large = watermark_box((960, 1280), cfg)[2]
    assert large == pytest.approx(8 * small, rel=0.15)
    assert large == round(cfg.watermark_size_frac * 960)
    br = MapConfig(watermark_corner="bottom_right")
    x0, y0, side = watermark_box((480, 640), br)
    assert x0 + side > 600 and y0 + side > 440
    _check(watermark_image(_image(), KeyframeStyle.for_number(5, 0), br), KeyframeStyle.for_number(5, 0), br)


def test_bad_inputs():
    style = KeyframeStyle.for_number(1, 0)
    with pytest.raises(InvalidInputError):
        watermark_image(np.zeros((10, 10, 3), np.float32), style)
    with pytest.raises(InvalidInputError):
        watermark_image(np.zeros((10, 10, 2), np.uint8), style)
    with pytest.raises(InvalidInputError):
        watermark_image([[1, 2], [3, 4]], style)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="pair up"):
        watermark_images([_image()], [style, style])
    with pytest.raises(InvalidInputError, match="no image"):
        watermark_images([None], [style])  # type: ignore[list-item]
    for bad_style in ("red", (255, 0, 0), None):  # a colour name or tuple instead of a KeyframeStyle
        with pytest.raises(InvalidInputError, match="must be a KeyframeStyle"):
            watermark_image(_image(), bad_style)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="must be a KeyframeStyle"):
            watermark_images([_image()], [bad_style])  # type: ignore[list-item]


def test_tile_images_lays_out_a_grid():
    tiles = [np.full((20, 30, 3), v, np.uint8) for v in (10, 20, 30, 40, 50)]
    sheet = tile_images(tiles, tile_height=10, max_cols=2)
    assert sheet.shape == (30, 30, 3)
    assert (
        sheet[0, 0, 0] == 10 and sheet[0, 15, 0] == 20 and sheet[25, 0, 0] == 50 and sheet[25, 20, 0] == 255
    )
    with pytest.raises(InvalidInputError, match="no images"):
        tile_images([], 10)

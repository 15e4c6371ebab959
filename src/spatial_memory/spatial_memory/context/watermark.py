"""Watermarks: a filled square in a corner of each keyframe image, in the keyframe's map colour, with its
number in the contrasting text colour, so the policy can match images to map markers."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from spatial_memory.context.config import MapConfig
from spatial_memory.context.palette import KeyframeStyle
from spatial_memory.errors import InvalidInputError

FONT = cv2.FONT_HERSHEY_SIMPLEX


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A new RGB uint8 (H, W, 3) copy of an RGB, RGBA or grayscale uint8 image, else InvalidInputError."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"{name} must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        out = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 3:
        out = image.copy()
    elif image.ndim == 3 and image.shape[2] == 4:
        out = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGBA2RGB)
    else:
        raise InvalidInputError(
            f"{name} must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}"
        )
    if out.shape[0] < 8 or out.shape[1] < 8:
        raise InvalidInputError(f"{name} is too small to watermark: {out.shape[:2]}")
    return out


def watermark_box(shape: tuple[int, ...], config: MapConfig | None = None) -> tuple[int, int, int]:
    """(x0, y0, side) of the watermark square for an image of `shape` (pixels, top-left origin)."""
    cfg = config or MapConfig()
    h, w = int(shape[0]), int(shape[1])
    side = min(max(cfg.watermark_min_px, round(cfg.watermark_size_frac * min(h, w))), min(h, w))
    pad = min(max(2, side // 8), (min(h, w) - side) // 2)
    x0 = pad if cfg.watermark_corner.endswith("left") else w - pad - side
    y0 = pad if cfg.watermark_corner.startswith("top") else h - pad - side
    return x0, y0, side


def _check_style(style: object) -> KeyframeStyle:
    """`style` if it is a KeyframeStyle (`SpatialContext.keyframe_styles()`), else InvalidInputError."""
    if not isinstance(style, KeyframeStyle):
        raise InvalidInputError(
            f"a watermark style must be a KeyframeStyle (SpatialContext.keyframe_styles()), got "
            f"{type(style).__name__} {style!r}"
        )
    return style


def watermark_image(image: np.ndarray, style: KeyframeStyle, config: MapConfig | None = None) -> np.ndarray:
    """A watermarked RGB copy of `image` (the input is not modified)."""
    style = _check_style(style)
    out = as_rgb(image, f"keyframe image {style.number}")
    x0, y0, side = watermark_box(out.shape, config)
    border = max(1, side // 16)  # drawn inside the square, in the text colour
    out[y0 : y0 + side, x0 : x0 + side] = style.text_rgb
    out[y0 + border : y0 + side - border, x0 + border : x0 + side - border] = style.rgb
    label = str(style.number)
    (w1, h1), _ = cv2.getTextSize(label, FONT, 1.0, 1)
    scale = min(0.62 * side / w1, 0.55 * side / h1)
    thickness = max(1, round(side / 20))
    (w, h), _ = cv2.getTextSize(label, FONT, scale, thickness)
    org = (int(round(x0 + (side - w) / 2.0)), int(round(y0 + (side + h) / 2.0)))
    cv2.putText(out, label, org, FONT, scale, style.text_rgb, thickness, cv2.LINE_AA)
    return out


def watermark_images(
    images: Sequence[np.ndarray], styles: Sequence[KeyframeStyle], config: MapConfig | None = None
) -> list[np.ndarray]:
    """Watermark `images[i]` with `styles[i]` (same order, same length); returns new RGB images."""
    if len(images) != len(styles):
        raise InvalidInputError(
            f"{len(images)} images but {len(styles)} keyframe styles; they pair up in order"
        )
    for i, img in enumerate(images):
        _check_style(styles[i])
        if img is None:
            raise InvalidInputError(
                f"keyframe {styles[i].number} (frame {styles[i].frame_id}) has no image to watermark"
            )
    return [watermark_image(img, s, config) for img, s in zip(images, styles, strict=True)]


def tile_images(images: Sequence[np.ndarray], tile_height: int, max_cols: int = 4) -> np.ndarray:
    """RGB images scaled to one height, laid out row-major in a grid of up to `max_cols` columns.

    Used to publish all watermarked keyframes as a single Image (one RViz display, one message).
    """
    if not images:
        raise InvalidInputError("no images to tile")
    if tile_height < 1 or max_cols < 1:
        raise InvalidInputError(f"tile_height and max_cols must be >= 1, got {tile_height}, {max_cols}")
    tiles = []
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise InvalidInputError(f"tiles must be RGB uint8 (H, W, 3), got {im.dtype} {im.shape}")
        width = max(1, round(im.shape[1] * tile_height / im.shape[0]))
        tiles.append(cv2.resize(im, (width, tile_height), interpolation=cv2.INTER_AREA))
    cols = min(max_cols, len(tiles))
    rows = -(-len(tiles) // cols)
    tile_w = max(t.shape[1] for t in tiles)
    sheet = np.full((rows * tile_height, cols * tile_w, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * tile_height : (r + 1) * tile_height, c * tile_w : c * tile_w + tile.shape[1]] = tile
    return sheet

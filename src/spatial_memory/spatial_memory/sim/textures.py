"""Procedural textures drawn by our own code from a seed (no asset files, no downloads).

Each function returns an RGB uint8 image (H, W, 3). Distinct textures make places look different to a
camera; repeated ones (same function, same seed) make places look alike, which a memory must also handle.
"""

from __future__ import annotations

import cv2
import numpy as np


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled with cubic interpolation."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _tint(gray: np.ndarray, dark: tuple[int, int, int], light: tuple[int, int, int]) -> np.ndarray:
    """Map a [0, 1] field onto a colour ramp from `dark` to `light`."""
    d = np.asarray(dark, np.float32)
    li = np.asarray(light, np.float32)
    return (d + gray[..., None] * (li - d)).clip(0, 255).astype(np.uint8)


def wood(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Wood planks: wavy grain lines along x, a few planks with their own shade."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = _smooth_noise(rng, size, 5) * 0.6
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (y * rng.uniform(10, 16) + warp * 3.0))
    fine = _smooth_noise(rng, size, 64)
    planks = rng.uniform(0.8, 1.0, 4)[np.minimum((y * 4).astype(int), 3)]
    return _tint((0.55 * grain + 0.45 * fine) * planks, (105, 65, 32), (205, 155, 100))


def tiles(rng: np.random.Generator, size: int = 256, n: int = 8) -> np.ndarray:
    """Square tiles with grout lines and a slight per-tile colour variation."""
    base = np.array(rng.integers(150, 245, 3), np.float32)
    img = np.zeros((size, size, 3), np.float32)
    step = size // n
    for i in range(n):
        for j in range(n):
            img[i * step : (i + 1) * step, j * step : (j + 1) * step] = base * rng.uniform(0.88, 1.0)
    grout = np.zeros((size, size), bool)
    grout[::step, :] = grout[:, ::step] = True
    grout = cv2.dilate(grout.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    img[grout] = (90, 90, 90)
    return img.clip(0, 255).astype(np.uint8)


def stripes(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Bold stripes of 2-3 random colours at a random angle (packaging, cloth)."""
    colors = rng.integers(30, 230, (int(rng.integers(2, 4)), 3))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    band = ((x * np.cos(angle) + y * np.sin(angle)) / rng.uniform(10, 30)).astype(int) % len(colors)
    return colors[band].astype(np.uint8)


def dots(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Random coloured discs on a plain background (a printed label or a fruit bowl from afar)."""
    img = np.full((size, size, 3), rng.integers(40, 220, 3), np.uint8)
    for _ in range(int(rng.integers(12, 30))):
        center = tuple(int(v) for v in rng.integers(0, size, 2))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, center, int(rng.integers(size // 40, size // 8)), color, -1, cv2.LINE_AA)
    return img


def marble(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Veined stone for a counter top."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    turb = sum(_smooth_noise(rng, size, c) / k for k, c in ((1, 4), (2, 8), (4, 16), (8, 32)))
    veins = np.abs(np.sin((x + y + turb * 1.5) * np.pi * 5.0)) ** 0.3
    return _tint(veins, (120, 120, 125), (235, 232, 228))


def checker(rng: np.random.Generator, size: int = 256, n: int = 8) -> np.ndarray:
    """Two-colour checkerboard (floors)."""
    a, b = rng.integers(40, 120, 3), rng.integers(150, 230, 3)
    y, x = np.mgrid[0:size, 0:size] // (size // n)
    return np.where(((x + y) % 2 == 0)[..., None], a, b).astype(np.uint8)


GENERATORS = {
    "wood": wood,
    "tiles": tiles,
    "stripes": stripes,
    "dots": dots,
    "marble": marble,
    "checker": checker,
}

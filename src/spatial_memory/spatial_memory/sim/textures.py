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


# ---------------------------------------------------------------------- indoor surfaces (walls, floors)
# Appended for the indoor worlds. `GENERATORS` above stays as it is: the tabletop scene draws an index into
# it, so growing it would change every tabletop scene of a given seed. New code looks names up in
# `ALL_GENERATORS`, which holds the old generators and these. These tile seamlessly, so walls and floors
# that repeat them show no seams.


def _periodic_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1] that wraps around: random Fourier terms up to `cells` cycles per tile."""
    spectrum = np.zeros((size, size // 2 + 1), complex)
    k = min(cells, size // 2)
    for rows in (slice(0, k + 1), slice(size - k, size)):
        block = spectrum[rows, : k + 1]
        block[...] = rng.normal(size=block.shape) + 1j * rng.normal(size=block.shape)
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-9)


def bricks(rng: np.random.Generator, size: int = 256, rows: int = 8) -> np.ndarray:
    """Running-bond brick wall: bricks with their own shade, light mortar joints."""
    base = np.array(rng.integers(110, 200, 3), np.float32)
    h = size // rows
    w = 2 * h
    per_row = max(1, size // w)
    shades = rng.uniform(0.75, 1.05, (rows, per_row)).astype(np.float32)
    y, x = np.mgrid[0:size, 0:size]
    row = np.minimum(y // h, rows - 1)
    shifted = x - (row % 2) * (w // 2)  # every other row is offset by half a brick
    img = base * shades[row, (shifted // w) % per_row][..., None]  # the brick across the edge wraps
    img[(y % h == 0) | (shifted % w == 0)] = (200, 198, 190)
    grain = _periodic_noise(rng, size, 24)[..., None] * 30.0 - 15.0
    return (img + grain).clip(0, 255).astype(np.uint8)


def plaster(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Painted plaster: a pastel colour with soft, low-contrast blotches."""
    light = rng.integers(170, 250, 3)
    dark = (light * rng.uniform(0.78, 0.9)).astype(int)
    field = 0.6 * _periodic_noise(rng, size, 3) + 0.4 * _periodic_noise(rng, size, 20)
    return _tint(field, tuple(int(v) for v in dark), tuple(int(v) for v in light))


def wallpaper(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Wallpaper: a lattice of diamonds and dots in two colours on a light ground."""
    ground = tuple(int(v) for v in rng.integers(160, 245, 3))
    ink = tuple(int(v) for v in rng.integers(30, 160, 3))
    accent = tuple(int(v) for v in rng.integers(0, 256, 3))
    img = np.full((size, size, 3), ground, np.uint8)
    n = 2 * int(rng.integers(2, 5))  # even: the staggered rows wrap around
    step = size / n
    for i in range(n + 1):
        for j in range(n + 1):
            cx, cy = (j + 0.5 * (i % 2)) * step, i * step
            r = step * 0.3
            pts = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
            cv2.polylines(img, [pts], True, ink, max(1, size // 128), cv2.LINE_AA)
            cv2.circle(img, (int(cx), int(cy)), max(1, int(step * 0.08)), accent, -1, cv2.LINE_AA)
    return img


def carpet(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Carpet: a fine speckled pile in one colour with a faint large-scale shading."""
    dark = rng.integers(30, 130, 3)
    light = np.minimum(dark + rng.integers(40, 90, 3), 255)
    fine = rng.random((size, size)).astype(np.float32)
    field = 0.55 * fine + 0.45 * _periodic_noise(rng, size, 4)
    return _tint(field, tuple(int(v) for v in dark), tuple(int(v) for v in light))


ALL_GENERATORS = {
    **GENERATORS,
    "bricks": bricks,
    "plaster": plaster,
    "wallpaper": wallpaper,
    "carpet": carpet,
}

"""Egocentric, heading-up bird's-eye-view (BEV) map of the keyframes, drawn with OpenCV.

Geometry (`layout`) and drawing (`render`) are separate, so tests and the ROS marker publisher can use the
computed layout directly.

Map frame. The map is drawn in the world's ground plane (x-y; z is up, so roll and pitch of the camera
never turn the map). The centre is the current base position when the current frame has `T_world_base`
(mobile robot), else the current camera position, both projected on the ground. "Up" on the map is the
robot's heading:

1. the base's forward axis (+x) projected on the ground, when the current frame has `T_world_base`;
2. else the camera's viewing direction (optical +z) projected on the ground;
3. when the camera looks (within `MapConfig.nadir_threshold_deg` of) straight down or up, its viewing
   direction has no usable ground projection, so the image-up direction (optical -y) projected on the
   ground is used instead: the map is then "top of the image = up". For a camera pitched down without
   roll this agrees with rule 2, so the map does not jump when the camera tilts past the threshold.

The robot's left is the map's left. A point `fwd` metres ahead and `left` metres to the left is drawn at
pixel `(cx - left * s, cy - fwd * s)` with `s` pixels per metre (u right, v down, as images are).

Scale. Keyframe distances `d_i` are planar distances from the centre. With at least `outlier_min_keyframes`
keyframes, those beyond `mean(d) + outlier_sigma * std(d)` (population std, computed overflow-safe, see
`outliers`) are outliers: they are drawn on the edge ring along their true bearing, with a dark halo, a
chevron pointing outwards (left out when the keyframe's own viewing arrow already points outwards) and their
distance as text, and do not affect the scale. The farthest inlier sits at `1 / (1 + scale_margin)` of the
edge ring's radius, and the ring never stands for less than `min_extent_m`.

Overlaps. Markers are placed greedily: those whose true position is clear of all others stay there;
then off-map markers slide along the edge ring; then the rest, in keyframe order, each go to the exact
nearest point that keeps clear of the markers placed so far and of the robot glyph (see
`resolve_overlaps`). A moved marker gets a thin leader line to its true position. With many keyframes
the marker radius shrinks (`marker_fill_ratio`) so they fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from spatial_memory.context.config import MapConfig
from spatial_memory.context.palette import keyframe_color

FONT = cv2.FONT_HERSHEY_SIMPLEX
AA = cv2.LINE_AA
INK = (33, 37, 41)  # near-black for outlines, arrows, text
GRID = (214, 218, 224)  # range rings
EDGE = (150, 156, 166)  # the edge ring
LABEL = (96, 102, 112)  # captions

HALO_PX = 3  # off-map markers get a dark ring this far outside them
HEADING_SOURCES = ("base", "camera_forward", "camera_image_up", "default")


@dataclass(frozen=True, eq=False)
class EgoFrame:
    """Where the map is centred (world x, y) and where it points (world yaw of map-up, rad)."""

    origin_xy: np.ndarray
    heading_rad: float
    heading_source: str  # one of HEADING_SOURCES


@dataclass(frozen=True, eq=False)
class MapLayout:
    """Everything `render` draws, in pixels (u right, v down) and metres. Arrays have one row per keyframe."""

    size_px: int
    center_px: tuple[float, float]
    ego: EgoFrame
    scale_px_per_m: float
    extent_m: float  # metres the edge ring stands for
    edge_radius_px: float
    marker_radius_px: float
    robot_radius_px: float
    outlier_threshold_m: float  # inf when no outlier test was made
    numbers: np.ndarray  # (K,) int, 1..K
    rel_m: np.ndarray  # (K, 2) (forward, left) metres relative to the robot
    distance_m: np.ndarray  # (K,)
    bearing_rad: np.ndarray  # (K,) CCW from forward (left is positive)
    true_px: np.ndarray  # (K, 2) true position (outliers: the edge point on their bearing)
    marker_px: np.ndarray  # (K, 2) marker centre after overlap resolution
    outlier: np.ndarray  # (K,) bool
    view_dir_px: np.ndarray  # (K, 2) unit pixel direction of each keyframe's viewing direction
    scale_bar_m: float
    scale_bar_px: float
    ring_step_m: float

    @property
    def moved(self) -> np.ndarray:
        """(K,) bool: markers that were moved off their true position (they get a leader line)."""
        return np.linalg.norm(self.marker_px - self.true_px, axis=1) > 1e-6


# -- geometry ---------------------------------------------------------------------------------------


def camera_heading(R_world_cam: np.ndarray, nadir_threshold_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """World yaw of the ground projection of each camera's viewing direction, for (N, 3, 3) rotations.

    Returns (yaw (N,), used_image_up (N,) bool): where the optical axis is within `nadir_threshold_deg`
    of vertical, the image-up direction (optical -y) projected on the ground is used instead.
    """
    R = np.asarray(R_world_cam, dtype=np.float64).reshape(-1, 3, 3)
    z_xy = R[:, :2, 2]
    up_xy = -R[:, :2, 1]
    fallback = np.hypot(z_xy[:, 0], z_xy[:, 1]) < math.sin(math.radians(nadir_threshold_deg))
    v = np.where(fallback[:, None], up_xy, z_xy)
    return np.arctan2(v[:, 1], v[:, 0]), fallback


def ego_frame(
    T_world_cam: np.ndarray | None, T_world_base: np.ndarray | None = None, nadir_threshold_deg: float = 10.0
) -> EgoFrame:
    """Map centre and heading from the current frame's poses (see the module docstring for the rules)."""
    if T_world_base is not None:
        x_axis = T_world_base[:2, 0]
        if np.hypot(*x_axis) > 1e-6:
            return EgoFrame(T_world_base[:2, 3].copy(), float(np.arctan2(x_axis[1], x_axis[0])), "base")
        # base pitched straight up or down (not a ground robot): fall through to the camera's heading
        origin = T_world_base[:2, 3].copy()
    elif T_world_cam is not None:
        origin = T_world_cam[:2, 3].copy()
    else:
        return EgoFrame(np.zeros(2), 0.0, "default")
    if T_world_cam is None:
        return EgoFrame(origin, 0.0, "default")
    yaw, up = camera_heading(T_world_cam[None, :3, :3], nadir_threshold_deg)
    return EgoFrame(origin, float(yaw[0]), "camera_image_up" if up[0] else "camera_forward")


def nice_length(max_m: float) -> float:
    """Largest 1, 2 or 5 x 10^k not above `max_m` (> 0)."""
    k = math.floor(math.log10(max_m))
    for m in (5.0, 2.0, 1.0):
        if m * 10.0**k <= max_m * (1 + 1e-9):
            return m * 10.0**k
    return 10.0 ** (k - 1) * 5.0  # unreachable for max_m > 0, kept for safety


def marker_radius(config: MapConfig, n_keyframes: int) -> float:
    """Marker radius for `n_keyframes`: the configured one, shrunk so markers cover at most
    `marker_fill_ratio` of the disc, never below `min_marker_radius_px`."""
    edge = edge_radius(config)
    fit = edge * math.sqrt(config.marker_fill_ratio / max(n_keyframes, 1))
    return float(max(config.min_marker_radius_px, min(config.marker_radius_px, math.floor(fit))))


def edge_radius(config: MapConfig) -> float:
    """Radius (px) of the edge ring: outliers sit on it; inliers stay inside it."""
    return config.size_px / 2.0 - config.edge_margin_px - config.marker_radius_px


_EPS = 1e-7


@lru_cache(maxsize=512)
def _pairs(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j of m items (np.triu_indices costs more than the rest of a search)."""
    i, j = np.triu_indices(m, 1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def _circle_candidates(a: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Projections of `a` onto each circle (a at a centre: straight up on the map) and the intersection
    points of every intersecting pair: where the nearest point to `a` outside discs / inside an annulus
    can lie."""
    d = a - centers
    n = np.sqrt(np.einsum("ij,ij->i", d, d))
    zero = n < 1e-12
    if zero.any():
        d[zero] = (0.0, -1.0)
        n[zero] = 1.0
    cands = [centers + d * (radii / n)[:, None]]
    i, j = _pairs(len(centers))
    if len(i):
        p = centers[i]
        dv = centers[j] - p
        dd2 = np.einsum("ij,ij->i", dv, dv)
        r1, r2 = radii[i], radii[j]
        k = np.flatnonzero((dd2 <= (r1 + r2) ** 2) & (dd2 >= (r1 - r2) ** 2) & (dd2 > 1e-20))
        if len(k):
            p, dv, dd2, r1, r2 = p[k], dv[k], dd2[k], r1[k], r2[k]
            along = (r1 * r1 - r2 * r2 + dd2) / (2.0 * dd2)  # in units of |dv|
            h = np.sqrt(np.maximum(r1 * r1 / dd2 - along * along, 0.0))
            mid = p + dv * along[:, None]
            perp = np.stack([-dv[:, 1], dv[:, 0]], axis=1) * h[:, None]
            cands += [mid + perp, mid - perp]
    return np.concatenate(cands)


def _nearest_feasible_few(
    a: np.ndarray, circles: list[tuple[float, float, float, bool]]
) -> np.ndarray | None:
    """Nearest point to `a` that is outside every circle (x, y, r, False) and inside every circle
    (x, y, r, True) of a short list, or None. Pure Python: for a handful of circles it is several times
    cheaper than the numpy version. The answer is a projection of `a` onto one circle or an
    intersection of two."""
    ax, ay = float(a[0]), float(a[1])
    cands = []
    for x, y, r, _ in circles:
        dx, dy = ax - x, ay - y
        n = math.hypot(dx, dy)
        cands.append((x + dx / n * r, y + dy / n * r) if n > 1e-12 else (x, y - r))
    if len(circles) == 1:
        return np.array(cands[0])
    for i, (x1, y1, r1, _) in enumerate(circles):
        for x2, y2, r2, _ in circles[i + 1 :]:
            dx, dy = x2 - x1, y2 - y1
            d2 = dx * dx + dy * dy
            if d2 < 1e-20 or d2 > (r1 + r2) ** 2 or d2 < (r1 - r2) ** 2:
                continue
            along = (r1 * r1 - r2 * r2 + d2) / (2.0 * d2)
            h = math.sqrt(max(r1 * r1 / d2 - along * along, 0.0))
            mx, my = x1 + dx * along, y1 + dy * along
            cands += [(mx - dy * h, my + dx * h), (mx + dy * h, my - dx * h)]
    tol = 1e-9
    outside = [(x, y, (r - tol) ** 2) for x, y, r, inside in circles if not inside]
    inner = [(x, y, (r + tol) ** 2) for x, y, r, inside in circles if inside]
    cands.sort(key=lambda p: (p[0] - ax) ** 2 + (p[1] - ay) ** 2)
    for px, py in cands:  # nearest first: the first feasible one is the answer
        if all((px - x) ** 2 + (py - y) ** 2 >= r2 for x, y, r2 in outside) and all(
            (px - x) ** 2 + (py - y) ** 2 <= r2 for x, y, r2 in inner
        ):
            return np.array((px, py))
    return None


def _nearest_free(
    a: np.ndarray, placed: np.ndarray, clearance: np.ndarray, c: np.ndarray, r_lo: float, r_hi: float
) -> np.ndarray | None:
    """The point nearest to `a` that is at least `clearance[j]` from every `placed[j]` and within
    [r_lo, r_hi] of `c`, or None if there is none.

    The nearest point of such a region (outside discs, inside an annulus) lies on its boundary: it is
    either the projection of `a` onto one constraint circle or an intersection of two. Two exact
    steps find it:

    1. Constraint generation: solve for the constraints that `a` violates only (a handful, in pure
       Python); if the answer violates others, add those and solve again. A point that satisfies every
       constraint while being nearest for a subset of them is nearest for all.
    2. If that set grows beyond a few circles: all circles near `a`, vectorised. With a search radius S,
       blockers farther than S + clearance cannot touch a point within S of `a`; S doubles until the
       best valid candidate lies within it.
    """
    diff = placed - a
    d_all = np.einsum("ij,ij->i", diff, diff)
    need = clearance * clearance

    def violated(p: np.ndarray) -> tuple[np.ndarray, bool, bool]:
        e = placed - p
        rc = math.hypot(p[0] - c[0], p[1] - c[1])
        return np.flatnonzero(np.einsum("ij,ij->i", e, e) < need), rc < r_lo, rc > r_hi

    bad, low, high = violated(a)
    if not len(bad) and not low and not high:
        return a.copy()
    active: set[int] = set()
    region_lo = region_hi = False
    lower = 0.0  # distance of the last relaxed optimum: a lower bound on the answer's
    while True:
        active.update(bad.tolist())
        region_lo, region_hi = region_lo or low, region_hi or high
        if len(active) + region_lo + region_hi > 6:
            break
        circles = [(placed[j, 0], placed[j, 1], clearance[j] + _EPS, False) for j in sorted(active)]
        if region_lo:
            circles.append((c[0], c[1], r_lo + _EPS, False))
        if region_hi:
            circles.append((c[0], c[1], r_hi - _EPS, True))
        p = _nearest_feasible_few(a, circles)
        if p is None:
            break
        lower = math.hypot(p[0] - a[0], p[1] - a[1])
        bad, low, high = violated(p)
        if not len(bad) and not low and not high:
            return p

    def valid(p: np.ndarray, centers: np.ndarray, need_sq: np.ndarray) -> np.ndarray:
        e = p - c
        rc2 = np.einsum("ij,ij->i", e, e)
        ok = (rc2 >= r_lo * r_lo) & (rc2 <= r_hi * r_hi)
        if len(centers) and ok.any():
            q = p[ok][:, None, :] - centers[None, :, :]
            ok[ok] = (np.einsum("ijk,ijk->ij", q, q) >= need_sq).all(axis=1)
        return ok

    # start the search radius a bit beyond the lower bound: usually one round then suffices
    s = max(float(clearance.min()) if len(clearance) else 1.0, 1.5 * lower)
    big = 2.0 * r_hi + (float(clearance.max()) if len(clearance) else 0.0)
    while True:
        sel = d_all <= (s + clearance) ** 2
        near = placed[sel]
        m = len(near)
        centers = np.empty((m + 2, 2))
        centers[:m] = near
        centers[m:] = c
        radii = np.empty(m + 2)
        radii[:m] = clearance[sel] + _EPS  # a hair outside, so the candidates pass the >= tests
        radii[m] = r_lo + _EPS
        radii[m + 1] = r_hi - _EPS
        cand = _circle_candidates(a, centers, radii)
        e = cand - a
        dist2 = np.einsum("ij,ij->i", e, e)
        within = np.flatnonzero(dist2 <= s * s)
        cand, dist2 = cand[within], dist2[within]
        ok = valid(cand, near, need[sel])
        if ok.any():
            idx = np.flatnonzero(ok)
            return cand[idx[np.argmin(dist2[idx])]]
        if s >= big:
            return None
        s *= 2.0


def resolve_overlaps(
    anchors: np.ndarray,
    on_edge: np.ndarray,
    center: tuple[float, float],
    radius: float,
    edge_radius_px: float,
    keep_out_radius: float,
    gap: float,
    edge_halo: float = 0.0,
) -> np.ndarray:
    """Greedy non-overlapping placement of circles of `radius` as close as possible to `anchors`.

    Markers whose true position is clear of every other marker's are placed there first (they never
    move). Edge markers (`on_edge`) come next and slide along the edge ring (bearing steps alternating
    either side); then the remaining markers, in order, each go to the point nearest to its anchor that
    keeps `2 * radius + gap` from every marker placed so far, stays inside the disc of `edge_radius_px`
    and outside the robot's keep-out disc (exact: see `_nearest_free`). Only when the disc is full does
    a marker stay on its anchor regardless (`marker_radius` keeps the fill low enough that it is not).
    Edge markers are drawn with a halo: other markers keep `edge_halo` more from them.
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    on_edge = np.asarray(on_edge, dtype=bool).reshape(-1)
    k = len(anchors)
    out = anchors.copy()
    if k == 0:
        return out
    c = np.asarray(center, dtype=np.float64)
    min_dist = 2.0 * radius + gap
    r_clear = keep_out_radius + radius + gap
    placed = np.empty((k, 2))
    clearance = np.empty(k)  # how close another marker may come to each placed one

    # inner markers whose anchor is clear of every other anchor never need to move: place them at once
    inner = np.flatnonzero(~on_edge)
    ai = anchors[inner]
    d2 = np.square(ai[:, None, :] - anchors[None, :, :]).sum(axis=2)
    d2[np.arange(len(inner)), inner] = np.inf
    need = np.where(on_edge, min_dist + edge_halo, min_dist)  # from each other anchor
    rc = np.hypot(ai[:, 0] - c[0], ai[:, 1] - c[1])
    alone = (d2 >= need * need).all(axis=1) & (rc >= r_clear) & (rc <= edge_radius_px)
    n = int(alone.sum())
    placed[:n] = ai[alone]
    clearance[:n] = min_dist

    def clear_of_placed(p: np.ndarray, extra: float) -> np.ndarray:
        if n == 0:
            return np.ones(len(p), dtype=bool)
        d = p[:, None, :] - placed[None, :n, :]
        need = np.maximum(clearance[:n], min_dist + extra)
        return (np.einsum("ijk,ijk->ij", d, d) >= need * need).all(axis=1)

    for i in np.concatenate([np.flatnonzero(on_edge), inner[~alone]]):
        a = anchors[i]
        pos = None
        if on_edge[i]:
            theta0 = math.atan2(a[1] - c[1], a[0] - c[0])
            d_theta = max(1.0, radius / 4.0) / edge_radius_px
            steps = np.arange(1, int(math.pi / d_theta) + 1)
            offs = np.concatenate([[0.0], np.stack([steps, -steps], axis=1).ravel() * d_theta])
            cand = c + edge_radius_px * np.stack([np.cos(theta0 + offs), np.sin(theta0 + offs)], axis=1)
            ok = np.flatnonzero(clear_of_placed(cand, edge_halo))
            if len(ok):
                pos = cand[ok[0]]
        if pos is None:  # the anchor itself if free, else the nearest free point
            pos = _nearest_free(a, placed[:n], clearance[:n], c, r_clear, edge_radius_px)
        out[i] = a if pos is None else pos  # None: the disc is full, overlap is unavoidable
        placed[n] = out[i]
        clearance[n] = min_dist + (edge_halo if on_edge[i] else 0.0)
        n += 1
    return out


def outliers(dist: np.ndarray, cfg: MapConfig) -> tuple[np.ndarray, float]:
    """(K,) bool: distances beyond `mean + outlier_sigma * std` (population std), and that threshold (m).

    Computed on the distances divided by the largest, so the squares cannot overflow however far a keyframe
    is (a 1e160 m keyframe squared is inf in float64: the threshold became inf and the keyframe an inlier,
    setting the map's scale); the same rule, exactly scaled. A distance that is itself infinite is an
    outlier. No outliers (threshold inf) when the spread is below 1e-9 m.
    """
    finite = np.isfinite(dist)
    top = float(dist[finite].max()) if finite.any() else 0.0
    if top <= 0.0:
        return ~finite, math.inf
    unit = dist[finite] / top
    std = float(unit.std())
    if std * top <= 1e-9:
        return ~finite, math.inf
    cut = float(unit.mean()) + cfg.outlier_sigma * std
    out = ~finite
    out[finite] = unit > cut
    return out, cut * top


def layout(
    keyframe_poses: np.ndarray,
    T_world_cam: np.ndarray | None,
    T_world_base: np.ndarray | None = None,
    config: MapConfig | None = None,
    numbers: np.ndarray | None = None,
) -> MapLayout:
    """Compute the map layout of keyframes (T_world_cam of each, (K, 4, 4)) seen from the current pose.

    `T_world_cam`/`T_world_base` are the current frame's poses (either may be None; with neither the
    map is centred on the world origin facing world +x). `numbers` default to 1..K.
    """
    cfg = config or MapConfig()
    P = np.asarray(keyframe_poses, dtype=np.float64).reshape(-1, 4, 4)
    k = len(P)
    ego = ego_frame(T_world_cam, T_world_base, cfg.nadir_threshold_deg)
    nums = np.arange(1, k + 1) if numbers is None else np.asarray(numbers, dtype=int).reshape(-1)
    if len(nums) != k:
        raise ValueError(f"{len(nums)} numbers for {k} keyframes")
    ch, sh = math.cos(ego.heading_rad), math.sin(ego.heading_rad)
    d = P[:, :2, 3] - ego.origin_xy
    fwd = d[:, 0] * ch + d[:, 1] * sh
    left = -d[:, 0] * sh + d[:, 1] * ch
    dist = np.hypot(fwd, left)
    bearing = np.arctan2(left, fwd)

    outlier, threshold = (
        outliers(dist, cfg) if k >= cfg.outlier_min_keyframes else (np.zeros(k, bool), math.inf)
    )
    inlier_max = float(dist[~outlier].max()) if (~outlier).any() else 0.0
    extent = max(inlier_max * (1.0 + cfg.scale_margin), cfg.min_extent_m)
    r_edge = edge_radius(cfg)
    scale = r_edge / extent

    cx = cy = cfg.size_px / 2.0
    true_px = np.stack([cx - left * scale, cy - fwd * scale], axis=1)
    if outlier.any():
        b = bearing[outlier]
        true_px[outlier] = np.stack([cx - r_edge * np.sin(b), cy - r_edge * np.cos(b)], axis=1)

    r = marker_radius(cfg, k)
    robot_r = float(cfg.robot_size_px)
    marker_px = resolve_overlaps(
        true_px, outlier, (cx, cy), r, r_edge, robot_r, float(cfg.marker_gap_px), edge_halo=HALO_PX + 2.0
    )

    if k:
        view_yaw, _ = camera_heading(P[:, :3, :3], cfg.nadir_threshold_deg)
        rel = view_yaw - ego.heading_rad
        view_dir = np.stack([-np.sin(rel), -np.cos(rel)], axis=1)
    else:
        view_dir = np.zeros((0, 2))

    bar_m = nice_length(0.4 * extent)
    ring_m = nice_length(0.5 * extent)  # 2 to 5 rings inside the edge
    return MapLayout(
        size_px=cfg.size_px,
        center_px=(cx, cy),
        ego=ego,
        scale_px_per_m=scale,
        extent_m=extent,
        edge_radius_px=r_edge,
        marker_radius_px=r,
        robot_radius_px=robot_r,
        outlier_threshold_m=threshold,
        numbers=nums,
        rel_m=np.stack([fwd, left], axis=1),
        distance_m=dist,
        bearing_rad=bearing,
        true_px=true_px,
        marker_px=marker_px,
        outlier=outlier,
        view_dir_px=view_dir,
        scale_bar_m=bar_m,
        scale_bar_px=bar_m * scale,
        ring_step_m=ring_m,
    )


# -- drawing ----------------------------------------------------------------------------------------


def format_metres(m: float) -> str:
    """A round length (scale bar, rings): '0.05 m', '0.5 m', '2 m', '100 m'."""
    return f"{m:g} m"


def format_distance(m: float) -> str:
    """A measured distance: '0.42 m', '4.4 m', '12 m'."""
    if m < 1.0:
        return f"{m:.2f} m"
    if m < 10.0:
        return f"{m:.1f} m"
    return f"{m:.0f} m"


@lru_cache(maxsize=8)
def _background(n: int, center: tuple[int, int], r_edge: int, inside, outside) -> np.ndarray:
    """The off-map band with the map disc cut out (cached: filling a fresh canvas costs more than a copy)."""
    img = np.empty((n, n, 3), dtype=np.uint8)
    img[...] = np.asarray(outside, dtype=np.uint8)
    cv2.circle(img, center, r_edge, inside, -1, AA)
    img.setflags(write=False)
    return img


@lru_cache(maxsize=512)
def _text_size(text: str, scale: float, thickness: int) -> tuple[tuple[int, int], int]:
    """cv2.getTextSize, cached (it costs about 10x a putText)."""
    return cv2.getTextSize(text, FONT, scale, thickness)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


@lru_cache(maxsize=64)
def _number_font(n_digits: int, radius: float, base_scale: float, ref_radius: float) -> tuple[float, int]:
    """Font scale and thickness so an n-digit number fits inside a marker of `radius`."""
    scale = base_scale * radius / ref_radius
    (w, h), _ = _text_size("8" * n_digits, 1.0, 1)
    scale = min(scale, 1.5 * radius / w, 1.1 * radius / h)
    return scale, (2 if scale >= 0.45 else 1)


def _label_box(img: np.ndarray, text: str, center: np.ndarray, scale: float, color, bg) -> None:
    bw, bh = _label_size(text, scale)
    x0, y0 = int(round(center[0] - bw / 2.0)), int(round(center[1] - bh / 2.0))
    cv2.rectangle(img, (x0, y0), (x0 + bw - 1, y0 + bh - 1), bg, -1)
    h = _text_size(text, scale, 1)[0][1]
    cv2.putText(img, text, (x0 + 2, y0 + 2 + h), FONT, scale, color, 1, AA)


def _label_size(text: str, scale: float) -> tuple[int, int]:
    """Size (w, h) of the background box `_label_box` draws for `text`."""
    (w, h), base = _text_size(text, scale, 1)
    return w + 4, h + base + 4


def _robot_glyph(img: np.ndarray, center: tuple[float, float], s: float, color=INK) -> None:
    cx, cy = center
    pts = np.array(
        [[cx, cy - s], [cx + 0.72 * s, cy + 0.78 * s], [cx, cy + 0.38 * s], [cx - 0.72 * s, cy + 0.78 * s]]
    )
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], color, AA, shift=4)


def render(lay: MapLayout, config: MapConfig | None = None) -> np.ndarray:
    """Draw a layout: RGB uint8 image of shape (size_px, size_px, 3)."""
    cfg = config or MapConfig()
    n = cfg.size_px
    c = np.array(lay.center_px)
    cc = _pt(c)
    r_edge = lay.edge_radius_px
    img = _background(n, cc, int(round(r_edge)), cfg.background_rgb, cfg.off_map_rgb).copy()

    if cfg.show_range_rings and lay.ring_step_m > 0:
        radii = lay.ring_step_m * lay.scale_px_per_m * np.arange(1, 64)
        radii = radii[radii < r_edge - 8]
        # label the rings along the diagonal that keeps farthest from the markers
        dirs = np.array([[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) / math.sqrt(2.0)
        spots = c + radii[None, :, None] * dirs[:, None, :]  # (diagonal, ring, 2)
        best = 0
        if len(lay.marker_px) and len(radii):
            gap = np.linalg.norm(spots[:, :, None, :] - lay.marker_px[None, None], axis=3).min(axis=(1, 2))
            best = int(np.argmax(gap))
        for k, rr in enumerate(radii, start=1):
            cv2.circle(img, cc, int(round(rr)), GRID, 1, AA)
            _label_box(
                img, format_metres(k * lay.ring_step_m), spots[best, k - 1], 0.36, LABEL, cfg.background_rgb
            )
    cv2.circle(img, cc, int(round(r_edge)), EDGE, 1, AA)  # over the rings' labels

    if cfg.show_scale_bar:
        x0, y = 14, n - 14
        x1 = x0 + int(round(lay.scale_bar_px))
        cv2.line(img, (x0, y), (x1, y), INK, 2, AA)
        for x in (x0, x1):
            cv2.line(img, (x, y - 5), (x, y + 1), INK, 2, AA)
        cv2.putText(img, format_metres(lay.scale_bar_m), (x1 + 7, y + 4), FONT, 0.45, INK, 1, AA)
    if cfg.show_legend:
        _robot_glyph(img, (19.0, 20.0), 7.0)
        cv2.putText(img, "robot, up = its heading", (31, 25), FONT, 0.42, LABEL, 1, AA)

    r = lay.marker_radius_px
    ri = int(round(r))
    k = len(lay.numbers)
    mk = lay.marker_px
    mk_i = np.round(mk).astype(np.int64).tolist()
    entries = [keyframe_color(int(x)) for x in lay.numbers]
    # leader lines from moved markers to their true positions (a small dark dot), two calls for all
    delta = lay.true_px - mk
    dist = np.hypot(delta[:, 0], delta[:, 1])
    moved = np.flatnonzero(dist > cfg.leader_min_px)
    if len(moved):
        starts = mk[moved] + delta[moved] / dist[moved, None] * r
        lines = np.stack([starts, lay.true_px[moved]], axis=1)
        cv2.polylines(img, list(np.round(lines * 16).astype(np.int32)), False, LABEL, 1, AA, shift=4)
        ring = 2.5 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)
        dots = lay.true_px[moved][:, None, :] + ring[None]
        cv2.fillPoly(img, list(np.round(dots * 16).astype(np.int32)), INK, AA, shift=4)
    # viewing-direction arrows (under the markers)
    if cfg.show_arrows and k:
        u = lay.view_dir_px
        tip = mk + u * (r + cfg.arrow_length_px)
        head = 0.45 * cfg.arrow_length_px
        shafts = np.stack([mk + u * r, tip - u * 0.5 * head], axis=1)
        back = tip - u * head
        side = np.stack([-u[:, 1], u[:, 0]], axis=1) * (0.6 * head)
        heads = np.stack([tip, back + side, back - side], axis=1)
        cv2.polylines(img, list(np.round(shafts * 16).astype(np.int32)), False, INK, 2, AA, shift=4)
        cv2.fillPoly(img, list(np.round(heads * 16).astype(np.int32)), INK, AA, shift=4)
    # off-map markers: a halo, a chevron pointing outwards, the distance. The chevron is left out when
    # the viewing arrow already points outwards (within 45 degrees): the two would merge into a blob.
    for i in np.flatnonzero(lay.outlier):
        m = mk[i]
        u = (m - c) / max(float(np.hypot(*(m - c))), 1e-9)
        v = np.array([-u[1], u[0]])
        cv2.circle(img, mk_i[i], ri + HALO_PX, INK, 2, AA)
        if not (cfg.show_arrows and float(u @ lay.view_dir_px[i]) > math.cos(math.radians(45))):
            base = m + u * (r + HALO_PX + 2)
            tri = np.array([base + v * 7, base + u * 9, base - v * 7])
            cv2.fillPoly(img, [np.round(tri * 16).astype(np.int32)], INK, AA, shift=4)
        _outlier_label(img, lay, i, m, u, r)
    # markers on top, numbered
    for i in range(k):
        e = entries[i]
        cv2.circle(img, mk_i[i], ri, e.rgb, -1, cv2.LINE_8)  # the anti-aliased outline hides the steps
        cv2.circle(img, mk_i[i], ri, INK, 1, AA)
        label = str(int(lay.numbers[i]))
        fs, th = _number_font(len(label), r, cfg.font_scale, float(cfg.marker_radius_px))
        (w, h), _ = _text_size(label, fs, th)
        cv2.putText(
            img, label, (mk_i[i][0] - w // 2, mk_i[i][1] + (h + 1) // 2), FONT, fs, e.text_rgb, th, AA
        )
    _robot_glyph(img, lay.center_px, float(cfg.robot_size_px))
    return img


def _outlier_label(img: np.ndarray, lay: MapLayout, i: int, m: np.ndarray, u: np.ndarray, r: float) -> None:
    """Distance text for an off-map marker: outside the ring if it fits in the canvas, else inside."""
    text = format_distance(float(lay.distance_m[i]))
    scale = 0.42
    half = np.array(_label_size(text, scale), dtype=np.float64) / 2.0
    n = lay.size_px
    for sign, extra in ((1.0, r + 20), (-1.0, r + 6)):
        reach = extra + float(np.abs(u) @ half)  # distance from the marker centre to the box centre
        p = m + sign * u * reach
        if np.all(p - half >= 0) and np.all(p + half <= n):
            break
    _label_box(img, text, p, scale, INK, (255, 255, 255))


# -- memory answers on the map ----------------------------------------------------------------------

ANSWER_COLORS = (
    (214, 39, 40),
    (31, 119, 180),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (23, 190, 207),
)


def map_pixel(lay: MapLayout, forward_m: np.ndarray, left_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) of points given in the robot's frame (metres ahead, to the left), clamped to the edge
    ring, and (N,) bool: which were clamped (they lie off the map)."""
    cx, cy = lay.center_px
    p = np.stack(
        [cx - np.asarray(left_m) * lay.scale_px_per_m, cy - np.asarray(forward_m) * lay.scale_px_per_m], 1
    )
    d = p - np.array([cx, cy])
    r = np.hypot(d[:, 0], d[:, 1])
    off = r > lay.edge_radius_px
    p[off] = np.array([cx, cy]) + d[off] / r[off, None] * lay.edge_radius_px
    return p, off


def draw_answers(
    img: np.ndarray, lay: MapLayout, truth: np.ndarray, answer: np.ndarray, labels: list[str]
) -> np.ndarray:
    """Draw where pictured places really are (hollow diamonds) and where the memory says they are (filled
    discs), each with its heading and a line between the pair; points are (x ahead, y left, yaw) in the
    robot's frame now, as `MemoryAnswer` gives them. Returns a copy of `img`."""
    out = img.copy()
    truth, answer = np.asarray(truth, float).reshape(-1, 3), np.asarray(answer, float).reshape(-1, 3)
    if not (len(truth) == len(answer) == len(labels)):
        raise ValueError(f"{len(truth)} truths, {len(answer)} answers and {len(labels)} labels")
    t_px, _ = map_pixel(lay, truth[:, 0], truth[:, 1])
    a_px, _ = map_pixel(lay, answer[:, 0], answer[:, 1])
    for i, label in enumerate(labels):
        color = ANSWER_COLORS[i % len(ANSWER_COLORS)]
        t, a = t_px[i], a_px[i]
        cv2.line(out, _pt(t), _pt(a), color, 1, AA)
        for p, yaw in ((t, truth[i, 2]), (a, answer[i, 2])):  # heading ticks: map-up is yaw 0
            tip = p + 16.0 * np.array([-math.sin(yaw), -math.cos(yaw)])
            cv2.line(out, _pt(p), _pt(tip), INK, 2, AA)
        diamond = t + 8.0 * np.array([[0, -1], [1, 0], [0, 1], [-1, 0]])
        cv2.polylines(out, [np.round(diamond * 16).astype(np.int32)], True, color, 2, AA, shift=4)
        cv2.circle(out, _pt(a), 6, color, -1, AA)
        cv2.circle(out, _pt(a), 6, INK, 1, AA)
        cv2.putText(out, label, (_pt(t)[0] + 9, _pt(t)[1] - 7), FONT, 0.5, color, 2, AA)
    n = out.shape[0]
    cv2.putText(out, "diamond: true place, disc: memory's answer", (12, n - 34), FONT, 0.42, LABEL, 1, AA)
    return out

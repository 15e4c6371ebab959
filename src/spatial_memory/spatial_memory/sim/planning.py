"""Occupancy grids of indoor worlds and A* path planning on them, for scripted robot tours.

A cell of an `OccupancyGrid` is free when a disc of radius `inflate_m` (the robot) centred on the cell centre
touches no wall, furniture or floor object: obstacles are rasterised with exact point-to-footprint distances,
so the grid keeps the robot radius from every obstacle. `plan_path` runs A* over free cells (8-connected, no
corner cutting, octile heuristic), then removes waypoints by line-of-sight shortcutting; every segment of the
result crosses only free cells. Grid rows are y, columns are x: `occupied[iy, ix]`.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from spatial_memory.errors import InvalidInputError


class WorldLike(Protocol):
    """What planning reads of a world (`sim.worlds.World` is one). Typed here, not imported: worlds builds
    on this module, so planning stays the lower of the two."""

    config: Any  # .width_m, .depth_m, .robot_radius_m
    rooms: Sequence[Any]  # each with .center (x, y)
    doors: Sequence[Any]  # each with .x, .y

    def obstacle_footprints(self) -> tuple[Any, Any]: ...


log = logging.getLogger(__name__)

_SQRT2 = math.sqrt(2.0)
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
_EDGE_EPS = 1e-6  # in cells: a segment point this close to a cell edge counts for the cells on both sides


# ---------------------------------------------------------------------------------------------- rasterising
def _cell_window(
    shape: tuple[int, int], origin: tuple[float, float], res: float, lo: np.ndarray, hi: np.ndarray
) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Slices and cell-centre coordinates of the cells whose centres lie in the box [lo, hi] (x, y)."""
    ix0 = max(0, math.ceil((lo[0] - origin[0]) / res - 0.5))
    ix1 = min(shape[1] - 1, math.floor((hi[0] - origin[0]) / res - 0.5))
    iy0 = max(0, math.ceil((lo[1] - origin[1]) / res - 0.5))
    iy1 = min(shape[0] - 1, math.floor((hi[1] - origin[1]) / res - 0.5))
    if ix0 > ix1 or iy0 > iy1:
        return None
    xs = origin[0] + (np.arange(ix0, ix1 + 1) + 0.5) * res
    ys = origin[1] + (np.arange(iy0, iy1 + 1) + 0.5) * res
    return slice(iy0, iy1 + 1), slice(ix0, ix1 + 1), xs[None, :], ys[:, None]


def mark_footprints(
    occupied: np.ndarray,
    origin: tuple[float, float],
    resolution_m: float,
    boxes: np.ndarray,
    discs: np.ndarray,
    inflate_m: float,
) -> None:
    """Mark, in place, the cells whose centres lie within `inflate_m` of a footprint.

    `boxes` rows are (cx, cy, half_x, half_y, yaw) oriented rectangles, `discs` rows (cx, cy, radius).
    Each footprint only touches its own window of cells, so a long wall costs its length, not the map.
    """
    shape = occupied.shape
    for cx, cy, hx, hy, yaw in np.asarray(boxes, float).reshape(-1, 5):
        c, s = math.cos(yaw), math.sin(yaw)
        ext = np.array([abs(c) * hx + abs(s) * hy, abs(s) * hx + abs(c) * hy]) + inflate_m
        win = _cell_window(shape, origin, resolution_m, np.array([cx, cy]) - ext, np.array([cx, cy]) + ext)
        if win is None:
            continue
        rows, cols, X, Y = win
        dx, dy = X - cx, Y - cy
        du = np.maximum(np.abs(c * dx + s * dy) - hx, 0.0)
        dv = np.maximum(np.abs(-s * dx + c * dy) - hy, 0.0)
        occupied[rows, cols] |= du * du + dv * dv <= inflate_m * inflate_m
    for cx, cy, r in np.asarray(discs, float).reshape(-1, 3):
        reach = r + inflate_m
        win = _cell_window(
            shape, origin, resolution_m, np.array([cx, cy]) - reach, np.array([cx, cy]) + reach
        )
        if win is None:
            continue
        rows, cols, X, Y = win
        occupied[rows, cols] |= (X - cx) ** 2 + (Y - cy) ** 2 <= reach * reach


# ---------------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True, eq=False)
class OccupancyGrid:
    """A read-only 2-D occupancy grid `occupied[iy, ix]`; cell (0, 0) has its lower-left corner at `origin`.

    Cells are true where occupied (inflated by `inflate_m`); free components are cached on first use.
    """

    occupied: np.ndarray
    origin: tuple[float, float]
    resolution_m: float
    inflate_m: float = 0.0

    def __post_init__(self) -> None:
        occ = np.asarray(self.occupied)
        if occ.ndim != 2 or occ.dtype != bool or min(occ.shape) < 1:
            raise InvalidInputError(
                f"occupied must be a non-empty 2-D bool array, got {occ.dtype} {occ.shape}"
            )
        if not (math.isfinite(self.resolution_m) and self.resolution_m > 0):
            raise InvalidInputError(f"resolution_m must be positive, got {self.resolution_m}")
        occ = occ.copy()
        occ.setflags(write=False)  # the cached components below stay valid
        object.__setattr__(self, "occupied", occ)
        object.__setattr__(self, "origin", (float(self.origin[0]), float(self.origin[1])))

    @classmethod
    def from_world(
        cls, world: WorldLike, resolution_m: float = 0.05, inflate_m: float | None = None
    ) -> OccupancyGrid:
        """Rasterise a world's walls, furniture and floor objects, inflated by the robot radius by default."""
        if not (isinstance(resolution_m, (int, float)) and 0.005 <= resolution_m <= 1.0):
            raise InvalidInputError(f"resolution_m must be within 0.005..1 m, got {resolution_m!r}")
        inflate = world.config.robot_radius_m if inflate_m is None else float(inflate_m)
        if not (math.isfinite(inflate) and inflate >= 0):
            raise InvalidInputError(f"inflate_m must be a non-negative number, got {inflate_m!r}")
        cfg = world.config
        shape = (math.ceil(cfg.depth_m / resolution_m - 1e-9), math.ceil(cfg.width_m / resolution_m - 1e-9))
        occupied = np.zeros(shape, bool)
        boxes, discs = world.obstacle_footprints()
        mark_footprints(occupied, (0.0, 0.0), resolution_m, boxes, discs, inflate)
        return cls(occupied, (0.0, 0.0), float(resolution_m), inflate)

    def inflated(self, radius_m: float) -> OccupancyGrid:
        """This grid with every cell within `radius_m` of an occupied cell centre occupied too (a map of
        obstacles, e.g. from nav_msgs/OccupancyGrid, made safe for a robot of that radius)."""
        if not (math.isfinite(radius_m) and radius_m >= 0):
            raise InvalidInputError(f"radius_m must be a non-negative number, got {radius_m!r}")
        if radius_m == 0 or not self.occupied.any():
            return self
        dist = ndimage.distance_transform_edt(~self.occupied) * self.resolution_m
        occupied = dist <= radius_m + 1e-9  # the epsilon keeps cells exactly radius_m away (float noise)
        return OccupancyGrid(occupied, self.origin, self.resolution_m, self.inflate_m + radius_m)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) = (cells along y, cells along x)."""
        return self.occupied.shape

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) of the grid in metres."""
        ox, oy = self.origin
        ny, nx = self.shape
        return ox, ox + nx * self.resolution_m, oy, oy + ny * self.resolution_m

    def world_to_cell(self, xy: np.ndarray) -> np.ndarray:
        """Integer (ix, iy) of the cells holding points `xy` (..., 2); may lie outside the grid."""
        p = (np.asarray(xy, float) - np.asarray(self.origin)) / self.resolution_m
        return np.floor(p).astype(np.int64)

    def cell_to_world(self, cells: np.ndarray) -> np.ndarray:
        """Metric (x, y) centres of cells (..., 2) given as (ix, iy)."""
        return np.asarray(self.origin) + (np.asarray(cells, float) + 0.5) * self.resolution_m

    def in_bounds(self, cells: np.ndarray) -> np.ndarray:
        """Whether cells (..., 2) given as (ix, iy) lie in the grid."""
        c = np.asarray(cells)
        ny, nx = self.shape
        return (c[..., 0] >= 0) & (c[..., 0] < nx) & (c[..., 1] >= 0) & (c[..., 1] < ny)

    def free_at(self, xy: np.ndarray) -> np.ndarray:
        """Vectorised `is_free` for points (..., 2); points off the grid are not free."""
        cells = self.world_to_cell(xy)
        ok = self.in_bounds(cells)
        out = np.zeros(ok.shape, bool)
        out[ok] = ~self.occupied[cells[ok][:, 1], cells[ok][:, 0]]
        return out

    def is_free(self, x: float, y: float) -> bool:
        """True when the robot may stand at (x, y): on the grid and in a free cell."""
        return bool(self.free_at(np.array([x, y], float)))

    def _segment_cells_raw(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cells (ix, iy) the segment a-b passes through, with repeats: one per piece between crossings."""
        p0 = (np.asarray(a, float) - self.origin) / self.resolution_m
        p1 = (np.asarray(b, float) - self.origin) / self.resolution_m
        d = p1 - p0
        ts = [np.array([0.0, 1.0])]
        for k in range(2):  # parameters where the segment crosses grid lines
            if d[k] != 0.0:
                lines = np.arange(math.ceil(min(p0[k], p1[k])), math.floor(max(p0[k], p1[k])) + 1)
                ts.append((lines - p0[k]) / d[k])
        t = np.sort(np.clip(np.concatenate(ts), 0.0, 1.0))
        mids = p0 + ((t[:-1] + t[1:]) / 2)[:, None] * d  # one point inside each traversed cell
        cross = p0 + t[1:-1, None] * d  # on a cell edge or corner: take the cells on all sides
        offsets = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * _EDGE_EPS
        pts = np.concatenate([mids, p0[None], p1[None], (cross[:, None, :] + offsets).reshape(-1, 2)])
        return np.floor(pts).astype(np.int64)

    def segment_cells(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Every cell (ix, iy) the straight segment a-b passes through, corners touched included."""
        return np.unique(self._segment_cells_raw(a, b), axis=0)

    def segment_is_free(self, a: np.ndarray, b: np.ndarray) -> bool:
        """True when every cell the segment a-b passes through is on the grid and free."""
        cells = self._segment_cells_raw(a, b)
        if not self.in_bounds(cells).all():
            return False
        return not self.occupied[cells[:, 1], cells[:, 0]].any()

    # ------------------------------------------------------------------ connectivity
    @cached_property
    def labels(self) -> np.ndarray:
        """Free components (4-connected, 0 = occupied): what A* without corner cutting can link."""
        labels, _ = ndimage.label(~self.occupied, structure=_FOUR_CONNECTED)
        labels.setflags(write=False)
        return labels

    @cached_property
    def largest_component(self) -> int:
        """Label of the largest free region (the rooms a robot can tour), 0 if nothing is free."""
        counts = np.bincount(self.labels.ravel())
        counts[0] = 0
        return int(counts.argmax())

    @cached_property
    def _padded_free(self) -> list[bool]:
        """Free cells of the grid with a one-cell occupied border, flattened: A* needs no bounds checks."""
        return np.pad(~self.occupied, 1, constant_values=False).ravel().tolist()


# ---------------------------------------------------------------------------------------------- planning
def _check_point(
    grid: OccupancyGrid, xy: Sequence[float] | np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """(point, cell) of a start or goal, or a clear InvalidInputError naming the point."""
    p = np.asarray(xy, dtype=float)
    if p.shape != (2,) or not np.all(np.isfinite(p)):
        raise InvalidInputError(f"{what} must be a finite (x, y) pair in metres, got {xy!r}")
    cell = grid.world_to_cell(p)
    xmin, xmax, ymin, ymax = grid.extent
    where = f"{what} ({p[0]:.3f}, {p[1]:.3f})"
    if not grid.in_bounds(cell):
        raise InvalidInputError(f"{where} is outside the map [{xmin:g}, {xmax:g}] x [{ymin:g}, {ymax:g}] m")
    if grid.occupied[cell[1], cell[0]]:
        raise InvalidInputError(
            f"{where} is inside an obstacle or within {grid.inflate_m:.2f} m (the robot radius) of one"
        )
    return p, cell


def _octile_to(goal: np.ndarray, padded_shape: tuple[int, int]) -> list[float]:
    """Octile distance (in cells) from every padded cell to `goal` (ix, iy of the unpadded grid)."""
    ys, xs = np.indices(padded_shape)
    dx = np.abs(xs - (goal[0] + 1))
    dy = np.abs(ys - (goal[1] + 1))
    return (np.maximum(dx, dy) + (_SQRT2 - 1.0) * np.minimum(dx, dy)).ravel().tolist()


def _astar(grid: OccupancyGrid, start: np.ndarray, goal: np.ndarray) -> list[tuple[int, int]] | None:
    """Cells (ix, iy) of a shortest 8-connected path, or None. Diagonal steps need both side cells free."""
    ny, nx = grid.shape
    w = nx + 2  # padded row length
    free = grid._padded_free
    h = _octile_to(goal, (ny + 2, w))
    s = (start[1] + 1) * w + start[0] + 1
    g_idx = (goal[1] + 1) * w + goal[0] + 1
    # (offset, cost, side offsets that must be free for a diagonal step)
    moves = [(1, 1.0, 0, 0), (-1, 1.0, 0, 0), (w, 1.0, 0, 0), (-w, 1.0, 0, 0)]
    moves += [(dx + dy * w, _SQRT2, dx, dy * w) for dx in (1, -1) for dy in (1, -1)]
    n = len(free)
    cost = [math.inf] * n
    cost[s] = 0.0
    parent = [-1] * n
    closed = bytearray(n)
    heap = [(h[s], h[s], s)]
    expanded = 0
    while heap:
        _, _, cur = heapq.heappop(heap)
        if closed[cur]:
            continue
        if cur == g_idx:
            break
        closed[cur] = 1
        expanded += 1
        g_cur = cost[cur]
        for off, step, side_a, side_b in moves:
            nb = cur + off
            if not free[nb] or closed[nb] or (side_a and not (free[cur + side_a] and free[cur + side_b])):
                continue
            g_new = g_cur + step
            if g_new < cost[nb]:
                cost[nb] = g_new
                parent[nb] = cur
                heapq.heappush(heap, (g_new + h[nb], h[nb], nb))
    else:
        return None
    log.debug("A*: %d cells expanded of %d", expanded, nx * ny)
    path = []
    cur = g_idx
    while cur != -1:
        iy, ix = divmod(cur, w)
        path.append((ix - 1, iy - 1))
        cur = parent[cur]
    return path[::-1]


def _turning_points(cells: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The cells of a grid path where its direction changes, with both ends."""
    keep = [cells[0]]
    for prev, cur, nxt in zip(cells, cells[1:], cells[2:], strict=False):
        if (cur[0] - prev[0], cur[1] - prev[1]) != (nxt[0] - cur[0], nxt[1] - cur[1]):
            keep.append(cur)
    if len(cells) > 1:
        keep.append(cells[-1])
    return keep


def _shortcut(grid: OccupancyGrid, points: np.ndarray) -> np.ndarray:
    """Greedy line-of-sight pruning: from each kept point jump to the farthest point it sees.

    Consecutive input points are always joined (they come from free A* steps), so this always ends.
    """
    out = [0]
    i, last = 0, len(points) - 1
    while i < last:
        j = last
        while j > i + 1 and not grid.segment_is_free(points[i], points[j]):
            j -= 1
        out.append(j)
        i = j
    return points[out]


def plan_path(
    grid: OccupancyGrid,
    start_xy: Sequence[float] | np.ndarray,
    goal_xy: Sequence[float] | np.ndarray,
    shortcut: bool = True,
) -> np.ndarray:
    """Collision-free waypoints (N, 2) in metres from `start_xy` to `goal_xy`, both included exactly.

    A* on the grid (8-connected, octile heuristic), then line-of-sight shortcutting unless `shortcut` is
    False (then every cell centre of the A* path is returned). A start or goal off the map or in an
    (inflated) obstacle, or a goal in another free region than the start, is an InvalidInputError.
    """
    start, s_cell = _check_point(grid, start_xy, "start")
    goal, g_cell = _check_point(grid, goal_xy, "goal")
    labels = grid.labels
    if labels[s_cell[1], s_cell[0]] != labels[g_cell[1], g_cell[0]]:
        raise InvalidInputError(
            f"goal ({goal[0]:.3f}, {goal[1]:.3f}) is not reachable from start ({start[0]:.3f}, "
            f"{start[1]:.3f}): no collision-free path for a robot of radius {grid.inflate_m:.2f} m"
        )
    t0 = time.perf_counter()
    cells = _astar(grid, s_cell, g_cell)
    if cells is None:  # cannot happen when the labels agree; kept as a guard
        raise InvalidInputError(f"no path from start {start.tolist()} to goal {goal.tolist()}")
    t1 = time.perf_counter()
    keep = cells if not shortcut else _turning_points(cells)
    points = np.vstack([start, grid.cell_to_world(np.array(keep)), goal])
    path = _shortcut(grid, points) if shortcut else points
    log.debug(
        "plan_path: %d A* cells -> %d waypoints, A* %.1f ms, shortcut %.1f ms",
        len(cells),
        len(path),
        (t1 - t0) * 1e3,
        (time.perf_counter() - t1) * 1e3,
    )
    return path


def plan_tour(grid: OccupancyGrid, waypoints: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """One path (N, 2) through `waypoints` in order: the legs of `plan_path`, joined at the waypoints."""
    pts = np.asarray(waypoints, float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise InvalidInputError(f"a tour needs at least two (x, y) waypoints, got shape {pts.shape}")
    legs = [plan_path(grid, a, b) for a, b in zip(pts[:-1], pts[1:], strict=True)]
    return np.vstack([legs[0]] + [leg[1:] for leg in legs[1:]])


def sample_free_point(
    grid: OccupancyGrid, rng: np.random.Generator, connected_to: Sequence[float] | None = None
) -> np.ndarray:
    """A uniformly random free point (x, y), in the largest free region or in the one of `connected_to`.

    Restricting to one region means any two sampled points can be joined by `plan_path`.
    """
    if connected_to is None:
        label = grid.largest_component
    else:
        _, cell = _check_point(grid, connected_to, "connected_to")
        label = int(grid.labels[cell[1], cell[0]])
    if label == 0:
        raise InvalidInputError("the grid has no free cell to sample")
    iy, ix = np.nonzero(grid.labels == label)
    k = int(rng.integers(len(ix)))
    jitter = rng.uniform(-0.5, 0.5, 2) * (1.0 - 1e-6)  # stays inside the cell
    return grid.cell_to_world(np.array([ix[k], iy[k]]) + jitter)


def room_centres(world: WorldLike) -> np.ndarray:
    """Centres (R, 2) of the rooms, corridor included; the generator keeps them free for tours."""
    return np.array([room.center for room in world.rooms], float).reshape(-1, 2)


def door_centres(world: WorldLike) -> np.ndarray:
    """Centres (D, 2) of the doorways, on the wall centre lines; free for a robot of the world's radius."""
    return np.array([(d.x, d.y) for d in world.doors], float).reshape(-1, 2)

"""Procedural indoor worlds: rooms, walls with doorways, furniture and objects, generated from a seed.

A `World` is plain data (numbers, strings, texture specs; no MuJoCo objects), so it saves to JSON and loads
back exactly; `sim.world_scene` turns it into a MuJoCo spec and `sim.planning` into an occupancy grid.

Layout. The footprint (outer wall faces at x = 0..width_m, y = 0..depth_m) is cut into rooms by a binary
space partition whose cuts keep every room at least `WorldConfig.room_side_m` wide, or, with a corridor,
into a corridor along the long side with rooms on both sides. Doorways are cut into shared walls along a
random spanning tree of the room adjacency (plus a few extra doors, so some rooms have two ways in); every
room is reachable. Room rectangles run between wall centre lines. Walls are split where rooms meet, so each
wall piece has at most one room on either side and can wear that room's wall texture.

Look. Each room has a kind (living, kitchen, bedroom, ...) that picks its floor and wall textures and its
furniture, so different places look different. Twin rooms (`World.twin_rooms`, on by default): the last
cut splits a room exactly in half and both halves get the same kind, textures, furniture and objects, at
the same room-relative positions. They differ only in their doorways and in what is seen through them: a
place that looks like another one, which a spatial memory must not confuse. Test memories on both.

Furniture never blocks a doorway or a room centre: pieces are placed by rejection sampling and one that
would cut the free space of its room (inflated by the robot radius plus a margin) is dropped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from scipy import ndimage

from spatial_memory import config as config_schema
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.sim.planning import OccupancyGrid, mark_footprints
from spatial_memory.sim.textures import ALL_GENERATORS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

WORLD_FORMAT = "spatial_memory.world"
WORLD_FORMAT_VERSION = 1
MAX_SIDE_M = 20.0  # footprint sides up to this; 15 x 15 m apartments are the tested target
_JAMB_M = 0.1  # wall kept on each side of a doorway before a perpendicular wall
_DOOR_CLEARANCE_M = 0.15  # a doorway (or corridor) is at least this much wider than the robot
_ROOM_CLEARANCE_M = 0.3  # a room's inside is at least this much wider than the robot
_PLAN_RES_M = 0.05  # furnishing checks free space on a grid of this resolution ...
_PASSAGE_MARGIN_M = 0.05  # ... with the robot radius grown by this, so coarser planner grids still pass
_EXTRA_DOOR_P = 0.3  # chance of a door on an adjacency the spanning tree did not need (loops)
_EPS = 1e-9


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class WorldConfig:
    """What world to generate. An impossible request fails here with a ConfigError naming the problem."""

    seed: int = 0
    width_m: float = 10.0  # outer footprint along x, walls included
    depth_m: float = 8.0  # outer footprint along y
    num_rooms: int = 4  # rooms, not counting the corridor
    wall_height_m: float = 2.5
    wall_thickness_m: float = 0.1
    door_width_m: float = 0.9
    door_height_m: float = 2.1
    corridor_width_m: float = 0.0  # clear width of a corridor along the long side; 0 = no corridor
    min_room_side_m: float = 2.5  # raised where doors or the robot need more, see `room_side_m`
    furniture_density: float = 0.5  # 0 = empty rooms, 1 = about one piece per 2.5 m^2 of floor
    objects_per_room: int = 4
    twin_rooms: bool = True  # two rooms with the same size, textures, furniture and objects
    robot_radius_m: float = 0.3

    def __post_init__(self) -> None:
        self._normalise_numbers()
        self._check_ranges()
        self._check_robot_fits()
        self._check_rooms_fit()

    def _normalise_numbers(self) -> None:
        """Float fields become floats (a YAML `12` is 12.0), so a saved world reloads to identical JSON."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))

    def _check_ranges(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("width_m", "depth_m"):
            value = getattr(self, name)
            if not 0.0 < value <= MAX_SIDE_M:
                raise ConfigError(f"{name} must be within (0, {MAX_SIDE_M:g}] m, got {value!r}")
        if isinstance(self.num_rooms, bool) or not isinstance(self.num_rooms, int) or self.num_rooms < 1:
            raise ConfigError(f"num_rooms must be an integer >= 1, got {self.num_rooms!r}")
        limits = {
            "wall_height_m": (1.0, 5.0),
            "wall_thickness_m": (0.05, 0.5),
            "robot_radius_m": (0.05, 1.0),
            "door_width_m": (0.3, 3.0),
            "min_room_side_m": (1.0, MAX_SIDE_M),
            "furniture_density": (0.0, 1.0),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ConfigError(f"{name} must be within [{lo:g}, {hi:g}], got {value!r}")
        if not (1.0 <= self.door_height_m <= self.wall_height_m):
            raise ConfigError(
                f"door_height_m must be within [1, wall_height_m={self.wall_height_m:g}], "
                f"got {self.door_height_m}"
            )
        if not (0.0 <= self.corridor_width_m <= 5.0):
            raise ConfigError(
                f"corridor_width_m must be 0 (no corridor) or up to 5 m, got {self.corridor_width_m}"
            )
        n = self.objects_per_room
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 20:
            raise ConfigError(
                f"objects_per_room must be an integer within 0..20, got {self.objects_per_room!r}"
            )

    def _check_robot_fits(self) -> None:
        need = 2 * self.robot_radius_m + _DOOR_CLEARANCE_M
        if self.door_width_m < need:
            raise ConfigError(
                f"door_width_m={self.door_width_m:g} is too narrow for the robot: a robot of radius "
                f"{self.robot_radius_m:g} m needs doorways at least {need:.2f} m wide"
            )
        if self.corridor_width_m and self.corridor_width_m < need:
            raise ConfigError(
                f"corridor_width_m={self.corridor_width_m:g} is too narrow for the robot: a robot of radius "
                f"{self.robot_radius_m:g} m needs at least {need:.2f} m"
            )
        if self.corridor_width_m and self.num_rooms < 2:
            raise ConfigError("a corridor needs num_rooms >= 2 (rooms on both of its sides)")

    def _check_rooms_fit(self) -> None:
        s, t = self.room_side_m, self.wall_thickness_m
        why = (
            f"rooms need at least {s:.2f} m per side between wall centre lines (min_room_side_m "
            f"{self.min_room_side_m:g}, robot radius {self.robot_radius_m:g} m, "
            f"door width {self.door_width_m:g} m)"
        )
        if min(self.width_m, self.depth_m) - t < s - _EPS:
            raise ConfigError(
                f"the {self.width_m:g} x {self.depth_m:g} m footprint is too small for one room: {why}"
            )
        if self.corridor_width_m and self.max_rooms == 0:
            short = min(self.width_m, self.depth_m)
            raise ConfigError(
                f"the footprint is too shallow for a {self.corridor_width_m:g} m corridor with rooms on both "
                f"sides: the short side is {short:g} m, it needs "
                f"{2 * s + self.corridor_width_m + 2 * t:.2f} m; {why}"
            )
        if self.num_rooms > self.max_rooms:
            raise ConfigError(
                f"too many rooms: num_rooms={self.num_rooms} does not fit in {self.width_m:g} x "
                f"{self.depth_m:g} m{' with the corridor' if self.corridor_width_m else ''}; {why}, "
                f"so at most {self.max_rooms} fit"
            )

    @property
    def room_side_m(self) -> float:
        """Smallest room side used: `min_room_side_m`, raised so a robot fits and a room can hold two doors.

        Two doors per side keep every binary-space-partition cut crossable by a door (see `_place_doors`).
        """
        door_need = self.door_width_m + self.wall_thickness_m + 2 * _JAMB_M
        robot_need = 2 * self.robot_radius_m + self.wall_thickness_m + _ROOM_CLEARANCE_M
        return max(self.min_room_side_m, 2 * door_need, robot_need)

    @property
    def max_rooms(self) -> int:
        """How many rooms of at least `room_side_m` the footprint holds; the partition always reaches it."""
        s, t = self.room_side_m, self.wall_thickness_m
        w, d = self.width_m - t, self.depth_m - t  # between the outer wall centre lines
        if not self.corridor_width_m:
            return _fit(w, s) * _fit(d, s)
        strips = min(w, d) - (self.corridor_width_m + t)
        return 2 * _fit(max(w, d), s) if strips >= 2 * s - _EPS else 0


def _fit(length: float, side: float) -> int:
    """How many pieces of at least `side` a length splits into."""
    return int(math.floor(length / side + 1e-9))


# ---------------------------------------------------------------------------------------------- world data
@dataclass(frozen=True)
class TextureSpec:
    """A procedural texture: generator name (see `textures.ALL_GENERATORS`), its seed, repeats per metre."""

    generator: str
    seed: int
    repeat: float = 1.0

    def __post_init__(self) -> None:
        if self.generator not in ALL_GENERATORS:
            raise ConfigError(
                f"unknown texture generator {self.generator!r}; known: {sorted(ALL_GENERATORS)}"
            )
        if self.seed < 0 or not self.repeat > 0:
            raise ConfigError(f"texture seed must be >= 0 and repeat > 0, got {self.seed}, {self.repeat}")

    def image(self, size: int = 128) -> np.ndarray:
        """The RGB uint8 (size, size, 3) texture; the same spec always gives the same pixels."""
        return ALL_GENERATORS[self.generator](np.random.default_rng(self.seed), size)


@dataclass(frozen=True)
class Room:
    """A rectangular room between wall centre lines; the corridor is a room of kind 'corridor'."""

    index: int
    name: str
    kind: str
    x0: float
    y0: float
    x1: float
    y1: float
    floor: TextureSpec
    wall: TextureSpec

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    @property
    def size(self) -> tuple[float, float]:
        return (self.x1 - self.x0, self.y1 - self.y0)

    def contains(self, x: float, y: float) -> bool:
        return self.x0 < x < self.x1 and self.y0 < y < self.y1


@dataclass(frozen=True)
class Wall:
    """A solid, axis-aligned wall piece: centre line (x0, y0)-(x1, y1), with its thickness and height.

    `rooms` are the rooms on its low side (smaller x or y) and high side; -1 is outside the building.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    thickness: float
    height: float
    rooms: tuple[int, int]

    @property
    def axis(self) -> str:
        """'x' for a wall running along x, 'y' for one running along y."""
        return "x" if self.y0 == self.y1 else "y"

    @property
    def length(self) -> float:
        return abs(self.x1 - self.x0) + abs(self.y1 - self.y0)

    def box(self) -> tuple[float, float, float, float]:
        """(centre x, centre y, half size x, half size y) of the wall's footprint."""
        half_t = 0.5 * self.thickness
        cx, cy = 0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1)
        if self.axis == "x":
            return cx, cy, 0.5 * abs(self.x1 - self.x0), half_t
        return cx, cy, half_t, 0.5 * abs(self.y1 - self.y0)


@dataclass(frozen=True)
class Door:
    """A doorway (an opening, no leaf) centred at (x, y) on a wall running along `axis`."""

    x: float
    y: float
    axis: str
    width: float
    height: float
    rooms: tuple[int, int]  # low side, high side, as for walls


@dataclass(frozen=True)
class Item:
    """A piece of furniture or an object: one primitive's bounds; the scene may draw it with more detail.

    `size` holds half extents (box), radius, radius, half height (cylinder) or the radius thrice (sphere),
    in the item's frame (x along its width, y its depth with +y its front), turned by `yaw` about z.
    """

    name: str
    kind: str
    shape: str  # "box" | "cylinder" | "sphere"
    pos: tuple[float, float, float]  # centre of the bounds
    size: tuple[float, float, float]
    yaw: float
    rgba: tuple[float, float, float, float]
    texture: TextureSpec | None
    room: int

    def __post_init__(self) -> None:
        if self.shape not in ("box", "cylinder", "sphere"):
            raise ConfigError(f"item {self.name!r}: unknown shape {self.shape!r}")

    @property
    def top(self) -> float:
        return self.pos[2] + self.size[2]

    def footprint(self) -> tuple[str, tuple[float, ...]]:
        """('box', (cx, cy, half_x, half_y, yaw)) or ('disc', (cx, cy, radius)) on the floor plane."""
        if self.shape == "box":
            return "box", (self.pos[0], self.pos[1], self.size[0], self.size[1], self.yaw)
        return "disc", (self.pos[0], self.pos[1], self.size[0])

    def moved(self, dx: float, dy: float, room: int, name: str) -> Item:
        """The same item shifted by (dx, dy) into `room` (twin rooms)."""
        return replace(self, name=name, pos=(self.pos[0] + dx, self.pos[1] + dy, self.pos[2]), room=room)


@dataclass(frozen=True)
class World:
    """A generated indoor world. Plain data: equal worlds give identical JSON, and load(save(w)) == w."""

    config: WorldConfig
    rooms: tuple[Room, ...]
    walls: tuple[Wall, ...]
    doors: tuple[Door, ...]
    furniture: tuple[Item, ...]
    objects: tuple[Item, ...]
    twin_rooms: tuple[int, ...] = ()  # indices of the two look-alike rooms, or empty

    def __post_init__(self) -> None:
        n = len(self.rooms)
        if any(room.index != i for i, room in enumerate(self.rooms)):
            raise ConfigError("rooms must be listed in index order")
        linked = [*(r for w in self.walls for r in w.rooms), *(r for d in self.doors for r in d.rooms)]
        linked += [item.room for item in (*self.furniture, *self.objects)]
        if any(not -1 <= r < n for r in linked) or any(not 0 <= r < n for r in self.twin_rooms):
            raise ConfigError(f"a wall, door or item refers to a room outside 0..{n - 1}")
        if len(self.twin_rooms) not in (0, 2):
            raise ConfigError(f"twin_rooms must hold 0 or 2 room indices, got {self.twin_rooms}")

    # ------------------------------------------------------------------ queries
    def room_at(self, x: float, y: float) -> int:
        """Index of the room holding (x, y), or -1 (in a wall or outside)."""
        return _room_at(self.rooms, x, y)

    def obstacle_footprints(self) -> tuple[np.ndarray, np.ndarray]:
        """Floor footprints of walls, furniture and objects: boxes (N, 5) and discs (M, 3).

        Box rows are (cx, cy, half_x, half_y, yaw), disc rows (cx, cy, radius).
        """
        boxes = [(*w.box(), 0.0) for w in self.walls]
        discs = []
        for item in (*self.furniture, *self.objects):
            kind, values = item.footprint()
            (boxes if kind == "box" else discs).append(values)
        return np.array(boxes, float).reshape(-1, 5), np.array(discs, float).reshape(-1, 3)

    def occupancy(self, resolution_m: float = 0.05, inflate_m: float | None = None) -> OccupancyGrid:
        """Occupancy grid of the world, obstacles inflated by `inflate_m` (default: the robot radius)."""
        return OccupancyGrid.from_world(self, resolution_m, inflate_m)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the format name and version."""
        return {"format": WORLD_FORMAT, "version": WORLD_FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "world data") -> World:
        """Inverse of `to_dict`; another format version or malformed content is an InvalidInputError."""
        if not isinstance(data, dict) or data.get("format") != WORLD_FORMAT:
            raise InvalidInputError(f"{source} is not a {WORLD_FORMAT} document")
        version = data.get("version")
        if version != WORLD_FORMAT_VERSION:
            raise InvalidInputError(
                f"{source} has format version {version!r}; "
                f"this spatial_memory reads version {WORLD_FORMAT_VERSION}"
            )
        content = {k: v for k, v in data.items() if k not in ("format", "version")}
        try:
            return config_schema.from_dict(cls, content, where="world")
        except ConfigError as exc:
            raise InvalidInputError(f"{source} is corrupt: {exc}") from exc

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys): equal worlds give identical text."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    def save(self, path: str | Path) -> None:
        """Write the world as JSON atomically: a temp file beside `path`, then os.replace."""
        path = Path(path)
        text = self.to_json()  # serialise before touching the file system
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("saved world (seed %d, %d rooms) to %s", self.config.seed, len(self.rooms), path)

    @classmethod
    def load(cls, path: str | Path) -> World:
        """Read a world written by `save`; a corrupt file or another version is an InvalidInputError."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"world file {path} is corrupt (not JSON): {exc}") from exc
        return cls.from_dict(data, source=f"world file {path}")


def _room_at(rooms: tuple[Room, ...] | list[Room], x: float, y: float) -> int:
    for room in rooms:
        if room.contains(x, y):
            return room.index
    return -1


# ---------------------------------------------------------------------------------------------- layout
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 between wall centre lines
# A wall line: (axis it runs along, fixed coordinate, start, end, extension at both ends: + past the
# corner for outer walls that own the building's corners, - back to the face of the wall it meets).
Line = tuple[str, float, float, float, float]


def _split_leaf(rect: Rect, s: float, rng: np.random.Generator, even: bool) -> tuple[Rect, Rect, float, str]:
    """Cut a rectangle in two, keeping room-count capacity: each part keeps whole multiples of `s`."""
    x0, y0, x1, y1 = rect
    nx, ny = _fit(x1 - x0, s), _fit(y1 - y0, s)
    cut_x = nx >= 2 and (ny < 2 or x1 - x0 >= y1 - y0)  # cut the longer side where possible
    lo, hi, n = (x0, x1, nx) if cut_x else (y0, y1, ny)
    if even:
        c = 0.5 * (lo + hi)
    else:
        k = int(np.clip(round(n * rng.uniform(0.35, 0.65)), 1, n - 1))
        c = float(rng.uniform(lo + k * s, hi - (n - k) * s))
    if cut_x:
        return (x0, y0, c, y1), (c, y0, x1, y1), c, "x"
    return (x0, y0, x1, c), (x0, c, x1, y1), c, "y"


def _capacity(rect: Rect, s: float) -> int:
    return _fit(rect[2] - rect[0], s) * _fit(rect[3] - rect[1], s)


def _outer_lines(cfg: WorldConfig) -> list[Line]:
    t, w, d = cfg.wall_thickness_m, cfg.width_m, cfg.depth_m
    return [
        ("x", t / 2, t / 2, w - t / 2, t / 2),
        ("x", d - t / 2, t / 2, w - t / 2, t / 2),
        ("y", t / 2, t / 2, d - t / 2, -t / 2),
        ("y", w - t / 2, t / 2, d - t / 2, -t / 2),
    ]


def _partition_bsp(
    cfg: WorldConfig, rng: np.random.Generator
) -> tuple[list[Rect], list[Line], tuple[int, ...]]:
    """Rooms by binary space partition; with twins, the last cut halves a room exactly."""
    t, s = cfg.wall_thickness_m, cfg.room_side_m
    leaves: list[Rect] = [(t / 2, t / 2, cfg.width_m - t / 2, cfg.depth_m - t / 2)]
    lines = _outer_lines(cfg)
    twins = cfg.twin_rooms and cfg.num_rooms >= 2
    while len(leaves) < cfg.num_rooms:
        even = twins and len(leaves) == cfg.num_rooms - 1
        splittable = [i for i, r in enumerate(leaves) if _capacity(r, s) >= 2]
        i = max(splittable, key=lambda j: (leaves[j][2] - leaves[j][0]) * (leaves[j][3] - leaves[j][1]))
        a, b, c, axis = _split_leaf(leaves[i], s, rng, even)
        x0, y0, x1, y1 = leaves[i]
        lines.append(("y", c, y0, y1, -t / 2) if axis == "x" else ("x", c, x0, x1, -t / 2))
        leaves[i : i + 1] = [a, b]
        if even:
            return leaves, lines, (i, i + 1)
    return leaves, lines, ()


def _strip_cuts(
    lo: float, hi: float, n: int, s: float, rng: np.random.Generator, twin: bool
) -> tuple[list[float], int | None]:
    """Boundaries of `n` rooms of at least `s` along [lo, hi]; with `twin`, rooms j and j + 1 are equal."""
    widths = s + rng.dirichlet(np.ones(n)) * (hi - lo - n * s)
    j = int(rng.integers(n - 1)) if twin else None
    if j is not None:
        widths[j] = widths[j + 1] = 0.5 * (widths[j] + widths[j + 1])
    cuts = lo + np.concatenate([[0.0], np.cumsum(widths)])
    cuts[-1] = hi
    return [float(c) for c in cuts], j


def _partition_corridor(
    cfg: WorldConfig, rng: np.random.Generator
) -> tuple[list[Rect], list[Line], tuple[int, ...], int]:
    """A corridor along the long side, rooms on both sides, each touching it; the corridor comes last."""
    t, s = cfg.wall_thickness_m, cfg.room_side_m
    along_x = cfg.width_m >= cfg.depth_m
    long_m, short_m = (cfg.width_m, cfg.depth_m) if along_x else (cfg.depth_m, cfg.width_m)
    u0, u1, v0, v1 = t / 2, long_m - t / 2, t / 2, short_m - t / 2
    cw = cfg.corridor_width_m + t
    p = float(rng.uniform(v0 + s, v1 - s - cw))
    n_low = (cfg.num_rooms + 1) // 2
    twins = cfg.twin_rooms and n_low >= 2
    rects: list[tuple[float, float, float, float]] = []  # in (u, v): along and across the corridor
    lines: list[tuple[str, float, float, float, float]] = [
        ("u", p, u0, u1, -t / 2),
        ("u", p + cw, u0, u1, -t / 2),
    ]
    twin_pair: tuple[int, ...] = ()
    for (a, b), n, twin in (((v0, p), n_low, twins), ((p + cw, v1), cfg.num_rooms - n_low, False)):
        cuts, j = _strip_cuts(u0, u1, n, s, rng, twin)
        if j is not None:
            twin_pair = (len(rects) + j, len(rects) + j + 1)
        rects += [(c0, a, c1, b) for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True)]
        lines += [("v", c, a, b, -t / 2) for c in cuts[1:-1]]
    rects.append((u0, p, u1, p + cw))

    def to_xy_rect(r: tuple[float, float, float, float]) -> Rect:
        return r if along_x else (r[1], r[0], r[3], r[2])

    def to_xy_line(line: tuple[str, float, float, float, float]) -> Line:
        axis, c, lo, hi, ext = line
        runs_along_u = axis == "u"
        return ("x" if runs_along_u == along_x else "y", c, lo, hi, ext)

    return (
        [to_xy_rect(r) for r in rects],
        _outer_lines(cfg) + [to_xy_line(x) for x in lines],
        twin_pair,
        len(rects) - 1,
    )


# ---------------------------------------------------------------------------------------------- styling
_KIND_CYCLE = ("living", "kitchen", "office", "bedroom", "dining", "bathroom", "storage")
_FLOORS = {
    "living": ("wood", "carpet"),
    "kitchen": ("tiles", "checker"),
    "bedroom": ("carpet", "wood"),
    "office": ("wood", "carpet"),
    "dining": ("wood", "marble"),
    "bathroom": ("tiles", "checker"),
    "storage": ("checker", "carpet"),
    "corridor": ("wood", "tiles", "marble"),
}
_WALLS = {
    "living": ("wallpaper", "plaster", "bricks"),
    "kitchen": ("tiles", "plaster"),
    "bedroom": ("wallpaper", "plaster"),
    "office": ("plaster", "bricks"),
    "dining": ("wallpaper", "bricks"),
    "bathroom": ("tiles", "marble"),
    "storage": ("bricks", "plaster"),
    "corridor": ("plaster", "wallpaper", "bricks"),
}


_SURFACE_REPEAT = {"wood": 1.0, "bricks": 1.0}  # per metre on walls and floors: 25 cm planks, 12 cm bricks


def _texture(rng: np.random.Generator, choices: tuple[str, ...], repeat: float | None = None) -> TextureSpec:
    """A texture spec of a random generator among `choices`; room surfaces get a per-generator density."""
    generator = str(choices[int(rng.integers(len(choices)))])
    seed = int(rng.integers(2**31))
    return TextureSpec(generator, seed, repeat or _SURFACE_REPEAT.get(generator, 0.5))


def _style_rooms(
    rects: list[Rect], twins: tuple[int, ...], corridor: int | None, rng: np.random.Generator
) -> tuple[Room, ...]:
    """Give each room a kind (bigger rooms first in the cycle), floor and wall textures; twins share them."""
    kinds: dict[int, str] = {i: "bedroom" for i in twins}
    if corridor is not None:
        kinds[corridor] = "corridor"
    rest = sorted((i for i in range(len(rects)) if i not in kinds), key=lambda i: -_area(rects[i]))
    kinds.update({i: _KIND_CYCLE[k % len(_KIND_CYCLE)] for k, i in enumerate(rest)})
    rooms = []
    for i, rect in enumerate(rects):
        kind = kinds[i]
        floor, wall = _texture(rng, _FLOORS[kind]), _texture(rng, _WALLS[kind])
        if twins and i == twins[1]:
            floor, wall = rooms[twins[0]].floor, rooms[twins[0]].wall
        rooms.append(Room(i, f"{kind}_{i}", kind, *(float(v) for v in rect), floor, wall))
    return tuple(rooms)


def _area(rect: Rect) -> float:
    return (rect[2] - rect[0]) * (rect[3] - rect[1])


# ---------------------------------------------------------------------------------------------- doors, walls
def _adjacencies(
    cfg: WorldConfig, rooms: tuple[Room, ...]
) -> list[tuple[int, int, str, float, float, float]]:
    """Shared walls long enough for a doorway: (low room, high room, wall axis, coordinate, start, end)."""
    need = cfg.door_width_m + cfg.wall_thickness_m + 2 * _JAMB_M
    out = []
    for a in rooms:
        for b in rooms:
            if abs(a.x1 - b.x0) < _EPS:  # a left of b: a wall running along y
                lo, hi = max(a.y0, b.y0), min(a.y1, b.y1)
                if hi - lo >= need - _EPS:
                    out.append((a.index, b.index, "y", a.x1, lo, hi))
            if abs(a.y1 - b.y0) < _EPS:  # a below b: a wall running along x
                lo, hi = max(a.x0, b.x0), min(a.x1, b.x1)
                if hi - lo >= need - _EPS:
                    out.append((a.index, b.index, "x", a.y1, lo, hi))
    return sorted(out)


def _place_doors(
    cfg: WorldConfig, rooms: tuple[Room, ...], corridor: int | None, rng: np.random.Generator
) -> tuple[Door, ...]:
    """Doorways on a random spanning tree of the adjacencies (every room reachable) plus a few extra ones.

    With a corridor, every room gets a door onto it. In a partition, each cut is crossed by a shared wall
    at least half a room side long, which `room_side_m` makes long enough for a door: the tree exists.
    """
    parent = list(range(len(rooms)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = _adjacencies(cfg, rooms)
    to_corridor = [e for e in edges if corridor in e[:2]]
    others = [e for e in edges if corridor not in e[:2]]
    doors = []
    half = 0.5 * cfg.door_width_m + 0.5 * cfg.wall_thickness_m + _JAMB_M
    for a, b, axis, c, lo, hi in to_corridor + [others[k] for k in rng.permutation(len(others))]:
        joins = root(a) != root(b)
        extra = rng.random() < _EXTRA_DOOR_P  # drawn for every edge: the sequence does not depend on joins
        if not (joins or extra or corridor in (a, b)):
            continue
        parent[root(a)] = root(b)
        pos = float(rng.uniform(lo + half, hi - half))
        x, y = (pos, c) if axis == "x" else (c, pos)
        doors.append(Door(x, y, axis, cfg.door_width_m, cfg.door_height_m, (a, b)))
    if len({root(i) for i in range(len(rooms))}) != 1:  # the partition argument above says this cannot be
        raise RuntimeError("world generation left a room without a doorway; please report the config")
    return tuple(doors)


def _build_walls(
    cfg: WorldConfig, rooms: tuple[Room, ...], doors: tuple[Door, ...], lines: list[Line]
) -> tuple[Wall, ...]:
    """Wall pieces from wall lines: split where rooms meet (one room per side), doorways cut out."""
    t = cfg.wall_thickness_m
    walls = []
    for axis, c, lo, hi, ext in lines:
        a, b = lo - ext, hi + ext
        corners = {
            v for r in rooms if _touches(r, axis, c) for v in ((r.x0, r.x1) if axis == "x" else (r.y0, r.y1))
        }
        breaks = sorted({a, b} | {v for v in corners if a + t / 2 + _EPS < v < b - t / 2 - _EPS})
        gaps = []  # doorways on this line
        for d in doors:
            across, along = (d.y, d.x) if axis == "x" else (d.x, d.y)
            if d.axis == axis and abs(across - c) < _EPS and a < along < b:
                gaps.append((along - d.width / 2, along + d.width / 2))
        for p, q in zip(breaks[:-1], breaks[1:], strict=True):
            m = 0.5 * (p + q)
            side = (_room_at(rooms, m, c - t / 4), _room_at(rooms, m, c + t / 4))
            if axis == "y":
                side = (_room_at(rooms, c - t / 4, m), _room_at(rooms, c + t / 4, m))
            for s0, s1 in _subtract(p, q, gaps):
                ends = (s0, c, s1, c) if axis == "x" else (c, s0, c, s1)
                walls.append(Wall(*(float(v) for v in ends), t, cfg.wall_height_m, side))
    return tuple(walls)


def _touches(room: Room, axis: str, c: float) -> bool:
    """Whether a room has an edge on the wall line running along `axis` at coordinate `c`."""
    lo, hi = (room.y0, room.y1) if axis == "x" else (room.x0, room.x1)
    return abs(lo - c) < _EPS or abs(hi - c) < _EPS


def _subtract(p: float, q: float, gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of [p, q] outside the gap intervals."""
    pieces = [(p, q)]
    for g0, g1 in gaps:
        pieces = [part for s0, s1 in pieces for part in ((s0, min(s1, g0)), (max(s0, g1), s1))]
    return [(s0, s1) for s0, s1 in pieces if s1 - s0 > 1e-6]


# ---------------------------------------------------------------------------------------------- furnishing
# kind: (shape, width along the wall, depth, height in metres; placement; holds objects; texture choices)
_FURNITURE: dict[str, tuple[str, tuple[float, float, float], str, bool, tuple[str, ...]]] = {
    "sofa": ("box", (2.0, 0.9, 0.85), "wall", False, ("stripes", "dots", "carpet")),
    "armchair": ("box", (0.85, 0.85, 0.85), "free", False, ("stripes", "carpet", "dots")),
    "coffee_table": ("box", (1.0, 0.6, 0.45), "free", True, ("wood", "marble")),
    "table": ("box", (1.4, 0.9, 0.75), "free", True, ("wood", "marble")),
    "round_table": ("cylinder", (1.0, 1.0, 0.75), "free", True, ("wood", "marble")),
    "desk": ("box", (1.2, 0.6, 0.75), "wall", True, ("wood",)),
    "shelf": ("box", (1.0, 0.35, 1.8), "wall", True, ("wood",)),
    "cabinet": ("box", (0.8, 0.5, 0.9), "wall", True, ("wood", "marble", "plaster")),
    "counter": ("box", (1.8, 0.6, 0.9), "wall", True, ("marble", "tiles")),
    "fridge": ("box", (0.7, 0.7, 1.8), "wall", False, ()),
    "bed": ("box", (1.5, 2.0, 0.5), "wall", False, ("stripes", "dots", "carpet")),
    "wardrobe": ("box", (1.2, 0.6, 2.0), "wall", False, ("wood",)),
    "nightstand": ("box", (0.45, 0.4, 0.55), "wall", True, ("wood",)),
    "tv_stand": ("box", (1.4, 0.45, 0.5), "wall", True, ("wood",)),
    "tub": ("box", (0.75, 1.6, 0.55), "wall", False, ()),
}
_ROOM_FURNITURE = {
    "living": ("sofa", "coffee_table", "shelf", "tv_stand", "armchair", "cabinet"),
    "kitchen": ("counter", "fridge", "table", "cabinet", "counter"),
    "bedroom": ("bed", "wardrobe", "nightstand", "desk", "nightstand"),
    "office": ("desk", "shelf", "cabinet", "armchair", "shelf"),
    "dining": ("table", "cabinet", "round_table", "shelf"),
    "bathroom": ("tub", "cabinet", "counter"),
    "storage": ("shelf", "shelf", "cabinet", "shelf"),
    "corridor": (),
}
# kind: (shape, width, depth, height); the first ones stand on furniture, the last ones on the floor
_OBJECTS = {
    "book": ("box", (0.16, 0.23, 0.04)),
    "box": ("box", (0.26, 0.2, 0.18)),
    "vase": ("cylinder", (0.12, 0.12, 0.28)),
    "mug": ("cylinder", (0.08, 0.08, 0.1)),
    "ball": ("sphere", (0.16, 0.16, 0.16)),
    "lamp": ("cylinder", (0.2, 0.2, 0.45)),
}
_FLOOR_OBJECTS = {
    "plant": ("cylinder", (0.4, 0.4, 0.9)),
    "bin": ("cylinder", (0.3, 0.3, 0.4)),
    "crate": ("box", (0.45, 0.45, 0.4)),
}
_PLAIN_COLOURS = ((0.92, 0.92, 0.94), (0.85, 0.2, 0.2), (0.2, 0.45, 0.8), (0.95, 0.75, 0.2), (0.3, 0.6, 0.35))
_WHITE = (1.0, 1.0, 1.0, 1.0)


class _FloorPlan:
    """Scratch grids for furnishing: what is taken (walls, doorway zones, items) and where the robot fits."""

    def __init__(
        self, cfg: WorldConfig, rooms: tuple[Room, ...], walls: tuple[Wall, ...], doors: tuple[Door, ...]
    ):
        self.cfg, self.rooms, self.res = cfg, rooms, _PLAN_RES_M
        self.inflate = cfg.robot_radius_m + _PASSAGE_MARGIN_M
        shape = (math.ceil(cfg.depth_m / self.res - 1e-9), math.ceil(cfg.width_m / self.res - 1e-9))
        boxes = np.array([(*w.box(), 0.0) for w in walls]).reshape(-1, 5)
        self.taken = np.zeros(shape, bool)
        self.blocked = np.zeros(shape, bool)
        mark_footprints(self.taken, (0.0, 0.0), self.res, boxes, np.empty((0, 3)), 0.0)
        mark_footprints(self.blocked, (0.0, 0.0), self.res, boxes, np.empty((0, 3)), self.inflate)
        self.keypoints: dict[int, list[tuple[float, float]]] = {r.index: [r.center] for r in rooms}
        t, r = cfg.wall_thickness_m, cfg.robot_radius_m
        for d in doors:
            for side, room in zip((-1.0, 1.0), d.rooms, strict=True):
                depth = t / 2 + 2 * r + 0.3  # kept clear in front of the doorway
                front = t / 2 + r + 0.15  # a point the robot must reach from the room centre
                if d.axis == "x":
                    zone = (d.x, d.y + side * depth / 2, d.width / 2 + 0.1, depth / 2, 0.0)
                    self.keypoints[room].append((d.x, d.y + side * front))
                else:
                    zone = (d.x + side * depth / 2, d.y, depth / 2, d.width / 2 + 0.1, 0.0)
                    self.keypoints[room].append((d.x + side * front, d.y))
                mark_footprints(self.taken, (0.0, 0.0), self.res, np.array([zone]), np.empty((0, 3)), 0.0)

    def _window(self, room: Room) -> tuple[slice, slice, tuple[float, float]]:
        ix0, iy0 = math.ceil(room.x0 / self.res - 0.5), math.ceil(room.y0 / self.res - 0.5)
        ix1, iy1 = math.floor(room.x1 / self.res - 0.5), math.floor(room.y1 / self.res - 0.5)
        return slice(iy0, iy1 + 1), slice(ix0, ix1 + 1), (ix0 * self.res, iy0 * self.res)

    def _mark(self, grid: np.ndarray, origin: tuple[float, float], items: list[Item], inflate: float) -> None:
        boxes = [it.footprint()[1] for it in items if it.shape == "box"]
        discs = [it.footprint()[1] for it in items if it.shape != "box"]
        mark_footprints(
            grid, origin, self.res, np.array(boxes).reshape(-1, 5), np.array(discs).reshape(-1, 3), inflate
        )

    def fits(self, items: list[Item]) -> bool:
        """Items overlap nothing taken and each of their rooms keeps its centre and doorways connected."""
        for room_index in sorted({it.room for it in items}):
            rows, cols, origin = self._window(self.rooms[room_index])
            mine = [it for it in items if it.room == room_index]
            footprint = np.zeros(self.taken[rows, cols].shape, bool)
            self._mark(footprint, origin, mine, 0.01)
            if (footprint & self.taken[rows, cols]).any():
                return False
            blocked = self.blocked[rows, cols].copy()
            self._mark(blocked, origin, mine, self.inflate)
            labels, _ = ndimage.label(~blocked)
            keys = [
                labels[int(y / self.res) - rows.start, int(x / self.res) - cols.start]
                for x, y in self.keypoints[room_index]
            ]
            if keys[0] == 0 or any(k != keys[0] for k in keys):
                return False
        return True

    def commit(self, items: list[Item]) -> None:
        self._mark(self.taken, (0.0, 0.0), items, 0.0)
        self._mark(self.blocked, (0.0, 0.0), items, self.inflate)


def _interior(room: Room, t: float) -> Rect:
    return room.x0 + t / 2, room.y0 + t / 2, room.x1 - t / 2, room.y1 - t / 2


def _sample_furniture(kind: str, room: Room, t: float, rng: np.random.Generator, name: str) -> Item | None:
    """A random pose for one piece: backed against a random wall, or free-standing at a random angle."""
    shape, (w, d, h), placement, _, textures = _FURNITURE[kind]
    scale = rng.uniform(0.85, 1.1)
    w, d, h = w * scale, d * scale, h * rng.uniform(0.92, 1.08)
    x0, y0, x1, y1 = _interior(room, t)
    gap = 0.03
    if placement == "wall":
        side = int(rng.integers(4))  # 0: wall at y0 (front +y), 1: at y1, 2: at x0 (front +x), 3: at x1
        along = (x0, x1) if side < 2 else (y0, y1)
        if along[1] - along[0] < w + 2 * gap:
            return None
        u = rng.uniform(along[0] + w / 2 + gap, along[1] - w / 2 - gap)
        x, y, yaw = {
            0: (u, y0 + gap + d / 2, 0.0),
            1: (u, y1 - gap - d / 2, math.pi),
            2: (x0 + gap + d / 2, u, -math.pi / 2),
            3: (x1 - gap - d / 2, u, math.pi / 2),
        }[side]
    else:
        yaw = int(rng.integers(4)) * math.pi / 2 + rng.uniform(-0.3, 0.3)
        reach = math.hypot(w, d) / 2 + gap
        if x1 - x0 < 2 * reach or y1 - y0 < 2 * reach:
            return None
        x, y = rng.uniform(x0 + reach, x1 - reach), rng.uniform(y0 + reach, y1 - reach)
    size = (w / 2, d / 2, h / 2) if shape == "box" else (w / 2, w / 2, h / 2)
    if textures:
        texture, rgba = _texture(rng, textures, 2.0), _WHITE
    else:
        texture, rgba = None, (*_PLAIN_COLOURS[int(rng.integers(len(_PLAIN_COLOURS)))], 1.0)
    return Item(name, kind, shape, (float(x), float(y), h / 2), size, float(yaw), rgba, texture, room.index)


def _object_item(
    kind: str,
    shape: str,
    dims: tuple[float, float, float],
    xy: tuple[float, float],
    z0: float,
    rng: np.random.Generator,
    name: str,
    room: int,
    textures: tuple[TextureSpec, ...],
) -> Item:
    """An object standing at `xy` on a surface at height `z0`, with a texture from the world's pool."""
    scale = rng.uniform(0.8, 1.2)
    w, d, h = (v * scale for v in dims)
    size = {"box": (w / 2, d / 2, h / 2), "cylinder": (w / 2, w / 2, h / 2), "sphere": (w / 2,) * 3}[shape]
    texture = textures[int(rng.integers(len(textures)))]
    tint = tuple(float(v) for v in rng.uniform(0.6, 1.0, 3))
    return Item(
        name,
        kind,
        shape,
        (float(xy[0]), float(xy[1]), z0 + size[2]),
        size,
        float(rng.uniform(-math.pi, math.pi)),
        (*tint, 1.0),
        texture,
        room,
    )


def _on_surface(
    surface: Item, kind: str, rng: np.random.Generator, taken: list[Item]
) -> tuple[float, float] | None:
    """A spot on a surface's top for an object of `kind`, clear of the objects already on it."""
    shape, (w, d, _) = _OBJECTS[kind]
    reach = math.hypot(w, d) / 2 * 1.2
    sx, sy = surface.size[0] - reach, surface.size[1] - reach
    if min(sx, sy) <= 0:
        return None
    for _ in range(10):
        lx, ly = rng.uniform(-sx, sx), rng.uniform(-sy, sy)
        if surface.shape != "box" and math.hypot(lx, ly) > sx:
            continue
        c, s = math.cos(surface.yaw), math.sin(surface.yaw)
        x, y = surface.pos[0] + c * lx - s * ly, surface.pos[1] + s * lx + c * ly
        if all(
            math.hypot(x - o.pos[0], y - o.pos[1]) > reach + math.hypot(o.size[0], o.size[1]) + 0.02
            for o in taken
        ):
            return x, y
    return None


def _furnish_room(
    cfg: WorldConfig,
    room: Room,
    copies: list[Room],
    plan: _FloorPlan,
    rng: np.random.Generator,
    object_textures: tuple[TextureSpec, ...],
) -> tuple[list[Item], list[Item]]:
    """Furniture and objects for `room`, placed identically in each of `copies` (the room, and its twin)."""
    t = cfg.wall_thickness_m
    x0, y0, x1, y1 = _interior(room, t)
    catalogue = _ROOM_FURNITURE[room.kind]
    n = round(cfg.furniture_density * (x1 - x0) * (y1 - y0) / 2.5) if catalogue else 0
    furniture: list[Item] = []
    for k in range(n):
        kind = catalogue[k % len(catalogue)]
        for _ in range(25):
            item = _sample_furniture(kind, room, t, rng, f"{kind}{k}")
            if item is not None and _place(plan, item, room, copies):
                furniture.append(item)
                break
        else:
            log.debug("%s: no room left for a %s", room.name, kind)
    objects: list[Item] = []
    on_surface: dict[str, list[Item]] = {f.name: [] for f in furniture if _FURNITURE[f.kind][3]}
    for k in range(cfg.objects_per_room):
        if on_surface and rng.random() < 0.75:
            surface = [f for f in furniture if f.name in on_surface][int(rng.integers(len(on_surface)))]
            kind = list(_OBJECTS)[int(rng.integers(len(_OBJECTS)))]
            spot = _on_surface(surface, kind, rng, on_surface[surface.name])
            if spot is not None:
                shape, dims = _OBJECTS[kind]
                obj = _object_item(
                    kind, shape, dims, spot, surface.top, rng, f"obj{k}_{kind}", room.index, object_textures
                )
                on_surface[surface.name].append(obj)
                objects.append(obj)
            continue
        kind = list(_FLOOR_OBJECTS)[int(rng.integers(len(_FLOOR_OBJECTS)))]
        shape, dims = _FLOOR_OBJECTS[kind]
        reach = math.hypot(dims[0], dims[1]) / 2 + 0.05
        if min(x1 - x0, y1 - y0) < 2 * reach:
            continue  # a narrow corridor: no floor objects
        for _ in range(15):
            xy = (rng.uniform(x0 + reach, x1 - reach), rng.uniform(y0 + reach, y1 - reach))
            obj = _object_item(kind, shape, dims, xy, 0.0, rng, f"obj{k}_{kind}", room.index, object_textures)
            if _place(plan, obj, room, copies):
                objects.append(obj)
                break
    return furniture, objects


def _place(plan: _FloorPlan, item: Item, room: Room, copies: list[Room]) -> bool:
    """Commit `item` (and its copies in twin rooms) to the floor plan if it fits everywhere."""
    placed = [item.moved(c.x0 - room.x0, c.y0 - room.y0, c.index, item.name) for c in copies]
    if not plan.fits(placed):
        return False
    plan.commit(placed)
    return True


def _furnish(
    cfg: WorldConfig,
    rooms: tuple[Room, ...],
    walls: tuple[Wall, ...],
    doors: tuple[Door, ...],
    twins: tuple[int, ...],
    rng: np.random.Generator,
) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
    """Furniture and objects of every room; twin rooms get the same set at the same relative positions."""
    plan = _FloorPlan(cfg, rooms, walls, doors)
    pool = tuple(_texture(rng, tuple(ALL_GENERATORS), 4.0) for _ in range(12))  # shared by all objects
    furniture: list[Item] = []
    objects: list[Item] = []
    for room in rooms:
        if twins and room.index == twins[1]:
            continue  # furnished together with twins[0]
        copies = [room] + ([rooms[twins[1]]] if twins and room.index == twins[0] else [])
        pieces, things = _furnish_room(cfg, room, copies, plan, rng, pool)
        for copy in copies:
            dx, dy = copy.x0 - room.x0, copy.y0 - room.y0
            furniture += [p.moved(dx, dy, copy.index, f"r{copy.index}_{p.name}") for p in pieces]
            objects += [o.moved(dx, dy, copy.index, f"r{copy.index}_{o.name}") for o in things]
    return tuple(furniture), tuple(objects)


# ---------------------------------------------------------------------------------------------- entry point
def generate_world(config: WorldConfig | None = None) -> World:
    """A world from a config: the same config (seed included) always gives an equal World.

    Layout, styling and furnishing draw from separate random streams of the seed, so changing the
    furniture density, say, keeps the same rooms, doors and textures.
    """
    cfg = config or WorldConfig()
    t0 = time.perf_counter()
    layout_rng, style_rng, furnish_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3)
    )
    corridor: int | None = None
    if cfg.corridor_width_m:
        rects, lines, twins, corridor = _partition_corridor(cfg, layout_rng)
    else:
        rects, lines, twins = _partition_bsp(cfg, layout_rng)
    rooms = _style_rooms(rects, twins, corridor, style_rng)
    doors = _place_doors(cfg, rooms, corridor, layout_rng)
    walls = _build_walls(cfg, rooms, doors, lines)
    furniture, objects = _furnish(cfg, rooms, walls, doors, twins, furnish_rng)
    world = World(cfg, rooms, walls, doors, furniture, objects, twins)
    log.info(
        "world seed %d: %.0f x %.0f m, %d rooms, %d doors, %d walls, %d furniture, %d objects in %.0f ms",
        cfg.seed,
        cfg.width_m,
        cfg.depth_m,
        len(rooms),
        len(doors),
        len(walls),
        len(furniture),
        len(objects),
        (time.perf_counter() - t0) * 1e3,
    )
    return world


# ---------------------------------------------------------------------------------------------- plotting
@lru_cache(maxsize=512)
def _mean_colour(spec: TextureSpec) -> tuple[float, float, float]:
    return tuple(float(v) for v in spec.image(32).reshape(-1, 3).mean(axis=0) / 255.0)


def _item_colour(item: Item) -> tuple[float, float, float]:
    base = _mean_colour(item.texture) if item.texture else (1.0, 1.0, 1.0)
    return tuple(float(b * c) for b, c in zip(base, item.rgba[:3], strict=True))


def _floor_image(room: Room, px_per_m: int = 24) -> np.ndarray:
    """The room's floor texture tiled at its repeat per metre, for the top-down plot."""
    w, d = room.size
    tile = room.floor.image(64)
    tile_px = max(2, round(px_per_m / room.floor.repeat))
    tile = cv2.resize(tile, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
    reps = (math.ceil(d * px_per_m / tile_px) + 1, math.ceil(w * px_per_m / tile_px) + 1, 1)
    return np.tile(tile, reps)[: max(1, round(d * px_per_m)), : max(1, round(w * px_per_m))]


def plot_world(
    world: World,
    path: np.ndarray | None = None,
    poses: np.ndarray | None = None,
    ax: Axes | None = None,
    labels: bool = True,
) -> Axes:
    """Top-down plot: textured floors, walls, doorways, furniture, objects, a path and camera poses.

    `poses` are (N, 4, 4) camera poses `T_world_cam` in optical axes (the arrow is the viewing direction, z)
    or (N, 3) rows of x, y, yaw. Without `ax`, a new matplotlib Figure (no pyplot state) is made.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Arc, Circle, Polygon, Rectangle

    cfg = world.config
    if ax is None:
        ax = Figure(figsize=(8.0, 8.0 * cfg.depth_m / cfg.width_m + 0.4), dpi=110).add_subplot()
    for room in world.rooms:
        ax.imshow(
            _floor_image(room),
            extent=(room.x0, room.x1, room.y0, room.y1),
            alpha=0.6,
            zorder=0,
            interpolation="nearest",
        )
        if labels:
            twin = " (twin)" if room.index in world.twin_rooms else ""
            ax.text(
                room.x0 + cfg.wall_thickness_m,
                room.y1 - cfg.wall_thickness_m,
                f"{room.index} {room.kind}{twin}",
                fontsize=7,
                va="top",
                ha="left",
                zorder=6,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
            )
    for wall in world.walls:
        cx, cy, hx, hy = wall.box()
        ax.add_patch(Rectangle((cx - hx, cy - hy), 2 * hx, 2 * hy, color="0.15", zorder=3))
    for door in world.doors:  # a quarter-circle swing from one jamb, as on a floor plan
        hinge = (door.x - door.width / 2, door.y) if door.axis == "x" else (door.x, door.y - door.width / 2)
        start = 0.0 if door.axis == "x" else 90.0
        ax.add_patch(
            Arc(
                hinge,
                2 * door.width,
                2 * door.width,
                theta1=start,
                theta2=start + 90,
                color="0.4",
                lw=0.8,
                ls="--",
                zorder=2,
            )
        )
    for item, lw in [(f, 0.8) for f in world.furniture] + [(o, 0.5) for o in world.objects]:
        colour = _item_colour(item)
        kind, v = item.footprint()
        if kind == "disc":
            patch = Circle(v[:2], v[2], fc=colour, ec="0.1", lw=lw, zorder=4)
        else:
            c, s = math.cos(v[4]), math.sin(v[4])
            corners = [
                (v[0] + c * u * v[2] - s * w * v[3], v[1] + s * u * v[2] + c * w * v[3])
                for u, w in ((-1, -1), (1, -1), (1, 1), (-1, 1))
            ]
            patch = Polygon(corners, closed=True, fc=colour, ec="0.1", lw=lw, zorder=4)
        ax.add_patch(patch)
    if path is not None and len(path):
        p = np.asarray(path, float)
        ax.plot(p[:, 0], p[:, 1], "-", color="#ff7f0e", lw=2.2, zorder=7, label="planned path")
        ax.plot(p[:, 0], p[:, 1], "o", color="#ff7f0e", ms=3, mec="k", mew=0.4, zorder=7)
        ax.plot(*p[0], "o", color="#2ca02c", ms=9, mec="k", zorder=8, label="start")
        ax.plot(*p[-1], "*", color="#d62728", ms=14, mec="k", zorder=8, label="goal")
    if poses is not None and len(poses):
        xy, heading = _pose_arrows(np.asarray(poses, float))
        ax.quiver(
            xy[:, 0],
            xy[:, 1],
            np.cos(heading),
            np.sin(heading),
            color="#1f4e9c",
            zorder=9,
            angles="xy",
            scale_units="xy",
            scale=2.0,
            width=0.0035,
            headwidth=4,
            label="camera poses",
        )
    ax.set_xlim(-0.2, cfg.width_m + 0.2)
    ax.set_ylim(-0.2, cfg.depth_m + 0.2)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    return ax


def _pose_arrows(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and ground-plane headings of (N, 4, 4) optical camera poses or (N, 3) x, y, yaw rows."""
    if poses.ndim == 3 and poses.shape[1:] == (4, 4):
        forward = poses[:, :3, 2]
        return poses[:, :2, 3], np.arctan2(forward[:, 1], forward[:, 0])
    if poses.ndim == 2 and poses.shape[1] == 3:
        return poses[:, :2], poses[:, 2]
    raise InvalidInputError(f"poses must be (N, 4, 4) or (N, 3) x, y, yaw, got shape {poses.shape}")

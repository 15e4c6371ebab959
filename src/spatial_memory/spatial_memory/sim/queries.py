"""Query images with ground truth: views of places the robot saw earlier, and of places it never saw.

A memory is asked "where is the place in this image, relative to me now?". `QuerySampler` makes such
questions during a simulated episode and knows the answers. The episode calls `observe(step, ...)` for every
camera frame the robot records, and calls `sample(step, T_world_base)` when a query is due (`due(step)`).
`sample` returns a `QuerySample`: the `Query` for the `StepRecord`, plus the query camera's world pose, depth
and intrinsics.

**Where the query camera goes.** These are the defaults of `QueryConfig`. Every query uses the image size and
intrinsics of the imitated robot camera (`camera`, the head camera by default). Every query is rendered with
`MobileFR3Sim.render_view` with the robot hidden, so the image shows the place and not the robot.

- *Seen* (probability `1 - unseen_fraction` = 0.75): take a random observed frame at least `min_age_steps`
  (20) steps old whose optical axis is at most `max_source_pitch_deg` (60 deg) from horizontal. Move it:
  - horizontally by 0.2..0.6 m (`offset_m`) in a uniformly random direction;
  - in yaw by 5..30 deg (`yaw_offset_deg`), with a random sign;
  - in pitch by a uniform -5..+5 deg (`pitch_jitter_deg`);
  - in height by a uniform -0.05..+0.05 m (`height_jitter_m`).

  Everything else stays as in the source frame, except roll: query cameras are always level (roll 0, like
  the head camera). Because of the minimum offsets a query is always near an earlier view, never equal to it.
- *Unseen* (probability `unseen_fraction` = 0.25): a uniformly random free point of the occupancy grid's
  largest free region (or of the box around the world's finite geoms, filtered by the `free` callable), a
  uniformly random heading, and the imitated camera's height and pitch now, jittered as above.

**Which candidates are rejected.** A candidate must stand in free space: `free(x, y)` at the camera's
position. An inflated grid keeps it a robot radius away from walls and furniture. Its view must also be
valid: at least `min_valid_fraction` (0.8) of its pixels see a surface between `min_depth_m` (0.5 m) and
`max_depth_m` (20 m). So a query never stares into a wall from 10 cm, and never looks mostly at the sky of a
world without a ceiling. Up to `max_tries` (20) candidates of the drawn kind are tried. When none passes,
`sample` returns None and logs why at debug level.

**How "seen" is decided (`depth_overlap`).** The query's depth is sampled every `depth_stride` (4) pixels,
and each sample with a surface (depth in (0, max_depth_m]) is back-projected to a world point. A point
counts as seen when some observed frame projects it inside its image, in front of the camera, with a depth
that matches the frame's stored depth at one of the 4 stored samples around the projection. A match means
within `depth_rel_tol * z + depth_abs_tol` (5 % + 2 cm). A point behind a nearer surface in that frame is
occluded there. Looking at the 4 neighbours tolerates the coarse stored grid at depth edges. The overlap is
the fraction of points seen. Every frame observed so far counts, including those of the current step if
`observe` was called before `sample`. So an "unseen" place is unseen up to and including now, and the
memory can have folded in every frame that makes a "seen" query seen. Frames are stored subsampled by
`depth_stride`, as float16: about 2.3 KB a frame at 128x128, under 2 MB for 800 head frames. The overlap is
one BLAS projection of the query points into all stored frames: about 30 ms against 1600 frames.

**Labels, and the ambiguous middle.** A seen candidate is accepted with overlap >= `seen_min_overlap`
(0.5). An unseen candidate is accepted with overlap <= `unseen_max_overlap` (0.02). Anything in between is
rejected as ambiguous, so the `seen` flag is a clear label for training and evaluation.

The sampler is deterministic: the same seed, the same world and the same calls give the same queries.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import check_pose, invert, make_pose
from spatial_memory.msgs.conversions import check_intrinsics
from spatial_memory.sim.episode import Query
from spatial_memory.sim.mobile_robot import BASE_LINK, CAMERAS, HEAD_CAMERA, MobileFR3Sim
from spatial_memory.sim.planning import OccupancyGrid, sample_free_point

log = logging.getLogger(__name__)

_MIN_Z = 1e-3  # m: points nearer to (or behind) a camera's image plane do not project into it
_MAX_PROJECTIONS = 400_000  # points x frames per vectorised chunk of `depth_overlap` (bounds memory)


# ---------------------------------------------------------------------------------------------- config
def _range(value: object, name: str, lo: float, hi: float) -> tuple[float, float]:
    """`value` as an ordered (low, high) pair of floats within [lo, hi]."""
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be two numbers (low, high), got {value!r}") from exc
    if not (lo <= a <= b <= hi):
        raise ConfigError(f"{name} must satisfy {lo:g} <= low <= high <= {hi:g}, got {value!r}")
    return a, b


@dataclass(frozen=True)
class QueryConfig:
    """How often queries come and where their cameras go; the module docstring explains each choice."""

    every_n_steps: int = 25  # a query every N steps (see QuerySampler.due); 0 = no queries
    unseen_fraction: float = 0.25  # probability that a query shows a place never seen
    min_age_steps: int = 20  # a seen query's source frame is at least this many steps old
    offset_m: tuple[float, float] = (0.2, 0.6)  # horizontal distance from the source camera
    yaw_offset_deg: tuple[float, float] = (5.0, 30.0)  # |yaw change| from the source camera, random sign
    pitch_jitter_deg: float = 5.0  # uniform +- change of the pitch
    height_jitter_m: float = 0.05  # uniform +- change of the camera height
    max_source_pitch_deg: float = 60.0  # frames looking steeper up or down are no sources (yaw is unclear)
    seen_min_overlap: float = 0.5  # a seen query has at least this fraction of its pixels seen
    unseen_max_overlap: float = 0.02  # an unseen query has at most this fraction seen
    min_depth_m: float = 0.5  # a pixel nearer than this is too close to count as valid
    max_depth_m: float = 20.0  # a pixel farther than this sees no surface (sky, far plane)
    min_valid_fraction: float = 0.8  # a query view needs at least this fraction of valid pixels
    max_tries: int = 20  # candidates tried per query before giving up
    depth_stride: int = 4  # depth is sampled every N pixels, in stored frames and in queries
    depth_rel_tol: float = 0.05  # a point matches a stored depth D within rel * z + abs
    depth_abs_tol: float = 0.02
    camera: str = HEAD_CAMERA  # the robot camera whose image size and intrinsics queries have

    def __post_init__(self) -> None:
        self._check_ints()
        self._check_floats()
        object.__setattr__(self, "offset_m", _range(self.offset_m, "offset_m", 0.0, 10.0))
        object.__setattr__(self, "yaw_offset_deg", _range(self.yaw_offset_deg, "yaw_offset_deg", 0.0, 180.0))
        if self.unseen_max_overlap >= self.seen_min_overlap:
            raise ConfigError(
                f"unseen_max_overlap ({self.unseen_max_overlap}) must be below seen_min_overlap "
                f"({self.seen_min_overlap}): the labels would overlap"
            )
        if self.min_depth_m >= self.max_depth_m:
            raise ConfigError(
                f"min_depth_m ({self.min_depth_m}) must be below max_depth_m ({self.max_depth_m})"
            )
        if self.camera not in CAMERAS:
            raise ConfigError(f"camera must be one of {CAMERAS}, got {self.camera!r}")

    def _check_ints(self) -> None:
        limits = {
            "every_n_steps": (0, 1_000_000),
            "min_age_steps": (0, 1_000_000),
            "max_tries": (1, 10_000),
            "depth_stride": (1, 64),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be an integer within [{lo}, {hi}], got {value!r}")

    def _check_floats(self) -> None:
        limits = {
            "unseen_fraction": (0.0, 1.0),
            "pitch_jitter_deg": (0.0, 45.0),
            "height_jitter_m": (0.0, 1.0),
            "max_source_pitch_deg": (0.0, 89.0),
            "seen_min_overlap": (0.0, 1.0),
            "unseen_max_overlap": (0.0, 1.0),
            "min_depth_m": (0.0, 100.0),
            "max_depth_m": (0.01, 10_000.0),
            "min_valid_fraction": (0.0, 1.0),
            "depth_rel_tol": (0.0, 1.0),
            "depth_abs_tol": (0.0, 1.0),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be a number within [{lo:g}, {hi:g}], got {value!r}")
            object.__setattr__(self, name, float(value))


# ---------------------------------------------------------------------------------------------- overlap
@dataclass(frozen=True, eq=False)
class DepthFrame:
    """An observed depth map as `depth_overlap` uses it: `depth` (h, w) metres, with `K` its own intrinsics
    (already scaled if the map was subsampled, see `subsample_depth`); non-finite or non-positive depth
    means no surface."""

    step: int
    T_world_cam: np.ndarray
    K: np.ndarray
    depth: np.ndarray


def subsample_depth(depth: np.ndarray, K: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Every `stride`-th pixel of `depth` (rows and columns, starting at stride // 2), and its intrinsics.

    Samples are picked, not averaged: an average across a depth edge is a surface that does not exist.
    """
    o = stride // 2
    K_s = np.array(K, dtype=np.float64)
    K_s[:2, :] /= stride
    K_s[:2, 2] -= o / stride
    K_s[2] = (0.0, 0.0, 1.0)
    return depth[o::stride, o::stride], K_s


def backproject(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray, max_depth_m: float) -> np.ndarray:
    """World points (N, 3) of the pixels of `depth` that see a surface (0 < depth <= max_depth_m)."""
    v, u = np.nonzero((depth > 0) & (depth <= max_depth_m))  # NaN compares False
    z = depth[v, u].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)]).astype(np.float64)
    rays = np.linalg.solve(K, pix)
    return (T_world_cam[:3, :3] @ (rays * z) + T_world_cam[:3, 3:4]).T


def _seen_by(points: np.ndarray, P: np.ndarray, depth: np.ndarray, rel: float, abs_: float) -> np.ndarray:
    """(N,) whether each world point is seen by at least one of F same-sized frames (see the module doc).

    `P` (F, 3, 4) are the frames' projection matrices K [R | t] (world to pixel, third row = camera z),
    `depth` (F, h, w) their stored depth. A point is seen when it projects into a frame's image, in front of
    it, and matches one of the 4 stored depths around the projection. One BLAS product projects every
    point into every frame; the depth lookups are done only for the (frame, point) pairs inside an image.
    """
    n_frames, h, w = depth.shape
    homogeneous = np.vstack([points.T, np.ones(len(points))])
    uvz = (P.reshape(-1, 4) @ homogeneous).reshape(n_frames, 3, len(points))
    z = uvz[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = uvz[:, 0] / z, uvz[:, 1] / z
    inside = (z > _MIN_Z) & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
    frame, point = np.nonzero(inside)
    z, u, v = z[frame, point], u[frame, point], v[frame, point]
    u0, v0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    tol = rel * z + abs_
    match = np.zeros(len(frame), bool)
    for du in (0, 1):
        for dv in (0, 1):
            ui, vi = np.clip(u0 + du, 0, w - 1), np.clip(v0 + dv, 0, h - 1)
            stored = depth[frame, vi, ui].astype(np.float64)
            match |= (stored > 0) & (np.abs(z - stored) <= tol)  # NaN / inf never match
    seen = np.zeros(len(points), bool)
    seen[point[match]] = True
    return seen


def _seen_fraction(
    points: np.ndarray,
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
    rel: float,
    abs_: float,
    give_up_above: float = math.inf,
) -> float:
    """Fraction of `points` seen by the frames of `groups` ((P, depth) stacks), in chunks of frames;
    points already seen are not tested again. Once more than `give_up_above` is seen, the fraction so far
    (a lower bound) is returned: enough to reject a candidate that had to stay below it."""
    if len(points) == 0:
        return math.nan
    unseen = np.ones(len(points), bool)
    for P, depth in groups:
        chunk = max(1, _MAX_PROJECTIONS // len(points))
        for start in range(0, len(depth), chunk):
            todo = np.flatnonzero(unseen)
            if len(todo) == 0 or 1.0 - len(todo) / len(points) > give_up_above:
                return 1.0 - len(todo) / len(points)
            sl = slice(start, start + chunk)
            unseen[todo[_seen_by(points[todo], P[sl], depth[sl], rel, abs_)]] = False
    return float(1.0 - unseen.mean())


def _stack(frames: Sequence[DepthFrame]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames grouped by depth size as (projection matrices K [R | t] (F, 3, 4), depth (F, h, w)) stacks."""
    by_shape: dict[tuple[int, int], list[DepthFrame]] = {}
    for f in frames:
        by_shape.setdefault(f.depth.shape, []).append(f)
    return [
        (
            np.stack([np.asarray(f.K, float) @ invert(np.asarray(f.T_world_cam, float))[:3] for f in group]),
            np.stack([f.depth for f in group]),
        )
        for group in by_shape.values()
    ]


def depth_overlap(
    query_depth: np.ndarray,
    K_q: np.ndarray,
    T_world_q: np.ndarray,
    frames: Sequence[DepthFrame],
    *,
    stride: int = 1,
    max_depth_m: float = 20.0,
    rel_tol: float = 0.05,
    abs_tol: float = 0.02,
) -> float:
    """Fraction of the query's surface pixels (every `stride`-th) that some frame saw; NaN if it has none.

    Pure and vectorised. A point is seen by a frame when it projects inside the frame's image, in front
    of the camera, within `rel_tol * z + abs_tol` of the frame's depth at one of the 4 stored samples
    around the projection. Points hidden behind a nearer surface in a frame are not seen by it.
    """
    depth = np.asarray(query_depth)
    if depth.ndim != 2 or min(depth.shape) < 1:
        raise InvalidInputError(f"query_depth must be a 2-D depth map, got shape {depth.shape}")
    K_q = check_intrinsics(K_q, depth.shape[1], depth.shape[0], "K_q")
    T_world_q = check_pose(T_world_q, "T_world_q")
    for f in frames:
        if not isinstance(f, DepthFrame) or np.ndim(f.depth) != 2:
            raise InvalidInputError(f"frames must be DepthFrames with 2-D depth, got {type(f).__name__}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise InvalidInputError(f"stride must be a positive integer, got {stride!r}")
    sub, K_sub = subsample_depth(depth, K_q, int(stride))
    points = backproject(sub, K_sub, T_world_q, max_depth_m)
    return _seen_fraction(points, _stack(frames), rel_tol, abs_tol)


# ---------------------------------------------------------------------------------------------- poses
def level_camera_pose(xyz: Sequence[float], yaw: float, pitch_down: float) -> np.ndarray:
    """`T_world_optical` of a level (roll-free) REP-103 camera at `xyz` whose optical axis has heading
    `yaw` (rad, CCW from world x) and points `pitch_down` rad below the horizon."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch_down), math.sin(pitch_down)
    z = np.array([cp * cy, cp * sy, -sp])  # optical axis
    x = np.array([sy, -cy, 0.0])  # image right: horizontal
    return make_pose(np.column_stack([x, np.cross(z, x), z]), np.asarray(xyz, float))


def heading_and_pitch(T_world_optical: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch_down) of an optical frame's axis: the inverse of `level_camera_pose` (roll is dropped)."""
    axis = T_world_optical[:3, 2]
    return math.atan2(axis[1], axis[0]), math.asin(float(np.clip(-axis[2], -1.0, 1.0)))


# ---------------------------------------------------------------------------------------------- sampler
@dataclass(frozen=True, eq=False)
class QuerySample:
    """One query and how it was made: the `Query` for the StepRecord (`T_base_query` relative to the base
    pose `sample` was given), the query camera's world pose, its depth (float32 metres) and intrinsics."""

    query: Query
    T_world_query: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    step: int


@dataclass(frozen=True)
class _Candidate:
    T_world_query: np.ndarray
    seen: bool
    source_step: int


def _int_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise InvalidInputError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


def _world_bounds(sim: MobileFR3Sim) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) box around the world's finite geoms (planes and the robot left out): where unseen queries
    are drawn when `free` is a callable and not a grid."""
    m, d = sim.model, sim.data
    robot = m.body_rootid[m.geom_bodyid] == m.body(BASE_LINK).id
    finite = (m.geom_type != mujoco.mjtGeom.mjGEOM_PLANE) & (m.geom_rbound > 0) & ~robot
    if not np.any(finite):
        raise ConfigError(
            "the world has no finite geometry to bound where unseen queries may go: pass a grid"
        )
    R = d.geom_xmat[finite].reshape(-1, 3, 3)
    aabb = m.geom_aabb[finite]  # (centre, half sizes) in each geom's own frame
    centre = d.geom_xpos[finite] + np.einsum("gij,gj->gi", R, aabb[:, :3])
    half = np.einsum("gij,gj->gi", np.abs(R), aabb[:, 3:])
    return (centre - half)[:, :2].min(axis=0), (centre + half)[:, :2].max(axis=0)


class QuerySampler:
    """Queries of seen and unseen places during one episode, with ground truth (see the module docstring).

    `free` says where a camera may stand: an `OccupancyGrid` (unseen queries are drawn from its largest
    free region) or a callable `(x, y) -> bool` (drawn from the box around the world's geoms, filtered by
    it). Steps must not go backwards across `observe` and `sample` calls. Bad input raises
    InvalidInputError and changes nothing. Rendering uses `sim.render_view`, which leaves the robot's
    state alone.
    """

    def __init__(
        self,
        sim: MobileFR3Sim,
        free: OccupancyGrid | Callable[[float, float], bool],
        config: QueryConfig = QueryConfig(),
        seed: int = 0,
    ) -> None:
        if not isinstance(config, QueryConfig):
            raise ConfigError(f"config must be a QueryConfig, got {type(config).__name__}")
        if not isinstance(sim, MobileFR3Sim):
            raise ConfigError(f"sim must be a MobileFR3Sim, got {type(sim).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self._grid = free if isinstance(free, OccupancyGrid) else None
        if self._grid is not None:
            self._is_free: Callable[[float, float], bool] = self._grid.is_free
        elif callable(free):
            self._is_free = free
            self._bounds = _world_bounds(sim)
        else:
            raise ConfigError("free must be an OccupancyGrid or a callable (x, y) -> bool")
        self.sim, self.config = sim, config
        self._rng = np.random.default_rng(int(seed))
        self._frames: list[DepthFrame] = []
        self._pitch: list[float] = []  # per frame: its optical axis below the horizon (rad)
        self._groups: list[tuple[np.ndarray, np.ndarray]] | None = None  # cache of _stack
        self._last_step = 0

    # ------------------------------------------------------------------ observations
    @property
    def num_frames(self) -> int:
        """How many frames `observe` has stored."""
        return len(self._frames)

    def due(self, step: int) -> bool:
        """Whether a query is due at `step`: every `every_n_steps` steps, from step `every_n_steps` on."""
        n = self.config.every_n_steps
        return n > 0 and _int_step(step) > 0 and step % n == 0

    def observe(self, step: int, T_world_cam: np.ndarray, depth: np.ndarray, K: np.ndarray) -> None:
        """Remember a frame the robot saw at `step` (any camera; several per step are fine): its pose and
        its depth, subsampled by `depth_stride` and stored as float16 (no-surface pixels as inf)."""
        step = self._check_step(step)
        T = check_pose(T_world_cam, "T_world_cam")
        depth = np.asarray(depth)
        s = self.config.depth_stride
        if depth.ndim != 2 or min(depth.shape) < s or not np.issubdtype(depth.dtype, np.floating):
            raise InvalidInputError(
                f"depth must be a 2-D float array of at least {s}x{s} pixels, got {depth.dtype} {depth.shape}"
            )
        if np.any(depth < 0):
            raise InvalidInputError(f"depth has negative values (min {np.nanmin(depth)})")
        K = check_intrinsics(K, depth.shape[1], depth.shape[0])
        sub, K_sub = subsample_depth(depth, K, s)
        has_surface = (sub > 0) & (sub <= self.config.max_depth_m)
        stored = np.where(has_surface, sub, np.inf).astype(np.float16)
        self._frames.append(DepthFrame(step, T.copy(), K_sub, stored))
        self._pitch.append(heading_and_pitch(T)[1])
        self._groups = None
        self._last_step = step

    def overlap(
        self, depth: np.ndarray, K: np.ndarray, T_world_query: np.ndarray, give_up_above: float = math.inf
    ) -> float:
        """`depth_overlap` of a view against every frame observed so far, with this sampler's settings.

        With `give_up_above`, counting stops once more than that fraction is seen and the fraction so far
        is returned (a lower bound); unseen candidates use it to be rejected early.
        """
        cfg = self.config
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise InvalidInputError(f"depth must be a 2-D depth map, got shape {depth.shape}")
        K = check_intrinsics(K, depth.shape[1], depth.shape[0])
        T_world_query = check_pose(T_world_query, "T_world_query")
        if self._groups is None:
            self._groups = _stack(self._frames)
        sub, K_sub = subsample_depth(depth, K, cfg.depth_stride)
        points = backproject(sub, K_sub, T_world_query, cfg.max_depth_m)
        return _seen_fraction(points, self._groups, cfg.depth_rel_tol, cfg.depth_abs_tol, give_up_above)

    # ------------------------------------------------------------------ sampling
    def sample(self, step: int, T_world_base: np.ndarray) -> QuerySample | None:
        """A query at `step` for a robot at `T_world_base`: seen with probability 1 - unseen_fraction, else
        unseen; None (logged at debug) when no candidate of the drawn kind passed in `max_tries`."""
        step = self._check_step(step)
        T_world_base = check_pose(T_world_base, "T_world_base")
        self._last_step = step
        cfg = self.config
        unseen = bool(self._rng.random() < cfg.unseen_fraction)
        sources = [] if unseen else self._sources(step)
        if not unseen and not sources:
            log.debug("step %d: no frame is %d steps old yet: no seen query", step, cfg.min_age_steps)
            return None
        for _ in range(cfg.max_tries):
            candidate = self._unseen_candidate() if unseen else self._seen_candidate(sources)
            if candidate is None:
                continue
            made = self._try(candidate, step, T_world_base)
            if made is not None:
                return made
        log.debug(
            "step %d: no valid %s query in %d tries", step, "unseen" if unseen else "seen", cfg.max_tries
        )
        return None

    def _check_step(self, step: object) -> int:
        step = _int_step(step)
        if step < self._last_step:
            raise InvalidInputError(f"step {step} goes backwards: the last step was {self._last_step}")
        return step

    def _sources(self, step: int) -> list[int]:
        """Indices of the frames a seen query may start from: old enough, not looking steeply up or down."""
        newest = step - self.config.min_age_steps
        steep = math.radians(self.config.max_source_pitch_deg)
        return [
            i
            for i, (f, p) in enumerate(zip(self._frames, self._pitch, strict=True))
            if f.step <= newest and abs(p) <= steep
        ]

    def _jitter(self, pitch: float, z: float) -> tuple[float, float]:
        """Pitch (rad) and height (m) with their uniform jitter added."""
        cfg = self.config
        pitch += math.radians(self._rng.uniform(-cfg.pitch_jitter_deg, cfg.pitch_jitter_deg))
        z += self._rng.uniform(-cfg.height_jitter_m, cfg.height_jitter_m)
        return pitch, z

    def _seen_candidate(self, sources: list[int]) -> _Candidate | None:
        """A camera near a random source frame (offsets as documented), or None if it is not in free space."""
        cfg, rng = self.config, self._rng
        source = self._frames[sources[int(rng.integers(len(sources)))]]
        yaw, pitch = heading_and_pitch(source.T_world_cam)
        x, y, z = source.T_world_cam[:3, 3]
        distance, direction = rng.uniform(*cfg.offset_m), rng.uniform(-math.pi, math.pi)
        yaw += math.radians(rng.uniform(*cfg.yaw_offset_deg)) * (1.0 if rng.random() < 0.5 else -1.0)
        pitch, z = self._jitter(pitch, z)
        x, y = x + distance * math.cos(direction), y + distance * math.sin(direction)
        if not self._is_free(x, y):
            return None
        return _Candidate(level_camera_pose((x, y, z), yaw, pitch), True, source.step)

    def _unseen_candidate(self) -> _Candidate | None:
        """A camera anywhere in free space, random heading, the imitated camera's height and pitch now."""
        rng = self._rng
        if self._grid is not None:
            x, y = sample_free_point(self._grid, rng)
        else:
            lo, hi = self._bounds
            x, y = rng.uniform(lo, hi)
            if not self._is_free(float(x), float(y)):
                return None
        T_base_cam = self.sim.T_base_camera(self.config.camera)
        _, pitch = heading_and_pitch(T_base_cam)
        yaw = rng.uniform(-math.pi, math.pi)
        pitch, z = self._jitter(pitch, float(T_base_cam[2, 3]))
        return _Candidate(level_camera_pose((float(x), float(y), z), yaw, pitch), False, -1)

    def _try(self, candidate: _Candidate, step: int, T_world_base: np.ndarray) -> QuerySample | None:
        """Render a candidate and keep it if its view is valid and its overlap fits its label."""
        cfg = self.config
        T = candidate.T_world_query
        rgb, depth = self.sim.render_view(T, like=cfg.camera, hide_robot=True)
        valid = (depth >= cfg.min_depth_m) & (depth <= cfg.max_depth_m)
        if valid.mean() < cfg.min_valid_fraction:
            return None
        K = self.sim.intrinsics(cfg.camera)
        overlap = self.overlap(depth, K, T, math.inf if candidate.seen else cfg.unseen_max_overlap)
        fits = overlap >= cfg.seen_min_overlap if candidate.seen else overlap <= cfg.unseen_max_overlap
        if not fits:  # NaN (no surface at all) never fits
            return None
        query = Query(
            rgb=rgb,
            T_base_query=invert(T_world_base) @ T,
            seen=candidate.seen,
            overlap=overlap,
            source_step=candidate.source_step,
        )
        log.debug(
            "step %d: %s query, overlap %.2f, source step %d",
            step,
            "seen" if candidate.seen else "unseen",
            overlap,
            candidate.source_step,
        )
        for array in (T, depth, K):
            array.setflags(write=False)
        return QuerySample(query=query, T_world_query=T, depth=depth, K=K, step=step)

"""Metric refinement of memory answers: a bounded store of RGB-D views and PnP against them.

The learned memory answers "where is this picture?" coarsely (tens of centimetres to metres). When the robot
kept RGB-D views of the place, the answer can be measured instead: match the query picture's local features
against a stored view, lift the view's matched features to 3-D with its depth, and solve the query camera's
pose from those 3-D/2-D pairs (PnP in a RANSAC loop, then a least-squares polish on the inliers). The pose
of the stored view in the odometry frame is known, so the query camera's pose follows; relative to the robot
now it is `inv(T_world_base_now) @ T_world_view @ inv(T_query_view)`.

- `ViewStore` keeps at most `capacity` views, written by novelty: a frame is stored only when no stored view
  lies within `new_view_move_m` and `new_view_turn_deg` of it (standing still or driving a corridor again
  stores nothing new). When full, the most redundant view goes (the older of the two closest views), so the
  store covers the places seen rather than the latest minutes. Each view keeps its SIFT keypoints that have
  valid depth, as 3-D points in its camera frame with uint8 descriptors: no images are kept.
- `ViewStore.refine(query_rgb, guesses)` picks candidate views two ways - those whose camera lies nearest
  each coarse guess (within `near_m`; `MemoryService` passes the model's answer and, when served, keyframe
  retrieval's), and those that share the most descriptor matches with the picture (a vote over all stored
  views, so wrong guesses can still be corrected) - and solves PnP against each, and against all their
  matches at once when no single view verifies clearly (neighbouring views each see part of the picture).
  With `live_view`, the latest RGB-D frame offered is a candidate too, stored or not (its features are
  computed when a query needs them): a picture of what the robot sees now is measured against a view with
  no odometry drift, which is what a robot closing in on a pictured place needs. It is tried first, then
  the stored candidates, most votes first. The most inliers win; a candidate with fewer matches than
  `min_inliers`, or no more than the best inliers so far, cannot win and gets no PnP. Two bounds on the
  cost (`benchmarks/bench_refine_cost.py`): with `enough_inliers` the first view verified with that many
  ends the search, and `max_views` caps the views matched. Fewer than `min_inliers`, or a pose a ground
  robot's camera cannot take (tilted against the view, or at another height: aliased matches on a
  texture repeated elsewhere), is a failed verification: the caller keeps the coarse answer and says so
  (`Refinement.reason`). With `rival_ratio` (off by default) every candidate with enough matches is solved,
  and a second verified view, nearly as good, that puts the picture elsewhere (a look-alike room) is
  reported (`Refinement.rival_m`): the answer's sigma widens to it and a loop closure on it is refused.
  With `yield_ratio`, when the asker says it has been looking for the place since a time
  (`refine(searching_since_ns=...)`), a verification against its own search (the current view, and the
  views taken since) yields to an older view verified with nearly as many inliers that puts the picture
  elsewhere: a searching robot offers a new view every frame, and one of them meets a look-alike of the
  picture sooner than the old views of the place do. A question asked outside a search is answered by
  the most inliers, as before.
- Loop closure (`loop_every`): the current frame matched against old views corrects every view's pose
  through a pose graph (`memory.pose_graph`), gated against the drift the odometry can explain.
- `verified_sigmas` is the uncertainty of a verified answer: the odometry's drift since the matched view was
  stored dominates it, so it grows with the view's age.

OpenCV does the vision (SIFT, `solvePnPRansac`, `solvePnPRefineLM`); numpy the bookkeeping. No torch: the
store is independent of the model that gives the coarse answer.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import check_pose, invert
from spatial_memory.memory.pose_graph import ClosureResult, LoopNoise, ViewPoseGraph, lift, planar

__all__ = [
    "LIVE_VIEW_ID", "RefineConfig", "Refinement", "StoredView", "ViewStore", "drift_age_s", "verified_sigmas",
]  # fmt: skip

LIVE_VIEW_ID = -2  # `Refinement.view_id` of a match against the latest frame offered (not a stored view)

logger = logging.getLogger(__name__)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class RefineConfig:
    """The view store and the PnP verification of `backend: refined` answers (see the module docstring).

    Thresholds were chosen on validation worlds (house seeds 1000-1003; `min_inliers` on apartments
    1000-1001 too), never on the test worlds.
    """

    enabled: bool = field(default=True, metadata=_help("serve 'refined' answers (keeps RGB-D views)"))
    capacity: int = field(default=256, metadata=_help("RGB-D views kept at most (features only, no images)"))
    new_view_move_m: float = field(
        default=0.3, metadata=_help("a frame is stored when no stored view is this close in position ...")
    )
    new_view_turn_deg: float = field(default=20.0, metadata=_help("... and in heading (degrees)"))
    max_features: int = field(default=500, metadata=_help("SIFT features per view and per query picture"))
    vote_features: int = field(
        default=100, metadata=_help("the strongest this many per view and picture vote for candidate views")
    )
    sift_contrast: float = field(
        default=0.01, metadata=_help("SIFT contrast threshold: lower finds more features on dull surfaces")
    )
    min_view_features: int = field(
        default=30, metadata=_help("a frame with fewer features of valid depth is not stored")
    )
    min_depth_m: float = field(default=0.1, metadata=_help("depth readings nearer than this are invalid"))
    max_depth_m: float = field(default=10.0, metadata=_help("depth readings farther than this are invalid"))
    ratio: float = field(default=0.8, metadata=_help("Lowe's ratio test on descriptor distances"))
    near_m: float = field(
        default=2.0, metadata=_help("views within this distance of the coarse answer are candidates")
    )
    near_candidates: int = field(default=3, metadata=_help("at most this many candidates near the answer"))
    retrieval_guess: bool = field(
        default=True,
        metadata=_help("where keyframe retrieval is served, also take the views near its answer"),
    )
    vote_candidates: int = field(
        default=3, metadata=_help("and this many sharing the most descriptor matches with the picture")
    )
    live_view: bool = field(
        default=True,
        metadata=_help(
            "also verify against the latest RGB-D frame offered (what the robot sees now, stored or not): "
            "a picture of the place in view is measured against a view with no drift"
        ),
    )
    joint: bool = field(
        default=True,
        metadata=_help("if no single view verifies clearly, solve PnP over all candidates' matches at once"),
    )
    enough_inliers: int = field(
        default=50,
        metadata=_help(
            "a view verified with this many PnP inliers ends the search (the current view is tried first, "
            "then the candidates by votes); 0: every candidate is tried and the most inliers win"
        ),
    )
    rival_ratio: float = field(
        default=0.0,
        metadata=_help(
            "look-alike places: a second view verified with at least this share of the best's inliers that "
            "puts the picture more than rival_m away makes the answer ambiguous (its sigma grows to that "
            "distance; every candidate with enough matches is solved for it); 0: off (0.6 made the policy "
            "explore instead of driving to right answers: README)"
        ),
    )
    rival_m: float = field(
        default=1.0, metadata=_help("... how far apart two verified places must be to be rivals (m)")
    )
    yield_ratio: float = field(
        default=0.6,
        metadata=_help(
            "while the asker searches (QueryPose's searching_since), a verification against its own search "
            "(the current view, and the views taken since the search began) yields to an older view "
            "verified with at least this share of its inliers that puts the picture more than rival_m "
            "elsewhere (a searching robot offers a new view every frame: one meets a look-alike of the "
            "picture sooner than the old views of the place do; chosen on validation Mem-Nav worlds); 0: off"
        ),
    )
    max_views: int = field(
        default=0,
        metadata=_help(
            "at most this many views are matched per answer (the current view and the candidates with the "
            "most votes; bounds the cost of a picture that verifies nowhere); 0: all"
        ),
    )
    min_inliers: int = field(
        default=12,
        metadata=_help(
            "PnP inliers needed to accept a refined pose (swept: benchmarks/bench_refine_inliers.py)"
        ),
    )
    reprojection_px: float = field(default=3.0, metadata=_help("RANSAC inlier threshold (pixels)"))
    max_tilt_deg: float = field(
        default=15.0,
        metadata=_help(
            "a refined camera tilted more than this against the matched view (roll / pitch: the robot's "
            "camera stays level) is implausible: not verified"
        ),
    )
    max_height_change_m: float = field(
        default=0.2,
        metadata=_help("a refined camera this much higher or lower than the matched view: not verified"),
    )
    sigma_m: float = field(
        default=0.05, metadata=_help("1-sigma position error of a verified answer against a fresh view (m)")
    )
    drift_m_per_s: float = field(
        default=0.0055,
        metadata=_help("... growing with the view's age: the odometry drifts between the view and now (m/s)"),
    )
    sigma_yaw_deg: float = field(
        default=1.9, metadata=_help("1-sigma heading error of a verified answer against a fresh view (deg)")
    )
    drift_deg_per_s: float = field(default=0.07, metadata=_help("... growing with the view's age (deg/s)"))
    seen_probability: float = field(
        default=0.99, metadata=_help("seen probability reported with a verified answer")
    )
    kidnap_every: int = field(
        default=0,
        metadata=_help(
            "kidnap check: every this many RGB-D frames, verify the current view against views at least "
            "kidnap_min_age_s old; 0 = off (memory.service; off: repeated furniture fooled it, README); "
            "3 is what was measured"
        ),
    )
    kidnap_min_age_s: float = field(
        default=5.0, metadata=_help("kidnap check: only views at least this old are asked (not the way)")
    )
    kidnap_distance_m: float = field(
        default=2.0,
        metadata=_help("kidnap check: a verified match this far from the odometry's camera pose votes"),
    )
    kidnap_votes: int = field(
        default=2,
        metadata=_help("kidnap check: this many such matches among the last kidnap_window verified"),
    )
    kidnap_min_inliers: int = field(
        default=40,
        metadata=_help(
            "kidnap check: only a match with this many PnP inliers votes (repeated furniture fools 25)"
        ),
    )
    kidnap_window: int = field(
        default=3, metadata=_help("kidnap check: verified matches remembered (far or near the odometry)")
    )
    loop_every: int = field(
        default=0,
        metadata=_help(
            "loop closure: every this many RGB-D frames, verify the current view against views at least "
            "loop_min_age_s old and correct the stored views' poses by a pose graph (memory.pose_graph); "
            "0 = off"
        ),
    )
    loop_min_age_s: float = field(
        default=20.0, metadata=_help("loop closure: only views at least this old are asked")
    )
    loop_min_inliers: int = field(
        default=40, metadata=_help("loop closure: PnP inliers needed (repeated furniture fools 25)")
    )
    loop_max_correction_m: float = field(
        default=1.5,
        metadata=_help("loop closure: a match that would move the camera farther than this is refused"),
    )
    loop_max_correction_deg: float = field(
        default=20.0, metadata=_help("loop closure: ... or turn it more than this (degrees)")
    )
    loop_max_chi2: float = field(
        default=16.3,
        metadata=_help(
            "loop closure: a match the pose graph finds less likely than this chi-square (3 dof; 16.3 = 1 in "
            "1000) under the odometry's drift model is refused (a look-alike place); 0 = no such gate"
        ),
    )
    loop_max_closures: int = field(
        default=256, metadata=_help("loop closure: closures kept in the graph at most (the oldest go)")
    )
    loop_odom_m_per_sqrt_m: float = field(
        default=0.03, metadata=_help("loop closure: odometry position sigma per sqrt(metre) driven")
    )
    loop_odom_rad_per_sqrt_m: float = field(
        default=0.02, metadata=_help("loop closure: odometry heading sigma per sqrt(metre) driven (rad)")
    )
    loop_odom_rad_per_sqrt_rad: float = field(
        default=0.03, metadata=_help("loop closure: odometry heading sigma per sqrt(radian) turned")
    )
    loop_residual_drift: float = field(
        default=0.4,
        metadata=_help(
            "loop closure: share of the drift a closure spans that the reported sigma still counts (its "
            "correction is not exact; chosen on validation worlds for 60-75 % coverage)"
        ),
    )

    def __post_init__(self) -> None:
        for name in (
            "capacity", "max_features", "vote_features", "min_view_features", "min_inliers",
            "kidnap_min_inliers", "loop_min_inliers", "loop_max_closures",
        ):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (6 if name == "min_inliers" else 1):
                raise ConfigError(
                    f"RefineConfig.{name} must be an integer >= 1 (min_inliers >= 6), got {v!r}"
                )
        for name in ("near_candidates", "vote_candidates", "kidnap_every", "max_views", "loop_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"RefineConfig.{name} must be an integer >= 0, got {v!r}")
        for name in (
            "new_view_move_m", "new_view_turn_deg", "near_m", "reprojection_px", "sigma_m", "sift_contrast",
            "sigma_yaw_deg",
            "max_tilt_deg", "max_height_change_m", "kidnap_min_age_s", "kidnap_distance_m", "loop_min_age_s",
            "loop_max_correction_m", "loop_max_correction_deg", "loop_odom_m_per_sqrt_m",
            "loop_odom_rad_per_sqrt_m", "loop_odom_rad_per_sqrt_rad", "rival_m",
        ):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < math.inf:
                raise ConfigError(f"RefineConfig.{name} must be a finite number > 0, got {v!r}")
        if not 0.0 <= self.min_depth_m < self.max_depth_m < math.inf:
            raise ConfigError(
                f"RefineConfig depth range must satisfy 0 <= min_depth_m < max_depth_m < inf, got "
                f"{self.min_depth_m!r}, {self.max_depth_m!r}"
            )
        for name in ("drift_m_per_s", "drift_deg_per_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < math.inf:
                raise ConfigError(f"RefineConfig.{name} must be a finite number >= 0, got {v!r}")
        votes, window = self.kidnap_votes, self.kidnap_window
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (votes, window)) or not (
            1 <= votes <= window
        ):
            raise ConfigError(
                f"RefineConfig needs integers 1 <= kidnap_votes ({votes!r}) <= kidnap_window ({window!r})"
            )
        enough = self.enough_inliers
        if (
            isinstance(enough, bool)
            or not isinstance(enough, int)
            or not (enough == 0 or enough >= self.min_inliers)
        ):
            raise ConfigError(
                f"RefineConfig.enough_inliers must be 0 (off) or an integer >= min_inliers "
                f"({self.min_inliers}), got {enough!r}"
            )
        for name in ("rival_ratio", "yield_ratio"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"RefineConfig.{name} must be within [0, 1], got {v!r}")
        chi2 = self.loop_max_chi2
        if isinstance(chi2, bool) or not isinstance(chi2, (int, float)) or not 0.0 <= chi2 < math.inf:
            raise ConfigError(f"RefineConfig.loop_max_chi2 must be a finite number >= 0, got {chi2!r}")
        residual = self.loop_residual_drift
        if isinstance(residual, bool) or not isinstance(residual, (int, float)) or not 0.0 <= residual <= 1.0:
            raise ConfigError(f"RefineConfig.loop_residual_drift must be within [0, 1], got {residual!r}")
        if not 0.0 < self.ratio <= 1.0 or not 0.0 <= self.seen_probability <= 1.0:
            raise ConfigError("RefineConfig.ratio must be in (0, 1] and seen_probability in [0, 1]")


def drift_age_s(config: RefineConfig, now_ns: int, view_stamp_ns: int, drift_from_ns: int = -1) -> float:
    """Seconds of odometry drift between a view and now, what `verified_sigmas` grows with: the view's age,
    less the part that loop closures took out (`drift_from_ns`: the pose graph's drift stamp), of which
    `loop_residual_drift` still counts (a closure's correction is not exact)."""
    age = (int(now_ns) - int(view_stamp_ns)) * 1e-9
    closed = (int(now_ns) - max(int(view_stamp_ns), int(drift_from_ns))) * 1e-9
    return closed + config.loop_residual_drift * (age - closed)


def verified_sigmas(config: RefineConfig, view_age_s: float) -> tuple[float, float]:
    """1-sigma position (m) and heading (rad) errors of an answer verified against a view `view_age_s` old.

    Measured on validation worlds 1000-1003 (375 verified answers): the error is the odometry's drift between
    the view and now far more than PnP's (median 0.05 m for views under 15 s old, 0.44 m over 80 s), so the
    sigma grows with the age: sqrt(sigma^2 + (drift * age)^2) covers 65-76 % in every age band.
    """
    age = max(0.0, float(view_age_s))
    position = math.hypot(config.sigma_m, config.drift_m_per_s * age)
    heading = math.radians(math.hypot(config.sigma_yaw_deg, config.drift_deg_per_s * age))
    return position, heading


@dataclass(frozen=True, eq=False)
class StoredView:
    """One stored view: where its camera was (`T_world_cam`, REP-103 optical frame, in the memory's fixed
    frame) and its features - pixel positions, 3-D points in the camera frame, SIFT descriptors (uint8)."""

    view_id: int
    stamp_ns: int
    T_world_cam: np.ndarray
    uv: np.ndarray  # (N, 2) float32
    xyz: np.ndarray  # (N, 3) float32, camera frame
    descriptors: np.ndarray  # (N, 128) uint8
    drift_from_ns: int = -1  # the odometry's drift to now counts from here (-1: stamp_ns; loop closure)

    @property
    def nbytes(self) -> int:
        return self.uv.nbytes + self.xyz.nbytes + self.descriptors.nbytes + self.T_world_cam.nbytes


@dataclass(frozen=True)
class Refinement:
    """The outcome of `ViewStore.refine`: the verified query camera pose (None when verification failed),
    the inlier count of the best candidate, the view it matched (and when that view was taken), how many
    views were tried and why not."""

    T_world_query: np.ndarray | None
    inliers: int
    view_id: int
    tried: int
    reason: str
    view_stamp_ns: int = -1
    T_view_query: np.ndarray | None = None  # the verified camera in the matched view's frame (drift-free)
    drift_from_ns: int = -1  # the odometry's drift to now counts from here (the view's stamp or later)
    rival_m: float = 0.0  # > 0: another view verified the picture this far away (`RefineConfig.rival_ratio`)
    rival: str = ""  # which view, with how many inliers

    @property
    def ok(self) -> bool:
        return self.T_world_query is not None


class ViewStore:
    """A bounded, novelty-written store of RGB-D views that can verify and refine a coarse answer."""

    def __init__(self, config: RefineConfig | None = None) -> None:
        self.config = cfg = config or RefineConfig()
        self._sift = _detector(cfg)
        self._views: list[StoredView] = []
        self._next_id = 0
        self._K: np.ndarray | None = None
        self._size: tuple[int, int] | None = None  # (height, width) of the stored views' camera
        self._db: tuple[np.ndarray, ...] | None = None  # stacked vote descriptors, their view, their norms
        # the latest frame offered: (rgb, depth, K, T_world_cam, stamp_ns) and its view once computed
        self._live: tuple | None = None
        self._live_view: StoredView | None = None
        self._graph = _graph(cfg)  # loop closure (None when off)

    # -- properties ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._views)

    @property
    def views(self) -> tuple[StoredView, ...]:
        return tuple(self._views)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored views (features, points, poses)."""
        return sum(v.nbytes for v in self._views)

    def reset(self) -> None:
        """Forget every view (the latest frame too)."""
        self._views, self._db, self._K, self._size = [], None, None, None
        self._live, self._live_view = None, None
        self._graph = _graph(self.config)

    # -- writing ------------------------------------------------------------------------------------

    def snapshot(self) -> tuple:
        """The stored views and the latest frame now (views are immutable: a shallow copy suffices); see
        `restore`."""
        graph = None if self._graph is None else self._graph.copy()
        return (list(self._views), self._next_id, self._K, self._size, self._live, self._live_view, graph)

    def restore(self, snapshot: tuple) -> None:
        """Go back to a `snapshot` of this store (`unpack`'s, of a saved store, has no latest frame)."""
        views, self._next_id, self._K, self._size, *live = snapshot
        self._live, self._live_view, graph = live if live else (None, None, None)
        self._views, self._db = list(views), None
        if graph is not None:
            self._graph = graph.copy()
        else:  # a saved store: the graph starts again from the views' poses
            self._graph = _graph(self.config, self._views)

    def reader(self) -> ViewStore:
        """A copy to `refine` with while this store takes new views (another thread, without a lock held):
        it shares the stored views (immutable) and caches, not the list or the SIFT detector. `adopt` keeps
        what it computed."""
        copy = object.__new__(ViewStore)
        copy.__dict__.update(self.__dict__)
        copy._views = list(self._views)
        copy._sift = _detector(self.config)  # one detector per thread
        copy._graph = None  # readers only read: the views carry their corrected poses
        return copy

    def adopt(self, reader: ViewStore) -> None:
        """Keep what a `reader` computed on the way (the latest frame's features, the vote index) when this
        store still holds the same frame and views."""
        if self._live is not None and reader._live is self._live and self._live_view is None:
            self._live_view = reader._live_view
        same = len(reader._views) == len(self._views) and all(
            a is b for a, b in zip(reader._views, self._views, strict=True)
        )
        if self._db is None and reader._db is not None and same:
            self._db = reader._db

    def is_novel(self, T_world_cam: np.ndarray) -> bool:
        """True when no stored view is within `new_view_move_m` and `new_view_turn_deg` of this camera."""
        if not self._views:
            return True
        cfg = self.config
        dist, turn = self._pose_gaps(T_world_cam)
        return not bool(np.any((dist < cfg.new_view_move_m) & (turn < math.radians(cfg.new_view_turn_deg))))

    def add(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray,
        K: np.ndarray,  # noqa: N803 - the usual name of the intrinsic matrix
        T_world_cam: np.ndarray,  # noqa: N803
        stamp_ns: int,
    ) -> bool:
        """Store this RGB-D frame when it is novel and has enough features with valid depth; True if stored.

        `depth_m`: (H, W) metres along the optical axis, registered to `rgb` (NaN/0/inf = no reading);
        `K`: 3x3 intrinsics of the camera. Raises InvalidInputError on malformed input (nothing stored).
        """
        rgb, depth, K = _check_rgb(rgb), _check_depth(depth_m, rgb.shape[:2]), _check_K(K)
        T = check_pose(T_world_cam, "T_world_cam")
        if self._size is not None and (self._size != rgb.shape[:2] or not np.allclose(self._K, K)):
            logger.warning("camera changed (size or intrinsics): the view store starts again")
            self.reset()
        self._live, self._live_view = (rgb, depth, K, T, int(stamp_ns)), None
        if self._graph is not None:
            self._graph.moved(T)
        if self._size is None:
            self._K, self._size = K, rgb.shape[:2]
        if not self.is_novel(T):
            return False
        view = self._view(rgb, depth, K, T, int(stamp_ns), self._next_id)
        if view is None:
            return False
        self._live_view = view
        self._next_id += 1
        self._views.append(view)
        if self._graph is not None:
            self._graph.add_view(view.view_id, view.stamp_ns, view.T_world_cam)
        if len(self._views) > self.config.capacity:
            self._evict()
        self._db = None
        return True

    def _view(
        self,
        rgb: np.ndarray,
        depth: np.ndarray,
        K: np.ndarray,  # noqa: N803
        T: np.ndarray,  # noqa: N803
        stamp_ns: int,
        view_id: int,
    ) -> StoredView | None:
        """A frame's features with valid depth as a view; None when it has fewer than `min_view_features`."""
        uv, desc = self._features(rgb)
        if len(uv) == 0:
            return None
        cfg = self.config
        px = np.clip(np.rint(uv).astype(int), 0, [rgb.shape[1] - 1, rgb.shape[0] - 1])
        z = depth[px[:, 1], px[:, 0]]
        valid = np.isfinite(z) & (z > cfg.min_depth_m) & (z < cfg.max_depth_m)
        if valid.sum() < cfg.min_view_features:
            return None
        uv, desc, z = uv[valid], desc[valid], z[valid]
        xyz = np.column_stack(
            [(uv[:, 0] - K[0, 2]) * z / K[0, 0], (uv[:, 1] - K[1, 2]) * z / K[1, 1], z]
        ).astype(np.float32)
        return StoredView(view_id, stamp_ns, T, uv.astype(np.float32), xyz, desc)

    def live_view(self) -> StoredView | None:
        """The latest frame offered as a view (`LIVE_VIEW_ID` unless it was stored), None when there is
        none or it has too few features with depth; its features are computed once, when first asked."""
        if self._live is None:
            return None
        if self._live_view is None:
            rgb, depth, K, T, stamp_ns = self._live
            self._live_view = self._view(rgb, depth, K, T, stamp_ns, LIVE_VIEW_ID)
            if self._live_view is None:
                self._live = None  # nothing to match: do not try again for this frame
        return self._live_view

    def _evict(self) -> None:
        """Drop the older of the two views closest to each other (position + heading): keep coverage."""
        pos = np.stack([v.T_world_cam[:2, 3] for v in self._views])
        heading = np.array([_heading(v.T_world_cam) for v in self._views])
        turn = np.abs((heading[:, None] - heading[None] + math.pi) % (2 * math.pi) - math.pi)
        scale = self.config.new_view_move_m / math.radians(self.config.new_view_turn_deg)
        gap = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + turn * scale
        np.fill_diagonal(gap, np.inf)
        i, j = np.unravel_index(int(np.argmin(gap)), gap.shape)
        if self._graph is not None:
            self._graph.remove_view(self._views[min(i, j)].view_id)
        del self._views[min(i, j)]  # views are in insertion order: the lower index is the older

    # -- saving -------------------------------------------------------------------------------------

    def pack(self) -> dict[str, np.ndarray]:
        """The stored views as arrays (what `MemoryService.save` writes; `unpack` reads it back)."""
        views = self._views
        return {
            "view_ids": np.array([v.view_id for v in views], np.int64),
            "stamps": np.array([v.stamp_ns for v in views], np.int64),
            "T_world_cam": np.array([v.T_world_cam for v in views], np.float64).reshape(-1, 4, 4),
            "counts": np.array([len(v.uv) for v in views], np.int64),
            "uv": np.concatenate([v.uv for v in views]) if views else np.zeros((0, 2), np.float32),
            "xyz": np.concatenate([v.xyz for v in views]) if views else np.zeros((0, 3), np.float32),
            "descriptors": (
                np.concatenate([v.descriptors for v in views]) if views else np.zeros((0, 128), np.uint8)
            ),
            "next_id": np.array([self._next_id], np.int64),
            "K": np.zeros((0, 3)) if self._K is None else np.asarray(self._K, np.float64),
            "size": np.zeros(0, np.int64) if self._size is None else np.array(self._size, np.int64),
        }

    @property
    def camera(self) -> tuple[tuple[int, int], list[list[float]]] | None:
        """((height, width), K as lists) of the stored views' camera, None before the first view."""
        if self._size is None or self._K is None:
            return None
        return (int(self._size[0]), int(self._size[1])), np.asarray(self._K).tolist()

    @staticmethod
    def unpack(packed: dict[str, np.ndarray], where: str) -> tuple:
        """`pack`'s arrays checked and turned into a `restore` snapshot; InvalidInputError naming `where`
        when anything is missing, of the wrong shape or not finite."""
        try:
            ids, stamps = np.asarray(packed["view_ids"]), np.asarray(packed["stamps"])
            poses, counts = np.asarray(packed["T_world_cam"], np.float64), np.asarray(packed["counts"])
            uv, xyz = np.asarray(packed["uv"]), np.asarray(packed["xyz"])
            desc, (next_id,) = np.asarray(packed["descriptors"]), np.asarray(packed["next_id"]).tolist()
            K, size = np.asarray(packed["K"], np.float64), np.asarray(packed["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{where}: the stored views are missing or malformed ({exc})") from exc
        n = len(ids)
        shapes_ok = (
            isinstance(next_id, int)
            and stamps.shape == (n,)
            and counts.shape == (n,)
            and poses.shape == (n, 4, 4)
            and uv.shape == (int(counts.sum()), 2)
            and xyz.shape == (len(uv), 3)
            and desc.shape == (len(uv), 128)
            and desc.dtype == np.uint8
            and bool(np.all(counts >= 0))
            and ((K.shape == (3, 3) and size.shape == (2,)) or (n == 0 and K.size == 0 and size.size == 0))
        )
        if not shapes_ok or not all(np.isfinite(a).all() for a in (poses, uv, xyz, K)):
            raise InvalidInputError(f"{where}: the stored views are malformed or not finite")
        views, start = [], 0
        for i in range(n):
            end = start + int(counts[i])
            T = check_pose(poses[i], f"{where}: view {int(ids[i])}'s pose")
            views.append(
                StoredView(
                    int(ids[i]),
                    int(stamps[i]),
                    T,
                    uv[start:end].astype(np.float32),
                    xyz[start:end].astype(np.float32),
                    desc[start:end].copy(),
                )
            )
            start = end
        camera = (None, None) if K.size == 0 else (_check_K(K), (int(size[0]), int(size[1])))
        return (views, next_id, *camera)

    def rebase(self, T_now_saved: np.ndarray, stamp_offset_ns: int) -> None:  # noqa: N803
        """Move every view into another fixed frame (`T_now_saved @ T_world_cam`) and clock (stamps +
        offset): a loaded memory continued in a new session (`saved_state.Continuation`)."""
        T = check_pose(T_now_saved, "T_now_saved")
        self._views = [
            dataclasses.replace(v, T_world_cam=T @ v.T_world_cam, stamp_ns=v.stamp_ns + int(stamp_offset_ns))
            for v in self._views
        ]
        self._db = None
        self._live, self._live_view = None, None  # a frame of the old session: not "now" any more
        self._graph = _graph(self.config, self._views)  # the old odometry's graph does not carry over

    # -- loop closure ------------------------------------------------------------------------------

    @property
    def loop_closures(self) -> int:
        """Loop closures the pose graph holds (0 when loop closure is off)."""
        return 0 if self._graph is None else self._graph.closures

    def close_loop(self, found: Refinement, T_world_now: np.ndarray, stamp_ns: int) -> ClosureResult:  # noqa: N803
        """Correct the stored views' poses by a verified match of the camera now (`found`, from `refine`
        with `taken_before_ns`; `T_world_now` is where the odometry puts the camera): the match is a loop
        closure in the pose graph (`memory.pose_graph`), solved, and every view moved to its new pose."""
        if self._graph is None:
            return ClosureResult(False, "loop closure is off")
        if not found.ok or found.T_view_query is None or found.inliers < self.config.loop_min_inliers:
            return ClosureResult(False, f"not verified with {self.config.loop_min_inliers} inliers")
        if found.rival_m > 0.0:
            return ClosureResult(False, f"ambiguous: {found.rival} verifies {found.rival_m:.1f} m away")
        view = next((v for v in self._views if v.view_id == found.view_id), None)
        if view is None:
            return ClosureResult(False, f"view {found.view_id} is gone")
        T_now = check_pose(T_world_now, "T_world_now")
        result = self._graph.close(view.view_id, view.T_world_cam, found.T_view_query, T_now, stamp_ns)
        if result.accepted:
            estimates = self._graph.estimates()
            self._views = [
                _moved(v, *estimates[v.view_id]) if v.view_id in estimates else v for v in self._views
            ]
            logger.debug(
                "loop closed: the camera sees view %d (%.0f s old), %.2f m / %.1f deg off the odometry "
                "(chi-square %.1f)",
                view.view_id, (stamp_ns - view.stamp_ns) * 1e-9, result.correction_m, result.correction_deg,
                result.chi2,
            )  # fmt: skip
        else:
            logger.debug("no loop closure with view %d: %s", view.view_id, result.reason)
        return result

    # -- reading ------------------------------------------------------------------------------------

    def refine(
        self,
        query_rgb: np.ndarray,
        T_world_query: np.ndarray | Sequence[np.ndarray] | None = None,  # noqa: N803
        taken_before_ns: int | None = None,
        features: tuple[np.ndarray, np.ndarray] | None = None,
        searching_since_ns: int | None = None,
    ) -> Refinement:
        """Verify and refine a coarse answer (`T_world_query`, the query camera in the store's frame, or
        several guesses, e.g. from two models; None: search by appearance only) by PnP against the best
        candidate views; see the module docstring. `taken_before_ns`: only views stamped before it are
        candidates (the kidnap check asks what the robot saw long ago, not on the way here). `features`:
        the picture's (uv, descriptors) when already computed (the latest frame's, `live_view`).
        `searching_since_ns`: the asker has been looking for the place since then; with `yield_ratio`,
        the current view and the views taken since are its search (None: not searching, the rule is off)."""
        rgb = _check_rgb(query_rgb)
        if not self._views and (taken_before_ns is not None or self.live_view() is None):
            return Refinement(None, 0, -1, 0, "no stored RGB-D views yet")
        if rgb.shape[:2] != self._size:
            h, w = self._size
            return Refinement(
                None, 0, -1, 0, f"the picture is {rgb.shape[1]}x{rgb.shape[0]}, the stored views {w}x{h}"
            )
        uv, desc = self._features(rgb) if features is None else features
        if len(uv) < self.config.min_inliers:
            return Refinement(None, 0, -1, 0, f"only {len(uv)} features in the picture")
        guesses = [] if T_world_query is None else _guesses(T_world_query)
        eligible = None
        if taken_before_ns is not None:
            eligible = np.array([v.stamp_ns < taken_before_ns for v in self._views])
            if not eligible.any():
                return Refinement(None, 0, -1, 0, "no stored view old enough")
        candidates = self._candidates(desc, guesses, eligible) if self._views else []
        live = self.live_view() if self.config.live_view else None
        if live is not None and (
            any(live is self._views[i] for i in candidates)
            or (taken_before_ns is not None and live.stamp_ns >= taken_before_ns)
        ):
            live = None  # a candidate already, or too recent for the kidnap check
        # What the robot sees now first (no drift since it), then the stored candidates, most votes first.
        # PnP keeps at most its matches as inliers: a view with no more matches than the best inliers so
        # far cannot win and is not solved; with `enough_inliers`, a view verified with that many ends it.
        order = ([live] if live is not None else []) + [self._views[i] for i in candidates]
        if self.config.max_views:
            order = order[: self.config.max_views]
        best: tuple[int, StoredView | None, np.ndarray | None] = (0, None, None)  # inliers, view, pose
        verified: list[tuple[int, StoredView, np.ndarray]] = []  # every view solved and verified
        matched: list[tuple[np.ndarray, ...]] = []  # the stored candidates' matches, for the joint PnP
        tried, rivals = 0, self.config.rival_ratio > 0.0
        search_ns = self._search_from_ns(searching_since_ns)  # views stamped since: the robot's own search
        for view in order:
            qi, xyz, dist = self._matches(desc, view)
            tried += 1
            if view is not live:
                matched.append((qi, xyz, dist))
            contest = best[2] is not None and _searching(best[1], search_ns)  # an older view may take over
            if len(qi) >= self.config.min_inliers and (
                rivals or contest or len(qi) > best[0] or (len(qi) == best[0] and best[2] is None)
            ):  # fewer matches than min_inliers cannot verify
                inliers, T = self._solve(uv[qi], xyz, [view])
                if T is not None and inliers >= self.config.min_inliers:
                    verified.append((inliers, view, T))
                if inliers > best[0] or (inliers == best[0] and T is not None and best[2] is None):
                    best = (inliers, view, T)
            if self.config.enough_inliers and best[2] is not None and best[0] >= self.config.enough_inliers:
                break
        stored = order[1:] if live is not None else order
        if self.config.joint and len(matched) > 1 and best[0] < 2 * self.config.min_inliers:
            views = stored[: len(matched)]
            inliers, T = self._solve_joint(uv, views, matched)
            if inliers > best[0]:
                best = (inliers, best[1] or views[0], T)
        inliers, view, T = best
        view_id = -1 if view is None else view.view_id
        if T is None or inliers < self.config.min_inliers:
            return Refinement(
                None, inliers, view_id, tried,
                f"not verified: best {inliers} PnP inliers < {self.config.min_inliers} ({tried} views tried)",
            )  # fmt: skip
        yielded = ""
        if _searching(view, search_ns):
            inliers, view, T, yielded = self._yield(verified, inliers, view, T, search_ns)
            view_id = view.view_id
        what = _view_name(view_id)
        reason = f"{inliers} PnP inliers against {what}{yielded}"
        drift_from = max(view.stamp_ns, view.drift_from_ns)
        gap, rival = self._rival(verified, inliers, T) if rivals else (0.0, "")
        return Refinement(
            T, inliers, view_id, tried, reason, view.stamp_ns, invert(view.T_world_cam) @ T, drift_from,
            gap, rival,
        )  # fmt: skip

    def _search_from_ns(self, searching_since_ns: int | None) -> int | None:
        """The stamp from which a view counts as the robot's own search: `searching_since_ns`; None (the
        rule does not apply) with `yield_ratio` 0 or when the asker is not searching."""
        if self.config.yield_ratio <= 0.0 or searching_since_ns is None:
            return None
        return int(searching_since_ns)

    def _yield(
        self,
        verified: list[tuple[int, StoredView, np.ndarray]],
        inliers: int,
        view: StoredView,
        T: np.ndarray,  # noqa: N803
        search_ns: int | None,
    ) -> tuple[int, StoredView, np.ndarray, str]:
        """A verification against the robot's own search (`view`) yields to the older view verified with
        the most inliers, at least `yield_ratio` of its own, that puts the picture more than `rival_m`
        away: (inliers, view, pose, what yielded); the verification itself when no older view contradicts
        it. A searching robot's view is a new draw every frame and meets a look-alike of the picture sooner
        than the old views of the place do."""
        cfg = self.config
        older = [
            (n, v, T_other)
            for n, v, T_other in verified
            if not _searching(v, search_ns)
            and n >= cfg.yield_ratio * inliers
            and _apart_m(T_other, T) > cfg.rival_m
        ]  # fmt: skip
        if not older:
            return inliers, view, T, ""
        n, other, T_other = max(older, key=lambda t: t[0])  # noqa: N806
        what = _view_name(view.view_id)
        far = _apart_m(T_other, T)
        said = f" ({what}, seen while searching, verified it {far:.1f} m away with {inliers})"
        return n, other, T_other, said

    def _rival(
        self,
        verified: list[tuple[int, StoredView, np.ndarray]],
        inliers: int,
        T: np.ndarray,  # noqa: N803
    ) -> tuple[float, str]:
        """The farthest place another verified view puts the picture, when that view has at least
        `rival_ratio` of the best's inliers and the place is more than `rival_m` from the answer: (its
        distance, which view); (0, "") when no such rival (the answer is not ambiguous)."""
        cfg, gap, rival = self.config, 0.0, ""
        for n, view, T_other in verified:  # noqa: N806
            far = _apart_m(T_other, T)
            if n >= cfg.rival_ratio * inliers and far > max(cfg.rival_m, gap):
                what = _view_name(view.view_id)
                gap, rival = far, f"{what} ({n} inliers)"
        return gap, rival

    def _candidates(
        self, desc: np.ndarray, guesses: Sequence[np.ndarray], eligible: np.ndarray | None = None
    ) -> list[int]:
        """Indices of the views to verify: those nearest each coarse guess and the best voted, most votes
        first; only `eligible` views (a bool per view) when given."""
        cfg, chosen = self.config, []
        for guess in guesses if cfg.near_candidates else ():
            dist, turn = self._pose_gaps(check_pose(guess, "T_world_query"))
            score = dist + turn * (cfg.new_view_move_m / math.radians(cfg.new_view_turn_deg))
            order = [
                int(i)
                for i in np.argsort(score, kind="stable")
                if dist[i] <= cfg.near_m and (eligible is None or eligible[i])
            ]
            chosen += [i for i in order if i not in chosen][: cfg.near_candidates]
        if cfg.vote_candidates:
            votes = self._votes(desc, eligible)
            order = np.argsort(-votes, kind="stable")
            voted = [int(i) for i in order if votes[i] > 0 and int(i) not in chosen]
            chosen += voted[: cfg.vote_candidates]
            chosen.sort(key=lambda i: -votes[i])  # the likeliest first (stable: near the guesses on ties)
        return chosen

    def _votes(self, desc: np.ndarray, eligible: np.ndarray | None = None) -> np.ndarray:
        """Per view, how many of the picture's descriptors have their nearest stored descriptor there and
        pass the ratio test against the second nearest (anywhere among the `eligible` views: the frame just
        stored must not take the votes of a loop or kidnap check of that same frame)."""
        n = self.config.vote_features
        if self._db is None:
            stacked = np.concatenate([v.descriptors[:n] for v in self._views]).astype(np.float32)
            owner = np.concatenate([np.full(len(v.descriptors[:n]), i) for i, v in enumerate(self._views)])
            self._db = (stacked, owner, (stacked * stacked).sum(1))
        stacked, owner, norms = self._db
        votes = np.zeros(len(self._views), int)
        if len(stacked) < 2:
            return votes
        q = desc[:n].astype(np.float32)  # strongest first
        d2 = (q * q).sum(1)[:, None] + norms[None] - 2.0 * q @ stacked.T
        if eligible is not None:
            d2[:, ~eligible[owner]] = np.inf
        two = np.argpartition(d2, 1, axis=1)[:, :2]
        rows = np.arange(len(q))
        a, b = d2[rows, two[:, 0]], d2[rows, two[:, 1]]
        first = np.where(a <= b, two[:, 0], two[:, 1])
        good = np.minimum(a, b) < (self.config.ratio**2) * np.maximum(a, b)
        np.add.at(votes, owner[first[good]], 1)
        return votes

    def _matches(self, desc: np.ndarray, view: StoredView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ratio-test matches of the picture's descriptors to one view: query feature indices, the matched
        3-D points in the store's frame, descriptor distances."""
        matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(
            desc.astype(np.float32), view.descriptors.astype(np.float32), k=2
        )
        good = [m for m, *rest in matches if rest and m.distance < self.config.ratio * rest[0].distance]
        qi = np.array([m.queryIdx for m in good], int)
        vi = np.array([m.trainIdx for m in good], int)
        T = view.T_world_cam
        xyz = view.xyz[vi].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        return qi, xyz.reshape(-1, 3), np.array([m.distance for m in good], float)

    def _solve_joint(
        self, uv: np.ndarray, views: list[StoredView], matched: list[tuple[np.ndarray, ...]]
    ) -> tuple[int, np.ndarray | None]:
        """PnP over the matches of all candidate views at once (each picture feature keeps its closest
        match): neighbouring views each see part of the picture, together more of it."""
        qi = np.concatenate([m[0] for m in matched])
        if len(qi) < 6:
            return 0, None
        xyz = np.concatenate([m[1] for m in matched])
        dist = np.concatenate([m[2] for m in matched])
        order = np.lexsort((dist, qi))
        keep = order[np.r_[True, qi[order][1:] != qi[order][:-1]]]
        return self._solve(uv[qi[keep]], xyz[keep], views)

    def _solve(
        self, img: np.ndarray, xyz: np.ndarray, views: list[StoredView]
    ) -> tuple[int, np.ndarray | None]:
        """(inliers, T_world_query) by PnP RANSAC + LM polish from 2-D picture points and 3-D points in the
        store's frame; (inliers, None) when it fails or the pose is implausible for every view given."""
        if len(img) < 6:
            return len(img), None
        cfg, obj, img = self.config, np.asarray(xyz, np.float64), np.asarray(img, np.float64)
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            obj, img, self._K, None, reprojectionError=cfg.reprojection_px, iterationsCount=100,
            confidence=0.999, flags=cv2.SOLVEPNP_EPNP,
        )  # fmt: skip
        if not ok or inliers is None or len(inliers) < 6:
            return 0 if inliers is None else len(inliers), None
        idx = inliers[:, 0]
        rvec, tvec = cv2.solvePnPRefineLM(obj[idx], img[idx], self._K, None, rvec, tvec)
        R, _ = cv2.Rodrigues(rvec)
        if np.any((obj[idx] @ R.T + tvec.reshape(1, 3))[:, 2] <= 0):  # points behind the camera
            return 0, None
        T_query_world = np.eye(4)
        T_query_world[:3, :3], T_query_world[:3, 3] = R, tvec.ravel()
        T_world_query = invert(T_query_world)
        if not any(self._plausible(v.T_world_cam, T_world_query) for v in views):
            return 0, None
        return len(idx), T_world_query

    def _plausible(self, T_world_view: np.ndarray, T_world_query: np.ndarray) -> bool:  # noqa: N803
        """A ground robot's camera moves in the plane: between two of its views it turns about the vertical
        but hardly tilts, and keeps its height (the store's fixed frame has z up, as odom does). Aliased
        matches (a texture repeated in another room) often break this."""
        down_view, down_query = T_world_view[:3, 1], T_world_query[:3, 1]  # image-down axes
        tilt = math.degrees(math.acos(float(np.clip(down_view @ down_query, -1.0, 1.0))))
        height = abs(float(T_world_query[2, 3] - T_world_view[2, 3]))
        return tilt <= self.config.max_tilt_deg and height <= self.config.max_height_change_m

    def _features(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SIFT keypoints (N, 2) float32 and descriptors (N, 128) uint8, strongest first."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        keypoints, desc = self._sift.detectAndCompute(gray, None)
        if desc is None or not keypoints:
            return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
        order = np.argsort([-k.response for k in keypoints], kind="stable")[: self.config.max_features]
        uv = np.array([keypoints[i].pt for i in order], np.float32)
        return uv, np.clip(np.rint(desc[order]), 0, 255).astype(np.uint8)

    def _pose_gaps(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground-plane distance (m) and heading difference (rad) from camera pose `T` to every stored view
        (headings of the optical axes projected on the ground: the robot's cameras move in the plane)."""
        pos = np.stack([v.T_world_cam[:2, 3] for v in self._views])
        heading = np.array([_heading(v.T_world_cam) for v in self._views])
        dist = np.linalg.norm(pos - T[:2, 3], axis=1)
        turn = np.abs((heading - _heading(T) + math.pi) % (2 * math.pi) - math.pi)
        return dist, turn


def _graph(config: RefineConfig, views: Sequence[StoredView] = ()) -> ViewPoseGraph | None:
    """The loop-closure pose graph of `config` (None when off), holding `views` at their poses."""
    if not config.loop_every:
        return None
    if importlib.util.find_spec("gtsam") is None:
        raise ConfigError("refine.loop_every needs GTSAM's Python bindings (pip install gtsam), or 0")
    noise = LoopNoise(
        odom_m_per_sqrt_m=config.loop_odom_m_per_sqrt_m,
        odom_rad_per_sqrt_m=config.loop_odom_rad_per_sqrt_m,
        odom_rad_per_sqrt_rad=config.loop_odom_rad_per_sqrt_rad,
        loop_m=config.sigma_m,
        loop_rad=math.radians(config.sigma_yaw_deg),
    )
    graph = ViewPoseGraph(
        noise=noise,
        max_correction_m=config.loop_max_correction_m,
        max_correction_deg=config.loop_max_correction_deg,
        min_move_m=config.new_view_move_m,
        min_turn_deg=config.new_view_turn_deg,
        max_closures=config.loop_max_closures,
        max_chi2=config.loop_max_chi2,
    )
    for v in views:
        graph.add_view(v.view_id, v.stamp_ns, v.T_world_cam)
    return graph


def _view_name(view_id: int) -> str:
    """How reasons name a view: the current view (`LIVE_VIEW_ID`) or a stored one by its id."""
    return "the current view" if view_id == LIVE_VIEW_ID else f"view {view_id}"


def _apart_m(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two poses are on the floor (metres, x and y of the store's frame)."""
    return float(np.hypot(*(a[:2, 3] - b[:2, 3])))


def _searching(view: StoredView | None, search_ns: int | None) -> bool:
    """Whether `view` is the robot's own search (`RefineConfig.yield_ratio`): the current view, or a view
    stamped at or after `search_ns` (None: the rule is off)."""
    if view is None or search_ns is None:
        return False
    return view.view_id == LIVE_VIEW_ID or view.stamp_ns >= search_ns


def _moved(view: StoredView, estimate: np.ndarray, drift_from_ns: int) -> StoredView:
    """`view` at the planar pose `estimate` (its height, tilt and roll kept), its drift counted from
    `drift_from_ns`."""
    T = lift(planar(view.T_world_cam), estimate) @ view.T_world_cam
    return dataclasses.replace(view, T_world_cam=T, drift_from_ns=drift_from_ns)


def _detector(config: RefineConfig) -> cv2.SIFT:
    """The SIFT detector of the views and pictures."""
    return cv2.SIFT_create(nfeatures=config.max_features, contrastThreshold=config.sift_contrast)


def _guesses(T_world_query: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:  # noqa: N803
    """One 4x4 guess or a sequence of them, as a list."""
    if isinstance(T_world_query, np.ndarray) and T_world_query.shape == (4, 4):
        return [T_world_query]
    return list(T_world_query)


def _heading(T: np.ndarray) -> float:
    """Heading (rad) of a camera's optical axis projected on the ground plane."""
    return math.atan2(T[1, 2], T[0, 2])


# ---------------------------------------------------------------------------------------------- checks
def _check_rgb(rgb: object) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InvalidInputError(f"image must be (H, W, 3) uint8 RGB, got {got}")
    if min(rgb.shape[:2]) < 16:
        raise InvalidInputError(f"image is {rgb.shape[1]}x{rgb.shape[0]}: too small for local features")
    return rgb


def _check_depth(depth: object, size: tuple[int, ...]) -> np.ndarray:
    if not isinstance(depth, np.ndarray) or depth.shape != tuple(size) or depth.dtype.kind != "f":
        got = f"{depth.shape} {depth.dtype}" if isinstance(depth, np.ndarray) else type(depth).__name__
        raise InvalidInputError(f"depth must be float metres of the image's size {tuple(size)}, got {got}")
    return depth


def _check_K(K: object) -> np.ndarray:  # noqa: N802 - the usual name of the intrinsic matrix
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InvalidInputError(f"K must be a finite 3x3 intrinsic matrix with positive focal lengths: {K!r}")
    return K

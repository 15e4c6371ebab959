"""Recorded episodes, one step at a time: what the robot sensed and the ground truth behind it.

A `StepRecord` is the unit every simulated world produces (`Scene.step(t)` in `sim.recorder`) and every
episode format stores (the ROS 2 bag and the compact training arrays of `sim.dataset`). Everything is
validated on construction, so a malformed step never reaches a file. Poses are 4x4 float64 `T_a_b`,
timestamps int nanoseconds, images RGB uint8 `(H, W, 3)`, depth float32 metres `(H, W)` along the optical
axis. Large arrays are kept, not copied: a scene must hand over arrays it does not reuse.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import check_pose, invert
from spatial_memory.msgs.conversions import check_intrinsics

EPISODE_FORMAT_VERSION = 1
HEAD_CAMERA = "camera"  # the head (mobile robot) or exocentric (tabletop) camera
WRIST_CAMERA = "wrist_camera"
WORLD_FRAME, ODOM_FRAME, BASE_FRAME = "world", "odom", "base_link"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # one ROS name token: cameras become topic prefixes


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(f"{what} {name!r} must be a ROS name token (letters, digits, '_')")
    return name


def _check_rgb(rgb: np.ndarray, what: str) -> np.ndarray:
    """An RGB image as given: uint8 (H, W, 3), non-empty; no conversion (a wrong dtype is a bug upstream)."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        shape = getattr(rgb, "shape", None)
        raise InvalidInputError(f"{what} must be an RGB array of shape (H, W, 3), got shape {shape}")
    if rgb.dtype != np.uint8:
        raise InvalidInputError(f"{what} must be uint8, got {rgb.dtype} (convert explicitly)")
    return rgb


def _check_depth(depth: np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    """Depth as given: float32 metres (H, W) as the RGB image; NaN (no return) allowed, negatives not."""
    if not isinstance(depth, np.ndarray) or depth.shape != size:
        raise InvalidInputError(
            f"{what} must have the image's shape {size}, got {getattr(depth, 'shape', None)}"
        )
    if depth.dtype != np.float32:
        raise InvalidInputError(f"{what} must be float32 metres, got {depth.dtype} (convert explicitly)")
    if np.any(depth < 0):  # NaN compares False
        raise InvalidInputError(f"{what} has negative values (min {np.nanmin(depth)})")
    return depth


def _check_stamp(stamp_ns: int) -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
        raise InvalidInputError(f"stamp_ns must be a non-negative int (nanoseconds), got {stamp_ns!r}")
    return int(stamp_ns)


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalise a field of a frozen dataclass in __post_init__


@dataclass(frozen=True, eq=False)
class CameraFrame:
    """One camera's observation: RGB, metric depth, intrinsics and its ground-truth optical-frame pose."""

    name: str  # e.g. HEAD_CAMERA or WRIST_CAMERA; the topic prefix in a bag
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32, metres along the optical axis
    K: np.ndarray  # 3x3 pinhole matrix at this image size
    frame_id: str  # REP-103 optical frame, e.g. 'wrist_camera_optical_frame'
    T_world_cam: np.ndarray  # ground truth

    def __post_init__(self) -> None:
        _check_name(self.name, "camera name")
        what = f"camera {self.name!r}"
        _check_rgb(self.rgb, f"{what} rgb")
        _check_depth(self.depth, self.rgb.shape[:2], f"{what} depth")
        _set(self, "K", check_intrinsics(self.K, self.width, self.height, f"{what} K"))
        _set(self, "frame_id", _check_name(self.frame_id, f"{what} frame_id"))
        _set(self, "T_world_cam", check_pose(self.T_world_cam, f"{what} T_world_cam"))

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@dataclass(frozen=True, eq=False)
class OdometrySample:
    """The robot's own (noisy) estimate of its base pose in the odometry frame, and its velocity if known."""

    T_odom_base: np.ndarray
    twist: np.ndarray | None = None  # (vx, vy, vz, wx, wy, wz) in the base frame; None = not measured

    def __post_init__(self) -> None:
        _set(self, "T_odom_base", check_pose(self.T_odom_base, "T_odom_base"))
        if self.twist is not None:
            twist = np.asarray(self.twist, dtype=np.float64).reshape(-1)
            if twist.shape != (6,) or not np.all(np.isfinite(twist)):
                raise InvalidInputError(
                    f"twist must be 6 finite numbers, got {np.asarray(self.twist).tolist()}"
                )
            _set(self, "twist", twist)


@dataclass(frozen=True, eq=False)
class Query:
    """A query image and, as ground truth, where its camera is relative to the robot at this step.

    `T_base_query` is the query camera's optical frame in the robot's current base frame (what
    `/query_pose` answers); `seen` says whether that place was in the robot's view earlier in the episode.
    `StepRecord.T_cam_query` gives the same pose relative to one of the robot's cameras. `overlap` is the
    fraction of the query's pixels whose surface point an earlier frame saw (NaN where not measured) and
    `source_step` the earlier step the query was drawn near (-1 for none: an unseen place).
    """

    rgb: np.ndarray  # (H, W, 3) uint8
    T_base_query: np.ndarray
    seen: bool
    overlap: float = math.nan
    source_step: int = -1

    def __post_init__(self) -> None:
        _check_rgb(self.rgb, "query rgb")
        _set(self, "T_base_query", check_pose(self.T_base_query, "T_base_query"))
        if not isinstance(self.seen, (bool, np.bool_)):
            raise InvalidInputError(f"query 'seen' must be a bool, got {self.seen!r}")
        _set(self, "seen", bool(self.seen))
        overlap = float(self.overlap)
        if not (math.isnan(overlap) or 0.0 <= overlap <= 1.0):
            raise InvalidInputError(f"query overlap must be within [0, 1] or NaN, got {self.overlap!r}")
        _set(self, "overlap", overlap)
        step = self.source_step
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < -1:
            raise InvalidInputError(f"query source_step must be an int >= -1, got {step!r}")
        _set(self, "source_step", int(step))


@dataclass(frozen=True, eq=False)
class StepRecord:
    """Everything recorded at one instant: camera frames, joint states, base pose (true and odometry)."""

    stamp_ns: int
    cameras: tuple[CameraFrame, ...]
    joint_names: tuple[str, ...]
    joint_positions: np.ndarray  # (J,) float64, radians / metres
    T_world_base: np.ndarray  # ground truth
    odometry: OdometrySample
    query: Query | None = None

    def __post_init__(self) -> None:
        _set(self, "stamp_ns", _check_stamp(self.stamp_ns))
        cameras = tuple(self.cameras)
        if not cameras or not all(isinstance(c, CameraFrame) for c in cameras):
            raise InvalidInputError("a step needs at least one CameraFrame")
        for attr in ("name", "frame_id"):
            values = [getattr(c, attr) for c in cameras]
            if len(set(values)) != len(values):
                raise InvalidInputError(f"camera {attr}s must be unique in a step, got {values}")
        _set(self, "cameras", cameras)
        names = tuple(str(n) for n in self.joint_names)
        if len(set(names)) != len(names) or not all(names):
            raise InvalidInputError(f"joint names must be unique and non-empty, got {list(names)}")
        _set(self, "joint_names", names)
        q = np.asarray(self.joint_positions, dtype=np.float64).reshape(-1)
        if q.shape != (len(names),) or not np.all(np.isfinite(q)):
            raise InvalidInputError(
                f"joint_positions must be {len(names)} finite values (one per joint name), got {q.tolist()}"
            )
        _set(self, "joint_positions", q)
        _set(self, "T_world_base", check_pose(self.T_world_base, "T_world_base"))
        if not isinstance(self.odometry, OdometrySample):
            raise InvalidInputError("odometry must be an OdometrySample")
        if self.query is not None and not isinstance(self.query, Query):
            raise InvalidInputError("query must be a Query or None")

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraFrame:
        """The frame of camera `name`, or InvalidInputError listing the cameras of this step."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise InvalidInputError(f"no camera {name!r} in this step; it has {list(self.camera_names)}")

    def T_cam_query(self, camera: str = HEAD_CAMERA) -> np.ndarray:
        """Ground truth: the query camera's pose in camera `camera`'s optical frame at this step."""
        if self.query is None:
            raise InvalidInputError(f"step at {self.stamp_ns} ns has no query")
        T_world_cam = self.camera(camera).T_world_cam
        return invert(T_world_cam) @ self.T_world_base @ self.query.T_base_query


# ----------------------------------------------------------------------------------------------------
# Episode metadata
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CameraSpec:
    """A camera of the episode: image size, nominal intrinsics and, for a fixed camera, its static mount.

    A camera rigidly mounted in `parent_frame` (the world for an exocentric camera, base_link for a head
    camera, wrist_camera_link for the wrist camera's optical frame) has `T_parent_cam`; the bag writes it
    on /tf_static.
    """

    name: str
    frame_id: str
    width: int
    height: int
    K: np.ndarray
    parent_frame: str = ""
    T_parent_cam: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "camera name")
        _check_name(self.frame_id, f"camera {self.name!r} frame_id")
        _set(self, "K", check_intrinsics(self.K, self.width, self.height, f"camera {self.name!r} K"))
        _set(self, "width", int(self.width))
        _set(self, "height", int(self.height))
        if (self.T_parent_cam is None) != (not self.parent_frame):
            raise InvalidInputError(
                f"camera {self.name!r}: give both parent_frame and T_parent_cam, or neither"
            )
        if self.T_parent_cam is not None:
            _check_name(self.parent_frame, f"camera {self.name!r} parent_frame")
            _set(self, "T_parent_cam", check_pose(self.T_parent_cam, f"camera {self.name!r} T_parent_cam"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "frame_id": self.frame_id,
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "parent_frame": self.parent_frame,
            "T_parent_cam": None if self.T_parent_cam is None else self.T_parent_cam.tolist(),
        }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CameraSpec:
        T = data.get("T_parent_cam")
        return cls(
            name=data["name"],
            frame_id=data["frame_id"],
            width=data["width"],
            height=data["height"],
            K=np.array(data["K"], dtype=np.float64),
            parent_frame=data.get("parent_frame", ""),
            T_parent_cam=None if T is None else np.array(T, dtype=np.float64),
        )


@dataclass(frozen=True, eq=False)
class StaticTransform:
    """A fixed frame of the robot other than a camera mount (e.g. base_link -> the arm's root `base`),
    written on /tf_static so a replayed bag gives the whole tree."""

    parent: str
    child: str
    T_parent_child: np.ndarray

    def __post_init__(self) -> None:
        _check_name(self.parent, "static transform parent")
        _check_name(self.child, "static transform child")
        _set(self, "T_parent_child", check_pose(self.T_parent_child, f"{self.parent} -> {self.child}"))

    def to_dict(self) -> dict[str, Any]:
        return {"parent": self.parent, "child": self.child, "T_parent_child": self.T_parent_child.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StaticTransform:
        return cls(data["parent"], data["child"], np.array(data["T_parent_child"], dtype=np.float64))


def _json_dict(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON-serialisable deep copy of `value` (the metadata travels as JSON)."""
    try:
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"episode metadata {what} must be JSON-serialisable: {exc}") from exc


@dataclass(frozen=True, eq=False)
class EpisodeMetadata:
    """What an episode is: the world (seed and config), rates, cameras, joints, frames and noise settings."""

    scene: str  # e.g. 'tabletop'
    seed: int
    rate_hz: float  # step rate
    cameras: tuple[CameraSpec, ...]
    joint_names: tuple[str, ...]
    world: Mapping[str, Any] = field(default_factory=dict)  # the world's config as plain JSON values
    odometry_noise: Mapping[str, Any] = field(default_factory=dict)
    T_world_odom: np.ndarray = field(default_factory=lambda: np.eye(4))  # ground truth: odometry origin
    world_frame: str = WORLD_FRAME
    odom_frame: str = ODOM_FRAME
    base_frame: str = BASE_FRAME
    static_transforms: tuple[StaticTransform, ...] = ()  # fixed robot frames besides the camera mounts
    version: int = EPISODE_FORMAT_VERSION

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.rate_hz)) or self.rate_hz <= 0:
            raise InvalidInputError(f"rate_hz must be positive, got {self.rate_hz}")
        cameras = tuple(self.cameras)
        if not cameras or len({c.name for c in cameras}) != len(cameras):
            raise InvalidInputError("an episode needs at least one camera, with unique names")
        _set(self, "cameras", cameras)
        _set(self, "joint_names", tuple(str(n) for n in self.joint_names))
        _set(self, "world", _json_dict(self.world, "world"))
        _set(self, "odometry_noise", _json_dict(self.odometry_noise, "odometry_noise"))
        _set(self, "T_world_odom", check_pose(self.T_world_odom, "T_world_odom"))
        statics = tuple(self.static_transforms)
        if not all(isinstance(e, StaticTransform) for e in statics):
            raise InvalidInputError("static_transforms must be StaticTransform objects")
        _set(self, "static_transforms", statics)
        for name in ("world_frame", "odom_frame", "base_frame"):
            _check_name(getattr(self, name), name)
        if self.version != EPISODE_FORMAT_VERSION:
            raise InvalidInputError(
                f"episode format version {self.version} is not supported (this code reads "
                f"{EPISODE_FORMAT_VERSION})"
            )

    def camera(self, name: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise InvalidInputError(f"no camera {name!r} in the episode; it has {[c.name for c in self.cameras]}")

    def check_step(self, step: StepRecord) -> None:
        """InvalidInputError unless `step` has this episode's cameras (names, frames, sizes) and joints."""
        if step.camera_names != tuple(c.name for c in self.cameras):
            raise InvalidInputError(
                f"step at {step.stamp_ns} ns has cameras {list(step.camera_names)}, the episode "
                f"{[c.name for c in self.cameras]}"
            )
        for spec, cam in zip(self.cameras, step.cameras, strict=True):
            if (cam.width, cam.height, cam.frame_id) != (spec.width, spec.height, spec.frame_id):
                raise InvalidInputError(
                    f"camera {cam.name!r} at {step.stamp_ns} ns is {cam.width}x{cam.height} in "
                    f"{cam.frame_id!r}; the episode says {spec.width}x{spec.height} in {spec.frame_id!r}"
                )
        if step.joint_names != self.joint_names:
            raise InvalidInputError(
                f"step at {step.stamp_ns} ns has joints {list(step.joint_names)}, the episode "
                f"{list(self.joint_names)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "scene": self.scene,
            "seed": int(self.seed),
            "rate_hz": float(self.rate_hz),
            "cameras": [c.to_dict() for c in self.cameras],
            "joint_names": list(self.joint_names),
            "world": dict(self.world),
            "odometry_noise": dict(self.odometry_noise),
            "T_world_odom": self.T_world_odom.tolist(),
            "world_frame": self.world_frame,
            "odom_frame": self.odom_frame,
            "base_frame": self.base_frame,
            "static_transforms": [e.to_dict() for e in self.static_transforms],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpisodeMetadata:
        """The inverse of `to_dict`; a missing key or an unsupported version is an InvalidInputError."""
        try:
            return cls(
                scene=data["scene"],
                seed=int(data["seed"]),
                rate_hz=float(data["rate_hz"]),
                cameras=tuple(CameraSpec.from_dict(c) for c in data["cameras"]),
                joint_names=tuple(data["joint_names"]),
                world=data.get("world", {}),
                odometry_noise=data.get("odometry_noise", {}),
                T_world_odom=np.array(data["T_world_odom"], dtype=np.float64),
                world_frame=data.get("world_frame", WORLD_FRAME),
                odom_frame=data.get("odom_frame", ODOM_FRAME),
                base_frame=data.get("base_frame", BASE_FRAME),
                static_transforms=tuple(
                    StaticTransform.from_dict(e) for e in data.get("static_transforms", ())
                ),
                version=int(data["version"]),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"episode metadata is incomplete or malformed: {exc!r}") from exc

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> EpisodeMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"episode metadata is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


# ----------------------------------------------------------------------------------------------------
# Comparing steps (format round trips, tests)
# ----------------------------------------------------------------------------------------------------


def _diff_array(where: str, a: np.ndarray | None, b: np.ndarray | None, atol: float) -> list[str]:
    if a is None or b is None:
        return [] if a is None and b is None else [f"{where}: one is None"]
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return [f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"]
    same = np.array_equal(a, b, equal_nan=True) if atol == 0 else np.allclose(a, b, atol=atol, rtol=0)
    if same:
        return []
    error = np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))  # no uint8 wrap-around
    return [f"{where}: values differ (max abs {error:.3g})"]


def step_differences(a: StepRecord, b: StepRecord, *, pose_atol: float = 0.0) -> list[str]:
    """What differs between two steps (empty if equal): arrays exactly, poses to within `pose_atol`.

    A pose through a ROS message goes via a quaternion, so it comes back to ~1e-16, not bit-exact.
    """
    out: list[str] = []
    if a.stamp_ns != b.stamp_ns:
        out.append(f"stamp_ns: {a.stamp_ns} vs {b.stamp_ns}")
    if a.camera_names != b.camera_names:
        return [*out, f"cameras: {a.camera_names} vs {b.camera_names}"]
    for ca, cb in zip(a.cameras, b.cameras, strict=True):
        w = f"camera {ca.name}"
        if ca.frame_id != cb.frame_id:
            out.append(f"{w} frame_id: {ca.frame_id} vs {cb.frame_id}")
        out += _diff_array(f"{w} rgb", ca.rgb, cb.rgb, 0.0)
        out += _diff_array(f"{w} depth", ca.depth, cb.depth, 0.0)
        out += _diff_array(f"{w} K", ca.K, cb.K, 0.0)
        out += _diff_array(f"{w} T_world_cam", ca.T_world_cam, cb.T_world_cam, pose_atol)
    if a.joint_names != b.joint_names:
        out.append(f"joint_names: {a.joint_names} vs {b.joint_names}")
    out += _diff_array("joint_positions", a.joint_positions, b.joint_positions, 0.0)
    out += _diff_array("T_world_base", a.T_world_base, b.T_world_base, pose_atol)
    out += _diff_array("T_odom_base", a.odometry.T_odom_base, b.odometry.T_odom_base, pose_atol)
    out += _diff_array("twist", a.odometry.twist, b.odometry.twist, 0.0)
    if (a.query is None) != (b.query is None):
        out.append("query: present in one step only")
    elif a.query is not None and b.query is not None:
        out += _diff_array("query rgb", a.query.rgb, b.query.rgb, 0.0)
        out += _diff_array("query T_base_query", a.query.T_base_query, b.query.T_base_query, pose_atol)
        if a.query.seen != b.query.seen:
            out.append(f"query seen: {a.query.seen} vs {b.query.seen}")
    return out


# ----------------------------------------------------------------------------------------------------
# A synthetic episode (tests, benchmarks): no renderer needed
# ----------------------------------------------------------------------------------------------------


def synthetic_episode(
    num_steps: int,
    width: int = 64,
    height: int = 48,
    *,
    seed: int = 0,
    query_every: int = 5,
    rate_hz: float = 15.0,
) -> tuple[EpisodeMetadata, list[StepRecord]]:
    """A random but valid two-camera episode: noise images, ramp depth, a head camera circling a base.

    Good for format tests and I/O benchmarks (random pixels do not compress, as real ones partly do).
    """
    rng = np.random.default_rng(seed)
    f = 0.8 * width
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    T_base_head = np.eye(4)
    T_base_head[:3, :3] = np.array(
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
    )  # optical, looking +x
    T_base_head[:3, 3] = (0.1, 0.0, 1.2)
    joints = tuple(f"fr3_joint{i}" for i in range(1, 8))
    metadata = EpisodeMetadata(
        scene="synthetic",
        seed=seed,
        rate_hz=rate_hz,
        cameras=(
            CameraSpec(HEAD_CAMERA, "camera_optical_frame", width, height, K, BASE_FRAME, T_base_head),
            CameraSpec(WRIST_CAMERA, "wrist_camera_optical_frame", width, height, K),
        ),
        joint_names=joints,
        world={"kind": "synthetic", "seed": seed},
    )
    depth_ramp = np.linspace(0.5, 4.0, width * height, dtype=np.float32).reshape(height, width)
    steps = []
    for t in range(num_steps):
        yaw = 0.05 * t
        T_world_base = np.eye(4)
        T_world_base[:3, :3] = Rotation.from_euler("z", yaw).as_matrix()
        T_world_base[:2, 3] = (np.cos(yaw), np.sin(yaw))
        T_world_wrist = T_world_base @ _random_pose(rng)

        def frame(name: str, frame_id: str, T_world_cam: np.ndarray) -> CameraFrame:
            rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            depth = depth_ramp + rng.random((height, width), dtype=np.float32)
            return CameraFrame(name, rgb, depth, K, frame_id, T_world_cam)

        query = None
        if query_every and t % query_every == query_every - 1:
            rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            query = Query(rgb=rgb, T_base_query=_random_pose(rng), seen=bool(rng.integers(2)))
        steps.append(
            StepRecord(
                stamp_ns=round(t * 1e9 / rate_hz) + 1_000_000_000,
                cameras=(
                    frame(HEAD_CAMERA, "camera_optical_frame", T_world_base @ T_base_head),
                    frame(WRIST_CAMERA, "wrist_camera_optical_frame", T_world_wrist),
                ),
                joint_names=joints,
                joint_positions=rng.uniform(-1.0, 1.0, len(joints)),
                T_world_base=T_world_base,
                odometry=OdometrySample(
                    T_odom_base=T_world_base @ _random_pose(rng, 0.01), twist=rng.normal(size=6)
                ),
                query=query,
            )
        )
    return metadata, steps


def _random_pose(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A random rigid transform (rotation up to `scale` rad per axis, translation up to `scale` m)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rng.uniform(-scale, scale, 3)).as_matrix()
    T[:3, 3] = rng.uniform(-scale, scale, 3)
    return T

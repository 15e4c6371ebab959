"""Configs of the ROS nodes: frozen dataclasses composed of the component configs, every field defaulted.

These are the nodes' ROS parameters (`spatial_memory.ros.params` declares them from `flatten(Config())`)
and what `config/robot.yaml` sets. Topic names are not parameters: they are relative and remapped in the
launch file. Field types are ROS-parameter friendly (bool, int, float, str, tuples of one of those; nested
dataclasses become dotted names such as `context.map.size_px`). Pure: no rclpy here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spatial_memory.config import check_finite
from spatial_memory.context.config import ContextConfig
from spatial_memory.errors import ConfigError
from spatial_memory.memory.engine_config import EngineConfig, resolve_checkpoint
from spatial_memory.memory.refine import RefineConfig
from spatial_memory.msgs import topics
from spatial_memory.policy.scripted import ScriptedPolicyConfig
from spatial_memory.policy.vlm import VLMConfig
from spatial_memory.robot.description import CameraMount
from spatial_memory.robot.fk_publisher import TfThrottle
from spatial_memory.sim import mobile_robot
from spatial_memory.sim.goal_follower import GoalFollowerConfig
from spatial_memory.sim.live import LiveSimConfig
from spatial_memory.sim.presets import PLANNING_RADIUS_M
from spatial_memory.vo.odometry import VisualOdometryConfig


def _help(text: str) -> dict[str, str]:
    """Field metadata carrying the ROS parameter description."""
    return {"help": text}


def _triple(value: tuple[float, ...], name: str) -> tuple[float, float, float]:
    """Three finite floats or ConfigError."""
    out = tuple(float(v) for v in value)
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name} must be three finite numbers, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class FkNodeConfig:
    """fk_node: TF for every FR3 link and camera frame from forward kinematics of `joint_states`."""

    base_parent_frame: str = field(
        default=topics.BASE_LINK_FRAME,
        metadata=_help("frame the arm's root link 'base' is attached to by a static TF; '' = none"),
    )
    base_xyz: tuple[float, float, float] = field(
        default=(0.0, 0.0, 0.0), metadata=_help("position (m) of 'base' in base_parent_frame")
    )
    base_rpy: tuple[float, float, float] = field(
        default=(0.0, 0.0, 0.0), metadata=_help("roll, pitch, yaw (rad) of 'base' in base_parent_frame")
    )
    ee_frame: str = field(
        default=topics.EE_FRAME, metadata=_help("link whose pose is published on fk/ee_pose")
    )
    clamp_joints: bool = field(
        default=False,
        metadata=_help("clamp out-of-limit joint positions instead of rejecting the message"),
    )
    publish_robot_description: bool = field(
        default=True, metadata=_help("publish the URDF on robot_description (TRANSIENT_LOCAL) for RViz")
    )
    tf_rate_hz: float = field(
        default=50.0,
        metadata=_help(
            "most /tf (and fk/ee_pose) publications per second of joint_states stamps while the arm moves; "
            "0 = every joint state (no throttling)"
        ),
    )
    keepalive_rate_hz: float = field(
        default=25.0,
        metadata=_help(
            "an arm at rest is re-published (same transforms, new stamp, no FK) this often; TF lookups at "
            "image stamps need a sample at or after the stamp, so keep 1/keepalive_rate_hz <= the "
            "consumers' tf_timeout_s (minus transport); in (0, tf_rate_hz]"
        ),
    )
    move_tolerance_rad: float = field(
        default=1e-4,
        metadata=_help("the arm moved when any joint changed more than this (rad) since the last FK"),
    )
    mobile_base_radius_m: float = field(
        default=0.0,
        metadata=_help(
            "draw the mobile base in robot_description (RViz) as a cylinder of this radius under the arm, "
            "on base_parent_frame (or base_link); 0 = no base drawn"
        ),
    )
    mobile_base_height_m: float = field(
        default=0.35, metadata=_help("top of the drawn mobile base above its frame (m)")
    )
    mobile_base_clearance_m: float = field(
        default=0.02, metadata=_help("bottom of the drawn mobile base above its frame (m)")
    )
    camera: CameraMount = field(default_factory=CameraMount)

    def __post_init__(self) -> None:
        r, h, c = self.mobile_base_radius_m, self.mobile_base_height_m, self.mobile_base_clearance_m
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (r, h, c)
        ):
            raise ConfigError(f"mobile_base_* must be finite numbers, got {r!r}, {h!r}, {c!r}")
        if r < 0 or not 0 <= c < h:
            raise ConfigError(f"mobile base: need radius >= 0 and 0 <= clearance < height, got {r}, {c}, {h}")
        object.__setattr__(self, "base_xyz", _triple(self.base_xyz, "base_xyz"))
        object.__setattr__(self, "base_rpy", _triple(self.base_rpy, "base_rpy"))
        if not self.ee_frame:
            raise ConfigError("ee_frame must be a non-empty frame name")
        if self.base_parent_frame == topics.ARM_ROOT_FRAME:
            raise ConfigError(
                f"base_parent_frame cannot be the arm's own root frame {topics.ARM_ROOT_FRAME!r}"
            )
        TfThrottle(self.tf_rate_hz, self.keepalive_rate_hz, self.move_tolerance_rad)  # ConfigError if bad


@dataclass(frozen=True)
class StateFileConfig:
    """Where a node keeps its saved state (its `save` / `load` / `reset` services use `path` when a request
    names no file) and whether it loads it at startup and saves it at shutdown. A state loaded at startup
    continues where the robot stands: it assumes the robot is where the state was saved (see README,
    "Saving and loading the memory")."""

    path: str = field(
        default="",
        metadata=_help("state file for save/load requests that name none ('~' expands); '' = none"),
    )
    load_on_start: bool = field(
        default=False,
        metadata=_help("load `path` at startup, the robot where it was saved (no file yet: start empty)"),
    )
    save_on_shutdown: bool = field(
        default=False, metadata=_help("save to `path` when the node shuts down (Ctrl-C, the launch stopping)")
    )

    def __post_init__(self) -> None:
        if (self.load_on_start or self.save_on_shutdown) and not self.path:
            raise ConfigError("state.load_on_start and state.save_on_shutdown need a state.path")

    @property
    def file(self) -> str:
        """`path` with '~' expanded ('' when none)."""
        return str(Path(self.path).expanduser()) if self.path else ""


@dataclass(frozen=True)
class SpatialContextNodeConfig:
    """spatial_context_node: adds camera frames with their poses to a SpatialContext and publishes the map.

    Stationary mode: the camera pose comes from FK of the latest `joint_states` (the arm's root frame is
    the world, `world_frame` = 'base'). Mobile mode: the camera pose is looked up in TF,
    `world_frame` (e.g. 'odom') -> `context.camera_frame` at the image stamp, and the body pose
    `world_frame` -> `base_frame` is stored next to it.
    """

    mode: str = field(
        default="stationary", metadata=_help("'stationary' (pose by FK) or 'mobile' (pose by TF)")
    )
    world_frame: str = field(
        default=topics.ARM_ROOT_FRAME,
        metadata=_help("frame the poses, markers and keyframes are expressed in ('base' or e.g. 'odom')"),
    )
    base_frame: str = field(
        default=topics.BASE_LINK_FRAME, metadata=_help("mobile mode: the robot body frame looked up in TF")
    )
    frame_rate_hz: float = field(
        default=5.0, metadata=_help("at most this many camera frames per second are added")
    )
    map_rate_hz: float = field(default=1.0, metadata=_help("rate of the BEV map / markers / keyframe images"))
    tf_timeout_s: float = field(
        default=1.0,
        metadata=_help("mobile mode: how long an image may wait (parked, not blocking) for TF at its stamp"),
    )
    max_joint_state_age_s: float = field(
        default=0.5,
        metadata=_help(
            "stationary mode: skip an image whose stamp is this far from the latest joint state; 0 = off"
        ),
    )
    keyframe_tile_height: int = field(
        default=240, metadata=_help("height (px) of each keyframe in the tiled keyframe_images image")
    )
    keyframe_tile_columns: int = field(default=4, metadata=_help("keyframes per row in keyframe_images"))
    marker_scale: float = field(default=1.0, metadata=_help("size multiplier of the RViz keyframe markers"))
    memory_query_timeout_s: float = field(
        default=2.0, metadata=_help("/query_pose: how long to wait for memory_node's answer")
    )
    camera: CameraMount = field(default_factory=CameraMount)
    context: ContextConfig = field(default_factory=ContextConfig)
    state: StateFileConfig = field(
        default_factory=lambda: StateFileConfig(path="~/.ros/spatial_memory/spatial_context.state")
    )

    @property
    def map_frame(self) -> str:
        """The frame the egocentric map is drawn around: the robot body (mobile) or the arm's root."""
        return self.base_frame if self.mode == "mobile" else self.world_frame

    def __post_init__(self) -> None:
        if self.mode not in topics.MODES:
            raise ConfigError(f"mode must be one of {topics.MODES}, got {self.mode!r}")
        for name in ("world_frame", "base_frame"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty frame name")
        check_finite(
            self, ("frame_rate_hz", "map_rate_hz", "tf_timeout_s", "marker_scale", "memory_query_timeout_s")
        )
        check_finite(self, ("max_joint_state_age_s",), inclusive=True)
        if not 16 <= self.keyframe_tile_height <= 2048:
            raise ConfigError(f"keyframe_tile_height must be in 16..2048, got {self.keyframe_tile_height}")
        if self.keyframe_tile_columns < 1:
            raise ConfigError(f"keyframe_tile_columns must be >= 1, got {self.keyframe_tile_columns}")
        if self.mode == "stationary" and self.world_frame != topics.ARM_ROOT_FRAME:
            raise ConfigError(
                f"stationary mode computes poses by FK in the arm's root frame, so world_frame must be "
                f"{topics.ARM_ROOT_FRAME!r}, got {self.world_frame!r}"
            )


@dataclass(frozen=True)
class SimNodeConfig:
    """sim_node: the live MuJoCo simulation (`sim.live.LiveSim`) published as a robot on a simulated /clock.

    TF it publishes: `odom_frame` -> `base_frame` from the wheel odometry (/tf, unless `publish_odom_tf` is
    off, e.g. when a visual odometry node publishes it instead); on /tf_static `world_frame` -> `odom_frame`
    (the odometry's origin: the true start pose) and the fixed mounts on the base (`base_frame` -> the FR3's
    `base` and the head camera). The arm's own TF comes from fk_node fed by our `joint_states`.
    """

    real_time_factor: float = field(
        default=1.0, metadata=_help("sim seconds per wall second (the sim slows down if it cannot keep up)")
    )
    world_frame: str = field(
        default=topics.WORLD_FRAME, metadata=_help("frame of the ground truth and parent of odom_frame")
    )
    odom_frame: str = field(default=topics.ODOM_FRAME, metadata=_help("wheel odometry frame (REP-105)"))
    base_frame: str = field(default=topics.BASE_LINK_FRAME, metadata=_help("robot body frame (REP-105)"))
    publish_odom_tf: bool = field(
        default=True, metadata=_help("publish odom_frame -> base_frame on /tf from the wheel odometry")
    )
    sim: LiveSimConfig = field(default_factory=LiveSimConfig)

    def __post_init__(self) -> None:
        if not 1e-3 <= self.real_time_factor <= 100.0:
            raise ConfigError(f"real_time_factor must be within [0.001, 100], got {self.real_time_factor!r}")
        names = {n: getattr(self, n) for n in ("world_frame", "odom_frame", "base_frame")}
        for name, value in names.items():
            if not value:
                raise ConfigError(f"{name} must be a non-empty frame name")
        if len(set(names.values())) != len(names):
            raise ConfigError(f"world_frame, odom_frame and base_frame must differ, got {names}")
        fixed = {mobile_robot.ARM_ROOT, mobile_robot.HEAD_CAMERA_LINK, mobile_robot.HEAD_OPTICAL_FRAME}
        fixed |= {mobile_robot.WRIST_OPTICAL_FRAME}
        clash = sorted(fixed & set(names.values()))
        if clash:
            raise ConfigError(f"frame names {clash} are the robot's own links; choose others")


@dataclass(frozen=True)
class MemoryNodeConfig:
    """memory_node: folds camera images with the base pose from TF into a MemoryEngine; serves memory/query.

    The base pose is TF `world_frame` -> `base_frame` at each image's stamp (odom -> base_link by default:
    the memory needs only relative motion, which odometry gives without jumps). Images enter at most
    `update_rate_hz`: the memory is trained at a fixed step rate (5 Hz in the datasets), and its odometry
    increments are per step, so feed it at the rate it was trained at.
    """

    world_frame: str = field(
        default=topics.ODOM_FRAME, metadata=_help("fixed frame the base pose is looked up in (e.g. 'odom')")
    )
    base_frame: str = field(default=topics.BASE_LINK_FRAME, metadata=_help("the robot body frame"))
    update_rate_hz: float = field(
        default=5.0, metadata=_help("at most this many images per second are folded into the memory")
    )
    status_rate_hz: float = field(default=1.0, metadata=_help("rate of memory/status (JSON)"))
    tf_timeout_s: float = field(
        default=1.0, metadata=_help("how long an image may wait (parked, not blocking) for TF at its stamp")
    )
    serve_keyframes: bool = field(
        default=True,
        metadata=_help("also answer backend 'keyframes' (retrieval, same encoder; state grows per frame)"),
    )
    depth_sync_s: float = field(
        default=0.02, metadata=_help("a depth image belongs to the colour image stamped within this (s)")
    )
    engine: EngineConfig = field(default_factory=EngineConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    state: StateFileConfig = field(
        default_factory=lambda: StateFileConfig(path="~/.ros/spatial_memory/memory.pt")
    )

    def __post_init__(self) -> None:
        for name in ("world_frame", "base_frame"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty frame name")
        if self.world_frame == self.base_frame:
            raise ConfigError(f"world_frame and base_frame must differ, got {self.world_frame!r} twice")
        check_finite(self, ("update_rate_hz", "status_rate_hz", "tf_timeout_s", "depth_sync_s"))


@dataclass(frozen=True)
class VoNodeConfig:
    """vo_node: the patch VO on the robot's camera as base odometry (`vo.odometry.VisualOdometry`).

    The camera's mount comes from TF (`base_frame` -> the image's frame, looked up once: a body-mounted
    camera) and so does the arm's root in the camera frame for the arm mask (`arm_root_frame`). The
    output chain starts at the identity, or at the wheel odometry's pose when `use_wheel_odometry` is on;
    then the wheel odometry also bridges the frames VO loses.
    """

    odom_frame: str = field(
        default=topics.ODOM_FRAME, metadata=_help("frame of vo/odometry and the TF parent")
    )
    base_frame: str = field(default=topics.BASE_LINK_FRAME, metadata=_help("robot body frame (TF child)"))
    camera_frame: str = field(
        default="", metadata=_help("the camera's optical frame; '' = the image header's frame_id")
    )
    arm_root_frame: str = field(
        default=topics.ARM_ROOT_FRAME, metadata=_help("the FR3's root link, for the arm mask (TF)")
    )
    publish_tf: bool = field(default=True, metadata=_help("publish odom_frame -> base_frame on /tf"))
    use_wheel_odometry: bool = field(
        default=True,
        metadata=_help(
            "read wheel odometry (topic 'odom') when the base publishes it: start the chain at its pose, the"
            " first motion hypothesis and a BA term (what keeps a turn in place right), bridge lost frames"
        ),
    )
    depth_max_dt_s: float = field(
        default=0.02, metadata=_help("a depth image pairs with the colour image this close in time")
    )
    depth_wait_s: float = field(
        default=0.05, metadata=_help("how long a colour image waits for its depth image to arrive")
    )
    joint_state_max_dt_s: float = field(
        default=0.1, metadata=_help("no arm mask for an image without a joint state this close in time")
    )
    wheel_max_dt_s: float = field(
        default=0.1, metadata=_help("a wheel odometry pose counts for an image this close in time")
    )
    tf_timeout_s: float = field(default=0.1, metadata=_help("how long to wait for the camera's mount in TF"))
    path_length: int = field(default=1000, metadata=_help("poses kept in vo/path (the newest); 0 = no path"))
    path_rate_hz: float = field(default=1.0, metadata=_help("rate of vo/path"))
    status_rate_hz: float = field(default=1.0, metadata=_help("rate of vo/status (JSON)"))
    odometry: VisualOdometryConfig = field(default_factory=VisualOdometryConfig)

    def __post_init__(self) -> None:
        frames = {n: getattr(self, n) for n in ("odom_frame", "base_frame", "arm_root_frame")}
        for name, value in frames.items():
            if not value:
                raise ConfigError(f"{name} must be a non-empty frame name")
        if self.odom_frame == self.base_frame:
            raise ConfigError(f"odom_frame and base_frame must differ, got {self.odom_frame!r} twice")
        waits = ("depth_max_dt_s", "depth_wait_s", "joint_state_max_dt_s", "wheel_max_dt_s", "tf_timeout_s")
        check_finite(self, waits, inclusive=True)
        check_finite(self, ("path_rate_hz", "status_rate_hz"))
        if self.path_length < 0:
            raise ConfigError(f"path_length must be >= 0, got {self.path_length}")


POLICIES = ("scripted", "vlm")


@dataclass(frozen=True)
class PolicyNodeConfig:
    """policy_node: the 1 Hz high-level policy (`policy.ScriptedPolicy`, or `policy.VLMPolicy` with the
    scripted one as its fallback) reading the map, keyframes and camera, asking the memory, sending goals.

    Goals go out on `goal_pose` in `goal_frame` (nav2 plans in it); the memory's answers are relative to
    the base, so TF `odom_frame` -> `base_frame` carries them from the answer's stamp to now.
    """

    rate_hz: float = field(default=1.0, metadata=_help("decisions per second (MemER's high level: ~1 Hz)"))
    policy: str = field(default="scripted", metadata=_help("'scripted' or 'vlm' (falls back to scripted)"))
    backend: str = field(
        default="", metadata=_help("memory backend a go-to-picture goal asks ('' = memory_node's default)")
    )
    odom_frame: str = field(default=topics.ODOM_FRAME, metadata=_help("odometry frame (answers move in it)"))
    base_frame: str = field(default=topics.BASE_LINK_FRAME, metadata=_help("the robot body frame"))
    goal_frame: str = field(default=topics.ODOM_FRAME, metadata=_help("frame of the published goal_pose"))
    recent_frames: int = field(default=8, metadata=_help("camera frames kept, one per tick (MemER's window)"))
    query_timeout_s: float = field(
        default=3.0, metadata=_help("a /query_pose call older than this is dropped")
    )
    tf_timeout_s: float = field(default=0.1, metadata=_help("how long to wait for TF"))
    promote_keyframes: bool = field(default=True, metadata=_help("call /promote_keyframe for nominations"))
    scripted: ScriptedPolicyConfig = field(default_factory=ScriptedPolicyConfig)
    vlm: VLMConfig = field(default_factory=VLMConfig)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        for name in ("odom_frame", "base_frame", "goal_frame"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty frame name")
        for name in ("rate_hz", "query_timeout_s", "tf_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
        if (
            isinstance(self.recent_frames, bool)
            or not isinstance(self.recent_frames, int)
            or self.recent_frames < 1
        ):
            raise ConfigError(f"recent_frames must be a positive integer, got {self.recent_frames!r}")


@dataclass(frozen=True)
class GoalFollowerNodeConfig:
    """goal_follower_node: drives `cmd_vel` to `goal_pose` on the `map` grid (simulation; nav2 on a robot).

    It localises with `ground_truth/base_pose` (the simulator's truth, as nav2 with a good localisation
    would); goals in another frame are carried into the map's frame through TF.
    """

    rate_hz: float = field(default=10.0, metadata=_help("velocity commands per second"))
    robot_radius_m: float = field(
        default=PLANNING_RADIUS_M,
        metadata=_help("the map is inflated by this: the base (0.3 m), the arm's reach, a controller margin"),
    )
    status_rate_hz: float = field(default=1.0, metadata=_help("rate of goal_follower/status (JSON)"))
    tf_timeout_s: float = field(default=0.1, metadata=_help("how long to wait for TF"))
    follower: GoalFollowerConfig = field(default_factory=GoalFollowerConfig)

    def __post_init__(self) -> None:
        for name in ("rate_hz", "status_rate_hz", "tf_timeout_s", "robot_radius_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def configured_memory_checkpoint(params_file: str | Path, override: str = "") -> str:
    """The checkpoint memory_node would load: `override` (a launch argument) or the parameter file's
    `memory_node.ros__parameters.engine.checkpoint`; '' when neither names one. Launch files use it to
    start memory_node only when there is a checkpoint to load."""
    if override:
        return resolve_checkpoint(override)
    try:
        doc = yaml.safe_load(Path(params_file).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    params = (doc.get(topics.MEMORY_NODE) or {}).get("ros__parameters") or {}
    engine = params.get("engine") or {}
    value = engine.get("checkpoint", params.get("engine.checkpoint", "")) if isinstance(engine, dict) else ""
    return resolve_checkpoint(value) if isinstance(value, str) else ""


def memory_node_launch(use: str, params_file: str | Path, override: str = "") -> tuple[str, str]:
    """What a launch file does about memory_node: (checkpoint to start it with, '') or ('', why not).

    `use` is the launch argument: 'true' always starts it (a missing checkpoint then stops the node with a
    clear error), 'false' never, 'auto' only when the checkpoint (`override`, else the parameter file's
    engine.checkpoint) is an existing file.
    """
    checkpoint = configured_memory_checkpoint(params_file, override)
    if use == "false":
        why = "use_memory:=false"
    elif use == "auto" and not (checkpoint and Path(checkpoint).is_file()):
        why = f"no checkpoint file ({checkpoint or 'none given'!r})"
    else:
        return checkpoint, ""
    return "", (
        f"memory_node not started: {why}; /query_pose will answer success=false. "
        "Start it with memory_checkpoint:=/path/to/model.pt"
    )


def missing_ros_package(package: str, apt_name: str = "") -> str:
    """'' when ROS package `package` is installed (ament index), else one line saying what to install.

    Launch files call it before starting an optional tool (RViz): a missing package used to fail the
    launch after our nodes had started, leaving them running as orphans.
    """
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return f"{package} not found: ament_index_python is missing (is ROS 2 sourced?)"
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        apt = apt_name or f"ros-$ROS_DISTRO-{package.replace('_', '-')}"
        return f"{package} is not installed (sudo apt install {apt}); not starting it"
    return ""

"""The mobile FR3: a kinematic planar base carrying the arm, a head and a wrist RGB-D camera, in MuJoCo.

`add_mobile_fr3(spec, config)` puts the robot into any world spec (a generated `build_world_spec` world or
`box_room_spec`); `MobileFR3Sim` compiles it, drives the base with unicycle velocity commands (refusing moves
into obstacles), moves the arm, renders both cameras and reports ground truth. `render_view` renders the world
from any pose through a world-fixed `query_camera` (query images with ground truth, see `sim/queries.py`);
the robot's visible geoms live in geom group `ROBOT_GEOM_GROUP` so such views can leave the robot out.

Frames (REP-103/105): `base_link` lies on the floor under the centre of the base, x forward, z up; the FR3's
own root `base` sits on top of the base (`T_base_arm`); the head camera (the exocentric camera visual
odometry uses) sits on a mast behind the arm, looking forward and slightly down so the arm is sometimes in
view. Camera poses are REP-103 optical frames (`*_optical_frame`, z forward, x right, y down).

Why planar joints and not a mocap body: the base pose is exactly the three joint values (x, y, yaw), with no
quaternion in the state, MuJoCo computes every pose below it in one `mj_kinematics`, and contacts of the base
geoms are found by the ordinary collision pipeline (mocap bodies are welded to the world, so they report no
contacts with it and, like joints, would still need an explicit check). The joints also leave the door open
to a dynamic base (velocity actuators) later.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import mujoco
import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import (
    check_pose,
    finite_float,
    make_pose,
    matrix_to_quat_xyzw,
    pose_from_xyz_rpy,
    quat_xyzw_to_wxyz,
    wrap_angle,
)
from spatial_memory.robot.description import MJ_CAMERA, OPTICAL_FRAME, CameraMount, load_mjspec
from spatial_memory.robot.kinematics import FR3Kinematics

log = logging.getLogger(__name__)

BASE_LINK = "base_link"
BASE_JOINTS = ("base_x", "base_y", "base_yaw")
BASE_GEOM = "base_link_body"
MAST_GEOM = "base_link_mast"
ARM_ROOT = "base"  # the FR3's root body (from the URDF)
HEAD_CAMERA = "head_camera"
HEAD_CAMERA_LINK = "head_camera_link"
HEAD_OPTICAL_FRAME = "head_camera_optical_frame"
WRIST_CAMERA = MJ_CAMERA
WRIST_OPTICAL_FRAME = OPTICAL_FRAME
CAMERAS = (HEAD_CAMERA, WRIST_CAMERA)
QUERY_CAMERA = "query_camera"  # world-fixed; `render_view` places it per render (not a robot camera)
# The robot's visible geoms: a group MuJoCo shows by default (robot cameras render as before) that world
# scenes leave unused, so `render_view(hide_robot=True)` can switch exactly the robot off.
ROBOT_GEOM_GROUP = 2
_HIDDEN_GROUP_MIN = 3  # groups 3..5 are hidden by default (the FR3's collision geoms are in group 3)
OPTICAL_FRAMES = {HEAD_CAMERA: HEAD_OPTICAL_FRAME, WRIST_CAMERA: WRIST_OPTICAL_FRAME}

_ATTACH_PREFIX = "fr3_attach/"  # attached with a prefix (an empty one makes MuJoCo warn), then stripped
# A camera link (x forward, z up) to its optical frame: the URDF's rpy (-pi/2, 0, -pi/2).
_T_LINK_OPTICAL = pose_from_xyz_rpy((0.0, 0.0, 0.0), (-math.pi / 2, 0.0, -math.pi / 2))
# MuJoCo cameras look along -z with +y up; REP-103 optical frames look along +z with +y down.
_MJ_CAM_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])
_GEOMETRY_TOL = 1e-6  # m / rad: a compiled model must match its config this closely
_MAX_DT_S = 1.0


def _wxyz(R: np.ndarray) -> list[float]:
    """MuJoCo (w, x, y, z) quaternion of a rotation matrix, through geometry.py's one conversion."""
    return quat_xyzw_to_wxyz(matrix_to_quat_xyzw(R)).tolist()


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class CameraConfig:
    """One RGB-D camera: image size (pixels), vertical field of view (deg) and frame rate (Hz)."""

    width: int = 320
    height: int = 240
    fovy_deg: float = 58.0
    rate_hz: float = 15.0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096:
                raise ConfigError(f"camera {name} must be an integer within 16..4096 pixels, got {value!r}")
        if not (isinstance(self.fovy_deg, (int, float)) and 10.0 < self.fovy_deg < 170.0):
            raise ConfigError(f"camera fovy_deg must be within (10, 170) degrees, got {self.fovy_deg!r}")
        if not (isinstance(self.rate_hz, (int, float)) and 0.0 < self.rate_hz <= 1000.0):
            raise ConfigError(f"camera rate_hz must be within (0, 1000] Hz, got {self.rate_hz!r}")

    def intrinsics(self) -> np.ndarray:
        """Pinhole K of MuJoCo's render (square pixels, pixel centres at integer coordinates)."""
        f = 0.5 * self.height / math.tan(0.5 * math.radians(self.fovy_deg))
        return np.array(
            [[f, 0.0, (self.width - 1) / 2.0], [0.0, f, (self.height - 1) / 2.0], [0.0, 0.0, 1.0]]
        )


def _triple(value: object, name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be numbers, got {value!r}") from exc
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return out


@dataclass(frozen=True)
class MobileRobotConfig:
    """Geometry, cameras and limits of the mobile FR3. Lengths in metres, angles in radians.

    `head_camera_xyz`/`_rpy` place `head_camera_link` (x forward, z up, URDF-style fixed-axis rpy; a
    positive pitch looks down) in `base_link`; the mast under it stands on the base.
    """

    footprint_radius_m: float = 0.3  # the base is a cylinder; match WorldConfig.robot_radius_m
    base_height_m: float = 0.35  # top of the base, where the FR3 `base` stands
    ground_clearance_m: float = 0.02  # the collision cylinder starts this high (floors never touch it)
    arm_mount_xy: tuple[float, float] = (0.12, 0.0)  # the FR3 `base` on top of the base, in base_link
    head_camera_xyz: tuple[float, float, float] = (-0.2, 0.0, 1.45)
    head_camera_rpy: tuple[float, float, float] = (0.0, 0.3, 0.0)
    head_camera: CameraConfig = CameraConfig(width=320, height=240, fovy_deg=60.0, rate_hz=15.0)
    wrist_camera: CameraConfig = CameraConfig(width=320, height=240, fovy_deg=58.0, rate_hz=15.0)
    wrist_mount: CameraMount = CameraMount()
    max_linear_speed: float = 0.5  # m/s
    max_angular_speed: float = 1.0  # rad/s
    max_joint_speed: float = 1.0  # rad/s per arm joint, when stepping towards a joint target
    max_substep_m: float = 0.02  # collision checks at least this often along a move...
    max_substep_rad: float = 0.05  # ...and this often along a turn
    contact_check: bool = (
        True  # refuse moves that make the base or mast penetrate the world (MuJoCo contacts)
    )
    arm_contact_check: bool = True  # ...or the arm's collision geoms (the arm then stops where it is)
    near_clip_m: float = 0.02  # near clipping plane of every camera

    def __post_init__(self) -> None:
        object.__setattr__(self, "arm_mount_xy", _triple(self.arm_mount_xy, "arm_mount_xy"))
        object.__setattr__(self, "head_camera_xyz", _triple(self.head_camera_xyz, "head_camera_xyz"))
        object.__setattr__(self, "head_camera_rpy", _triple(self.head_camera_rpy, "head_camera_rpy"))
        self._check_numbers()
        self._check_layout()

    def _check_numbers(self) -> None:
        ranges = {
            "footprint_radius_m": (0.05, 1.5),
            "base_height_m": (0.05, 2.0),
            "max_linear_speed": (1e-3, 5.0),
            "max_angular_speed": (1e-3, 10.0),
            "max_joint_speed": (1e-3, 5.0),
            "max_substep_m": (1e-3, 0.5),
            "max_substep_rad": (1e-3, 1.0),
            "near_clip_m": (1e-3, 1.0),
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be a number within [{lo:g}, {hi:g}], got {value!r}")
        if not 0.0 <= self.ground_clearance_m < self.base_height_m:
            raise ConfigError(
                f"ground_clearance_m must be within [0, base_height_m={self.base_height_m:g}), "
                f"got {self.ground_clearance_m!r}"
            )
        for name in ("head_camera", "wrist_camera", "wrist_mount"):
            expected = CameraMount if name == "wrist_mount" else CameraConfig
            if not isinstance(getattr(self, name), expected):
                raise ConfigError(f"{name} must be a {expected.__name__}, got {getattr(self, name)!r}")
        for name in ("contact_check", "arm_contact_check"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _check_layout(self) -> None:
        if len(self.arm_mount_xy) != 2 or math.hypot(*self.arm_mount_xy) > self.footprint_radius_m:
            raise ConfigError(f"arm_mount_xy {self.arm_mount_xy} must be 2 numbers on the base footprint")
        if len(self.head_camera_xyz) != 3 or len(self.head_camera_rpy) != 3:
            raise ConfigError("head_camera_xyz and head_camera_rpy must be 3 numbers each")
        x, y, z = self.head_camera_xyz
        if math.hypot(x, y) > self.footprint_radius_m or z <= self.base_height_m + 0.05:
            raise ConfigError(
                f"head camera at {self.head_camera_xyz} must stand on a mast on the base: within the "
                f"footprint radius and above base_height_m + 0.05 m"
            )

    # ------------------------------------------------------------------ frames
    def T_base_arm(self) -> np.ndarray:
        """`T_baselink_fr3base`: the FR3's root body on top of the base."""
        return make_pose(translation=np.array([*self.arm_mount_xy, self.base_height_m]))

    def T_base_head_link(self) -> np.ndarray:
        """`T_baselink_headcameralink` (x forward, z up)."""
        return pose_from_xyz_rpy(self.head_camera_xyz, self.head_camera_rpy)  # type: ignore[arg-type]

    def T_base_head_optical(self) -> np.ndarray:
        """`T_baselink_headoptical`: the head camera's REP-103 optical frame on the base."""
        return self.T_base_head_link() @ _T_LINK_OPTICAL

    def camera(self, name: str) -> CameraConfig:
        """The config of camera `name` (`head_camera` or `wrist_camera`)."""
        if name == HEAD_CAMERA:
            return self.head_camera
        if name == WRIST_CAMERA:
            return self.wrist_camera
        raise InvalidInputError(f"unknown camera {name!r}; the mobile FR3 has {CAMERAS}")


# ---------------------------------------------------------------------------------------------- building
def add_mobile_fr3(spec: mujoco.MjSpec, config: MobileRobotConfig = MobileRobotConfig()) -> None:
    """Attach the mobile FR3 into a world spec: `base_link` (joints base_x, base_y, base_yaw) at the origin,
    the FR3 (names as in the URDF) on top, and `head_camera` in `head_camera_optical_frame` on a mast."""
    if spec.body(BASE_LINK) is not None:
        raise ConfigError(f"the spec already has a body {BASE_LINK!r}: add the mobile FR3 only once")
    base = spec.worldbody.add_body(name=BASE_LINK)
    slide, hinge = mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_HINGE
    for name, jtype, axis in zip(
        BASE_JOINTS, (slide, slide, hinge), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), strict=True
    ):
        base.add_joint(name=name, type=jtype, axis=list(axis))
    _add_base_geoms(base, config)
    _attach_arm(spec, base, config)
    _add_head_camera(base, config)
    _group_robot_geoms(base)
    spec.worldbody.add_camera(name=QUERY_CAMERA, fovy=float(config.head_camera.fovy_deg))
    glob = spec.visual.global_
    cams = (config.head_camera, config.wrist_camera)
    glob.offwidth = max(int(glob.offwidth), *(c.width for c in cams))
    glob.offheight = max(int(glob.offheight), *(c.height for c in cams))


def _add_base_geoms(base: mujoco.MjsBody, config: MobileRobotConfig) -> None:
    """The base cylinder and the mast (both collide with the world), plus visual-only wheels."""
    r, top, low = config.footprint_radius_m, config.base_height_m, config.ground_clearance_m
    g = mujoco.mjtGeom
    base.add_geom(
        name=BASE_GEOM,
        type=g.mjGEOM_CYLINDER,
        size=[r, (top - low) / 2],
        pos=[0, 0, (top + low) / 2],
        rgba=[0.25, 0.27, 0.3, 1],
    )
    x, y, z = config.head_camera_xyz
    mast_half = max((z - 0.04 - top) / 2, 0.01)
    base.add_geom(
        name=MAST_GEOM,
        type=g.mjGEOM_BOX,
        size=[0.02, 0.02, mast_half],
        pos=[x, y, top + mast_half],
        rgba=[0.6, 0.6, 0.62, 1],
    )
    wheel_r = max(low + 0.04, 0.05)
    for side in (1, -1):
        base.add_geom(
            name=f"base_link_wheel_{'left' if side > 0 else 'right'}",
            type=g.mjGEOM_CYLINDER,
            size=[wheel_r, 0.02],
            pos=[0, side * (r - 0.04), wheel_r],
            quat=_wxyz(pose_from_xyz_rpy((0, 0, 0), (math.pi / 2, 0, 0))[:3, :3]),
            rgba=[0.05, 0.05, 0.05, 1],
            contype=0,
            conaffinity=0,
        )


def _group_robot_geoms(base: mujoco.MjsBody) -> None:
    """Move every visible geom of the robot into `ROBOT_GEOM_GROUP` (hidden ones keep their group)."""
    for geom in base.find_all(mujoco.mjtObj.mjOBJ_GEOM):
        if geom.group < _HIDDEN_GROUP_MIN:
            geom.group = ROBOT_GEOM_GROUP


def _attach_arm(spec: mujoco.MjSpec, base: mujoco.MjsBody, config: MobileRobotConfig) -> None:
    """The FR3 from the one URDF on top of the base; every attached name keeps its URDF spelling."""
    robot = load_mjspec(config.wrist_mount, fovy_deg=float(config.wrist_camera.fovy_deg))
    frame = base.add_frame(pos=config.T_base_arm()[:3, 3].tolist())
    frame.attach_body(robot.body(ARM_ROOT), _ATTACH_PREFIX, "")
    _strip_prefix(spec, _ATTACH_PREFIX)


def _strip_prefix(spec: mujoco.MjSpec, prefix: str) -> None:
    """Rename every element named `prefix...` back to its name without the prefix."""
    groups = ("bodies", "joints", "geoms", "sites", "cameras", "lights", "materials", "meshes", "textures")
    for group in groups:
        for element in getattr(spec, group, ()):
            if element.name.startswith(prefix):
                element.name = element.name[len(prefix) :]


def _add_head_camera(base: mujoco.MjsBody, config: MobileRobotConfig) -> None:
    """The head camera link on the mast, its optical frame, and the MuJoCo camera in that frame."""
    T = config.T_base_head_link()
    link = base.add_body(name=HEAD_CAMERA_LINK, pos=T[:3, 3].tolist(), quat=_wxyz(T[:3, :3]))
    link.add_geom(  # a housing behind the lens, outside the field of view
        name="head_camera_housing",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.0125, 0.045, 0.0125],
        pos=[-0.0125, 0, 0],
        rgba=[0.08, 0.08, 0.09, 1],
        contype=0,
        conaffinity=0,
    )
    optical = link.add_body(name=HEAD_OPTICAL_FRAME, quat=_wxyz(_T_LINK_OPTICAL[:3, :3]))
    optical.add_camera(
        name=HEAD_CAMERA, quat=_wxyz(_MJ_CAM_TO_OPTICAL), fovy=float(config.head_camera.fovy_deg)
    )


def box_room_spec(
    size_xy: tuple[float, float] = (4.0, 3.0),
    wall_height: float = 2.0,
    boxes: tuple[tuple[float, float, float, float, float], ...] = (),
) -> mujoco.MjSpec:
    """A small closed room (walls 0.1 m thick, inner floor [0, sx] x [0, sy]) with textured walls and
    optional floor boxes (cx, cy, half_x, half_y, height); for tests, demos and benchmarks."""
    sx, sy = (float(v) for v in size_xy)
    if not (0.5 < sx <= 50 and 0.5 < sy <= 50 and 0.5 < wall_height <= 10):
        raise InvalidInputError(f"room size {size_xy} x {wall_height} m is out of range")
    spec = mujoco.MjSpec()
    spec.modelname = "box_room"
    spec.visual.quality.shadowsize = 0
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.3, 0.3, 0.3]
    tex = spec.add_texture(
        name="grid",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.8, 0.7, 0.5],
        rgb2=[0.3, 0.35, 0.5],
        width=64,
        height=64,
    )
    mat = spec.add_material(name="grid", texrepeat=[2, 2], texuniform=True)
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
    wb = spec.worldbody
    box = mujoco.mjtGeom.mjGEOM_BOX
    wb.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        pos=[sx / 2, sy / 2, 0],
        size=[sx, sy, 0.1],
        material="grid",
    )
    t, h = 0.05, wall_height / 2
    walls = {
        "wall_south": ([sx / 2, -t, h], [sx / 2 + 2 * t, t, h], [0.75, 0.55, 0.5, 1]),
        "wall_north": ([sx / 2, sy + t, h], [sx / 2 + 2 * t, t, h], [0.5, 0.7, 0.55, 1]),
        "wall_west": ([-t, sy / 2, h], [t, sy / 2, h], [0.5, 0.55, 0.75, 1]),
        "wall_east": ([sx + t, sy / 2, h], [t, sy / 2, h], [0.75, 0.72, 0.45, 1]),
    }
    for name, (pos, half, rgba) in walls.items():
        wb.add_geom(name=name, type=box, pos=pos, size=half, rgba=rgba)
    for i, (cx, cy, hx, hy, height) in enumerate(boxes):
        wb.add_geom(
            name=f"box{i}",
            type=box,
            pos=[cx, cy, height / 2],
            size=[hx, hy, height / 2],
            rgba=[0.3 + 0.15 * (i % 4), 0.5, 0.7 - 0.1 * (i % 5), 1],
        )
    wb.add_light(
        name="sun",
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
        pos=[sx / 2, sy / 2, 5],
        dir=[0.3, 0.2, -1],
        diffuse=[0.6] * 3,
        castshadow=False,
    )
    return spec


# ---------------------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class GroundTruth:
    """The true state after a step: poses are `T_world_*` (4x4 float64); arrays are read-only copies."""

    stamp_ns: int
    T_world_base: np.ndarray
    q: np.ndarray  # fr3_joint1..7, rad
    camera_poses: Mapping[str, np.ndarray] = field(default_factory=dict)  # camera -> T_world_optical
    collided: bool = False  # the last step was cut short: the base stopped before an obstacle
    arm_blocked: bool = False  # the last step's arm motion was refused: it would have hit the world
    v: float = 0.0  # applied linear speed of the last step (m/s): clipped, and lower if it was cut short
    omega: float = 0.0  # applied angular speed of the last step (rad/s)


def _frozen(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=np.float64)
    out.setflags(write=False)
    return out


class MobileFR3Sim:
    """A kinematic mobile FR3 in a MuJoCo world: unicycle base commands, arm joints, RGB-D cameras.

    `is_free(x, y)` (e.g. `OccupancyGrid.is_free`, inflated by the robot radius) answers for the base
    centre; with `config.contact_check` MuJoCo contacts of the base cylinder and mast (and, with
    `arm_contact_check`, of the arm's collision geoms) against the world are checked too, so no rendered
    frame shows the robot inside a wall. A step moves the arm first (refused as a whole if it would hit the
    world), then integrates the base in sub-steps (`max_substep_m`/`_rad`), stopping at the last free one.
    Bad input raises InvalidInputError and leaves the state as it was. Not thread-safe.
    """

    def __init__(
        self,
        spec_or_model: mujoco.MjSpec | mujoco.MjModel,
        config: MobileRobotConfig = MobileRobotConfig(),
        is_free: Callable[[float, float], bool] | None = None,
    ) -> None:
        if not isinstance(config, MobileRobotConfig):
            raise ConfigError(f"config must be a MobileRobotConfig, got {type(config).__name__}")
        if is_free is not None and not callable(is_free):
            raise ConfigError("is_free must be a callable (x, y) -> bool or None")
        self.config = config
        self.is_free = is_free
        self.model = self._compile(spec_or_model, config)
        self.data = mujoco.MjData(self.model)
        self.kinematics = FR3Kinematics(config.wrist_mount)
        self._index_model()
        self.model.vis.map.znear = config.near_clip_m / self.model.stat.extent
        self._renderers: dict[tuple[int, int], tuple[mujoco.Renderer, mujoco.Renderer]] = {}
        self._pose = (0.0, 0.0, 0.0)
        self._q = self.kinematics.home
        self._last = (False, False, 0.0, 0.0)  # collided, arm_blocked, v, omega of the last step
        self.stamp_ns = 0
        self._apply()
        self._check_geometry()
        log.info(
            "mobile FR3 sim: %d bodies, %d geoms; head %dx%d, wrist %dx%d",
            self.model.nbody,
            self.model.ngeom,
            config.head_camera.width,
            config.head_camera.height,
            config.wrist_camera.width,
            config.wrist_camera.height,
        )

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _compile(spec_or_model: mujoco.MjSpec | mujoco.MjModel, config: MobileRobotConfig) -> mujoco.MjModel:
        """Compile a spec (adding the robot if it has none yet) or take a compiled model as it is."""
        if isinstance(spec_or_model, mujoco.MjModel):
            return spec_or_model
        if not isinstance(spec_or_model, mujoco.MjSpec):
            raise InvalidInputError(
                f"expected a mujoco.MjSpec or MjModel, got {type(spec_or_model).__name__}"
            )
        if spec_or_model.body(BASE_LINK) is None:
            log.debug("the spec has no %s yet: adding the mobile FR3", BASE_LINK)
            add_mobile_fr3(spec_or_model, config)
        return spec_or_model.compile()

    def _index_model(self) -> None:
        """Addresses of the base and arm joints, the base's collision geoms, the robot cameras."""
        m = self.model
        base = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, BASE_LINK)
        if base < 0:
            raise ConfigError(f"the model has no body {BASE_LINK!r}: build it with add_mobile_fr3")
        self._base_id = base
        try:
            self._base_qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in BASE_JOINTS])
            self._arm_qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in self.kinematics.joint_names])
        except KeyError as exc:
            raise ConfigError(f"the model lacks a mobile FR3 joint: {exc}") from exc
        collides = (m.geom_contype | m.geom_conaffinity) != 0
        self._robot_geom = m.body_rootid[m.geom_bodyid] == base  # per geom: part of the robot
        checked = collides & (m.geom_bodyid == base)
        if self.config.arm_contact_check:
            checked |= collides & self._robot_geom
        self._checked_geom = checked
        self._cam_id = {name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, name) for name in CAMERAS}
        if min(self._cam_id.values()) < 0:
            raise ConfigError(f"the model lacks a robot camera; it needs {CAMERAS}")
        self._query_cam = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, QUERY_CAMERA)
        if self._query_cam < 0 or m.cam_bodyid[self._query_cam] != 0:
            raise ConfigError(
                f"the model lacks the world-fixed {QUERY_CAMERA!r}: build it with add_mobile_fr3"
            )
        if np.any((m.geom_group == ROBOT_GEOM_GROUP) & ~self._robot_geom):
            raise ConfigError(
                f"a world geom is in geom group {ROBOT_GEOM_GROUP}, which is reserved for the robot's geoms"
            )
        self._hide_robot = mujoco.MjvOption()
        self._hide_robot.geomgroup[ROBOT_GEOM_GROUP] = 0

    def _check_geometry(self) -> None:
        """The compiled model must match the config (a model built with another config is refused)."""
        T_base_arm = self.config.T_base_arm()
        checks = {
            HEAD_CAMERA: (self.camera_pose(HEAD_CAMERA), self.config.T_base_head_optical()),
            WRIST_CAMERA: (
                self.camera_pose(WRIST_CAMERA),
                T_base_arm @ self.kinematics.camera_pose(self._q),
            ),
        }
        for name, (got, expected) in checks.items():
            if np.abs(got - expected).max() > _GEOMETRY_TOL:
                raise ConfigError(
                    f"the model's {name} is not where the config puts it: built with another config"
                )
            fovy = float(self.model.cam_fovy[self._cam_id[name]])
            if abs(fovy - self.config.camera(name).fovy_deg) > _GEOMETRY_TOL:
                raise ConfigError(
                    f"the model's {name} has fovy {fovy} deg, the config {self.config.camera(name)}"
                )

    # ------------------------------------------------------------------ state
    def _write(self, x: float, y: float, yaw: float, q: np.ndarray) -> None:
        self.data.qpos[self._base_qadr] = (x, y, yaw)
        self.data.qpos[self._arm_qadr] = q
        mujoco.mj_kinematics(self.model, self.data)

    def _apply(self) -> None:
        """Write the committed state into MjData and update every body and camera pose."""
        self._write(*self._pose, self._q)
        mujoco.mj_camlight(self.model, self.data)

    def _robot_collides(self) -> bool:
        """Whether a checked robot geom penetrates a world geom at the state now in MjData."""
        mujoco.mj_collision(self.model, self.data)
        n = self.data.ncon
        if n == 0:
            return False
        geom = self.data.contact.geom[:n]
        pen = self.data.contact.dist[:n] < 0.0
        robot, checked = self._robot_geom[geom], self._checked_geom[geom]
        hit = (checked[:, 0] & ~robot[:, 1]) | (checked[:, 1] & ~robot[:, 0])
        return bool(np.any(hit & pen))

    def pose_is_free(self, x: float, y: float, yaw: float) -> bool:
        """Whether the base may stand at (x, y, yaw): `is_free` and (optionally) no base contacts."""
        try:
            return self._free(x, y, yaw, self._q)
        finally:
            self._apply()

    def _free(self, x: float, y: float, yaw: float, q: np.ndarray) -> bool:
        """Free-check that leaves the candidate in MjData (callers restore with `_apply`)."""
        if self.is_free is not None and not bool(self.is_free(x, y)):
            return False
        if not self.config.contact_check:
            return True
        self._write(x, y, yaw, q)
        return not self._robot_collides()

    def reset(
        self, x: float = 0.0, y: float = 0.0, yaw: float = 0.0, q: np.ndarray | None = None, stamp_ns: int = 0
    ) -> GroundTruth:
        """Put the robot at (x, y, yaw) with arm joints `q` (home if None); a pose in collision is refused."""
        pose = (finite_float(x, "x"), finite_float(y, "y"), wrap_angle(finite_float(yaw, "yaw")))
        q = self.kinematics.home if q is None else self.kinematics.check_joints(q)
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
            raise InvalidInputError(f"stamp_ns must be a non-negative integer, got {stamp_ns!r}")
        try:
            if not self._free(*pose, q):
                raise InvalidInputError(
                    f"pose (x={pose[0]:.3f}, y={pose[1]:.3f}) is not free: the robot collides"
                )
        finally:
            self._apply()
        self._pose, self._q, self.stamp_ns = pose, q, int(stamp_ns)
        self._last = (False, False, 0.0, 0.0)
        self._apply()
        return self.ground_truth()

    def set_joints(self, q: np.ndarray) -> np.ndarray:
        """Put the arm at `q` (7 values within the FR3 limits; refused if the arm would hit the world)."""
        q = self.kinematics.check_joints(q)
        try:
            if not self._arm_free(q):
                raise InvalidInputError("joint angles refused: the arm would penetrate the world")
        finally:
            self._apply()
        self._q = q
        self._apply()
        return self._q.copy()

    def _arm_free(self, q: np.ndarray) -> bool:
        """Whether arm joints `q` at the current base pose touch no world geom (when arm contacts count)."""
        if not (self.config.contact_check and self.config.arm_contact_check):
            return True
        self._write(*self._pose, q)
        return not self._robot_collides()

    def step(self, v: float, omega: float, dt: float, q_target: np.ndarray | None = None) -> GroundTruth:
        """Advance `dt` s: drive the base with (v, omega) clipped to the limits (unicycle model, sub-stepped,
        stopping before obstacles) and move the arm towards `q_target` at most `max_joint_speed`."""
        v, omega, dt = finite_float(v, "v"), finite_float(omega, "omega"), finite_float(dt, "dt")
        if not 0.0 < dt <= _MAX_DT_S:
            raise InvalidInputError(f"dt must be within (0, {_MAX_DT_S}] s, got {dt}")
        q = self._q if q_target is None else self._toward(self.kinematics.check_joints(q_target), dt)
        cfg = self.config
        v = float(np.clip(v, -cfg.max_linear_speed, cfg.max_linear_speed))
        omega = float(np.clip(omega, -cfg.max_angular_speed, cfg.max_angular_speed))
        try:
            arm_blocked = q is not self._q and not self._arm_free(q)
            if arm_blocked:
                q = self._q
            pose, done = self._drive(v, omega, dt, q)
        finally:
            self._apply()
        self._pose, self._q = pose, q
        self.stamp_ns += int(round(dt * 1e9))
        self._last = (done < 1.0, arm_blocked, v * done, omega * done)
        self._apply()
        if done < 1.0:
            log.debug(
                "base stopped by an obstacle at (%.3f, %.3f) after %.0f%% of the step", *pose[:2], done * 100
            )
        return self.ground_truth()

    def _toward(self, q_target: np.ndarray, dt: float) -> np.ndarray:
        """The arm one step of at most `max_joint_speed * dt` per joint towards `q_target`."""
        limit = self.config.max_joint_speed * dt
        return self._q + np.clip(q_target - self._q, -limit, limit)

    def _drive(
        self, v: float, omega: float, dt: float, q: np.ndarray
    ) -> tuple[tuple[float, float, float], float]:
        """Integrate the unicycle in sub-steps; return the last free pose and the fraction of `dt` done."""
        cfg = self.config
        n = max(1, math.ceil(max(abs(v) * dt / cfg.max_substep_m, abs(omega) * dt / cfg.max_substep_rad)))
        h = dt / n
        pose = self._pose
        for i in range(n):
            nxt = _unicycle(pose, v, omega, h)
            if not self._free(*nxt, q):
                return pose, i / n
            pose = nxt
        return pose, 1.0

    # ------------------------------------------------------------------ poses
    @property
    def pose2d(self) -> tuple[float, float, float]:
        """The base's (x, y, yaw) in the world (m, m, rad; yaw in [-pi, pi))."""
        return self._pose

    @property
    def q(self) -> np.ndarray:
        """The arm joints fr3_joint1..7 (a copy)."""
        return self._q.copy()

    @property
    def collided(self) -> bool:
        """Whether the last step was cut short by an obstacle."""
        return self._last[0]

    @property
    def arm_blocked(self) -> bool:
        """Whether the last step's arm motion was refused because the arm would have hit the world."""
        return self._last[1]

    @property
    def T_world_base(self) -> np.ndarray:
        """`T_world_baselink` as MuJoCo places the body (on the floor, x forward, z up)."""
        b = self._base_id
        return make_pose(self.data.xmat[b].reshape(3, 3), self.data.xpos[b])

    def camera_pose(self, name: str) -> np.ndarray:
        """`T_world_optical` of a robot camera as MuJoCo renders it (REP-103 optical axes)."""
        cam = self._camera_id(name)
        R = self.data.cam_xmat[cam].reshape(3, 3) @ _MJ_CAM_TO_OPTICAL
        return make_pose(R, self.data.cam_xpos[cam])

    def T_base_camera(self, name: str) -> np.ndarray:
        """`T_baselink_optical` of a camera from the config and FR3 forward kinematics (the extrinsics)."""
        self._camera_id(name)
        if name == HEAD_CAMERA:
            return self.config.T_base_head_optical()
        return self.config.T_base_arm() @ self.kinematics.camera_pose(self._q)

    def ground_truth(self) -> GroundTruth:
        """The state now: stamp, base pose, arm joints, every camera's pose, and the last step's outcome."""
        collided, arm_blocked, v, omega = self._last
        return GroundTruth(
            stamp_ns=self.stamp_ns,
            T_world_base=_frozen(self.T_world_base),
            q=_frozen(self._q),
            camera_poses={name: _frozen(self.camera_pose(name)) for name in CAMERAS},
            collided=collided,
            arm_blocked=arm_blocked,
            v=v,
            omega=omega,
        )

    def cameras_due(self, prev_ns: int, now_ns: int) -> tuple[str, ...]:
        """Cameras with a frame tick (multiples of 1/rate_hz) in the interval (prev_ns, now_ns]."""
        due = []
        for name in CAMERAS:
            period = 1e9 / self.config.camera(name).rate_hz
            if math.floor(now_ns / period) > math.floor(prev_ns / period):
                due.append(name)
        return tuple(due)

    # ------------------------------------------------------------------ cameras
    def _camera_id(self, name: str) -> int:
        cam = self._cam_id.get(name) if isinstance(name, str) else None
        if cam is None:
            raise InvalidInputError(f"unknown camera {name!r}; the mobile FR3 has {CAMERAS}")
        return cam

    def intrinsics(self, name: str) -> np.ndarray:
        """Pinhole K (3x3) of a camera at its render size, from the model's field of view."""
        cfg = self.config.camera(name)
        fovy = math.radians(float(self.model.cam_fovy[self._camera_id(name)]))
        f = 0.5 * cfg.height / math.tan(0.5 * fovy)
        return np.array([[f, 0.0, (cfg.width - 1) / 2.0], [0.0, f, (cfg.height - 1) / 2.0], [0.0, 0.0, 1.0]])

    def camera_info(self, name: str) -> dict:
        """CameraInfo-style fields of an ideal pinhole: K, R = I, P = [K | 0], D = 0, plumb_bob."""
        cfg = self.config.camera(name)
        K = self.intrinsics(name)
        return {
            "frame_id": OPTICAL_FRAMES[name],
            "width": cfg.width,
            "height": cfg.height,
            "distortion_model": "plumb_bob",
            "D": [0.0] * 5,
            "K": K.ravel().tolist(),
            "R": np.eye(3).ravel().tolist(),
            "P": np.hstack([K, np.zeros((3, 1))]).ravel().tolist(),
            "binning_x": 0,
            "binning_y": 0,
        }

    def _renderer_pair(self, name: str) -> tuple[mujoco.Renderer, mujoco.Renderer]:
        """(RGB, depth) renderers of a camera's image size, made on first use and shared by equal sizes."""
        cfg = self.config.camera(name)
        key = (cfg.height, cfg.width)
        if key not in self._renderers:
            rgb = mujoco.Renderer(self.model, cfg.height, cfg.width)
            depth = mujoco.Renderer(self.model, cfg.height, cfg.width)
            depth.enable_depth_rendering()
            self._renderers[key] = (rgb, depth)
        return self._renderers[key]

    def render(self, name: str) -> np.ndarray:
        """RGB uint8 (H, W, 3) image of a robot camera."""
        cam = self._camera_id(name)
        renderer = self._renderer_pair(name)[0]
        renderer.update_scene(self.data, camera=cam)
        return renderer.render()

    def render_depth(self, name: str) -> np.ndarray:
        """Metric depth along the optical axis (z in the optical frame), float32 (H, W), metres."""
        cam = self._camera_id(name)
        renderer = self._renderer_pair(name)[1]
        renderer.update_scene(self.data, camera=cam)
        return renderer.render()

    def render_rgbd(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(RGB, depth) of one camera at the current state."""
        return self.render(name), self.render_depth(name)

    def render_view(
        self, T_world_optical: np.ndarray, like: str = HEAD_CAMERA, hide_robot: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 (H, W, 3), metric depth float32 (H, W)) seen from any REP-103 optical pose.

        The view has the image size and intrinsics of robot camera `like`; with `hide_robot` the robot's
        geoms (group `ROBOT_GEOM_GROUP`) are left out, so a view shows the place and not the robot standing
        in it. The world-fixed `query_camera` is moved there in MjData only: the robot's pose, joints and
        cameras stay as they are. At a robot camera's own pose with `hide_robot=False` the images equal
        `render(like)` and `render_depth(like)`.
        """
        T = check_pose(T_world_optical, "T_world_optical")
        like_cam = self._camera_id(like)
        if not isinstance(hide_robot, (bool, np.bool_)):
            raise InvalidInputError(f"hide_robot must be true or false, got {hide_robot!r}")
        self._place_query_camera(T, like_cam)
        option = self._hide_robot if hide_robot else None
        rgb_renderer, depth_renderer = self._renderer_pair(like)
        rgb_renderer.update_scene(self.data, camera=self._query_cam, scene_option=option)
        depth_renderer.update_scene(self.data, camera=self._query_cam, scene_option=option)
        return rgb_renderer.render(), depth_renderer.render()

    def _place_query_camera(self, T_world_optical: np.ndarray, like_cam: int) -> None:
        """Give `query_camera` the optics of camera `like_cam` and the pose `T_world_optical` (MjData)."""
        m, q = self.model, self._query_cam
        for name in ("cam_fovy", "cam_projection", "cam_sensorsize", "cam_intrinsic", "cam_resolution"):
            getattr(m, name)[q] = getattr(m, name)[like_cam]
        self.data.cam_xpos[q] = T_world_optical[:3, 3]
        self.data.cam_xmat[q] = (T_world_optical[:3, :3] @ _MJ_CAM_TO_OPTICAL).ravel()

    def close(self) -> None:
        """Free the renderers' GL contexts."""
        for rgb, depth in self._renderers.values():
            rgb.close()
            depth.close()
        self._renderers.clear()

    def __enter__(self) -> MobileFR3Sim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unicycle(
    pose: tuple[float, float, float], v: float, omega: float, h: float
) -> tuple[float, float, float]:
    """Exact unicycle motion over `h` s at constant (v, omega): a straight line or a circular arc."""
    x, y, yaw = pose
    turn = omega * h
    if abs(turn) < 1e-9:  # second-order midpoint heading is exact to rounding here
        mid = yaw + 0.5 * turn
        return x + v * h * math.cos(mid), y + v * h * math.sin(mid), wrap_angle(yaw + turn)
    r = v / omega
    return (
        x + r * (math.sin(yaw + turn) - math.sin(yaw)),
        y - r * (math.cos(yaw + turn) - math.cos(yaw)),
        wrap_angle(yaw + turn),
    )

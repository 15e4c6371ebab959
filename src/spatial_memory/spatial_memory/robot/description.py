"""The FR3 robot description: one URDF for ROS (robot_description) and MuJoCo, plus the wrist camera mount.

`load_urdf(mount)` is the text ROS publishes as robot_description; `load_mjspec(mount)` is the same text
parsed by MuJoCo, with a MuJoCo camera added in the optical frame. The MjSpec is a clean subtree rooted at
body `base`, so a scene attaches it where the robot stands:

    world = mujoco.MjSpec()
    frame = world.worldbody.add_frame(pos=[0.0, 0.0, 0.75])       # T_world_base
    frame.attach_body(load_mjspec().body("base"), "", "")          # or a prefix such as "robot/"
    model = world.compile()

With a prefix, every robot name (bodies, joints, the `wrist_camera`) gets it. With "" the names stay as they
are, which works, but MuJoCo 4 then warns "Attaching a spec with an empty prefix may prevent the model from
being saved correctly" and appends that line to MUJOCO_LOG.TXT in the working directory.
`world.attach(load_mjspec(), prefix="fr3/", frame=frame)` does the same as `attach_body`.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache

import mujoco
import numpy as np

from spatial_memory.errors import ConfigError
from spatial_memory.geometry import pose_from_xyz_rpy
from spatial_memory.resources import share_path

log = logging.getLogger(__name__)

URDF_RESOURCE = "urdf/fr3.urdf"
ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
ROOT_LINK = "base"
CAMERA_JOINT = "wrist_camera_joint"
CAMERA_LINK = "wrist_camera_link"
OPTICAL_FRAME = "wrist_camera_optical_frame"
MJ_CAMERA = "wrist_camera"
DEFAULT_FOVY_DEG = 58.0  # vertical field of view, close to a RealSense D405 (about 58 x 87 deg)
# Links a camera may be mounted on: the arm's own links (not the camera frames themselves).
MOUNT_PARENTS = (
    ROOT_LINK,
    *(f"fr3_link{i}" for i in range(9)),
    "fr3_hand",
    "fr3_hand_tcp",
    "fr3_leftfinger",
    "fr3_rightfinger",
)
# Home ("ready") configuration of the FR3, in the limits; the flange points straight down.
HOME = (0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4)
# MuJoCo cameras look along their -z with +y up; a REP-103 optical frame looks along +z with +y down:
# the camera sits in the optical frame rotated by pi about x, quaternion (w, x, y, z) = (0, 1, 0, 0).
_MJ_CAMERA_QUAT = (0.0, 1.0, 0.0, 0.0)
_COLLISION_GROUP = 3  # MuJoCo's renderer hides group 3 by default: only the coloured visual geoms show


def _triple(value: object, name: str) -> tuple[float, float, float]:
    """`value` as three finite floats, or ConfigError."""
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"camera mount {name} must be 3 numbers, got {value!r}") from exc
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"camera mount {name} must be 3 finite numbers, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class CameraMount:
    """Pose of `wrist_camera_link` (x forward, y left, z up) in link `parent`: URDF-style xyz (m), rpy (rad).

    The default is the URDF's own mount: a D405-like camera on the side of the hand looking along the
    gripper's approach direction (the hand's +z), fingers at the bottom of the image.
    """

    parent: str = "fr3_hand"
    xyz: tuple[float, float, float] = (0.055, 0.0, 0.05)
    rpy: tuple[float, float, float] = (0.0, -math.pi / 2, math.pi)

    def __post_init__(self) -> None:
        if self.parent not in MOUNT_PARENTS:
            raise ConfigError(
                f"camera mount parent {self.parent!r} is not an FR3 link; use one of {MOUNT_PARENTS}"
            )
        object.__setattr__(self, "xyz", _triple(self.xyz, "xyz"))
        object.__setattr__(self, "rpy", _triple(self.rpy, "rpy"))

    def matrix(self) -> np.ndarray:
        """`T_parent_cameralink`, the 4x4 pose of the camera link in its parent link."""
        return pose_from_xyz_rpy(self.xyz, self.rpy)


@lru_cache(maxsize=1)
def _urdf_text() -> str:
    return share_path(URDF_RESOURCE).read_text()


def load_urdf(mount: CameraMount | None = None) -> str:
    """The FR3 URDF text; with `mount`, the wrist camera joint's parent and origin are replaced."""
    text = _urdf_text()
    if mount is None:
        return text
    root = ET.fromstring(text)
    joint = root.find(f"joint[@name='{CAMERA_JOINT}']")
    if joint is None:
        raise ConfigError(f"{URDF_RESOURCE} has no joint {CAMERA_JOINT!r}")
    joint.find("parent").set("link", mount.parent)  # type: ignore[union-attr]
    origin = joint.find("origin")
    if origin is None:
        origin = ET.SubElement(joint, "origin")
    origin.set("xyz", " ".join(repr(v) for v in mount.xyz))
    origin.set("rpy", " ".join(repr(v) for v in mount.rpy))
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def with_mobile_base(
    urdf_text: str,
    parent: str,
    radius_m: float,
    height_m: float,
    clearance_m: float = 0.0,
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> str:
    """The URDF with a link `parent` (e.g. base_link) holding the arm's root by a fixed joint at `xyz`, `rpy`
    and drawn as a grey cylinder of `radius_m` from `clearance_m` up to `height_m`: the robot model RViz
    shows then includes the mobile base. Only for display; TF still comes from fk_node's edges and from
    whoever publishes `parent` -> `base` (sim_node, or fk_node's `base_parent_frame`)."""
    if not parent or parent == ROOT_LINK:
        raise ConfigError(f"a mobile base link needs a name other than {ROOT_LINK!r}, got {parent!r}")
    if not (0.0 < radius_m < math.inf and 0.0 <= clearance_m < height_m < math.inf):
        raise ConfigError(
            f"mobile base: need radius > 0 and 0 <= clearance < height, got radius {radius_m!r}, "
            f"clearance {clearance_m!r}, height {height_m!r}"
        )
    root = ET.fromstring(urdf_text)
    if root.find(f"link[@name='{parent}']") is not None:
        raise ConfigError(f"the URDF already has a link {parent!r}")
    link = ET.Element("link", name=parent)
    visual = ET.SubElement(link, "visual")
    length = height_m - clearance_m
    ET.SubElement(visual, "origin", xyz=f"0 0 {clearance_m + length / 2:.6g}", rpy="0 0 0")
    ET.SubElement(
        ET.SubElement(visual, "geometry"), "cylinder", radius=f"{radius_m:.6g}", length=f"{length:.6g}"
    )
    ET.SubElement(
        ET.SubElement(visual, "material", name="mobile_base_grey"), "color", rgba="0.55 0.55 0.58 1"
    )
    joint = ET.Element("joint", name=f"{parent}_to_{ROOT_LINK}", type="fixed")
    ET.SubElement(joint, "parent", link=parent)
    ET.SubElement(joint, "child", link=ROOT_LINK)
    ET.SubElement(
        joint, "origin", xyz=" ".join(repr(float(v)) for v in xyz), rpy=" ".join(repr(float(v)) for v in rpy)
    )
    root.insert(0, joint)
    root.insert(0, link)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def load_mjspec(mount: CameraMount | None = None, fovy_deg: float = DEFAULT_FOVY_DEG) -> mujoco.MjSpec:
    """The FR3 as a MuJoCo spec parsed from `load_urdf(mount)`, with `wrist_camera` in the optical frame.

    Collision geoms are moved to group 3 so renders show the coloured visual geoms only (the URDF gives the
    two the same shapes). Attach it into a scene with `frame.attach_body(spec.body("base"), prefix, "")`.
    """
    if not (isinstance(fovy_deg, (int, float)) and 1.0 < fovy_deg < 179.0):
        raise ConfigError(f"fovy_deg must be a number within (1, 179) degrees, got {fovy_deg!r}")
    spec = mujoco.MjSpec.from_string(load_urdf(mount))
    spec.modelname = "fr3"
    for geom in spec.geoms:
        if geom.contype or geom.conaffinity:
            geom.group = _COLLISION_GROUP
    spec.body(OPTICAL_FRAME).add_camera(name=MJ_CAMERA, quat=list(_MJ_CAMERA_QUAT), fovy=float(fovy_deg))
    return spec


def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) position limits (rad) of `ARM_JOINTS`, read from the URDF."""
    root = ET.fromstring(_urdf_text())
    lower, upper = [], []
    for name in ARM_JOINTS:
        limit = root.find(f"joint[@name='{name}']/limit")
        if limit is None:
            raise ConfigError(f"{URDF_RESOURCE}: joint {name!r} has no <limit>")
        lower.append(float(limit.get("lower", "nan")))
        upper.append(float(limit.get("upper", "nan")))
    return np.array(lower), np.array(upper)


@dataclass(frozen=True)
class TfEdge:
    """One URDF joint as a TF edge: `parent` -> `child`; `fixed` edges go on /tf_static."""

    parent: str
    child: str
    fixed: bool


def urdf_tf_edges(urdf_text: str) -> list[TfEdge]:
    """The joints of a URDF as TF edges, parents before children (the order robot_state_publisher uses)."""
    try:
        root = ET.fromstring(urdf_text)
    except ET.ParseError as exc:
        raise ConfigError(f"robot description is not valid XML: {exc}") from exc
    edges = []
    for joint in root.findall("joint"):
        parent, child = joint.find("parent"), joint.find("child")
        if parent is None or child is None:
            raise ConfigError(f"URDF joint {joint.get('name')!r} lacks a parent or child link")
        edges.append(TfEdge(parent.get("link", ""), child.get("link", ""), joint.get("type") == "fixed"))
    return edges

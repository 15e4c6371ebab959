"""Generate `urdf/fr3.urdf`, the one FR3 description read by robot_state_publisher and by MuJoCo.

The kinematic numbers are Franka's published modified-DH parameters (Craig convention) and joint limits;
the geometry is simple primitives (cylinders, boxes) sized like the real arm, good enough to render and
to project an arm mask, not for contact-accurate simulation. The committed URDF must equal this script's
output (a test checks it), so edit this file and run:

    python -m spatial_memory.robot.generate_urdf            # rewrite <repo>/urdf/fr3.urdf
    python -m spatial_memory.robot.generate_urdf --check    # exit 1 if the committed file differs
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PI = math.pi
DEFAULT_OUTPUT = Path(__file__).resolve().parents[4] / "urdf" / "fr3.urdf"

# Franka FR3 modified DH (Craig): per joint a (m), d (m), alpha (rad); T = Rx(alpha) Tx(a) Tz(d) Rz(q).
DH = (
    ("fr3_joint1", 0.0, 0.333, 0.0),
    ("fr3_joint2", 0.0, 0.0, -PI / 2),
    ("fr3_joint3", 0.0, 0.316, PI / 2),
    ("fr3_joint4", 0.0825, 0.0, PI / 2),
    ("fr3_joint5", -0.0825, 0.384, -PI / 2),
    ("fr3_joint6", 0.0, 0.0, PI / 2),
    ("fr3_joint7", 0.088, 0.0, PI / 2),
)
FLANGE_D = 0.107  # fr3_joint8 (fixed): d of the flange along link 7's z
HAND_YAW = -PI / 4  # fr3_hand_joint: the hand is rotated -45 deg about the flange z
TCP_Z = 0.1034  # fr3_hand_tcp_joint: between the fingertips, along the hand z
FINGER_Z = 0.0584  # finger joints above the hand flange (franka_description)
FINGER_OPEN = 0.04  # each finger's travel when fully open (m)

# FR3 joint position limits (rad), from Franka's FR3 datasheet.
LIMITS = (
    (-2.7437, 2.7437),
    (-1.7837, 1.7837),
    (-2.9007, 2.9007),
    (-3.0421, -0.1518),
    (-2.8065, 2.8065),
    (0.5445, 4.5169),
    (-3.0159, 3.0159),
)
# Velocity (rad/s) and effort (Nm) limits from Franka's datasheet: joints 1-4 2.62 / 87, joints 5-7 5.26 / 12.
VELOCITY = (2.62, 2.62, 2.62, 2.62, 5.26, 5.26, 5.26)
EFFORT = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)

# Default wrist camera (a D405-like box on the hand): 5.5 cm off the hand's x side, 5 cm up the hand z,
# looking along the hand's +z (the gripper's approach direction), with the fingers at the bottom of the
# image. The rotation maps camera_link x (forward) -> hand +z, y (left) -> hand -y, z (up) -> hand +x.
CAMERA_XYZ = (0.055, 0.0, 0.05)
CAMERA_RPY = (0.0, -PI / 2, PI)
OPTICAL_RPY = (
    -PI / 2,
    0.0,
    -PI / 2,
)  # REP-103: camera_link (x fwd, y left, z up) -> optical (z fwd, x right)

MATERIALS = {
    "fr3_white": (0.93, 0.93, 0.93, 1.0),
    "fr3_dark": (0.17, 0.17, 0.19, 1.0),
    "fr3_grey": (0.62, 0.63, 0.66, 1.0),
    "camera_black": (0.08, 0.08, 0.09, 1.0),
}

R_LINK = 0.06  # link radius (m)
ALONG_Y = (PI / 2, 0.0, 0.0)  # rpy that turns a URDF cylinder (along z) to lie along y
ALONG_X = (0.0, PI / 2, 0.0)


@dataclass(frozen=True)
class Shape:
    """One primitive, used both as visual and as collision geometry."""

    kind: str  # "cylinder" (size = radius, length), "box" (size = x, y, z), "sphere" (size = radius,)
    size: tuple[float, ...]
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    material: str = "fr3_white"


@dataclass(frozen=True)
class Link:
    """A link: primitives plus an approximate inertial (mass in kg at `com`, diagonal inertia)."""

    name: str
    shapes: tuple[Shape, ...] = ()
    mass: float = 0.0  # 0: no <inertial> element
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.06  # inertia of a solid sphere of this radius: plausible, not Franka's data
    comment: str = ""


@dataclass(frozen=True)
class Joint:
    """A URDF joint; revolute joints rotate about their z axis."""

    name: str
    kind: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    limit: tuple[float, float, float, float] | None = None  # lower, upper, velocity, effort
    comment: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _cyl_z(z0: float, z1: float, radius: float = R_LINK, material: str = "fr3_white") -> Shape:
    """A cylinder along the link's z from z0 to z1."""
    return Shape("cylinder", (radius, z1 - z0), (0.0, 0.0, (z0 + z1) / 2), material=material)


def _cyl_y(
    y0: float, y1: float, x: float = 0.0, radius: float = R_LINK, material: str = "fr3_white"
) -> Shape:
    """A cylinder along the link's y from y0 to y1 (at offset x)."""
    return Shape("cylinder", (radius, abs(y1 - y0)), (x, (y0 + y1) / 2, 0.0), ALONG_Y, material)


def _housing(length: float = 0.12, radius: float = R_LINK) -> Shape:
    """The dark drum of the joint that drives this link (along the link's own z, at its origin)."""
    return _cyl_z(-length / 2, length / 2, radius, "fr3_dark")


def links() -> tuple[Link, ...]:
    """All links with their geometry, in kinematic order."""
    return (
        Link("base", comment="root of the robot: ROS and MuJoCo attach the arm to the world here"),
        Link(
            "fr3_link0",
            (
                _cyl_z(0.0, 0.14, 0.075),
                Shape("box", (0.12, 0.13, 0.1), (-0.09, 0.0, 0.05), material="fr3_grey"),
            ),
            mass=2.9,
            com=(-0.03, 0.0, 0.06),
            radius=0.09,
        ),
        Link(
            "fr3_link1",
            (_cyl_z(-0.193, 0.0), _cyl_z(-0.193, -0.173, R_LINK + 0.003, "fr3_dark")),
            mass=2.9,
            com=(0.0, 0.0, -0.09),
        ),
        Link("fr3_link2", (_housing(), _cyl_y(-0.25, -0.03)), mass=2.9, com=(0.0, -0.12, 0.0)),
        Link(
            "fr3_link3",
            (
                _cyl_z(-0.1, 0.0),
                _cyl_z(-0.12, -0.1, R_LINK + 0.003, "fr3_dark"),
                Shape("box", (0.0825, 0.1, 0.1), (0.04125, 0.0, 0.0)),
            ),
            mass=2.2,
            com=(0.03, 0.0, -0.04),
        ),
        Link(
            "fr3_link4",
            (
                _housing(),
                Shape("box", (0.0825, 0.1, 0.1), (-0.04125, 0.06, 0.0)),
                _cyl_y(0.02, 0.14, x=-0.0825, radius=0.055),
            ),
            mass=2.4,
            com=(-0.05, 0.07, 0.0),
        ),
        Link(
            "fr3_link5",
            (
                _cyl_z(-0.244, -0.05, 0.055),
                _cyl_z(-0.264, -0.244, 0.058, "fr3_dark"),
                Shape("box", (0.09, 0.06, 0.06), (0.0, 0.02, -0.06), material="fr3_white"),
            ),
            mass=2.3,
            com=(0.0, 0.0, -0.15),
        ),
        Link(
            "fr3_link6",
            (_housing(0.11, 0.055), Shape("box", (0.088, 0.09, 0.09), (0.044, 0.0, 0.0))),
            mass=1.8,
            com=(0.05, 0.0, 0.0),
        ),
        Link(
            "fr3_link7",
            (
                _cyl_z(-0.05, 0.0, 0.052, "fr3_dark"),
                _cyl_z(0.0, 0.09, 0.05),
                _cyl_z(0.09, FLANGE_D, 0.045, "fr3_dark"),
            ),
            mass=0.7,
            com=(0.0, 0.0, 0.05),
            radius=0.05,
        ),
        Link("fr3_link8", comment="the flange"),
        Link(
            "fr3_hand",
            (_cyl_z(0.0, 0.01, 0.04, "fr3_dark"), Shape("box", (0.06, 0.2, 0.05), (0.0, 0.0, 0.035))),
            mass=0.73,
            com=(0.0, 0.0, 0.03),
            radius=0.05,
        ),
        Link(
            "fr3_leftfinger",
            (Shape("box", (0.02, 0.016, 0.052), (0.0, 0.008, 0.027), material="fr3_dark"),),
            mass=0.015,
            com=(0.0, 0.008, 0.027),
            radius=0.01,
        ),
        Link(
            "fr3_rightfinger",
            (Shape("box", (0.02, 0.016, 0.052), (0.0, -0.008, 0.027), material="fr3_dark"),),
            mass=0.015,
            com=(0.0, -0.008, 0.027),
            radius=0.01,
        ),
        Link("fr3_hand_tcp", comment="tool centre point, between the fingertips"),
        Link(
            "wrist_camera_link",
            (Shape("box", (0.023, 0.042, 0.042), (-0.0115, 0.0, 0.0), material="camera_black"),),
            mass=0.06,
            com=(-0.0115, 0.0, 0.0),
            radius=0.02,
            comment="a D405-sized box (42 x 42 x 23 mm) whose front face is at the link origin",
        ),
        Link("wrist_camera_optical_frame", comment="REP-103 optical frame: z forward, x right, y down"),
    )


def _dh_origin(
    a: float, d: float, alpha: float
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """URDF origin (xyz, rpy) of Rx(alpha) Tx(a) Tz(d): the modified-DH transform before the joint's Rz(q)."""
    s, c = math.sin(alpha), math.cos(alpha)
    s, c = (round(s) if abs(s - round(s)) < 1e-15 else s), (round(c) if abs(c - round(c)) < 1e-15 else c)
    return (a, -d * s, d * c), (alpha, 0.0, 0.0)


def joints() -> tuple[Joint, ...]:
    """All joints: the base joint, the 7 revolute DH joints, then fixed flange, hand, tcp, fingers, camera."""
    out = [Joint("base_joint", "fixed", "base", "fr3_link0", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))]
    for i, (name, a, d, alpha) in enumerate(DH):
        xyz, rpy = _dh_origin(a, d, alpha)
        limit = (*LIMITS[i], VELOCITY[i], EFFORT[i])
        out.append(Joint(name, "revolute", f"fr3_link{i}", f"fr3_link{i + 1}", xyz, rpy, limit))
    out += [
        Joint("fr3_joint8", "fixed", "fr3_link7", "fr3_link8", (0.0, 0.0, FLANGE_D), (0.0, 0.0, 0.0)),
        Joint("fr3_hand_joint", "fixed", "fr3_link8", "fr3_hand", (0.0, 0.0, 0.0), (0.0, 0.0, HAND_YAW)),
        Joint("fr3_hand_tcp_joint", "fixed", "fr3_hand", "fr3_hand_tcp", (0.0, 0.0, TCP_Z), (0.0, 0.0, 0.0)),
        Joint(
            "fr3_finger_joint1",
            "fixed",
            "fr3_hand",
            "fr3_leftfinger",
            (0.0, FINGER_OPEN, FINGER_Z),
            (0.0, 0.0, 0.0),
            comment="fingers are FIXED (fully open) so the model stays 7-DoF (franka_description: prismatic)",
        ),
        Joint(
            "fr3_finger_joint2",
            "fixed",
            "fr3_hand",
            "fr3_rightfinger",
            (0.0, -FINGER_OPEN, FINGER_Z),
            (0, 0, 0),
        ),
        Joint(
            "wrist_camera_joint",
            "fixed",
            "fr3_hand",
            "wrist_camera_link",
            CAMERA_XYZ,
            CAMERA_RPY,
            comment="the default camera mount; description.load_urdf(mount) replaces parent and origin",
        ),
        Joint(
            "wrist_camera_optical_joint",
            "fixed",
            "wrist_camera_link",
            "wrist_camera_optical_frame",
            (0.0, 0.0, 0.0),
            OPTICAL_RPY,
        ),
    ]
    return tuple(out)


def _num(x: float) -> str:
    """Shortest text that reads back as the same double ('0' and '1' for integers)."""
    x = float(x) + 0.0  # turn -0.0 into 0.0
    return str(int(x)) if x.is_integer() else repr(x)


def _vec(v: tuple[float, ...]) -> str:
    return " ".join(_num(x) for x in v)


def _geo(v: tuple[float, ...]) -> str:
    """Geometry numbers (sizes, offsets of shapes) to 0.1 micrometre: no float noise in the file."""
    return " ".join(_num(round(x, 7)) for x in v)


def _geometry(shape: Shape) -> str:
    if shape.kind == "cylinder":
        return f'<cylinder radius="{_geo(shape.size[:1])}" length="{_geo(shape.size[1:])}"/>'
    if shape.kind == "box":
        return f'<box size="{_geo(shape.size)}"/>'
    if shape.kind == "sphere":
        return f'<sphere radius="{_geo(shape.size[:1])}"/>'
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def _link_xml(link: Link) -> list[str]:
    if not link.shapes and not link.mass:
        lines = [f'  <link name="{link.name}"/>']
        return ([f"  <!-- {link.comment} -->"] if link.comment else []) + lines
    lines = [f"  <!-- {link.comment} -->"] if link.comment else []
    lines.append(f'  <link name="{link.name}">')
    if link.mass:
        i = 0.4 * link.mass * link.radius**2
        lines += [
            "    <inertial>",
            f'      <origin xyz="{_geo(link.com)}" rpy="0 0 0"/>',
            f'      <mass value="{_num(link.mass)}"/>',
            f'      <inertia ixx="{i:.6g}" ixy="0" ixz="0" iyy="{i:.6g}" iyz="0" izz="{i:.6g}"/>',
            "    </inertial>",
        ]
    for tag in ("visual", "collision"):
        for shape in link.shapes:
            lines.append(f"    <{tag}>")
            lines.append(f'      <origin xyz="{_geo(shape.xyz)}" rpy="{_vec(shape.rpy)}"/>')
            lines.append(f"      <geometry>{_geometry(shape)}</geometry>")
            if tag == "visual":
                lines.append(f'      <material name="{shape.material}"/>')
            lines.append(f"    </{tag}>")
    lines.append("  </link>")
    return lines


def _joint_xml(joint: Joint) -> list[str]:
    lines = [f"  <!-- {joint.comment} -->"] if joint.comment else []
    lines += [
        f'  <joint name="{joint.name}" type="{joint.kind}">',
        f'    <parent link="{joint.parent}"/>',
        f'    <child link="{joint.child}"/>',
        f'    <origin xyz="{_vec(joint.xyz)}" rpy="{_vec(joint.rpy)}"/>',
    ]
    if joint.kind == "revolute":
        lo, hi, vel, eff = joint.limit  # type: ignore[misc]
        lines.append('    <axis xyz="0 0 1"/>')
        lines.append(
            f'    <limit lower="{_num(lo)}" upper="{_num(hi)}" velocity="{_num(vel)}" effort="{_num(eff)}"/>'
        )
    lines.append("  </joint>")
    return lines


def build_urdf() -> str:
    """The full URDF text."""
    lines = [
        '<?xml version="1.0"?>',
        "<!-- GENERATED by `python -m spatial_memory.robot.generate_urdf`; edit that script, not this file.",
        "     Franka FR3 with a fixed open hand and a wrist camera. Kinematics: Franka's modified DH",
        "     parameters at full double precision. Geometry: simple primitives, not Franka's meshes.",
        "     Masses and inertias are plausible placeholders for a kinematic model, not for dynamics. -->",
        '<robot name="fr3">',
        "  <!-- MuJoCo: keep fixed-joint links as bodies (FK and camera frames), keep visual geoms -->",
        "  <mujoco>",
        '    <compiler fusestatic="false" discardvisual="false" balanceinertia="true"/>',
        "  </mujoco>",
    ]
    for name, rgba in MATERIALS.items():
        lines.append(f'  <material name="{name}"><color rgba="{_vec(rgba)}"/></material>')
    joint_by_child = {j.child: j for j in joints()}
    for link in links():
        if link.name in joint_by_child:
            lines += _joint_xml(joint_by_child[link.name])
        lines += _link_xml(link)
    lines.append("</robot>")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the URDF (or with --check, compare it with the file on disk); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="URDF path (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    text = build_urdf()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != text:
            log.error("%s is out of date: run python -m spatial_memory.robot.generate_urdf", args.output)
            return 1
        log.info("%s is up to date", args.output)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

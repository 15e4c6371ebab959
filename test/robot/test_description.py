"""The FR3 URDF and its MuJoCo spec: names, limits, frames, the wrist camera and attaching into a world."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from spatial_memory.errors import ConfigError
from spatial_memory.robot import generate_urdf
from spatial_memory.robot.description import (
    ARM_JOINTS,
    MJ_CAMERA,
    MOUNT_PARENTS,
    CameraMount,
    joint_limits,
    load_mjspec,
    load_urdf,
)
from spatial_memory.robot.kinematics import FR3Kinematics

LINKS = {
    "base",
    *(f"fr3_link{i}" for i in range(9)),
    "fr3_hand",
    "fr3_hand_tcp",
    "fr3_leftfinger",
    "fr3_rightfinger",
    "wrist_camera_link",
    "wrist_camera_optical_frame",
}
FIXED = {
    "base_joint",
    "fr3_joint8",
    "fr3_hand_joint",
    "fr3_hand_tcp_joint",
    "fr3_finger_joint1",
    "fr3_finger_joint2",
    "wrist_camera_joint",
    "wrist_camera_optical_joint",
}
LIMITS = {  # Franka FR3 datasheet (rad)
    "fr3_joint1": (-2.7437, 2.7437),
    "fr3_joint2": (-1.7837, 1.7837),
    "fr3_joint3": (-2.9007, 2.9007),
    "fr3_joint4": (-3.0421, -0.1518),
    "fr3_joint5": (-2.8065, 2.8065),
    "fr3_joint6": (0.5445, 4.5169),
    "fr3_joint7": (-3.0159, 3.0159),
}
HOME = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])


def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()])


def _rpy(rpy) -> np.ndarray:
    r, p, y = rpy
    Rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    Ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


@pytest.fixture(scope="module")
def urdf() -> ET.Element:
    return ET.fromstring(load_urdf())


@pytest.fixture(scope="module")
def kin() -> FR3Kinematics:
    return FR3Kinematics()


def test_committed_urdf_is_the_generator_output(repo_root):
    assert (repo_root / "urdf" / "fr3.urdf").read_text() == generate_urdf.build_urdf(), (
        "urdf/fr3.urdf is stale: run python -m spatial_memory.robot.generate_urdf"
    )
    assert generate_urdf.main(["--check", "--output", str(repo_root / "urdf" / "fr3.urdf")]) == 0


def test_generator_check_flags_a_stale_file_and_writes_a_fresh_one(tmp_path):
    path = tmp_path / "fr3.urdf"
    path.write_text("<robot/>")
    assert generate_urdf.main(["--check", "--output", str(path)]) == 1
    assert generate_urdf.main(["--output", str(path)]) == 0
    assert generate_urdf.main(["--check", "--output", str(path)]) == 0


def test_urdf_links_and_joints_follow_franka_description(urdf):
    links = {link.get("name") for link in urdf.findall("link")}
    assert links == LINKS
    joints = {j.get("name"): j for j in urdf.findall("joint")}
    assert set(joints) == set(ARM_JOINTS) | FIXED
    assert all(joints[n].get("type") == "fixed" for n in FIXED)
    # A tree rooted at `base`: every link but the root is the child of exactly one joint.
    children = [j.find("child").get("link") for j in joints.values()]
    assert sorted(children) == sorted(LINKS - {"base"})
    assert all(j.find("parent").get("link") in LINKS for j in joints.values())
    assert urdf.find("mujoco/compiler").get("fusestatic") == "false"
    assert urdf.find("mujoco/compiler").get("discardvisual") == "false"


def test_revolute_joints_axes_and_limits_match_the_kinematics(urdf, kin):
    revolute = [j for j in urdf.findall("joint") if j.get("type") == "revolute"]
    assert tuple(j.get("name") for j in revolute) == ARM_JOINTS == kin.joint_names
    for i, j in enumerate(revolute):
        name = j.get("name")
        assert (
            j.find("parent").get("link") == f"fr3_link{i}"
            and j.find("child").get("link") == f"fr3_link{i + 1}"
        )
        np.testing.assert_array_equal(_floats(j.find("axis").get("xyz")), [0, 0, 1])
        limit = j.find("limit")
        lo, hi = float(limit.get("lower")), float(limit.get("upper"))
        assert (lo, hi) == LIMITS[name] == (kin.lower[i], kin.upper[i])
        assert float(limit.get("velocity")) == (2.62 if i < 4 else 5.26)
        assert float(limit.get("effort")) == (87.0 if i < 4 else 12.0)
    lower, upper = joint_limits()
    np.testing.assert_array_equal(lower, kin.lower)
    np.testing.assert_array_equal(upper, kin.upper)


def test_every_geometric_link_has_visual_and_collision_shapes(urdf):
    for link in urdf.findall("link"):
        visuals, collisions = link.findall("visual"), link.findall("collision")
        assert len(visuals) == len(collisions)
        for v in visuals:
            assert v.find("geometry")[0].tag in ("cylinder", "box", "sphere")
            assert v.find("material") is not None
    named = {m.get("name") for m in urdf.findall("material")}
    used = {m.get("name") for m in urdf.iter("material") if m.find("color") is None}
    assert used <= named


def test_optical_frame_follows_rep_103(urdf, kin):
    """Optical z (forward) = camera link x, optical x (right) = -camera link y, optical y (down) = -z."""
    joint = urdf.find("joint[@name='wrist_camera_optical_joint']")
    R = _rpy(_floats(joint.find("origin").get("rpy")))
    np.testing.assert_allclose(R[:, 2], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(R[:, 0], [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(R[:, 1], [0, 0, -1], atol=1e-15)
    T_link = kin.forward(HOME, "wrist_camera_link")
    T_opt = kin.forward(HOME, "wrist_camera_optical_frame")
    np.testing.assert_allclose(T_opt[:3, 2], T_link[:3, 0], atol=1e-12)
    np.testing.assert_allclose(T_opt[:3, 0], -T_link[:3, 1], atol=1e-12)
    np.testing.assert_allclose(T_opt[:3, 3], T_link[:3, 3], atol=1e-12)


def test_default_camera_looks_along_the_gripper_approach_direction(kin, urdf):
    joint = urdf.find("joint[@name='wrist_camera_joint']")
    mount = CameraMount()
    assert joint.find("parent").get("link") == mount.parent == "fr3_hand"
    np.testing.assert_array_equal(_floats(joint.find("origin").get("xyz")), mount.xyz)
    np.testing.assert_array_equal(_floats(joint.find("origin").get("rpy")), mount.rpy)
    T_hand = kin.forward(HOME, "fr3_hand")
    T_opt = kin.camera_pose(HOME)
    np.testing.assert_allclose(T_opt[:3, 2], T_hand[:3, 2], atol=1e-12)  # optical z = hand z
    # At home the hand points down: the camera looks at the floor, image top toward the robot's front.
    np.testing.assert_allclose(T_opt[:3, 2], [0, 0, -1], atol=1e-12)
    assert T_opt[0, 1] < -0.99  # optical y (image down) = world -x


def test_load_urdf_with_a_mount_rewrites_only_the_camera_joint():
    mount = CameraMount(parent="fr3_link7", xyz=(0.01, 0.02, 0.03), rpy=(0.1, 0.2, 0.3))
    default, moved = ET.fromstring(load_urdf()), ET.fromstring(load_urdf(mount))
    joint = moved.find("joint[@name='wrist_camera_joint']")
    assert joint.find("parent").get("link") == "fr3_link7"
    np.testing.assert_array_equal(_floats(joint.find("origin").get("xyz")), mount.xyz)
    np.testing.assert_array_equal(_floats(joint.find("origin").get("rpy")), mount.rpy)
    for a, b in zip(default.findall("joint"), moved.findall("joint"), strict=True):
        if a.get("name") != "wrist_camera_joint":
            assert ET.tostring(a) == ET.tostring(b)
    assert load_urdf() == load_urdf(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"parent": "wrist_camera_link"},
        {"parent": "fr3_link9"},
        {"xyz": (0.0, 0.0)},
        {"xyz": (0.0, float("nan"), 0.0)},
        {"rpy": (0.0, 0.0, float("inf"))},
        {"rpy": "abc"},
    ],
)
def test_bad_camera_mounts_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        CameraMount(**kwargs)


def test_camera_mount_coerces_lists_to_float_tuples_and_gives_its_matrix():
    mount = CameraMount(xyz=[0, 0, 1], rpy=[0, 0, 0])
    assert mount.xyz == (0.0, 0.0, 1.0) and isinstance(mount.rpy, tuple)
    np.testing.assert_array_equal(
        mount.matrix(), np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    )
    assert "fr3_hand" in MOUNT_PARENTS and "wrist_camera_optical_frame" not in MOUNT_PARENTS


def test_mjspec_has_the_wrist_camera_looking_along_optical_z(random_configs):
    spec = load_mjspec(fovy_deg=70.0)
    model = spec.compile()
    data = mujoco.MjData(model)
    cam = model.camera(MJ_CAMERA).id
    body = model.body("wrist_camera_optical_frame").id
    assert model.cam_fovy[cam] == pytest.approx(70.0)
    for q in random_configs[:20]:
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_camlight(model, data)
        R_cam = data.cam_xmat[cam].reshape(3, 3)
        R_opt = data.xmat[body].reshape(3, 3)
        np.testing.assert_allclose(-R_cam[:, 2], R_opt[:, 2], atol=1e-12)  # MuJoCo looks along its -z
        np.testing.assert_allclose(-R_cam[:, 1], R_opt[:, 1], atol=1e-12)  # its +y is up, optical +y down
        np.testing.assert_allclose(R_cam[:, 0], R_opt[:, 0], atol=1e-12)
        np.testing.assert_allclose(data.cam_xpos[cam], data.xpos[body], atol=1e-12)


def test_mjspec_renders_visual_geoms_and_hides_collision_geoms():
    model = load_mjspec().compile()
    collision = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    assert collision.any() and (~collision).any()
    assert set(model.geom_group[collision]) == {3}
    assert set(model.geom_group[~collision]) == {1}
    assert model.nq == 7 and model.nbody == len(LINKS) + 1  # + MuJoCo's world body
    with pytest.raises(ConfigError):
        load_mjspec(fovy_deg=0.0)


@pytest.fixture(scope="module")
def random_configs(kin) -> np.ndarray:
    return np.random.default_rng(7).uniform(kin.lower, kin.upper, size=(100, 7))


@pytest.mark.parametrize(("how", "prefix"), [("attach_body", "fr3/"), ("spec.attach", "robot/")])
def test_attached_robot_fk_equals_base_offset_times_fk(kin, random_configs, how, prefix):
    """Attach into an empty world at a rotated, offset frame; every body = T_world_base @ FK."""
    yaw = 0.7
    T_world_base = np.eye(4)
    T_world_base[:3, :3] = _rpy((0.0, 0.0, yaw))
    T_world_base[:3, 3] = (0.4, -0.3, 0.75)
    world = mujoco.MjSpec()
    frame = world.worldbody.add_frame(
        pos=T_world_base[:3, 3].tolist(), quat=[math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    )
    robot = load_mjspec()
    if how == "attach_body":
        frame.attach_body(robot.body("base"), prefix, "")
    else:
        world.attach(robot, prefix=prefix, frame=frame)
    model = world.compile()
    data = mujoco.MjData(model)
    assert model.nq == 7
    adr = [model.jnt_qposadr[model.joint(prefix + n).id] for n in ARM_JOINTS]
    np.testing.assert_allclose(
        model.jnt_range[[model.joint(prefix + n).id for n in ARM_JOINTS]],
        np.column_stack([kin.lower, kin.upper]),
    )  # still radians in a world spec
    assert model.camera(prefix + MJ_CAMERA).id >= 0
    for q in random_configs[:20]:
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        for name, T in kin.forward_all(q).items():
            b = model.body(prefix + name).id
            expected = T_world_base @ T
            np.testing.assert_allclose(data.xpos[b], expected[:3, 3], atol=1e-12)
            np.testing.assert_allclose(data.xmat[b].reshape(3, 3), expected[:3, :3], atol=1e-12)


# ------------------------------------------------------------------ the mobile base, for RViz's robot model


def test_with_mobile_base_adds_a_drawn_link_above_the_arm_root():
    from spatial_memory.robot.description import urdf_tf_edges, with_mobile_base

    text = with_mobile_base(load_urdf(), "base_link", 0.3, 0.35, 0.05, xyz=(0.1, 0.0, 0.35))
    root = ET.fromstring(text)
    link = root.find("link[@name='base_link']")
    cylinder = link.find("visual/geometry/cylinder")
    assert float(cylinder.get("radius")) == 0.3 and float(cylinder.get("length")) == pytest.approx(0.30)
    assert float(link.find("visual/origin").get("xyz").split()[2]) == pytest.approx(0.20)  # 0.05 .. 0.35
    joint = root.find("joint[@name='base_link_to_base']")
    assert (joint.find("parent").get("link"), joint.find("child").get("link")) == ("base_link", "base")
    assert joint.find("origin").get("xyz") == "0.1 0.0 0.35"
    # one tree: base_link is the only root, every FR3 link hangs below it (what RViz's model needs)
    children = {j.find("child").get("link") for j in root.findall("joint")}
    roots = {lk.get("name") for lk in root.findall("link")} - children
    assert roots == {"base_link"}
    assert {e.child for e in urdf_tf_edges(text)} >= {e.child for e in urdf_tf_edges(load_urdf())}


@pytest.mark.parametrize(
    ("parent", "radius", "height", "clearance"),
    [("base", 0.3, 0.35, 0.0), ("", 0.3, 0.35, 0.0), ("base_link", 0.0, 0.35, 0.0),
     ("base_link", 0.3, 0.1, 0.2), ("fr3_link0", 0.3, 0.35, 0.0)],
)  # fmt: skip
def test_with_mobile_base_refuses_what_would_not_draw(parent, radius, height, clearance):
    from spatial_memory.robot.description import with_mobile_base

    with pytest.raises(ConfigError):
        with_mobile_base(load_urdf(), parent, radius, height, clearance)

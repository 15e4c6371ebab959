"""The FR3's silhouette from joint states matches what the simulated head camera sees of the arm."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import invert, make_pose
from spatial_memory.resources import share_path
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.robot.silhouette import ArmSilhouette, Primitive, urdf_primitives
from spatial_memory.sim.mobile_robot import HEAD_CAMERA, MobileFR3Sim, MobileRobotConfig, box_room_spec

POSES = (
    [0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8],
    [0.5, 0.3, 0.0, -1.5, 0.0, 1.9, 0.8],
    [-0.6, 0.6, 0.2, -1.2, 0.3, 2.2, 0.0],
)


@pytest.fixture(scope="module")
def sim():
    s = MobileFR3Sim(box_room_spec((4.0, 3.0)), MobileRobotConfig())
    s.reset(1.0, 1.5, 0.0)
    yield s
    s.close()


@pytest.fixture(scope="module")
def silhouette():
    return ArmSilhouette(FR3Kinematics(), urdf_primitives(share_path("urdf/fr3.urdf")))


def test_every_link_with_geometry_gives_primitives():
    prims = urdf_primitives(share_path("urdf/fr3.urdf"))
    links = {p.link for p in prims}
    assert {f"fr3_link{i}" for i in range(8)} <= links and "fr3_hand" in links
    assert all(p.points.ndim == 2 and p.points.shape[1] == 3 and len(p.points) >= 8 for p in prims)


@pytest.mark.parametrize("q", POSES)
def test_the_mask_covers_the_rendered_arm(sim, silhouette, q):
    """Ground truth: the pixels whose depth changes when the robot's geoms are hidden from the render."""
    sim.set_joints(np.array(q))
    T_world_cam = sim.camera_pose(HEAD_CAMERA)
    _, with_robot = sim.render_view(T_world_cam, HEAD_CAMERA, hide_robot=False)
    _, without = sim.render_view(T_world_cam, HEAD_CAMERA, hide_robot=True)
    arm = np.abs(with_robot - without) > 0.01
    cam = sim.config.head_camera
    T_cam_base = invert(sim.T_base_camera(HEAD_CAMERA)) @ sim.config.T_base_arm()
    mask = silhouette.mask(sim.q, sim.intrinsics(HEAD_CAMERA), T_cam_base, cam.width, cam.height)
    assert arm.sum() > 500  # the arm is in view
    assert (mask & arm).sum() / arm.sum() > 0.99  # every arm pixel is masked
    assert (mask & arm).sum() / (mask | arm).sum() > 0.9  # and little else
    wider = silhouette.mask(
        sim.q, sim.intrinsics(HEAD_CAMERA), T_cam_base, cam.width, cam.height, margin_px=4
    )
    assert wider.sum() > mask.sum() and not (mask & ~wider).any()


def test_an_arm_behind_the_camera_leaves_the_image_free(silhouette):
    K = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 60.0], [0.0, 0.0, 1.0]])
    behind = make_pose(translation=np.array([0.0, 0.0, -5.0]))  # the arm 5 m behind the camera
    assert not silhouette.mask(FR3Kinematics().home, K, behind, 160, 120).any()


def test_bad_input_is_refused(tmp_path, silhouette):
    (tmp_path / "bad.urdf").write_text("<robot><link name='a'><visual><geometry><mesh filename='x.stl'/>")
    with pytest.raises(InvalidInputError, match="cannot read"):
        urdf_primitives(tmp_path / "bad.urdf")
    with pytest.raises(InvalidInputError, match="does not know"):
        ArmSilhouette(FR3Kinematics(), [Primitive("no_such_link", "box", np.zeros((8, 3)))])
    with pytest.raises(InvalidInputError):
        silhouette.mask(FR3Kinematics().home, np.eye(2), np.eye(4), 160, 120)
    with pytest.raises(InvalidInputError):
        silhouette.mask(FR3Kinematics().home, np.eye(3), np.ones((4, 4)), 160, 120)

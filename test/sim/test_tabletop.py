"""The tabletop scene: cameras agree with forward kinematics, depth agrees with geometry, seeds are exact."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.sim.tabletop import EXO_CAMERA, WRIST_CAMERA, TabletopConfig, TabletopScene, look_at


@pytest.fixture(scope="module")
def scene():
    with TabletopScene(TabletopConfig(seed=3, width=160, height=120)) as s:
        yield s


def _random_joints(scene: TabletopScene, rng: np.random.Generator) -> np.ndarray:
    k = scene.kinematics
    return rng.uniform(k.lower, k.upper)


def test_rendered_wrist_camera_pose_equals_base_composed_with_fk(scene):
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = scene.set_joints(_random_joints(scene, rng))
        expected = scene.T_world_base @ scene.kinematics.camera_pose(q)
        np.testing.assert_allclose(scene.camera_pose(WRIST_CAMERA), expected, atol=1e-9)


def test_exo_camera_looks_at_its_target(scene):
    cfg = scene.config
    T = scene.camera_pose(EXO_CAMERA)
    direction = np.subtract(cfg.exo_camera_target, cfg.exo_camera_position)
    np.testing.assert_allclose(T[:3, 2], direction / np.linalg.norm(direction), atol=1e-6)
    assert T[2, 1] < 0  # optical y (image down) points down in the world


def test_depth_at_projected_object_matches_its_distance(scene):
    """Project an object centre with K and the camera pose: the rendered depth there is its front surface."""
    model, data = scene.model, scene.data
    scene.set_joints(scene.kinematics.home)
    T_cam_world = np.linalg.inv(scene.camera_pose(EXO_CAMERA))
    K = scene.intrinsics(EXO_CAMERA)
    depth = scene.render_depth(EXO_CAMERA)
    checked = 0
    for b in range(model.nbody):
        name = model.body(b).name
        if not name.startswith("obj"):
            continue
        p = T_cam_world @ np.append(data.xpos[b], 1.0)
        u, v, _ = K @ (p[:3] / p[2])
        if not (0 <= round(u) < depth.shape[1] and 0 <= round(v) < depth.shape[0]):
            continue
        d = depth[round(v), round(u)]
        if abs(d - p[2]) < 0.2:  # not hidden behind the arm or another object
            checked += 1
            assert d <= p[2] + 0.01, f"{name}: surface behind the centre ({d:.3f} > {p[2]:.3f})"
    assert checked >= 3, "too few objects visible to check depth against geometry"


def test_same_seed_same_images_other_seed_other_images():
    images = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        with TabletopScene(TabletopConfig(seed=seed, width=96, height=72)) as s:
            images[name] = s.render(EXO_CAMERA).astype(int)
    np.testing.assert_array_equal(images["a"], images["b"])
    assert np.abs(images["c"] - images["a"]).mean() > 1.0


def test_bad_input_is_rejected(scene):
    with pytest.raises(ConfigError):
        TabletopConfig(width=4)
    with pytest.raises(InvalidInputError):
        scene.render("no_such_camera")
    with pytest.raises(ValueError):
        scene.set_joints(np.full(7, np.nan))
    with pytest.raises(InvalidInputError):
        look_at(np.zeros(3), np.array([0.0, 0.0, -1.0]))

"""Query images with ground truth: render_view matches the robot cameras, the overlap test is right on
synthetic geometry, seen and unseen queries keep their documented ranges and labels, and every query's
ground truth is what the renderer shows from that pose."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
from scipy import ndimage

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert, make_pose, yaw_pose
from spatial_memory.sim.arm_motion import LOOKOUT_POSE
from spatial_memory.sim.mobile_robot import (
    HEAD_CAMERA,
    QUERY_CAMERA,
    WRIST_CAMERA,
    CameraConfig,
    MobileFR3Sim,
    MobileRobotConfig,
)
from spatial_memory.sim.planning import OccupancyGrid, room_centres
from spatial_memory.sim.queries import (
    DepthFrame,
    QueryConfig,
    QuerySample,
    QuerySampler,
    depth_overlap,
    heading_and_pitch,
    level_camera_pose,
    subsample_depth,
)
from spatial_memory.sim.world_scene import build_world_spec
from spatial_memory.sim.worlds import World, WorldConfig, generate_world

SIZE = 64
CAM = CameraConfig(width=SIZE, height=SIZE, fovy_deg=60.0)
ROBOT = MobileRobotConfig(head_camera=CAM, wrist_camera=CameraConfig(width=48, height=48, fovy_deg=58.0))
LOOK_STEPS = 40  # a full turn in place, one head frame per step
CONFIG = QueryConfig(min_age_steps=5)


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(seed=3, width_m=9.0, depth_m=7.0, num_rooms=3))


@pytest.fixture(scope="module")
def grid(world) -> OccupancyGrid:
    return OccupancyGrid.from_world(world)


@pytest.fixture(scope="module")
def sim(world, grid) -> MobileFR3Sim:
    spec = build_world_spec(world, texture_px=32, offscreen=(SIZE, SIZE))
    with MobileFR3Sim(spec, ROBOT, is_free=grid.is_free) as s:
        yield s


@pytest.fixture(scope="module")
def looked(sim, world) -> dict:
    """The robot turns once in place in room 0: its head frames (full-resolution depth), its final pose."""
    sim.reset(*room_centres(world)[0], 0.0)
    frames = []
    for t in range(LOOK_STEPS):
        frames.append((t, sim.camera_pose(HEAD_CAMERA), sim.render_depth(HEAD_CAMERA)))
        sim.step(0.0, 2 * math.pi / LOOK_STEPS / 0.1, 0.1)
    return {"frames": frames, "K": sim.intrinsics(HEAD_CAMERA), "T_world_base": sim.T_world_base}


def _sampler(sim, grid, looked, config: QueryConfig = CONFIG, seed: int = 7) -> QuerySampler:
    sampler = QuerySampler(sim, grid, config, seed)
    for t, T, depth in looked["frames"]:
        sampler.observe(t, T, depth, looked["K"])
    return sampler


def _samples(sampler: QuerySampler, looked: dict, n: int) -> list[QuerySample]:
    out = [sampler.sample(LOOK_STEPS, looked["T_world_base"]) for _ in range(n)]
    assert sum(s is None for s in out) <= n // 4, "too many queries failed"
    return [s for s in out if s is not None]


def _robot_state(sim: MobileFR3Sim) -> tuple:
    poses = [sim.camera_pose(name).tolist() for name in (HEAD_CAMERA, WRIST_CAMERA)]
    return sim.pose2d, sim.q.tolist(), sim.stamp_ns, sim.T_world_base.tolist(), poses


# ---------------------------------------------------------------------------------------------- render_view
def test_render_view_at_a_robot_camera_equals_its_render(sim, world):
    sim.reset(*room_centres(world)[1], 0.7, q=LOOKOUT_POSE)
    before = _robot_state(sim)
    for name in (HEAD_CAMERA, WRIST_CAMERA):
        rgb, depth = sim.render_rgbd(name)
        view_rgb, view_depth = sim.render_view(sim.camera_pose(name), like=name, hide_robot=False)
        assert view_rgb.shape == rgb.shape and view_depth.dtype == np.float32
        np.testing.assert_array_equal(view_rgb, rgb)  # the same camera pose, optics and scene: exact
        np.testing.assert_array_equal(view_depth, depth)
    assert _robot_state(sim) == before


def test_hiding_the_robot_removes_only_robot_pixels(sim, world):
    sim.reset(*room_centres(world)[1], 0.7, q=LOOKOUT_POSE)  # the arm is in the head camera's view
    rgb, depth = sim.render_rgbd(HEAD_CAMERA)
    hidden_rgb, hidden_depth = sim.render_view(sim.camera_pose(HEAD_CAMERA), like=HEAD_CAMERA)
    with mujoco.Renderer(sim.model, SIZE, SIZE) as seg:
        seg.enable_segmentation_rendering()
        seg.update_scene(sim.data, camera=HEAD_CAMERA)
        ids, types = np.moveaxis(seg.render(), -1, 0)
    robot_bodies = sim.model.body_rootid[sim.model.geom_bodyid] == sim.model.body("base_link").id
    robot = (types == mujoco.mjtObj.mjOBJ_GEOM) & (ids >= 0) & robot_bodies[np.maximum(ids, 0)]
    assert robot.sum() > 20
    changed = hidden_depth != depth
    np.testing.assert_array_equal(changed, robot)  # depth changes exactly where the robot was...
    assert np.all(hidden_depth[robot] > depth[robot])  # ...to the world behind it
    # Colour may also change one pixel around the robot's outline: multisampling blends edge pixels.
    colour_changed = np.any(hidden_rgb != rgb, axis=-1)
    assert not np.any(colour_changed & ~ndimage.binary_dilation(robot))


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.render_view(np.eye(3)),
        lambda s: s.render_view(np.diag([1.0, 1.0, -1.0, 1.0])),  # a reflection
        lambda s: s.render_view(np.full((4, 4), np.nan)),
        lambda s: s.render_view(np.eye(4), like=QUERY_CAMERA),  # not a robot camera
        lambda s: s.render_view(np.eye(4), hide_robot="yes"),
    ],
)
def test_render_view_rejects_bad_input(sim, call):
    before = _robot_state(sim)
    with pytest.raises(InvalidInputError):
        call(sim)
    assert _robot_state(sim) == before


# ---------------------------------------------------------------------------------------------- overlap
F = 0.5 * SIZE / math.tan(math.radians(30.0))
K_SYN = np.array([[F, 0.0, (SIZE - 1) / 2], [0.0, F, (SIZE - 1) / 2], [0.0, 0.0, 1.0]])
WALL = np.full((SIZE, SIZE), 3.0, np.float32)  # a wall 3 m ahead of a camera looking along +z
VIEW_WIDTH = 3.0 * SIZE / F  # metres of wall across the image


def _frame(T: np.ndarray, depth: np.ndarray = WALL, stride: int = 1) -> DepthFrame:
    sub, K = subsample_depth(depth, K_SYN, stride)
    return DepthFrame(0, T, K, sub)


def _shifted(dx: float) -> np.ndarray:
    return make_pose(translation=np.array([dx, 0.0, 0.0]))


@pytest.mark.parametrize("stride", [1, 4])
def test_overlap_of_a_wall_seen_from_shifted_cameras(stride):
    eye = np.eye(4)

    def overlap(*frames: DepthFrame) -> float:
        return depth_overlap(WALL, K_SYN, eye, frames, stride=stride)

    assert overlap(_frame(eye, stride=stride)) == 1.0
    assert overlap(_frame(_shifted(VIEW_WIDTH + 0.5), stride=stride)) == 0.0  # beside it: disjoint
    assert overlap(_frame(_shifted(VIEW_WIDTH / 2), stride=stride)) == pytest.approx(0.5, abs=0.07)
    both = overlap(_frame(_shifted(VIEW_WIDTH / 2), stride=stride), _frame(_shifted(-VIEW_WIDTH / 2)))
    assert both == pytest.approx(1.0, abs=0.07)  # two half views, one each side, see all of it
    turned = make_pose(np.diag([-1.0, 1.0, -1.0]))  # the same place, looking the other way
    assert overlap(_frame(turned, stride=stride)) == 0.0
    assert overlap() == 0.0


def test_an_occluder_hides_the_wall_behind_it():
    occluded = WALL.copy()
    occluded[:, : SIZE // 2] = 1.0  # a box 1 m ahead covers the left half of the frame's view
    assert depth_overlap(WALL, K_SYN, np.eye(4), [_frame(np.eye(4), occluded)]) == pytest.approx(
        0.5, abs=0.05
    )
    # a camera that sees the box, not the wall behind it, makes only the box's surface seen
    nearer = WALL.copy()
    nearer[:, : SIZE // 2] = 1.0
    assert depth_overlap(nearer, K_SYN, np.eye(4), [_frame(np.eye(4), occluded)]) == 1.0


def test_pixels_without_a_surface_do_not_count():
    sky = WALL.copy()
    sky[: SIZE // 2] = np.inf  # nothing above the horizon
    assert depth_overlap(sky, K_SYN, np.eye(4), [_frame(np.eye(4))]) == 1.0
    assert depth_overlap(sky, K_SYN, np.eye(4), [_frame(np.eye(4), sky)]) == 1.0
    assert math.isnan(depth_overlap(np.full((8, 8), np.inf), K_SYN, np.eye(4), [_frame(np.eye(4))]))


def test_subsampled_depth_keeps_the_geometry():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 4.0, (SIZE, SIZE))
    sub, K = subsample_depth(depth, K_SYN, 4)
    v, u = 5, 9  # a stored sample and the full-resolution pixel it came from
    ray_sub = np.linalg.solve(K, [u, v, 1.0]) * sub[v, u]
    ray_full = np.linalg.solve(K_SYN, [2 + 4 * u, 2 + 4 * v, 1.0]) * depth[2 + 4 * v, 2 + 4 * u]
    np.testing.assert_allclose(ray_sub, ray_full, atol=1e-12)


def test_level_camera_pose_inverts_heading_and_pitch(sim):
    head = sim.camera_pose(HEAD_CAMERA)
    yaw, pitch = heading_and_pitch(head)
    assert pitch == pytest.approx(ROBOT.head_camera_rpy[1])  # the head camera looks 0.3 rad down
    np.testing.assert_allclose(level_camera_pose(head[:3, 3], yaw, pitch), head, atol=1e-12)


# ---------------------------------------------------------------------------------------------- queries
def _relative(T_source: np.ndarray, T_query: np.ndarray) -> tuple[float, float, float, float]:
    """(horizontal distance m, |yaw change| deg, |pitch change| deg, |height change| m)."""
    (ys, ps), (yq, pq) = heading_and_pitch(T_source), heading_and_pitch(T_query)
    d = T_query[:3, 3] - T_source[:3, 3]
    dyaw = abs(math.degrees(math.remainder(yq - ys, 2 * math.pi)))
    return float(np.hypot(d[0], d[1])), dyaw, abs(math.degrees(pq - ps)), abs(float(d[2]))


def test_seen_queries_are_near_an_old_enough_frame_and_mostly_seen(sim, grid, looked):
    sampler = _sampler(sim, grid, looked, QueryConfig(min_age_steps=5, unseen_fraction=0.0))
    poses = {t: T for t, T, _ in looked["frames"]}
    samples = _samples(sampler, looked, 12)
    for s in samples:
        q = s.query
        assert q.seen and q.overlap >= CONFIG.seen_min_overlap
        assert 0 <= q.source_step <= LOOK_STEPS - 5
        distance, dyaw, dpitch, dz = _relative(poses[q.source_step], s.T_world_query)
        assert CONFIG.offset_m[0] - 1e-9 <= distance <= CONFIG.offset_m[1] + 1e-9
        assert CONFIG.yaw_offset_deg[0] - 1e-6 <= dyaw <= CONFIG.yaw_offset_deg[1] + 1e-6
        assert dpitch <= CONFIG.pitch_jitter_deg + 1e-6 and dz <= CONFIG.height_jitter_m + 1e-9
        assert grid.is_free(*s.T_world_query[:2, 3])
        valid = (s.depth >= CONFIG.min_depth_m) & (s.depth <= CONFIG.max_depth_m)
        assert valid.mean() >= CONFIG.min_valid_fraction
    assert len({s.query.source_step for s in samples}) > 3


@pytest.mark.parametrize("free", ["grid", "callable"])
def test_unseen_queries_show_places_outside_the_room_it_looked_at(sim, grid, looked, world, free):
    cfg = QueryConfig(min_age_steps=5, unseen_fraction=1.0, max_tries=40)
    sampler = _sampler(sim, grid if free == "grid" else grid.is_free, looked, cfg)
    room = world.rooms[0]
    for s in _samples(sampler, looked, 6):
        q = s.query
        assert not q.seen and q.overlap <= CONFIG.unseen_max_overlap and q.source_step == -1
        assert grid.is_free(*s.T_world_query[:2, 3])
        points = _points(s.depth, s.K, s.T_world_query)
        inside = (points[:, 0] > room.x0) & (points[:, 0] < room.x1)
        inside &= (points[:, 1] > room.y0) & (points[:, 1] < room.y1)
        assert inside.mean() < 0.15, "an unseen query looks at the room the robot looked around"


def test_query_ground_truth_is_what_the_renderer_shows(sim, grid, looked):
    config = QueryConfig(min_age_steps=5, unseen_fraction=0.5)
    samples = _samples(_sampler(sim, grid, looked, config), looked, 8)
    assert {s.query.seen for s in samples} == {True, False}
    T_world_base = looked["T_world_base"]
    for s in samples:
        T_world_query = T_world_base @ s.query.T_base_query
        np.testing.assert_allclose(T_world_query, s.T_world_query, atol=1e-12)
        rgb, depth = sim.render_view(T_world_query, like=HEAD_CAMERA)
        np.testing.assert_array_equal(rgb, s.query.rgb)
        np.testing.assert_array_equal(depth, s.depth)
        np.testing.assert_array_equal(s.K, sim.intrinsics(HEAD_CAMERA))


def _points(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray, step: int = 2) -> np.ndarray:
    """World points (N, 3) of every `step`-th pixel of a depth map that sees a surface within 20 m."""
    v, u = np.mgrid[0 : depth.shape[0] : step, 0 : depth.shape[1] : step]
    z = depth[v, u].astype(np.float64)
    keep = z < 20.0
    rays = np.linalg.inv(K) @ np.stack([u[keep], v[keep], np.ones(keep.sum())])
    return (T_world_cam[:3, :3] @ (rays * z[keep]) + T_world_cam[:3, 3:4]).T


def test_seen_query_points_land_on_the_source_frames_surface(sim, grid, looked):
    """Independent of the sampler's overlap code: query depth, back-projected, reprojects into the source
    frame's full-resolution depth at the same surface for a good share of its pixels."""
    sampler = _sampler(sim, grid, looked, QueryConfig(min_age_steps=5, unseen_fraction=0.0))
    frames = {t: (T, depth) for t, T, depth in looked["frames"]}
    K = looked["K"]
    for s in _samples(sampler, looked, 6):
        T_src, depth_src = frames[s.query.source_step]
        P = _points(s.depth, s.K, s.T_world_query)
        p = invert(T_src)[:3, :3] @ P.T + invert(T_src)[:3, 3:4]
        uv = (K @ p)[:2] / p[2]
        iu, iv = np.round(uv).astype(int)
        inside = (p[2] > 0.1) & (iu >= 0) & (iu < SIZE) & (iv >= 0) & (iv < SIZE)
        found = np.zeros(len(P), bool)
        found[inside] = np.abs(depth_src[iv[inside], iu[inside]] - p[2][inside]) < 0.05 * p[2][inside] + 0.02
        assert found.mean() > 0.25, (
            f"only {found.mean():.2f} of the query's points are on the source's surface"
        )
        assert found.sum() >= 0.9 * inside.sum() - 0.1 * len(P)  # where the source looks, it mostly sees them


def test_the_same_seed_gives_the_same_queries(sim, grid, looked):
    config = QueryConfig(min_age_steps=5, unseen_fraction=0.5)

    def run(seed: int) -> list:
        sampler = _sampler(sim, grid, looked, config, seed)
        return [sampler.sample(LOOK_STEPS + k, looked["T_world_base"]) for k in range(4)]

    a, b, c = run(3), run(3), run(4)
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x.query.rgb, y.query.rgb)
            np.testing.assert_array_equal(x.query.T_base_query, y.query.T_base_query)
            assert (x.query.seen, x.query.overlap, x.query.source_step) == (
                y.query.seen,
                y.query.overlap,
                y.query.source_step,
            )
    poses = [None if s is None else s.T_world_query.tolist() for s in (*a, *c)]
    assert poses[:4] != poses[4:]


def test_no_seen_query_before_any_frame_is_old_enough(sim, grid, looked):
    sampler = QuerySampler(sim, grid, QueryConfig(min_age_steps=20, unseen_fraction=0.0), seed=0)
    for t, T, depth in looked["frames"][:5]:
        sampler.observe(t, T, depth, looked["K"])
    assert sampler.sample(10, looked["T_world_base"]) is None


def test_queries_are_due_every_n_steps(sim, grid):
    sampler = QuerySampler(sim, grid, QueryConfig(every_n_steps=25), seed=0)
    assert [t for t in range(101) if sampler.due(t)] == [25, 50, 75, 100]
    assert not any(QuerySampler(sim, grid, QueryConfig(every_n_steps=0)).due(t) for t in range(100))


# ---------------------------------------------------------------------------------------------- bad input
GOOD_DEPTH = np.full((SIZE, SIZE), 2.0, np.float32)


@pytest.mark.parametrize(
    "call",
    [
        lambda s, K: s.observe(12, np.eye(4), np.zeros((SIZE, SIZE, 1), np.float32), K),
        lambda s, K: s.observe(12, np.eye(4), np.zeros(SIZE, np.float32), K),
        lambda s, K: s.observe(12, np.eye(4), np.zeros((2, 2), np.float32), K),  # smaller than the stride
        lambda s, K: s.observe(12, np.eye(4), np.zeros((SIZE, SIZE), np.uint8), K),
        lambda s, K: s.observe(12, np.eye(4), -GOOD_DEPTH, K),
        lambda s, K: s.observe(12, np.diag([2.0, 1.0, 1.0, 1.0]), GOOD_DEPTH, K),  # not rigid
        lambda s, K: s.observe(12, np.full((4, 4), np.nan), GOOD_DEPTH, K),
        lambda s, K: s.observe(12, np.eye(4), GOOD_DEPTH, np.eye(2)),
        lambda s, K: s.observe(12, np.eye(4), GOOD_DEPTH, -K),
        lambda s, K: s.observe(9, np.eye(4), GOOD_DEPTH, K),  # step going backwards
        lambda s, K: s.observe(-1, np.eye(4), GOOD_DEPTH, K),
        lambda s, K: s.observe(12.0, np.eye(4), GOOD_DEPTH, K),
        lambda s, K: s.sample(9, np.eye(4)),  # step going backwards
        lambda s, K: s.sample(12, np.eye(3)),
        lambda s, K: s.sample(12, yaw_pose(1.0, 2.0, 0.3) * 1.5),
    ],
)
def test_bad_input_raises_and_changes_nothing(sim, grid, looked, call):
    config = QueryConfig(min_age_steps=2, unseen_fraction=0.5)
    sampler, fresh = (QuerySampler(sim, grid, config, seed=5) for _ in range(2))
    for s in (sampler, fresh):
        for t, T, depth in looked["frames"][:11]:
            s.observe(t, T, depth, looked["K"])
    with pytest.raises(InvalidInputError):
        call(sampler, looked["K"])
    assert sampler.num_frames == fresh.num_frames == 11
    a, b = sampler.sample(12, looked["T_world_base"]), fresh.sample(12, looked["T_world_base"])
    assert (a is None) == (b is None)
    if a is not None:
        np.testing.assert_array_equal(a.T_world_query, b.T_world_query)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every_n_steps": -1},
        {"unseen_fraction": 1.5},
        {"offset_m": (0.6, 0.2)},
        {"offset_m": 0.3},
        {"yaw_offset_deg": (-5.0, 30.0)},
        {"seen_min_overlap": 0.01},  # below unseen_max_overlap
        {"min_depth_m": 30.0},  # above max_depth_m
        {"max_tries": 0},
        {"depth_stride": 2.5},
        {"camera": "query_camera"},
        {"pitch_jitter_deg": float("nan")},
    ],
)
def test_config_is_validated(kwargs):
    with pytest.raises(ConfigError):
        QueryConfig(**kwargs)


def test_sampler_arguments_are_validated(sim, grid):
    with pytest.raises(ConfigError):
        QuerySampler(sim, "everywhere", CONFIG, 0)
    with pytest.raises(ConfigError):
        QuerySampler(sim, grid, {"every_n_steps": 5}, 0)
    with pytest.raises(ConfigError):
        QuerySampler(sim, grid, CONFIG, -3)

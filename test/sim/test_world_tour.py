"""Exploring generated worlds: the tour covers every room and comes back (early: within 40 s), never touches
an obstacle, is reproducible from its seed, plans lazily, refuses paths into walls; the compact arm scan
stays compact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.sim.exploration import (
    COMPACT_REACH_M,
    STOW_POSE,
    CompactScan,
    FollowPath,
    Script,
    TurnTo,
    run_script,
)
from spatial_memory.sim.mobile_robot import BASE_LINK, WRIST_CAMERA, MobileFR3Sim, box_room_spec
from spatial_memory.sim.presets import world_preset
from spatial_memory.sim.world_episode import dataset_robot
from spatial_memory.sim.world_scene import build_world_spec
from spatial_memory.sim.world_tour import WorldTour, WorldTourConfig, coverage, preview_paths
from spatial_memory.sim.worlds import World, generate_world

ROBOT = dataset_robot(64, 64)  # nothing is rendered here
DT = 1.0 / 15.0  # the episodes' control tick
TOLERANCE_M = 0.02  # the base may come this much closer to an obstacle than its radius (grid cells)


def _drive(world: World, ticks: int, seed: int = 0) -> tuple[WorldTour, Script, np.ndarray, list]:
    """Run the tour with the compact scan for `ticks` control ticks: (tour, script, base xy (T, 2), gts).

    After every tick the robot (base, mast and arm) must touch nothing: MuJoCo reports no penetration.
    """
    footprint = world.occupancy(inflate_m=ROBOT.footprint_radius_m)
    with MobileFR3Sim(build_world_spec(world, texture_px=16), ROBOT, is_free=footprint.is_free) as sim:
        tour = WorldTour(world, seed=seed)
        sim.reset(*tour.start_pose(), q=STOW_POSE)
        script = Script(tour, arm=CompactScan())
        steps = []
        for _ in range(ticks):
            cmd = script.command(sim.pose2d, sim.stamp_ns * 1e-9, sim.collided)
            steps.append(sim.step(cmd.v, cmd.omega, DT, q_target=cmd.q_target))
            assert sim.pose_is_free(*sim.pose2d)
    return tour, script, np.array([gt.T_world_base[:2, 3] for gt in steps]), steps


@pytest.fixture(scope="module")
def house() -> World:
    return generate_world(world_preset("house", seed=3))


@pytest.fixture(scope="module")
def house_run(house):
    return _drive(house, 2400, seed=3)  # 160 s: 800 steps at 5 Hz


# ---------------------------------------------------------------------------------------------- coverage
def _check_covered(world: World, run: tuple) -> None:
    tour, script, xy, steps = run
    cov = coverage(world, xy)
    assert sorted(cov.rooms_visited) == list(range(len(world.rooms))) and cov.room_fraction == 1.0
    assert cov.revisits >= 1
    assert cov.free_fraction > 0.5
    assert script.skipped == [] and not any(gt.collided or gt.arm_blocked for gt in steps)
    assert len(tour.paths) >= len(world.rooms) and {room for room, _ in tour.visits} == set(cov.rooms_visited)


def test_the_tour_visits_every_room_of_a_house_and_comes_back(house, house_run):
    assert len(house.rooms) == 4
    _check_covered(house, house_run)


def test_the_tour_comes_back_to_a_room_within_the_first_200_steps_at_5_hz(house, house_run):
    """Revisits are interleaved with the first tour: by 40 s (T = 200 steps at 5 Hz) the robot has been
    in three rooms and re-entered one it had left (the memory benchmarks query places seen earlier)."""
    tour, _, xy, _ = house_run
    cov = coverage(house, xy[: round(40.0 / DT)])
    assert len(cov.rooms_visited) >= 3 and cov.revisits >= 1
    early = [room for room, t_s in tour.visits if t_s <= 40.0]
    assert len(early) > len(set(early))  # the tour itself went back into a room


def test_returns_go_back_into_the_previous_room_and_can_be_turned_off(house):
    """Planned legs (first: the start spot itself): start room, next room, back into the start room; with
    `return_prob` 0 the first tour goes straight on from new room to new room."""
    tour = WorldTour(house, seed=3)

    def rooms(config: WorldTourConfig) -> list[int]:
        return [tour.room_of(*path[-1]) for path in preview_paths(house, config, seed=3, behaviours=6)[:3]]

    start, second, back = rooms(WorldTourConfig())
    assert start == back == tour.start_room != second
    assert len(set(rooms(WorldTourConfig(return_prob=0.0)))) == 3


def test_the_tour_visits_every_room_of_three_and_comes_back():
    world = generate_world(world_preset("house", 5, num_rooms=3))
    _check_covered(world, _drive(world, 1800, seed=5))


def test_the_base_never_enters_an_obstacle(house, house_run):
    """Every tick's base centre keeps the footprint radius (less a grid cell) from walls and furniture."""
    _, _, xy, _ = house_run
    near = house.occupancy(inflate_m=ROBOT.footprint_radius_m - TOLERANCE_M)
    assert near.free_at(xy).all()


def test_the_tour_passes_doorways_and_drives_in_reverse(house_run):
    _, _, _, steps = house_run
    assert min(gt.v for gt in steps) < -0.1  # a back-and-forth drive
    assert max(abs(gt.omega) for gt in steps) > 0.5  # look-around turns


# ---------------------------------------------------------------------------------------------- seeds
def test_same_seed_same_path_different_seed_different_path(house, house_run):
    _, _, xy, _ = house_run
    _, _, again, _ = _drive(generate_world(world_preset("house", seed=3)), 600, seed=3)
    np.testing.assert_array_equal(again, xy[:600])
    other_world = generate_world(world_preset("house", seed=4))
    _, _, other, _ = _drive(other_world, 600, seed=4)
    assert not np.allclose(other, xy[:600])
    a, b = (preview_paths(house, seed=3, behaviours=12) for _ in range(2))
    assert len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


# ---------------------------------------------------------------------------------------------- planning
def test_preview_paths_stay_on_the_free_space():
    world = generate_world(world_preset("apartment", seed=2))
    tour = WorldTour(world, seed=2)
    paths = preview_paths(world, seed=2, behaviours=40)
    assert len(paths) >= 9
    for path in paths:
        for a, b in zip(path[1:-1], path[2:], strict=True):  # the first point is where the robot stood
            assert tour.grid.segment_is_free(a, b)
    rooms = {world.room_at(*p) for path in paths for p in path}
    assert rooms >= set(range(len(world.rooms)))


def test_a_path_into_a_wall_or_off_the_map_is_a_clear_error(house):
    tour = WorldTour(house, seed=0)
    start = tour.start_pose()[:2]
    wall = house.walls[len(house.walls) // 2]
    into_wall = (0.5 * (wall.x0 + wall.x1), 0.5 * (wall.y0 + wall.y1))
    with pytest.raises(InvalidInputError, match="inside an obstacle"):
        tour.plan_to(start, into_wall)
    with pytest.raises(InvalidInputError, match="outside the map"):
        tour.plan_to(start, (-3.0, 1.0))
    with pytest.raises(InvalidInputError, match="outside the map"):
        tour.plan_to((50.0, 1.0), tour.room_spot(0))
    with pytest.raises(InvalidInputError, match="finite"):
        tour.plan_to((math.nan, 1.0), tour.room_spot(0))
    path = tour.plan_to(start, tour.room_spot(1, best=True))  # a good request still works
    assert np.allclose(path[0], start) and tour.grid.is_free(*path[-1])


def test_a_start_pressed_against_an_obstacle_steps_back_to_free_space(house):
    tour = WorldTour(house, seed=0)
    goal = tour.room_spot(0, best=True)
    main = tour.grid.labels == tour.grid.largest_component
    # within the planning radius of an obstacle but clear of the base's footprint, next to the free space
    band = tour.grid.occupied & ~house.occupancy(inflate_m=0.3).occupied & ndimage.binary_dilation(main)
    iy, ix = np.argwhere(band)[int(band.sum()) // 2]
    start = tour.grid.cell_to_world(np.array([ix, iy]))
    path = tour.plan_to(start, goal)
    assert np.allclose(path[0], start) and np.linalg.norm(path[1] - path[0]) < 0.2
    assert all(tour.grid.is_free(*p) for p in path[1:])


# ------------------------------------------------------------------------------------------ coverage stats
def test_coverage_counts_rooms_entries_and_revisits(house):
    a, b = (house.rooms[i].center for i in (0, 1))
    there_and_back = np.array([a, b, a, b])
    cov = coverage(house, there_and_back)
    assert cov.room_sequence[0] == 0 and cov.revisits == len(cov.room_sequence) - len(set(cov.room_sequence))
    assert cov.revisits >= 2 and 0.0 < cov.free_fraction < 1.0 and "rooms" in cov.summary()
    still = coverage(house, [a])
    assert still.rooms_visited == (0,) and still.revisits == 0 and still.path_length_m == 0.0
    with pytest.raises(InvalidInputError, match=r"\(N, 2\)"):
        coverage(house, np.zeros((0, 2)))
    with pytest.raises(InvalidInputError, match="radius_m"):
        coverage(house, [a], radius_m=0.0)


# ---------------------------------------------------------------------------------------------- the script
def test_a_script_pulls_behaviours_lazily():
    asked = []

    def behaviours():
        for k in range(3):
            asked.append(k)
            yield TurnTo(0.3 * (k + 1))

    with MobileFR3Sim(box_room_spec((4.0, 4.0)), ROBOT) as sim:
        sim.reset(2.0, 2.0, 0.0, q=STOW_POSE)
        script = Script(behaviours())
        assert asked == [] and not script.done
        run_script(sim, script, dt=DT, max_steps=3)
        assert asked == [0]  # the second is planned only when the first is done
        run_script(sim, script, dt=DT, max_steps=500)
        assert asked == [0, 1, 2] and script.done and script.index == 3
        assert sim.pose2d[2] == pytest.approx(0.9, abs=0.01)


def test_a_source_of_idle_behaviours_stops_the_script():
    class Idle:
        def next_behaviour(self, pose, t_s):
            return FollowPath([pose[:2]])  # done at once

    script = Script(Idle())
    assert script.command((0.0, 0.0, 0.0), 0.0) is None and script.done


# ---------------------------------------------------------------------------------------------- the arm
def _robot_reach(sim: MobileFR3Sim) -> float:
    """Largest horizontal distance of any arm collision geom (capsule/cylinder ends + radius) from the base
    axis, at the state in MjData."""
    m, d = sim.model, sim.data
    base = m.body(BASE_LINK).id
    on_robot = m.body_rootid[m.geom_bodyid] == base
    arm = np.flatnonzero(on_robot & ((m.geom_contype | m.geom_conaffinity) != 0) & (m.geom_bodyid != base))
    centre = sim.T_world_base[:2, 3]
    reach = 0.0
    for g in arm:
        R, size, pos = d.geom_xmat[g].reshape(3, 3), m.geom_size[g], d.geom_xpos[g]
        ends = [pos + R[:, 2] * size[1], pos - R[:, 2] * size[1]] if m.geom_type[g] in (3, 5) else [pos]
        radius = size[0] if m.geom_type[g] in (3, 5) else float(np.linalg.norm(size))
        reach = max(reach, *(float(np.linalg.norm(e[:2] - centre)) + radius for e in ends))
    return reach


def test_the_compact_scan_keeps_the_arm_over_the_base_and_the_camera_level():
    scan = CompactScan()
    times = np.arange(0.0, len(scan.offsets) * (scan.dwell_s + scan.move_s), 0.25)
    with MobileFR3Sim(box_room_spec((4.0, 4.0)), ROBOT) as sim:
        yaws, reach = [], 0.0
        for t in times:
            sim.reset(2.0, 2.0, 0.0, q=scan(t))
            reach = max(reach, _robot_reach(sim))
            T = sim.camera_pose(WRIST_CAMERA)
            yaws.append(math.degrees(math.atan2(T[1, 2], T[0, 2])))
            if t == 0.0:  # the stow pose: looking ahead and down, image rows level
                assert T[2, 2] == pytest.approx(-math.sin(math.radians(14.3)), abs=0.01)
                assert abs(T[2, 0]) < 1e-3
    assert reach <= COMPACT_REACH_M
    assert min(yaws) < -15 and max(yaws) > 25  # it looks right and left


@pytest.mark.parametrize(
    "make",
    [
        lambda: CompactScan(offsets=((0.0, 0.0, 0.0),)),
        lambda: CompactScan(offsets=((0.0, 0.0, -1.0, 0.0),)),  # joint 6 below its limit
        lambda: CompactScan(move_s=0.0),
        lambda: TurnTo(math.inf),
        lambda: WorldTourConfig(weights=(0.0, 0.0, 0.0)),
        lambda: WorldTourConfig(look_rad=(2.0, 1.0)),
        lambda: WorldTourConfig(stuck_steps=0),
        lambda: WorldTourConfig(return_prob=1.5),
        lambda: WorldTourConfig(start_look_rad=-1.0),
        lambda: world_preset("castle"),
        lambda: WorldTour("not a world"),
    ],
)
def test_bad_configs_are_refused(make):
    with pytest.raises(ConfigError):
        make()

"""Occupancy grids and A* planning on generated worlds: reachability, clearance, collision-free paths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.sim.planning import (
    OccupancyGrid,
    door_centres,
    plan_path,
    plan_tour,
    room_centres,
    sample_free_point,
)
from spatial_memory.sim.worlds import World, WorldConfig, generate_world

APARTMENT = WorldConfig(seed=3, width_m=15.0, depth_m=15.0, num_rooms=9)


@pytest.fixture(scope="module")
def apartment() -> World:
    return generate_world(APARTMENT)


@pytest.fixture(scope="module")
def grid(apartment) -> OccupancyGrid:
    return apartment.occupancy()


@pytest.fixture(scope="module")
def tour_paths(apartment, grid) -> list[np.ndarray]:
    centres = room_centres(apartment)
    return [plan_path(grid, centres[0], c) for c in centres[1:]]


def _assert_path_free(grid: OccupancyGrid, path: np.ndarray) -> None:
    """Every segment, sampled at a tenth of a cell, lies in free cells."""
    for a, b in zip(path[:-1], path[1:], strict=True):
        n = max(2, math.ceil(np.linalg.norm(b - a) / (grid.resolution_m / 10)) + 1)
        pts = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
        assert grid.free_at(pts).all(), f"segment {a} -> {b} crosses an occupied cell"


def test_every_room_is_reachable_from_every_other(apartment, grid, tour_paths):
    """Paths from room 0 to all others; reachability is symmetric and transitive, so all pairs connect."""
    centres = room_centres(apartment)
    for c, path in zip(centres[1:], tour_paths, strict=True):
        np.testing.assert_array_equal(path[0], centres[0])
        np.testing.assert_array_equal(path[-1], c)
    cells = grid.world_to_cell(np.vstack([centres, door_centres(apartment)]))
    labels = grid.labels[cells[:, 1], cells[:, 0]]
    assert labels.min() > 0 and np.all(labels == labels[0])  # every room centre and doorway in one region


def test_planned_paths_never_cross_occupied_cells(grid, tour_paths):
    for path in tour_paths:
        _assert_path_free(grid, path)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = sample_free_point(grid, rng), sample_free_point(grid, rng)
        _assert_path_free(grid, plan_path(grid, a, b))


def test_same_seed_same_path(grid, tour_paths, apartment):
    again = generate_world(APARTMENT).occupancy()
    centres = room_centres(apartment)
    np.testing.assert_array_equal(plan_path(again, centres[0], centres[-1]), tour_paths[-1])


def test_inflated_grid_is_exactly_the_robot_clearance():
    """A cell is free iff a disc of the robot radius at its centre touches no wall, furniture or object."""
    world = generate_world(WorldConfig(seed=8, width_m=8.0, depth_m=6.0, num_rooms=3))
    r = world.config.robot_radius_m
    grid = world.occupancy(resolution_m=0.05)
    ny, nx = grid.shape
    iy, ix = np.mgrid[0:ny, 0:nx]
    xy = grid.cell_to_world(np.stack([ix, iy], axis=-1)).reshape(-1, 2)
    boxes, discs = world.obstacle_footprints()
    dist = np.full(len(xy), np.inf)
    for cx, cy, hx, hy, yaw in boxes:
        c, s = math.cos(yaw), math.sin(yaw)
        d = xy - (cx, cy)
        du = np.maximum(np.abs(c * d[:, 0] + s * d[:, 1]) - hx, 0)
        dv = np.maximum(np.abs(-s * d[:, 0] + c * d[:, 1]) - hy, 0)
        dist = np.minimum(dist, np.hypot(du, dv))
    for cx, cy, rad in discs:
        dist = np.minimum(dist, np.maximum(np.hypot(*(xy - (cx, cy)).T) - rad, 0))
    free = ~grid.occupied.reshape(-1)
    assert dist[free].min() > r  # the robot keeps its radius from every wall ...
    assert np.all(free[dist > r + 1e-9])  # ... and no cell farther away is blocked


def test_start_or_goal_in_a_wall_is_a_clear_error(apartment, grid):
    wall = apartment.walls[len(apartment.walls) // 2]
    inside = wall.box()[:2]
    centre = room_centres(apartment)[0]
    with pytest.raises(InvalidInputError, match=r"goal \(.*\) is inside an obstacle or within 0.30 m"):
        plan_path(grid, centre, inside)
    with pytest.raises(InvalidInputError, match=r"start \(.*\) is inside an obstacle"):
        plan_path(grid, inside, centre)
    with pytest.raises(InvalidInputError, match="outside the map"):
        plan_path(grid, centre, (20.0, 3.0))
    with pytest.raises(InvalidInputError, match="finite"):
        plan_path(grid, centre, (np.nan, 3.0))


def test_unreachable_goal_is_a_clear_error():
    occupied = np.zeros((20, 30), bool)
    occupied[:, 15] = True  # a wall from edge to edge
    grid = OccupancyGrid(occupied, (0.0, 0.0), 0.1, 0.0)
    with pytest.raises(InvalidInputError, match="not reachable"):
        plan_path(grid, (0.5, 1.0), (2.5, 1.0))


def test_astar_is_optimal_and_shortcutting_straightens():
    grid = OccupancyGrid(np.zeros((40, 60), bool), (-1.0, -2.0), 0.1)
    start, goal = (-0.95, -1.95), (4.85, 1.75)
    raw = plan_path(grid, start, goal, shortcut=False)
    steps = np.abs(np.diff(grid.world_to_cell(raw[1:-1]), axis=0)).sum(axis=1)
    dx, dy = 58, 37  # cells from start to goal
    assert math.isclose(
        np.sum(np.where(steps == 2, math.sqrt(2), 1.0)), max(dx, dy) + (math.sqrt(2) - 1) * min(dx, dy)
    )
    np.testing.assert_array_equal(plan_path(grid, start, goal), [start, goal])


def test_no_corner_cutting_between_diagonal_obstacles():
    occupied = np.zeros((4, 4), bool)
    occupied[1, 2] = occupied[2, 1] = True  # a diagonal wall with a corner gap
    grid = OccupancyGrid(occupied, (0.0, 0.0), 1.0)
    assert not grid.segment_is_free((1.5, 1.5), (2.5, 2.5))  # through the corner both cells share
    path = plan_path(grid, (1.5, 1.5), (2.5, 2.5))
    assert len(path) > 2  # around the obstacles, not between them
    _assert_path_free(grid, path)


def test_cell_conversions_and_bounds(grid):
    cells = np.array([[0, 0], [5, 7], [grid.shape[1] - 1, grid.shape[0] - 1]])
    np.testing.assert_array_equal(grid.world_to_cell(grid.cell_to_world(cells)), cells)
    assert not grid.is_free(-0.01, 1.0) and not grid.is_free(1.0, 15.01)
    with pytest.raises(ValueError):
        grid.occupied[0, 0] = True  # read-only: cached components stay valid


def test_sample_free_point_and_tour(apartment, grid):
    rng = np.random.default_rng(7)
    points = np.array([sample_free_point(grid, rng) for _ in range(20)])
    assert grid.free_at(points).all()
    centres = room_centres(apartment)[:4]
    tour = plan_tour(grid, centres)
    for c in centres:
        assert np.any(np.all(tour == c, axis=1))
    _assert_path_free(grid, tour)

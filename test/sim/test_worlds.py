"""Procedural indoor worlds: exact seeds, sound layouts, twin rooms, clear errors, exact save/load."""

from __future__ import annotations

import json
import math
import os

import matplotlib
import numpy as np
import pytest

from spatial_memory import config as config_schema
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.sim import textures
from spatial_memory.sim.planning import room_centres
from spatial_memory.sim.worlds import WORLD_FORMAT_VERSION, World, WorldConfig, generate_world, plot_world

matplotlib.use("Agg")

SIZES = [  # width, depth, rooms, corridor width
    (5.0, 5.0, 1, 0.0),
    (8.0, 6.0, 3, 0.0),
    (12.0, 8.0, 6, 1.2),
    (15.0, 15.0, 10, 0.0),
    (15.0, 15.0, 8, 1.5),
]


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(seed=11))


def _config(w: float, d: float, n: int, corridor: float, seed: int = 1) -> WorldConfig:
    return WorldConfig(seed=seed, width_m=w, depth_m=d, num_rooms=n, corridor_width_m=corridor)


# ---------------------------------------------------------------------------------------------- seeds
def test_same_seed_same_world_and_identical_json():
    cfg = WorldConfig(seed=5, width_m=12, depth_m=9, num_rooms=5)
    a, b = generate_world(cfg), generate_world(cfg)
    assert a == b
    assert a.to_json() == b.to_json()


def test_different_seed_different_world():
    a = generate_world(WorldConfig(seed=1))
    b = generate_world(WorldConfig(seed=2))
    assert a.rooms != b.rooms
    assert [r.floor for r in a.rooms] != [r.floor for r in b.rooms]


def test_furniture_density_keeps_the_layout():
    """Layout, styling and furnishing use separate random streams of the seed."""
    sparse = generate_world(WorldConfig(seed=4, furniture_density=0.2))
    dense = generate_world(WorldConfig(seed=4, furniture_density=0.9))
    assert (sparse.rooms, sparse.walls, sparse.doors) == (dense.rooms, dense.walls, dense.doors)
    assert len(dense.furniture) > len(sparse.furniture)


# ---------------------------------------------------------------------------------------------- layout
def _walls_cover(world: World, x: float, y: float) -> bool:
    for wall in world.walls:
        cx, cy, hx, hy = wall.box()
        if abs(x - cx) <= hx + 1e-9 and abs(y - cy) <= hy + 1e-9:
            return True
    return False


def _in_doorway(world: World, x: float, y: float) -> bool:
    for d in world.doors:
        along, across = (x - d.x, y - d.y) if d.axis == "x" else (y - d.y, x - d.x)
        if abs(across) < 1e-9 and abs(along) <= d.width / 2 + 1e-9:
            return True
    return False


@pytest.mark.parametrize(("w", "d", "n", "corridor"), SIZES)
def test_sizes_from_one_room_to_an_apartment(w, d, n, corridor):
    cfg = _config(w, d, n, corridor)
    world = generate_world(cfg)
    t, s = cfg.wall_thickness_m, cfg.room_side_m
    assert len(world.rooms) == n + (1 if corridor else 0)
    # rooms tile the footprint between the outer wall centre lines, each at least the minimum side
    assert math.isclose(sum(r.size[0] * r.size[1] for r in world.rooms), (w - t) * (d - t), rel_tol=1e-9)
    for room in world.rooms:
        if room.kind != "corridor":
            assert min(room.size) >= s - 1e-9
    # every room edge is wall or doorway, point by point along the centre lines
    for room in world.rooms:
        for u in np.linspace(0.02, 0.98, 60):
            x, y = room.x0 + u * (room.x1 - room.x0), room.y0 + u * (room.y1 - room.y0)
            for px, py in ((x, room.y0), (x, room.y1), (room.x0, y), (room.x1, y)):
                assert _walls_cover(world, px, py) or _in_doorway(world, px, py), (room.name, px, py)
    # furniture and floor objects stay inside their room, clear of the walls
    for item in (*world.furniture, *world.objects):
        room = world.rooms[item.room]
        assert room.x0 + t / 2 < item.pos[0] < room.x1 - t / 2
        assert room.y0 + t / 2 < item.pos[1] < room.y1 - t / 2
    # every room centre is free and in one free region: every room is reachable
    grid = world.occupancy()
    cells = grid.world_to_cell(room_centres(world))
    labels = grid.labels[cells[:, 1], cells[:, 0]]
    assert labels.min() > 0 and len(set(labels.tolist())) == 1


def test_walls_know_the_rooms_on_their_sides(world):
    for wall in world.walls:
        cx, cy, hx, hy = wall.box()
        off = wall.thickness / 2 + 0.01
        lo = (cx, cy - off) if wall.axis == "x" else (cx - off, cy)
        hi = (cx, cy + off) if wall.axis == "x" else (cx + off, cy)
        assert (world.room_at(*lo), world.room_at(*hi)) == wall.rooms


def test_doors_join_adjacent_rooms_and_every_room_has_one(world):
    for door in world.doors:
        a, b = door.rooms
        n = 0.2
        lo = (door.x, door.y - n) if door.axis == "x" else (door.x - n, door.y)
        hi = (door.x, door.y + n) if door.axis == "x" else (door.x + n, door.y)
        assert (world.room_at(*lo), world.room_at(*hi)) == (a, b)
    assert {r for d in world.doors for r in d.rooms} == set(range(len(world.rooms)))


def test_corridor_rooms_all_open_onto_the_corridor():
    world = generate_world(_config(14, 9, 6, 1.3, seed=3))
    corridor = next(r.index for r in world.rooms if r.kind == "corridor")
    assert corridor == len(world.rooms) - 1
    opens = {r for d in world.doors if corridor in d.rooms for r in d.rooms} - {corridor}
    assert opens == set(range(corridor))


def test_twin_rooms_look_alike_and_other_rooms_differ(world):
    a, b = (world.rooms[i] for i in world.twin_rooms)
    assert a.kind == b.kind and a.floor == b.floor and a.wall == b.wall
    np.testing.assert_allclose(a.size, b.size, atol=1e-9)
    for items in (world.furniture, world.objects):
        in_a = [i for i in items if i.room == a.index]
        in_b = [i for i in items if i.room == b.index]
        assert len(in_a) == len(in_b) > 0
        for p, q in zip(in_a, in_b, strict=True):
            assert (p.kind, p.size, p.yaw, p.texture, p.rgba) == (q.kind, q.size, q.yaw, q.texture, q.rgba)
            np.testing.assert_allclose(
                np.subtract(p.pos, (a.x0, a.y0, 0)), np.subtract(q.pos, (b.x0, b.y0, 0))
            )
    others = [r for r in world.rooms if r.index not in world.twin_rooms]
    assert len({r.floor for r in others} | {a.floor}) == len(others) + 1
    assert len({r.wall for r in others} | {a.wall}) == len(others) + 1


def test_twins_can_be_turned_off():
    world = generate_world(WorldConfig(seed=2, twin_rooms=False))
    assert world.twin_rooms == ()
    assert len({r.floor for r in world.rooms}) == len(world.rooms)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width_m": 1.0, "depth_m": 1.0, "num_rooms": 1}, "too small for one room"),
        ({"width_m": 6.0, "depth_m": 6.0, "num_rooms": 9}, "too many rooms"),
        ({"door_width_m": 0.5, "robot_radius_m": 0.3}, "door_width_m=0.5 is too narrow for the robot"),
        ({"corridor_width_m": 0.4}, "corridor_width_m=0.4 is too narrow for the robot"),
        ({"width_m": 12.0, "depth_m": 5.0, "corridor_width_m": 1.2}, "too shallow for a 1.2 m corridor"),
        ({"num_rooms": 1, "corridor_width_m": 1.2}, "corridor needs num_rooms >= 2"),
        ({"width_m": 25.0}, "width_m must be within"),
        ({"num_rooms": 0}, "num_rooms"),
        ({"furniture_density": 1.5}, "furniture_density"),
        ({"door_height_m": 3.0}, "door_height_m"),
        ({"seed": -1}, "seed"),
        ({"width_m": "wide"}, "width_m must be a finite number"),
        ({"robot_radius_m": float("nan")}, "robot_radius_m must be a finite number"),
    ],
)
def test_impossible_world_requests_name_the_problem(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WorldConfig(**kwargs)


def test_config_round_trips_through_ros_parameters():
    cfg = WorldConfig(seed=9, width_m=12.0, corridor_width_m=1.2, num_rooms=4)
    params = config_schema.flatten(cfg)
    assert all(isinstance(v, (bool, int, float, str)) for v in params.values())
    assert config_schema.from_dict(WorldConfig, params) == cfg
    with pytest.raises(ConfigError, match="too many rooms"):
        config_schema.from_dict(WorldConfig, {**params, "num_rooms": 40})


def test_large_robot_raises_the_room_size_and_says_so():
    with pytest.raises(ConfigError, match=r"rooms need at least .* robot radius 0.9"):
        WorldConfig(width_m=6.0, depth_m=6.0, num_rooms=2, robot_radius_m=0.9, door_width_m=2.0)


# ---------------------------------------------------------------------------------------------- files
def test_save_load_round_trip_is_exact(tmp_path, world):
    path = tmp_path / "world.json"
    world.save(path)
    loaded = World.load(path)
    assert loaded == world
    assert loaded.to_json() == world.to_json() == path.read_text()
    assert World.from_dict(json.loads(world.to_json())) == world
    from_yaml = generate_world(WorldConfig(width_m=12, depth_m=9))  # ints where floats belong
    assert World.from_dict(json.loads(from_yaml.to_json())).to_json() == from_yaml.to_json()


def test_atomic_save_leaves_no_partial_file(tmp_path, world, monkeypatch):
    path = tmp_path / "world.json"
    path.write_text("old content")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        world.save(path)
    assert path.read_text() == "old content"  # the old file is untouched ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world.json"]  # ... and no temp file is left
    monkeypatch.undo()
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        world.save(tmp_path / "new.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world.json"]


def test_load_rejects_other_versions_and_corrupt_files(tmp_path, world):
    doc = world.to_dict()
    cases = {
        "future.json": json.dumps({**doc, "version": WORLD_FORMAT_VERSION + 1}),
        "truncated.json": world.to_json()[:500],
        "wrong_type.json": json.dumps({**doc, "rooms": [{**doc["rooms"][0], "x0": "left"}]}, default=list),
        "not_world.json": json.dumps({"hello": 1}),
        "bad_texture.json": world.to_json().replace(f'"{world.rooms[0].floor.generator}"', '"velvet"', 1),
    }
    expected = {
        "future.json": "format version 2; this spatial_memory reads version 1",
        "truncated.json": "corrupt",
        "wrong_type.json": r"corrupt: .*rooms\[0\]\.x0",
        "not_world.json": "is not a spatial_memory.world document",
        "bad_texture.json": "unknown texture generator 'velvet'",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidInputError, match=expected[name]):
            World.load(tmp_path / name)


# ------------------------------------------------------------------------------------------ textures, plot
def test_new_textures_tile_seamlessly_and_old_generators_are_unchanged():
    assert list(textures.GENERATORS) == ["wood", "tiles", "stripes", "dots", "marble", "checker"]
    for name in ("bricks", "plaster", "wallpaper", "carpet"):
        img = textures.ALL_GENERATORS[name](np.random.default_rng(3), 128).astype(float)
        for im in (img, img.transpose(1, 0, 2)):  # the seam is no worse than any boundary inside
            inner = np.abs(np.diff(im, axis=1)).mean(axis=(0, 2)).max()
            assert np.abs(im[:, 0] - im[:, -1]).mean() <= inner + 1.0, name


def test_plot_world_draws_rooms_path_and_poses(world):
    path = np.array([room_centres(world)[0], room_centres(world)[1]])
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[:, :2, 3] = [[1, 1], [2, 2], [3, 1]]
    ax = plot_world(world, path=path, poses=poses)
    assert len(ax.patches) >= len(world.walls) + len(world.furniture)
    plot_world(world, poses=np.array([[1.0, 1.0, 0.5]]), ax=ax)
    with pytest.raises(InvalidInputError, match="poses"):
        plot_world(world, poses=np.zeros((2, 2)))

"""MuJoCo scenes of generated worlds: every wall is geometry, textures follow rooms, views differ by room."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.sim.world_scene import TOP_DOWN_CAMERA, build_world_spec, room_camera
from spatial_memory.sim.worlds import World, WorldConfig, generate_world

H, W = 72, 96


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(seed=11, width_m=10.0, depth_m=8.0, num_rooms=4))


@pytest.fixture(scope="module")
def model(world) -> mujoco.MjModel:
    return build_world_spec(world, texture_px=64).compile()


@pytest.fixture(scope="module")
def views(model, world) -> dict[str, np.ndarray]:
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cameras = [TOP_DOWN_CAMERA] + [room_camera(r.index) for r in world.rooms]
    with mujoco.Renderer(model, H, W) as renderer:
        out = {}
        for cam in cameras:
            renderer.update_scene(data, camera=cam)
            out[cam] = renderer.render().astype(int)
    return out


def _geom(model: mujoco.MjModel, name: str) -> tuple[np.ndarray, np.ndarray]:
    g = model.geom(name)
    return g.pos.copy(), g.size.copy()


def test_every_wall_is_geometry_with_the_worlds_extent(model, world):
    for i, wall in enumerate(world.walls):
        (p0, s0), (p1, s1) = _geom(model, f"wall{i}_lo"), _geom(model, f"wall{i}_hi")
        lo = np.minimum(p0 - s0, p1 - s1)
        hi = np.maximum(p0 + s0, p1 + s1)
        cx, cy, hx, hy = wall.box()
        np.testing.assert_allclose(lo, [cx - hx, cy - hy, 0.0], atol=1e-9)
        np.testing.assert_allclose(hi, [cx + hx, cy + hy, wall.height], atol=1e-9)
    for room in world.rooms:
        assert model.geom(f"room{room.index}_floor").type == mujoco.mjtGeom.mjGEOM_BOX
    for item in (*world.furniture, *world.objects):
        assert model.geom(item.name).bodyid == model.body(item.name).id


def test_wall_halves_wear_the_texture_of_the_room_on_their_side(model, world):
    for i, wall in enumerate(world.walls):
        for suffix, room in zip(("lo", "hi"), wall.rooms, strict=True):
            mat = model.geom_matid[model.geom(f"wall{i}_{suffix}").id]
            tex = model.mat_texid[mat, mujoco.mjtTextureRole.mjTEXROLE_RGB]
            if room < 0:
                assert tex < 0  # the outside of the building is plain
            else:
                spec = world.rooms[room].wall
                assert model.texture(tex).name == f"tex_{spec.generator}_{spec.seed}"


def test_top_down_and_inside_views_render_and_differ_between_rooms(views, world):
    top = views[TOP_DOWN_CAMERA]
    assert top.std() > 20  # floors, walls and furniture, not a blank frame
    rooms = [r.index for r in world.rooms if r.index not in world.twin_rooms]
    diffs = [
        np.abs(views[room_camera(a)] - views[room_camera(b)]).mean() for a in rooms for b in rooms if a < b
    ]
    assert min(diffs) > 15, diffs


def test_twin_rooms_look_alike(views, world):
    """The twins' views match far better than any two other rooms' (only their doorways differ)."""
    a, b = world.twin_rooms
    twin_diff = np.abs(views[room_camera(a)] - views[room_camera(b)]).mean()
    other_diffs = [
        np.abs(views[room_camera(a)] - views[room_camera(r.index)]).mean()
        for r in world.rooms
        if r.index not in world.twin_rooms
    ]
    assert twin_diff < 0.5 * min(other_diffs), (twin_diff, other_diffs)


def test_same_world_same_pixels(world, views):
    model = build_world_spec(generate_world(world.config), texture_px=64).compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, H, W) as renderer:
        renderer.update_scene(data, camera=room_camera(0))
        np.testing.assert_array_equal(renderer.render(), views[room_camera(0)])


def test_apartment_and_single_room_compile_and_options(world):
    apartment = generate_world(WorldConfig(seed=3, width_m=15.0, depth_m=15.0, num_rooms=10))
    model = build_world_spec(apartment).compile()
    assert model.ngeom > 2 * len(apartment.walls) + len(apartment.furniture)
    single = generate_world(WorldConfig(seed=0, width_m=5.0, depth_m=5.0, num_rooms=1))
    closed = build_world_spec(single, texture_px=32, ceiling=True).compile()
    assert closed.geom("room0_ceiling").pos[2] > single.config.wall_height_m
    with pytest.raises(InvalidInputError, match="texture_px"):
        build_world_spec(single, texture_px=3)

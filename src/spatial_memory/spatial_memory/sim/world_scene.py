"""MuJoCo spec of a generated indoor `World`: floors, walls with doorways, furniture, objects, cameras.

The spec holds no robot; a mobile robot is attached into it by its own module. Everything is static
(bodies without joints), so compiling is quick and a kinematic robot can be moved through the rooms.
Geom names follow the World: `room{i}_floor`, `wall{i}_lo` / `wall{i}_hi` (the two halves of wall i, each
wearing the wall texture of the room on its side: `Wall.rooms`), `door{i}_lintel_lo` / `_hi`, and each item's
name for its main geom (extra detail geoms get suffixes). Cameras: `top_down` over the whole footprint and
`room{i}_view` at 1.2 m in every room centre, looking along the room's longer side.
"""

from __future__ import annotations

import logging
import math
import time

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import quat_xyzw_to_wxyz
from spatial_memory.sim.worlds import Item, TextureSpec, Wall, World

log = logging.getLogger(__name__)

TOP_DOWN_CAMERA = "top_down"
ROOM_CAMERA_HEIGHT_M = 1.2
_EXTERIOR_RGBA = (0.78, 0.78, 0.76, 1.0)
_GROUND_RGBA = (0.35, 0.37, 0.35, 1.0)
_CEILING_RGBA = (0.93, 0.93, 0.9, 1.0)
_LEGGED = {"table", "desk", "coffee_table"}
_SEATS = {"sofa", "armchair"}


def room_camera(index: int) -> str:
    """Name of the camera standing in the centre of room `index`."""
    return f"room{index}_view"


class _Materials:
    """Materials on demand, one texture per distinct TextureSpec (twin rooms share theirs).

    MuJoCo maps a 2-D texture onto each face of a box with `texrepeat` repeats across the face (with
    `texuniform` it projects along z only, which streaks vertical faces). So a material is made per face
    size: `TextureSpec.repeat` per metre times the face's width and height gives the same density on a
    short and a long wall. Side faces map (u, v) to (along, z), top faces to (x, y).
    """

    def __init__(self, spec: mujoco.MjSpec, texture_px: int) -> None:
        self.spec, self.px = spec, texture_px
        self._textures: dict[tuple[str, int], str] = {}
        self._materials: dict[tuple, str] = {}

    def get(
        self, texture: TextureSpec | None, rgba: tuple[float, ...], face_m: tuple[float, float] = (1.0, 1.0)
    ) -> str:
        """A material with this texture and colour, tiled `texture.repeat` times per metre of a face."""
        reps = (1.0, 1.0)
        if texture is not None:
            reps = tuple(max(0.05, round(texture.repeat * f, 2)) for f in face_m)
        key = (texture, tuple(rgba), reps)
        if key in self._materials:
            return self._materials[key]
        name = f"mat{len(self._materials)}"
        mat = self.spec.add_material(name=name, rgba=list(rgba))
        if texture is not None:
            mat.texrepeat = list(reps)
            mat.texuniform = False
            mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = self._texture(texture)
        self._materials[key] = name
        return name

    def __len__(self) -> int:
        return len(self._materials)

    def _texture(self, texture: TextureSpec) -> str:
        key = (texture.generator, texture.seed)
        if key not in self._textures:
            image = texture.image(self.px)
            name = f"tex_{texture.generator}_{texture.seed}"
            tex = self.spec.add_texture(
                name=name,
                type=mujoco.mjtTexture.mjTEXTURE_2D,
                width=image.shape[1],
                height=image.shape[0],
                nchannel=3,
            )
            tex.data = np.ascontiguousarray(image).tobytes()
            self._textures[key] = name
        return self._textures[key]


def build_world_spec(
    world: World, texture_px: int = 128, ceiling: bool = False, offscreen: tuple[int, int] = (640, 480)
) -> mujoco.MjSpec:
    """MuJoCo spec of `world` (no robot). Textures come from the World's texture specs, `texture_px` square.

    `ceiling` closes the rooms for views from inside (leave it off for the `top_down` camera).
    `offscreen` is the largest (width, height) a `mujoco.Renderer` of the compiled model may use.
    """
    if not (isinstance(texture_px, int) and 8 <= texture_px <= 1024):
        raise InvalidInputError(f"texture_px must be an integer within 8..1024, got {texture_px!r}")
    if len(offscreen) != 2 or not all(isinstance(v, int) and 16 <= v <= 8192 for v in offscreen):
        raise InvalidInputError(
            f"offscreen must be (width, height) within 16..8192 pixels, got {offscreen!r}"
        )
    t0 = time.perf_counter()
    spec = mujoco.MjSpec()
    spec.modelname = "indoor_world"
    spec.visual.global_.offwidth, spec.visual.global_.offheight = (int(v) for v in offscreen)
    spec.visual.quality.shadowsize = 0
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.25, 0.25, 0.25]
    spec.add_texture(  # a pale sky instead of black above the walls (no ceiling) and around the building
        name="sky",
        type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        rgb1=[0.75, 0.82, 0.9],
        rgb2=[0.35, 0.4, 0.45],
        width=64,
        height=64,
    )
    materials = _Materials(spec, texture_px)
    _add_floors(spec, world, materials, ceiling)
    _add_walls(spec, world, materials)
    for item in (*world.furniture, *world.objects):
        face = (2 * item.size[0], 2 * item.size[2])  # the front face is right, the others close
        _add_item(spec, item, materials.get(item.texture, item.rgba, face))
    _add_lights(spec, world)
    _add_cameras(spec, world)
    log.debug(
        "world spec built in %.0f ms (%d materials)",
        (time.perf_counter() - t0) * 1e3,
        len(materials),
    )
    return spec


def _add_floors(spec: mujoco.MjSpec, world: World, materials: _Materials, ceiling: bool) -> None:
    wb = spec.worldbody
    cfg = world.config
    size = max(cfg.width_m, cfg.depth_m)
    wb.add_geom(
        name="ground",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        pos=[cfg.width_m / 2, cfg.depth_m / 2, -0.02],
        size=[size, size, 0.1],
        rgba=list(_GROUND_RGBA),
    )
    for room in world.rooms:
        (cx, cy), (w, d) = room.center, room.size
        wb.add_geom(
            name=f"room{room.index}_floor",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=[cx, cy, -0.01],
            size=[w / 2, d / 2, 0.01],
            material=materials.get(room.floor, (1.0, 1.0, 1.0, 1.0), (w, d)),
        )
        if ceiling:
            wb.add_geom(
                name=f"room{room.index}_ceiling",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                pos=[cx, cy, cfg.wall_height_m + 0.01],
                size=[w / 2, d / 2, 0.01],
                rgba=list(_CEILING_RGBA),
            )


def _wall_material(world: World, room: int, materials: _Materials, face_m: tuple[float, float]) -> str:
    if room < 0:
        return materials.get(None, _EXTERIOR_RGBA)
    return materials.get(world.rooms[room].wall, (1.0, 1.0, 1.0, 1.0), face_m)


def _add_wall_halves(
    spec: mujoco.MjSpec, name: str, wall: Wall, z0: float, z1: float, world: World, materials: _Materials
) -> None:
    """A wall box split lengthwise in two halves, each wearing the texture of the room on its side."""
    cx, cy, hx, hy = wall.box()
    for suffix, side, room in (("lo", -1.0, wall.rooms[0]), ("hi", 1.0, wall.rooms[1])):
        if wall.axis == "x":
            pos, size = [cx, cy + side * hy / 2, (z0 + z1) / 2], [hx, hy / 2, (z1 - z0) / 2]
        else:
            pos, size = [cx + side * hx / 2, cy, (z0 + z1) / 2], [hx / 2, hy, (z1 - z0) / 2]
        spec.worldbody.add_geom(
            name=f"{name}_{suffix}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=pos,
            size=size,
            material=_wall_material(world, room, materials, (wall.length, z1 - z0)),
        )


def _add_walls(spec: mujoco.MjSpec, world: World, materials: _Materials) -> None:
    height = world.config.wall_height_m
    for i, wall in enumerate(world.walls):
        _add_wall_halves(spec, f"wall{i}", wall, 0.0, wall.height, world, materials)
    for i, door in enumerate(world.doors):
        if door.height < height - 1e-6:
            h = door.width / 2
            ends = (
                (door.x - h, door.y, door.x + h, door.y)
                if door.axis == "x"
                else (door.x, door.y - h, door.x, door.y + h)
            )
            lintel = Wall(*ends, world.config.wall_thickness_m, height, door.rooms)
            _add_wall_halves(spec, f"door{i}_lintel", lintel, door.height, height, world, materials)


def _yaw_quat(yaw: float) -> list[float]:
    return quat_xyzw_to_wxyz(Rotation.from_euler("z", yaw).as_quat()).tolist()


def _add_item(spec: mujoco.MjSpec, item: Item, material: str) -> None:
    """One item as a static body at its footprint centre; tables get legs, seats a back, beds a pillow."""
    g = mujoco.mjtGeom
    body = spec.worldbody.add_body(
        name=item.name, pos=[item.pos[0], item.pos[1], 0.0], quat=_yaw_quat(item.yaw)
    )
    sx, sy, sz = item.size
    h = 2 * sz  # items stand on something at item.pos[2] - sz
    z0 = item.pos[2] - sz
    if item.kind in _LEGGED:
        body.add_geom(
            name=item.name,
            type=g.mjGEOM_BOX,
            pos=[0, 0, z0 + h - 0.02],
            size=[sx, sy, 0.02],
            material=material,
        )
        leg = min(0.03, sx / 4, sy / 4)
        for k, (u, v) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
            body.add_geom(
                name=f"{item.name}_leg{k}",
                type=g.mjGEOM_BOX,
                pos=[u * (sx - leg), v * (sy - leg), z0 + (h - 0.04) / 2],
                size=[leg, leg, (h - 0.04) / 2],
                material=material,
            )
    elif item.kind == "round_table":
        body.add_geom(
            name=item.name,
            type=g.mjGEOM_CYLINDER,
            pos=[0, 0, z0 + h - 0.02],
            size=[sx, 0.02],
            material=material,
        )
        body.add_geom(
            name=f"{item.name}_post",
            type=g.mjGEOM_CYLINDER,
            pos=[0, 0, z0 + h / 2],
            size=[0.05, h / 2],
            material=material,
        )
    elif item.kind in _SEATS:
        seat = 0.5 * h
        body.add_geom(
            name=item.name,
            type=g.mjGEOM_BOX,
            pos=[0, 0, z0 + seat / 2],
            size=[sx, sy, seat / 2],
            material=material,
        )
        back = 0.25 * sy
        body.add_geom(
            name=f"{item.name}_back",
            type=g.mjGEOM_BOX,
            pos=[0, -sy + back, z0 + sz],
            size=[sx, back, sz],
            material=material,
        )
    elif item.kind == "bed":
        body.add_geom(
            name=item.name, type=g.mjGEOM_BOX, pos=[0, 0, z0 + sz], size=[sx, sy, sz], material=material
        )
        body.add_geom(
            name=f"{item.name}_pillow",
            type=g.mjGEOM_BOX,
            pos=[0, -sy + 0.3, z0 + h + 0.05],
            size=[sx * 0.7, 0.18, 0.05],
            rgba=[0.95, 0.95, 0.92, 1],
        )
    elif item.kind == "plant":
        pot = 0.45 * h
        body.add_geom(
            name=item.name,
            type=g.mjGEOM_CYLINDER,
            pos=[0, 0, z0 + pot / 2],
            size=[sx * 0.6, pot / 2],
            material=material,
        )
        body.add_geom(
            name=f"{item.name}_leaves",
            type=g.mjGEOM_SPHERE,
            pos=[0, 0, z0 + h - sx],
            size=[sx],
            rgba=[0.2, 0.5, 0.22, 1],
        )
    else:
        kind = {"box": g.mjGEOM_BOX, "cylinder": g.mjGEOM_CYLINDER, "sphere": g.mjGEOM_SPHERE}[item.shape]
        size = {"box": [sx, sy, sz], "cylinder": [sx, sz], "sphere": [sx]}[item.shape]
        body.add_geom(name=item.name, type=kind, pos=[0, 0, item.pos[2]], size=size, material=material)


def _add_lights(spec: mujoco.MjSpec, world: World) -> None:
    """Two directional lights from above at different angles: walls facing different ways differ in shade."""
    for i, (direction, strength) in enumerate((((0.35, 0.2, -1.0), 0.45), ((-0.25, -0.4, -1.0), 0.3))):
        spec.worldbody.add_light(
            name=f"sun{i}",
            type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
            pos=[world.config.width_m / 2, world.config.depth_m / 2, world.config.wall_height_m + 3.0],
            dir=list(direction),
            diffuse=[strength] * 3,
            specular=[0.05] * 3,
            castshadow=False,
        )


def _add_cameras(spec: mujoco.MjSpec, world: World) -> None:
    cfg = world.config
    fovy = 45.0
    height = (max(cfg.width_m, cfg.depth_m) / 2 + 0.5) / math.tan(math.radians(fovy) / 2) + cfg.wall_height_m
    # MuJoCo cameras look along their -z with +y up: the identity looks straight down, image up = world +y.
    spec.worldbody.add_camera(name=TOP_DOWN_CAMERA, pos=[cfg.width_m / 2, cfg.depth_m / 2, height], fovy=fovy)
    for room in world.rooms:
        w, d = room.size
        forward = np.array([1.0, 0.0, 0.0]) if w >= d else np.array([0.0, 1.0, 0.0])
        up = np.array([0.0, 0.0, 1.0])
        R = np.column_stack([np.cross(up, -forward), up, -forward])
        spec.worldbody.add_camera(
            name=room_camera(room.index),
            pos=[*room.center, ROOM_CAMERA_HEIGHT_M],
            quat=quat_xyzw_to_wxyz(Rotation.from_matrix(R).as_quat()).tolist(),
            fovy=70.0,
        )

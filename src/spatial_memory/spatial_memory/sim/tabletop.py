"""The tabletop-kitchen scene: the FR3 on a table among textured kitchen objects, in MuJoCo.

Everything is generated from a seed by our code (geometry and textures); the robot comes from the one
URDF in `urdf/fr3.urdf` via `spatial_memory.robot.description.load_mjspec`, attached on the table. The
scene is kinematic: joint angles are set, not simulated, which is all the stationary pipeline needs.
Two cameras render RGB and metric depth: the robot's wrist camera and a fixed exocentric camera.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import make_pose, quat_xyzw_to_wxyz
from spatial_memory.robot.description import CameraMount, load_mjspec
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.sim import textures

log = logging.getLogger(__name__)

WRIST_CAMERA = "wrist_camera"
EXO_CAMERA = "exo_camera"
# MuJoCo cameras look along -z with +y up; REP-103 optical frames look along +z with +y down.
_MJ_CAM_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class TabletopConfig:
    """Scene layout and camera settings."""

    seed: int = 0
    width: int = 320  # rendered image size (both cameras)
    height: int = 240
    table_height: float = 0.75  # top of the table, metres; the robot base stands on it
    num_objects: int = 12
    exo_camera_position: tuple[float, float, float] = (1.75, -1.25, 1.65)
    exo_camera_target: tuple[float, float, float] = (0.4, 0.0, 0.8)
    exo_fovy_deg: float = 60.0
    wrist_fovy_deg: float = 58.0
    shadows: bool = False  # shadows cost 3-5x render time on a CPU

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ConfigError(f"image size {self.width}x{self.height} must be within 16..4096 pixels")
        if not 0 <= self.num_objects <= 24:
            raise ConfigError(f"num_objects must be within 0..24, got {self.num_objects}")
        if not (10.0 < self.exo_fovy_deg < 170.0 and 10.0 < self.wrist_fovy_deg < 170.0):
            raise ConfigError("camera fields of view must be within 10..170 degrees")
        if self.table_height <= 0.1:
            raise ConfigError(f"table_height must be above 0.1 m, got {self.table_height}")


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """REP-103 optical-frame pose at `position` looking at `target`, image x parallel to the ground."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:
        raise InvalidInputError("look_at: viewing direction is vertical; the image x axis is undefined")
    x /= np.linalg.norm(x)
    return make_pose(np.column_stack([x, np.cross(z, x), z]), np.asarray(position, float))


class TabletopScene:
    """A kinematic FR3 on a kitchen table with a wrist and an exocentric RGB-D camera."""

    def __init__(self, config: TabletopConfig = TabletopConfig(), mount: CameraMount | None = None) -> None:
        self.config = config
        self.kinematics = FR3Kinematics(mount)
        self.T_world_base = make_pose(translation=np.array([0.0, 0.0, config.table_height]))
        spec = self._build_spec(mount)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self._qpos_adr = np.array(
            [self.model.jnt_qposadr[self.model.joint(n).id] for n in self.kinematics.joint_names]
        )
        self._renderer = mujoco.Renderer(self.model, config.height, config.width)
        self._depth_renderer = mujoco.Renderer(self.model, config.height, config.width)
        self._depth_renderer.enable_depth_rendering()
        self.set_joints(self.kinematics.home)
        log.info(
            "tabletop scene: seed %d, %d objects, %dx%d",
            config.seed,
            config.num_objects,
            config.width,
            config.height,
        )

    # ------------------------------------------------------------------ building
    def _build_spec(self, mount: CameraMount | None) -> mujoco.MjSpec:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        # The world is built around the robot's own spec (no attach step, so every robot name stays as in
        # the URDF); the robot's root body is moved onto the table.
        spec = load_mjspec(mount, fovy_deg=cfg.wrist_fovy_deg)
        spec.body("base").pos = self.T_world_base[:3, 3].tolist()
        spec.modelname = "tabletop_kitchen"
        spec.visual.global_.offwidth = max(640, cfg.width)
        spec.visual.global_.offheight = max(480, cfg.height)
        spec.visual.quality.shadowsize = 2048 if cfg.shadows else 0
        self._add_room(spec, rng)
        self._add_table(spec, rng)
        self._add_objects(spec, rng)
        self._add_exo_camera(spec)
        return spec

    def _material(
        self, spec: mujoco.MjSpec, name: str, image: np.ndarray, repeat: float = 1.0, uniform: bool = True
    ) -> str:
        """A material with a procedural texture; `uniform` repeats it per metre, else once per face."""
        tex = spec.add_texture(
            name=name,
            type=mujoco.mjtTexture.mjTEXTURE_2D,
            width=image.shape[1],
            height=image.shape[0],
            nchannel=3,
        )
        tex.data = np.ascontiguousarray(image).tobytes()
        mat = spec.add_material(name=name, texrepeat=[repeat, repeat], texuniform=uniform)
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = name
        return name

    def _add_room(self, spec: mujoco.MjSpec, rng: np.random.Generator) -> None:
        wb = spec.worldbody
        box = mujoco.mjtGeom.mjGEOM_BOX
        floor = self._material(spec, "floor", textures.checker(rng), repeat=2.0)
        wb.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[4, 4, 0.1], material=floor)
        walls = {  # name: (centre, half sizes, texture)
            "wall_back": ((-1.2, 0.0, 1.3), (0.02, 2.5, 1.3), textures.tiles(rng)),
            "wall_left": ((0.6, 2.2, 1.3), (2.0, 0.02, 1.3), textures.marble(rng)),
            "wall_right": ((0.6, -2.2, 1.3), (2.0, 0.02, 1.3), textures.stripes(rng)),
            "wall_front": ((2.7, 0.0, 1.3), (0.02, 2.5, 1.3), textures.dots(rng)),
        }
        for name, (pos, size, image) in walls.items():
            wb.add_geom(
                name=name,
                type=box,
                pos=list(pos),
                size=list(size),
                material=self._material(spec, name, image, repeat=3.0),
            )
        counters = {  # kitchen furniture that gives each direction its own look
            "fridge": ((-0.9, 1.6, 0.9), (0.3, 0.35, 0.9), (0.85, 0.87, 0.9, 1)),
            "cabinet": ((-0.95, -1.3, 0.45), (0.25, 0.6, 0.45), (0.35, 0.22, 0.15, 1)),
            "shelf": ((1.2, 2.0, 1.1), (0.5, 0.15, 0.04), (0.6, 0.4, 0.2, 1)),
            "stove": ((1.4, -1.95, 0.45), (0.4, 0.25, 0.45), (0.15, 0.15, 0.17, 1)),
        }
        for name, (pos, size, rgba) in counters.items():
            wb.add_geom(name=name, type=box, pos=list(pos), size=list(size), rgba=list(rgba))
        for i, pos in enumerate(([0.5, 0.0, 2.6], [-0.5, 1.2, 2.4], [1.5, -1.2, 2.4])):
            wb.add_light(
                name=f"light{i}",
                pos=pos,
                dir=[0, 0, -1],
                diffuse=[0.55, 0.55, 0.55],
                castshadow=self.config.shadows,
            )

    def _add_table(self, spec: mujoco.MjSpec, rng: np.random.Generator) -> None:
        top = self.config.table_height
        wood = self._material(spec, "table_top", textures.wood(rng), repeat=0.8)
        table = spec.worldbody.add_body(name="table", pos=[0.4, 0.0, 0.0])
        table.add_geom(
            name="table_top",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=[0, 0, top - 0.02],
            size=[0.8, 1.05, 0.02],
            material=wood,
        )
        for i, (x, y) in enumerate(((0.75, 1.0), (0.75, -1.0), (-0.75, 1.0), (-0.75, -1.0))):
            table.add_geom(
                name=f"table_leg{i}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                pos=[x, y, (top - 0.04) / 2],
                size=[0.03, 0.03, (top - 0.04) / 2],
                rgba=[0.3, 0.2, 0.12, 1],
            )

    def _add_objects(self, spec: mujoco.MjSpec, rng: np.random.Generator) -> None:
        """Kitchen objects on the table, in reach of the arm and spread around it."""
        top = self.config.table_height
        kinds = ("box", "can", "fruit", "board", "bowl", "bottle")
        placed: list[np.ndarray] = []
        for i in range(self.config.num_objects):
            for _ in range(200):  # rejection sampling for spacing
                r, a = rng.uniform(0.45, 1.0), rng.uniform(-1.9, 1.9)
                xy = np.array([r * math.cos(a), r * math.sin(a)])
                inside = -0.35 < xy[0] < 1.15 and abs(xy[1]) < 1.0
                if inside and all(np.linalg.norm(xy - p) > 0.17 for p in placed):
                    break
            else:
                log.warning("could not place object %d without overlap; the table is full", i)
                break
            placed.append(xy)
            kind = kinds[i % len(kinds)]
            gen = list(textures.GENERATORS.values())[int(rng.integers(len(textures.GENERATORS)))]
            mat = self._material(spec, f"obj{i}", gen(rng, 128), uniform=False)
            self._add_object(spec, f"obj{i}_{kind}", kind, xy, top, mat, rng)

    @staticmethod
    def _add_object(
        spec: mujoco.MjSpec,
        name: str,
        kind: str,
        xy: np.ndarray,
        top: float,
        mat: str,
        rng: np.random.Generator,
    ) -> None:
        g = mujoco.mjtGeom
        yaw = float(rng.uniform(-math.pi, math.pi))
        quat = quat_xyzw_to_wxyz(Rotation.from_euler("z", yaw).as_quat()).tolist()
        shapes = {  # kind: (geom type, half sizes)
            "box": (g.mjGEOM_BOX, [0.04, 0.07, 0.11]),
            "can": (g.mjGEOM_CYLINDER, [0.035, 0.06]),
            "fruit": (g.mjGEOM_SPHERE, [0.045]),
            "board": (g.mjGEOM_BOX, [0.12, 0.08, 0.012]),
            "bowl": (g.mjGEOM_CYLINDER, [0.075, 0.03]),
            "bottle": (g.mjGEOM_CAPSULE, [0.03, 0.09]),
        }
        gtype, size = shapes[kind]
        half_height = {"box": 0.11, "can": 0.06, "fruit": 0.045, "board": 0.012, "bowl": 0.03}.get(kind, 0.12)
        body = spec.worldbody.add_body(
            name=name, pos=[float(xy[0]), float(xy[1]), top + half_height], quat=quat
        )
        body.add_geom(name=name, type=gtype, size=size, material=mat)

    def _add_exo_camera(self, spec: mujoco.MjSpec) -> None:
        cfg = self.config
        T = look_at(np.array(cfg.exo_camera_position), np.array(cfg.exo_camera_target))
        R_mj = T[:3, :3] @ _MJ_CAM_TO_OPTICAL
        quat = quat_xyzw_to_wxyz(Rotation.from_matrix(R_mj).as_quat()).tolist()
        spec.worldbody.add_camera(
            name=EXO_CAMERA, pos=list(cfg.exo_camera_position), quat=quat, fovy=cfg.exo_fovy_deg
        )

    # ------------------------------------------------------------------ running
    def set_joints(self, q: np.ndarray, clamp: bool = False) -> np.ndarray:
        """Put the arm at joint angles `q` (validated against the FR3 limits) and update the kinematics."""
        q = self.kinematics.check_joints(q, clamp=clamp)
        self.data.qpos[self._qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        return q

    def camera_pose(self, camera: str) -> np.ndarray:
        """`T_world_optical` of a camera as MuJoCo places it (REP-103 optical axes)."""
        cam = self._camera_id(camera)
        R = self.data.cam_xmat[cam].reshape(3, 3) @ _MJ_CAM_TO_OPTICAL
        return make_pose(R, self.data.cam_xpos[cam].copy())

    def intrinsics(self, camera: str) -> np.ndarray:
        """Pinhole matrix K (pixel centres at integer coordinates) of a camera at the render size."""
        fovy = math.radians(self.model.cam_fovy[self._camera_id(camera)])
        w, h = self.config.width, self.config.height
        f = 0.5 * h / math.tan(0.5 * fovy)
        return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])

    def render(self, camera: str) -> np.ndarray:
        """RGB uint8 (H, W, 3) image of a camera."""
        self._renderer.update_scene(self.data, camera=self._camera_id(camera))
        return self._renderer.render().copy()

    def render_depth(self, camera: str) -> np.ndarray:
        """Metric depth along the optical axis, float32 (H, W), metres."""
        self._depth_renderer.update_scene(self.data, camera=self._camera_id(camera))
        return self._depth_renderer.render().copy()

    def _camera_id(self, camera: str) -> int:
        cam = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cam < 0:
            names = [self.model.camera(i).name for i in range(self.model.ncam)]
            raise InvalidInputError(f"unknown camera {camera!r}; the scene has {names}")
        return cam

    def close(self) -> None:
        """Free the renderers' GL contexts."""
        self._renderer.close()
        self._depth_renderer.close()

    def __enter__(self) -> TabletopScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

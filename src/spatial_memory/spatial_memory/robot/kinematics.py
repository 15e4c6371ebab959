"""FR3 forward kinematics on MuJoCo: joint angles -> `T_base_frame` for every link and camera frame.

The model is compiled once from the one URDF (`description.load_mjspec`), so the poses published on TF,
the rendered camera and the poses the memory sees all come from the same numbers.
"""

from __future__ import annotations

import logging
from operator import le

import mujoco
import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.robot.description import (
    ARM_JOINTS,
    HOME,
    OPTICAL_FRAME,
    ROOT_LINK,
    CameraMount,
    load_mjspec,
)

log = logging.getLogger(__name__)

LIMIT_TOL = 1e-9  # rad: values this close outside a limit are accepted as they are (rounding noise)
DEFAULT_FRAME = "fr3_hand_tcp"


class FR3Kinematics:
    """Forward kinematics of the FR3 (plus its wrist camera) from a MuJoCo model built from the URDF.

    Poses are 4x4 float64 `T_base_frame`: the frame's pose in the robot's `base` link. Each instance owns
    one `MjData` that every call overwrites, so an instance is NOT thread-safe: give each thread its own.
    """

    def __init__(self, mount: CameraMount | None = None) -> None:
        self.mount = mount if mount is not None else CameraMount()
        self.model = load_mjspec(self.mount).compile()
        self.data = mujoco.MjData(self.model)
        model = self.model
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in ARM_JOINTS]
        if min(ids) < 0 or model.nq != len(ARM_JOINTS):
            raise ConfigError(f"the FR3 model must have exactly the joints {ARM_JOINTS}, has nq={model.nq}")
        if [int(model.jnt_qposadr[i]) for i in ids] != list(range(len(ids))):
            raise ConfigError("the FR3 joints must fill qpos in the order fr3_joint1..fr3_joint7")
        self.joint_names: tuple[str, ...] = ARM_JOINTS
        self.lower: np.ndarray = model.jnt_range[ids, 0].copy()
        self.upper: np.ndarray = model.jnt_range[ids, 1].copy()
        self._lo = self.lower - LIMIT_TOL
        self._hi = self.upper + LIMIT_TOL
        self._lo_list, self._hi_list = self._lo.tolist(), self._hi.tolist()
        self.frame_names: tuple[str, ...] = tuple(model.body(b).name for b in range(1, model.nbody))
        self._body_id = {name: b for b, name in enumerate(self.frame_names, start=1)}
        if self._body_id.get(ROOT_LINK) != 1 or model.body_parentid[1] != 0:
            raise ConfigError(f"the FR3 model must be rooted at body {ROOT_LINK!r}")
        # Views into MjData (they follow every mj_kinematics call): no attribute lookups per call.
        self._qpos = self.data.qpos
        self._xpos = self.data.xpos
        self._xmat = self.data.xmat
        self._R = {b: self._xmat[b].reshape(3, 3) for b in self._body_id.values()}
        self._p = {b: self._xpos[b] for b in self._body_id.values()}
        self._identity = np.eye(4)
        log.debug("FR3 kinematics: %d frames, camera mount %s", len(self.frame_names), self.mount)

    @property
    def home(self) -> np.ndarray:
        """The FR3 "ready" configuration [0, -pi/4, 0, -3pi/4, 0, pi/2, pi/4]."""
        return np.array(HOME)

    # ------------------------------------------------------------------ validation
    def check_joints(self, q: np.ndarray, clamp: bool = False) -> np.ndarray:
        """`q` as a new float64 (7,) array; raise InvalidInputError on a wrong length, NaN/inf or (unless
        `clamp`) a value outside the joint limits; with `clamp`, out-of-limit values are clamped."""
        try:
            q = np.array(q, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"joint values must be numbers: {exc}") from exc
        if q.shape != self.lower.shape:
            raise InvalidInputError(
                f"expected {len(self.joint_names)} joint values ({', '.join(self.joint_names)}), "
                f"got shape {q.shape}"
            )
        # Fast path on plain floats (a numpy comparison costs ~1.5 us per call, this ~0.8 us in all).
        # NaN fails every comparison, so it falls through to the slow path, which names the bad joint.
        v = q.tolist()
        if all(map(le, self._lo_list, v)) and all(map(le, v, self._hi_list)):
            return q
        return self._fix_or_raise(q, clamp, where="")

    def _fix_or_raise(self, q: np.ndarray, clamp: bool, where: str) -> np.ndarray:
        """Slow path of check_joints: name the first bad joint, or clamp if asked and all are finite."""
        for name, value in zip(self.joint_names, q, strict=True):
            if not np.isfinite(value):
                raise InvalidInputError(f"{where}{name} is {value} (joint values must be finite)")
        if clamp:
            np.clip(q, self.lower, self.upper, out=q)
            return q
        for i, (name, value) in enumerate(zip(self.joint_names, q, strict=True)):
            if not self._lo[i] <= value <= self._hi[i]:
                raise InvalidInputError(
                    f"{where}{name} = {value:.6g} rad is outside its limits "
                    f"[{self.lower[i]:.6g}, {self.upper[i]:.6g}]"
                )
        raise AssertionError("unreachable: check_joints found no bad joint")  # pragma: no cover

    def body_id(self, frame: str) -> int:
        """MuJoCo body id of a frame (its row in `data.xpos` / `xquat` / `xmat`); InvalidInputError if not."""
        return self._body(frame)

    def set_joints(self, q: np.ndarray, clamp: bool = False) -> np.ndarray:
        """Run FK in place for `q` (checked as in `check_joints`) and return the checked vector.

        The poses are then in `data.xpos` / `data.xquat` (w, x, y, z) / `data.xmat`, row `body_id(frame)`,
        in `base`: for callers that read a few frames without building 4x4 matrices (fk_node's TF).
        """
        q = self.check_joints(q, clamp)
        self._qpos[:] = q
        mujoco.mj_kinematics(self.model, self.data)
        return q

    def _body(self, frame: str) -> int:
        """MuJoCo body id of a frame name, or InvalidInputError listing the valid names."""
        body = self._body_id.get(frame)
        if body is None:
            raise InvalidInputError(f"unknown frame {frame!r}; valid frames: {', '.join(self.frame_names)}")
        return body

    # ------------------------------------------------------------------ forward kinematics
    def forward(self, q: np.ndarray, frame: str = DEFAULT_FRAME, clamp: bool = False) -> np.ndarray:
        """`T_base_frame` (4x4 float64) of one frame at joint angles `q`."""
        body = self._body(frame)
        self._qpos[:] = self.check_joints(q, clamp)
        mujoco.mj_kinematics(self.model, self.data)
        T = self._identity.copy()
        T[:3, :3] = self._R[body]
        T[:3, 3] = self._p[body]
        return T

    def camera_pose(self, q: np.ndarray, clamp: bool = False) -> np.ndarray:
        """`T_base_optical`: the wrist camera's REP-103 optical frame (z forward, x right, y down)."""
        return self.forward(q, OPTICAL_FRAME, clamp)

    def forward_all(self, q: np.ndarray, clamp: bool = False) -> dict[str, np.ndarray]:
        """`T_base_frame` of every frame in `frame_names` at joint angles `q` (e.g. for TF)."""
        self._qpos[:] = self.check_joints(q, clamp)
        mujoco.mj_kinematics(self.model, self.data)
        n = len(self.frame_names)
        T = np.zeros((n, 4, 4))
        T[:, :3, :3] = self._xmat[1:].reshape(n, 3, 3)
        T[:, :3, 3] = self._xpos[1:]
        T[:, 3, 3] = 1.0
        return dict(zip(self.frame_names, T, strict=True))

    def forward_batch(self, Q: np.ndarray, frame: str = DEFAULT_FRAME, clamp: bool = False) -> np.ndarray:
        """(N, 4, 4) `T_base_frame` of one frame for N joint vectors `Q` (N, 7); all are validated first."""
        body = self._body(frame)
        Q = self.check_joints_batch(Q, clamp)
        n = len(Q)
        R = np.empty((n, 9))
        p = np.empty((n, 3))
        xmat, xpos, qpos = self._xmat[body], self._p[body], self._qpos
        model, data, kinematics = self.model, self.data, mujoco.mj_kinematics
        for i in range(n):
            qpos[:] = Q[i]
            kinematics(model, data)
            R[i] = xmat
            p[i] = xpos
        T = np.zeros((n, 4, 4))
        T[:, :3, :3] = R.reshape(n, 3, 3)
        T[:, :3, 3] = p
        T[:, 3, 3] = 1.0
        return T

    def check_joints_batch(self, Q: np.ndarray, clamp: bool = False) -> np.ndarray:
        """`Q` as a new float64 (N, 7) array, each row checked as in `check_joints`."""
        try:
            qs = np.array(Q, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"joint values must be numbers: {exc}") from exc
        if qs.ndim != 2 or qs.shape[1] != len(self.joint_names):
            raise InvalidInputError(
                f"expected an (N, {len(self.joint_names)}) joint array, got shape {qs.shape}"
            )
        bad = ~((qs >= self._lo) & (qs <= self._hi)).all(axis=1)
        for row in np.flatnonzero(bad):
            qs[row] = self._fix_or_raise(qs[row], clamp, where=f"row {row}: ")
        return qs

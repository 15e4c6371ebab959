"""What fk_node publishes on /tf and when, without ROS: a rate limit, publish-on-change and a keep-alive.

A real FR3 publishes `joint_states` at up to 1 kHz; running FK and sending TF for every message cost fk_node
46 % of a core at 100 Hz (issue 13; this VM: benchmarks/results/fk_node_cpu.md), most of it building
messages (scipy rotation checks per transform: ~1.9 ms a message in a warm loop), and an arm at rest was
re-sent unchanged with every message. `TfThrottle` decides per joint vector, on the stamp timeline
(so a bag replay or sim time behaves like the robot):

- `COMPUTE`: the arm moved more than `tolerance_rad` (any joint) since the last computed vector, and the
  current 1/`rate_hz` slot of the stamp timeline has no publication yet: run FK and publish. A moved arm is
  thus published within one rate period (plus one input interval), never later.
- `RESTAMP`: the arm has not moved, but the newest publication is in an earlier 1/`keepalive_hz` slot:
  publish the cached transforms again with the new stamp (no FK). TF consumers look camera frames up at
  image stamps with a short timeout (memory_node: `tf_timeout_s` 0.05 s in config/robot.yaml, through the
  arm for the wrist camera), and tf2 never extrapolates past a frame's newest sample, so a resting arm
  needs a sample at or after each image stamp within that timeout: keep-alive period + transport <=
  timeout + image latency. A 1 Hz heartbeat would fail most lookups (benchmarks/ros_fk_cpu.py measures
  it); the 25 Hz default (40 ms) leaves 10 ms for transport even for an image that arrives the instant it
  is stamped. A re-stamp is cheap (no FK, no conversions): "only on change" saves the FK and message
  building, and TF consumers (every node with a tf2 listener) decode fewer messages.
- `SKIP`: everything else (this slot already published, an unmoved arm within its keep-alive, a stamp
  older than the newest seen). At most one message per 1/`rate_hz` slot of stamps is published, so /tf
  carries about `rate_hz` messages per second (never more than `rate_hz` + 2) whatever the input rate.

Coalescing: the decision needs only the newest message, so the node subscribes keep-last 1 and takes the
newest joint state twice per TF period (not one executor callback per message): a 1 kHz stream never
queues and costs the node what 100 Hz costs. `rate_hz` 0 turns the throttle off: every message is
computed and published (the behaviour before this module, kept as the benchmark baseline).

`FkEdges` computes the TF edges of the moving joints (and the end-effector pose) as plain arrays of
translations and quaternions straight from MuJoCo's body poses, in one vectorised step, so the node only
copies floats into messages it built once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from spatial_memory.errors import ConfigError
from spatial_memory.robot.description import TfEdge
from spatial_memory.robot.kinematics import FR3Kinematics
from spatial_memory.stamps import DEFAULT_TIME_JUMP_S, JUMPED_BACK, LATE, stamp_order

log = logging.getLogger(__name__)

SKIP, COMPUTE, RESTAMP = "skip", "compute", "restamp"


def _rate(value: float, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
    return value


class TfThrottle:
    """Per joint vector: `COMPUTE`, `RESTAMP` or `SKIP` (see the module docstring), with counters.

    `rate_hz` 0: every message is `COMPUTE` (no throttling). Otherwise `keepalive_hz` must be in
    (0, rate_hz]. Stamps are int nanoseconds; one far older than the newest (`jump_back_s`) restarts the
    throttle (a bag looped, a simulation reset), a slightly older one is skipped as late.
    """

    def __init__(
        self,
        rate_hz: float,
        keepalive_hz: float,
        tolerance_rad: float,
        jump_back_s: float = DEFAULT_TIME_JUMP_S,
    ) -> None:
        self.rate_hz = _rate(rate_hz, "tf_rate_hz")
        self.keepalive_hz = _rate(keepalive_hz, "keepalive_rate_hz")
        self.tolerance_rad = _rate(tolerance_rad, "move_tolerance_rad")
        if self.rate_hz > 0 and not 0 < self.keepalive_hz <= self.rate_hz:
            raise ConfigError(
                f"keepalive_rate_hz must be in (0, tf_rate_hz = {self.rate_hz:g}], got {self.keepalive_hz:g}"
            )
        self.jump_back_s = jump_back_s
        self._period_ns = round(1e9 / self.rate_hz) if self.rate_hz > 0 else 0
        self._keepalive_ns = round(1e9 / self.keepalive_hz) if self.keepalive_hz > 0 else 0
        self.counts = {"received": 0, "computed": 0, "restamped": 0, "skipped": 0, "late": 0, "restarts": 0}
        self._reset()

    def _reset(self) -> None:
        self._newest_ns: int | None = None  # newest stamp seen
        self._published_ns: int | None = None  # stamp of the newest publication
        self._computed_q: np.ndarray | None = None  # joint vector of the newest COMPUTE

    @property
    def published_ns(self) -> int | None:
        """Stamp of the newest publication (compute or re-stamp), None before the first."""
        return self._published_ns

    @property
    def computed_q(self) -> np.ndarray | None:
        """The joint vector the published transforms were computed from, None before the first."""
        return self._computed_q

    def moved(self, q: np.ndarray) -> bool:
        """Whether `q` differs from the last computed vector by more than the tolerance (or none yet)."""
        ref = self._computed_q
        return ref is None or float(np.max(np.abs(q - ref))) > self.tolerance_rad

    def offer(self, stamp_ns: int, q: np.ndarray) -> str:
        """The decision for a (checked) joint vector `q` stamped `stamp_ns`; the caller acts on it."""
        counts = self.counts
        counts["received"] += 1
        order = stamp_order(stamp_ns, self._newest_ns, self.jump_back_s)
        if order == LATE:
            counts["late"] += 1
            return SKIP
        if order == JUMPED_BACK:
            log.info(
                "joint state stamps jumped back %.3f s: TF throttle restarts",
                (self._newest_ns - stamp_ns) / 1e9,
            )
            counts["restarts"] += 1
            self._reset()
        self._newest_ns = stamp_ns
        if self._period_ns == 0 or self._published_ns is None:
            return self._publish(COMPUTE, stamp_ns, q)
        if stamp_ns // self._period_ns == self._published_ns // self._period_ns:
            counts["skipped"] += 1
            return SKIP
        if self.moved(q):
            return self._publish(COMPUTE, stamp_ns, q)
        if stamp_ns // self._keepalive_ns != self._published_ns // self._keepalive_ns:
            return self._publish(RESTAMP, stamp_ns, q)
        counts["skipped"] += 1
        return SKIP

    def _publish(self, decision: str, stamp_ns: int, q: np.ndarray) -> str:
        self._published_ns = stamp_ns
        if decision == COMPUTE:
            self._computed_q = np.array(q, dtype=np.float64)
            self.counts["computed"] += 1
        else:
            self.counts["restamped"] += 1
        return decision


def _relative_quat_tensor() -> np.ndarray:
    """(16, 4) M with `(a outer b).reshape(16) @ M` = conj(a) * b as (x, y, z, w), for a, b in (w, x, y, z).

    The Hamilton product is bilinear, so one outer product and one matrix product do a batch of relative
    rotations: far cheaper for a handful of rows than column arithmetic or np.cross.
    """
    M = np.zeros((4, 4, 4))
    basis = np.eye(4)
    for i in range(4):
        for j in range(4):
            a, b = basis[i] * np.array([1.0, -1.0, -1.0, -1.0]), basis[j]  # conj(a)
            w = a[0] * b[0] - a[1:] @ b[1:]
            v = a[0] * b[1:] + b[0] * a[1:] + np.cross(a[1:], b[1:])
            M[i, j] = [*v, w]
    return M.reshape(16, 4)


class FkEdges:
    """TF edges `T_parent_child` of `edges` and the pose of `ee_frame` in `base`, as arrays, from one FK.

    `compute(q)` returns `(xyz, quat_xyzw, ee_xyz, ee_quat_xyzw)`: (n, 3) and (n, 4) for the edges in the
    given order, (3,) and (4,) for the end effector. Quaternions are unit, sign as MuJoCo gives them.
    Owns nothing but views into `kinematics.data`: not thread-safe, like the kinematics.
    """

    def __init__(self, kinematics: FR3Kinematics, edges: Sequence[TfEdge], ee_frame: str) -> None:
        self.kinematics = kinematics
        self.edges = tuple(edges)
        self._parent = np.array([kinematics.body_id(e.parent) for e in self.edges], dtype=np.intp)
        self._child = np.array([kinematics.body_id(e.child) for e in self.edges], dtype=np.intp)
        self._ee = kinematics.body_id(ee_frame)
        self._rel_quat = _relative_quat_tensor()
        self._xyzw = np.array([1, 2, 3, 0])

    def compute(
        self, q: np.ndarray, clamp: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """FK at `q` (checked; InvalidInputError as `check_joints`) -> edge and end-effector arrays."""
        kin = self.kinematics
        kin.set_joints(q, clamp)
        data = kin.data
        xpos, xquat, parent, child = data.xpos, data.xquat, self._parent, self._child
        n = len(parent)
        # T_parent_child = T_base_parent^-1 T_base_child: t = R_parent^T (p_child - p_parent)
        R_parent = data.xmat[parent].reshape(n, 3, 3)
        xyz = (R_parent * (xpos[child] - xpos[parent])[:, :, None]).sum(axis=1)
        outer = xquat[parent][:, :, None] * xquat[child][:, None, :]
        quat = outer.reshape(n, 16) @ self._rel_quat
        return xyz, quat, xpos[self._ee].copy(), xquat[self._ee][self._xyzw]

"""Base odometry from the patch VO: camera frames (with depth and the arm's joint angles) in, the robot
body's pose in the odometry frame, its twist and their covariances out. What `vo_node` runs, without ROS.

Frames: PatchVO estimates the camera's motion; with the camera's mount on the body `T_base_cam` (REP-103
optical frame in `base_link`) the body's pose is `T_odom_base = T_odom_base0 @ T_base_cam @ T_cam0_cam @
T_cam_base`, where `T_odom_base0` is where the body started: the wheel odometry's pose at the first frame
when one is given (so VO continues in the frame the rest of the robot already uses), else the identity.

Masks: the arm's silhouette from its joint angles (`robot.silhouette.ArmSilhouette`, posed by the fixed
`T_cam_arm`: the arm's root in the camera frame) and an optional static mask image; no patch lives there.

Wheel odometry, when given (`wheel_prior`): its increment since the previous frame, as the camera's motion
(`T_cam_base @ wheel_prev^-1 @ wheel @ T_base_cam`), is PatchVO's motion prior: the first pose hypothesis
its LK starts from, and a term on the translation between keyframes in its bundle adjustment (monocular:
the rotation only, the VO's units are not metres). The heading stays the image's: a hypothesis that turns
much more or less than the wheels is a last resort, and the wheels' rotation is no term of the adjustment.

Tracking losses: the output chain never jumps. On a lost frame the body moves by the wheel odometry's
increment since the previous frame when one is given, else by PatchVO's motion prior, and VO resumes from
there. Each step says where its motion came from (`visual`, `wheel`, `prior`).

Covariance: a drift model, not a per-frame estimate. VO's error grows with the path, mostly as a bias
(scale and heading errors that persist), so each step adds to the standard deviation, not the variance: in
proportion to how far it moved (`translation_drift` m per m, `rotation_drift` rad per rad), which makes
the result independent of the frame rate. Steps VO did not measure count `unmeasured_factor` times more and
a step bridged by the prior adds `prior_step_sigma_*` besides (the prior may be wrong by a whole step).
The default, 2 % of the path, is 2-4 times what we measured (0.5 % on the TUM clip at 640x480, 0.4-1 % for
vo_node in the simulated house at 160x120). Translation uncertainty is isotropic: no rotating into `odom`.
Monocular mode (no depth) has no metric scale: its poses are in the VO's units (the first frame's patches
start 1 m away) and its covariance is in those units too. The mount's lever arm stays in metres, so the
body's path is exactly similar to the truth only for a camera at the body's origin (use depth on a robot).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import check_pose, invert
from spatial_memory.robot.silhouette import ArmSilhouette
from spatial_memory.vo.patch_vo import PatchVO, PatchVOConfig, se3_log

log = logging.getLogger(__name__)

SOURCES = ("visual", "wheel", "prior")


@dataclass(frozen=True)
class VisualOdometryConfig:
    """What feeds the VO (depth, masks) and the covariance model of its output."""

    use_depth: bool = True
    arm_mask: bool = True
    arm_mask_margin_px: int = 6
    static_mask: str = ""  # image file, non-zero pixels masked (e.g. the robot's own body); '' = none
    translation_drift: float = 0.02  # 1-sigma translation error per metre of measured motion
    rotation_drift: float = 0.02  # 1-sigma rotation error per radian of measured rotation
    unmeasured_factor: float = 10.0  # sigma multiplier of steps VO did not measure (wheel, prior)
    prior_step_sigma_m: float = 0.05  # extra 1-sigma of a step bridged by the motion prior
    prior_step_sigma_rad: float = 0.05
    wheel_prior: bool = True  # the wheel odometry's increment is PatchVO's first pose hypothesis per frame
    patch: PatchVOConfig = field(default_factory=lambda: PatchVOConfig(keep_trajectory=False))

    def __post_init__(self) -> None:
        if self.arm_mask_margin_px < 0:
            raise ConfigError(f"arm_mask_margin_px must be >= 0, got {self.arm_mask_margin_px}")
        for name in ("translation_drift", "rotation_drift", "prior_step_sigma_m", "prior_step_sigma_rad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(self.unmeasured_factor) and self.unmeasured_factor >= 1):
            raise ConfigError(f"unmeasured_factor must be >= 1, got {self.unmeasured_factor!r}")


@dataclass(frozen=True)
class OdometryStep:
    """One frame's output: the body pose in odom, its twist in the body frame, both covariances (6x6 over
    x y z roll pitch yaw / vx vy vz wx wy wz), where the motion came from and what VO saw."""

    stamp_ns: int
    T_odom_base: np.ndarray
    twist: np.ndarray
    pose_covariance: np.ndarray
    twist_covariance: np.ndarray
    source: str
    tracked: int
    reason: str
    masked_fraction: float


def load_static_mask(path: str, width: int, height: int) -> np.ndarray | None:
    """A static mask image as (height, width) bool (non-zero = masked), or None for ''."""
    if not path:
        return None
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InvalidInputError(f"cannot read the static mask image {path!r}")
    if image.shape != (height, width):
        raise InvalidInputError(
            f"static mask {path!r} is {image.shape[1]}x{image.shape[0]}, the camera is {width}x{height}"
        )
    return image > 0


class VisualOdometry:
    """PatchVO on a body-mounted camera, as base odometry with a continuous chain and a covariance."""

    def __init__(
        self,
        K: np.ndarray,
        width: int,
        height: int,
        T_base_cam: np.ndarray,  # noqa: N803 - the project's pose naming
        config: VisualOdometryConfig | None = None,
        silhouette: ArmSilhouette | None = None,
        T_cam_arm: np.ndarray | None = None,  # noqa: N803
    ) -> None:
        self.config = config or VisualOdometryConfig()
        self.T_base_cam = check_pose(T_base_cam, "T_base_cam")
        self._T_cam_base = invert(self.T_base_cam)
        if self.config.arm_mask and silhouette is not None and T_cam_arm is None:
            raise InvalidInputError("an arm silhouette needs T_cam_arm, the arm's root in the camera frame")
        self.silhouette = silhouette if self.config.arm_mask else None
        self.T_cam_arm = None if T_cam_arm is None else check_pose(T_cam_arm, "T_cam_arm")
        self.vo = PatchVO(K, width, height, self.config.patch)
        self.static_mask = load_static_mask(self.config.static_mask, width, height)
        self._first_stamp: int | None = None
        self._last: OdometryStep | None = None
        self._last_wheel: np.ndarray | None = None
        self._offset = np.eye(4)  # odom <- the VO chain's body frame 0 (moves when a loss is bridged)
        self._sigma = np.zeros(2)  # accumulated translation (m) and rotation (rad) standard deviation
        self.counts = {source: 0 for source in SOURCES} | {"losses": 0, "without_arm_mask": 0}
        self.distance_m = 0.0

    @property
    def last(self) -> OdometryStep | None:
        """The newest step, or None before the first frame."""
        return self._last

    def mask(self, joints: np.ndarray | None) -> np.ndarray | None:
        """Where no patch may live on this frame: the arm for `joints` (if masking it) | the static mask."""
        out = self.static_mask
        if self.silhouette is not None and joints is not None:
            vo = self.vo
            arm = self.silhouette.mask(
                joints, vo.K, self.T_cam_arm, vo.width, vo.height, self.config.arm_mask_margin_px
            )
            out = arm if out is None else (arm | out)
        return out

    def step(
        self,
        image: np.ndarray,
        stamp_ns: int,
        depth: np.ndarray | None = None,
        joints: np.ndarray | None = None,
        T_odom_base_wheel: np.ndarray | None = None,  # noqa: N803
    ) -> OdometryStep:
        """Track one frame. `joints`: the arm's 7 joint angles at the frame (None: no arm mask this frame);
        `T_odom_base_wheel`: the wheel odometry's body pose at the frame, if there is one.

        Raises InvalidInputError (and changes nothing) for a frame PatchVO refuses: wrong size, a stamp not
        after the last, a depth or mask of another size, non-rigid poses, wrong joint vectors."""
        stamp_ns = int(stamp_ns)
        t = 0.0 if self._first_stamp is None else (stamp_ns - self._first_stamp) * 1e-9
        wheel = None if T_odom_base_wheel is None else check_pose(T_odom_base_wheel, "T_odom_base_wheel")
        mask = self.mask(joints)  # raises on bad joints before anything changes
        use_depth = depth if self.config.use_depth else None
        prior = self._wheel_prior(wheel)
        T_world_cam = self.vo.track(image, t, depth=use_depth, mask=mask, motion_prior=prior)
        if self._first_stamp is None:
            self._first_stamp = stamp_ns
            if wheel is not None:
                self._offset = wheel.copy()
        body = self.T_base_cam @ self.vo.pose @ self._T_cam_base  # VO body frame 0 <- body now
        source = "visual"
        if T_world_cam is None:
            self.counts["losses"] += 1
            source = "prior"
            if wheel is not None and self._last_wheel is not None and self._last is not None:
                source = "wheel"
                T_new = self._last.T_odom_base @ invert(self._last_wheel) @ wheel
                self._offset = T_new @ invert(body)
        T_odom_base = self._offset @ body
        if self.silhouette is not None and joints is None:
            self.counts["without_arm_mask"] += 1
        self.counts[source] += 1
        out = self._finish(stamp_ns, T_odom_base, source, mask)
        self._last_wheel = wheel
        return out

    def status(self) -> dict[str, object]:
        """Counters and the newest step's summary, as plain data (vo/status)."""
        last = self._last
        summary: dict[str, object] = {
            "frames": self.vo.frames,
            **self.counts,
            "distance_m": round(self.distance_m, 4),
            "depth": self.config.use_depth,
            "arm_mask": self.silhouette is not None,
        }
        if last is not None:
            summary |= {
                "source": last.source,
                "tracked": last.tracked,
                "reason": last.reason,
                "masked_fraction": round(last.masked_fraction, 4),
                "sigma_xy_m": round(math.sqrt(last.pose_covariance[0, 0]), 4),
                "sigma_yaw_rad": round(math.sqrt(last.pose_covariance[5, 5]), 4),
            }
        return summary

    # -- internals ----------------------------------------------------------------------------------

    def _wheel_prior(self, wheel: np.ndarray | None) -> np.ndarray | None:
        """The camera's motion since the previous frame by the wheel odometry (PatchVO's first pose
        hypothesis), or None without two wheel poses or with `wheel_prior` off. Monocular: rotation only
        (the VO's units are not metres)."""
        if not self.config.wheel_prior or wheel is None or self._last_wheel is None or self._last is None:
            return None
        prior = self._T_cam_base @ invert(self._last_wheel) @ wheel @ self.T_base_cam
        if not self.config.use_depth:
            prior[:3, 3] = np.nan
        return prior

    def _step_sigma(self, delta: np.ndarray, source: str) -> np.ndarray:
        """Translation and rotation standard deviation this step adds (see the module docstring)."""
        cfg = self.config
        xi = se3_log(delta)
        sigma = np.array(
            [
                cfg.translation_drift * np.linalg.norm(delta[:3, 3]),
                cfg.rotation_drift * np.linalg.norm(xi[3:]),
            ]
        )
        if source != "visual":
            sigma *= cfg.unmeasured_factor
        if source == "prior":
            sigma = np.hypot(sigma, [cfg.prior_step_sigma_m, cfg.prior_step_sigma_rad])
        return sigma

    def _finish(
        self, stamp_ns: int, T_odom_base: np.ndarray, source: str, mask: np.ndarray | None
    ) -> OdometryStep:
        last = self._last
        twist, twist_sigma = np.zeros(6), np.zeros(2)
        if last is not None:
            delta = invert(last.T_odom_base) @ T_odom_base  # in the previous body frame
            dt = (stamp_ns - last.stamp_ns) * 1e-9
            xi = se3_log(delta)
            twist = np.concatenate([delta[:3, 3], xi[3:]]) / dt
            step_sigma = self._step_sigma(delta, source)
            self._sigma += step_sigma
            self.distance_m += float(np.linalg.norm(delta[:3, 3]))
            twist_sigma = step_sigma / dt
        status = self.vo.status
        self._last = OdometryStep(
            stamp_ns=stamp_ns,
            T_odom_base=T_odom_base,
            twist=twist,
            pose_covariance=np.diag(np.repeat(self._sigma**2, 3)),
            twist_covariance=np.diag(np.repeat(twist_sigma**2, 3)),
            source=source,
            tracked=int(status.tracked),
            reason=status.reason,
            masked_fraction=float(mask.mean()) if mask is not None else 0.0,
        )
        return self._last

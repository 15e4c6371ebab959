"""Patch visual odometry in DPVO's structure, on a CPU: tracked patches, a patch graph, windowed bundle
adjustment over camera poses and patch inverse depths, a damped constant-velocity motion prior, and RGB-D
depth for new patches where the camera has it.

How a frame is processed (`PatchVO.track`):
1. predict its pose: the last pose times the damped last velocity over the time since the last frame
   (DPVO's 'DAMPED_LINEAR', damping 0.5; per second, so a frame that comes late, after dropped ones, is
   predicted as far as the camera went);
2. track every live patch into this frame with pyramidal Lucas-Kanade (OpenCV) from the frame it was born
   in (`lk_anchor`: its template never drifts along the track), starting where a pose hypothesis projects
   it (`lk_predict`); the hypotheses, in turn until one explains `hypothesis_keep` of the tracks
   (`_search`): a motion prior from another sensor when `track` is given one (the wheel odometry's, with
   `lk_prior_levels`: a good start needs no coarse level), the velocity prediction, and the rotation
   that best fits a wide LK of the patches (`rotation_search`: a turn the prediction knows nothing of).
   Each is scored by how many tracks one pose explains (a motion-only fit); with a motion prior, one that
   turns much more or less than the prior is a last resort (repeated texture makes a shift by one period
   self-consistent). A track is kept only if tracking back, started as far from its answer as the
   forward search was, lands within `fb_max_px` of where it started, and it stays out of the mask; each
   kept track is an edge (patch, frame) of the patch graph with its observed pixel;
3. bundle-adjust the last `window` frames' poses and the inverse depths of the patches born in them
   (Gauss-Newton with the depths eliminated by the Schur complement, Huber weights, Levenberg damping,
   `ba_iterations` per frame; older frames are held fixed; tracks whose newest observation stays more than
   `outlier_px` off are ended and the adjustment refits, half as many iterations); every depth reading of a
   patch (where it was born and where it was tracked) is a prior on its inverse depth there (RGB-D mode is
   metric); a metric motion prior's translation between consecutive keyframes is a term too
   (`prior_sigma_m`: turning in place, the image alone barely tells a small yaw from the camera's
   sideways step on its lever arm, and the yaw came out 0.5-1.5 % short in the simulated house);
4. keyframe removal (DPVO's rule, on tracked pixels): when the median flow between the keyframes two
   before and two after a keyframe is below `keyframe_thresh_px`, that keyframe leaves the graph (its
   observations go; its pose follows its older neighbour's from then on), so a robot standing still does
   not fill the window with copies of one view;
5. sample new patches on this frame: `3 * patches_per_frame` random candidates, the strongest-gradient
   third kept (DPVO's 'GRADIENT_BIAS'), none inside the mask or next to a live track, twice as many while
   fewer than `reseed_below * min_tracks` are live (bare walls, a fast turn); a new patch's inverse depth
   is the depth reading at its pixel, else the median of the live patches (DPVO's rule).

Pixel sizes and thresholds are set for a `reference_width_px` (640) wide image and scale with the width
(`PatchVOConfig.at_width`), so each covers the same angle at any resolution.

Correspondence is classical (pyramidal LK) rather than DPVO's learned update operator, chosen by measurement
(`benchmarks/bench_vo_operator.py`): networks of DPVO's sizes need about 190 ms a frame at 320x240 and 400 ms
at 640x480 on two CPU cores before any bundle adjustment, against a 67 ms budget at 15 Hz; LK takes 3-7 ms.
LK on tracked patches is also what the OpenCV baselines use, so the comparison isolates what the patch graph
and the windowed bundle adjustment add.

Tracking health: fewer than `min_tracks` live tracks, or a bundle adjustment whose error does not fall
below `max_reproj_px`, is a tracking loss: `track` returns None, `status` says why, and the next frame
starts again from the predicted pose (the pose chain stays continuous; no jump is ever reported as a pose),
with the adjustment's window starting at the lost frame.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import scipy.sparse

from spatial_memory.errors import ConfigError, InvalidInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchVOConfig:
    """Sizes, windows and thresholds of the patch VO.

    Pixel sizes and thresholds (`*_px`, and `inv_depth_sigma`, which is weighed against 1 px of reprojection)
    are for images `reference_width_px` wide and scale with the image width: `PatchVO` uses
    `config.at_width(width)`, so a 320x240 camera gets an 11 px LK window, 4 px patch spacing, 0.75 px Huber
    threshold, and so on: the same angles as 640x480's 21 px and 8 px. `reference_width_px=0` takes the
    values as pixels at whatever resolution the images have.
    """

    patches_per_frame: int = 64
    window: int = 8  # keyframes whose poses the bundle adjustment moves (the oldest is held fixed)
    patch_lifetime: int = 10  # frames a patch is tracked for after the one it was born in
    ba_iterations: int = 4
    huber_px: float = 1.5
    damping: float = 1e-4  # Levenberg damping, relative to the diagonal
    inv_depth_sigma: float = 0.005  # 1/m: depth readings' noise as inverse depth (vs 1 px of reprojection)
    depth_in_ba: bool = True  # every observation with a depth reading also constrains the point's depth there
    huber_inv_depth: float = 2.0  # Huber threshold of the depth terms, in sigmas (depth edges, reflections)
    depth_min_m: float = 0.1
    depth_max_m: float = 8.0
    motion_damping: float = 0.5
    lk_window_px: int = 21
    lk_levels: int = 3
    fb_max_px: float = 1.0  # forward-backward consistency of a track (px); the outlier step catches the rest
    min_spacing_px: int = 8  # new patches keep this far from live tracks and from each other
    mask_margin_px: int = 0  # extra dilation of a given mask
    min_tracks: int = 12
    keyframe_thresh_px: float = 3.0  # median flow across a keyframe's neighbours below this removes it
    max_reproj_px: float = 3.0  # median reprojection error above this after BA is a tracking loss
    outlier_px: float = 3.0  # a track whose newest observation is off by more after BA ends there
    keep_trajectory: bool = True  # keep every frame's pose for `trajectory()`; False: constant memory
    lk_predict: bool = True  # start LK at the pixel the motion prior predicts (else at the old pixel)
    lk_prior_levels: int = 2  # pyramid levels of LK from a given motion prior (a good start needs no more)
    lk_anchor: bool = True  # match each patch from the frame it was born in (else from the previous frame)
    reseed_below: float = 3.0  # fewer live tracks than this times min_tracks: twice the new patches
    hypothesis_keep: float = 0.5  # a pose hypothesis explaining this fraction of the tracks ends the search
    hypothesis_margin: float = 1.2  # a later hypothesis must explain this many times more tracks to win
    pose_iterations: int = 4  # motion-only Gauss-Newton steps that score a hypothesis
    prior_gate_rad: float = 0.02  # a hypothesis turning this much more or less than a given motion prior...
    prior_gate_rel: float = 0.25  # ...or this fraction of the prior's rotation, if larger, is a last resort
    prior_sigma_m: float = 0.002  # 1-sigma of a given motion prior's translation per frame in the BA (0: off)
    rotation_search: bool = True  # a pure-rotation fit of a wide LK is the last hypothesis (fast turns)
    reference_width_px: int = 640  # image width the pixel values above are for (0: no scaling)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "patches_per_frame",
            "window",
            "patch_lifetime",
            "ba_iterations",
            "lk_levels",
            "lk_prior_levels",
            "min_tracks",
            "pose_iterations",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PatchVOConfig.{name} must be a positive integer, got {value!r}")
        if self.window < 2:
            raise ConfigError("PatchVOConfig.window must be >= 2 (one frame is held fixed)")
        for name in ("huber_px", "fb_max_px", "max_reproj_px", "depth_min_m", "depth_max_m"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"PatchVOConfig.{name} must be > 0")
        for name in ("prior_sigma_m", "hypothesis_keep", "prior_gate_rad", "prior_gate_rel", "reseed_below"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise ConfigError(f"PatchVOConfig.{name} must be a finite number >= 0, got {value!r}")
        margin = self.hypothesis_margin
        if isinstance(margin, bool) or not (isinstance(margin, (int, float)) and 1.0 <= margin < math.inf):
            raise ConfigError(f"PatchVOConfig.hypothesis_margin must be a number >= 1, got {margin!r}")
        if not 0.0 <= self.motion_damping <= 1.0:
            raise ConfigError("PatchVOConfig.motion_damping must be within [0, 1]")
        ref = self.reference_width_px
        if isinstance(ref, bool) or not isinstance(ref, int) or ref < 0:
            raise ConfigError(f"PatchVOConfig.reference_width_px must be an integer >= 0, got {ref!r}")

    def at_width(self, width: int) -> PatchVOConfig:
        """This config for images `width` pixels wide: the pixel sizes and thresholds scaled by
        width / reference_width_px (the LK window to the nearest odd size, at least 5 px), and
        `reference_width_px` 0 (the values are now in that image's pixels)."""
        if not self.reference_width_px:
            return self
        s = width / self.reference_width_px
        return dataclasses.replace(
            self,
            lk_window_px=max(5, 2 * round((self.lk_window_px * s - 1) / 2) + 1),
            min_spacing_px=max(1, round(self.min_spacing_px * s)),
            mask_margin_px=round(self.mask_margin_px * s),
            huber_px=self.huber_px * s,
            fb_max_px=self.fb_max_px * s,
            outlier_px=self.outlier_px * s,
            max_reproj_px=self.max_reproj_px * s,
            keyframe_thresh_px=self.keyframe_thresh_px * s,
            inv_depth_sigma=self.inv_depth_sigma / s,
            reference_width_px=0,
        )


@dataclass(eq=False)
class _Patch:
    """A patch: born in `frame` at pixel `uv` with inverse depth `inv_depth`; its observations by frame."""

    frame: int
    uv: np.ndarray  # (2,) float64, at birth
    inv_depth: float
    measured: float | None  # inverse depth from the depth image, if any
    obs: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (2,) pixel
    obs_inv_depth: dict[int, float] = field(default_factory=dict)  # frame -> measured inverse depth there
    alive: bool = True


@dataclass
class VOStatus:
    """What the last `track` call did."""

    frame: int = -1
    tracked: int = 0
    new_patches: int = 0
    reproj_px: float = math.nan
    lost: bool = False
    reason: str = ""
    losses: int = 0


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = np.zeros(v.shape[:-1])
    return np.stack(
        [
            np.stack([z, -v[..., 2], v[..., 1]], -1),
            np.stack([v[..., 2], z, -v[..., 0]], -1),
            np.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def _angle(R: np.ndarray) -> float:
    """The rotation angle (rad) of a 3x3 rotation matrix."""
    return math.acos(float(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)))


def _scatter_sum(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """out[index[e]] += values[e] for every e, as one sparse product (np.add.at is many times slower):
    values (E, ...) -> (size, ...)."""
    ones = np.ones(len(index))
    gather = scipy.sparse.csr_matrix((ones, (index, np.arange(len(index)))), shape=(size, len(index)))
    flat = values.reshape(len(index), int(np.prod(values.shape[1:])))
    return np.asarray(gather @ flat).reshape((size, *values.shape[1:]))


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """(6,) (v, w) -> 4x4, the SE(3) exponential."""
    v, w = xi[:3], xi[3:]
    theta = float(np.linalg.norm(w))
    W = _skew(w)
    if theta < 1e-9:
        R, V = np.eye(3) + W, np.eye(3) + 0.5 * W
    else:
        a, b = math.sin(theta) / theta, (1 - math.cos(theta)) / theta**2
        c = (1 - a) / theta**2
        R = np.eye(3) + a * W + b * W @ W
        V = np.eye(3) + b * W + c * W @ W
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, V @ v
    return T


def se3_log(T: np.ndarray) -> np.ndarray:
    """4x4 -> (6,) (v, w), the inverse of `se3_exp`."""
    R, t = T[:3, :3], T[:3, 3]
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    theta = math.acos(cos)
    if theta < 1e-9:
        w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2
    else:
        w = (
            theta
            / (2 * math.sin(theta))
            * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
        )
    W = _skew(w)
    if theta < 1e-9:
        V_inv = np.eye(3) - 0.5 * W
    else:
        a, b = math.sin(theta) / theta, (1 - math.cos(theta)) / theta**2
        V_inv = np.eye(3) - 0.5 * W + (1 - a / (2 * b)) / theta**2 * W @ W
    return np.concatenate([V_inv @ t, w])


class PatchVO:
    """Patch VO on a stream of frames; `track` per frame, `trajectory` for the refined poses of all frames.

    Poses are T_world_cam with the world = the first frame's camera (REP-103 optical frames: z forward).
    """

    def __init__(self, K: np.ndarray, width: int, height: int, config: PatchVOConfig | None = None) -> None:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InvalidInputError(f"K must be a finite 3x3 intrinsic matrix with fx, fy > 0, got {K!r}")
        if width < 16 or height < 16:
            raise InvalidInputError(f"images must be at least 16x16, got {width}x{height}")
        self.K, self.width, self.height = K, int(width), int(height)
        self.config = (config or PatchVOConfig()).at_width(self.width)  # in this image's pixels
        self._rng = np.random.default_rng(self.config.seed)
        # world -> camera and stamp by frame number: every frame, or (keep_trajectory=False) only the
        # frames the patch graph still uses, so a robot running for hours tracks as fast as in minute one
        self._T_cw: dict[int, np.ndarray] = {}
        self._stamps: dict[int, float] = {}
        self._frames = 0  # frames added so far
        self._patches: list[_Patch] = []
        self._images: dict[int, np.ndarray] = {}  # frame -> its gray image, while LK may read it
        self._priors: dict[int, np.ndarray] = {}  # keyframe -> measured T_prev_keyframe_this (BA term)
        self._velocity = np.zeros(6)  # se3 log of the last relative motion (T_cw[n] T_cw[n-1]^-1), per second
        self._keyframes: list[int] = []  # frames in the patch graph, oldest first
        self._removed: dict[int, tuple[int, np.ndarray]] = {}  # frame -> (older keyframe, T_frame_keyframe)
        self.status = VOStatus()

    # -- public ----------------------------------------------------------------------------------------

    def track(
        self,
        image: np.ndarray,
        stamp: float,
        depth: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        motion_prior: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Add a frame; returns its T_world_cam (4x4), or None when tracking is lost on this frame.

        image: (H, W, 3) uint8 RGB or (H, W) uint8; depth: (H, W) metres, 0 or NaN = none; mask: (H, W) bool,
        True where no patch may live (the robot arm). Stamps must increase. motion_prior: the camera's motion
        since the previous frame from another sensor (T_prev_cam_this_cam, 4x4; wheel odometry, an IMU), a
        hypothesis LK starts from besides the velocity model's (see `_hypotheses`); NaN translation = only
        its rotation is known (the translation then comes from the velocity model).
        """
        gray = self._check_inputs(image, stamp, depth, mask)
        motion_prior = self._check_prior(motion_prior)
        cfg = self.config
        if mask is not None and cfg.mask_margin_px > 0:
            k = 2 * cfg.mask_margin_px + 1
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        n = self._frames
        self._frames += 1
        self.status = VOStatus(frame=n, losses=self.status.losses)
        self._keyframes.append(n)
        self._stamps[n] = float(stamp)
        self._images[n] = gray
        if motion_prior is not None and np.all(np.isfinite(motion_prior)) and cfg.prior_sigma_m > 0:
            self._priors[n] = motion_prior
        if n == 0:
            self._T_cw[n] = np.eye(4)
        else:
            dt = self._stamps[n] - self._stamps[n - 1]
            self._T_cw[n] = se3_exp(cfg.motion_damping * dt * self._velocity) @ self._T_cw[n - 1]
            self.status.tracked = self._track_patches(n, mask, depth, motion_prior)
        lost = ""
        if n > 0:
            if self.status.tracked < cfg.min_tracks:
                lost = f"{self.status.tracked} tracks (< {cfg.min_tracks})"
            else:
                self.status.reproj_px = self._bundle_adjust()
                if not self.status.reproj_px <= cfg.max_reproj_px:
                    lost = f"median reprojection error {self.status.reproj_px:.2f} px after BA"
        if lost:
            self._lose(n, lost)
        if not lost:
            self._remove_keyframe()
        self.status.new_patches = self._add_patches(gray, n, depth, mask)
        if n > 0 and not lost:
            dt = self._stamps[n] - self._stamps[n - 1]
            self._velocity = se3_log(self._T_cw[n] @ np.linalg.inv(self._T_cw[n - 1])) / dt
        self._forget()
        return None if lost else np.linalg.inv(self._T_cw[n])

    @property
    def lost(self) -> int:
        """Frames on which tracking was lost so far."""
        return self.status.losses

    @property
    def frames(self) -> int:
        """Frames added so far."""
        return self._frames

    @property
    def pose(self) -> np.ndarray:
        """T_world_cam of the newest frame: the estimate, or the motion prior's guess after a loss (the
        pose the chain continues from). Identity before the first frame."""
        return np.linalg.inv(self._T_cw[self._frames - 1]) if self._frames else np.eye(4)

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """(stamps (N,), T_world_cam (N, 4, 4)) of every frame so far, as refined by the bundle adjustment
        (a removed keyframe keeps its pose relative to its older neighbour). With `keep_trajectory` off,
        only the frames still in the patch graph."""
        T_cw = dict(self._T_cw)
        for f in sorted(self._removed):  # a removed frame's reference is older, so already resolved
            ref, T_rel = self._removed[f]
            if ref in T_cw and f in T_cw:
                T_cw[f] = T_rel @ T_cw[ref]
        stamps = np.array([self._stamps[f] for f in T_cw])
        return stamps, np.array([np.linalg.inv(T) for T in T_cw.values()]).reshape(-1, 4, 4)

    def _forget(self) -> None:
        """Bound the state: the keyframe list to what removal and the window read; with `keep_trajectory`
        off, the poses and stamps of frames no patch and no window keyframe refers to any more."""
        cfg = self.config
        del self._keyframes[: -max(cfg.window, 4)]
        needed = {self._frames - 1} | {p.frame for p in self._patches if p.alive}
        self._images = {f: img for f, img in self._images.items() if f in needed}
        self._priors = {f: T for f, T in self._priors.items() if f in self._keyframes}
        if cfg.keep_trajectory:
            return
        oldest = min([self._keyframes[0], self._frames - 1] + [p.frame for p in self._patches])
        oldest = min([oldest] + [min(p.obs) for p in self._patches if p.obs])
        for table in (self._T_cw, self._stamps):
            while table and next(iter(table)) < oldest:
                del table[next(iter(table))]
        self._removed = {f: v for f, v in self._removed.items() if v[0] >= oldest} if self._removed else {}

    # -- input checks -------------------------------------------------------------------------------------

    def _check_inputs(self, image, stamp, depth, mask) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InvalidInputError("image must be an (H, W, 3) RGB or (H, W) uint8 numpy array")
        if image.shape[:2] != (self.height, self.width):
            raise InvalidInputError(
                f"image is {image.shape[1]}x{image.shape[0]} but the intrinsics are for "
                f"{self.width}x{self.height}"
            )
        if image.ndim == 3 and image.shape[2] != 3:
            raise InvalidInputError(f"a colour image must have 3 channels, got shape {image.shape}")
        stamp = float(stamp)
        last = self._stamps[self._frames - 1] if self._frames else None
        if not math.isfinite(stamp) or (last is not None and stamp <= last):
            raise InvalidInputError(f"stamps must be finite and increase: got {stamp} after {last}")
        for name, arr in (("depth", depth), ("mask", mask)):
            if arr is not None and (
                not isinstance(arr, np.ndarray) or arr.shape != (self.height, self.width)
            ):
                got = arr.shape if isinstance(arr, np.ndarray) else type(arr).__name__
                raise InvalidInputError(f"{name} must be a {self.height}x{self.width} array, got {got}")
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image

    @staticmethod
    def _check_prior(prior: np.ndarray | None) -> np.ndarray | None:
        if prior is None:
            return None
        T = np.asarray(prior, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T[:3, :3])) or not np.allclose(T[3], [0, 0, 0, 1]):
            raise InvalidInputError(f"motion_prior must be a 4x4 rigid transform, got {prior!r}")
        R = T[:3, :3]
        if not (np.allclose(R @ R.T, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0):
            raise InvalidInputError("motion_prior's rotation is not a rotation matrix")
        t = T[:3, 3]
        if not (np.all(np.isfinite(t)) or np.all(np.isnan(t))):
            raise InvalidInputError("motion_prior's translation must be finite, or all NaN (rotation only)")
        return T

    # -- tracking -----------------------------------------------------------------------------------------

    def _live(self) -> list[_Patch]:
        return [p for p in self._patches if p.alive]

    def _track_patches(
        self,
        n: int,
        mask: np.ndarray | None,
        depth: np.ndarray | None,
        motion_prior: np.ndarray | None = None,
    ) -> int:
        """Track the live patches into frame n (LK with a forward-backward check) from the pose hypothesis
        that explains the most tracks (`_search`); frame n's pose starts there."""
        cfg = self.config
        live = [p for p in self._live() if n - 1 in p.obs and n - p.frame <= cfg.patch_lifetime]
        for p in self._live():
            if p not in live:
                p.alive = False
        if not live or n - 1 not in self._images:
            return 0
        pts = np.array([p.obs[n - 1] for p in live], dtype=np.float32).reshape(-1, 1, 2)
        if not cfg.lk_predict:
            uv, good = self._lk(n, live, pts, None, mask)
        else:
            uv, good = self._search(n, live, pts, mask, motion_prior)
        for p, g, q in zip(live, good, uv, strict=True):
            if g:
                p.obs[n] = q
                measured = self._inv_depth_at(depth, q) if self.config.depth_in_ba else None
                if measured is not None:
                    p.obs_inv_depth[n] = measured
            else:
                p.alive = False
        return int(good.sum())

    def _search(
        self,
        n: int,
        live: list[_Patch],
        pts: np.ndarray,
        mask: np.ndarray | None,
        motion_prior: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """LK from each pose hypothesis in turn (`_hypotheses`), each scored by how many tracks one pose
        explains (`_fit_pose`); stops at the first that explains `hypothesis_keep` of the patches it keeps in
        view, and a later one must explain `hypothesis_margin` times more to win. With a motion prior, a
        hypothesis whose fitted rotation differs from the prior's by more than `prior_gate_rad` (or
        `prior_gate_rel` of the prior's rotation) wins only if none that agrees explains `min_tracks`:
        repeated texture (floor tiles, wood grain) makes wrong shifts by one period self-consistent. Frame
        n's pose is set to the winner's fit; returns its tracks (pixels, good)."""
        cfg = self.config
        R_prior = None if motion_prior is None else motion_prior[:3, :3].T  # this camera <- the previous
        gate = 0.0
        if R_prior is not None:
            gate = max(cfg.prior_gate_rad, cfg.prior_gate_rel * _angle(R_prior))
        best = fallback = None
        tried: list[np.ndarray] = []
        for T_cw, levels in self._hypotheses(live, n, pts, motion_prior):
            guess = self._predict(live, T_cw, pts.reshape(-1, 2))
            if any(np.median(np.linalg.norm(guess - g, axis=1)) < 0.5 * cfg.fb_max_px for g in tried):
                continue  # the same start as a hypothesis already tried
            tried.append(guess)
            uv, good = self._lk(n, live, pts, guess, mask, levels)
            T_fit, inliers = self._fit_pose(live, uv, good, T_cw)
            found = (int(inliers.sum()), T_fit, uv, good)
            if fallback is None or found[0] > cfg.hypothesis_margin * fallback[0]:
                fallback = found
            R_rel = (T_fit @ np.linalg.inv(self._T_cw[n - 1]))[:3, :3]
            agrees = R_prior is None or _angle(R_rel @ R_prior.T) <= gate
            if agrees and (best is None or found[0] > cfg.hypothesis_margin * best[0]):
                best = found
            inside = np.all((guess >= 0) & (guess < [self.width, self.height]), axis=1)
            if best is not None and best[0] >= cfg.hypothesis_keep * max(int(inside.sum()), 1):
                break  # good enough: the next hypotheses are for when this one loses tracks
        if best is None or (best[0] < cfg.min_tracks <= fallback[0]):
            best = fallback
        self._T_cw[n] = best[1]
        return best[2], best[3]

    def _lk(
        self,
        n: int,
        live: list[_Patch],
        pts: np.ndarray,
        guess: np.ndarray | None,
        mask: np.ndarray | None,
        levels: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pyramidal LK of the live patches into frame n, starting at `guess` (N, 2) (None: at their last
        pixels `pts`, (N, 1, 2)): the new pixels (N, 2) and which tracks are good (forward-backward
        consistent, inside the image, outside the mask). With `lk_anchor` each patch is matched from the
        frame it was born in (its pixel there), else from the previous frame (its last pixel)."""
        cfg = self.config
        lk = {
            "winSize": (cfg.lk_window_px, cfg.lk_window_px),
            "maxLevel": (levels or cfg.lk_levels) - 1,
        }
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        last = pts.reshape(-1, 2).astype(np.float64)
        start = last if guess is None else guess
        if cfg.lk_anchor:
            source = np.array([p.frame for p in live])
            src = np.array([p.uv for p in live])
        else:
            source, src = np.full(len(live), n - 1), last
        uv, fb = np.zeros((len(live), 2)), np.full(len(live), np.inf)
        ok = np.zeros(len(live), bool)
        for f in np.unique(source).tolist():
            i = np.flatnonzero(source == f)
            a = src[i].astype(np.float32).reshape(-1, 1, 2)
            g = start[i].astype(np.float32).reshape(-1, 1, 2)
            # both ways start where the prediction puts them (back: the found pixel less the predicted
            # motion), so the check is as far from its answer as the forward search was: a backward search
            # from the found pixel itself fails whenever the image moved farther than LK's reach
            fwd, ok1, _ = cv2.calcOpticalFlowPyrLK(self._images[f], self._images[n], a, g, flags=flags, **lk)
            back_start = (fwd - (g - a)).astype(np.float32)
            back, ok2, _ = cv2.calcOpticalFlowPyrLK(
                self._images[n], self._images[f], fwd, back_start, flags=flags, **lk
            )
            uv[i] = fwd.reshape(-1, 2)
            fb[i] = np.linalg.norm((back - a).reshape(-1, 2), axis=1)
            ok[i] = ok1.ravel().astype(bool) & ok2.ravel().astype(bool)
        inside = (
            (uv[:, 0] >= 1) & (uv[:, 0] < self.width - 1) & (uv[:, 1] >= 1) & (uv[:, 1] < self.height - 1)
        )
        good = ok & (fb < cfg.fb_max_px) & inside
        if mask is not None:
            ui, vi = (
                np.clip(uv[:, 0].astype(int), 0, self.width - 1),
                np.clip(uv[:, 1].astype(int), 0, self.height - 1),
            )
            good &= ~mask[vi, ui]
        return uv, good

    def _fit_pose(
        self, live: list[_Patch], uv: np.ndarray, good: np.ndarray, T_cw: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frame n's pose (T_cw, from `T_cw`) that best explains the good tracks `uv` with every patch's
        point held where it is (motion-only Gauss-Newton, Huber weights, a few iterations), and which tracks
        it explains within `outlier_px`: how a pose hypothesis is scored, and where the adjustment starts."""
        cfg = self.config
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        idx = np.flatnonzero(good)
        inliers = np.zeros(len(live), bool)
        if len(idx) < 3:
            return T_cw, inliers
        born = [live[i].frame for i in idx]
        frames = sorted(set(born))
        T_wc = {f: np.linalg.inv(self._T_cw[f]) for f in frames}
        X = np.empty((len(idx), 4))
        for row, i in enumerate(idx):
            p = live[i]
            b = np.array([(p.uv[0] - cx) / fx, (p.uv[1] - cy) / fy, 1.0]) / p.inv_depth
            X[row] = T_wc[p.frame] @ np.append(b, 1.0)
        obs = uv[idx]
        T = T_cw.copy()
        for _ in range(cfg.pose_iterations):
            Xc = X @ T.T
            z = Xc[:, 2]
            valid = z > 1e-6
            zs = np.where(valid, z, 1.0)
            r = np.column_stack([fx * Xc[:, 0] / zs + cx, fy * Xc[:, 1] / zs + cy]) - obs
            norm = np.linalg.norm(r, axis=1)
            w = np.where(norm <= cfg.huber_px, 1.0, cfg.huber_px / np.maximum(norm, 1e-9)) * valid
            dpi = np.zeros((len(idx), 2, 3))
            dpi[:, 0, 0], dpi[:, 0, 2] = fx / zs, -fx * Xc[:, 0] / zs**2
            dpi[:, 1, 1], dpi[:, 1, 2] = fy / zs, -fy * Xc[:, 1] / zs**2
            dX = np.concatenate([np.broadcast_to(np.eye(3), (len(idx), 3, 3)), -_skew(Xc[:, :3])], axis=2)
            J = dpi @ dX  # (E, 2, 6)
            H = np.einsum("e,eai,eaj->ij", w, J, J) + 1e-9 * np.eye(6)
            g = np.einsum("e,eai,ea->i", w, J, r)
            try:
                T = se3_exp(-np.linalg.solve(H, g)) @ T
            except np.linalg.LinAlgError:
                break
        Xc = X @ T.T
        zs = np.where(Xc[:, 2] > 1e-6, Xc[:, 2], np.nan)
        r = np.column_stack([fx * Xc[:, 0] / zs + cx, fy * Xc[:, 1] / zs + cy]) - obs
        inliers[idx] = np.linalg.norm(r, axis=1) <= cfg.outlier_px  # NaN (behind the camera): False
        return T, inliers

    def _hypotheses(
        self, live: list[_Patch], n: int, pts: np.ndarray, motion_prior: np.ndarray | None
    ) -> Iterator[tuple[np.ndarray, int]]:
        """Guesses of frame n's T_cw, best first, generated lazily (the caller stops once one keeps enough
        tracks): the given motion prior (wheel odometry, an IMU), the velocity model's prediction, and the
        rotation that best explains a wide-range LK of the patches (`_rotation_from_flow`): the one that
        still works when the image moved farther than the prediction's error LK can absorb (a fast turn,
        frames dropped, a motion prior that is wrong)."""
        cfg = self.config
        predicted = self._T_cw[n]
        if motion_prior is not None:
            T = np.eye(4)  # this camera <- the previous one
            T[:3, :3] = motion_prior[:3, :3].T
            T[:3, 3] = -T[:3, :3] @ motion_prior[:3, 3]
            if not np.all(np.isfinite(T[:3, 3])):  # rotation only: translation from the velocity model
                T[:3, 3] = (predicted @ np.linalg.inv(self._T_cw[n - 1]))[:3, 3]
            yield T @ self._T_cw[n - 1], cfg.lk_prior_levels
        yield predicted, cfg.lk_levels
        if cfg.rotation_search:
            R = self._rotation_from_flow(n, pts)
            if R is not None:
                T = predicted @ np.linalg.inv(self._T_cw[n - 1])
                T[:3, :3] = R
                yield T @ self._T_cw[n - 1], cfg.lk_levels

    def _rotation_from_flow(self, n: int, pts: np.ndarray) -> np.ndarray | None:
        """The camera rotation (this camera <- the previous one) that best maps the patches' bearings onto
        where a wide LK (one more pyramid level, a window twice as large, started at the old pixels) finds
        them: Wahba's problem by SVD, refitted on the tracks within 3x the median angular error. A pure
        rotation model: during a turn in place, or any motion whose image flow is mostly rotation, it
        puts the patches within LK's reach; None if too few tracks."""
        cfg = self.config
        win = 2 * cfg.lk_window_px + 1
        fwd, ok, _ = cv2.calcOpticalFlowPyrLK(
            self._images[n - 1], self._images[n], pts, None, winSize=(win, win), maxLevel=cfg.lk_levels
        )
        ok = ok.ravel().astype(bool)
        if ok.sum() < cfg.min_tracks:
            return None
        Kinv = np.linalg.inv(self.K)

        def bearings(uv: np.ndarray) -> np.ndarray:
            b = np.column_stack([uv, np.ones(len(uv))]) @ Kinv.T
            return b / np.linalg.norm(b, axis=1, keepdims=True)

        a, b = bearings(pts.reshape(-1, 2)[ok]), bearings(fwd.reshape(-1, 2)[ok].astype(np.float64))
        use = np.ones(len(a), bool)
        R = np.eye(3)
        for _ in range(3):
            U, _s, Vt = np.linalg.svd(b[use].T @ a[use])
            R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
            err = np.linalg.norm(b - a @ R.T, axis=1)
            use = err <= 3.0 * max(float(np.median(err)), 1e-6)
            if use.sum() < cfg.min_tracks:
                return None
        return R

    def _predict(self, live: list[_Patch], T_n: np.ndarray, old: np.ndarray) -> np.ndarray:
        """Pixels of the live patches in a frame at pose T_n (T_cw) (the old pixel where the patch would
        be behind the camera)."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        born = np.array([p.frame for p in live])
        frames = np.unique(born)
        T = np.array([T_n @ np.linalg.inv(self._T_cw[f]) for f in frames.tolist()])[
            np.searchsorted(frames, born)
        ]
        uv = np.array([p.uv for p in live])
        bearing = np.column_stack([(uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy, np.ones(len(live))])
        rho = np.array([p.inv_depth for p in live])
        X = np.einsum("eab,eb->ea", T[:, :3, :3], bearing) + rho[:, None] * T[:, :3, 3]
        ahead = X[:, 2] > 1e-6
        z = np.where(ahead, X[:, 2], 1.0)
        predicted = np.column_stack([fx * X[:, 0] / z + cx, fy * X[:, 1] / z + cy])
        return np.where(ahead[:, None], predicted, old.astype(np.float64))

    def _inv_depth_at(self, depth: np.ndarray | None, uv: np.ndarray) -> float | None:
        """Measured inverse depth at a pixel (nearest), or None where there is no usable reading."""
        if depth is None:
            return None
        d = float(depth[int(round(uv[1])) % self.height, int(round(uv[0])) % self.width])
        cfg = self.config
        return 1.0 / d if math.isfinite(d) and cfg.depth_min_m <= d <= cfg.depth_max_m else None

    def _lose(self, n: int, reason: str) -> None:
        """A tracking loss: keep the predicted pose, drop every track, start patches afresh, and start the
        adjustment's window at this frame (held fixed there): a lost frame is tied to the older ones by too
        few tracks to be moved by them, and its new patches would move it freely."""
        log.warning("frame %d: tracking lost (%s); restarting from the motion prior", n, reason)
        self.status.lost, self.status.reason = True, reason
        self.status.losses += 1
        for p in self._patches:
            p.alive = False
        self._keyframes = [n]
        self._priors.pop(n, None)

    # -- new patches --------------------------------------------------------------------------------------

    def _add_patches(
        self, gray: np.ndarray, n: int, depth: np.ndarray | None, mask: np.ndarray | None
    ) -> int:
        cfg = self.config
        m, border = cfg.patches_per_frame, max(4, cfg.lk_window_px // 2)
        if n > 0 and len(self._live()) < cfg.reseed_below * cfg.min_tracks:
            m *= 2  # few live tracks (bare walls, a fast turn moving them out of view): sample twice as many
        cand = np.column_stack(
            [
                self._rng.uniform(border, self.width - border, 3 * m),
                self._rng.uniform(border, self.height - border, 3 * m),
            ]
        )
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        mag = cv2.blur(np.hypot(gx, gy), (5, 5))
        ci = cand.astype(int)
        score = mag[ci[:, 1], ci[:, 0]]
        keep = np.ones(len(cand), bool)
        if mask is not None:
            keep &= ~mask[ci[:, 1], ci[:, 0]]
        taken = np.array([p.obs[n] for p in self._live() if n in p.obs]).reshape(-1, 2)
        near = np.abs(cand[:, None, :] - taken[None, :, :]) < cfg.min_spacing_px  # (C, T, 2)
        keep &= ~np.any(np.all(near, axis=2), axis=1)  # not next to a live track
        picked = np.empty((m, 2))
        count = 0
        for i in np.flatnonzero(keep)[np.argsort(-score[keep])]:
            if count >= m:
                break
            q = cand[i]
            if not np.any(np.all(np.abs(picked[:count] - q) < cfg.min_spacing_px, axis=1)):
                picked[count] = q
                count += 1
        chosen = list(picked[:count])
        live_depths = [p.inv_depth for p in self._live()]
        median = float(np.median(live_depths)) if live_depths else 1.0
        for q in chosen:
            measured = None
            if depth is not None:
                measured = self._inv_depth_at(depth, q)
            patch = _Patch(n, q.copy(), measured if measured is not None else median, measured)
            patch.obs[n] = q.copy()
            self._patches.append(patch)
        self._patches = [p for p in self._patches if p.alive or n - p.frame < cfg.window]
        return len(chosen)

    # -- bundle adjustment --------------------------------------------------------------------------------

    def _remove_keyframe(self) -> None:
        """Drop keyframe c = K[-3] when its neighbours K[-4] and K[-2] barely differ (median flow)."""
        kf = self._keyframes
        if len(kf) < 4:
            return
        a, c, b = kf[-4], kf[-3], kf[-2]
        flows = [np.linalg.norm(p.obs[b] - p.obs[a]) for p in self._patches if a in p.obs and b in p.obs]
        if len(flows) < self.config.min_tracks or np.median(flows) >= self.config.keyframe_thresh_px:
            return
        self._removed[c] = (a, self._T_cw[c] @ np.linalg.inv(self._T_cw[a]))
        kf.remove(c)
        if c in self._priors and b in self._priors:  # b's prior now reaches back to a, through c
            self._priors[b] = self._priors.pop(c) @ self._priors[b]
        else:
            self._priors.pop(b, None)
            self._priors.pop(c, None)
        self._patches = [p for p in self._patches if p.frame != c]
        for p in self._patches:
            p.obs.pop(c, None)
            p.obs_inv_depth.pop(c, None)

    def _bundle_adjust(self) -> float:
        """Gauss-Newton over the window's poses and its patches' inverse depths; returns the median
        reprojection error (px) after it."""
        cfg = self.config
        window = self._keyframes[-cfg.window :]
        first = fixed = window[0]  # the oldest keyframe of the window holds the gauge
        free = window[1:]
        col = {f: i for i, f in enumerate(free)}
        patches = [p for p in self._patches if p.frame >= first - cfg.patch_lifetime and len(p.obs) > 1]
        patches = [p for p in patches if any(f >= first for f in p.obs if f != p.frame)]
        if not patches:
            return math.inf
        err = math.inf
        edges = self._edges(patches)  # the graph is fixed while the adjustment iterates
        for _ in range(cfg.ba_iterations):
            err = self._gn_step(patches, first, fixed, col, edges)
        if self._drop_outliers(patches, edges):  # wrong tracks (repeated texture, occlusion edges): refit
            edges = self._edges(patches)
            for _ in range(max(1, cfg.ba_iterations // 2)):
                err = self._gn_step(patches, first, fixed, col, edges)
        return err

    def _add_prior_terms(self, H: np.ndarray, b: np.ndarray, first: int, col: dict[int, int]) -> None:
        """Add, in place, the measured motion between consecutive window keyframes (the wheel odometry's,
        `track`'s `motion_prior`) to the pose block of the normal equations: its translation, with
        `prior_sigma_m`. It settles what the image alone barely tells apart (while turning in place, a
        small yaw against a sideways step of the camera on its lever arm); the rotation stays the image's."""
        window = [f for f in self._keyframes if f >= first]
        w = 1.0 / self.config.prior_sigma_m**2
        for a, c in zip(window, window[1:], strict=False):
            prior = self._priors.get(c)
            if prior is None:
                continue
            Ta, Tc = self._T_cw[a], self._T_cw[c]
            T_ac = Ta @ np.linalg.inv(Tc)
            t = T_ac[:3, 3]
            r = t - prior[:3, 3]
            # left perturbations T <- exp(d) T: dt/d(a) = [I, -[t]x], dt/d(c) = [-R_a R_c^T, 0]
            J = {a: np.hstack([np.eye(3), -_skew(t)]), c: np.hstack([-T_ac[:3, :3], np.zeros((3, 3))])}
            for f, Jf in J.items():
                if f not in col:
                    continue
                i = 6 * col[f]
                b[i : i + 6] += w * Jf.T @ r
                for g, Jg in J.items():
                    if g in col:
                        j = 6 * col[g]
                        H[i : i + 6, j : j + 6] += w * Jf.T @ Jg

    def _drop_outliers(self, patches: list[_Patch], edges: tuple[np.ndarray, ...]) -> int:
        """End the tracks whose newest observation is off by more than `outlier_px` after the adjustment;
        returns how many."""
        res = self._residuals(patches, edges)
        if res is None:
            return 0
        r, *_, k, _i, j, _valid = res
        n = next(reversed(self._T_cw))  # the newest frame
        bad = (j == n) & (np.linalg.norm(r[:, :2], axis=1) > self.config.outlier_px)
        for idx in np.flatnonzero(bad):
            p = patches[k[idx]]
            p.obs.pop(n, None)
            p.obs_inv_depth.pop(n, None)
            p.alive = False
        return int(bad.sum())

    def _edges(self, patches: list[_Patch]) -> tuple[np.ndarray, ...]:
        """Arrays over edges (patch k observed in frame j != its own): patch index, source frame, target
        frame, observed pixel, measured inverse depth there (NaN: none)."""
        k, i, j, uv, meas = [], [], [], [], []
        for idx, p in enumerate(patches):
            for f, q in p.obs.items():
                if f != p.frame:
                    k.append(idx)
                    i.append(p.frame)
                    j.append(f)
                    uv.append(q)
                    meas.append(p.obs_inv_depth.get(f, math.nan))
        return np.array(k), np.array(i), np.array(j), np.array(uv).reshape(-1, 2), np.array(meas)

    def _residuals(
        self, patches: list[_Patch], edges: tuple[np.ndarray, ...] | None = None
    ) -> tuple[np.ndarray, ...] | None:
        """Per edge: residual (E, 3) = (reprojection u, v in px; inverse-depth error in sigmas), its
        Jacobians wrt the target pose (E, 3, 6), the source pose (E, 3, 6) and the inverse depth (E, 3), and
        the edge arrays (patch, source, target)."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        k, i, j, obs, meas = self._edges(patches) if edges is None else edges
        if len(k) == 0:
            return None
        rho = np.array([p.inv_depth for p in patches])
        bearing = np.array([[(p.uv[0] - cx) / fx, (p.uv[1] - cy) / fy, 1.0] for p in patches])
        frames = np.unique(np.concatenate([i, j]))
        T = np.array([self._T_cw[f] for f in frames.tolist()])
        T_inv = np.linalg.inv(T)  # one inverse per frame, not per edge
        # (E, 4, 4) source camera -> target camera
        T_ji = T[np.searchsorted(frames, j)] @ T_inv[np.searchsorted(frames, i)]
        R, t = T_ji[:, :3, :3], T_ji[:, :3, 3]
        b, r_k = bearing[k], rho[k]
        X = np.einsum("eab,eb->ea", R, b) + r_k[:, None] * t  # the point in the target camera, times rho
        z = X[:, 2]
        valid = z > 1e-6
        zs = np.where(valid, z, 1.0)
        dpi = np.zeros((len(k), 3, 3))  # rows: u, v, inverse depth rho / z
        dpi[:, 0, 0], dpi[:, 0, 2] = fx / zs, -fx * X[:, 0] / zs**2
        dpi[:, 1, 1], dpi[:, 1, 2] = fy / zs, -fy * X[:, 1] / zs**2
        has = np.isfinite(meas) & valid
        s_z = np.where(has, 1.0 / self.config.inv_depth_sigma, 0.0)
        dpi[:, 2, 2] = -s_z * r_k / zs**2
        r = np.column_stack(
            [fx * X[:, 0] / zs + cx - obs[:, 0], fy * X[:, 1] / zs + cy - obs[:, 1], np.zeros(len(k))]
        )
        r[has, 2] = s_z[has] * (r_k[has] / zs[has] - meas[has])
        # dX/d(xi_j) = [rho I, -[X]x]; dX/d(xi_i) = R [-rho I, [b]x]; dX/d(rho) = t
        dXj = np.concatenate([r_k[:, None, None] * np.eye(3), -_skew(X)], axis=2)
        dXi = np.einsum(
            "eab,ebc->eac", R, np.concatenate([-r_k[:, None, None] * np.eye(3), _skew(b)], axis=2)
        )
        Jd = np.einsum("eab,eb->ea", dpi, t)
        Jd[:, 2] += s_z / zs  # rho / z also depends on rho directly
        return r, dpi @ dXj, dpi @ dXi, Jd, k, i, j, valid

    def _gn_step(
        self,
        patches: list[_Patch],
        first: int,
        fixed: int,
        col: dict[int, int],
        edges: tuple[np.ndarray, ...] | None = None,
    ) -> float:
        cfg = self.config
        res = self._residuals(patches, edges)
        if res is None:
            return math.inf
        r, Jj, Ji, Jd, k, i, j, valid = res
        P = len(patches)
        rho = np.array([p.inv_depth for p in patches])
        norm = np.linalg.norm(r[:, :2], axis=1)
        w_uv = np.where(norm <= cfg.huber_px, 1.0, cfg.huber_px / np.maximum(norm, 1e-9)) * valid
        az = np.abs(r[:, 2])
        w_z = np.where(az <= cfg.huber_inv_depth, 1.0, cfg.huber_inv_depth / np.maximum(az, 1e-9)) * valid
        W = np.column_stack([w_uv, w_uv, w_z])  # (E, 3) per-row weights
        F = len(col)
        WJd = W * Jd
        Hdd = np.bincount(k, weights=np.sum(WJd * Jd, axis=1), minlength=P).astype(np.float64)
        bd = np.bincount(k, weights=np.sum(WJd * r, axis=1), minlength=P).astype(np.float64)
        H4 = np.zeros((F * F, 6, 6))
        b2 = np.zeros((F, 6))
        Hpd3 = np.zeros((F * P, 6))
        base = int(min(i.min(), j.min()))
        lookup = np.full(int(max(i.max(), j.max())) - base + 1, -1, dtype=int)  # frame -> block column
        for f, c in col.items():  # (-1: held fixed)
            if 0 <= f - base < len(lookup):
                lookup[f - base] = c
        blocks = [(Jj, lookup[j - base]), (Ji, lookup[i - base])]
        for Ja, ca in blocks:
            sa = ca >= 0
            WJaT = (W[:, :, None] * Ja).transpose(0, 2, 1)  # (E, 6, 3): J^T W
            for Jb, cb in blocks:
                m = sa & (cb >= 0)
                H4 += _scatter_sum(ca[m] * F + cb[m], WJaT[m] @ Jb[m], F * F)
            b2 += _scatter_sum(ca[sa], (WJaT[sa] @ r[sa][..., None])[..., 0], F)
            Hpd3 += _scatter_sum(ca[sa] * P + k[sa], (WJaT[sa] @ Jd[sa][..., None])[..., 0], F * P)
        Hpp = H4.reshape(F, F, 6, 6).transpose(0, 2, 1, 3).reshape(6 * F, 6 * F)
        bp = b2.reshape(6 * F)
        self._add_prior_terms(Hpp, bp, first, col)
        Hpd = Hpd3.reshape(F, P, 6).transpose(0, 2, 1).reshape(6 * F, P)
        # the reading at the patch's own pixel: sigma-weighted (rho - measured)
        meas = np.array([np.nan if p.measured is None else p.measured for p in patches])
        has = np.isfinite(meas)
        wd = 1.0 / cfg.inv_depth_sigma**2
        Hdd[has] += wd
        bd[has] += wd * (rho[has] - meas[has])
        # depths of patches born before the window are held fixed
        born = np.array([p.frame for p in patches])
        free_d = born >= first
        Hdd_f = np.where(free_d, Hdd * (1 + cfg.damping) + 1e-9, 1.0)
        Hpd[:, ~free_d] = 0.0
        bd[~free_d] = 0.0
        Hpp += cfg.damping * np.diag(np.diag(Hpp)) + 1e-9 * np.eye(6 * F)
        S = Hpp - (Hpd / Hdd_f) @ Hpd.T
        g = bp - Hpd @ (bd / Hdd_f)
        try:
            dp = -np.linalg.solve(S, g) if F else np.zeros(0)
        except np.linalg.LinAlgError:
            return math.inf
        dd = -(bd + Hpd.T @ dp) / Hdd_f
        for f, c in col.items():
            self._T_cw[f] = se3_exp(dp[6 * c : 6 * c + 6]) @ self._T_cw[f]
        new_rho = np.clip(rho + dd, 1e-3, 1.0 / cfg.depth_min_m)
        for idx in np.flatnonzero(free_d).tolist():
            patches[idx].inv_depth = float(new_rho[idx])
        return float(np.median(norm[valid])) if valid.any() else math.inf

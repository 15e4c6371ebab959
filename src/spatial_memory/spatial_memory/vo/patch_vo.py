"""Patch visual odometry in DPVO's structure, on a CPU: tracked patches, a patch graph, windowed bundle
adjustment over camera poses and patch inverse depths, a damped constant-velocity motion prior, and RGB-D
depth for new patches where the camera has it.

How a frame is processed (`PatchVO.track`):
1. predict its pose: the last pose times the damped last motion (DPVO's 'DAMPED_LINEAR', damping 0.5);
2. track every live patch from the previous frame into this one with pyramidal Lucas-Kanade (OpenCV),
   starting where the predicted pose projects it (`lk_predict`), keeping a track only if tracking back
   lands within `fb_max_px` of where it started and it stays out of the mask; each kept track is an edge
   (patch, frame) of the patch graph with its observed pixel;
3. bundle-adjust the last `window` frames' poses and the inverse depths of the patches born in them
   (Gauss-Newton with the depths eliminated by the Schur complement, Huber weights, Levenberg damping,
   `ba_iterations` per frame; older frames are held fixed; tracks whose newest observation stays more than
   `outlier_px` off are ended and the adjustment refits, half as many iterations); every depth reading of a
   patch (where it was born and where it was tracked) is a prior on its inverse depth there (RGB-D mode is
   metric);
4. keyframe removal (DPVO's rule, on tracked pixels): when the median flow between the keyframes two
   before and two after a keyframe is below `keyframe_thresh_px`, that keyframe leaves the graph (its
   observations go; its pose follows its older neighbour's from then on), so a robot standing still does
   not fill the window with copies of one view;
5. sample new patches on this frame: `3 * patches_per_frame` random candidates, the strongest-gradient
   third kept (DPVO's 'GRADIENT_BIAS'), none inside the mask or next to a live track; a new patch's inverse
   depth is the depth reading at its pixel, else the median of the live patches (DPVO's rule).

Pixel sizes and thresholds are set for a `reference_width_px` (640) wide image and scale with the width
(`PatchVOConfig.at_width`), so each covers the same angle at any resolution.

Correspondence is classical (pyramidal LK) rather than DPVO's learned update operator, chosen by measurement
(`benchmarks/bench_vo_operator.py`): networks of DPVO's sizes need about 190 ms a frame at 320x240 and 400 ms
at 640x480 on two CPU cores before any bundle adjustment, against a 67 ms budget at 15 Hz; LK takes 3-7 ms.
LK on tracked patches is also what the OpenCV baselines use, so the comparison isolates what the patch graph
and the windowed bundle adjustment add.

Tracking health: fewer than `min_tracks` live tracks, or a bundle adjustment whose error does not fall
below `max_reproj_px`, is a tracking loss: `track` returns None, `status` says why, and the next frame
starts again from the predicted pose (the pose chain stays continuous; no jump is ever reported as a pose).
"""

from __future__ import annotations

import dataclasses
import logging
import math
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
    reference_width_px: int = 640  # image width the pixel values above are for (0: no scaling)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "patches_per_frame",
            "window",
            "patch_lifetime",
            "ba_iterations",
            "lk_levels",
            "min_tracks",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PatchVOConfig.{name} must be a positive integer, got {value!r}")
        if self.window < 2:
            raise ConfigError("PatchVOConfig.window must be >= 2 (one frame is held fixed)")
        for name in ("huber_px", "fb_max_px", "max_reproj_px", "depth_min_m", "depth_max_m"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"PatchVOConfig.{name} must be > 0")
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
        self._prev_gray: np.ndarray | None = None
        self._velocity = np.zeros(6)  # se3 log of the last relative motion, per frame
        self._keyframes: list[int] = []  # frames in the patch graph, oldest first
        self._removed: dict[int, tuple[int, np.ndarray]] = {}  # frame -> (older keyframe, T_frame_keyframe)
        self.status = VOStatus()

    # -- public ----------------------------------------------------------------------------------------

    def track(
        self, image: np.ndarray, stamp: float, depth: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Add a frame; returns its T_world_cam (4x4), or None when tracking is lost on this frame.

        image: (H, W, 3) uint8 RGB or (H, W) uint8; depth: (H, W) metres, 0 or NaN = none; mask: (H, W) bool,
        True where no patch may live (the robot arm). Stamps must increase.
        """
        gray = self._check_inputs(image, stamp, depth, mask)
        cfg = self.config
        if mask is not None and cfg.mask_margin_px > 0:
            k = 2 * cfg.mask_margin_px + 1
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        n = self._frames
        self._frames += 1
        self.status = VOStatus(frame=n, losses=self.status.losses)
        self._keyframes.append(n)
        if n == 0:
            self._T_cw[n] = np.eye(4)
        else:
            self._T_cw[n] = se3_exp(cfg.motion_damping * self._velocity) @ self._T_cw[n - 1]
            self.status.tracked = self._track_patches(gray, n, mask, depth)
        self._stamps[n] = float(stamp)
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
        self._prev_gray = gray
        if n > 0 and not lost:
            self._velocity = se3_log(self._T_cw[n] @ np.linalg.inv(self._T_cw[n - 1]))
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

    # -- tracking -----------------------------------------------------------------------------------------

    def _live(self) -> list[_Patch]:
        return [p for p in self._patches if p.alive]

    def _track_patches(
        self, gray: np.ndarray, n: int, mask: np.ndarray | None, depth: np.ndarray | None
    ) -> int:
        """Track live patches from the previous frame into frame n (LK with a forward-backward check)."""
        cfg = self.config
        live = [p for p in self._live() if n - 1 in p.obs and n - p.frame <= cfg.patch_lifetime]
        for p in self._live():
            if p not in live:
                p.alive = False
        if not live or self._prev_gray is None:
            return 0
        pts = np.array([p.obs[n - 1] for p in live], dtype=np.float32).reshape(-1, 1, 2)
        lk = {"winSize": (cfg.lk_window_px, cfg.lk_window_px), "maxLevel": cfg.lk_levels - 1}
        if cfg.lk_predict:
            guess = self._predict(live, n, pts.reshape(-1, 2)).astype(np.float32).reshape(-1, 1, 2)
            fwd, ok1, _ = cv2.calcOpticalFlowPyrLK(
                self._prev_gray, gray, pts, guess, flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk
            )
        else:
            fwd, ok1, _ = cv2.calcOpticalFlowPyrLK(self._prev_gray, gray, pts, None, **lk)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray, self._prev_gray, fwd, None, **lk)
        fb = np.linalg.norm((back - pts).reshape(-1, 2), axis=1)
        uv = fwd.reshape(-1, 2).astype(np.float64)
        inside = (
            (uv[:, 0] >= 1) & (uv[:, 0] < self.width - 1) & (uv[:, 1] >= 1) & (uv[:, 1] < self.height - 1)
        )
        good = ok1.ravel().astype(bool) & ok2.ravel().astype(bool) & (fb < cfg.fb_max_px) & inside
        if mask is not None:
            ui, vi = (
                np.clip(uv[:, 0].astype(int), 0, self.width - 1),
                np.clip(uv[:, 1].astype(int), 0, self.height - 1),
            )
            good &= ~mask[vi, ui]
        for p, g, q in zip(live, good, uv, strict=True):
            if g:
                p.obs[n] = q
                measured = self._inv_depth_at(depth, q) if self.config.depth_in_ba else None
                if measured is not None:
                    p.obs_inv_depth[n] = measured
            else:
                p.alive = False
        return int(good.sum())

    def _predict(self, live: list[_Patch], n: int, old: np.ndarray) -> np.ndarray:
        """Pixels of the live patches in frame n at its predicted pose (the old pixel where the patch would
        be behind the camera)."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        born = np.array([p.frame for p in live])
        frames = np.unique(born)
        T_n = self._T_cw[n]
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
        """A tracking loss: keep the predicted pose, drop every track, start patches afresh."""
        log.warning("frame %d: tracking lost (%s); restarting from the motion prior", n, reason)
        self.status.lost, self.status.reason = True, reason
        self.status.losses += 1
        for p in self._patches:
            p.alive = False

    # -- new patches --------------------------------------------------------------------------------------

    def _add_patches(
        self, gray: np.ndarray, n: int, depth: np.ndarray | None, mask: np.ndarray | None
    ) -> int:
        cfg = self.config
        m, border = cfg.patches_per_frame, max(4, cfg.lk_window_px // 2)
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

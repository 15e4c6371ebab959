"""Noticing that the robot was carried away (a kidnap): the memory asked about what its camera sees now.

A memory of where places are relative to the robot is only as good as the odometry that moved it. When the
robot is lifted and put down elsewhere (carried by a person, towed, a simulator reset without a time jump),
the odometry sees nothing, and every remembered place keeps its old offset: the memory goes on answering
with confidence, metres off. It cannot notice from odometry; it can from the pictures. Before each frame is
folded in, the engine asks the memory where that frame was taken. Normally the answer is "here" (a place
seen before lies where the robot is now, give or take the drift) or "not seen" (a new place). After a kidnap
into a known place the memory recognises the view but puts it metres away, and does so frame after frame.

`LostMonitor` counts those votes. A vote is taken only when the memory is sure it has seen the place
(seen probability >= `min_seen`), and only once the robot has moved `SPACING_M` or turned `SPACING_DEG` since
the last vote (a robot standing in front of one look-alike view must not vote many times). A vote says
"inconsistent" when the answer lies more than `distance_m` from the robot and more than twice the answer's
own sigma (an answer that admits it is unsure is no evidence). When `votes` of the last `window` votes are
inconsistent, the robot is lost: the engine resets the memory (counted), so it says "not seen" about the old
places instead of answering them with confidence, and starts afresh from where the robot stands.

Measured, and therefore off by default (`EngineConfig.lost_check`): on validation worlds 1000-1003 (T = 200;
tour, teleop, revisit and kidnap runs, 16 in all) the shipped model's own answers do not tell a kidnap from
a look-alike place. Over a grid of `distance_m` 2-4 m, `min_seen` 0.8-0.95 and 3/3 to 6/8 votes, every
setting resets at least 2 of the 12 runs without a kidnap (noticing 2 of 4 kidnaps at that; 4 of 4 at 9
false resets; `benchmarks/bench_lost_check.py`).
A learned key match is not proof of being in a place; a geometric one (the PnP verification of
`memory.refine`) would be the evidence to try next.

`ViewJumpCheck` is the other witness, geometric: between two frames a fifth of a second apart the camera
sees the same scene, moved a little, unless the odometry says the robot moved a lot, or it was carried off
(a teleport, a simulator reset without a time jump, a robot moved while its camera was unplugged). When
both frames show enough texture (`min_features` SIFT features each) and the odometry says the robot barely
moved, yet fewer than `min_inliers` of the frames' matched features agree on one homography (the image
motion of a small turn or step), the scene changed under the robot: the engine resets the memory
(`EngineConfig.jump_check`). It sees a kidnap that happens between two frames; a robot carried off slowly,
in view of its camera, is the lost check's case (or the visual odometry's, which follows it).
Measured live (`benchmarks/bench_view_jump.py`, T = 200, all six scenarios): on validation worlds
1000-1003, where the settings were chosen, no false reset in 20 runs and 4 of 4 kidnaps noticed at their
first frame; on test worlds 2000-2003, no false reset in 20 runs and 2 of 4 noticed (the other two robots
were put down facing a bare wall: 0 and 41 features, too few to judge). On in sim.yaml; off in robot.yaml,
where people walking close past the lens were never measured.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from spatial_memory.errors import ConfigError

SPACING_M = 0.3  # a new vote once the robot moved this far since the last one...
SPACING_DEG = 20.0  # ...or turned this much (the recall ring's novelty spacing)


@dataclass(frozen=True)
class Vote:
    """One check of the memory against the current frame: where it put the frame, and the verdict."""

    distance_m: float  # how far from the robot the memory put the place the camera sees now
    sigma_m: float
    inconsistent: bool


class LostMonitor:
    """Votes of the memory's answers about the current frame; `observe` says when the robot is lost."""

    def __init__(self, distance_m: float, min_seen: float, window: int, votes: int) -> None:
        if not (0.0 < distance_m < math.inf and 0.0 <= min_seen <= 1.0):
            raise ConfigError(
                f"lost check: distance_m {distance_m!r} must be > 0 and min_seen {min_seen!r} within [0, 1]"
            )
        if not (isinstance(window, int) and isinstance(votes, int) and 1 <= votes <= window):
            raise ConfigError(f"lost check: needs 1 <= votes ({votes!r}) <= window ({window!r})")
        self.distance_m, self.min_seen, self.votes = float(distance_m), float(min_seen), votes
        self._window: deque[bool] = deque(maxlen=window)
        self._since = np.zeros(3)  # (x, y, yaw) of the robot since the last vote, in that vote's frame
        self._voted = False

    def reset(self) -> None:
        """Forget every vote (after the memory was reset or loaded)."""
        self._window.clear()
        self._since = np.zeros(3)
        self._voted = False

    def observe(
        self, increment: np.ndarray, answer_xy: tuple[float, float], seen_probability: float, sigma_m: float
    ) -> Vote | None:
        """Take the memory's answer about the current frame, asked before the frame was folded in.

        increment: (dx, dy, dyaw) of the robot since the last frame, in the last frame's base frame (where
        the robot is now, in the frame the answer is given in). Returns the vote, or None when no vote was
        due (not moved enough since the last one, or the memory not sure it saw the place)."""
        self._since = _compose(self._since, np.asarray(increment, dtype=float))
        moved = math.hypot(self._since[0], self._since[1]) >= SPACING_M
        turned = abs(self._since[2]) >= math.radians(SPACING_DEG)
        if self._voted and not (moved or turned):
            return None
        if not seen_probability >= self.min_seen:
            return None
        distance = math.hypot(answer_xy[0] - increment[0], answer_xy[1] - increment[1])
        vote = Vote(distance, float(sigma_m), distance > max(self.distance_m, 2.0 * sigma_m))
        self._window.append(vote.inconsistent)
        self._since, self._voted = np.zeros(3), True
        return vote

    @property
    def lost(self) -> bool:
        """`votes` of the last `window` votes were inconsistent."""
        return sum(self._window) >= self.votes


class ViewFeatures:
    """One frame as the view jump check reads it: grey at `ViewJumpCheck.WIDTH` pixels across, its corners
    (for the optical flow) and, computed only when first asked (`sift`), its SIFT features: pixel positions
    (N, 2) and descriptors (N, 128). `len()` is the number of SIFT features (it computes them)."""

    def __init__(self, grey: np.ndarray, corners: np.ndarray, detector: cv2.SIFT) -> None:
        self.grey, self.corners, self._detector = grey, corners, detector
        self._sift: tuple[np.ndarray, np.ndarray] | None = None

    def sift(self) -> tuple[np.ndarray, np.ndarray]:
        """(points (N, 2) float32, descriptors (N, 128) float32), computed once."""
        if self._sift is None:
            keypoints, descriptors = self._detector.detectAndCompute(self.grey, None)
            if descriptors is None:
                self._sift = (np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
            else:
                self._sift = (np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors)
        return self._sift

    def __deepcopy__(self, memo: dict) -> ViewFeatures:
        """A copy of the frame's arrays sharing the detector (OpenCV's cannot be copied; it holds no state
        of the frame): an engine's `snapshot` copies the last frame's features."""
        copy = ViewFeatures(self.grey.copy(), self.corners.copy(), self._detector)
        copy._sift = None if self._sift is None else (self._sift[0].copy(), self._sift[1].copy())
        return copy

    @property
    def sift_computed(self) -> bool:
        return self._sift is not None

    def __len__(self) -> int:
        return len(self.sift()[0])


class ViewJumpCheck:
    """Two consecutive textured frames that share no image motion while the odometry says the robot barely
    moved. Frames are read at `WIDTH` pixels across (wider images are shrunk), so the cost and the thresholds
    do not depend on the camera.

    Two witnesses, the cheap one first. Optical flow (corners tracked by pyramidal Lucas-Kanade, forwards
    and back, then one homography by RANSAC) settles most pairs for about a millisecond: when at least
    `flow_inliers` tracks agree, the frames show the same scene and there was no jump. Flow alone cannot
    say "another scene": on walls of repeated tiles it found up to 57 agreeing tracks between views
    metres apart (validation worlds, `benchmarks/bench_view_jump.py`), so fewer than `flow_inliers` (80
    in sim.yaml) hands the pair to SIFT (both frames' features,
    a ratio-tested match, one homography), whose verdict is the check's. With `flow_inliers` 0 SIFT
    judges every pair. The flow can only clear a pair, never reset the memory: the check fires on a subset
    of the pairs SIFT alone fires on (`benchmarks/bench_view_jump.py` measures both)."""

    WIDTH = 160
    RATIO = 0.8  # Lowe's ratio test for a match
    RANSAC_PX = 4.0  # a match agrees with the homography within this many pixels (at WIDTH)
    CORNERS = 150  # corners tracked by the flow (Shi-Tomasi, strongest first)
    FLOW_BACK_PX = 1.0  # a track is kept when tracking it back lands within this of where it started
    LK = {
        "winSize": (15, 15),
        "maxLevel": 3,
        "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
    }

    def __init__(
        self,
        min_features: int,
        min_inliers: int,
        max_motion_m: float,
        max_turn_deg: float,
        flow_inliers: int = 0,
    ) -> None:
        for name, value in (("min_features", min_features), ("min_inliers", min_inliers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 4:
                raise ConfigError(f"view jump check: {name} must be an integer >= 4, got {value!r}")
        for name, value in (("max_motion_m", max_motion_m), ("max_turn_deg", max_turn_deg)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
                raise ConfigError(f"view jump check: {name} must be a finite number >= 0, got {value!r}")
        if isinstance(flow_inliers, bool) or not isinstance(flow_inliers, int) or flow_inliers < 0:
            raise ConfigError(f"view jump check: flow_inliers must be an integer >= 0, got {flow_inliers!r}")
        self.min_features, self.min_inliers = min_features, min_inliers
        self.max_motion_m, self.max_turn_deg = float(max_motion_m), float(max_turn_deg)
        self.flow_inliers = flow_inliers
        self._sift = cv2.SIFT_create(nfeatures=300, contrastThreshold=0.01)
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)

    def features(self, image_rgb: np.ndarray) -> ViewFeatures:
        """An RGB (H, W, 3) uint8 frame read at WIDTH pixels across: grey and corners now, SIFT when asked."""
        grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        if grey.shape[1] > self.WIDTH:
            height = max(1, round(grey.shape[0] * self.WIDTH / grey.shape[1]))
            grey = cv2.resize(grey, (self.WIDTH, height), interpolation=cv2.INTER_AREA)
        corners = None
        if self.flow_inliers:
            corners = cv2.goodFeaturesToTrack(grey, maxCorners=self.CORNERS, qualityLevel=0.01, minDistance=5)
        corners = np.zeros((0, 1, 2), np.float32) if corners is None else corners.astype(np.float32)
        return ViewFeatures(grey, corners, self._sift)

    def flow_inliers_between(self, last: ViewFeatures, now: ViewFeatures) -> int:
        """How many of `last`'s corners, tracked into `now` and back to within FLOW_BACK_PX, agree on one
        homography (RANSAC); 0 when `last` has no corners or the frames differ in size."""
        p0 = last.corners
        if len(p0) < 4 or last.grey.shape != now.grey.shape:
            return 0
        p1, found, _ = cv2.calcOpticalFlowPyrLK(last.grey, now.grey, p0, None, **self.LK)
        back, found_back, _ = cv2.calcOpticalFlowPyrLK(now.grey, last.grey, p1, None, **self.LK)
        returned = np.linalg.norm((back - p0).reshape(-1, 2), axis=1) < self.FLOW_BACK_PX
        keep = (found.ravel() == 1) & (found_back.ravel() == 1) & returned
        if keep.sum() < 4:
            return 0
        _, mask = cv2.findHomography(p0[keep], p1[keep], cv2.RANSAC, self.RANSAC_PX)
        return 0 if mask is None else int(mask.sum())

    def inliers(self, last: ViewFeatures, now: ViewFeatures) -> int:
        """How many ratio-test SIFT matches from `now` to `last` agree on one homography (RANSAC)."""
        (last_points, last_desc), (now_points, now_desc) = last.sift(), now.sift()
        if len(last_points) < 2 or len(now_points) < 2:
            return 0
        pairs = self._matcher.knnMatch(now_desc, last_desc, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.RATIO * p[1].distance]
        if len(good) < 4:
            return 0
        src = np.float32([last_points[m.trainIdx] for m in good])
        dst = np.float32([now_points[m.queryIdx] for m in good])
        _, mask = cv2.findHomography(src, dst, cv2.RANSAC, self.RANSAC_PX)
        return 0 if mask is None else int(mask.sum())

    def still(self, increment: np.ndarray) -> bool:
        """The odometry says the robot moved at most max_motion_m and turned at most max_turn_deg."""
        dx, dy, dyaw = (float(v) for v in increment)
        return math.hypot(dx, dy) <= self.max_motion_m and abs(math.degrees(dyaw)) <= self.max_turn_deg

    def flow_clears(self, last: ViewFeatures, now: ViewFeatures) -> bool:
        """The flow shows the same scene (at least flow_inliers agreeing tracks; never with flow off)."""
        return bool(self.flow_inliers) and self.flow_inliers_between(last, now) >= self.flow_inliers

    def jumped(self, last: ViewFeatures, now: ViewFeatures, increment: np.ndarray) -> bool:
        """True when this frame (`now`, `increment` since `last`) shows another scene: the robot was still,
        the flow did not clear the pair, both frames are textured (min_features SIFT features) and fewer
        than min_inliers SIFT matches agree on an image motion."""
        if not self.still(increment) or self.flow_clears(last, now):
            return False
        if min(len(last), len(now)) < self.min_features:
            return False
        return self.inliers(last, now) < self.min_inliers


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SE(2) pose a composed with increment b (b in a's frame)."""
    c, s = math.cos(a[2]), math.sin(a[2])
    yaw = math.atan2(math.sin(a[2] + b[2]), math.cos(a[2] + b[2]))
    return np.array([a[0] + c * b[0] - s * b[1], a[1] + s * b[0] + c * b[1], yaw])

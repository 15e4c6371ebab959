"""The default high-level policy: deterministic, no model, built on what the memory answers.

`ScriptedPolicy` does two things each tick:

* Keyframes: it nominates the current frame when it looks new next to the current keyframes
  (`context.keyframes.NoveltyNominator`), as MemER's policy would nominate a frame worth remembering; the
  loop feeds the nominations to the one MemER filter (`policy.memer.MemERKeyframes`).
* Go to a picture: it asks the memory about the goal picture every tick (the answer is relative to the
  robot now, so the goal is corrected as the robot moves) and
  - drives to the answer when the memory is confident (sigma <= `max_sigma_m`) and says the place was seen;
  - explores when the memory says "not seen" or is unsure: exploration goals a few metres away, in the
    direction that leads furthest from where the robot has been;
  - follows the median place of the last few answers (moved into the odometry frame), so one stray
    answer does not yank the goal;
  - declares arrival when that goal is within `arrive_m`, or within `match_near_m` and the answer's sigma
    with the current view matching the picture (SIFT verified by a RANSAC fundamental matrix: the scene
    is in view, which says the robot is there only as far as the answer cannot tell), or within
    `stopped_near_m` with the robot standing still for `stopped_ticks` ticks although sent there (the
    goal lies in or behind an obstacle and the motion layer stopped at the nearest place it can reach);
  - where the memory verifies its answers (`refined`: PnP against RGB-D views, the robot's view now among
    them) and could not verify this one, first turns in place for up to `look_ticks` ticks: a verified
    answer takes over, the view matching the picture is arrival, and nothing verified means "not seen"
    (the place the memory guessed is not the picture's) with `look_not_seen`, unless the best match came
    close (`look_min_inliers`: weak evidence); otherwise (the default: a picture with little texture can
    fail PnP at the very place) arrival on the memory's answer, said to be unverified;
  - says "not seen" after `not_seen_ticks` consecutive confident "not seen" answers, and gives up when
    the time budget is spent or the memory stays unreachable.
  With `use_memory=False` it is the no-memory baseline: it explores and declares arrival when the current
  view matches the goal picture (SIFT matches verified by a RANSAC fundamental matrix).

Frames: goals are in the base frame at the observation's stamp (x forward, y left); exploration targets and
the visited trail are kept in the odometry frame, so without odometry the policy explores straight ahead.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from spatial_memory.context.config import KeyframeSelectionConfig
from spatial_memory.context.keyframes import NoveltyNominator
from spatial_memory.errors import ConfigError
from spatial_memory.policy.interface import (
    GOAL_PICTURE,
    Decision,
    Goal,
    MemoryReading,
    Observation,
    Pose2D,
    Status,
)

log = logging.getLogger(__name__)

_EXPLORE_DIRECTIONS = 8  # candidate headings for the next exploration goal


def _help(text: str) -> dict[str, str]:
    """Field metadata carrying the ROS parameter description (see `ros.params`)."""
    return {"help": text}


@dataclass(frozen=True)
class ScriptedPolicyConfig:
    """Thresholds of the scripted policy. Set by reasoning about the robot and the memory's reported
    uncertainty, not tuned on any world (the Mem-Nav test worlds included)."""

    use_memory: bool = field(
        default=True, metadata=_help("False: the no-memory baseline (explore, arrive when the view matches)")
    )
    seen_threshold: float = field(
        default=0.5,
        metadata=_help("the memory's seen probability at or above which the place counts as seen"),
    )
    max_sigma_m: float = field(
        default=1.5, metadata=_help("answers less certain than this are 'unsure': explore instead")
    )
    arrive_m: float = field(default=0.5, metadata=_help("arrival: the goal is this close to the base..."))
    arrive_yaw_deg: float = field(
        default=45.0, metadata=_help("...and the robot faces the pictured heading this closely (180: any)...")
    )
    turn_patience_ticks: int = field(
        default=5, metadata=_help("...or it has been at the goal this many ticks (it could not turn)")
    )
    stopped_near_m: float = field(
        default=1.0,
        metadata=_help(
            "arrival too: the robot stopped this close to the goal (the motion layer gets no closer)"
        ),
    )
    stopped_ticks: int = field(
        default=5, metadata=_help("...for this many ticks with a goal sent (moved < 5 cm, turned < 3 deg)")
    )
    look_ticks: int = field(
        default=8,
        metadata=_help(
            "at the goal of an answer the memory could not verify (PnP tried, failed): turn in place this "
            "many ticks for a view that verifies it; none does: turn back, arrive saying 'unverified'"
        ),
    )
    look_step_deg: float = field(default=45.0, metadata=_help("...turning this much each tick"))
    look_not_seen: bool = field(
        default=False,
        metadata=_help(
            "a look that verified nothing (and matched nothing close) says 'not seen'; false: arrival on "
            "the memory's unverified answer (a picture with little texture fails PnP at the very place)"
        ),
    )
    look_min_inliers: int = field(
        default=15,
        metadata=_help(
            "with look_not_seen: the best PnP inliers of a look at or above this are weak evidence of the "
            "place (arrival on the memory's answer), below it 'not seen' (validation worlds: never-seen "
            "pictures 4-11, seen 18-23)"
        ),
    )
    not_seen_ticks: int = field(
        default=5, metadata=_help("consecutive 'not seen' answers before the policy says so and stops")
    )
    budget_s: float = field(default=120.0, metadata=_help("time for one go-to-picture task"))
    max_answer_age_s: float = field(default=3.0, metadata=_help("an older memory answer is not driven to"))
    memory_patience_ticks: int = field(
        default=10, metadata=_help("ticks without a reachable memory before giving up")
    )
    explore_step_m: float = field(default=2.5, metadata=_help("exploration goals lie this far away"))
    explore_patience_ticks: int = field(
        default=12, metadata=_help("a new exploration goal after this many ticks on one...")
    )
    explore_stall_ticks: int = field(
        default=3, metadata=_help("...or after this many ticks without getting 0.1 m closer to it")
    )
    visited_spacing_m: float = field(
        default=0.5, metadata=_help("the trail of visited positions keeps points this far apart")
    )
    match_min_inliers: int = field(
        default=25, metadata=_help("no-memory arrival: verified SIFT matches with the goal picture")
    )
    match_ratio: float = field(default=0.75, metadata=_help("Lowe's ratio test"))
    match_near_m: float = field(
        default=1.0,
        metadata=_help(
            "with a memory: the view matching the picture this near the goal (and within the answer's "
            "sigma) is arrival"
        ),
    )
    answer_window: int = field(
        default=5, metadata=_help("the goal is the median place of this many latest answers")
    )
    nominate: bool = field(default=True, metadata=_help("nominate keyframes by novelty"))
    selection: KeyframeSelectionConfig = field(default_factory=KeyframeSelectionConfig)
    seed: int = field(default=0, metadata=_help("seed of the exploration directions"))

    def __post_init__(self) -> None:
        for name in (
            "max_sigma_m",
            "arrive_m",
            "budget_s",
            "max_answer_age_s",
            "explore_step_m",
            "match_near_m",
            "stopped_near_m",
            "look_step_deg",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf):
                raise ConfigError(f"policy.{name} must be a positive finite number, got {value!r}")
        if not 0.0 < self.arrive_yaw_deg <= 180.0:
            raise ConfigError(f"policy.arrive_yaw_deg must be in (0, 180], got {self.arrive_yaw_deg!r}")
        if not 0.0 < self.seen_threshold < 1.0:
            raise ConfigError(f"policy.seen_threshold must be in (0, 1), got {self.seen_threshold!r}")
        if not 0.0 < self.match_ratio < 1.0:
            raise ConfigError(f"policy.match_ratio must be in (0, 1), got {self.match_ratio!r}")
        for name in (
            "not_seen_ticks",
            "memory_patience_ticks",
            "explore_patience_ticks",
            "match_min_inliers",
            "answer_window",
            "turn_patience_ticks",
            "stopped_ticks",
            "look_ticks",
            "look_min_inliers",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"policy.{name} must be a positive integer, got {value!r}")


class ViewMatcher:
    """Does the current view show the goal picture's place? SIFT + ratio test + RANSAC fundamental matrix."""

    def __init__(
        self, min_inliers: int = 25, ratio: float = 0.75, max_side_px: int = 256, max_features: int = 500
    ) -> None:
        self.min_inliers = min_inliers
        self.ratio = ratio
        self.max_side_px = max_side_px  # larger pictures are shrunk first: the 1 Hz tick stays cheap
        self._sift = cv2.SIFT_create(nfeatures=max_features)
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)
        self._goal: tuple[np.ndarray, tuple, np.ndarray | None] | None = None  # (image, keypoints, desc)
        self.last_inliers = 0

    def _features(self, rgb: np.ndarray) -> tuple[tuple, np.ndarray | None]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        scale = self.max_side_px / max(gray.shape)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return self._sift.detectAndCompute(gray, None)

    def inliers(self, goal_rgb: np.ndarray, view_rgb: np.ndarray) -> int:
        """Matches between the two pictures consistent with one epipolar geometry (0 when too few)."""
        if self._goal is None or self._goal[0] is not goal_rgb:  # holding the array keeps `is` meaningful
            self._goal = (goal_rgb, *self._features(goal_rgb))
        _, kp_g, d_g = self._goal
        kp_v, d_v = self._features(view_rgb)
        if d_g is None or d_v is None or len(kp_g) < 8 or len(kp_v) < 8:
            self.last_inliers = 0
            return 0
        pairs = self._matcher.knnMatch(d_g, d_v, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if len(good) < 8:
            self.last_inliers = 0
            return 0
        a = np.float32([kp_g[m.queryIdx].pt for m in good])
        b = np.float32([kp_v[m.trainIdx].pt for m in good])
        _, mask = cv2.findFundamentalMat(a, b, cv2.FM_RANSAC, 1.5, 0.99)
        self.last_inliers = int(mask.sum()) if mask is not None else 0
        return self.last_inliers

    def matches(self, goal_rgb: np.ndarray, view_rgb: np.ndarray) -> bool:
        return self.inliers(goal_rgb, view_rgb) >= self.min_inliers


class ScriptedPolicy:
    """The deterministic default policy (see the module docstring)."""

    def __init__(self, config: ScriptedPolicyConfig | None = None) -> None:
        self.config = cfg = config or ScriptedPolicyConfig()
        self.name = "scripted" if cfg.use_memory else "scripted-no-memory"
        self.nominator = NoveltyNominator(cfg.selection)
        self.matcher = ViewMatcher(cfg.match_min_inliers, cfg.match_ratio)
        self.reset()

    def reset(self) -> None:
        """Forget the task in progress (not the keyframe nominator: keyframes outlive tasks)."""
        self._started_ns: int | None = None
        self._not_seen = 0
        self._no_memory = 0
        self._explore_target: Pose2D | None = None  # odometry frame
        self._explore_ticks = 0
        self._explore_best = math.inf  # closest the robot came to the exploration target
        self._explore_stall = 0
        self._visited: list[tuple[float, float]] = []
        self._at_goal = 0  # consecutive ticks within arrive_m of the goal
        self._stopped = 0  # consecutive ticks the robot stood still near the goal it was sent to
        self._last_odom: Pose2D | None = None
        self._sent_goal = False  # the last decision sent the robot to the memory's goal
        self._looked = 0  # ticks spent turning at the goal for a view that verifies the answer
        self._look_best = 0  # the most PnP inliers the memory found during the look
        self._look_done = ""  # a finished look's outcome while the robot turns back to the picture's heading
        self._last_reading: MemoryReading | None = None
        # the latest answers' places in the odometry frame, their sigma, whether verified
        self._places: deque[tuple[Pose2D, float, bool]] = deque(maxlen=self.config.answer_window)
        self._last_reading_ns: int | None = None
        self._rng = np.random.default_rng(self.config.seed)

    # ------------------------------------------------------------------------------------------ the tick
    def decide(self, observation: Observation) -> Decision:
        obs, cfg = observation, self.config
        positions, ids = self._nominate(obs)
        base = {"stamp_ns": obs.stamp_ns, "keyframe_positions": positions, "nominated_frame_ids": ids}
        base["source"] = self.name
        if not obs.task.is_go_to_picture:
            return Decision(subtask=obs.task.text or "observe", **base)
        self._remember_position(obs.odom_base)
        still = self._stood_still(obs.odom_base)
        if self._started_ns is None:
            self._started_ns = obs.stamp_ns
        elapsed_s = (obs.stamp_ns - self._started_ns) * 1e-9
        if elapsed_s > cfg.budget_s:
            if self._looked > 0 and self._last_reading is not None:  # out of time while looking: conclude
                return self._end_look(base, self._last_reading, "out of time while looking around")
            return Decision(status=Status.GAVE_UP, reason=f"out of time ({cfg.budget_s:g} s)", **base)
        if not cfg.use_memory:
            return self._without_memory(obs, base)
        sent, self._sent_goal = self._sent_goal, False
        self._stopped = self._stopped + 1 if sent and still else 0
        decision = self._with_memory(obs, base)
        self._sent_goal = decision.goal is not None and not decision.explore
        return decision

    def _stood_still(self, odom: Pose2D | None) -> bool:
        """Whether the base moved less than 5 cm and turned less than 3 deg since the last tick (False
        without odometry: stillness cannot be told)."""
        last, self._last_odom = self._last_odom, odom
        if odom is None or last is None:
            return False
        turn = abs(math.degrees(odom.inverse().compose(last).yaw))
        return math.hypot(odom.x - last.x, odom.y - last.y) < 0.05 and turn < 3.0

    def _with_memory(self, obs: Observation, base: dict) -> Decision:
        cfg = self.config
        base["ask"] = (GOAL_PICTURE,)
        if not obs.memory_available:
            self._no_memory += 1
            if self._no_memory >= cfg.memory_patience_ticks:
                return Decision(status=Status.GAVE_UP, reason="the memory is unreachable", **base)
            return Decision(subtask="wait for the memory", reason="the memory is unreachable", **base)
        reading = obs.answers.get(GOAL_PICTURE)
        if reading is None or (obs.stamp_ns - reading.stamp_ns) * 1e-9 > cfg.max_answer_age_s:
            self._no_memory += 1
            if self._no_memory >= cfg.memory_patience_ticks:
                return Decision(status=Status.GAVE_UP, reason="no answer from the memory", **base)
            return Decision(subtask="ask the memory", reason="waiting for a fresh answer", **base)
        self._no_memory = 0
        if reading.seen_probability < cfg.seen_threshold:
            self._not_seen += 1
            if self._not_seen >= cfg.not_seen_ticks:
                reason = f"the memory says not seen ({reading.seen_probability:.2f}, {self._not_seen} ticks)"
                return Decision(status=Status.NOT_SEEN, reason=reason, **base)
            return self._explore(obs, base, "the memory has not seen it yet")
        self._not_seen = 0
        if reading.sigma_m > cfg.max_sigma_m:
            return self._explore(obs, base, f"the memory is unsure (sigma {reading.sigma_m:.1f} m)")
        goal = self._fused_goal(reading, obs.odom_base)
        self._explore_target = None
        turn = abs(math.degrees(goal.yaw))
        self._at_goal = self._at_goal + 1 if goal.distance <= cfg.arrive_m else 0
        facing = turn <= cfg.arrive_yaw_deg or self._at_goal > cfg.turn_patience_ticks
        arrival = None
        if goal.distance <= cfg.arrive_m and facing:
            arrival = f"the goal is {goal.distance:.2f} m away, {turn:.0f} deg off"
        elif goal.distance <= cfg.stopped_near_m and self._stopped >= cfg.stopped_ticks:
            arrival = (
                f"stopped {goal.distance:.2f} m from the goal for {self._stopped} ticks "
                "(the motion layer gets no closer)"
            )
        if goal.distance > cfg.stopped_near_m:
            self._look_done = ""  # a new place: look again there if need be
        looking = self._looked > 0 and goal.distance <= cfg.stopped_near_m
        unverified = reading.verifiable and not any(v for *_, v in self._places)
        if (arrival or looking) and unverified and not self._look_done:
            decision = self._look_around(obs, base, reading, goal)
            if decision is not None:
                return decision
            self._at_goal, arrival = 0, None  # the look ended: turn back to the pictured heading first
        self._looked, self._look_best = 0, 0
        if arrival:
            note = f" ({self._look_done})" if self._look_done and unverified else ""
            return Decision(status=Status.ARRIVED, reason=arrival + note, **base)
        current = obs.current
        # the view matching the picture is evidence of the place only where the answer cannot tell the
        # distance left from none (within its sigma): a precise answer is driven to, not cut short
        sigma = min(s for _, s, _ in self._places) if self._places else reading.sigma_m
        near = goal.distance <= min(cfg.match_near_m, sigma) and current is not None
        if near and self.matcher.matches(obs.task.goal_image, current.image):
            reason = (
                f"the view matches the picture ({self.matcher.last_inliers} inliers) "
                f"{goal.distance:.2f} m from the memory's goal"
            )
            return Decision(status=Status.ARRIVED, reason=reason, **base)
        return Decision(
            subtask="go to the pictured place",
            goal=Goal(goal, f"memory:{reading.backend}", reading.sigma_m),
            reason=f"{goal.distance:.1f} m away (sigma {reading.sigma_m:.2f} m)",
            **base,
        )

    def _look_around(
        self, obs: Observation, base: dict, reading: MemoryReading, goal: Pose2D
    ) -> Decision | None:
        """At the goal of an answer the memory tried and failed to verify: turn in place, a step a tick,
        while the memory keeps trying (it verifies against what the robot sees now). A verified answer
        ends the look (it outvotes the guesses, see `_fused_goal`); the view matching the picture is
        arrival; a full look with neither returns None (the caller turns back to the pictured heading and
        arrives on the memory's answer, saying it is unverified) or, with `look_not_seen` and no close match,
        "not seen"."""
        cfg, current = self.config, obs.current
        if current is not None and self.matcher.matches(obs.task.goal_image, current.image):
            reason = (
                f"the view matches the picture ({self.matcher.last_inliers} inliers) "
                f"{goal.distance:.2f} m from the memory's goal"
            )
            return Decision(status=Status.ARRIVED, reason=reason, **base)
        self._look_best = max(self._look_best, reading.inliers)
        self._last_reading = reading
        if self._looked >= cfg.look_ticks:
            why = f"{self._looked} ticks of looking around verified nothing"
            if cfg.look_not_seen and self._look_best < cfg.look_min_inliers:
                return self._end_look(base, reading, why)
            # arrival on the memory's answer, once facing the pictured heading again (the head camera sits
            # ahead of the turning axis: the look moved it)
            self._look_done = f"unverified: {why}, best {self._look_best} PnP inliers"
            return None
        self._looked += 1
        look = Pose2D(0.0, 0.0, math.radians(cfg.look_step_deg))
        return Decision(
            subtask="look around for the pictured place",
            goal=Goal(look, "look around"),
            reason=f"the memory could not verify its answer ({reading.inliers} PnP inliers): looking around",
            **base,
        )

    def _end_look(self, base: dict, reading: MemoryReading, why: str) -> Decision:
        """Conclude a look with no verified answer now: arrival on the memory's answer, or with
        `look_not_seen` "not seen" unless there was weak evidence of the place (`look_min_inliers`)."""
        best = self._look_best
        if not self.config.look_not_seen:
            reason = f"arrived on the memory's unverified answer: {why} (best {best} PnP inliers)"
            return Decision(status=Status.ARRIVED, reason=reason, **base)
        if best >= self.config.look_min_inliers:
            reason = (
                f"arrived on the memory's unverified answer: {why}, but the best match had {best} PnP "
                f"inliers (weak evidence of the place)"
            )
            return Decision(status=Status.ARRIVED, reason=reason, **base)
        reason = f"not seen: at the memory's goal, {why} (best {best} PnP inliers)"
        return Decision(status=Status.NOT_SEEN, reason=reason, **base)

    def _fused_goal(self, reading: MemoryReading, odom: Pose2D | None) -> Pose2D:
        """The goal in the base frame now: the median place of the last `answer_window` answers, each moved
        into the odometry frame (one place seen from several spots; a stray answer does not yank the goal),
        counting only the answers about as certain as the most certain of them (sigma within 1.5x: a
        verified, refined answer outvotes the model's coarse fallbacks). Without odometry, the latest
        answer alone."""
        if reading.stamp_ns != self._last_reading_ns:
            self._last_reading_ns = reading.stamp_ns
            origin = odom or Pose2D(0.0, 0.0, 0.0)
            place = origin.compose(reading.relative_to(odom))
            self._places.append((place, reading.sigma_m, reading.verified))
        if odom is None:
            return reading.pose
        best = min(sigma for _, sigma, _ in self._places)
        places = [p for p, sigma, _ in self._places if sigma <= 1.5 * best or not math.isfinite(best)]
        xs, ys = np.median([p.x for p in places]), np.median([p.y for p in places])
        yaw = math.atan2(sum(math.sin(p.yaw) for p in places), sum(math.cos(p.yaw) for p in places))
        return odom.inverse().compose(Pose2D(float(xs), float(ys), yaw))

    def _without_memory(self, obs: Observation, base: dict) -> Decision:
        current = obs.current
        if current is not None and self.matcher.matches(obs.task.goal_image, current.image):
            reason = f"the view matches the picture ({self.matcher.last_inliers} inliers)"
            return Decision(status=Status.ARRIVED, reason=reason, **base)
        return self._explore(obs, base, "looking for the pictured place")

    # ------------------------------------------------------------------------------------------ exploring
    def _explore(self, obs: Observation, base: dict, why: str) -> Decision:
        """A goal a few metres away, towards where the robot has not been; a new one when it is reached,
        when the robot stops getting closer (a wall, a goal the motion layer moved), or after a while."""
        cfg = self.config
        odom = obs.odom_base or Pose2D(0.0, 0.0, 0.0)
        target = self._explore_target
        self._explore_ticks += 1
        left = math.inf if target is None else math.hypot(target.x - odom.x, target.y - odom.y)
        if left < self._explore_best - 0.1:
            self._explore_best, self._explore_stall = left, 0
        else:
            self._explore_stall += 1
        stalled = self._explore_stall >= cfg.explore_stall_ticks
        patience_out = self._explore_ticks > cfg.explore_patience_ticks
        if target is None or left < cfg.arrive_m or stalled or patience_out:
            target = self._explore_target = self._next_explore_target(odom)
            self._explore_ticks, self._explore_stall = 0, 0
            self._explore_best = math.hypot(target.x - odom.x, target.y - odom.y)
        goal = odom.inverse().compose(target)
        return Decision(subtask="explore", goal=Goal(goal, "explore"), explore=True, reason=why, **base)

    def _next_explore_target(self, odom: Pose2D) -> Pose2D:
        """Of `_EXPLORE_DIRECTIONS` headings (seeded offset), the end point furthest from the visited trail;
        ties (nothing visited yet) go to the one nearest straight ahead."""
        step = self.config.explore_step_m
        offset = float(self._rng.uniform(0.0, 2.0 * math.pi / _EXPLORE_DIRECTIONS))
        best, best_score = None, -math.inf
        trail = np.asarray(self._visited, dtype=np.float64).reshape(-1, 2)
        for k in range(_EXPLORE_DIRECTIONS):
            heading = odom.yaw + offset + 2.0 * math.pi * k / _EXPLORE_DIRECTIONS
            x, y = odom.x + step * math.cos(heading), odom.y + step * math.sin(heading)
            far = float(np.min(np.hypot(trail[:, 0] - x, trail[:, 1] - y))) if len(trail) else 0.0
            ahead = math.cos(heading - odom.yaw)  # tie-break: prefer not turning around
            score = far + 0.1 * ahead
            if score > best_score:
                best, best_score = Pose2D(x, y, math.atan2(y - odom.y, x - odom.x)), score
        assert best is not None
        return best

    def _remember_position(self, odom: Pose2D | None) -> None:
        if odom is None:
            return
        if (
            not self._visited
            or math.hypot(odom.x - self._visited[-1][0], odom.y - self._visited[-1][1])
            >= self.config.visited_spacing_m
        ):
            self._visited.append((odom.x, odom.y))

    # ------------------------------------------------------------------------------------------ keyframes
    def _nominate(self, obs: Observation) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """MemER positions (1-indexed in `obs.recent`) and frame ids of this tick's nominations."""
        current = obs.current
        if not self.config.nominate or current is None:
            return (), ()
        keyframe_ids = [k.frame_id for k in obs.keyframes]
        if self.nominator.observe(current.frame_id, current.image, keyframe_ids):
            return (len(obs.recent),), (current.frame_id,)
        return (), ()

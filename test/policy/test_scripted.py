"""ScriptedPolicy: go to a picture on the memory's answers, explore when unsure, say "not seen", give up on
time or without a memory; the no-memory baseline's view matcher; novelty nominations on MemER's contract."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from spatial_memory.errors import ConfigError
from spatial_memory.policy.interface import (
    GOAL_PICTURE,
    Decision,
    Frame,
    HighLevelPolicy,
    MemoryReading,
    Observation,
    Pose2D,
    Status,
    Task,
)
from spatial_memory.policy.scripted import ScriptedPolicy, ScriptedPolicyConfig, ViewMatcher

S = 1_000_000_000  # ns per second


def texture(seed: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A random blotchy RGB picture with plenty of corners."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(img, (3, 3), 0)


GOAL = texture(1)
TASK = Task(goal_image=GOAL, name="picture")


def obs(t_s: float, answer: MemoryReading | None = None, odom: Pose2D | None = None, **kw) -> Observation:
    frame = Frame(int(t_s), int(t_s * S), kw.pop("image", texture(100 + int(t_s))))
    answers = {GOAL_PICTURE: answer} if answer is not None else {}
    return Observation(int(t_s * S), TASK, (frame,), answers=answers, odom_base=odom, **kw)


def reading(t_s: float, pose: Pose2D, seen: float = 0.9, sigma: float = 0.3, odom: Pose2D | None = None):
    return MemoryReading(
        GOAL_PICTURE, int(t_s * S), pose, sigma, seen, 1 / (1 + sigma), "kinaema", odom_base=odom
    )


def test_it_is_a_high_level_policy():
    assert isinstance(ScriptedPolicy(), HighLevelPolicy)


def test_drives_to_a_confident_seen_answer_moved_to_now_and_asks_every_tick():
    policy = ScriptedPolicy()
    odom_then, odom_now = Pose2D(0.0, 0.0, 0.0), Pose2D(1.0, 0.0, 0.0)  # drove 1 m since the answer
    d = policy.decide(obs(1.0, reading(0.5, Pose2D(3.0, 1.0, 0.0), odom=odom_then), odom=odom_now))
    assert d.status is Status.RUNNING and d.ask == (GOAL_PICTURE,)
    assert d.goal is not None and d.goal.source == "memory:kinaema" and not d.explore
    assert d.goal.pose.x == pytest.approx(2.0) and d.goal.pose.y == pytest.approx(1.0)


def test_declares_arrival_within_arrive_m():
    policy = ScriptedPolicy(ScriptedPolicyConfig(arrive_m=0.5))
    assert policy.decide(obs(1.0, reading(1.0, Pose2D(0.6, 0.0, 0.0)))).status is Status.RUNNING
    d = policy.decide(obs(2.0, reading(2.0, Pose2D(0.3, 0.2, 0.0))))
    assert d.status is Status.ARRIVED and d.goal is None


def test_says_not_seen_after_consecutive_not_seen_answers_and_explores_meanwhile():
    policy = ScriptedPolicy(ScriptedPolicyConfig(not_seen_ticks=3))
    decisions = [policy.decide(obs(t, reading(t, Pose2D(2.0, 0.0, 0.0), seen=0.1))) for t in (1.0, 2.0, 3.0)]
    assert [d.status for d in decisions] == [Status.RUNNING, Status.RUNNING, Status.NOT_SEEN]
    assert decisions[0].explore and decisions[0].goal is not None and decisions[0].goal.source == "explore"


def test_a_seen_answer_resets_the_not_seen_count():
    policy = ScriptedPolicy(ScriptedPolicyConfig(not_seen_ticks=2))
    policy.decide(obs(1.0, reading(1.0, Pose2D(2.0, 0.0, 0.0), seen=0.1)))
    policy.decide(obs(2.0, reading(2.0, Pose2D(2.0, 0.0, 0.0), seen=0.9)))
    d = policy.decide(obs(3.0, reading(3.0, Pose2D(2.0, 0.0, 0.0), seen=0.1)))
    assert d.status is Status.RUNNING


def test_explores_when_the_memory_is_unsure():
    policy = ScriptedPolicy(ScriptedPolicyConfig(max_sigma_m=1.0))
    d = policy.decide(obs(1.0, reading(1.0, Pose2D(2.0, 0.0, 0.0), sigma=2.5)))
    assert d.explore and d.goal is not None and "unsure" in d.reason


def test_exploration_heads_away_from_the_trail_and_changes_target_when_stalled():
    policy = ScriptedPolicy(ScriptedPolicyConfig(explore_stall_ticks=2, explore_step_m=2.0))
    unsure = Pose2D(2.0, 0.0, 0.0)
    for x in np.arange(-5.0, 0.01, 0.5):  # the robot came from -x: the trail lies behind it
        policy._remember_position(Pose2D(float(x), 0.0, 0.0))
    first = policy.decide(obs(1.0, reading(1.0, unsure, sigma=9.0), odom=Pose2D(0.0, 0.0, 0.0))).goal
    assert first is not None and first.pose.x > 0.5  # ahead, not back along the trail
    # the robot does not get closer for two ticks: a new target
    targets = [
        policy.decide(obs(t, reading(t, unsure, sigma=9.0), odom=Pose2D(0.0, 0.0, 0.0))).goal.pose
        for t in (2.0, 3.0, 4.0)
    ]
    assert any(abs(math.atan2(p.y, p.x) - math.atan2(first.pose.y, first.pose.x)) > 0.1 for p in targets)


def test_gives_up_when_the_memory_stays_unreachable_holding_still_meanwhile():
    policy = ScriptedPolicy(ScriptedPolicyConfig(memory_patience_ticks=3))
    ds = [policy.decide(obs(t, memory_available=False)) for t in (1.0, 2.0, 3.0)]
    assert [d.goal for d in ds[:2]] == [None, None] and not ds[0].explore
    assert ds[2].status is Status.GAVE_UP and "unreachable" in ds[2].reason


def test_a_stale_answer_is_not_driven_to():
    policy = ScriptedPolicy(ScriptedPolicyConfig(max_answer_age_s=2.0))
    d = policy.decide(obs(10.0, reading(5.0, Pose2D(3.0, 0.0, 0.0))))
    assert d.goal is None and d.status is Status.RUNNING


def test_gives_up_when_the_budget_is_spent():
    policy = ScriptedPolicy(ScriptedPolicyConfig(budget_s=10.0))
    far = Pose2D(5.0, 0.0, 0.0)
    assert policy.decide(obs(0.0, reading(0.0, far))).status is Status.RUNNING
    assert policy.decide(obs(11.0, reading(11.0, far))).status is Status.GAVE_UP
    policy.reset()  # a new task gets a new budget
    assert policy.decide(obs(12.0, reading(12.0, far))).status is Status.RUNNING


def test_without_a_task_it_only_nominates():
    policy = ScriptedPolicy()
    d = policy.decide(Observation(S, Task(text="tidy up"), (Frame(7, S, texture(3)),)))
    assert d.subtask == "tidy up" and d.goal is None and d.ask == ()
    assert d.keyframe_positions == (1,) and d.nominated_frame_ids == (7,)  # the first frame is new
    d = policy.decide(Observation(2 * S, Task(), (Frame(7, S, texture(3)), Frame(8, 2 * S, texture(3)))))
    assert d.keyframe_positions == ()  # the same view again: nothing new


def test_view_matcher_tells_the_same_place_from_another():
    shifted = np.roll(GOAL, (4, 6), axis=(0, 1))  # the same place, the camera moved a little
    matcher = ViewMatcher()
    assert matcher.matches(GOAL, shifted)
    assert not matcher.matches(GOAL, texture(2))
    assert not matcher.matches(GOAL, np.zeros_like(GOAL))  # nothing to match


def test_no_memory_baseline_arrives_when_the_view_matches_and_explores_otherwise():
    policy = ScriptedPolicy(ScriptedPolicyConfig(use_memory=False))
    d = policy.decide(obs(1.0, image=texture(5)))
    assert d.explore and d.ask == () and d.status is Status.RUNNING
    d = policy.decide(obs(2.0, image=np.roll(GOAL, 3, axis=1)))
    assert d.status is Status.ARRIVED and "matches" in d.reason


def test_same_observations_same_decisions():
    def run() -> list:
        policy = ScriptedPolicy(ScriptedPolicyConfig(seed=3))
        return [
            policy.decide(obs(t, reading(t, Pose2D(1.0, 2.0, 0.0), sigma=5.0))).goal for t in (1.0, 2.0, 3.0)
        ]

    assert run() == run()


def test_config_is_checked():
    with pytest.raises(ConfigError):
        ScriptedPolicyConfig(arrive_m=0.0)
    with pytest.raises(ConfigError):
        ScriptedPolicyConfig(not_seen_ticks=0)
    with pytest.raises(ConfigError):
        ScriptedPolicyConfig(seen_threshold=1.5)


def test_the_goal_is_the_median_place_of_recent_answers():
    policy = ScriptedPolicy(ScriptedPolicyConfig(answer_window=3))
    odom = Pose2D(0.0, 0.0, 0.0)
    places = [Pose2D(3.0, 0.0, 0.0), Pose2D(9.0, 5.0, 0.0), Pose2D(3.2, 0.1, 0.0)]  # one stray answer
    for t, p in enumerate(places, start=1):
        d = policy.decide(obs(float(t), reading(float(t), p, odom=odom), odom=odom))
    assert d.goal.pose.x == pytest.approx(3.2) and d.goal.pose.y == pytest.approx(0.1)


def test_with_a_memory_a_matching_view_near_the_goal_is_arrival():
    policy = ScriptedPolicy(ScriptedPolicyConfig(arrive_m=0.5, match_near_m=2.0))
    near = reading(1.0, Pose2D(1.2, 0.0, 0.0), sigma=1.4)
    assert policy.decide(obs(1.0, near, image=texture(9))).status is Status.RUNNING  # another view
    d = policy.decide(
        obs(2.0, reading(2.0, Pose2D(1.2, 0.0, 0.0), sigma=1.4), image=np.roll(GOAL, 2, axis=0))
    )
    assert d.status is Status.ARRIVED and "matches" in d.reason
    far = ScriptedPolicy().decide(obs(1.0, reading(1.0, Pose2D(4.0, 0.0, 0.0), sigma=1.4), image=GOAL))
    assert far.status is Status.RUNNING  # the same view 4 m from the memory's goal: a look-alike


def test_a_precise_answer_is_driven_to_though_the_view_already_matches():
    policy = ScriptedPolicy(ScriptedPolicyConfig(arrive_m=0.5, match_near_m=2.0))
    d = policy.decide(
        obs(1.0, reading(1.0, Pose2D(0.9, 0.0, 0.0), sigma=0.1), image=np.roll(GOAL, 2, axis=0))
    )
    assert d.status is Status.RUNNING and d.goal.pose.x == pytest.approx(0.9)  # 0.9 m left, sigma 0.1 m


def test_arrival_needs_the_pictured_heading_too():
    policy = ScriptedPolicy(ScriptedPolicyConfig(arrive_m=0.5, arrive_yaw_deg=45.0))
    d = policy.decide(obs(1.0, reading(1.0, Pose2D(0.2, 0.0, math.radians(120)))))
    assert d.status is Status.RUNNING and d.goal is not None  # there, facing away: turn first
    assert d.goal.pose.yaw == pytest.approx(math.radians(120))
    policy = ScriptedPolicy(ScriptedPolicyConfig(arrive_m=0.5, arrive_yaw_deg=45.0))
    assert policy.decide(obs(2.0, reading(2.0, Pose2D(0.2, 0.0, math.radians(30))))).status is Status.ARRIVED


def test_certain_answers_outvote_uncertain_ones():
    policy = ScriptedPolicy(ScriptedPolicyConfig(answer_window=5, max_sigma_m=1.5))
    odom = Pose2D(0.0, 0.0, 0.0)
    refined, fallback = (Pose2D(3.0, 0.0, 0.0), 0.2), (Pose2D(0.7, 0.2, 0.0), 0.9)
    answers = [refined] * 2 + [fallback] * 3
    for t, (p, sigma) in enumerate(answers, start=1):
        d = policy.decide(obs(float(t), reading(float(t), p, sigma=sigma, odom=odom), odom=odom))
    assert d.status is Status.RUNNING and d.goal.pose.x == pytest.approx(3.0)


def test_stopping_short_of_a_goal_the_motion_layer_cannot_reach_is_arrival():
    cfg = ScriptedPolicyConfig(arrive_m=0.5, stopped_near_m=1.0, stopped_ticks=3)
    policy = ScriptedPolicy(cfg)
    odom = Pose2D(2.0, 1.0, 0.3)  # the robot stands still; the goal (in a wall) stays 0.7 m away
    blank = np.full((120, 160, 3), 90, np.uint8)  # a view that matches nothing

    def tick(p: ScriptedPolicy, t: int) -> Decision:
        return p.decide(obs(float(t), reading(float(t), Pose2D(0.7, 0.0, 0.0), odom=odom), odom, image=blank))

    decisions = [tick(policy, t) for t in range(1, 6)]
    # tick 1 sends the goal; ticks 2-4 stand still with it sent; the third such tick is arrival
    assert [d.status for d in decisions[:3]] == [Status.RUNNING] * 3
    assert decisions[3].status is Status.ARRIVED and "stopped 0.70 m from the goal" in decisions[3].reason


def test_a_moving_robot_or_a_far_goal_is_not_stopped_short():
    cfg = ScriptedPolicyConfig(arrive_m=0.5, stopped_near_m=1.0, stopped_ticks=2)
    moving = ScriptedPolicy(cfg)
    blank = np.full((120, 160, 3), 90, np.uint8)
    start = Pose2D(0.0, 0.0, 0.0)
    for t in range(1, 6):  # creeping 6 cm a tick towards a place 0.9 m ahead of the start (0.6 m left)
        odom = Pose2D(0.06 * t, 0.0, 0.0)
        place = start.inverse().compose(odom).inverse().compose(Pose2D(0.9, 0.0, 0.0))  # in the base now
        d = moving.decide(obs(float(t), reading(float(t), place, odom=odom), odom=odom, image=blank))
    assert d.status is Status.RUNNING
    far = ScriptedPolicy(cfg)
    odom = Pose2D(0.0, 0.0, 0.0)
    for t in range(1, 8):  # standing still 3 m from the goal: the motion layer's problem, not arrival
        d = far.decide(obs(float(t), reading(float(t), Pose2D(3.0, 0.0, 0.0), odom=odom), odom, image=blank))
    assert d.status is Status.RUNNING
    blind = ScriptedPolicy(cfg)  # no odometry: stillness cannot be told
    for t in range(1, 8):
        d = blind.decide(obs(float(t), reading(float(t), Pose2D(0.8, 0.0, 0.0)), image=blank))
    assert d.status is Status.RUNNING


def _refined(t_s: float, pose: Pose2D, inliers: int, odom: Pose2D, sigma: float = 0.9) -> MemoryReading:
    """An answer of a memory that verifies: `inliers` >= min means verified (backend 'refined')."""
    backend = "refined" if inliers >= 25 else "kinaema"
    sigma = 0.1 if backend == "refined" else sigma
    return MemoryReading(GOAL_PICTURE, int(t_s * S), pose, sigma, 0.95, 0.5, backend, inliers, odom)


def test_an_unverified_answer_is_looked_around_for_then_said_not_seen():
    cfg = ScriptedPolicyConfig(arrive_m=0.5, look_ticks=3, look_step_deg=45.0, look_not_seen=True)
    policy = ScriptedPolicy(cfg)
    blank = np.full((120, 160, 3), 90, np.uint8)
    odom = Pose2D(0.0, 0.0, 0.0)
    decisions = []
    for t in range(1, 6):  # the memory says "here", tried PnP and got 12 inliers every time
        odom = Pose2D(0.0, 0.0, math.radians(45.0 * (t - 1)))  # the robot turns as told
        here = odom  # the same place in the odometry frame, facing the way the robot faces
        d = policy.decide(
            obs(float(t), _refined(float(t), Pose2D(0.1, 0.0, 0.0), 12, here), odom, image=blank)
        )
        decisions.append(d)
        if d.status.done:
            break
    looks = [d for d in decisions if d.status is Status.RUNNING]
    assert len(looks) == 3 and all(d.goal.source == "look around" for d in looks)
    assert all(d.goal.pose.distance == 0.0 and d.goal.pose.yaw == pytest.approx(math.pi / 4) for d in looks)
    assert decisions[-1].status is Status.NOT_SEEN and "verified nothing" in decisions[-1].reason


def test_a_verified_answer_during_the_look_takes_over():
    cfg = ScriptedPolicyConfig(arrive_m=0.5, look_ticks=5)
    policy = ScriptedPolicy(cfg)
    blank = np.full((120, 160, 3), 90, np.uint8)
    odom = Pose2D(0.0, 0.0, 0.0)
    d = policy.decide(obs(1.0, _refined(1.0, Pose2D(0.2, 0.0, 0.0), 8, odom), odom, image=blank))
    assert d.goal.source == "look around"
    d = policy.decide(obs(2.0, _refined(2.0, Pose2D(2.0, 1.0, 0.0), 60, odom), odom, image=blank))
    assert d.status is Status.RUNNING and d.goal.source == "memory:refined"  # verified: 2.2 m off, go
    assert d.goal.pose.x == pytest.approx(2.0) and d.goal.pose.y == pytest.approx(1.0)
    d = ScriptedPolicy(cfg).decide(
        obs(3.0, _refined(3.0, Pose2D(0.3, 0.0, 0.0), 60, odom), odom, image=blank)
    )
    assert d.status is Status.ARRIVED  # a verified answer at hand is arrival, no look


def test_a_memory_that_does_not_verify_arrives_on_its_answer_as_before():
    policy = ScriptedPolicy(ScriptedPolicyConfig(arrive_m=0.5, look_ticks=5))
    odom = Pose2D(0.0, 0.0, 0.0)
    blank = np.full((120, 160, 3), 90, np.uint8)
    coarse = reading(1.0, Pose2D(0.2, 0.0, 0.0), odom=odom)  # inliers -1: no verification tried
    assert not coarse.verifiable and not coarse.verified
    assert policy.decide(obs(1.0, coarse, odom, image=blank)).status is Status.ARRIVED


def _look(policy: ScriptedPolicy, inliers: int, ticks: int) -> list[Decision]:
    """Ticks of a robot standing at the memory's unverified goal and turning as told."""
    blank = np.full((120, 160, 3), 90, np.uint8)
    decisions = []
    for t in range(1, ticks + 1):
        odom = Pose2D(0.0, 0.0, math.radians(45.0 * (t - 1)))
        d = policy.decide(
            obs(float(t), _refined(float(t), Pose2D(0.1, 0.0, 0.0), inliers, odom), odom, image=blank)
        )
        decisions.append(d)
        if d.status.done:
            break
    return decisions


def test_a_close_match_during_the_look_is_weak_evidence_of_the_place():
    cfg = ScriptedPolicyConfig(arrive_m=0.5, look_ticks=3, look_min_inliers=15, look_not_seen=True)
    decisions = _look(ScriptedPolicy(cfg), 20, 10)  # 20 PnP inliers: not verified (25), but close
    end = decisions[-1]
    assert end.status is Status.ARRIVED and "unverified" in end.reason and "best 20 PnP inliers" in end.reason
    assert decisions[-2].goal.source == "memory:kinaema"  # turned back to the pictured heading first
    assert _look(ScriptedPolicy(cfg), 14, 10)[-1].status is Status.NOT_SEEN


def test_running_out_of_time_while_looking_concludes_the_look():
    cfg = ScriptedPolicyConfig(
        arrive_m=0.5, look_ticks=20, look_min_inliers=15, budget_s=4.0, look_not_seen=True
    )
    decisions = _look(ScriptedPolicy(cfg), 20, 10)
    assert decisions[-1].status is Status.ARRIVED and "out of time while looking" in decisions[-1].reason
    decisions = _look(ScriptedPolicy(cfg), 3, 10)
    assert decisions[-1].status is Status.NOT_SEEN and "out of time while looking" in decisions[-1].reason


def test_by_default_a_look_that_verified_nothing_is_arrival_said_to_be_unverified():
    policy = ScriptedPolicy(ScriptedPolicyConfig(arrive_m=0.5, look_ticks=3))
    blank = np.full((120, 160, 3), 90, np.uint8)
    place = Pose2D(0.1, 0.0, 0.0)  # in the odometry frame: the memory's (unverified) answer
    headings = [0.0, 45.0, 90.0, 135.0, 135.0, 0.0]  # three looks, the look ends, the robot turns back
    decisions = []
    for t, heading in enumerate(headings, start=1):
        odom = Pose2D(0.0, 0.0, math.radians(heading))
        answer = odom.inverse().compose(place)
        decisions.append(policy.decide(obs(float(t), _refined(float(t), answer, 3, odom), odom, image=blank)))
    assert [d.goal.source for d in decisions[:3]] == ["look around"] * 3
    assert decisions[3].status is Status.RUNNING and decisions[3].goal.source == "memory:kinaema"
    assert decisions[3].goal.pose.yaw == pytest.approx(math.radians(-135.0))  # back to the picture's heading
    assert decisions[4].status is Status.RUNNING  # still facing away
    assert decisions[5].status is Status.ARRIVED and "unverified" in decisions[5].reason

"""Mem-Nav: "go to where this picture was taken", scored in the live simulation.

Each episode runs a world's tour for T memory steps (the live camera, memory_node's feeding: the same loop as
the live Mem-RPE harness), then hands the robot pictures - of places it saw and of places it never saw -
each from where the tour ended (the robot carried back, sim time, its odometry and the memory restored
between pictures), and the 1 Hz high-level policy (`policy.ScriptedPolicy`) must take it there through the
motion layer (`sim.GoalFollower`: A* on the simulator's occupancy grid, as nav2 would with a map). The
memory keeps running during the trip; the policy asks it about the picture every tick.

Methods, compared on the same worlds, tours and pictures:
  none       no memory: explore, declare arrival when the current view matches the picture
  gru        the GRU baseline checkpoint's answers
  keyframes  keyframe retrieval through the Kinaema checkpoint's encoder
  kinaema    the Kinaema checkpoint's answers
  refined    Kinaema's answer verified and made metric against stored RGB-D views (PnP)
  oracle     the true pose of the pictured camera (the motion layer's ceiling)

Scores per picture: success (a seen picture: the policy declares arrival with the head camera within
`success_m` of the picture's camera, within the time budget), SPL (Anderson et al. 2018: success x shortest /
max(travelled, shortest), shortest = the A* path on the occupancy grid from where the robot started to the
picture's camera, snapped to free space), and for never-seen pictures whether the policy said "not seen".
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.eval.live_mem_rpe import LiveMemoryRun, LiveRunConfig
from spatial_memory.memory.engine import EngineConfig, MemoryAnswer
from spatial_memory.memory.poses import planar_target
from spatial_memory.memory.refine import RefineConfig
from spatial_memory.memory.service import MemoryService
from spatial_memory.policy.interface import (
    GOAL_PICTURE,
    Decision,
    Frame,
    MemoryReading,
    Observation,
    Pose2D,
    Status,
    Task,
)
from spatial_memory.policy.scripted import ScriptedPolicy, ScriptedPolicyConfig
from spatial_memory.sim.goal_follower import GoalFollower, GoalFollowerConfig
from spatial_memory.sim.live import LiveSimConfig
from spatial_memory.sim.queries import QuerySample

log = logging.getLogger(__name__)

METHODS = ("none", "gru", "keyframes", "kinaema", "refined", "oracle")
_SERVICE_BACKEND = {"keyframes": "keyframes", "kinaema": "kinaema", "refined": "refined"}


@dataclass(frozen=True)
class MemNavConfig:
    """One Mem-Nav episode: world, tour length, pictures, budgets and the memory it runs."""

    preset: str = "house"
    seed: int = 2000
    explore_steps: int = 200  # T: memory steps of the tour before the first picture
    seen_goals: int = 4
    unseen_goals: int = 1
    budget_s: float = 90.0  # sim time per picture
    success_m: float = 1.0
    min_goal_distance_m: float = 2.0  # pictures taken closer to the robot than this are not drawn
    policy_rate_hz: float = 1.0
    update_rate_hz: float = 5.0  # memory_node's
    recent_frames: int = 8
    engine: EngineConfig = field(default_factory=EngineConfig)  # the Kinaema checkpoint (and its encoder)
    gru_checkpoint: str = "models/baselines/gru_house64.pt"
    refine: RefineConfig = field(default_factory=RefineConfig)
    sim: LiveSimConfig = field(default_factory=LiveSimConfig)
    policy: ScriptedPolicyConfig = field(default_factory=ScriptedPolicyConfig)
    follower: GoalFollowerConfig = field(default_factory=GoalFollowerConfig)

    def __post_init__(self) -> None:
        for name in ("explore_steps", "recent_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"mem-nav {name} must be a positive integer, got {v!r}")
        for name in ("seen_goals", "unseen_goals"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"mem-nav {name} must be a non-negative integer, got {v!r}")
        if self.seen_goals + self.unseen_goals < 1:
            raise ConfigError("mem-nav needs at least one picture (seen_goals + unseen_goals >= 1)")
        for name in ("budget_s", "success_m", "policy_rate_hz", "update_rate_hz"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ConfigError(f"mem-nav {name} must be a positive finite number, got {v!r}")


@dataclass(frozen=True)
class GoalResult:
    """How one picture went."""

    method: str
    preset: str
    seed: int
    explore_steps: int
    goal: int  # index of the picture in the episode
    seen: bool
    status: str
    reason: str
    success: bool  # seen: arrived within success_m; unseen: said "not seen"
    spl: float  # seen pictures only (NaN for unseen)
    final_distance_m: float  # head camera to the picture's camera when the task ended
    shortest_m: float
    travelled_m: float
    time_s: float  # sim time spent on the picture
    decide_ms: float  # the policy's decision time, median over the picture's ticks
    ask_ms: float  # the memory's answer time, median

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def planar_pose(T: np.ndarray) -> Pose2D:  # noqa: N803 - the project's pose naming
    """(x, y, yaw) of a 4x4 pose: its position and the heading of its x axis."""
    return Pose2D(float(T[0, 3]), float(T[1, 3]), float(math.atan2(T[1, 0], T[0, 0])))


def reading_from_answer(answer: MemoryAnswer, stamp_ns: int, odom_base: Pose2D | None) -> MemoryReading:
    """A policy's view of a memory answer about the goal picture."""
    return MemoryReading(
        picture=GOAL_PICTURE,
        stamp_ns=stamp_ns,
        pose=Pose2D(answer.x, answer.y, answer.yaw),
        sigma_m=answer.sigma_m,
        seen_probability=answer.seen_probability,
        confidence=answer.confidence,
        backend=answer.backend,
        inliers=answer.inliers,
        odom_base=odom_base,
    )


class MemNavEpisode:
    """One world: the tour (one for every method), then each method's trials, each from where the tour
    ended (see the module docstring). Every memory the methods need runs through the tour together:
    memory_node's service (Kinaema, with keyframe retrieval and refinement when asked for) and the GRU's."""

    def __init__(self, config: MemNavConfig, methods: str | Sequence[str]) -> None:
        methods = (methods,) if isinstance(methods, str) else tuple(methods)
        unknown = sorted(set(methods) - set(METHODS))
        if unknown or not methods:
            raise ConfigError(f"unknown mem-nav methods {unknown or methods}; known: {list(METHODS)}")
        self.config = cfg = config
        self.methods = methods
        self.method = methods[0]  # the one `go_to` runs unless told otherwise
        engine = dataclasses.replace(cfg.engine, threads=cfg.engine.threads or 1)
        service = MemoryService.from_config(
            engine,
            serve_keyframes="keyframes" in methods,
            refine=cfg.refine if "refined" in methods else None,
        )
        self.gru: MemoryService | None = None
        if "gru" in methods:
            gru = dataclasses.replace(engine, backend="gru", checkpoint=cfg.gru_checkpoint)
            self.gru = MemoryService.from_config(gru)
        run_cfg = LiveRunConfig(
            scenario="tour",
            preset=cfg.preset,
            seed=cfg.seed,
            steps=cfg.explore_steps,
            update_rate_hz=cfg.update_rate_hz,
            engine=engine,
            sim=cfg.sim,
        )
        self.run = LiveMemoryRun(run_cfg, service=service)
        self.sim = self.run.sim
        self.follower = GoalFollower(self.run.grid, cfg.follower)
        self._frame_id = 0
        self._recent: list[Frame] = []
        self._start: tuple[Any, Any, Any] | None = None  # where the tour ended (see back_to_start)
        self._trials = 0
        self._searching_since_ns: int | None = None  # when the trial in progress began
        self.memory: MemoryService = self.run.service  # the memory of the method in `go_to`
        self.backend = ""
        self.policy = ScriptedPolicy(cfg.policy)
        self.reading: MemoryReading | None = None  # the memory's latest answer about the current picture
        self.decision: Decision | None = None  # the policy's latest decision
        # Hooks for a caller that watches (the demo draws frames): every frame the memory takes on the
        # tour, and every one it takes while going to a picture.
        self.on_tour_frame: Callable[[Any, Any], None] | None = None
        self.on_goal_frame: Callable[[Any, Any, QuerySample], None] | None = None

    # ------------------------------------------------------------------------------------------ phases
    def tour(self) -> list[QuerySample]:
        """Drive the tour for T memory steps, feeding the memory; then draw the pictures (seeded: every
        method of a world gets the same ones)."""
        for tick, frame in self.run.taken_frames():
            self.run.feed(tick, frame)
            if self.gru is not None:
                self.gru.update(frame.rgb, T_world_base=tick.odometry.T_odom_base, stamp_ns=tick.stamp_ns)
            self.run.sampler.observe(self.run.frames_fed - 1, frame.T_world_cam, frame.depth, frame.K)
            if self.on_tour_frame is not None:
                self.on_tour_frame(tick, frame)
        memories = (self.run.service.snapshot(), None if self.gru is None else self.gru.snapshot())
        self._start = (self.sim.sim.pose2d, self.sim.stamp_ns, copy.deepcopy(self.sim.odometry), memories)
        return self._draw_goals(self.run.frames_fed - 1)

    def back_to_start(self) -> None:
        """Put the robot, the clock and the memory back where the tour ended: every picture starts from
        there (the robot carried back, sim time, odometry and every memory backend restored), so every
        method gets the same trials."""
        (x, y, yaw), stamp_ns, odometry, (memory, gru) = self._start
        # the clock goes back too: the memory's answers age with time (a refined answer's sigma grows with
        # its view's age), so a later trial must not see the tour's views as older than the first did
        self.sim.sim.reset(x, y, yaw, q=self.sim.sim.q, stamp_ns=stamp_ns)
        self.sim.stop()
        self.sim.odometry = copy.deepcopy(odometry)
        self.run.service.restore(memory)
        if self.gru is not None:
            self.gru.restore(gru)

    def _draw_goals(self, step: int) -> list[QuerySample]:
        cfg = self.config
        want = {True: cfg.seen_goals, False: cfg.unseen_goals}
        goals: list[QuerySample] = []
        T_world_base = self.sim.sim.ground_truth().T_world_base  # noqa: N806
        for _ in range(40 * (cfg.seen_goals + cfg.unseen_goals)):
            if not any(want.values()):
                break
            sample = self.run.sampler.sample(step, T_world_base)
            if sample is None or want[sample.query.seen] <= 0:
                continue
            if float(np.hypot(*sample.query.T_base_query[:2, 3])) >= cfg.min_goal_distance_m:
                want[sample.query.seen] -= 1
                goals.append(sample)
        if any(want.values()):
            log.warning("mem-nav seed %d: only %d pictures could be drawn", cfg.seed, len(goals))
        return goals

    def go_to(self, index: int, goal: QuerySample, method: str | None = None) -> GoalResult:
        """Run `method`'s policy (default: the first method) on one picture until it ends the task or the
        budget runs out, starting where the tour ended (the first trial after the tour starts there)."""
        cfg, sim = self.config, self.sim
        self.method = method or self.methods[0]
        if self.method not in self.methods:
            raise ConfigError(f"method {self.method!r} was not prepared: this episode runs {self.methods}")
        if self._trials > 0:
            self.back_to_start()
        self._trials += 1
        self.memory = self.gru if self.method == "gru" else self.run.service
        self.backend = _SERVICE_BACKEND.get(self.method, self.memory.backend)
        use_memory = self.method != "none"
        self.policy = ScriptedPolicy(
            dataclasses.replace(cfg.policy, use_memory=use_memory, budget_s=cfg.budget_s)
        )
        self.follower.clear()
        self.reading, self.decision = None, None
        task = Task(goal_image=goal.query.rgb, name=f"picture {index}")
        start_xy = np.array(sim.sim.pose2d[:2])
        shortest = self._shortest(start_xy, goal.T_world_query)
        started_ns = self._searching_since_ns = sim.stamp_ns  # what the robot sees from now on is its search
        policy_period_ns = round(1e9 / cfg.policy_rate_hz)
        next_policy_ns = started_ns
        memory_period_ns = 0.95e9 / cfg.update_rate_hz
        last_memory_ns: int | None = None
        travelled, prev_xy = 0.0, start_xy.copy()
        decision = Decision(stamp_ns=started_ns)
        decide_ms: list[float] = []
        ask_ms: list[float] = []
        head_xy = start_xy
        deadline_ns = started_ns + round((cfg.budget_s + 5.0) * 1e9)
        while sim.stamp_ns < deadline_ns:
            pose = sim.sim.pose2d
            cmd = self.follower.command(pose, sim.stamp_ns)
            if cmd.v or cmd.omega:
                sim.command_velocity(cmd.v, cmd.omega)
            else:
                sim.stop()
            tick = sim.tick()
            xy = np.array(sim.sim.pose2d[:2])
            travelled += float(np.linalg.norm(xy - prev_xy))
            prev_xy = xy
            frame = tick.camera("camera")
            if frame is None:
                continue
            head_xy = frame.T_world_cam[:2, 3]
            if last_memory_ns is None or tick.stamp_ns - last_memory_ns >= memory_period_ns:
                last_memory_ns = tick.stamp_ns
                if self.method == "gru":
                    self.memory.update(
                        frame.rgb, T_world_base=tick.odometry.T_odom_base, stamp_ns=tick.stamp_ns
                    )
                elif self.method != "none":
                    self.run.feed(tick, frame)
                if self.on_goal_frame is not None:
                    self.on_goal_frame(tick, frame, goal)
            if tick.stamp_ns < next_policy_ns:
                continue
            next_policy_ns = tick.stamp_ns + policy_period_ns
            decision, d_ms, a_ms = self._policy_tick(tick, frame, task, goal)
            decide_ms.append(d_ms)
            if a_ms is not None:
                ask_ms.append(a_ms)
            if decision.status.done:
                break
            self._act(decision, tick)
        sim.stop()
        final = float(np.linalg.norm(head_xy - goal.T_world_query[:2, 3]))
        seen = goal.query.seen
        if decision.status is Status.RUNNING:
            decision = dataclasses.replace(decision, status=Status.GAVE_UP, reason="out of time (harness)")
        if seen:
            success = decision.status is Status.ARRIVED and final <= cfg.success_m
            spl = (
                float(success) * shortest / max(travelled, shortest) if math.isfinite(shortest) else math.nan
            )
        else:
            success, spl = decision.status is Status.NOT_SEEN, math.nan
        return GoalResult(
            method=self.method,
            preset=cfg.preset,
            seed=cfg.seed,
            explore_steps=cfg.explore_steps,
            goal=index,
            seen=seen,
            status=decision.status.value,
            reason=decision.reason,
            success=bool(success),
            spl=spl,
            final_distance_m=final,
            shortest_m=shortest,
            travelled_m=travelled,
            time_s=(sim.stamp_ns - started_ns) * 1e-9,
            decide_ms=float(np.median(decide_ms)) if decide_ms else math.nan,
            ask_ms=float(np.median(ask_ms)) if ask_ms else math.nan,
        )

    # ------------------------------------------------------------------------------------------ one tick
    def _policy_tick(
        self, tick: Any, frame: Any, task: Task, goal: QuerySample
    ) -> tuple[Decision, float, float | None]:
        self._frame_id += 1
        self._recent = (self._recent + [Frame(self._frame_id, tick.stamp_ns, frame.rgb)])[
            -self.config.recent_frames :
        ]
        odom = planar_pose(tick.odometry.T_odom_base)
        answers: dict[str, MemoryReading] = {}
        ask_ms = None
        if self.method != "none":
            t0 = time.perf_counter()
            reading = self._ask(tick, task, goal, odom)
            ask_ms = (time.perf_counter() - t0) * 1e3
            if reading is not None:
                answers[GOAL_PICTURE] = reading
                self.reading = reading
        obs = Observation(
            stamp_ns=tick.stamp_ns, task=task, recent=tuple(self._recent), answers=answers, odom_base=odom
        )
        t0 = time.perf_counter()
        decision = self.decision = self.policy.decide(obs)
        return decision, (time.perf_counter() - t0) * 1e3, ask_ms

    def _ask(self, tick: Any, task: Task, goal: QuerySample, odom: Pose2D) -> MemoryReading | None:
        if self.method == "oracle":
            T_base_query = np.linalg.inv(tick.T_world_base) @ goal.T_world_query  # noqa: N806
            x, y, yaw = planar_target(T_base_query)
            seen = goal.query.seen
            return MemoryReading(
                GOAL_PICTURE, tick.stamp_ns, Pose2D(x, y, yaw), 0.0, float(seen), 1.0, "oracle"
            )
        try:
            answer = self.memory.query(
                task.goal_image, self.backend, searching_since_ns=self._searching_since_ns
            )
        except InvalidInputError as exc:  # a picture the memory refuses: no answer this tick
            log.debug("mem-nav: the memory refused the picture: %s", exc)
            return None
        return reading_from_answer(answer, tick.stamp_ns, odom)

    def _act(self, decision: Decision, tick: Any) -> None:
        """Send the decision's goal to the motion layer (world frame, through the true base pose)."""
        if decision.goal is None:
            self.follower.clear()
            return
        T_wb = tick.T_world_base  # noqa: N806
        base = planar_pose(T_wb)
        g = base.compose(decision.goal.pose)
        robot = np.array([base.x, base.y])
        yaw = None if decision.explore else g.yaw  # face the pictured heading on arrival
        self.follower.set_goal((g.x, g.y), tick.stamp_ns, robot, explore=decision.explore, yaw=yaw)

    def _shortest(self, start_xy: np.ndarray, T_world_goal: np.ndarray) -> float:  # noqa: N803
        """A* path length from the start to the picture's camera (both snapped to reachable free cells)."""
        path = self.follower.plan(start_xy, T_world_goal[:2, 3])
        return math.nan if path is None else float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))

    def close(self) -> None:
        self.run.close()


def run_episode(config: MemNavConfig, methods: str | Sequence[str]) -> list[GoalResult]:
    """One tour, then every method on every picture, each from where the tour ended; results per trial."""
    episode = MemNavEpisode(config, methods)
    try:
        goals = episode.tour()
        return [episode.go_to(i, g, m) for m in episode.methods for i, g in enumerate(goals)]
    finally:
        episode.close()


# ---------------------------------------------------------------------------------------------- summary
def summarise(results: Sequence[GoalResult]) -> dict[str, dict[str, float]]:
    """Per method: success rate and SPL on seen pictures, "not seen" said on unseen ones, in percent."""
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r.method for r in results):
        rs = [r for r in results if r.method == method]
        seen = [r for r in rs if r.seen]
        unseen = [r for r in rs if not r.seen]
        out[method] = {
            "seen": len(seen),
            "sr_pct": 100.0 * np.mean([r.success for r in seen]) if seen else math.nan,
            "spl_pct": 100.0 * np.nanmean([r.spl for r in seen]) if seen else math.nan,
            "unseen": len(unseen),
            "not_seen_pct": 100.0 * np.mean([r.success for r in unseen]) if unseen else math.nan,
            "median_final_m": float(np.median([r.final_distance_m for r in seen])) if seen else math.nan,
            "decide_ms": float(np.nanmedian([r.decide_ms for r in rs])),
            "ask_ms": float(np.nanmedian([r.ask_ms for r in rs]))
            if any(np.isfinite(r.ask_ms) for r in rs)
            else math.nan,
        }
    return out


def table(summary: dict[str, dict[str, float]]) -> str:
    """A markdown table of `summarise`'s output."""

    def f(v: float, fmt: str = "{:.1f}") -> str:
        return "-" if not math.isfinite(v) else fmt.format(v)

    head = (
        "| method | seen pictures | SR % | SPL % | median final distance (m) | unseen pictures "
        "| said not seen % | decide ms | memory ms |"
    )
    lines = [head, "|" + "---|" * 9]
    for method, s in summary.items():
        cells = [
            method,
            str(s["seen"]),
            f(s["sr_pct"]),
            f(s["spl_pct"]),
            f(s["median_final_m"], "{:.2f}"),
            str(s["unseen"]),
            f(s["not_seen_pct"]),
            f(s["decide_ms"], "{:.2f}"),
            f(s["ask_ms"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_mem_nav(
    base: MemNavConfig,
    seeds: Sequence[int],
    methods: Sequence[str],
    out: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every method on every world seed (same tours, same pictures); the summary table, and JSON + markdown
    written to `out` (a .json path; the table goes beside it as .md) when given."""
    from pathlib import Path

    from tqdm import tqdm

    from spatial_memory.memory.evaluate import machine_info

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown mem-nav methods {unknown}; known: {list(METHODS)}")
    results: list[GoalResult] = []
    started = time.perf_counter()
    for seed in tqdm(seeds, desc="mem-nav worlds", disable=not progress):
        results += run_episode(dataclasses.replace(base, seed=seed), methods)
    summary = summarise(results)
    report = {
        "preset": base.preset,
        "explore_steps": base.explore_steps,
        "seeds": list(seeds),
        "methods": list(methods),
        "seen_goals": base.seen_goals,
        "unseen_goals": base.unseen_goals,
        "budget_s": base.budget_s,
        "success_m": base.success_m,
        "checkpoint": base.engine.checkpoint,
        "gru_checkpoint": base.gru_checkpoint,
        "summary": summary,
        "table": table(summary),
        "results": [r.to_dict() for r in results],
        "wall_s": time.perf_counter() - started,
        "machine": machine_info(),
    }
    if out is not None:
        import json

        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=float))
        lines = [
            f"# Mem-Nav: {base.preset}, T = {base.explore_steps}, world seeds {list(seeds)}",
            "",
            f"{base.seen_goals} seen + {base.unseen_goals} never-seen pictures per world, "
            f"{base.budget_s:g} s each; success = arrival declared within {base.success_m:g} m of the "
            "picture's camera.",
            "",
            report["table"],
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
            f"Wall time: {report['wall_s']:.0f} s",
        ]
        path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return report

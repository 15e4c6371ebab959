"""Live Mem-RPE: the memory scored as it runs for users, on the live simulation behind `sim_node`.

The offline benchmark (`memory.evaluate`) replays recorded 64x64 episodes driven by the dataset tour. Users
meet something else: `sim_node`'s 160x120 head camera at 15 Hz, cropped to the model's square, fed by
`memory_node` at its update rate with the base pose of the wheel odometry, while the robot is teleoperated,
stands still, spins, comes back after a long absence or is carried somewhere else. This module runs exactly
that in one process, with ground truth:

- `LiveSim` (what `sim_node` runs) ticks at its rate; a named, seeded `Scenario` commands the velocity each
  tick, as a teleoperator or planner would through `cmd_vel`;
- a `MemoryEngine` built from memory_node's `EngineConfig` takes every head-camera frame that is due at
  `update_rate_hz` (by stamp, with memory_node's 5 % slack), with `T_odom_base` at that stamp, as memory_node
  does with TF;
- a `QuerySampler` sees the frames the memory took (so "seen" means seen by the memory) and, every
  `query_every` memory steps, renders a query picture of a seen place (near an earlier view) or of a place
  never seen, at the live camera's size, with its true pose relative to the robot now;
- each query is answered by `MemoryEngine.query` right then, and again with another query's picture (the
  picture control), and a black and a uniform grey picture are asked too (a picture without information must
  not be answered with confidence).

Scores (`LiveReport`): the Mem-RPE columns of `memory.metrics` plus calibration (how often the reported
1-sigma covers the true position error; how accuracy rises with confidence), the AUROC of the seen
probability between seen and unseen queries, the picture control's median answer shift, the blank pictures'
confidence, and after a kidnap the share of answers given with confidence that are more than 2 m off.

Scenarios (`SCENARIOS`), each deterministic from its seed. The tour-driven ones (all but teleop) put the
robot at the tour's start pose first, as the recorded episodes start; teleop starts where the sim does (the
centre of room 0). The sim's arm is stowed, as in the recorded tours (`LiveSimConfig.arm_start`):
- `tour`: the dataset's world tour (`sim.world_tour`): every room, look-arounds, revisits;
- `teleop`: random velocity segments (forward, reverse, turning) with stops, turning away from obstacles;
- `standstill`: the tour for 20 s, then 60 s standing still, then the tour again;
- `spin`: turns in place (one to two full turns, either way) between short stretches of the tour;
- `revisit`: the tour, but seen queries are drawn only from views at least T/2 steps old (places left long
  ago: 20 s at T = 200, 80 s at T = 800 at 5 Hz);
- `kidnap`: the tour, then at half time the robot is carried to another room (the odometry does not see it)
  and tours on from there.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import invert
from spatial_memory.memory.engine import EngineConfig, MemoryAnswer, MemoryEngine
from spatial_memory.memory.metrics import MemRpe, mem_rpe
from spatial_memory.memory.poses import planar_target
from spatial_memory.memory.refine import RefineConfig
from spatial_memory.memory.service import KEYFRAMES, REFINED, MemoryService
from spatial_memory.sim.exploration import Script
from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig
from spatial_memory.sim.planning import sample_free_point
from spatial_memory.sim.queries import QueryConfig, QuerySampler
from spatial_memory.sim.world_tour import WorldTour

log = logging.getLogger(__name__)

RATE_SLACK = 0.95  # memory_node accepts a frame 5 % early (ros/memory_node.py)
STANDSTILL_S = 60.0  # the standstill scenario stands still this long, half-way through its T steps
CONFIDENT_SIGMA_M = 1.0  # an answer "given with confidence": sigma below this and seen probability >= 0.5
WRONG_M = 2.0  # ... and more than this far off counts as confidently wrong


# ---------------------------------------------------------------------------------------------- scenarios
Command = tuple[float, float]  # (v m/s, omega rad/s)


class Driver:
    """Commands the base each tick from the true pose (as a person with a joystick, or a planner, would)."""

    def command(self, t_s: float, pose: tuple[float, float, float], collided: bool) -> Command:
        raise NotImplementedError

    def kidnap_at_s(self) -> float | None:
        """Sim time at which the robot is carried elsewhere, or None."""
        return None

    def start_pose(self) -> tuple[float, float, float] | None:
        """Where the robot is put before the run (world x, y, yaw), or None: where the sim starts it."""
        return None


class TourDriver(Driver):
    """The dataset's world tour (A* paths, pure pursuit, look-arounds, revisits), arm left where it is."""

    def __init__(self, sim: LiveSim, seed: int) -> None:
        self.tour = WorldTour(sim.world, seed=seed)
        self.script = Script(self.tour)

    def command(self, t_s: float, pose: tuple[float, float, float], collided: bool) -> Command:
        cmd = self.script.command(pose, t_s, collided)
        return (0.0, 0.0) if cmd is None else (cmd.v, cmd.omega)

    def start_pose(self) -> tuple[float, float, float]:
        """The tour's own start (the clearest spot of its start room, facing open floor), as the recorded
        episodes start: from anywhere else the tour first drives there, a different and longer path."""
        return self.tour.start_pose()


class TeleopDriver(Driver):
    """Random joystick segments: 1-4 s of (v, omega) or a 1-5 s stop; after a bump, back off and turn."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.until_s, self.cmd = 0.0, (0.0, 0.0)

    def command(self, t_s: float, pose: tuple[float, float, float], collided: bool) -> Command:
        rng = self.rng
        if collided:  # a person backs off and turns away
            self.until_s, self.cmd = t_s + 1.5, (-0.15, float(rng.choice([-0.8, 0.8])))
        elif t_s >= self.until_s:
            if rng.random() < 0.25:
                self.until_s, self.cmd = t_s + rng.uniform(1.0, 5.0), (0.0, 0.0)
            else:
                v = float(rng.choice([rng.uniform(0.1, 0.4), rng.uniform(-0.15, 0.0)], p=[0.8, 0.2]))
                self.until_s, self.cmd = t_s + rng.uniform(1.0, 4.0), (v, rng.uniform(-0.8, 0.8))
        return self.cmd


class StandstillDriver(TourDriver):
    """The tour, interrupted once by a long standstill (the run gets the standstill's steps on top of T)."""

    def __init__(self, sim: LiveSim, seed: int, start_s: float, duration_s: float = STANDSTILL_S) -> None:
        super().__init__(sim, seed)
        self.start_s, self.end_s = start_s, start_s + duration_s

    def command(self, t_s: float, pose: tuple[float, float, float], collided: bool) -> Command:
        if self.start_s <= t_s < self.end_s:
            return (0.0, 0.0)
        return super().command(
            t_s - (self.end_s - self.start_s if t_s >= self.end_s else 0.0), pose, collided
        )


class SpinDriver(TourDriver):
    """Turns in place (1-2 full turns at 0.6 rad/s, either way) between 10 s stretches of the tour."""

    OMEGA = 0.6

    def __init__(self, sim: LiveSim, seed: int) -> None:
        super().__init__(sim, seed)
        self.rng = np.random.default_rng(seed + 1)
        self.spin_until, self.tour_until, self.sign = 0.0, 0.0, 1.0
        self._new_spin(0.0)

    def _new_spin(self, t_s: float) -> None:
        turns = self.rng.uniform(1.0, 2.0)
        self.spin_until = t_s + turns * 2 * math.pi / self.OMEGA
        self.tour_until = self.spin_until + 10.0
        self.sign = float(self.rng.choice([-1.0, 1.0]))

    def command(self, t_s: float, pose: tuple[float, float, float], collided: bool) -> Command:
        if t_s >= self.tour_until:
            self._new_spin(t_s)
        if t_s < self.spin_until:
            return (0.0, self.sign * self.OMEGA)
        return super().command(t_s, pose, collided)


class KidnapDriver(TourDriver):
    """The tour; at `at_s` the robot is carried to another room (see `LiveMemoryRun`)."""

    def __init__(self, sim: LiveSim, seed: int, at_s: float) -> None:
        super().__init__(sim, seed)
        self.at_s = at_s
        self.seed = seed

    def kidnap_at_s(self) -> float | None:
        return self.at_s

    def after_kidnap(self, sim: LiveSim) -> None:
        """A fresh tour from the new place (the old one's plan no longer fits where the robot is)."""
        self.tour = WorldTour(sim.world, seed=self.seed + 7)
        self.script = Script(self.tour)


@dataclass(frozen=True)
class Scenario:
    """A named motion pattern: how the base is driven, and which queries are asked."""

    name: str
    description: str
    make_driver: Callable[[LiveSim, int, float], Driver]  # (sim, seed, episode length in s) -> driver
    min_query_age_s: float = 4.0  # seen queries start from views at least this old (offline: 20 steps)...
    min_query_age_fraction: float = 0.0  # ...and at least this fraction of the run's T steps old
    extra_s: float = 0.0  # run this much longer than T steps (a standstill is not part of the tour's T)

    def min_age_steps(self, steps: int, rate_hz: float) -> int:
        """How old (memory steps) a view must be for a seen query to start from it, in a run of T steps."""
        return max(1, round(self.min_query_age_s * rate_hz), round(self.min_query_age_fraction * steps))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("tour", "the dataset's world tour", lambda sim, seed, T: TourDriver(sim, seed)),
        Scenario("teleop", "random velocity segments with stops", lambda sim, seed, T: TeleopDriver(seed)),
        Scenario(
            "standstill",
            "tour T/2 steps, stand still 60 s (300 more steps at 5 Hz), tour T/2 steps",
            lambda sim, seed, T: StandstillDriver(sim, seed, start_s=T / 2),
            extra_s=STANDSTILL_S,
        ),
        Scenario(
            "spin", "turns in place between stretches of the tour", lambda sim, seed, T: SpinDriver(sim, seed)
        ),
        Scenario(
            "revisit",
            "the tour; seen queries only of views at least T/2 steps old (places left long ago)",
            lambda sim, seed, T: TourDriver(sim, seed),
            min_query_age_fraction=0.5,
        ),
        Scenario(
            "kidnap",
            "the tour; carried to another room at half time",
            lambda sim, seed, T: KidnapDriver(sim, seed, at_s=T / 2),
        ),
    )
}


# ---------------------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class LiveRunConfig:
    """One live run: world, scenario, length in memory steps, and the memory_node settings it imitates."""

    scenario: str = "tour"
    preset: str = "house"
    seed: int = 1000
    steps: int = 200  # memory updates (T)
    update_rate_hz: float = 5.0  # memory_node's update_rate_hz
    query_every: int = (
        5  # a query every N memory steps (as the offline datasets: `DatasetSpec.queries_every`)
    )
    engine: EngineConfig = field(default_factory=EngineConfig)
    sim: LiveSimConfig = field(
        default_factory=LiveSimConfig
    )  # world preset/seed are set from the fields above

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario {self.scenario!r}; known: {sorted(SCENARIOS)}")
        for name in ("steps", "query_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"LiveRunConfig.{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.update_rate_hz <= self.sim.robot.head_camera.rate_hz:
            raise ConfigError(
                f"update_rate_hz {self.update_rate_hz!r} must be > 0 and at most the camera's "
                f"{self.sim.robot.head_camera.rate_hz:g} Hz"
            )


@dataclass
class LiveAnswers:
    """Every query of a run, its truth and the memory's answers (arrays in query order)."""

    target: list[np.ndarray] = field(default_factory=list)  # (x, y, yaw) truth
    seen: list[bool] = field(default_factory=list)
    pred: list[np.ndarray] = field(default_factory=list)
    sigma: list[float] = field(default_factory=list)
    seen_prob: list[float] = field(default_factory=list)
    pred_swapped: list[np.ndarray] = field(default_factory=list)  # NaN where no other picture existed yet
    true_shift: list[float] = field(default_factory=list)  # how far apart the two pictures' places are (m)
    swapped_seen: list[bool] = field(default_factory=list)  # the other picture shows a place seen before
    after_kidnap: list[bool] = field(default_factory=list)
    refused: list[bool] = field(default_factory=list)  # real query pictures the engine refused
    blank_confidence: list[float] = field(default_factory=list)  # black and grey pictures
    blank_seen_prob: list[float] = field(default_factory=list)
    blank_refused: list[bool] = field(default_factory=list)  # refused count as confidence 0
    real_confidence: list[float] = field(default_factory=list)
    query_s: list[float] = field(default_factory=list)  # wall time of each real query's answer
    refined: list[bool] = field(default_factory=list)  # answered with a verified, refined pose
    lost_resets: list[int] = field(default_factory=list)  # per live run: the lost check's memory resets

    def extend(self, other: LiveAnswers) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))


class Reply(NamedTuple):
    """One answer as the scorers keep it: planar (x, y, yaw), sigma (m), seen probability, confidence."""

    pred: np.ndarray
    sigma: float
    seen_prob: float
    confidence: float
    refined: bool = False  # a verified, refined answer (backend 'refined')


def engine_reply(engine: MemoryEngine | MemoryService, image: np.ndarray, backend: str = "") -> Reply | None:
    """The answer of an engine, or of a service's `backend`; None when it refuses the picture (nothing to
    recognise in it)."""
    try:
        a: MemoryAnswer = engine.query(image, backend) if backend else engine.query(image)
    except InvalidInputError:
        return None
    pred = np.array([a.x, a.y, a.yaw])
    return Reply(pred, a.sigma_m, a.seen_probability, a.confidence, a.backend == REFINED)


def ask_query(
    out: LiveAnswers,
    ask: Callable[[np.ndarray], Reply | None],
    query: Any,
    pictures: list[tuple[np.ndarray, np.ndarray | None, bool]],
    after_kidnap: bool = False,
    reply: Reply | None | str = "ask",
    world_xy: np.ndarray | None = None,
) -> None:
    """Ask about one query (`sim.episode.Query`: picture, true pose, seen label) through `ask`, then with an
    earlier query's picture (the picture control) and with a black and a grey picture; record it all in
    `out` and keep the picture for later controls. A refusal (None) of the query's picture is a miss with
    infinite sigma; of a blank picture, confidence 0. `reply`: the answer to the query's picture when the
    caller asked already (it needed the answer's stamp to know the truth). `world_xy`: where the query's
    camera stands in the world, so the picture control knows how far apart the two pictures' places are
    (`pictures` keeps (picture, world_xy, seen) of each query). Both harnesses score here."""
    started = time.perf_counter()
    if isinstance(reply, str):
        reply = ask(query.rgb)
    out.query_s.append(time.perf_counter() - started)
    out.target.append(planar_target(query.T_base_query))
    out.seen.append(bool(query.seen))
    out.refused.append(reply is None)
    out.refined.append(reply is not None and reply.refined)
    if reply is None:  # refused (a picture of a bare wall): "I cannot tell", scored as a miss
        reply = Reply(np.full(3, np.nan), math.inf, 0.0, 0.0)
    out.pred.append(reply.pred)
    out.sigma.append(reply.sigma)
    out.seen_prob.append(reply.seen_prob)
    out.real_confidence.append(reply.confidence)
    other, other_xy, other_seen = pictures[len(pictures) // 2] if pictures else (None, None, False)
    swapped = ask(other) if other is not None else None
    out.pred_swapped.append(swapped.pred if swapped is not None else np.full(3, np.nan))
    known = world_xy is not None and other_xy is not None
    out.true_shift.append(float(np.hypot(*(np.asarray(world_xy) - other_xy)[:2])) if known else math.nan)
    out.swapped_seen.append(bool(other_seen))
    h, w = query.rgb.shape[:2]
    for blank in (np.zeros((h, w, 3), np.uint8), np.full((h, w, 3), 128, np.uint8)):
        b = ask(blank)
        out.blank_refused.append(b is None)
        out.blank_confidence.append(0.0 if b is None else b.confidence)
        out.blank_seen_prob.append(0.0 if b is None else b.seen_prob)
    out.after_kidnap.append(after_kidnap)
    pictures.append((query.rgb, None if world_xy is None else np.asarray(world_xy, float)[:2], query.seen))


def odom_camera_pose(tick: Any, frame: Any) -> np.ndarray:
    """The camera's pose in the odometry frame, as memory_node gets it from TF: the odometry's base pose
    times the camera's pose on the base (from the truth, as the robot's description gives it)."""
    return tick.odometry.T_odom_base @ invert(tick.T_world_base) @ frame.T_world_cam


def kidnap_spot(
    sim: LiveSim, grid: Any, rng: np.random.Generator, from_xy: tuple[float, float]
) -> tuple[float, float, float] | None:
    """Where a kidnap carries the robot standing at `from_xy`: a random free spot of the world's `grid` at
    least 3 m away, facing a random way; None when 200 draws found none. Both harnesses draw it here (the
    ROS scorer with its own copy of the world), so a seed kidnaps the robot to the same place."""
    for _ in range(200):
        x, y = sample_free_point(grid, rng)
        if math.hypot(x - from_xy[0], y - from_xy[1]) >= 3.0 and sim.sim.pose_is_free(x, y, 0.0):
            return float(x), float(y), float(rng.uniform(-math.pi, math.pi))
    return None


class LiveMemoryRun:
    """One scenario on one world: drive, feed the memory as memory_node does, ask every backend and record.

    The memory is a `MemoryService` (memory_node's): each frame it takes goes to `update` with the odometry
    pose and, when the service keeps views, to `add_view` with its depth and the camera's pose in the odometry
    frame (odometry base pose times the camera's pose on the base, as memory_node gets it from TF). Every
    query is put to each backend in `backends` (default: the service's default), so the backends answer the
    same pictures of the same run; `answers[backend]` holds them.
    """

    def __init__(
        self,
        config: LiveRunConfig,
        engine: MemoryEngine | None = None,
        service: MemoryService | None = None,
        backends: Sequence[str] = (),
    ) -> None:
        self.config = cfg = config
        world = dataclasses.replace(cfg.sim.world, preset=cfg.preset, seed=cfg.seed)
        self.sim = LiveSim(dataclasses.replace(cfg.sim, world=world))
        if service is None:
            service = MemoryService(engine if engine is not None else MemoryEngine(cfg.engine))
        self.service = service
        self.engine = service.engine
        self.backends = tuple(backends) or (service.backend,)
        missing = sorted(set(self.backends) - set(service.backends))
        if missing:
            raise ConfigError(f"the memory serves {list(service.backends)}, not {missing}")
        service.reset()
        self.answers: dict[str, LiveAnswers] = {}
        scenario = SCENARIOS[cfg.scenario]
        length_s = cfg.steps / cfg.update_rate_hz
        self.driver = scenario.make_driver(self.sim, cfg.seed, length_s)
        start = self.driver.start_pose()
        if start is not None:  # before the first frame: the odometry starts there (it does not see the move)
            self.sim.teleport(*start)
        self.total_steps = cfg.steps + round(scenario.extra_s * cfg.update_rate_hz)
        self.grid = WorldTour(self.sim.world, seed=cfg.seed).grid
        qcfg = QueryConfig(
            every_n_steps=cfg.query_every, min_age_steps=scenario.min_age_steps(cfg.steps, cfg.update_rate_hz)
        )
        self.sampler = QuerySampler(self.sim.sim, self.grid, qcfg, seed=cfg.seed)
        self.rng = np.random.default_rng(cfg.seed + 99)
        self.kidnapped_at_step: int | None = None
        self.wall_s = 0.0
        self.frames_fed = 0  # frames given to the memory in this run

    def taken_frames(self) -> Iterator[tuple[Any, Any]]:
        """Drive the scenario and yield `(tick, frame)` for each head-camera frame memory_node would take
        (its rate, by stamp, with its 5 % slack), until the memory holds the run's steps: the caller feeds
        the memory with each before asking for the next."""
        sim, cfg = self.sim, self.config
        period_ns = RATE_SLACK * 1e9 / cfg.update_rate_hz
        kidnap_s = self.driver.kidnap_at_s()
        last_ns: int | None = None
        while self.frames_fed < self.total_steps:
            t_s = sim.stamp_ns * 1e-9
            if kidnap_s is not None and self.kidnapped_at_step is None and t_s >= kidnap_s:
                self._kidnap()
            v, omega = self.driver.command(t_s, sim.sim.pose2d, sim.sim.collided)
            if v or omega:
                sim.command_velocity(v, omega)
            else:
                sim.stop()
            tick = sim.tick()
            frame = tick.camera("camera")
            if frame is None or (last_ns is not None and tick.stamp_ns - last_ns < period_ns):
                continue
            last_ns = tick.stamp_ns
            yield tick, frame

    def feed(self, tick: Any, frame: Any) -> None:
        """Give one taken frame to the memory as memory_node does: the image with the odometry's base pose,
        then (with a view store) the RGB-D view with the camera's pose in the odometry frame."""
        T_odom_base = tick.odometry.T_odom_base  # noqa: N806 - the project's pose naming
        self.service.update(frame.rgb, T_world_base=T_odom_base, stamp_ns=tick.stamp_ns)
        self.frames_fed += 1
        if self.service.views is not None:
            T_odom_cam = odom_camera_pose(tick, frame)  # noqa: N806
            self.service.add_view(frame.rgb, frame.depth, frame.K, T_odom_cam, tick.stamp_ns)

    def run(self) -> LiveAnswers:
        """Drive the whole scenario; the answers of the first backend (all of them in `self.answers`)."""
        self.answers = {b: LiveAnswers() for b in self.backends}
        pictures: dict[str, list[Any]] = {b: [] for b in self.backends}
        started = time.perf_counter()
        for tick, frame in self.taken_frames():
            self.feed(tick, frame)
            step = self.frames_fed - 1  # the run's step (the memory's own count restarts after a reset)
            self.sampler.observe(step, frame.T_world_cam, frame.depth, frame.K)
            if self.sampler.due(step):
                self._ask(step, tick.T_world_base, pictures)
        self.wall_s = time.perf_counter() - started
        return self.answers[self.backends[0]]

    def _kidnap(self) -> None:
        """Carry the robot to a random free spot at least 3 m away, facing a random way."""
        x0, y0, _ = self.sim.sim.pose2d
        spot = kidnap_spot(self.sim, self.grid, self.rng, (x0, y0))
        if spot is None:
            log.warning("kidnap: no free spot 3 m away was found; the robot stays")
            self.kidnapped_at_step = -1
            return
        self.sim.teleport(*spot)
        self.kidnapped_at_step = self.frames_fed
        if isinstance(self.driver, KidnapDriver):
            self.driver.after_kidnap(self.sim)
        log.info("kidnap at step %d: (%.1f, %.1f) -> (%.1f, %.1f)", self.frames_fed, x0, y0, *spot[:2])

    def _ask(self, step: int, T_world_base: np.ndarray, pictures: dict[str, list[Any]]) -> None:
        sample = self.sampler.sample(step, T_world_base)
        if sample is None:
            return
        kidnapped = self.kidnapped_at_step is not None and self.kidnapped_at_step >= 0
        where = sample.T_world_query[:2, 3]  # the picture control's truth: how far apart two places are
        for backend, out in self.answers.items():
            ask = functools.partial(engine_reply, self.service, backend=backend)
            ask_query(out, ask, sample.query, pictures[backend], kidnapped, world_xy=where)

    def close(self) -> None:
        self.sim.close()


# ---------------------------------------------------------------------------------------------- scoring
def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` separating `positive` from the rest (ties count half); NaN
    when either class is empty. The Mann-Whitney U statistic, written out: no extra dependency."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def detection_at_false_alarm(seen_prob: np.ndarray, seen: np.ndarray, max_false_alarm: float = 0.10) -> float:
    """% of unseen queries flagged 'not seen' by the best threshold on the seen probability that flags at
    most `max_false_alarm` of the seen ones (the issue's operating point); NaN when a class is empty."""
    seen_prob, seen = np.asarray(seen_prob, float), np.asarray(seen, bool)
    if not seen.any() or seen.all():
        return math.nan
    threshold = np.quantile(seen_prob[seen], max_false_alarm, method="lower")  # flag p < threshold
    return float(100.0 * (seen_prob[~seen] < threshold).mean())


@dataclass(frozen=True)
class LiveScores:
    """A row of the live table: Mem-RPE and what the offline table lacks."""

    mem_rpe: MemRpe
    sigma_coverage_pct: float  # seen answers whose position error <= the reported sigma
    seen_auroc: float
    unseen_detected_at_10pct_fa: float
    answer_shift_m: float  # median move of the answer when the picture is another query's
    blank_confidence: float  # mean confidence of black / grey pictures (a refusal counts as 0)
    blank_refused_pct: float  # black / grey pictures refused
    real_confidence: float  # mean confidence of real query pictures
    kidnap_confident_wrong_pct: float  # after a kidnap: answers with confidence that are > 2 m off
    queries: int
    true_shift_m: float = math.nan  # pairs of seen places: median distance between the two places...
    seen_pair_shift_m: float = math.nan  # ...and the median move of the answer for those pairs
    refused_pct: float = math.nan  # real query pictures refused (nothing to recognise: scored as misses)
    refined_pct: float = math.nan  # seen queries answered with a verified, refined pose
    query_ms_median: float = math.nan  # wall time of one answer (live runs)
    query_ms_p95: float = math.nan
    lost_resets: float = math.nan  # memory resets for a kidnap (lost / kidnap checks), all runs together

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "mem_rpe"}
        d = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
        return {"mem_rpe": self.mem_rpe.to_dict(), **d}


def score(answers: LiveAnswers) -> LiveScores:
    """Scores of all the answers of one or more runs."""
    n = len(answers.seen)
    seen = np.array(answers.seen, bool)
    target = np.array(answers.target).reshape(n, 3)
    pred = np.array(answers.pred).reshape(n, 3)
    seen_prob = np.array(answers.seen_prob, float)
    kidnapped = np.array(answers.after_kidnap, bool)
    sigma = np.array(answers.sigma, float)
    err = np.hypot(*(pred[:, :2] - target[:, :2]).T) if n else np.zeros(0)
    nan = math.nan
    ok = seen & ~kidnapped  # a kidnapped robot cannot know where old places are: scored apart
    err = np.where(np.isfinite(err), err, np.inf)  # a refused picture is a miss
    row = mem_rpe(pred[~kidnapped], target[~kidnapped], seen[~kidnapped], seen_prob[~kidnapped])
    swapped = np.array(answers.pred_swapped).reshape(n, 3)
    has_swap = ok & np.isfinite(swapped[:, 0]) & np.isfinite(pred[:, 0])
    shift = np.hypot(*(swapped[has_swap, :2] - pred[has_swap, :2]).T)
    # the control's truth, where the other picture shows a place seen before (else no right answer exists)
    true_shift = np.array(answers.true_shift, float) if len(answers.true_shift) == n else np.full(n, nan)
    pair = np.array(answers.swapped_seen, bool) if len(answers.swapped_seen) == n else np.zeros(n, bool)
    pair &= has_swap & np.isfinite(true_shift)
    seen_pair_shift = np.hypot(*(swapped[pair, :2] - pred[pair, :2]).T)
    true_shift = true_shift[pair]
    confident = (sigma < CONFIDENT_SIGMA_M) & (seen_prob >= 0.5)
    after = kidnapped & seen
    refined_known = len(answers.refined) == n and ok.any()  # offline answers say nothing of refinement
    return LiveScores(
        mem_rpe=row,
        sigma_coverage_pct=float(100 * (err[ok] <= sigma[ok]).mean()) if ok.any() else nan,
        seen_auroc=auroc(seen_prob[~kidnapped], seen[~kidnapped]),
        unseen_detected_at_10pct_fa=detection_at_false_alarm(seen_prob[~kidnapped], seen[~kidnapped]),
        answer_shift_m=float(np.median(shift)) if shift.size else nan,
        true_shift_m=float(np.median(true_shift)) if true_shift.size else nan,
        seen_pair_shift_m=float(np.median(seen_pair_shift)) if seen_pair_shift.size else nan,
        blank_confidence=float(np.mean(answers.blank_confidence)) if answers.blank_confidence else nan,
        blank_refused_pct=float(100 * np.mean(answers.blank_refused)) if answers.blank_refused else nan,
        real_confidence=float(np.mean(answers.real_confidence)) if answers.real_confidence else nan,
        kidnap_confident_wrong_pct=(
            float(100 * (confident[after] & (err[after] > WRONG_M)).mean()) if after.any() else nan
        ),
        queries=n,
        refused_pct=float(100 * np.mean(answers.refused)) if answers.refused else nan,
        refined_pct=float(100 * np.array(answers.refined, bool)[ok].mean()) if refined_known else nan,
        query_ms_median=float(1e3 * np.median(answers.query_s)) if answers.query_s else nan,
        query_ms_p95=float(1e3 * np.percentile(answers.query_s, 95)) if answers.query_s else nan,
        lost_resets=float(sum(answers.lost_resets)) if answers.lost_resets else nan,
    )


def run_scenarios(
    scenarios: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    engine_config: EngineConfig,
    preset: str = "house",
    update_rate_hz: float = 5.0,
    sim_config: LiveSimConfig | None = None,
    progress: Callable[[str], None] | None = None,
    model_overrides: dict[str, Any] | None = None,
    backends: Sequence[str] = (),
    refine: RefineConfig | None = None,
) -> dict[str, dict[str, tuple[LiveScores, LiveAnswers]]]:
    """Every scenario on every seed with one `MemoryService` (reset between runs) that serves `backends`
    (default: the engine's); scores per scenario and backend: `result[scenario][backend]`."""
    backends = tuple(backends) or (engine_config.backend,)
    service = MemoryService.from_config(
        engine_config,
        serve_keyframes=KEYFRAMES in backends,
        refine=(refine or RefineConfig()) if REFINED in backends else None,
        model_overrides=model_overrides,
    )
    results: dict[str, dict[str, tuple[LiveScores, LiveAnswers]]] = {}
    for name in scenarios:
        pooled = {b: LiveAnswers() for b in backends}
        for seed in seeds:
            cfg = LiveRunConfig(
                scenario=name,
                preset=preset,
                seed=int(seed),
                steps=steps,
                update_rate_hz=update_rate_hz,
                engine=engine_config,
                sim=sim_config or LiveSimConfig(world=LiveWorldConfig()),
            )
            run = LiveMemoryRun(cfg, service=service, backends=backends)
            resets = _resets(service)
            try:
                run.run()
            finally:
                run.close()
            resets = _resets(service) - resets
            for b in backends:
                run.answers[b].lost_resets.append(resets)
                pooled[b].extend(run.answers[b])
            if progress:
                n = len(run.answers[backends[0]].seen)
                progress(f"{name} seed {seed}: {n} queries, {run.wall_s:.0f} s")
        results[name] = {b: (score(pooled[b]), pooled[b]) for b in backends}
    return results


def _resets(service: MemoryService) -> int:
    """Memory resets for a kidnap so far: the engine's lost check and the service's geometric one."""
    return service.engine.counters["lost_resets"] + service.status().get("kidnap_resets", 0)


_COLUMNS = (
    ("seen n", lambda s: s.mem_rpe.seen_count, "d"),
    ("<=1 m,10 deg %", lambda s: s.mem_rpe.within_1m_10deg_pct, ".1f"),
    ("<=1 m,90 deg %", lambda s: s.mem_rpe.within_1m_90deg_pct, ".1f"),
    ("<=2 m,90 deg %", lambda s: s.mem_rpe.within_2m_90deg_pct, ".1f"),
    ("median pos m", lambda s: s.mem_rpe.median_position_m, ".2f"),
    ("median head deg", lambda s: s.mem_rpe.median_heading_deg, ".1f"),
    ("unseen n", lambda s: s.mem_rpe.unseen_count, "d"),
    ("unseen det. %", lambda s: s.mem_rpe.unseen_detected_pct, ".1f"),
    ("seen AUROC", lambda s: s.seen_auroc, ".2f"),
    ("det. @10% FA", lambda s: s.unseen_detected_at_10pct_fa, ".1f"),
    ("1-sigma cover %", lambda s: s.sigma_coverage_pct, ".1f"),
    ("shift m", lambda s: s.answer_shift_m, ".2f"),
    ("seen pairs: shift / true m", lambda s: (s.seen_pair_shift_m, s.true_shift_m), "pair"),
    ("conf real/blank", lambda s: (s.real_confidence, s.blank_confidence), "pair"),
    ("blank refused %", lambda s: s.blank_refused_pct, ".0f"),
    ("kidnap conf.-wrong %", lambda s: s.kidnap_confident_wrong_pct, ".1f"),
    ("refined %", lambda s: s.refined_pct, ".0f"),
    ("query ms p50/p95", lambda s: (s.query_ms_median, s.query_ms_p95), "ms"),
    ("lost resets", lambda s: s.lost_resets, ".0f"),
)


def _cell(value: Any, fmt: str) -> str:
    if fmt == "pair":
        return "/".join(_cell(v, ".2f") for v in value)
    if fmt == "ms":
        return "/".join(_cell(v, ".0f") for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return format(value, fmt)


def live_table(rows: dict[str, LiveScores]) -> str:
    """Markdown table, one row per (label -> scores)."""
    lines = [
        "| run | " + " | ".join(h for h, _, _ in _COLUMNS) + " |",
        "|---|" + "---:|" * len(_COLUMNS),
    ]
    for label, s in rows.items():
        lines.append(f"| {label} | " + " | ".join(_cell(get(s), fmt) for _, get, fmt in _COLUMNS) + " |")
    return "\n".join(lines)


__all__ = [
    "SCENARIOS",
    "kidnap_spot",
    "LiveAnswers",
    "LiveMemoryRun",
    "LiveRunConfig",
    "LiveScores",
    "auroc",
    "detection_at_false_alarm",
    "live_table",
    "run_scenarios",
    "score",
]


# ------------------------------------------------------------------------------------- offline beside live
def offline_answers(model: Any, encoder: Any, episodes: Sequence[Any], length: int) -> LiveAnswers:
    """The offline benchmark's answers (recorded episodes, `memory.evaluate.run_episode`) as `LiveAnswers`,
    so offline and live rows are scored by the same `score`. Pictures without information are not asked
    offline (their columns stay empty)."""
    from spatial_memory.memory.evaluate import encode_images, run_episode, scored_queries, swap_order

    out = LiveAnswers()
    for ep in episodes:
        q = scored_queries(ep, length)
        tokens, query_tokens = (
            encode_images(encoder, ep.rgb[:length]),
            encode_images(encoder, ep.query_rgb[q]),
        )
        swap = swap_order(len(q))
        a = run_episode(model, tokens, ep.odometry[:length], ep.query_step[q], query_tokens, swap)
        xy = query_world_xy(ep, q)
        out.true_shift.extend(np.hypot(*(xy - xy[swap]).T))
        out.swapped_seen.extend(bool(v) for v in ep.query_seen[q][swap])
        out.target.extend(ep.query_target[q])
        out.seen.extend(bool(v) for v in ep.query_seen[q])
        out.pred.extend(a.pred)
        out.sigma.extend(a.sigma)
        out.seen_prob.extend(a.seen_prob)
        out.pred_swapped.extend(a.pred_swapped)
        out.after_kidnap.extend([False] * len(q))
    return out


def query_world_xy(episode: Any, q: np.ndarray) -> np.ndarray:
    """(len(q), 2) world positions of the cameras of queries `q` of a recorded episode: the base pose at the
    query's step times the query's planar pose in that base frame."""
    T = episode.T_world_base[episode.query_step[q]]  # noqa: N806 - the project's pose naming
    local = episode.query_target[q][:, :2]
    return np.einsum("nij,nj->ni", T[:, :2, :2], local) + T[:, :2, 3]


def reliability(answers: LiveAnswers, bins: int = 5) -> list[dict[str, float]]:
    """Accuracy against confidence: the seen, scored answers split into `bins` equal-count bins by the
    confidence they were given; per bin its mean confidence, the % within 1 m and the % whose error the
    reported sigma covers. An honest memory is more often right when it says it is surer."""
    n = len(answers.seen)
    ok = np.array(answers.seen, bool) & ~np.array(answers.after_kidnap, bool)
    if ok.sum() < bins:
        return []
    pred, target = np.array(answers.pred).reshape(n, 3)[ok], np.array(answers.target).reshape(n, 3)[ok]
    sigma = np.array(answers.sigma, float)[ok]
    confidence = 1.0 / (1.0 + sigma)
    err = np.hypot(*(pred[:, :2] - target[:, :2]).T)
    order = np.argsort(confidence, kind="stable")
    return [
        {
            "confidence": float(confidence[idx].mean()),
            "within_1m_pct": float(100 * (err[idx] <= 1.0).mean()),
            "covered_pct": float(100 * (err[idx] <= sigma[idx]).mean()),
            "n": int(len(idx)),
        }
        for idx in np.array_split(order, bins)
    ]


def plot_reliability(curves: dict[str, list[dict[str, float]]], path: Any) -> None:
    """One line per run: % within 1 m against the mean confidence of each bin (`reliability`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, bins in curves.items():
        if bins:
            ax.plot([b["confidence"] for b in bins], [b["within_1m_pct"] for b in bins], "o-", label=label)
    ax.set_xlabel("confidence given (bin mean, 1 / (1 + sigma))")
    ax.set_ylabel("answers within 1 m (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Does the memory know when it is right? (seen places, equal-count bins)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare_offline_live(
    engine: EngineConfig,
    update_rate_hz: float,
    seeds: Sequence[int],
    length: int,
    scenarios: Sequence[str] = ("all",),
    preset: str = "house",
    backends: Sequence[str] = ("kinaema",),
    model_overrides: dict[str, Any] | None = None,
    data: Sequence[Any] = (),
    cache: Any = "outputs/eval_episodes",
    offline: bool = True,
    out: Any = None,
    progress: bool = True,
    refine: RefineConfig | None = None,
    sim_config: LiveSimConfig | None = None,
) -> dict[str, Any]:
    """Offline (recorded episodes of the same worlds) and live (every scenario) rows for each backend, one
    table; written to `out` (.json and .md) when given. `sim_config`: the live sim (sim_node's `sim`; its
    world's preset and seed are each run's)."""
    import datetime as dt
    from pathlib import Path

    from spatial_memory.atomic import write_file_atomic
    from spatial_memory.memory.data import DatasetSpec
    from spatial_memory.memory.engine_config import resolve_checkpoint
    from spatial_memory.memory.evaluate import episodes_for, head_camera_offset, machine_info
    from spatial_memory.memory.registry import build_model, load_checkpoint

    names = sorted(SCENARIOS, key=list(SCENARIOS).index) if list(scenarios) == ["all"] else list(scenarios)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise ConfigError(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    say = (lambda text: log.info("%s", text)) if progress else None
    rows: dict[str, LiveScores] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    checkpoint = resolve_checkpoint(engine.checkpoint)
    if offline:
        ckpt = load_checkpoint(checkpoint, model_overrides=model_overrides)
        # the plain offline rows, then one per scenario that asks only about old views (revisit), recorded
        # with the same minimum age: what the offline benchmark says about those questions
        ages = {"": DatasetSpec.query_min_age_steps}
        ages |= {
            f"{n} ": SCENARIOS[n].min_age_steps(length, update_rate_hz)
            for n in names
            if SCENARIOS[n].min_query_age_fraction > 0
        }
        for label, age in ages.items():
            episodes = episodes_for(
                list(seeds), length, preset, (64, 64), list(data), Path(cache), progress, age
            )  # fmt: skip
            for backend in (b for b in backends if b != REFINED):  # recordings keep no depth: no refinement
                model = ckpt.model
                if backend == "keyframes":
                    offset = head_camera_offset(episodes[0])
                    model = build_model("keyframes", None, ckpt.encoder.config, camera_offset=offset).eval()
                answers = offline_answers(model, ckpt.encoder, episodes, length)
                rows[f"offline {label}{backend}"] = score(answers)
                curves[f"offline {label}{backend}"] = reliability(answers)
    results = run_scenarios(
        names, seeds, length, engine, preset, update_rate_hz, progress=say,
        model_overrides=model_overrides, backends=backends, refine=refine, sim_config=sim_config,
    )  # fmt: skip
    for name, per_backend in results.items():
        for backend, (scores, answers) in per_backend.items():
            rows[f"live {name} {backend}"] = scores
            curves[f"live {name} {backend}"] = reliability(answers)
    table = live_table(rows)
    report = {
        "format": "spatial_memory.mem_rpe_live",
        "format_version": 1,
        "checkpoint": checkpoint,
        "model_overrides": dict(model_overrides or {}),
        "preset": preset,
        "seeds": [int(s) for s in seeds],
        "length": length,
        "update_rate_hz": update_rate_hz,
        "engine": dataclasses.asdict(engine),
        "scenarios": {n: SCENARIOS[n].description for n in names},
        "rows": {label: s.to_dict() for label, s in rows.items()},
        "reliability": curves,
        "table": table,
        "machine": machine_info(),
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if out is not None:
        import json

        out = Path(out)
        write_file_atomic(out, (json.dumps(report, indent=2) + "\n").encode())
        md = [
            f"# Mem-RPE offline and live, T = {length}, {preset} worlds {list(seeds)}",
            "",
            f"Checkpoint `{checkpoint}`"
            + (f", overrides {model_overrides}" if model_overrides else "")
            + ".",
            "Offline: recorded 64x64 episodes (the dataset tour; *offline revisit*: the same tours, seen "
            "queries only of views as old as the revisit scenario's). Live: `LiveSim` (sim_node's core, its "
            f"camera) feeding `MemoryEngine` at {update_rate_hz:g} Hz as memory_node does.",
            "",
            table,
            "",
            *(f"- {n}: {SCENARIOS[n].description}" for n in names),
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()),
            "",
        ]
        write_file_atomic(out.with_suffix(".md"), "\n".join(md).encode())
        kinaema = {k: v for k, v in curves.items() if k.endswith("kinaema") and v}
        if kinaema or any(curves.values()):  # too few seen answers for bins: no plot
            plot_reliability(kinaema or curves, out.with_name(out.stem + "_reliability.png"))
    return report

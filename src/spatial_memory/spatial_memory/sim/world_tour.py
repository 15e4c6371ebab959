"""Exploration of a generated world: visit every room, then keep revisiting places, for as long as asked.

`WorldTour` is a `BehaviourSource` for `sim.exploration.Script`: it hands out one behaviour at a time,
planned from the pose where the robot really is when it asks, so an episode of any length runs without
planning the world up front. First a room-to-room tour: from a random start room, always on to the
unvisited room fewest doorways away (the nearer by straight line on ties), with a look-around turn in
each (half a turn by default). Revisits are interleaved from the start: after each new room the tour
goes back through the doorway into the room it came from, looks around there and only then moves on
(a short loop; skipped where the way to the next new room passes through that room anyway, as from a
corridor), so even a 40 s episode comes back to places it has seen. Then, endlessly, one of three seeded
random actions:

- *revisit*: drive to a random clear spot of the room visited longest ago (loops back through earlier
  rooms) and look around (a random half to one-and-a-half turn);
- *doorway*: drive up to a doorway of the current room, through it and back (back-and-forth across rooms);
- *look*: move to another spot of the current room, drive forward and back in reverse where the floor
  ahead is clear, and look around.

Paths come from `planning.plan_path` on the world's occupancy grid inflated by the world's
`robot_radius_m`. For the mobile FR3 that radius must cover the arm as well as the base: the compact arm
scan (`exploration.CompactScan`, run throughout) reaches `COMPACT_REACH_M` = 0.37 m from the base axis, so
`PLANNING_RADIUS_M` = 0.42 m leaves 5 cm for the controller, and worlds are generated with that radius
(and 1 m doorways) so the generator keeps every room reachable for it. `coverage` measures what a driven
path covered: the rooms entered, the free floor near the path, and the revisits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.sim.exploration import (
    COMPACT_REACH_M,
    BackAndForth,
    Behaviour,
    FollowPath,
    LookAround,
    Pose2D,
    PurePursuitConfig,
    TurnTo,
)
from spatial_memory.sim.planning import plan_path
from spatial_memory.sim.worlds import World

log = logging.getLogger(__name__)

ACTIONS = ("revisit", "doorway", "look")
_OPEN_M = 1.0  # the start pose faces at least this much open floor
_MAX_FAILED_ACTIONS = 20  # actions in a row that could not be planned before the tour just turns in place


def _in_range(value: object, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number within [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class WorldTourConfig:
    """How the tour moves: grid, look-around turns, early returns, action weights, doorway passes, path
    following.

    `inflate_m` 0 plans with the world's `robot_radius_m`. Angles in radians, lengths in metres.

    The defaults are tuned so that a short episode already revisits places (the memory benchmarks query
    places seen earlier and need loop closures at T = 200 steps, 40 s at 5 Hz): half turns in new rooms
    (the other half is seen on the way back and on later revisits), a return through the doorway into the
    previous room after every new room (`return_prob` 1; skipped where the way on leads back through it
    anyway), and late braking at path corners. In the 'house' preset (seeds 0-4) that gives 3 of 4 rooms
    (2 on one seed) and 1-2 revisits by 40 s, all rooms and 6-10 revisits by 160 s; with full turns and
    no returns it was 3 rooms and no revisit by 40 s, 4-5 revisits by 160 s.
    """

    resolution_m: float = 0.05
    inflate_m: float = 0.0
    start_look_rad: float = math.pi  # in the start room: half a turn, the rest is seen on the returns
    first_look_rad: float = math.pi  # in every other new room: half a turn, more on later revisits
    return_prob: float = 1.0  # after a new room: chance of going back into the room it came from first
    return_look_rad: float = 0.5 * math.pi  # the look-around there, just past the doorway
    look_rad: tuple[float, float] = (0.5 * math.pi, 1.5 * math.pi)  # later look-arounds: uniform in this
    look_speed: float = 0.9  # rad/s: a full turn in 7 s
    weights: tuple[float, float, float] = (0.45, 0.3, 0.25)  # revisit, doorway, look
    doorway_m: float = 1.0  # a doorway pass starts and ends this far from the doorway, on its normal
    drive_m: tuple[float, float] = (0.8, 1.5)  # forward-and-reverse drives in a room: length range
    drive_speed: float = 0.3  # m/s
    spot_clearance_m: float = 0.7  # random spots keep this far from obstacles (else the room's clearest)
    path: PurePursuitConfig = field(  # at the base's top speed, stopping close to each goal and braking
        # late (the base has no inertia): each corner costs ~1 s less than with the default 0.5 m ramp
        default_factory=lambda: PurePursuitConfig(speed=0.5, goal_tolerance_m=0.04, slow_down_m=0.2)
    )
    stuck_steps: int = 20  # control steps against an obstacle before a behaviour is given up

    def __post_init__(self) -> None:
        _in_range(self.resolution_m, "resolution_m", 0.01, 0.2)
        _in_range(self.inflate_m, "inflate_m", 0.0, 1.5)
        for name in ("start_look_rad", "first_look_rad", "return_look_rad"):
            _in_range(getattr(self, name), name, 0.0, 4.0 * math.pi)
        _in_range(self.return_prob, "return_prob", 0.0, 1.0)
        _in_range(self.look_speed, "look_speed", 0.05, 3.0)
        _in_range(self.doorway_m, "doorway_m", 0.3, 3.0)
        _in_range(self.drive_speed, "drive_speed", 0.05, 1.0)
        _in_range(self.spot_clearance_m, "spot_clearance_m", 0.0, 3.0)
        for name, top in (("look_rad", 4.0 * math.pi), ("drive_m", 5.0)):
            pair = getattr(self, name)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"{name} must be a (low, high) pair, got {pair!r}")
            _in_range(pair[1], f"{name}[1]", _in_range(pair[0], f"{name}[0]", 0.01, top), top)
        if (
            len(self.weights) != len(ACTIONS)
            or sum(_in_range(w, "weights", 0.0, 1e6) for w in self.weights) <= 0
        ):
            raise ConfigError(f"weights must be {len(ACTIONS)} non-negative numbers {ACTIONS}, not all 0")
        if not isinstance(self.path, PurePursuitConfig):
            raise ConfigError(f"path must be a PurePursuitConfig, got {type(self.path).__name__}")
        steps = self.stuck_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"stuck_steps must be an integer >= 1, got {steps!r}")


class WorldTour:
    """An endless exploration of `world` (see the module docstring), reproducible from `seed`.

    Use it as `Script(tour, arm=CompactScan())`, with the robot put at `start_pose()` first. `grid` is the
    planning grid; `paths` the paths planned so far; `visits` the (room, t_s) of every arrival at a room
    target. The rooms of a world must all lie in one free region of the grid; one that does not (a room
    the planning radius cannot enter) is left out with a warning.
    """

    def __init__(self, world: World, config: WorldTourConfig = WorldTourConfig(), seed: int = 0) -> None:
        if not isinstance(world, World):
            raise ConfigError(f"world must be a World, got {type(world).__name__}")
        if not isinstance(config, WorldTourConfig):
            raise ConfigError(f"config must be a WorldTourConfig, got {type(config).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.world, self.config = world, config
        inflate = config.inflate_m or world.config.robot_radius_m
        if inflate < COMPACT_REACH_M:
            log.warning(
                "planning with a robot radius of %.2f m: the arm scan reaches %.2f m, it may touch obstacles",
                inflate,
                COMPACT_REACH_M,
            )
        self.grid = world.occupancy(config.resolution_m, inflate)
        self.clearance = self._clearance_map()
        self._main = self.grid.labels == self.grid.largest_component
        self._nearest_main = ndimage.distance_transform_edt(
            ~self._main, return_distances=False, return_indices=True
        )
        self.rooms = self._reachable_rooms()
        self._room_graph = self._door_graph()
        self._rng = np.random.default_rng([int(seed), 7])
        self.start_room = int(self.rooms[self._rng.integers(len(self.rooms))])
        self._start_yaw = self._start_heading()
        self.paths: list[np.ndarray] = []
        self.visits: list[tuple[int, float]] = []
        self._last_visit = {room: -math.inf for room in self.rooms}
        self._pose: Pose2D = (0.0, 0.0, 0.0)
        self._t_s = 0.0
        self._plan: Iterator[Behaviour] = self._behaviours()

    # ------------------------------------------------------------------ set-up
    def _clearance_map(self) -> np.ndarray:
        """Metres from every cell centre to the nearest wall, furniture or object (un-inflated)."""
        bare = self.world.occupancy(self.config.resolution_m, 0.0)
        return ndimage.distance_transform_edt(~bare.occupied) * bare.resolution_m

    def _room_cells(self, room: int) -> np.ndarray:
        """Cells (iy, ix) of the planning grid's main free region inside `room`, shape (N, 2)."""
        r = self.world.rooms[room]
        ix0, iy0 = self.grid.world_to_cell(np.array([r.x0, r.y0])) + 1
        ix1, iy1 = self.grid.world_to_cell(np.array([r.x1, r.y1]))
        iy, ix = np.nonzero(self._main[iy0:iy1, ix0:ix1])
        return np.column_stack([iy + iy0, ix + ix0])

    def _reachable_rooms(self) -> np.ndarray:
        rooms = [i for i in range(len(self.world.rooms)) if len(self._room_cells(i))]
        if not rooms:
            raise InvalidInputError("no room of the world has free space for the robot's planning radius")
        missing = sorted(set(range(len(self.world.rooms))) - set(rooms))
        if missing:
            log.warning("rooms %s have no free space for the robot: the tour leaves them out", missing)
        return np.array(rooms)

    def _door_graph(self) -> dict[int, set[int]]:
        graph: dict[int, set[int]] = {i: set() for i in range(len(self.world.rooms))}
        for door in self.world.doors:
            a, b = door.rooms
            if a >= 0 and b >= 0:
                graph[a].add(b)
                graph[b].add(a)
        return graph

    def _start_heading(self) -> float:
        """The start yaw: one from which the start look-around (counter-clockwise) ends facing the way to
        the first new room, if the floor ahead of it is open; else any heading facing open floor."""
        spot = self.room_spot(self.start_room, best=True)
        others = {int(r) for r in self.rooms} - {self.start_room}
        if others and self.config.start_look_rad > 0:
            try:
                first = self._nearest_room(self.start_room, others)
                path = self.plan_to(spot, self.room_spot(first, best=True))
            except InvalidInputError:
                path = spot[None]
            if len(path) > 1:
                d = path[1] - path[0]
                yaw = math.remainder(math.atan2(d[1], d[0]) - self.config.start_look_rad, 2 * math.pi)
                if self.grid.segment_is_free(spot, spot + _OPEN_M * np.array([math.cos(yaw), math.sin(yaw)])):
                    return float(yaw)
        return self._open_heading(spot, 3.0)[0]

    # ------------------------------------------------------------------ the BehaviourSource
    def start_pose(self) -> Pose2D:
        """Where an episode starts: the clearest spot of the start room, facing open floor (not a wall)."""
        x, y = self.room_spot(self.start_room, best=True)
        return float(x), float(y), self._start_yaw

    def next_behaviour(self, pose: Pose2D, t_s: float) -> Behaviour | None:
        """The next behaviour, planned from `pose` (the tour never ends, so never None)."""
        self._pose, self._t_s = (float(pose[0]), float(pose[1]), float(pose[2])), float(t_s)
        return next(self._plan, None)

    # ------------------------------------------------------------------ places
    def room_of(self, x: float, y: float) -> int:
        """The room holding (x, y); in a doorway or wall, the room whose centre is nearest."""
        room = self.world.room_at(x, y)
        if room >= 0:
            return room
        centres = np.array([r.center for r in self.world.rooms])
        return int(np.argmin(np.linalg.norm(centres - (x, y), axis=1)))

    def room_spot(self, room: int, best: bool = False) -> np.ndarray:
        """A free (x, y) in `room`: the clearest one, or (default) a seeded random one at least
        `spot_clearance_m` from obstacles (the clearest if none is that clear)."""
        cells = self._room_cells(room)
        if not len(cells):
            raise InvalidInputError(f"room {room} has no free space for the robot")
        clear = self.clearance[cells[:, 0], cells[:, 1]]
        if best or clear.max() < self.config.spot_clearance_m:
            pick = int(np.argmax(clear))
        else:
            ok = np.flatnonzero(clear >= self.config.spot_clearance_m)
            pick = int(ok[self._rng.integers(len(ok))])
        iy, ix = cells[pick]
        return self.grid.cell_to_world(np.array([ix, iy]))

    def plan_to(
        self, start_xy: Sequence[float] | np.ndarray, goal_xy: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """A collision-free path (N, 2) from `start_xy` to `goal_xy` on the planning grid.

        A start within the inflation of an obstacle (the robot drifted, or stopped against it) first
        steps to the nearest free cell; a goal in a wall, in furniture, within the planning radius of
        them or off the map is an InvalidInputError (from `plan_path`), as is an unreachable one.
        """
        start = np.asarray(start_xy, dtype=float)
        if start.shape != (2,) or not np.isfinite(start).all():
            raise InvalidInputError(f"start must be a finite (x, y) pair in metres, got {start_xy!r}")
        cell = self.grid.world_to_cell(start)
        if not self.grid.in_bounds(cell):
            raise InvalidInputError(f"start ({start[0]:.3f}, {start[1]:.3f}) is outside the map")
        if self._main[cell[1], cell[0]]:
            return plan_path(self.grid, start, goal_xy)
        iy, ix = self._nearest_main[:, cell[1], cell[0]]
        free = self.grid.cell_to_world(np.array([ix, iy]))
        log.debug("start (%.2f, %.2f) is off the free space: stepping to (%.2f, %.2f)", *start, *free)
        return np.vstack([start, plan_path(self.grid, free, goal_xy)])

    # ------------------------------------------------------------------ the plan
    def _behaviours(self) -> Iterator[Behaviour]:
        """The tour as a generator: it resumes when the robot has finished the behaviour it yielded."""
        yield from self._first_tour()
        failed = 0
        while True:
            action = ACTIONS[self._rng.choice(len(ACTIONS), p=self._weights())]
            produced = False
            for behaviour in getattr(self, f"_{action}")():
                produced = True
                yield behaviour
            failed = 0 if produced else failed + 1
            if failed >= _MAX_FAILED_ACTIONS:
                log.warning("%d tour actions in a row could not be planned: turning in place", failed)
                failed = 0
                yield LookAround(0.5 * math.pi, self.config.look_speed)

    def _weights(self) -> np.ndarray:
        w = np.array(self.config.weights, dtype=float)
        return w / w.sum()

    def _first_tour(self) -> Iterator[Behaviour]:
        """Every room once, each time on to the unvisited room fewest doorways away; after each new room
        (but the last), with probability `return_prob`, back into the room it came from first."""
        left = {int(r) for r in self.rooms}
        look, look_ccw = self.config.start_look_rad, True  # the start look: see `_start_heading`
        while left:
            here = self.room_of(*self._pose[:2])
            room = here if here in left else self._nearest_room(here, left)
            left.discard(room)
            n_paths = len(self.paths)
            yield from self._visit(room, self.room_spot(room, best=True), look, first=look_ccw)
            look, look_ccw = self.config.first_look_rad, False
            if len(self.paths) == n_paths or not left:
                continue
            came_from = self._room_before(self.paths[-1], room)
            if (
                came_from is not None
                and self._rng.random() < self.config.return_prob
                and not self._on_the_way(came_from, room, self._nearest_room(room, left))
            ):
                yield from self._return_to(came_from, room)

    def _room_before(self, path: np.ndarray, room: int) -> int | None:
        """The last room other than `room` that `path` passed through (None: it started in `room`)."""
        for x, y in _densify(path, 0.1)[::-1]:
            other = self.world.room_at(float(x), float(y))
            if other >= 0 and other != room and other in self._last_visit:
                return int(other)
        return None

    def _on_the_way(self, room: int, here: int, goal: int) -> bool:
        """True when `room` is on a shortest door route from `here` to `goal` (the tour re-enters it
        anyway, so no extra return is needed)."""
        hops = self._hops(room)
        return hops.get(goal, math.inf) < self._hops(here).get(goal, math.inf)

    def _return_to(self, room: int, here: int) -> Iterator[Behaviour]:
        """Back through the doorway from `here` into `room`, `doorway_m` past it (else a random spot of
        `room`), and a short look-around there: an early revisit of a place the robot has seen."""
        goal = None
        for door in self.world.doors:
            if set(door.rooms) == {room, here}:
                normal = np.array([0.0, 1.0]) if door.axis == "x" else np.array([1.0, 0.0])
                side = -1.0 if door.rooms[0] == room else 1.0  # rooms[0] is on the low side
                point = np.array([door.x, door.y]) + side * self.config.doorway_m * normal
                if self._main_at(point):
                    goal = point
                    break
        if goal is None:
            goal = self.room_spot(room)
        log.debug("tour: back into room %d at (%.2f, %.2f)", room, *goal)
        yield from self._visit(room, goal, self.config.return_look_rad)

    def _hops(self, start: int) -> dict[int, int]:
        """Doorways from `start` to every room reachable from it (breadth-first)."""
        hops = {start: 0}
        frontier = [start]
        while frontier:
            nxt = []
            for room in frontier:
                for other in sorted(self._room_graph[room] - hops.keys()):
                    hops[other] = hops[room] + 1
                    nxt.append(other)
            frontier = nxt
        return hops

    def _nearest_room(self, here: int, candidates: set[int]) -> int:
        """The candidate fewest doorways from `here`, nearer centre first on ties."""
        hops = self._hops(here)
        centre = np.array(self.world.rooms[here].center)

        def key(room: int) -> tuple[float, float]:
            return hops.get(room, math.inf), float(
                np.linalg.norm(np.array(self.world.rooms[room].center) - centre)
            )

        return min(sorted(candidates), key=key)

    def _visit(
        self, room: int, spot: np.ndarray, look_rad: float, first: bool = False
    ) -> Iterator[Behaviour]:
        """Drive to `spot` in `room` and look around by `look_rad` (sign seeded; counter-clockwise for
        the `first` look of the tour, where the robot already stands at `spot`)."""
        path = self._path(spot)
        if path is None:
            return
        yield FollowPath(path, self.config.path)
        self._arrived(room)
        if look_rad > 0:
            yield LookAround(look_rad * (1.0 if first else self._sign()), self.config.look_speed)

    def _revisit(self) -> Iterator[Behaviour]:
        """The room visited longest ago (not the one the robot is in), at a random spot."""
        here = self.room_of(*self._pose[:2])
        others = [int(r) for r in self.rooms if r != here] or [here]
        oldest = min(self._last_visit[r] for r in others)
        room = int(self._rng.choice([r for r in others if self._last_visit[r] == oldest]))
        yield from self._visit(room, self.room_spot(room), self._look_angle())

    def _look(self) -> Iterator[Behaviour]:
        """Another spot of this room, a forward-and-reverse drive where the floor is clear, a look."""
        room = self.room_of(*self._pose[:2])
        if room not in self._last_visit:
            return
        path = self._path(self.room_spot(room))
        if path is None:
            return
        yield FollowPath(path, self.config.path)
        self._arrived(room)
        heading, length = self._open_heading(
            np.array(self._pose[:2]), self._rng.uniform(*self.config.drive_m)
        )
        if length >= self.config.drive_m[0]:
            yield TurnTo(heading)
            yield BackAndForth(length, self.config.drive_speed, repeats=1)
        yield LookAround(self._look_angle(), self.config.look_speed)

    def _open_heading(self, xy: np.ndarray, wanted_m: float, directions: int = 16) -> tuple[float, float]:
        """A heading (seeded choice) with `wanted_m` of clear floor straight ahead of `xy`, or else the
        clearest one: (heading, clear length up to `wanted_m`)."""
        headings = self._rng.uniform(0, 2 * math.pi) + np.arange(directions) * 2 * math.pi / directions
        clear = np.zeros(directions)
        for k, h in enumerate(headings):
            ahead = np.array([math.cos(h), math.sin(h)])
            for d in np.arange(0.1, wanted_m + 1e-9, 0.1):
                if not self.grid.segment_is_free(xy, xy + d * ahead):
                    break
                clear[k] = d
        best = int(np.argmax(clear))
        return float(math.remainder(headings[best], 2 * math.pi)), float(clear[best])

    def _doorway(self) -> Iterator[Behaviour]:
        """Up to a doorway of this room along its normal, through it and back, then a short look."""
        room = self.room_of(*self._pose[:2])
        doors = [d for d in self.world.doors if room in d.rooms and -1 not in d.rooms]
        if not doors:
            return
        door = doors[int(self._rng.integers(len(doors)))]
        normal = np.array([0.0, 1.0]) if door.axis == "x" else np.array([1.0, 0.0])
        if door.rooms[1] == room:  # the room is on the high side: go through towards the low side
            normal = -normal
        centre = np.array([door.x, door.y])
        before = centre - self.config.doorway_m * normal
        after = centre + self.config.doorway_m * normal
        if not (self.grid.segment_is_free(before, after) and self._main_at(before) and self._main_at(after)):
            log.debug("doorway at (%.2f, %.2f): no clear straight pass", door.x, door.y)
            return
        path = self._path(before)
        if path is None:
            return
        yield FollowPath(path, self.config.path)
        yield TurnTo(math.atan2(normal[1], normal[0]))
        yield FollowPath(np.array([before, after]), self.config.path)
        other = door.rooms[0] if door.rooms[1] == room else door.rooms[1]
        self._arrived(other)
        yield FollowPath(np.array([after, before]), self.config.path)
        self._arrived(room)
        yield LookAround(0.5 * self._look_angle(), self.config.look_speed)

    # ------------------------------------------------------------------ helpers
    def _path(self, goal: np.ndarray) -> np.ndarray | None:
        """A planned path from the robot's pose to `goal`, or None (logged) if there is none."""
        try:
            path = self.plan_to(self._pose[:2], goal)
        except InvalidInputError as exc:
            log.warning("tour: no path from (%.2f, %.2f): %s", *self._pose[:2], exc)
            return None
        self.paths.append(path)
        return path

    def _main_at(self, xy: np.ndarray) -> bool:
        cell = self.grid.world_to_cell(xy)
        return bool(self.grid.in_bounds(cell) and self._main[cell[1], cell[0]])

    def _arrived(self, room: int) -> None:
        if room in self._last_visit:
            self._last_visit[room] = self._t_s
        self.visits.append((room, self._t_s))

    def _sign(self) -> float:
        return 1.0 if self._rng.random() < 0.5 else -1.0

    def _look_angle(self) -> float:
        return float(self._rng.uniform(*self.config.look_rad)) * self._sign()


# ---------------------------------------------------------------------------------------------- previews
def preview_paths(
    world: World, config: WorldTourConfig = WorldTourConfig(), seed: int = 0, behaviours: int = 30
) -> list[np.ndarray]:
    """The paths a fresh tour would plan for its first `behaviours` behaviours, if the robot followed every
    one exactly: for plots of a world's tour without running the simulation."""
    tour = WorldTour(world, config, seed)
    pose = tour.start_pose()
    for _ in range(behaviours):
        behaviour = tour.next_behaviour(pose, 0.0)
        if isinstance(behaviour, FollowPath):
            end, d = behaviour.path[-1], behaviour.path[-1] - behaviour.path[max(len(behaviour.path) - 2, 0)]
            yaw = math.atan2(d[1], d[0]) if np.any(d) else pose[2]
            pose = (float(end[0]), float(end[1]), yaw)
        elif isinstance(behaviour, LookAround):
            pose = (pose[0], pose[1], pose[2] + behaviour.angle_rad)
        elif isinstance(behaviour, TurnTo):
            pose = (pose[0], pose[1], behaviour.yaw)
    return tour.paths


# ---------------------------------------------------------------------------------------------- coverage
@dataclass(frozen=True)
class Coverage:
    """What a driven base path covered.

    `room_sequence` lists the rooms in the order the path entered them (a doorway between two steps in
    the same room is not a change of room); `revisits` counts entries into a room the path had left
    before; `free_fraction` is the share of the world's free floor within `radius_m` of the path.
    """

    rooms_visited: tuple[int, ...]  # in order of first entry
    num_rooms: int
    room_sequence: tuple[int, ...]
    revisits: int
    free_fraction: float
    radius_m: float
    path_length_m: float

    @property
    def room_fraction(self) -> float:
        return len(self.rooms_visited) / self.num_rooms

    def summary(self) -> str:
        return (
            f"{len(self.rooms_visited)}/{self.num_rooms} rooms, {self.revisits} revisits, "
            f"{100 * self.free_fraction:.0f}% of the free floor within {self.radius_m:g} m, "
            f"{self.path_length_m:.1f} m driven"
        )


def _densify(xy: np.ndarray, spacing: float) -> np.ndarray:
    """Points along the polyline `xy` no more than `spacing` apart (the vertices included)."""
    pieces = [xy[:1]]
    for a, b in zip(xy[:-1], xy[1:], strict=True):
        n = max(1, math.ceil(float(np.linalg.norm(b - a)) / spacing))
        pieces.append(a + np.linspace(0.0, 1.0, n + 1)[1:, None] * (b - a))
    return np.concatenate(pieces)


def coverage(
    world: World,
    base_xy: np.ndarray | Sequence[Sequence[float]],
    radius_m: float = 1.5,
    resolution_m: float = 0.05,
) -> Coverage:
    """Rooms entered, revisits and the free floor within `radius_m` of a base path `base_xy` (N, 2), m."""
    xy = np.asarray(base_xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 1 or not np.isfinite(xy).all():
        raise InvalidInputError(f"base_xy must be (N, 2) finite metres with N >= 1, got shape {xy.shape}")
    if not (isinstance(radius_m, (int, float)) and 0.0 < radius_m <= 20.0):
        raise InvalidInputError(f"radius_m must be within (0, 20] m, got {radius_m!r}")
    rooms = [world.room_at(float(x), float(y)) for x, y in xy]
    sequence: list[int] = []
    for room in rooms:
        if room >= 0 and (not sequence or sequence[-1] != room):
            sequence.append(room)
    visited = tuple(dict.fromkeys(sequence))
    bare = world.occupancy(resolution_m, 0.0)
    near = np.zeros(bare.shape, bool)
    cells = bare.world_to_cell(_densify(xy, resolution_m / 2))
    cells = cells[bare.in_bounds(cells)]
    near[cells[:, 1], cells[:, 0]] = True
    within = ndimage.distance_transform_edt(~near) * resolution_m <= radius_m
    free = ~bare.occupied
    return Coverage(
        rooms_visited=visited,
        num_rooms=len(world.rooms),
        room_sequence=tuple(sequence),
        revisits=len(sequence) - len(visited),
        free_fraction=float((within & free).sum() / max(free.sum(), 1)),
        radius_m=float(radius_m),
        path_length_m=float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()),
    )

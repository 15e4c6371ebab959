"""Loop closure for the view store: a planar pose graph over the stored views, solved when the robot
recognises a place it saw long ago.

The view store keeps each view's camera pose in the odometry frame, and wheel odometry drifts: a view stored
minutes ago can sit a metre from where it really is relative to the robot now, and a refined answer
verified against it carries that error (README: the apartment revisit, 75 % verified yet a median 1.16 m
off). When the current frame verifies by PnP against an old view, PnP measures the pose between the two
cameras without any drift: a loop closure.

The graph (`ViewPoseGraph`): a node per stored view and per accepted closure (the camera when it recognised
the place), in time order, each consecutive pair joined by the odometry's relative pose (its sigma grows with
the distance driven and the angle turned between them), and a loop edge from the old view to the closure
node (PnP's sigma, under a Cauchy kernel: a wrong match that passed the gates pulls little). GTSAM solves
it by Levenberg-Marquardt with the newest closure node held at its odometry pose, so the corrected poses are
in the odometry frame as it is now: answers relative to the robot stay relative to it, and views stored
after the closure need no correction. Nodes are planar (x, y of the camera and the heading of its optical
axis): a ground robot's camera moves in the plane; a correction moves a view's full 3-D pose by the planar
motion between its old and new node.

Gates before a closure is accepted (`RefineConfig.loop_*`): enough PnP inliers; a correction no larger than
drift ever is (`loop_max_correction_m` / `_deg`; a bigger one is a kidnap or a look-alike place, the kidnap
check's business); a correction the drift model can explain (`loop_max_chi2`: the squared Mahalanobis
distance between where the match puts the view and where the graph has it, under the graph's covariance of
the view given the camera now, so 1 m is plausible after 30 m driven but not after 5 m, nor just after a
closure nearby); and the camera must have moved since the last accepted closure (standing before an old
place would otherwise add the same constraint every second and overweight it).

The graph keeps at most `loop_max_closures` closure nodes (the oldest go, with their edges) and one node
per stored view (an evicted view's loop edges move to its neighbour in time): its size is bounded like the
store's.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ClosureResult", "LoopNoise", "ViewPoseGraph", "lift", "planar"]

logger = logging.getLogger(__name__)


def planar(T: np.ndarray) -> np.ndarray:
    """(x, y, heading) of a camera pose: its optical centre on the ground plane and the heading of its
    optical axis projected on it (rad, counter-clockwise from x)."""
    return np.array([T[0, 3], T[1, 3], math.atan2(T[1, 2], T[0, 2])])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Planar pose a o b."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return np.array([a[0] + c * b[0] - s * b[1], a[1] + s * b[0] + c * b[1], _wrap(a[2] + b[2])])


def _between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Planar pose of b in a's frame: a^-1 o b."""
    c, s = math.cos(a[2]), math.sin(a[2])
    dx, dy = b[0] - a[0], b[1] - a[1]
    return np.array([c * dx + s * dy, -s * dx + c * dy, _wrap(b[2] - a[2])])


def _inverse(a: np.ndarray) -> np.ndarray:
    """Planar pose a^-1."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return np.array([-c * a[0] - s * a[1], s * a[0] - c * a[1], _wrap(-a[2])])


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def lift(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The 4x4 rigid motion (a turn about the vertical and a shift in the plane) that takes planar pose
    `old` to `new`: applied on the left of a camera pose whose planar pose is `old`, it gives one at `new`
    with the same height, tilt and roll."""
    turn = _wrap(new[2] - old[2])
    c, s = math.cos(turn), math.sin(turn)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = new[:2] - T[:2, :2] @ old[:2]
    return T


@dataclass(frozen=True)
class LoopNoise:
    """Sigmas of the graph's edges. Odometry between consecutive nodes: `odom_m_per_sqrt_m` * sqrt(distance)
    in position, `odom_rad_per_sqrt_m` * sqrt(distance) + `odom_rad_per_sqrt_rad` * sqrt(turn) in heading
    (variances add), each with a small floor; a loop closure: PnP's `loop_m` and `loop_rad`, robust (Cauchy,
    `cauchy_k` sigmas)."""

    odom_m_per_sqrt_m: float = 0.03
    odom_rad_per_sqrt_m: float = 0.02
    odom_rad_per_sqrt_rad: float = 0.03
    loop_m: float = 0.05
    loop_rad: float = math.radians(2.0)
    cauchy_k: float = 2.0
    floor_m: float = 0.01
    floor_rad: float = 0.005


@dataclass
class _Node:
    key: int
    stamp_ns: int
    odom: np.ndarray  # planar pose the odometry gave (the frame as it was then)
    est: np.ndarray  # planar pose now (the odometry frame anchored at the newest closure)
    view_id: int | None  # None: a closure node (the camera when it recognised a place)
    drift_from_ns: int = -1  # the odometry's drift to now counts from here (set by `_drift_stamps`)
    path_m: float = 0.0  # the camera's path length (m) and turning (rad) since the graph began, at this node
    turn_rad: float = 0.0


@dataclass(frozen=True)
class ClosureResult:
    """What `ViewPoseGraph.close` did: accepted or why not, and the planar correction it implied (m, deg)."""

    accepted: bool
    reason: str
    correction_m: float = 0.0
    correction_deg: float = 0.0
    chi2: float = math.nan  # chi-square of the match under the graph (`ViewPoseGraph.max_chi2`)


@dataclass
class ViewPoseGraph:
    """The stored views' planar poses, joined by odometry and loop closures; see the module docstring."""

    noise: LoopNoise = field(default_factory=LoopNoise)
    max_correction_m: float = 1.5
    max_correction_deg: float = 20.0
    min_move_m: float = 0.3  # the camera must move this far (or turn min_turn_deg) between closures
    min_turn_deg: float = 20.0
    max_closures: int = 256
    max_chi2: float = 16.3  # chi-square (3 dof) a closure may reach; 16.3: 1 in 1000; 0 = no such gate
    _nodes: list[_Node] = field(default_factory=list)
    _loops: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (view key, closure key, z)
    _next_key: int = 0
    _view_keys: dict[int, int] = field(default_factory=dict)
    _travel: tuple[float, float, np.ndarray | None] = (0.0, 0.0, None)  # path m, turn rad, last planar pose
    solves: int = 0

    # -- nodes ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def closures(self) -> int:
        """Closure nodes held (accepted loop closures still in the graph)."""
        return sum(n.view_id is None for n in self._nodes)

    def copy(self) -> ViewPoseGraph:
        """A copy that shares nothing mutable with this graph (snapshots)."""
        nodes = [dataclasses.replace(n, odom=n.odom.copy(), est=n.est.copy()) for n in self._nodes]
        return dataclasses.replace(
            self, _nodes=nodes, _loops=list(self._loops), _view_keys=dict(self._view_keys)
        )

    def moved(self, T_world_cam: np.ndarray) -> None:  # noqa: N803
        """The camera's pose in the odometry frame at a frame (every frame offered, stored or not): the
        path driven and the angle turned between nodes set their odometry edges' sigmas (the odometry
        drifts with the path, which can be far longer than the gap between its ends)."""
        path, turn, last = self._travel
        p = planar(T_world_cam)
        if last is not None:
            path += float(np.hypot(*(p[:2] - last[:2])))
            turn += abs(_wrap(p[2] - last[2]))
        self._travel = (path, turn, p)

    def add_view(self, view_id: int, stamp_ns: int, T_world_cam: np.ndarray) -> None:  # noqa: N803
        """A new stored view at its pose in the odometry frame (newer than every node)."""
        self.moved(T_world_cam)
        p = planar(T_world_cam)
        path, turn, _ = self._travel
        node = _Node(self._next_key, int(stamp_ns), p, p.copy(), int(view_id), int(stamp_ns), path, turn)
        self._next_key += 1
        self._nodes.append(node)
        self._view_keys[int(view_id)] = node.key

    def remove_view(self, view_id: int) -> None:
        """An evicted view: its loop edges move to its neighbour in time (through their poses); its node
        goes."""
        key = self._view_keys.pop(int(view_id), None)
        if key is None:
            return
        i = self._index(key)
        node = self._nodes[i]
        neighbour = (
            self._nodes[i - 1] if i > 0 else (self._nodes[i + 1] if i + 1 < len(self._nodes) else None)
        )
        moved = []
        for a, b, z in self._loops:
            if a == key and neighbour is not None and neighbour.key != b:
                moved.append((neighbour.key, b, _compose(_between(neighbour.est, node.est), z)))
            elif a != key:
                moved.append((a, b, z))
        self._loops = moved
        del self._nodes[i]

    # -- closing ------------------------------------------------------------------------------------

    def close(
        self,
        view_id: int,
        T_world_view: np.ndarray,  # noqa: N803 - the view's pose now
        T_view_query: np.ndarray,  # noqa: N803 - the camera now in the view's frame, as PnP measured it
        T_world_now: np.ndarray,  # noqa: N803 - the camera now, as the odometry puts it
        stamp_ns: int,
    ) -> ClosureResult:
        """Add the loop closure "the camera at `stamp_ns` sees view `view_id`" and solve; see the gates in
        the module docstring. Poses are 4x4 camera poses in the store's frame."""
        key = self._view_keys.get(int(view_id))
        if key is None:
            return ClosureResult(False, f"view {view_id} is not in the graph")
        now, seen = planar(T_world_now), planar(T_world_view @ T_view_query)
        shift = float(np.hypot(*(seen[:2] - now[:2])))
        turn = abs(math.degrees(_wrap(seen[2] - now[2])))
        if shift > self.max_correction_m or turn > self.max_correction_deg:
            return ClosureResult(
                False, f"a {shift:.2f} m / {turn:.0f} deg correction is too large", shift, turn
            )
        last = next((n for n in reversed(self._nodes) if n.view_id is None), None)
        if last is not None and (
            np.hypot(*(last.est[:2] - now[:2])) < self.min_move_m
            and abs(math.degrees(_wrap(last.est[2] - now[2]))) < self.min_turn_deg
        ):
            return ClosureResult(False, "the camera has not moved since the last closure", shift, turn)
        z = _between(planar(T_world_view), seen)  # the camera in the view's frame, free of drift
        at = len(self._nodes)  # in time order: views stored while the match was sought come after it
        while at > 0 and self._nodes[at - 1].stamp_ns > stamp_ns:
            at -= 1
        path_m, turn_rad, _ = self._travel
        if at < len(self._nodes):
            path_m, turn_rad = min(path_m, self._nodes[at].path_m), min(turn_rad, self._nodes[at].turn_rad)
        node = _Node(self._next_key, int(stamp_ns), now, now.copy(), None, int(stamp_ns), path_m, turn_rad)
        nodes = [*self._nodes[:at], node, *self._nodes[at:]]
        chi2 = self._chi2(nodes, key, node, z) if self.max_chi2 else math.nan
        if chi2 > self.max_chi2:
            return ClosureResult(
                False,
                f"a {shift:.2f} m / {turn:.0f} deg correction is more than the odometry could have drifted "
                f"(chi-square {chi2:.1f})",
                shift, turn, chi2,
            )  # fmt: skip
        self._next_key += 1
        self._nodes = nodes
        self._loops.append((key, node.key, z))
        self._forget_old_closures()
        self._solve()
        return ClosureResult(True, f"closed against view {view_id}", shift, turn, chi2)

    def estimates(self) -> dict[int, tuple[np.ndarray, int]]:
        """Per view id, its planar pose now and its drift stamp (`drift_from_ns`)."""
        return {n.view_id: (n.est.copy(), n.drift_from_ns) for n in self._nodes if n.view_id is not None}

    # -- internals ----------------------------------------------------------------------------------

    def _index(self, key: int) -> int:
        return next(i for i, n in enumerate(self._nodes) if n.key == key)

    def _forget_old_closures(self) -> None:
        while self.closures > self.max_closures:
            i = next(i for i, n in enumerate(self._nodes) if n.view_id is None)
            key = self._nodes[i].key
            self._loops = [e for e in self._loops if e[1] != key]
            del self._nodes[i]

    def _odometry_sigmas(self, a: _Node, b: _Node) -> np.ndarray:
        cfg = self.noise
        d = max(float(np.hypot(*(b.odom[:2] - a.odom[:2]))), abs(b.path_m - a.path_m))
        turn = max(abs(_wrap(b.odom[2] - a.odom[2])), abs(b.turn_rad - a.turn_rad))
        pos = math.sqrt(cfg.floor_m**2 + cfg.odom_m_per_sqrt_m**2 * d)
        head = math.sqrt(
            cfg.floor_rad**2 + cfg.odom_rad_per_sqrt_m**2 * d + cfg.odom_rad_per_sqrt_rad**2 * turn
        )
        return np.array([pos, pos, head])

    def _factors(self, nodes: list[_Node], anchor: _Node) -> tuple[Any, Any]:
        """The factor graph over `nodes` (odometry edges between neighbours in time, the loop edges, `anchor`
        held at its odometry pose) and its values (the nodes' estimates)."""
        import gtsam  # here, not at the top: 0.4 s to import, and only loop closure needs it

        cfg, graph, values = self.noise, gtsam.NonlinearFactorGraph(), gtsam.Values()
        for n in nodes:
            values.insert(n.key, gtsam.Pose2(*n.est))
        for a, b in zip(nodes, nodes[1:], strict=False):
            noise = gtsam.noiseModel.Diagonal.Sigmas(self._odometry_sigmas(a, b))
            graph.add(gtsam.BetweenFactorPose2(a.key, b.key, gtsam.Pose2(*_between(a.odom, b.odom)), noise))
        loop_noise = gtsam.noiseModel.Robust.Create(
            gtsam.noiseModel.mEstimator.Cauchy.Create(cfg.cauchy_k),
            gtsam.noiseModel.Diagonal.Sigmas(np.array([cfg.loop_m, cfg.loop_m, cfg.loop_rad])),
        )
        for a, b, z in self._loops:
            graph.add(gtsam.BetweenFactorPose2(a, b, gtsam.Pose2(*z), loop_noise))
        fixed = gtsam.noiseModel.Diagonal.Sigmas(np.array([1e-4, 1e-4, 1e-5]))
        graph.add(gtsam.PriorFactorPose2(anchor.key, gtsam.Pose2(*anchor.odom), fixed))
        return graph, values

    def _chi2(self, nodes: list[_Node], view_key: int, now: _Node, z: np.ndarray) -> float:
        """How unlikely the closure "`now` sees the view at `z`" is under the graph as it stands (`nodes`:
        the graph's with `now` in it, no loop edge to it yet): the squared Mahalanobis distance between
        where the match puts the view and where the graph has it, with the graph's marginal covariance of
        the view given the camera now (odometry drift along every path between them, shortened by earlier
        closures) plus PnP's. Chi-square with 3 degrees of freedom for a right match."""
        import gtsam

        graph, values = self._factors(nodes, now)
        cov = gtsam.Marginals(graph, values).marginalCovariance(view_key)  # in the view's frame
        view = next(n for n in nodes if n.key == view_key)
        error = _between(view.est, _compose(now.est, _inverse(z)))
        cfg = self.noise
        cov = cov + np.diag([cfg.loop_m**2, cfg.loop_m**2, cfg.loop_rad**2])
        return float(error @ np.linalg.solve(cov, error))

    def _solve(self) -> None:
        """Levenberg-Marquardt over every node from the current estimates, the newest closure held at its
        odometry pose; the estimates and drift stamps are replaced by the solution."""
        import gtsam

        anchor = next(n for n in reversed(self._nodes) if n.view_id is None)
        graph, values = self._factors(self._nodes, anchor)
        params = gtsam.LevenbergMarquardtParams()
        params.setMaxIterations(50)
        result = gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize()
        for n in self._nodes:
            p = result.atPose2(n.key)
            n.est = np.array([p.x(), p.y(), p.theta()])
        self.solves += 1
        self._drift_stamps(anchor)

    def _drift_stamps(self, anchor: _Node) -> None:
        """Each node's drift stamp: the anchor's stamp minus the shortest time from the node to the anchor
        through the graph (odometry edges cost the time between their nodes, loop edges nothing); nodes
        after the anchor keep their own stamps."""
        index = {n.key: i for i, n in enumerate(self._nodes)}
        links: dict[int, list[tuple[int, float]]] = {n.key: [] for n in self._nodes}
        for a, b in zip(self._nodes, self._nodes[1:], strict=False):
            dt = abs(b.stamp_ns - a.stamp_ns)
            links[a.key].append((b.key, dt))
            links[b.key].append((a.key, dt))
        for a, b, _ in self._loops:
            links[a].append((b, 0.0))
            links[b].append((a, 0.0))
        best = {anchor.key: 0.0}
        queue = [(0.0, anchor.key)]
        while queue:
            cost, key = heapq.heappop(queue)
            if cost > best.get(key, math.inf):
                continue
            for other, step in links[key]:
                if cost + step < best.get(other, math.inf):
                    best[other] = cost + step
                    heapq.heappush(queue, (cost + step, other))
        for n in self._nodes:
            reached = n.key in best and index[n.key] <= index[anchor.key]
            n.drift_from_ns = max(n.stamp_ns, int(anchor.stamp_ns - best[n.key])) if reached else n.stamp_ns

"""MemoryService: the running memory behind `memory_node` - one model, its baselines and refined answers.

A user asks `/query_pose` with a `backend`; one running memory answers all of them from the same frames:

- the configured model (`EngineConfig.backend`, e.g. `kinaema`): constant-size latent memory;
- `keyframes` (when served): nearest stored frame by the same encoder's pooled tokens, a second
  `MemoryEngine` fed the same images and poses (its state grows with every frame: a baseline);
- `refined` (when served): the model's answer, then verified and made metric by PnP against the stored
  RGB-D views near it (`memory.refine.ViewStore`); when verification fails, the model's answer comes back
  unchanged and says so (`MemoryAnswer.note`, `inliers`).

Frames arrive as in a ROS graph: `update(image, T_world_base=..., stamp_ns=...)` for every frame the memory
takes, and `add_view(rgb, depth, K, T_world_cam, stamp_ns)` when the frame's depth (and the camera's pose)
is known - with ROS they come on different topics, so the view may follow its image. The refined answer is
relative to the base at the newest frame, like every other answer.

`save(path, robot)` writes every backend's state and the stored views to one file, atomically (temp file +
rename) and sealed with a SHA-256 (`registry.seal`), under a header naming the model (backends, hashes of
the configs and weights, the checkpoint) and the robot (`robot`: the caller's frames; the camera's height
and mount the answers use, the camera image size, the stored views' intrinsics) and the save time.
`load(path, robot, resume)` refuses, with one message naming every difference and changing nothing, a file
of another model or robot, a damaged one or one of another format; `resume` says how the next frame
continues the saved poses in the current session (`saved_state`: by default the robot stands where it was
saved). A loaded memory whose camera size is not known yet (nothing seen since the start) checks the next
image's size instead, and refuses images of another size until it is reset.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatial_memory.atomic import write_file_atomic
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import check_pose, invert
from spatial_memory.memory.engine import (
    DROPPED_LATE,
    RESET_AND_USED,
    RESUMED,
    EngineConfig,
    MemoryAnswer,
    MemoryEngine,
)
from spatial_memory.memory.poses import planar_target
from spatial_memory.memory.refine import RefineConfig, Refinement, ViewStore, drift_age_s, verified_sigmas
from spatial_memory.memory.registry import read_versioned, seal
from spatial_memory.saved_state import Resume, identity_differences, utc_now
from spatial_memory.timing import Stopwatch

__all__ = ["KEYFRAMES", "REFINED", "SERVICE_STATE_FORMAT", "SERVICE_STATE_VERSION", "MemoryService"]

logger = logging.getLogger(__name__)

KEYFRAMES, REFINED = "keyframes", "refined"
SERVICE_STATE_FORMAT = "spatial_memory.memory_service_state"
SERVICE_STATE_VERSION = 1


class MemoryService:
    """The configured memory engine, optionally keyframe retrieval beside it and a view store for refined
    answers; `query(image, backend)` picks the answer. Thread-safe (one call at a time)."""

    def __init__(
        self, engine: MemoryEngine, keyframes: MemoryEngine | None = None, views: ViewStore | None = None
    ) -> None:
        if keyframes is not None and keyframes.backend != KEYFRAMES:
            raise ConfigError(f"the keyframes engine runs {keyframes.backend!r}, not 'keyframes'")
        self.engine, self.keyframes, self.views = engine, keyframes, views
        self._share_tokens = keyframes is not None and _same_encoding(engine, keyframes)
        self._lock = threading.RLock()
        self._lock_waits = Stopwatch()  # ms each query waited for the lock (a frame being folded in)
        self._T_world_base: np.ndarray | None = None  # base pose of the newest frame
        self._image_shape: tuple[int, int] | None = None  # (height, width) of the camera images fed
        self._expect_shape: tuple[int, int] | None = None  # a loaded memory's camera, before any image
        self._counts = {"views_stored": 0, "views_skipped": 0, "kidnap_resets": 0, "loop_closures": 0}
        self._count_lock = threading.Lock()  # refined answers count outside the service's lock
        self._refine_counts = {"refined": 0, "refine_fallbacks": 0}
        self._views_offered = 0  # RGB-D frames offered since the last reset (the kidnap check's clock)
        window = views.config.kidnap_window if views is not None else 1
        self._kidnap_verdicts: deque[bool] = deque(maxlen=window)  # last verified matches: far from odometry?

    @classmethod
    def from_config(
        cls,
        engine: EngineConfig,
        serve_keyframes: bool = False,
        refine: RefineConfig | None = None,
        model_overrides: dict[str, Any] | None = None,
    ) -> MemoryService:
        """Build the engines from `engine` (the keyframes one reads the same checkpoint's encoder) and a
        view store when `refine` is given and enabled."""
        main = MemoryEngine(engine, model_overrides=model_overrides)
        keyframes = None
        if serve_keyframes and engine.backend != KEYFRAMES:
            # the main engine's kidnap checks reset it too (`update`): one SIFT pass and one verdict a frame
            quiet = dataclasses.replace(engine, backend=KEYFRAMES, jump_check=False, lost_check=False)
            keyframes = MemoryEngine(quiet)
        views = ViewStore(refine) if refine is not None and refine.enabled else None
        return cls(main, keyframes, views)

    # -- properties ---------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """The default backend (the configured model's)."""
        return self.engine.backend

    @property
    def backends(self) -> tuple[str, ...]:
        """Every backend `query` serves, the default first."""
        extra = (KEYFRAMES,) if self.keyframes is not None else ()
        return (self.engine.backend, *extra, *((REFINED,) if self.views is not None else ()))

    @property
    def steps(self) -> int:
        return self.engine.steps

    @property
    def last_stamp_ns(self) -> int | None:
        return self.engine.last_stamp_ns

    # -- frames -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything, in every backend."""
        with self._lock:
            self.engine.reset()
            if self.keyframes is not None:
                self.keyframes.reset()
            if self.views is not None:
                self.views.reset()
            self._T_world_base = None
            self._expect_shape = None
            self._views_offered = 0
            self._kidnap_verdicts.clear()

    @property
    def resume_pending(self) -> bool:
        """Whether a loaded memory waits for its first frame to resume (`load`)."""
        return self.engine.resume_pending

    def snapshot(self) -> dict[str, Any]:
        """Every backend's state now, copied; `restore` goes back to it (trials from one starting point)."""
        with self._lock:
            return {
                "engine": self.engine.snapshot(),
                "keyframes": None if self.keyframes is None else self.keyframes.snapshot(),
                "views": None if self.views is None else self.views.snapshot(),
                "T_world_base": None if self._T_world_base is None else self._T_world_base.copy(),
            }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a `snapshot` of this service."""
        with self._lock:
            self.engine.restore(snapshot["engine"])
            if self.keyframes is not None:
                self.keyframes.restore(snapshot["keyframes"])
            if self.views is not None:
                self.views.restore(snapshot["views"])
            T = snapshot["T_world_base"]  # noqa: N806
            self._T_world_base = None if T is None else T.copy()

    def update(
        self,
        image_rgb: np.ndarray,
        *,
        T_world_base: np.ndarray | None = None,  # noqa: N803 - the project's pose naming
        odometry: np.ndarray | None = None,
        stamp_ns: int,
    ) -> str:
        """Fold one frame into every backend; returns the engine's verdict (`MemoryEngine.update`). The
        engine checks the input first: bad input raises InvalidInputError and changes no backend. The image
        is checked and encoded before the service is locked (`MemoryEngine.prepare`): answers wait only for
        the state transition."""
        prepared = self.engine.prepare(image_rgb)
        with self._lock:
            expected = self._expect_shape
            shape = getattr(image_rgb, "shape", (0, 0))[:2]
            if expected is not None and tuple(shape) != expected:
                raise InvalidInputError(
                    f"the loaded memory was saved from a {expected[1]}x{expected[0]} camera, this image is "
                    f"{shape[1]}x{shape[0]}: another camera; reset the memory or load one saved with this "
                    "camera"
                )
            pose = {"T_world_base": T_world_base, "odometry": odometry, "stamp_ns": stamp_ns}
            verdict = self.engine.update(image_rgb, **pose, prepared=prepared)
            self._image_shape, self._expect_shape = (int(shape[0]), int(shape[1])), None
            if verdict == DROPPED_LATE:
                return verdict
            cont = self.engine.last_continuation
            if verdict == RESUMED and self.views is not None and cont is not None:
                self.views.rebase(cont.T_now_saved, cont.stamp_offset_ns)  # into the new frame and clock
            if verdict == RESET_AND_USED:
                if self.keyframes is not None:
                    self.keyframes.reset()
                if self.views is not None:
                    self.views.reset()
            if self.keyframes is not None:
                shared = self.engine.last_tokens if self._share_tokens else None
                self.keyframes.update(image_rgb, **pose, tokens=shared)
            self._T_world_base = None if T_world_base is None else check_pose(T_world_base).copy()
            return verdict

    def add_view(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray,
        K: np.ndarray,  # noqa: N803 - the usual name of the intrinsic matrix
        T_world_cam: np.ndarray,  # noqa: N803
        stamp_ns: int,
    ) -> bool:
        """Offer an RGB-D frame (camera pose in the same fixed frame as the base poses) to the view store;
        True when stored. Frames older than the memory's newest by more than the engine's time-jump limit
        are refused (they belong to a memory that was reset). Every `loop_every` frames the frame is also
        matched against old views for a loop closure (`_close_loop`), without holding the service."""
        with self._lock:
            if self.views is None:
                return False
            last = self.engine.last_stamp_ns
            if last is None or last - int(stamp_ns) > self.engine.config.time_jump_reset_s * 1e9:
                self._counts["views_skipped"] += 1
                return False
            stored = self.views.add(rgb, depth_m, K, T_world_cam, stamp_ns)
            self._counts["views_stored" if stored else "views_skipped"] += 1
            self._views_offered += 1
            self._check_kidnap(rgb, T_world_cam, int(stamp_ns))
            every = self.views.config.loop_every
            reader = self.views.reader() if every and self._views_offered % every == 0 else None
        if reader is not None:
            self._close_loop(reader, rgb, T_world_cam, int(stamp_ns))
        return stored

    def _close_loop(self, reader: ViewStore, rgb: np.ndarray, T_world_cam: np.ndarray, stamp_ns: int) -> None:  # noqa: N803
        """Loop closure (`RefineConfig.loop_*`): verify the current view against views at least
        `loop_min_age_s` old on a reader (frames and answers go on meanwhile), then, under the lock, let the
        view store's pose graph take the match (it gates it)."""
        cfg, live = reader.config, reader.live_view()  # the frame's features: kept for answers too
        features = None if live is None else (live.uv, live.descriptors)
        before = stamp_ns - int(cfg.loop_min_age_s * 1e9)
        found = reader.refine(rgb, None, taken_before_ns=before, features=features)
        with self._lock:  # a view gone meanwhile (evicted, or the memory reset) refuses the match
            if self.views is None:
                return
            self.views.adopt(reader)
            if found.ok and self.views.close_loop(found, T_world_cam, stamp_ns).accepted:
                self._counts["loop_closures"] += 1

    def _check_kidnap(self, rgb: np.ndarray, T_world_cam: np.ndarray, stamp_ns: int) -> None:  # noqa: N803
        """The geometric kidnap check (`RefineConfig.kidnap_*`): every `kidnap_every` RGB-D frames, verify
        the current view by PnP against views stored at least `kidnap_min_age_s` ago. A verified match
        puts the camera where that old view says it is; when that is `kidnap_distance_m` or more from
        where the odometry puts it in `kidnap_votes` of the last `kidnap_window` verified matches, the robot
        was carried off (or its odometry jumped): every backend is reset, so old places are "not seen"
        rather than answered metres off. A check that verifies nothing, or with fewer than
        `kidnap_min_inliers` inliers, is no evidence either way."""
        cfg = self.views.config
        if not cfg.kidnap_every or self._views_offered % cfg.kidnap_every:
            return
        found = self.views.refine(rgb, None, taken_before_ns=stamp_ns - int(cfg.kidnap_min_age_s * 1e9))
        if not found.ok or found.inliers < cfg.kidnap_min_inliers:
            return
        off = float(np.hypot(*(found.T_world_query[:2, 3] - T_world_cam[:2, 3])))
        self._kidnap_verdicts.append(off >= cfg.kidnap_distance_m)
        if sum(self._kidnap_verdicts) >= cfg.kidnap_votes:
            logger.warning(
                "the camera sees a place it saw %.0f s ago, %.1f m from where the odometry puts it (%d of "
                "the last %d verified views): the robot was carried off (or its odometry jumped); the "
                "memory restarts",
                (stamp_ns - found.view_stamp_ns) * 1e-9, off, sum(self._kidnap_verdicts),
                len(self._kidnap_verdicts),
            )  # fmt: skip
            self.reset()
            self._counts["kidnap_resets"] += 1

    # -- files --------------------------------------------------------------------------------------

    def identity(self, robot: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model, robot) identities a saved file must match: the backends and the models' hashes; the
        caller's `robot` (frames) with the camera height and mount the answers use, the camera image size
        and the stored views' intrinsics (None where not known yet: not compared)."""
        cfg = self.engine.config
        model = {
            "backends": list(self.backends),
            "config_hash": self.engine.config_hash,
            "weights_hash": self.engine.weights_hash,
        }
        camera = self.views.camera if self.views is not None else None
        shape = self._image_shape
        robot = {
            **(robot or {}),
            "camera_height_m": cfg.camera_height_m,
            "keyframe_camera_offset": list(cfg.keyframe_camera_offset),
            "image_size": None if shape is None else [shape[1], shape[0]],
            "view_intrinsics": None if camera is None else camera[1],
        }
        return model, robot

    def save(self, path: str | Path, robot: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write every backend's state and the stored views to `path` (see the module docstring); returns the
        header. A state that is NaN or infinite is refused and the file at `path` kept as it was."""
        path = Path(path)
        with self._lock:
            model, robot = self.identity(robot)
            header = {
                "saved_at": utc_now(),
                "model": model,
                "robot": robot,
                "checkpoint": self.engine.config.checkpoint,
                "steps": self.engine.steps,
                "views": 0 if self.views is None else len(self.views),
            }
            base = None if self._T_world_base is None else torch.from_numpy(self._T_world_base.copy())
            try:
                payload = {
                    "format": SERVICE_STATE_FORMAT,
                    "version": SERVICE_STATE_VERSION,
                    "header": header,
                    "engine": self.engine.state_payload(),
                    "keyframes": None if self.keyframes is None else self.keyframes.state_payload(),
                    "views": None if self.views is None else _tensors(self.views.pack()),
                    "T_world_base": base,
                }
            except InvalidInputError as exc:
                raise InvalidInputError(f"{exc}; {path} is kept as it was") from exc
            buffer = io.BytesIO()
            torch.save(seal(payload), buffer)
            write_file_atomic(path, buffer.getvalue())
        logger.info("saved the memory (%d steps, %d views) to %s", header["steps"], header["views"], path)
        return header

    def load(
        self, path: str | Path, robot: dict[str, Any] | None = None, resume: Resume | None = None
    ) -> dict[str, Any]:
        """Replace every backend's state and the stored views with those saved in `path`; returns the file's
        header. Refused (InvalidInputError, one message, nothing changed): a missing, damaged or foreign file,
        or one of another model or robot (`identity`). `resume`: continue the saved memory in this session at
        the next frame (`saved_state.Resume`); None: restore it as it was (same frame and clock)."""
        path = Path(path)
        payload = read_versioned(path, SERVICE_STATE_FORMAT, SERVICE_STATE_VERSION, "memory state")
        header = payload.get("header")
        if not isinstance(header, dict):
            raise InvalidInputError(f"{path}: the memory state has no header")
        with self._lock:
            model, ours = self.identity(robot)
            saved_model, saved_robot = header.get("model"), header.get("robot")
            problems = identity_differences("model", saved_model, model)
            problems += identity_differences("robot", saved_robot, ours)
            if problems:
                what = "another model" if any(p.startswith("model") for p in problems) else "another robot"
                raise InvalidInputError(
                    f"cannot load memory state {path}: it was saved by {what}: {'; '.join(problems)}. "
                    "Nothing was changed"
                )
            engine = self.engine.check_payload(payload.get("engine"), path)
            keyframes = (
                None
                if self.keyframes is None
                else self.keyframes.check_payload(payload.get("keyframes"), path)
            )
            views = None
            if self.views is not None:
                packed = payload.get("views")
                if not isinstance(packed, dict):
                    raise InvalidInputError(f"{path}: the stored views are missing")
                views = ViewStore.unpack({k: _array(v) for k, v in packed.items()}, str(path))
            T = payload.get("T_world_base")
            T = None if T is None else check_pose(_array(T), f"{path}: T_world_base")
            size = saved_robot.get("image_size") if isinstance(saved_robot, dict) else None
            # all checked: now change
            self.engine.apply_payload(engine, resume)
            if keyframes is not None:
                self.keyframes.apply_payload(keyframes, resume)
            if views is not None:
                self.views.restore(views)
            self._T_world_base = T
            if self._image_shape is None and isinstance(size, list) and len(size) == 2:
                self._expect_shape = (int(size[1]), int(size[0]))
        logger.info(
            "loaded the memory saved at %s (%d steps, %d views) from %s%s",
            header.get("saved_at"),
            self.engine.steps,
            0 if self.views is None else len(self.views),
            path,
            f"; it resumes at the next frame ({resume.mode})" if resume is not None else "",
        )
        return header

    # -- answers ------------------------------------------------------------------------------------

    def query(
        self, image_rgb: np.ndarray, backend: str = "", searching_since_ns: int | None = None
    ) -> MemoryAnswer:
        """The answer of `backend` ('' = the default); InvalidInputError for a backend not served or a
        picture the engine refuses. `searching_since_ns` (refined answers): the asker has been looking for
        the pictured place since then (`RefineConfig.yield_ratio`). How long it waited for a frame being
        folded in goes to `status()['query_lock_wait_ms']`. A refined answer holds the service only for
        the model's answer and a copy of the view store (`ViewStore.reader`); the matching and PnP run
        beside new frames, and the answer stays relative to the base at the frame it started from
        (`MemoryAnswer.stamp_ns`)."""
        waited = time.perf_counter()
        with self._lock:
            self._lock_waits.add(1e3 * (time.perf_counter() - waited), 0.0)
            name = backend or self.engine.backend
            if name == self.engine.backend:
                return self.engine.query(image_rgb)
            if name == KEYFRAMES and self.keyframes is not None:
                return self.keyframes.query(image_rgb)
            if name != REFINED or self.views is None:
                raise InvalidInputError(
                    f"this memory serves the backends {list(self.backends)}, not {name!r}"
                )
            job = self._refine_job(image_rgb)
        if isinstance(job, MemoryAnswer):
            return job
        found = job.views.refine(  # the service is free for frames meanwhile
            image_rgb, job.guesses, searching_since_ns=searching_since_ns
        )
        if self._lock.acquire(blocking=False):  # keep the features computed, unless a frame is coming in
            try:
                self.views.adopt(job.views)
            finally:
                self._lock.release()
        with self._count_lock:
            self._refine_counts["refined" if found.ok else "refine_fallbacks"] += 1
        return _refined_answer(job, found)

    def _refine_job(self, image_rgb: np.ndarray) -> _RefineJob | MemoryAnswer:
        """Under the lock: the model's answer, the guesses where the picture was taken (the model's and
        retrieval's when served) and a reader of the view store; the coarse answer itself when there are
        no base poses to make it metric with."""
        coarse = self.engine.query(image_rgb)
        T_base = self._T_world_base
        if T_base is None:
            return dataclasses.replace(
                coarse, note=f"coarse {coarse.backend} answer: no base poses (the memory is fed increments)"
            )
        guesses = [T_base @ coarse.T_base_query]  # where the model, and retrieval if served, put the picture
        if self.keyframes is not None and self.views.config.retrieval_guess:
            shared = self.engine.last_query_tokens if self._share_tokens else None
            guesses.append(T_base @ self.keyframes.query(image_rgb, tokens=shared).T_base_query)
        return _RefineJob(coarse, T_base.copy(), guesses, self.views.reader(), self.engine.last_stamp_ns)

    def status(self) -> dict[str, Any]:
        """The engine's status plus the backends served, the view store's size and refinement counters."""
        with self._lock:
            with self._count_lock:
                counts = {**self._counts, **self._refine_counts}
            status = {**self.engine.status(), "backends": list(self.backends), **counts}
            wait = self._lock_waits.summary()
            status["query_lock_wait_ms"] = {k: v for k, v in wait.items() if not k.startswith("cpu")}
            if self.views is not None:
                status["views"] = len(self.views)
                status["view_bytes"] = self.views.nbytes
            if self.keyframes is not None:
                status["keyframes_state_bytes"] = self.keyframes.status()["state_bytes"]
            return status


@dataclasses.dataclass(frozen=True)
class _RefineJob:
    """What a refined answer needs, taken under the service's lock: the model's answer, the base pose and
    stamp of the frame it is relative to, the guesses where the picture was taken, a view store reader."""

    coarse: MemoryAnswer
    T_world_base: np.ndarray
    guesses: list[np.ndarray]
    views: ViewStore
    stamp_ns: int


def _refined_answer(job: _RefineJob, r: Refinement) -> MemoryAnswer:
    """The verified pose as an answer relative to the job's base; the model's answer, saying why, when
    verification failed."""
    coarse = job.coarse
    if not r.ok:
        note = f"coarse {coarse.backend} answer: {r.reason}"
        return dataclasses.replace(coarse, inliers=r.inliers, note=note)
    T_base_query = invert(job.T_world_base) @ r.T_world_query
    x, y, yaw = (float(v) for v in planar_target(T_base_query))
    cfg = job.views.config
    age_s = drift_age_s(cfg, job.stamp_ns, r.view_stamp_ns, r.drift_from_ns)  # the odometry drifted since
    view_age_s = (job.stamp_ns - r.view_stamp_ns) * 1e-9
    sigma, sigma_yaw = verified_sigmas(cfg, age_s)
    if r.rival_m > 0.0:  # a look-alike place verified too: the answer is one of two, its sigma says so
        sigma = math.hypot(sigma, r.rival_m)
    return MemoryAnswer(
        T_base_query=T_base_query,
        x=x,
        y=y,
        yaw=yaw,
        sigma_m=sigma,
        confidence=1.0 / (1.0 + sigma),
        seen_probability=max(coarse.seen_probability, cfg.seen_probability),
        backend=REFINED,
        steps=coarse.steps,
        inliers=r.inliers,
        note=f"refined: {r.reason} ({r.tried} tried), view {view_age_s:.0f} s old"
        + (f", {age_s:.0f} s of drift after loop closure" if age_s < view_age_s - 0.5 else "")
        + (f"; ambiguous: {r.rival} puts it {r.rival_m:.1f} m away" if r.rival_m > 0.0 else ""),
        matched_view=r.view_id,
        sigma_yaw_rad=sigma_yaw,
        stamp_ns=coarse.stamp_ns,
    )


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy arrays as CPU tensors (what torch's weights-only loader reads back)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _array(value: Any) -> np.ndarray:
    """A saved tensor as a numpy array; InvalidInputError for anything else."""
    if not isinstance(value, torch.Tensor):
        raise InvalidInputError(f"expected a tensor in the memory state, got {type(value).__name__}")
    return value.numpy()


def _same_encoding(a: MemoryEngine, b: MemoryEngine) -> bool:
    """Whether two engines turn an image into the same tokens (same encoder weights, input size and resize
    rule), so one encoding of a frame can feed both (it is most of an update's cost)."""
    if (a.image_size, a.config.resize, a.device) != (b.image_size, b.config.resize, b.device):
        return False
    if a.encoder.config != b.encoder.config:
        return False
    sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

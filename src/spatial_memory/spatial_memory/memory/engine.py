"""MemoryEngine: one robot's spatial memory behind a small, checked API (images and poses in, answers out).

The ROS `memory_node`, the in-process pipeline and the tools all use this class, so the conversions from
sensor data to model inputs live in one place:

- `update(image, T_world_base=... | odometry=..., stamp_ns=...)` folds one camera image into the memory.
  With `T_world_base` (the base pose in any fixed frame, e.g. odom -> base_link from TF) the engine computes
  the planar increment (dx, dy, dyaw) in the previous base frame itself (`poses.odometry_increments`); with
  `odometry` the caller gives that increment. One episode uses one of the two (mixing them would lose the
  reference pose); `reset()` starts a new one.
- `query(image)` answers "where is the place in this picture, relative to the robot now?" as a
  `MemoryAnswer`.
- `save(path)` / `load(path)` write and read the memory state: one atomic, versioned file that names the
  backend and the model's identity (a hash of its configs and one of its weights), so a state is never read
  into a model it does not belong to, sealed with a SHA-256 of its content (`registry.seal`) so a damaged
  file is refused, not loaded. `load(path, resume=Resume())` continues a memory saved in an earlier session
  (the robot restarted: a new odometry frame and maybe a new clock): the next update is its first frame and
  ties the saved poses to the new frame (`saved_state.Resume`: by default the robot stands where it was
  saved), whatever its stamp, and returns `RESUMED`. Without `resume` the state is restored as it was (the
  same session: its frame and clock).

Every bad input (a query before any update, an image of the wrong size or type, a non-rigid or NaN pose,
a physically absurd pose or step (`EngineConfig.max_distance_m`, `max_speed_m_s`), a state file of another
model or a damaged one) raises `InvalidInputError` and leaves the memory exactly as it was: new state is
computed first and assigned only when everything succeeded, and only if it is finite. A state that is not
finite is never answered from nor saved (the file already there is kept).

The engine is a single-robot (batch 1), inference-only object. Its methods hold an internal lock, so a node
may call them from different executor threads.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from spatial_memory.atomic import write_file_atomic
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import check_pose
from spatial_memory.memory.encoder import ImageEncoder
from spatial_memory.memory.engine_config import RESIZE_POLICIES, EngineConfig, resolve_checkpoint
from spatial_memory.memory.interface import POSE_DIMS, HistoryState, MemoryModel, count_parameters
from spatial_memory.memory.lost import LostMonitor, ViewFeatures
from spatial_memory.memory.poses import odometry_increments, planar_target
from spatial_memory.memory.registry import (
    MODELS,
    UNSEALED_VERSION,
    build_model,
    load_checkpoint,
    read_versioned,
    seal,
)
from spatial_memory.memory.traced import TracedPath, trace_for_inference
from spatial_memory.saved_state import SAVED_POSE, Continuation, Resume, continuation
from spatial_memory.stamps import JUMPED_BACK, LATE, NEW, stamp_order

__all__ = [
    "DROPPED_LATE",
    "RESET_AND_USED",
    "RESIZE_POLICIES",
    "RESUMED",
    "STATE_FORMAT",
    "STATE_VERSION",
    "USED",
    "EngineConfig",
    "MemoryAnswer",
    "MemoryEngine",
    "PreparedFrame",
]

logger = logging.getLogger(__name__)

STATE_FORMAT = "spatial_memory.memory_state"
STATE_VERSION = 2  # 2: sealed with a checksum (registry.seal); 1 (unsealed) still loads
# Pictures of another size than the model's are refused below this short side (px; also a quarter of the
# model's side), and beyond this ratio of long to short side (cameras are 4:3 to 16:9; panoramas 2:1).
MIN_SIDE_PX = 16
MAX_ASPECT = 4.0
# What `update` did with a frame (RESUMED: the first frame after `load(..., resume=...)`, used).
USED, DROPPED_LATE, RESET_AND_USED, RESUMED = "used", "dropped_late", "reset_and_used", "resumed"
# Pose sources of an episode: nothing yet, absolute base poses, or caller-given increments.
_NO_SOURCE, _POSE, _ODOMETRY = "none", "pose", "odometry"


@dataclass(frozen=True)
class MemoryAnswer:
    """Where the pictured place is, relative to the robot now.

    T_base_query: 4x4 pose of the query camera's optical frame (REP-103: z forward, x right, y down) in the
        current base frame, levelled: optical axis horizontal at heading `yaw`, at height
        `EngineConfig.camera_height_m` (the models answer on the ground plane only).
        `poses.planar_target(T_base_query)` gives back (x, y, yaw).
    x, y: metres in the current base frame (x forward, y left); yaw: heading of the optical axis, radians,
        counter-clockwise from the base's x axis, in [-pi, pi).
    sigma_m: the model's predicted standard deviation of the position error (metres).
    confidence: 1 / (1 + sigma_m) in (0, 1); seen_probability: how likely the place was observed at all.
    backend: the model that answered; steps: updates folded in when it answered; stamp_ns: the stamp of
        the newest of them, the "now" the answer is relative to (None when not known).
    Refined answers (`memory.service`, backend 'refined') carry the measured 6-DoF camera pose in
    `T_base_query` (not levelled), the PnP inlier count and a note; a refinement that failed returns the
    model's answer with the reason in `note`.
    """

    T_base_query: np.ndarray
    x: float
    y: float
    yaw: float
    sigma_m: float
    confidence: float
    seen_probability: float
    backend: str
    steps: int
    inliers: int = -1  # refined answers: PnP inliers of the best verification (-1: no refinement tried)
    note: str = ""  # how the answer was made (refined, or why refinement fell back to the model's answer)
    matched_view: int = -1  # refined answers: id of the stored view that verified it (-2: the latest frame)
    sigma_yaw_rad: float = math.inf  # 1-sigma heading error when measured (refined answers); inf: unknown
    stamp_ns: int | None = None  # stamp of the newest frame when it answered: "now" for this answer


@dataclass(frozen=True, eq=False)
class PreparedFrame:
    """An image made ready for `MemoryEngine.update` (`MemoryEngine.prepare`): the image itself, its encoder
    tokens (1, K, D) and the view jump check's features (None when the check is off)."""

    image_rgb: np.ndarray
    tokens: Tensor
    view: ViewFeatures | None


def level_camera_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """A level optical frame at (x, y, z) whose optical axis points at heading `yaw` (see MemoryAnswer)."""
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:3, 0] = (s, -c, 0.0)  # x: image right
    T[:3, 1] = (0.0, 0.0, -1.0)  # y: image down
    T[:3, 2] = (c, s, 0.0)  # z: optical axis
    T[:3, 3] = (x, y, z)
    return T


class MemoryEngine:
    """A memory model and its image encoder, loaded from a checkpoint, and the state of one episode."""

    def __init__(
        self, config: EngineConfig | None = None, model_overrides: dict[str, Any] | None = None
    ) -> None:
        """`model_overrides`: model config fields that hold no weights, replaced before the weights load
        (`registry.load_checkpoint`), to run a trained model under another rule (ablations)."""
        cfg = config or EngineConfig()
        self._model_overrides = dict(model_overrides or {})
        self.config = cfg = dataclasses.replace(cfg, checkpoint=resolve_checkpoint(cfg.checkpoint))
        if not cfg.checkpoint:
            raise ConfigError("EngineConfig.checkpoint is empty: give the path of a memory checkpoint")
        if cfg.backend not in MODELS:
            raise ConfigError(f"unknown memory backend {cfg.backend!r}; known: {sorted(MODELS)}")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.device)
        self.model, self.encoder = self._load_models(cfg)
        size = self.encoder.config.image_size
        if cfg.image_size and cfg.image_size != size:
            raise ConfigError(
                f"{cfg.checkpoint}: the encoder reads {size}x{size} images, the config expects "
                f"image_size {cfg.image_size}"
            )
        self.image_size = size
        self.config_hash, self.weights_hash = _identity(self.model, self.encoder)
        self._lock = threading.RLock()
        self._counters = {"frames_used": 0, "frames_dropped_late": 0, "time_jump_resets": 0, "lost_resets": 0}
        self._lost = (
            LostMonitor(cfg.lost_distance_m, cfg.lost_min_seen, cfg.lost_window, cfg.lost_votes)
            if cfg.lost_check
            else None
        )
        self._jump = cfg.view_jump_check() if cfg.jump_check else None
        self._traced: TracedPath | None = None  # the per-frame path as traces (`memory.traced`)
        if cfg.trace:
            identity = (self.config_hash, self.weights_hash)
            self._traced = trace_for_inference(self.model, self.encoder, self.device, identity)
        self.reset()
        logger.info(
            "memory engine: %s from %s (%d parameters, %dx%d images, resize=%s)",
            self.backend,
            cfg.checkpoint,
            self.num_parameters,
            size,
            size,
            cfg.resize,
        )

    # -- construction -------------------------------------------------------------------------------

    def _load_models(self, cfg: EngineConfig) -> tuple[MemoryModel, ImageEncoder]:
        """The model and encoder from the checkpoint (for 'keyframes': the checkpoint's encoder)."""
        try:
            ckpt = load_checkpoint(
                cfg.checkpoint,
                expect_model=None if cfg.backend == "keyframes" else cfg.backend,
                model_overrides=None if cfg.backend == "keyframes" else self._model_overrides,
            )
        except InvalidInputError as exc:
            raise ConfigError(f"memory backend {cfg.backend!r}: {exc}") from exc
        if ckpt.encoder is None:
            raise ConfigError(f"{cfg.checkpoint} holds no image encoder; the engine needs one to read images")
        model = ckpt.model
        if cfg.backend == "keyframes" and model.name != "keyframes":
            model = build_model(
                "keyframes", {"camera_offset": cfg.keyframe_camera_offset}, encoder_config=ckpt.encoder.config
            )
        return model.to(self.device).eval(), ckpt.encoder.to(self.device).eval()

    # -- properties ---------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.model.name

    @property
    def steps(self) -> int:
        """Updates folded into the memory since the last reset (or as loaded)."""
        return self._steps

    @property
    def last_stamp_ns(self) -> int | None:
        return self._last_stamp

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model) + count_parameters(self.encoder)

    @property
    def state(self) -> Any:
        """The model's current state (a tensor or a HistoryState); treat as read-only."""
        return self._state

    # -- the API ------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: the initial state, no steps, no reference pose or stamp."""
        with self._lock:
            with torch.no_grad():
                self._state = self.model.init_state(1)
            self._steps = 0
            self._last_stamp: int | None = None
            self._last_T: np.ndarray | None = None
            self._source = _NO_SOURCE
            self._last_view: ViewFeatures | None = None  # the last frame's features (the view jump check)
            self.last_tokens: Tensor | None = None  # the encoder's tokens of the last frame used
            self.last_query_tokens: Tensor | None = None  # ... and of the last picture asked about
            self._resume: Resume | None = None  # set by load(resume=...): how the next update continues
            self.last_continuation: Continuation | None = None  # what the last RESUMED update did
            if self._lost is not None:
                self._lost.reset()

    def snapshot(self) -> dict[str, Any]:
        """The episode's state in memory (a copy): `restore` brings the memory back to this moment. For
        evaluations that start several trials from one point (Mem-Nav's pictures); `save` is for files."""
        with self._lock:
            return copy.deepcopy(
                {
                    "state": self._state,
                    "steps": self._steps,
                    "last_stamp": self._last_stamp,
                    "last_T": self._last_T,
                    "source": self._source,
                    "resume": self._resume,
                    "last_view": self._last_view,
                }
            )

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a `snapshot` of this engine (the snapshot stays usable for another restore)."""
        snap = copy.deepcopy(snapshot)
        with self._lock:
            self._state, self._steps = snap["state"], snap["steps"]
            self._last_stamp, self._last_T, self._source = snap["last_stamp"], snap["last_T"], snap["source"]
            self._resume, self._last_view = snap.get("resume"), snap.get("last_view")
            if self._lost is not None:
                self._lost.reset()

    @property
    def resume_pending(self) -> bool:
        """Whether the memory was loaded to resume and waits for its first frame (`load`)."""
        return self._resume is not None

    @property
    def counters(self) -> dict[str, int]:
        """Frames used, frames dropped as out of order, and resets on a time jump, since construction."""
        return dict(self._counters)

    def update(
        self,
        image_rgb: np.ndarray,
        *,
        T_world_base: np.ndarray | None = None,  # noqa: N803 - the project's pose naming
        odometry: np.ndarray | None = None,
        stamp_ns: int,
        tokens: Tensor | None = None,
        prepared: PreparedFrame | None = None,
    ) -> str:
        """Fold one RGB image (H, W, 3) uint8, taken at `stamp_ns`, into the memory.

        Give exactly one of `T_world_base` (4x4 rigid base pose in a fixed frame) or `odometry`
        ((dx m, dy m, dyaw rad) since the previous update, in the previous base frame). The first update of
        an episode has no motion (its increment is zero whatever is given).

        Time: a frame stamped after the last one is used (returns `USED`). One stamped at or before the last,
        by at most `time_jump_reset_s`, arrived out of order (a late burst, a duplicate): it is dropped and
        counted, the memory unchanged (`DROPPED_LATE`). One stamped further back means time jumped (a
        restarted simulation or bag): the memory resets and starts again with it (`RESET_AND_USED`). So does
        a frame that shows the robot was carried off, when `jump_check` or `lost_check` is on (`memory.lost`;
        counted in `lost_resets`). The first frame after `load(..., resume=...)` is used whatever its stamp
        and continues the saved memory from where `resume` puts the robot in the saved frame, with no speed
        check (`RESUMED`). Bad
        input raises InvalidInputError and changes nothing, a reset included: that includes a base pose beyond
        `max_distance_m` from its frame's origin, a step longer than `max_speed_m_s` x the time since the
        last frame used + `step_slack_m`, and a frame that would make the state NaN or infinite.

        `tokens`: this image's encoder tokens when the caller already has them (`last_tokens` of an engine
        reading the same encoder weights with the same resize: `MemoryService` encodes each frame once for
        both of its engines); the image is still checked, not encoded again. `prepared`: `prepare(image_rgb)`
        of this very image, done beforehand outside any lock (the checks, the encoding and the view jump
        check's features): only the state transition is left to do here.
        """
        if prepared is not None and prepared.image_rgb is not image_rgb:
            raise InvalidInputError("update(prepared=...) was prepared from another image")
        with self._lock:
            stamp = self._check_stamp(stamp_ns)
            resume = self._resume
            order = NEW if resume else stamp_order(stamp, self._last_stamp, self.config.time_jump_reset_s)
            jump = order == JUMPED_BACK
            if order == LATE:
                self._counters["frames_dropped_late"] += 1
                return DROPPED_LATE
            if resume is not None:
                increment, source, T, cont = self._resumed_increment(T_world_base, odometry, resume, stamp)
            else:
                increment, source, T = self._increment(T_world_base, odometry, fresh=jump)
            if prepared is None:
                prepared = self.prepare(image_rgb, tokens)
            tokens, view = prepared.tokens, prepared.view
            self._check_distance(T)
            if resume is None:
                self._check_motion(increment, stamp, fresh=jump)  # well-formed, now is it plausible
            with torch.no_grad():
                jumped = not jump and resume is None and self._view_jumped(view, increment)
                lost = jumped or (not jump and resume is None and self._carried_away(tokens, increment))
                state = self.model.init_state(1) if (jump or lost) else self._state
                odom = torch.as_tensor(increment, dtype=tokens.dtype, device=self.device)[None]
                state = self._update_state(state, tokens, odom)
            if not _finite_state(state, new_only=True):
                raise InvalidInputError(
                    "this frame made the memory state NaN or infinite: refused, the memory kept as it was"
                )
            if jump:
                logger.warning(
                    "frame stamped %.3f s before the memory's last: time jumped back, the memory restarts",
                    (self._last_stamp - stamp) * 1e-9,
                )
                self.reset()
                self._counters["time_jump_resets"] += 1
            elif lost:
                logger.warning(
                    "the robot was carried away (%s): the memory restarts",
                    "the view changed completely while the odometry says it barely moved"
                    if jumped
                    else "the memory keeps placing what the camera sees far from it",
                )
                self.reset()
                self._counters["lost_resets"] += 1
            self._state, self._steps, self._last_stamp = state, self._steps + 1, stamp
            self._source, self._last_T, self._last_view = source, T, view
            self.last_tokens = tokens
            self._counters["frames_used"] += 1
            if resume is not None:
                self._resume, self.last_continuation = None, cont
                logger.info("the loaded memory resumed at stamp %d (%s)", stamp, resume.mode)
                return RESUMED
            return RESET_AND_USED if (jump or lost) else USED

    def prepare(self, image_rgb: np.ndarray, tokens: Tensor | None = None) -> PreparedFrame:
        """What `update` needs of an image that no state does: the image checked, its tokens (unless given)
        and the view jump check's features. Reads nothing the memory changes, so a caller can run it
        outside its own lock and keep the memory free for answers meanwhile (`MemoryService.update`).
        InvalidInputError for an image `update` would refuse."""
        image = self._image_tensor(image_rgb)
        if tokens is None:
            with torch.no_grad():
                tokens = self._encode(image)
        view = self._jump.features(image_rgb) if self._jump is not None else None
        return PreparedFrame(image_rgb, tokens, view)

    def _view_jumped(self, view: ViewFeatures | None, increment: np.ndarray) -> bool:
        """The view jump check (`memory.lost.ViewJumpCheck`): this frame against the last one."""
        if self._jump is None or view is None or self._last_view is None:
            return False
        return self._jump.jumped(self._last_view, view, increment)

    def _carried_away(self, tokens: Tensor, increment: np.ndarray) -> bool:
        """The lost check (`memory.lost`): where does the memory put this frame, before it is folded in?"""
        if self._lost is None or self._steps == 0:
            return False
        state = self._state
        if hasattr(self.model, "without_newest"):  # ask what it held before the last few metres
            state = self.model.without_newest(state, self.config.lost_ignore_newest)
        out = self.model.query(state, tokens)
        pose = out.pose[0].to("cpu", torch.float64).numpy()
        if pose.shape[-1] != POSE_DIMS["planar"] or not np.isfinite(pose).all():
            return False
        seen, sigma = float(torch.sigmoid(out.seen_logit[0])), float(torch.exp(out.log_sigma[0]))
        self._lost.observe(increment, (float(pose[0]), float(pose[1])), seen, sigma)
        return self._lost.lost

    def query(self, image_rgb: np.ndarray, tokens: Tensor | None = None) -> MemoryAnswer:
        """Where was `image_rgb` (H, W, 3) uint8 taken, relative to the robot now? Needs one update first.

        `tokens`: the picture's encoder tokens when the caller has them (`last_query_tokens` of an engine
        reading the same encoder, as for `update`); the picture is still checked."""
        with self._lock:
            if self._steps == 0:
                raise InvalidInputError(
                    "the memory is empty: update it with at least one image before querying"
                )
            image = self._image_tensor(image_rgb)
            contrast = float(image.float().mean(dim=1).std())  # grey levels of the model's input
            if contrast < self.config.min_query_contrast:
                raise InvalidInputError(
                    f"the picture shows nothing to recognise (grey-level spread {contrast:.1f} < "
                    f"min_query_contrast {self.config.min_query_contrast:g}): a black or uniform image"
                )
            with torch.no_grad():
                if tokens is None:
                    tokens = self._encode(image)
                self.last_query_tokens = tokens
                out = self.model.query(self._state, tokens)
            pose = out.pose[0].detach().to("cpu", torch.float64).numpy()
            numbers = (out.log_sigma[0], out.confidence[0], out.seen_logit[0])
            if not (np.isfinite(pose).all() and all(bool(torch.isfinite(v).all()) for v in numbers)):
                raise InvalidInputError(
                    "the memory's answer is NaN or infinite (a damaged state or model): not answering; "
                    "reset() the memory"
                )
            if pose.shape[-1] == POSE_DIMS["planar"]:
                x, y, yaw = float(pose[0]), float(pose[1]), math.atan2(pose[2], pose[3])
            else:
                x, y, yaw = (float(v) for v in planar_target(_se3_matrix(pose)))
            return MemoryAnswer(
                T_base_query=level_camera_pose(x, y, yaw, self.config.camera_height_m),
                x=x,
                y=y,
                yaw=yaw,
                sigma_m=float(torch.exp(out.log_sigma[0])),
                confidence=float(out.confidence[0]),
                seen_probability=float(torch.sigmoid(out.seen_logit[0])),
                backend=self.backend,
                steps=self._steps,
                stamp_ns=self._last_stamp,
            )

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary: backend, checkpoint, steps, last stamp, state bytes, parameter counts."""
        with self._lock:
            return {
                "backend": self.backend,
                "checkpoint": self.config.checkpoint,
                "steps": self._steps,
                "last_stamp_ns": self._last_stamp,
                "pose_source": self._source,
                "state_bytes": self.model.state_nbytes(self._state),
                "model_parameters": count_parameters(self.model),
                "encoder_parameters": count_parameters(self.encoder),
                "image_size": self.image_size,
                "resize": self.config.resize,
                **self._counters,
                "config_hash": self.config_hash[:12],
            }

    def state_payload(self) -> dict[str, Any]:
        """The memory state as plain data and CPU tensors, with the model's identity (what `save` writes and
        `MemoryService` embeds); InvalidInputError for a state that is NaN or infinite anywhere."""
        with self._lock:
            if not _finite_state(self._state) or (
                self._last_T is not None and not np.isfinite(self._last_T).all()
            ):
                raise InvalidInputError(
                    "the memory state is NaN or infinite: not saving it, reset() the memory"
                )
            return {
                "backend": self.backend,
                "config_hash": self.config_hash,
                "weights_hash": self.weights_hash,
                "model_config": _config_dict(self.model),
                "state": _pack_state(self._state),
                "steps": self._steps,
                "last_stamp_ns": -1 if self._last_stamp is None else self._last_stamp,
                "pose_source": self._source,
                "last_T_world_base": None if self._last_T is None else torch.from_numpy(self._last_T.copy()),
            }

    def save(self, path: str | Path) -> None:
        """Write the memory state to `path` atomically (temp file + rename), with the model's identity and a
        checksum. A state that is NaN or infinite anywhere is refused, and the file at `path` kept as is."""
        with self._lock:
            try:
                payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **self.state_payload()}
            except InvalidInputError as exc:
                raise InvalidInputError(f"{exc}; {path} is kept as it was") from exc
            buffer = io.BytesIO()
            torch.save(seal(payload), buffer)
            write_file_atomic(Path(path), buffer.getvalue())
        logger.info("saved %s memory state (%d steps) to %s", self.backend, payload["steps"], path)

    def load(self, path: str | Path, resume: Resume | None = None) -> None:
        """Replace the memory with the state saved in `path`; refuse (engine unchanged) a state of another
        backend, model config, weights or file version, or one that does not fit the model. `resume`: the
        state comes from an earlier session and the next update continues it (see the module docstring)."""
        path = Path(path)
        payload = read_versioned(
            path, STATE_FORMAT, STATE_VERSION, "memory state", legacy_versions=(UNSEALED_VERSION,)
        )
        self.apply_payload(self.check_payload(payload, path), resume)
        logger.info("loaded %s memory state (%d steps) from %s", self.backend, self._steps, path)

    def check_payload(self, payload: Any, path: str | Path) -> dict[str, Any]:
        """A saved state (`state_payload`) checked against this model, ready for `apply_payload`; refused
        (InvalidInputError naming `path`) when it is another backend's or model's, or malformed."""
        if not isinstance(payload, dict):
            raise InvalidInputError(f"{path}: the memory state is missing or malformed")
        problems = []
        if payload.get("backend") != self.backend:
            problems.append(f"it is a {payload.get('backend')!r} memory, this engine runs {self.backend!r}")
        elif payload.get("config_hash") != self.config_hash:
            problems.append(
                f"its model config differs: {_config_diff(payload.get('model_config'), self.model)}"
            )
        elif payload.get("weights_hash") != self.weights_hash:
            problems.append("it was written by a model with other weights (another checkpoint)")
        if problems:
            raise InvalidInputError(f"cannot load memory state {path}: {'; '.join(problems)}")
        state = self._unpack_checked(payload.get("state"), Path(path))
        steps, stamp = payload.get("steps"), payload.get("last_stamp_ns")
        source, last_T = payload.get("pose_source"), payload.get("last_T_world_base")
        if not isinstance(steps, int) or steps < 0 or not isinstance(stamp, int):
            raise InvalidInputError(f"{path}: steps / last_stamp_ns are missing or malformed")
        if source not in (_NO_SOURCE, _POSE, _ODOMETRY) or (source == _POSE) != isinstance(last_T, Tensor):
            raise InvalidInputError(f"{path}: pose_source / last_T_world_base are missing or inconsistent")
        T = check_pose(last_T.numpy(), f"{path}: last_T_world_base") if isinstance(last_T, Tensor) else None
        stamp = None if stamp < 0 else stamp
        return {"state": state, "steps": steps, "stamp": stamp, "source": source, "T": T}

    def apply_payload(self, checked: dict[str, Any], resume: Resume | None = None) -> None:
        """Make a `check_payload` result the memory (with `resume`: continued at the next update)."""
        with self._lock:
            self._state, self._steps = checked["state"], checked["steps"]
            self._last_stamp, self._source, self._last_T = checked["stamp"], checked["source"], checked["T"]
            self._resume, self.last_continuation = resume, None

    # -- input checks -------------------------------------------------------------------------------

    def _check_stamp(self, stamp_ns: Any) -> int:
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
            raise InvalidInputError(
                f"stamp_ns must be a non-negative integer (nanoseconds), got {stamp_ns!r}"
            )
        return int(stamp_ns)

    def _increment(
        self,
        T_world_base: np.ndarray | None,  # noqa: N803 - the project's pose naming
        odometry: np.ndarray | None,
        fresh: bool = False,
    ) -> tuple[np.ndarray, str, np.ndarray | None]:
        """(dx, dy, dyaw) since the last update, the pose source, and the base pose to remember; `fresh`:
        as the first update of a new episode (the memory is about to reset)."""
        if (T_world_base is None) == (odometry is None):
            raise InvalidInputError("give exactly one of T_world_base or odometry")
        if odometry is not None:
            inc = np.asarray(odometry, dtype=np.float64)
            if inc.shape != (3,) or not np.all(np.isfinite(inc)):
                raise InvalidInputError(f"odometry must be 3 finite numbers (dx, dy, dyaw), got {odometry!r}")
        else:
            T = check_pose(T_world_base, "T_world_base").copy()
        source, last_T, steps = (_NO_SOURCE, None, 0) if fresh else (self._source, self._last_T, self._steps)
        if source not in (_NO_SOURCE, _POSE if odometry is None else _ODOMETRY):
            raise InvalidInputError(
                f"this episode was fed {self._source} updates; keep to one kind, or reset() the memory"
            )
        if odometry is not None:
            return (np.zeros(3) if steps == 0 else inc), _ODOMETRY, None
        if last_T is None:
            return np.zeros(3), _POSE, T
        return odometry_increments(np.stack([last_T, T]))[1], _POSE, T

    def _resumed_increment(
        self,
        T_world_base: np.ndarray | None,  # noqa: N803 - the project's pose naming
        odometry: np.ndarray | None,
        resume: Resume,
        stamp: int,
    ) -> tuple[np.ndarray, str, np.ndarray | None, Continuation]:
        """The first update after a load: the step from the saved last base pose to where `resume` puts the
        base now in the saved frame (zero when it stands where it was saved), and the continuation."""
        if (T_world_base is None) == (odometry is None):
            raise InvalidInputError("give exactly one of T_world_base or odometry")
        wanted = _POSE if odometry is None else _ODOMETRY
        if self._source not in (_NO_SOURCE, wanted):
            raise InvalidInputError(
                f"the loaded memory was fed {self._source} updates; keep to one kind, or reset() the memory"
            )
        if odometry is not None and resume.mode != SAVED_POSE:
            raise InvalidInputError(
                "a memory fed odometry increments keeps no frame: it can resume only where it was saved"
            )
        T = None if T_world_base is None else check_pose(T_world_base, "T_world_base").copy()
        cont = continuation(resume, self._last_T, self._last_stamp, T, stamp)
        if T is None or self._last_T is None or cont.T_saved_base is None:
            return np.zeros(3), wanted, T, cont
        return odometry_increments(np.stack([self._last_T, cont.T_saved_base]))[1], wanted, T, cont

    def _check_distance(self, T: np.ndarray | None) -> None:
        """Refuse a base pose `T` beyond `max_distance_m` from its frame's origin (see EngineConfig)."""
        if T is not None:
            distance = math.hypot(*T[:3, 3])  # no overflow however far
            if distance > self.config.max_distance_m:
                raise InvalidInputError(
                    f"T_world_base is {distance:.3g} m from the origin of its frame, beyond max_distance_m = "
                    f"{self.config.max_distance_m:g} m: refused as a corrupt pose"
                )

    def _check_motion(self, increment: np.ndarray, stamp: int, fresh: bool) -> None:
        """Refuse a physically absurd step (see EngineConfig): a planar step longer than the top speed allows
        since the last frame used."""
        cfg = self.config
        if fresh or self._last_stamp is None:
            return  # the first frame of an episode: no step
        step = math.hypot(float(increment[0]), float(increment[1]))
        dt = (stamp - self._last_stamp) * 1e-9
        allowed = cfg.max_speed_m_s * dt + cfg.step_slack_m
        if step > allowed:
            raise InvalidInputError(
                f"the base moved {step:.3g} m in {dt:.3g} s, more than max_speed_m_s x dt + step_slack_m = "
                f"{allowed:.3g} m: refused as a jump of the odometry"
            )

    def _update_state(self, state: Any, tokens: Tensor, odometry: Tensor) -> Any:
        """The model's next state (traced when there is a trace; inputs checked either way)."""
        if self._traced is not None:
            return self._traced.update(state, tokens, odometry)
        return self.model.update(state, tokens, odometry)

    def _encode(self, image: Tensor) -> Tensor:
        """The (1, K, D) tokens of a (1, 3, S, S) image tensor (the traced encoder when there is one)."""
        return self._traced.encode(image) if self._traced is not None else self.encoder(image).tokens

    def _image_tensor(self, image: Any) -> Tensor:
        """(1, 3, S, S) uint8 tensor of an (H, W, 3) uint8 RGB image, resized per `config.resize`."""
        if not isinstance(image, np.ndarray):
            raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InvalidInputError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        size, (h, w) = self.image_size, image.shape[:2]
        if h < 1 or w < 1:
            raise InvalidInputError(f"image is empty: {w}x{h}")
        if (h, w) != (size, size):
            smallest = max(MIN_SIDE_PX, size // 4)
            if min(h, w) < smallest:
                raise InvalidInputError(
                    f"image is {w}x{h}: too small to read (the model needs at least {smallest} px on the "
                    f"short side; it reads {size}x{size})"
                )
            if max(h, w) > MAX_ASPECT * min(h, w):
                raise InvalidInputError(
                    f"image is {w}x{h}: a strip, not a camera picture (sides more than {MAX_ASPECT:g}:1; the "
                    f"model reads a {size}x{size} square, so it would see a sliver or a squashed view)"
                )
            if self.config.resize == "none":
                raise InvalidInputError(
                    f"image is {w}x{h}, the {self.backend} model reads {size}x{size} "
                    "(set resize to 'crop' or 'stretch' to accept other sizes)"
                )
            if self.config.resize == "crop":
                side = min(h, w)
                top, left = (h - side) // 2, (w - side) // 2
                image = image[top : top + side, left : left + side]
            image = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=cv2.INTER_AREA)
        chw = np.ascontiguousarray(image.transpose(2, 0, 1))
        return torch.from_numpy(chw)[None].to(self.device)

    def _unpack_checked(self, packed: Any, path: Path) -> Any:
        """The saved state, refused unless it has the shapes and dtype of this model's states."""
        template = self.model.init_state(1)
        try:
            state = _unpack_state(packed)
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"{path}: malformed memory state ({exc})") from exc
        if isinstance(template, Tensor):
            ok = isinstance(state, Tensor) and state.shape == template.shape and state.dtype == template.dtype
            tensors = [state] if isinstance(state, Tensor) else []
        elif isinstance(template, HistoryState):
            ok = (
                isinstance(state, HistoryState)
                and state.frames.shape[0] == 1
                and state.frames.shape[2:] == template.frames.shape[2:]
                and tuple(state.poses.shape) == (1, state.length, 3)
                and tuple(state.pose.shape) == (1, 3)
            )
            tensors = [state.frames, state.poses, state.pose] if isinstance(state, HistoryState) else []
        else:  # pragma: no cover - every registered model has one of the two
            raise InvalidInputError(f"cannot load a state of a {type(template).__name__}")
        if not ok:
            raise InvalidInputError(f"{path}: the saved state does not fit the {self.backend} model's state")
        if not all(torch.isfinite(t).all() for t in tensors):
            raise InvalidInputError(f"{path}: the saved state contains NaN or infinite values")
        return _to_device(state, self.device)


# ---------------------------------------------------------------------------------------------------------
# helpers


def _config_dict(model: MemoryModel) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(model.config)))  # tuples -> lists, plain data


def _identity(model: MemoryModel, encoder: ImageEncoder) -> tuple[str, str]:
    """sha256 of the model name and both configs, and sha256 of all weights (names, shapes, bytes)."""
    configs = {
        "model": model.name,
        "model_config": dataclasses.asdict(model.config),
        "encoder_config": dataclasses.asdict(encoder.config),
    }
    config_hash = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()
    weights = hashlib.sha256()
    for prefix, module in (("model.", model), ("encoder.", encoder)):
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
            weights.update(f"{prefix}{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
            weights.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return config_hash, weights.hexdigest()


def _config_diff(saved: Any, model: MemoryModel) -> str:
    ours = _config_dict(model)
    if not isinstance(saved, dict):
        return "the file has no readable model config"
    diffs = [f"{k}={saved.get(k)!r} (this model: {v!r})" for k, v in ours.items() if saved.get(k) != v]
    return ", ".join(diffs) or "the encoder config differs"


def _pack_state(state: Any) -> dict[str, Any]:
    if isinstance(state, Tensor):
        return {"kind": "tensor", "tensor": state.detach().cpu()}
    if isinstance(state, HistoryState):
        fields = {f.name: getattr(state, f.name).detach().cpu() for f in dataclasses.fields(state)}
        return {"kind": "history", **fields}
    raise InvalidInputError(f"cannot save a memory state of type {type(state).__name__}")


def _unpack_state(packed: Any) -> Any:
    if not isinstance(packed, dict):
        raise TypeError(f"expected a mapping, got {type(packed).__name__}")
    if packed["kind"] == "tensor":
        return packed["tensor"]
    if packed["kind"] == "history":
        return HistoryState(frames=packed["frames"], poses=packed["poses"], pose=packed["pose"])
    raise KeyError(f"unknown state kind {packed['kind']!r}")


def _finite_state(state: Any, new_only: bool = False) -> bool:
    """Whether a model state holds only finite numbers. `new_only`: for a HistoryState, only the current pose
    and the newest stored frame (the older ones were checked when they came, so an update costs O(1))."""
    if isinstance(state, Tensor):
        return bool(torch.isfinite(state).all())
    if isinstance(state, HistoryState):
        frames, poses = (
            (state.frames[:, -1:], state.poses[:, -1:]) if new_only else (state.frames, state.poses)
        )
        return all(bool(torch.isfinite(t).all()) for t in (frames, poses, state.pose))
    raise InvalidInputError(f"cannot check a memory state of type {type(state).__name__}")


def _to_device(state: Any, device: torch.device) -> Any:
    if isinstance(state, Tensor):
        return state.to(device)
    return HistoryState(*(getattr(state, f.name).to(device) for f in dataclasses.fields(state)))


def _se3_matrix(pose: np.ndarray) -> np.ndarray:
    """4x4 from an se3 answer (x, y, z, first two rotation columns), orthonormalised (Gram-Schmidt)."""
    a, b = pose[3:6], pose[6:9]
    c1 = a / max(np.linalg.norm(a), 1e-9)
    b = b - c1 * (c1 @ b)
    c2 = b / max(np.linalg.norm(b), 1e-9)
    T = np.eye(4)
    T[:3, :3] = np.stack([c1, c2, np.cross(c1, c2)], axis=1)
    T[:3, 3] = pose[:3]
    return T

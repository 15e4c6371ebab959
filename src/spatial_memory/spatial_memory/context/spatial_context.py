"""SpatialContext: the pose history, the keyframes the policy promotes, the BEV map and the watermarks.

Typical loop (the high-level policy, about 1 Hz)::

    ctx = SpatialContext(ContextConfig(), kinematics=FR3Kinematics(...))
    fid = ctx.add_frame(q, stamp_ns=t, image=rgb)          # fixed arm: camera pose through FK
    fid = ctx.add_frame(q, T_world_base=T_odom, image=rgb)  # mobile: odometry base pose composed with FK
    fid = ctx.add_frame(T_world_cam=T, image=rgb)           # any camera pose computed elsewhere
    map_rgb, styles = ctx.generate_map()                    # RGB uint8 (H, W, 3), one style per keyframe
    marked = ctx.watermark_keyframes(ctx.keyframe_images(), styles)
    ctx.promote_to_keyframe(fid)                            # now, or later while fid is in the history

Saving: `save(path, robot)` writes the pose history, the keyframes and their images to one sealed file
(atomic, checksummed: `saved_state`), `load(path, robot, resume)` reads it back, refusing a file of another
robot (its frames) or a damaged one and changing nothing, and `reset()` forgets everything. The map needs
nothing else: it is drawn from the keyframes and the newest frame. A context loaded with `resume` (an
earlier session: a new odometry frame, maybe a new clock) moves every saved pose and stamp into this session
at the next `add_frame` (by default: the robot stands where it was saved; see `saved_state.Resume`).

Memory: poses are small, but images are kept by reference (not copied) for the newest
`ContextConfig.max_images` frames and for every keyframe, so do not modify an array after passing it in,
and pass images only as often as frames may be promoted (e.g. at the policy rate, not the camera rate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from spatial_memory.context import bev
from spatial_memory.context.config import ContextConfig
from spatial_memory.context.history import FrameRecord, PoseHistory
from spatial_memory.context.palette import KeyframeStyle
from spatial_memory.context.watermark import watermark_images
from spatial_memory.errors import InvalidInputError, SpatialMemoryError, UnknownFrameError
from spatial_memory.geometry import check_pose
from spatial_memory.saved_state import (
    Continuation,
    Resume,
    continuation,
    identity_differences,
    read_sealed_arrays,
    utc_now,
    write_sealed_arrays,
)

CONTEXT_STATE_FORMAT = "spatial_memory.spatial_context_state"
CONTEXT_STATE_VERSION = 1


@runtime_checkable
class PoseModel(Protocol):
    """Forward kinematics: `forward(q, frame)` is the 4x4 pose T_base_frame of `frame` at joint vector q."""

    def forward(self, q: np.ndarray, frame: str) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A promoted frame. `number` (1..K) is its place in frame order and picks its colour."""

    number: int
    frame_id: int
    T_world_cam: np.ndarray
    T_world_base: np.ndarray | None
    stamp_ns: int | None
    rgb: tuple[int, int, int]
    text_rgb: tuple[int, int, int]

    @property
    def style(self) -> KeyframeStyle:
        return KeyframeStyle(self.number, self.frame_id, self.rgb, self.text_rgb)


def _frozen_pose(T: np.ndarray, name: str) -> np.ndarray:
    out = np.array(check_pose(T, name), dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8 (RGB or grayscale), got dtype {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        raise InvalidInputError(f"image must be HxW, HxWx1, HxWx3 (RGB) or HxWx4, got shape {image.shape}")
    if min(image.shape[:2]) < 8:
        raise InvalidInputError(f"image is too small: {image.shape}")
    return image


class SpatialContext:
    """Pose history + keyframes + egocentric BEV map (see the module docstring for the loop)."""

    def __init__(self, config: ContextConfig | None = None, kinematics: PoseModel | None = None) -> None:
        self.config = config or ContextConfig()
        if kinematics is not None and not callable(getattr(kinematics, "forward", None)):
            raise InvalidInputError("kinematics must have a forward(q, frame) -> 4x4 method")
        self.kinematics = kinematics
        self._history = PoseHistory(self.config.history_capacity, self.config.max_images)
        self._keyframes: dict[int, tuple[FrameRecord, np.ndarray | None]] = {}  # frame id -> record, image
        self._resume: Resume | None = None  # set by load(resume=...): how the next frame continues
        self.last_continuation: Continuation | None = None  # what the last resumed frame did

    # -- frames -------------------------------------------------------------------------------------

    def add_frame(
        self,
        robot_state: np.ndarray | Sequence[float] | None = None,
        *,
        T_world_cam: np.ndarray | None = None,
        T_world_base: np.ndarray | None = None,
        stamp_ns: int | None = None,
        image: np.ndarray | None = None,
    ) -> int:
        """Add the current frame and return its id (0, 1, 2, ...).

        Give either `robot_state` (joint positions; the camera pose is
        `(T_world_base or I) @ kinematics.forward(q, config.camera_frame)`) or `T_world_cam` (used as is).
        `T_world_base` (mobile robot: from odometry) is stored and centres/orients the map. `stamp_ns`
        (int nanoseconds) must increase strictly. `image` (uint8 RGB or grayscale) is kept by reference.
        A camera or base pose farther than `config.max_pose_distance_m` from the world origin is absurd.
        Bad input raises `InvalidInputError` and leaves the context unchanged.
        """
        if (robot_state is None) == (T_world_cam is None):
            raise InvalidInputError("add_frame needs exactly one of robot_state or T_world_cam")
        base = None if T_world_base is None else _frozen_pose(T_world_base, "T_world_base")
        if robot_state is not None:
            cam = self._camera_from_joints(robot_state, base)
        else:
            cam = _frozen_pose(T_world_cam, "T_world_cam")
        for name, T in (("T_world_base", base), ("T_world_cam", cam)):
            self._check_distance(T, name)
        if self._resume is None:
            self._history.check_stamp(stamp_ns)
        img = None if image is None else _check_image(image)
        if self._resume is not None:
            return self._append_resumed(cam, base, stamp_ns, img)
        return self._history.append(cam, base, stamp_ns, img)

    def _check_distance(self, T: np.ndarray | None, name: str) -> None:
        """Refuse a pose farther from the world origin than `config.max_pose_distance_m` (absurd: a corrupt
        pose; one such keyframe would set the map's scale and collapse the real ones onto the robot)."""
        if T is None:
            return
        distance = math.hypot(*T[:3, 3])  # no overflow however far
        if distance > self.config.max_pose_distance_m:
            raise InvalidInputError(
                f"{name} is {distance:.3g} m from the world origin, beyond max_pose_distance_m = "
                f"{self.config.max_pose_distance_m:g} m: refused as a corrupt pose (raise the limit if the "
                "robot really goes that far)"
            )

    def _camera_from_joints(self, robot_state: Any, base: np.ndarray | None) -> np.ndarray:
        if self.kinematics is None:
            raise InvalidInputError(
                "add_frame(robot_state) needs a kinematics model: SpatialContext(config, kinematics=...); "
                "or pass T_world_cam"
            )
        try:
            q = np.asarray(robot_state, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"robot_state must be a vector of joint positions: {exc}") from exc
        if q.ndim != 1 or q.size == 0:
            raise InvalidInputError(f"robot_state must be a 1-D joint vector, got shape {q.shape}")
        if not np.all(np.isfinite(q)):
            raise InvalidInputError("robot_state contains NaN or infinite values")
        try:
            T_base_cam = self.kinematics.forward(q, self.config.camera_frame)
        except SpatialMemoryError:
            raise
        except (ValueError, KeyError, IndexError) as exc:
            raise InvalidInputError(f"forward kinematics rejected robot_state: {exc}") from exc
        T_base_cam = check_pose(T_base_cam, f"FK pose of {self.config.camera_frame}")
        cam = T_base_cam if base is None else base @ T_base_cam
        return _frozen_pose(cam, "T_world_cam")

    def frame(self, frame_id: int) -> FrameRecord:
        """The stored record of a frame still in the history (`UnknownFrameError` otherwise)."""
        return self._history.get(frame_id)

    def __len__(self) -> int:
        """Frames currently held in the pose history."""
        return len(self._history)

    @property
    def latest_frame_id(self) -> int | None:
        """Id of the newest frame, or None before the first."""
        return self._history.latest_id

    @property
    def history(self) -> PoseHistory:
        return self._history

    # -- files --------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every frame and keyframe (frame ids start again at 0)."""
        self._history = PoseHistory(self.config.history_capacity, self.config.max_images)
        self._keyframes = {}
        self._resume = None

    @property
    def resume_pending(self) -> bool:
        """Whether a loaded context waits for its first frame to resume (`load`)."""
        return self._resume is not None

    def identity(self, robot: dict[str, Any] | None = None) -> dict[str, Any]:
        """The robot identity a saved file must match: the caller's (mode, frames) and the camera frame."""
        return {**(robot or {}), "camera_frame": self.config.camera_frame}

    def save(self, path: str | Path, robot: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the pose history (with its images) and the keyframes (with theirs) to `path` atomically,
        sealed, under a header naming the robot (`identity`) and the save time; returns the header."""
        records = self._history.records()
        images = self._history.images()
        arrays = _pack_records("", records)
        arrays.update({f"image_{fid}": img for fid, img in images.items()})
        kf_records = [rec for rec, _ in self._keyframes.values()]
        arrays.update(_pack_records("kf_", kf_records))
        for rec, img in self._keyframes.values():
            if img is not None and img is not images.get(rec.frame_id):
                arrays[f"kf_image_{rec.frame_id}"] = img
        last = self._history.last_stamp_ns
        header = {
            "format": CONTEXT_STATE_FORMAT,
            "version": CONTEXT_STATE_VERSION,
            "saved_at": utc_now(),
            "robot": self.identity(robot),
            "frames": len(records),
            "keyframes": len(kf_records),
            "next_frame_id": self._history.next_id,
            "last_stamp_ns": -1 if last is None else last,
        }
        write_sealed_arrays(path, header, arrays)
        return header

    def load(
        self, path: str | Path, robot: dict[str, Any] | None = None, resume: Resume | None = None
    ) -> dict[str, Any]:
        """Replace the pose history and keyframes with those saved in `path`; returns the file's header.

        Refused (InvalidInputError, one message, nothing changed): a missing, damaged (checksum) or foreign
        file, one of another robot (`identity`: every difference named) or malformed content. A smaller
        `history_capacity` or `max_images` than the saver's keeps the newest frames and images. `resume`:
        the file comes from an earlier session, the next `add_frame` ties its poses and stamps to this one
        (`saved_state`); None: the same frame and clock as when saved."""
        header, arrays = read_sealed_arrays(
            path, CONTEXT_STATE_FORMAT, CONTEXT_STATE_VERSION, "spatial context"
        )
        problems = identity_differences("robot", header.get("robot"), self.identity(robot))
        if problems:
            raise InvalidInputError(
                f"cannot load spatial context {path}: it was saved by another robot: {'; '.join(problems)}. "
                "Nothing was changed"
            )
        where = f"spatial context {path}"
        try:
            next_id, last = int(header["next_frame_id"]), int(header["last_stamp_ns"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{where}: the header lacks next_frame_id / last_stamp_ns") from exc
        records = _unpack_records(arrays, "", where)
        images = {r.frame_id: _saved_image(arrays, f"image_{r.frame_id}", where) for r in records}
        history = PoseHistory.restored(
            self.config.history_capacity,
            self.config.max_images,
            records,
            {fid: img for fid, img in images.items() if img is not None},
            next_id,
            None if last < 0 else last,
        )
        keyframes = {}
        for rec in _unpack_records(arrays, "kf_", where):
            img = _saved_image(arrays, f"kf_image_{rec.frame_id}", where)
            keyframes[rec.frame_id] = (rec, img if img is not None else images.get(rec.frame_id))
        self._history, self._keyframes, self._resume = history, dict(sorted(keyframes.items())), resume
        return header

    def _append_resumed(
        self, cam: np.ndarray, base: np.ndarray | None, stamp_ns: int | None, image: np.ndarray | None
    ) -> int:
        """The first frame after a load with `resume`: move every saved pose and stamp into this session
        (`saved_state.continuation` from the saved newest base pose to this frame's), then add the frame.
        All or nothing: a refused frame leaves the loaded context as it was, still waiting to resume."""
        latest = self._history.latest()
        last = self._history.last_stamp_ns
        stamp = int(stamp_ns) if stamp_ns is not None else (last or 0) + 1
        cont = continuation(self._resume, None if latest is None else latest.T_world_base, last, base, stamp)

        def moved(rec: FrameRecord) -> FrameRecord:
            cam_now = _frozen_pose(cont.pose(rec.T_world_cam), "T_world_cam")
            base_now = None if rec.T_world_base is None else _frozen_pose(cont.pose(rec.T_world_base), "base")
            self._check_distance(cam_now, f"frame {rec.frame_id}'s camera moved into this session")
            stamp_now = None if rec.stamp_ns is None else cont.stamp(rec.stamp_ns)
            return FrameRecord(rec.frame_id, cam_now, base_now, stamp_now)

        history = PoseHistory.restored(
            self._history.capacity,
            self._history.max_images,
            [moved(r) for r in self._history.records()],
            self._history.images(),
            self._history.next_id,
            None if last is None else cont.stamp(last),
        )
        keyframes = {fid: (moved(rec), img) for fid, (rec, img) in self._keyframes.items()}
        history.check_stamp(stamp_ns)
        fid = history.append(cam, base, stamp_ns, image)
        self._history, self._keyframes, self._resume = history, keyframes, None
        self.last_continuation = cont
        return fid

    # -- keyframes ----------------------------------------------------------------------------------

    def promote_to_keyframe(self, frame_id: int) -> None:
        """Make a frame still in the pose history a keyframe (no-op if it already is one).

        The keyframe keeps its own copy of the pose (and the image reference), so it outlives the
        history's ring buffer. Keyframes are numbered in frame order.
        """
        fid = self._history.check(frame_id)
        if fid in self._keyframes:
            return
        self._keyframes[fid] = (self._history.get(fid), self._history.image(fid))
        self._keyframes = dict(sorted(self._keyframes.items()))

    def remove_keyframe(self, frame_id: int) -> None:
        """Demote a keyframe; `UnknownFrameError` if `frame_id` is not one. Later keyframes renumber."""
        if isinstance(frame_id, bool) or not isinstance(frame_id, (int, np.integer)):
            raise UnknownFrameError(f"keyframe ids are integers, got {frame_id!r}")
        if int(frame_id) not in self._keyframes:
            raise UnknownFrameError(
                f"frame {int(frame_id)} is not a keyframe (keyframes: {sorted(self._keyframes) or 'none'})"
            )
        del self._keyframes[int(frame_id)]

    def set_keyframes(self, frame_ids: Iterable[int]) -> None:
        """Make exactly `frame_ids` the keyframes (e.g. `KeyframeSelector.keyframes()`), all or nothing:
        an id that is neither a keyframe nor in the history raises before anything changes."""
        wanted = []
        for f in frame_ids:
            if isinstance(f, (int, np.integer)) and not isinstance(f, bool) and int(f) in self._keyframes:
                wanted.append(int(f))
            else:
                wanted.append(self._history.check(f))
        new = {fid: self._keyframes.get(fid) for fid in sorted(set(wanted))}
        for fid, v in new.items():
            if v is None:
                new[fid] = (self._history.get(fid), self._history.image(fid))
        self._keyframes = new

    def is_keyframe(self, frame_id: int) -> bool:
        """Whether `frame_id` is a keyframe; a non-integer id is malformed input (InvalidInputError)."""
        if isinstance(frame_id, bool) or not isinstance(frame_id, (int, np.integer)):
            raise InvalidInputError(f"frame ids are integers, got {frame_id!r}")
        return int(frame_id) in self._keyframes

    @property
    def keyframes(self) -> list[Keyframe]:
        """Keyframes in frame order, numbered 1..K, with their colours."""
        out = []
        for number, (rec, _img) in enumerate(self._keyframes.values(), start=1):
            style = KeyframeStyle.for_number(number, rec.frame_id)
            out.append(
                Keyframe(
                    number,
                    rec.frame_id,
                    rec.T_world_cam,
                    rec.T_world_base,
                    rec.stamp_ns,
                    style.rgb,
                    style.text_rgb,
                )
            )
        return out

    def keyframe_styles(self) -> list[KeyframeStyle]:
        """Number and colours of each keyframe, in keyframe order."""
        return [KeyframeStyle.for_number(n, fid) for n, fid in enumerate(self._keyframes, start=1)]

    def keyframe_images(self) -> list[np.ndarray | None]:
        """Each keyframe's image (None where the frame had none or its image had been dropped)."""
        return [img for _rec, img in self._keyframes.values()]

    # -- map ----------------------------------------------------------------------------------------

    def map_layout(self) -> bev.MapLayout:
        """Geometry of the map `generate_map` draws (marker pixels, true positions, outliers, scale)."""
        latest = self._history.latest()
        poses = np.array([rec.T_world_cam for rec, _ in self._keyframes.values()]).reshape(-1, 4, 4)
        return bev.layout(
            poses,
            None if latest is None else latest.T_world_cam,
            None if latest is None else latest.T_world_base,
            self.config.map,
        )

    def generate_map(self) -> tuple[np.ndarray, list[KeyframeStyle]]:
        """The egocentric BEV map, RGB uint8 of shape (size_px, size_px, 3), and one style per keyframe
        (number, frame id, fill and text colour, RGB) in keyframe order. Before the first frame the map
        is centred on the world origin, facing world +x."""
        return bev.render(self.map_layout(), self.config.map), self.keyframe_styles()

    def watermark_keyframes(
        self, images: Sequence[np.ndarray], colors: Sequence[KeyframeStyle]
    ) -> list[np.ndarray]:
        """New RGB images: `images[i]` with a square in `colors[i]`'s colour and number (inputs untouched).
        Grayscale and RGBA inputs are converted to RGB."""
        return watermark_images(images, colors, self.config.map)


def _pack_records(prefix: str, records: Sequence[FrameRecord]) -> dict[str, np.ndarray]:
    """Frame records as arrays named `prefix` + ids, camera and base poses, stamps (and which are set)."""
    return {
        f"{prefix}frame_ids": np.array([r.frame_id for r in records], np.int64),
        f"{prefix}T_world_cam": np.array([r.T_world_cam for r in records], np.float64).reshape(-1, 4, 4),
        f"{prefix}T_world_base": np.array(
            [np.eye(4) if r.T_world_base is None else r.T_world_base for r in records], np.float64
        ).reshape(-1, 4, 4),
        f"{prefix}has_base": np.array([r.T_world_base is not None for r in records], bool),
        f"{prefix}stamps": np.array([-1 if r.stamp_ns is None else r.stamp_ns for r in records], np.int64),
    }


def _unpack_records(arrays: dict[str, np.ndarray], prefix: str, where: str) -> list[FrameRecord]:
    """`_pack_records`' arrays back as checked, frozen frame records; InvalidInputError when malformed."""
    try:
        ids, cams = arrays[f"{prefix}frame_ids"], arrays[f"{prefix}T_world_cam"]
        bases, has_base = arrays[f"{prefix}T_world_base"], arrays[f"{prefix}has_base"]
        stamps = arrays[f"{prefix}stamps"]
    except KeyError as exc:
        raise InvalidInputError(f"{where}: {exc.args[0]} is missing") from exc
    n = len(ids)
    shapes = (ids.shape, cams.shape, bases.shape, has_base.shape, stamps.shape)
    if (
        shapes != ((n,), (n, 4, 4), (n, 4, 4), (n,), (n,))
        or ids.dtype.kind != "i"
        or stamps.dtype.kind != "i"
    ):
        raise InvalidInputError(f"{where}: the saved {prefix or 'history '}frames are malformed")
    return [
        FrameRecord(
            int(ids[i]),
            _frozen_pose(cams[i], f"{where}: frame {int(ids[i])}'s camera pose"),
            _frozen_pose(bases[i], f"{where}: frame {int(ids[i])}'s base pose") if has_base[i] else None,
            None if stamps[i] < 0 else int(stamps[i]),
        )
        for i in range(n)
    ]


def _saved_image(arrays: dict[str, np.ndarray], name: str, where: str) -> np.ndarray | None:
    """A saved image (checked as `add_frame` checks images), None when there is none by that name."""
    if name not in arrays:
        return None
    try:
        return _check_image(arrays[name])
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {name}: {exc}") from exc

"""SpatialContext: the pose history, the keyframes the policy promotes, the BEV map and the watermarks.

Typical loop (the high-level policy, about 1 Hz)::

    ctx = SpatialContext(ContextConfig(), kinematics=FR3Kinematics(...))
    fid = ctx.add_frame(q, stamp_ns=t, image=rgb)          # fixed arm: camera pose through FK
    fid = ctx.add_frame(q, T_world_base=T_odom, image=rgb)  # mobile: odometry base pose composed with FK
    fid = ctx.add_frame(T_world_cam=T, image=rgb)           # any camera pose computed elsewhere
    map_rgb, styles = ctx.generate_map()                    # RGB uint8 (H, W, 3), one style per keyframe
    marked = ctx.watermark_keyframes(ctx.keyframe_images(), styles)
    ctx.promote_to_keyframe(fid)                            # now, or later while fid is in the history

Memory: poses are small, but images are kept by reference (not copied) for the newest
`ContextConfig.max_images` frames and for every keyframe, so do not modify an array after passing it in,
and pass images only as often as frames may be promoted (e.g. at the policy rate, not the camera rate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from spatial_memory.context import bev
from spatial_memory.context.config import ContextConfig
from spatial_memory.context.history import FrameRecord, PoseHistory
from spatial_memory.context.palette import KeyframeStyle
from spatial_memory.context.watermark import watermark_images
from spatial_memory.errors import InvalidInputError, SpatialMemoryError, UnknownFrameError
from spatial_memory.geometry import check_pose


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
        self._history.check_stamp(stamp_ns)
        img = None if image is None else _check_image(image)
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

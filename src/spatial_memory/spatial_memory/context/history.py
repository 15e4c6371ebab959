"""Bounded pose history: the newest `capacity` frames, addressable by their increasing frame id.

Frame ids are handed out 0, 1, 2, ... in arrival order, so the history is a ring buffer indexed by
`frame_id % capacity`. Looking up a frame that is no longer held says whether it aged out (it was added,
but `capacity` newer frames pushed it out) or was never added. Images are optional and kept by reference
for the newest `max_images` frames only; older frames keep their pose and lose the image reference.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from spatial_memory.errors import InvalidInputError, UnknownFrameError


@dataclass(frozen=True)
class FrameRecord:
    """One frame's pose. `T_world_base` is set in the mobile case (odometry), else None."""

    frame_id: int
    T_world_cam: np.ndarray
    T_world_base: np.ndarray | None = None
    stamp_ns: int | None = None


class PoseHistory:
    """Ring buffer of the newest `capacity` frame records, plus image references for the newest frames."""

    def __init__(self, capacity: int = 1024, max_images: int = 64) -> None:
        if capacity < 1:
            raise InvalidInputError(f"history capacity must be >= 1, got {capacity}")
        if max_images < 0:
            raise InvalidInputError(f"max_images must be >= 0, got {max_images}")
        self.capacity = capacity
        self.max_images = min(max_images, capacity)  # images never outlive their frame
        self._slots: list[FrameRecord | None] = [None] * capacity
        self._next_id = 0
        self._last_stamp: int | None = None
        self._images: dict[int, np.ndarray] = {}
        self._image_order: deque[int] = deque()

    # -- queries ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of frames held (at most `capacity`)."""
        return min(self._next_id, self.capacity)

    def __contains__(self, frame_id: object) -> bool:
        return isinstance(frame_id, (int, np.integer)) and self.oldest_id <= int(frame_id) < self._next_id

    @property
    def next_id(self) -> int:
        """The id the next added frame will get (= number of frames ever added)."""
        return self._next_id

    @property
    def oldest_id(self) -> int:
        """Id of the oldest frame still held (== next_id when empty)."""
        return max(0, self._next_id - self.capacity)

    @property
    def latest_id(self) -> int | None:
        """Id of the newest frame, or None before the first frame."""
        return self._next_id - 1 if self._next_id else None

    @property
    def last_stamp_ns(self) -> int | None:
        return self._last_stamp

    def check(self, frame_id: int) -> int:
        """`frame_id` as int if held, else `UnknownFrameError` saying why (aged out / never added)."""
        if isinstance(frame_id, bool) or not isinstance(frame_id, (int, np.integer)):
            raise UnknownFrameError(f"frame ids are integers, got {frame_id!r}")
        fid = int(frame_id)
        if fid < 0 or fid >= self._next_id:
            held = f"frames so far: 0..{self._next_id - 1}" if self._next_id else "no frames added yet"
            raise UnknownFrameError(f"frame {fid} was never added ({held})")
        if fid < self.oldest_id:
            raise UnknownFrameError(
                f"frame {fid} has aged out of the pose history "
                f"(oldest kept: {self.oldest_id}, capacity {self.capacity})"
            )
        return fid

    def get(self, frame_id: int) -> FrameRecord:
        """The record of a held frame; `UnknownFrameError` otherwise."""
        fid = self.check(frame_id)
        record = self._slots[fid % self.capacity]
        assert record is not None and record.frame_id == fid
        return record

    def image(self, frame_id: int) -> np.ndarray | None:
        """The image of a held frame, or None if none was given or it was dropped (max_images)."""
        return self._images.get(self.check(frame_id))

    def frame_at(self, stamp_ns: int, tolerance_ns: int) -> int:
        """Id of the held frame captured nearest `stamp_ns`, at most `tolerance_ns` away; UnknownFrameError
        when none is (frames without a stamp never match). A scan of at most `capacity` records."""
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise InvalidInputError(f"stamp_ns must be an integer number of nanoseconds, got {stamp_ns!r}")
        target = int(stamp_ns)
        best, best_gap = None, tolerance_ns
        for fid in range(self.oldest_id, self._next_id):
            stamp = self.get(fid).stamp_ns
            if stamp is not None and abs(stamp - target) <= best_gap:
                best, best_gap = fid, abs(stamp - target)
        if best is None:
            raise UnknownFrameError(
                f"no frame in the pose history was captured within {tolerance_ns * 1e-9:g} s of {target} ns"
            )
        return best

    def latest(self) -> FrameRecord | None:
        """The newest record, or None before the first frame."""
        return None if self._next_id == 0 else self.get(self._next_id - 1)

    # -- updates ------------------------------------------------------------------------------------

    def check_stamp(self, stamp_ns: int | None) -> int | None:
        """Validate a stamp for the next frame (int ns, strictly after the last one); state untouched."""
        if stamp_ns is None:
            return None
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise InvalidInputError(f"stamp_ns must be an integer number of nanoseconds, got {stamp_ns!r}")
        stamp = int(stamp_ns)
        if stamp < 0:
            raise InvalidInputError(f"stamp_ns must be >= 0, got {stamp}")
        if self._last_stamp is not None and stamp <= self._last_stamp:
            what = "repeats" if stamp == self._last_stamp else "goes backwards from"
            raise InvalidInputError(f"stamp_ns {stamp} {what} the previous frame's stamp {self._last_stamp}")
        return stamp

    def append(
        self,
        T_world_cam: np.ndarray,
        T_world_base: np.ndarray | None = None,
        stamp_ns: int | None = None,
        image: np.ndarray | None = None,
    ) -> int:
        """Store a frame (poses already validated by the caller) and return its id."""
        stamp = self.check_stamp(stamp_ns)
        fid = self._next_id
        slot = fid % self.capacity
        evicted = self._slots[slot]
        if evicted is not None:
            self._images.pop(evicted.frame_id, None)
        self._slots[slot] = FrameRecord(fid, T_world_cam, T_world_base, stamp)
        self._next_id += 1
        if stamp is not None:
            self._last_stamp = stamp
        if image is not None and self.max_images > 0:
            self._images[fid] = image
            self._image_order.append(fid)
        while len(self._image_order) > self.max_images or (
            self._image_order and self._image_order[0] not in self._images
        ):
            self._images.pop(self._image_order.popleft(), None)
        return fid

    # -- saving -------------------------------------------------------------------------------------

    def records(self) -> list[FrameRecord]:
        """Every held record, oldest first."""
        return [self.get(fid) for fid in range(self.oldest_id, self._next_id)]

    def images(self) -> dict[int, np.ndarray]:
        """The held images by frame id (references, not copies)."""
        return dict(self._images)

    @classmethod
    def restored(
        cls,
        capacity: int,
        max_images: int,
        records: list[FrameRecord],
        images: dict[int, np.ndarray],
        next_id: int,
        last_stamp_ns: int | None,
    ) -> PoseHistory:
        """A history holding `records` (consecutive frame ids ending at `next_id - 1`, oldest first), the
        newest `capacity` of them and the newest `max_images` of their images: a saved history read back."""
        history = cls(capacity, max_images)
        ids = [r.frame_id for r in records]
        if ids and (ids != list(range(ids[0], ids[0] + len(ids))) or ids[-1] != next_id - 1 or ids[0] < 0):
            raise InvalidInputError("saved frame ids are not consecutive up to the next id")
        if next_id < len(ids):
            raise InvalidInputError(f"next frame id {next_id} is below the {len(ids)} frames saved")
        kept = records[-capacity:]
        for record in kept:
            history._slots[record.frame_id % capacity] = record
        history._next_id = next_id
        history._last_stamp = last_stamp_ns
        if history.max_images:
            for fid in [r.frame_id for r in kept if r.frame_id in images][-history.max_images :]:
                history._images[fid] = images[fid]
                history._image_order.append(fid)
        return history

"""Saved state of a running component (the memory, the spatial context): the header every such file carries,
the identity check at load, how the first frame after a load continues the saved poses, and a sealed
NumPy file for components that do not load torch.

Header. Every state file names what wrote it, so a memory is never read into a model or a robot it does not
belong to: `saved_at` (UTC, ISO 8601), `model` (the model's identity: backend, hashes of its configs and
weights, the state's shape; empty for components without a model), `robot` (the robot and camera: the
frames the poses are in and between, the camera's mount and image size, whatever the component depends
on) and a summary of the content (steps, frames, keyframes). `identity_differences` lists, key by key,
what differs between a saved identity and the loader's own; the loader refuses the file with all of them
in one message and changes nothing.

What a reloaded state assumes. Saved poses are in the fixed frame the component was fed in (the robot's
odometry frame by default). A robot that restarts starts a new odometry frame, so the saved poses mean
nothing in it until one pose ties the two frames together. `Resume` says which (the first frame after a
load applies it, `continuation`):

- `SAVED_POSE` (the default): the robot stands where it was when the state was saved (it was switched off
  and on again without moving). The first frame's base pose in the new frame is the saved last base pose.
- `SAME_FRAME`: the saved frame is the current one: the same odometry session (loading an earlier memory
  while the robot runs) or a frame that survives restarts (a `map` frame from a localiser).
- `GIVEN_POSE`: the caller says where the base is now in the saved frame (a relocalisation).

Stamps: the clock may have restarted (a simulation starts at 0) or run on while the robot was off. Unless
the frame is the same and the clock ran forward (`SAME_FRAME`), saved stamps are shifted so the saved last
frame lies just before the first new one: time the robot was switched off does not age the memory.

Sealed NumPy files (`write_sealed_arrays`, `read_sealed_arrays`): a line naming the format, a line with
the SHA-256 of the rest, then an `.npz` (numpy's own format, read without pickle) holding the arrays and the
header as JSON. The checksum covers every byte after it, so a truncated file or a flipped bit anywhere is
refused, never loaded; files are written atomically (`atomic.write_file_atomic`: temp file + rename), so a
crash mid-save leaves the old file.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spatial_memory.atomic import write_file_atomic
from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import check_pose, invert

__all__ = [
    "GIVEN_POSE",
    "RESUME_MODES",
    "SAME_FRAME",
    "SAVED_POSE",
    "Continuation",
    "Resume",
    "continuation",
    "identity_differences",
    "read_sealed_arrays",
    "utc_now",
    "write_sealed_arrays",
]

SAVED_POSE, SAME_FRAME, GIVEN_POSE = "saved_pose", "same_frame", "given_pose"
RESUME_MODES = (SAVED_POSE, SAME_FRAME, GIVEN_POSE)
_HEADER = "__header__"
MAGIC = b"spatial_memory sealed state 1\n"  # then the SHA-256 (hex) of the rest and a newline, then an .npz


def utc_now() -> str:
    """The wall time now, UTC, ISO 8601 to the second: a header's `saved_at`."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- identity
def identity_differences(what: str, saved: Any, ours: Mapping[str, Any]) -> list[str]:
    """What differs between a saved identity (`what`: 'model' or 'robot') and ours, one entry per key that
    both sides know (a value of None on either side is unknown, not compared)."""
    if not isinstance(saved, Mapping):
        return [f"the file names no {what}"]
    out = []
    for key, value in ours.items():
        theirs = saved.get(key)
        if value is None or theirs is None:
            continue
        if _plain(theirs) != _plain(value):
            out.append(f"{what} {key} {_short(theirs)} (this node: {_short(value)})")
    return out


def _plain(value: Any) -> Any:
    """JSON round trip: tuples and lists compare equal, numpy scalars become numbers."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _short(value: Any) -> str:
    """A value for a message: hashes cut to 12 characters."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return repr(value[:12])
    return repr(_plain(value))


# ---------------------------------------------------------------------------------------------- resume
@dataclass(frozen=True, eq=False)
class Resume:
    """How the first frame after a load ties the saved poses to the current frame (module docstring).
    `T_saved_base`: `GIVEN_POSE` only, the base's pose now in the saved frame (4x4, rigid)."""

    mode: str = SAVED_POSE
    T_saved_base: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mode not in RESUME_MODES:
            raise InvalidInputError(f"resume mode must be one of {RESUME_MODES}, got {self.mode!r}")
        if (self.mode == GIVEN_POSE) != (self.T_saved_base is not None):
            raise InvalidInputError("a pose is given with resume mode 'given_pose', and only with it")
        if self.T_saved_base is not None:
            T = check_pose(self.T_saved_base, "the base pose in the saved frame").copy()
            T.setflags(write=False)
            object.__setattr__(self, "T_saved_base", T)


@dataclass(frozen=True, eq=False)
class Continuation:
    """How saved poses and stamps map into the current session: `T_now_saved` maps a pose in the saved
    frame into the current one (`T_now_saved @ T_saved_x`), `stamp_offset_ns` is added to saved stamps, and
    `T_saved_base` is where the base is now in the saved frame (None when no pose was involved)."""

    T_now_saved: np.ndarray
    stamp_offset_ns: int
    T_saved_base: np.ndarray | None

    def pose(self, T_saved: np.ndarray) -> np.ndarray:  # noqa: N803 - the project's pose naming
        """A saved pose in the current frame."""
        return self.T_now_saved @ T_saved

    def stamp(self, stamp_ns: int) -> int:
        """A saved stamp on the current clock."""
        return int(stamp_ns) + self.stamp_offset_ns


def continuation(
    resume: Resume,
    T_saved_last: np.ndarray | None,  # noqa: N803 - the project's pose naming
    saved_last_stamp_ns: int | None,
    T_now: np.ndarray | None,  # noqa: N803
    stamp_now_ns: int,
) -> Continuation:
    """The continuation the first frame after a load makes: the saved last base pose and stamp, and the new
    frame's base pose (in the current frame) and stamp. Without base poses on either side (a fixed arm, a
    memory fed increments) the frames are taken as one (only `SAVED_POSE` and `SAME_FRAME` make sense)."""
    if T_now is None or (T_saved_last is None and resume.mode != GIVEN_POSE):
        if resume.mode == GIVEN_POSE:
            raise InvalidInputError(
                "a base pose in the saved frame was given, but these frames carry no base pose to tie it to"
            )
        T_now_saved, T_saved_base = np.eye(4), None
    else:
        T_saved_base = {SAVED_POSE: T_saved_last, SAME_FRAME: T_now, GIVEN_POSE: resume.T_saved_base}[
            resume.mode
        ]
        T_now_saved = np.eye(4) if resume.mode == SAME_FRAME else T_now @ invert(T_saved_base)
    if saved_last_stamp_ns is None or (resume.mode == SAME_FRAME and stamp_now_ns > saved_last_stamp_ns):
        offset = 0
    else:
        offset = int(stamp_now_ns) - int(saved_last_stamp_ns) - 1  # the saved last: 1 ns before this frame
    return Continuation(T_now_saved, offset, None if T_saved_base is None else T_saved_base.copy())


# ---------------------------------------------------------------------------------------------- files
def write_sealed_arrays(
    path: str | Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Write `header` (JSON-able) and `arrays` (no object arrays) to `path` atomically, sealed."""
    bad = [n for n in arrays if n.startswith("__") or np.asarray(arrays[n]).dtype == object]
    if bad:
        raise InvalidInputError(f"cannot save arrays {bad}: reserved names or object arrays")
    header_json = json.dumps(dict(header), sort_keys=True).encode()
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **{n: np.ascontiguousarray(a) for n, a in arrays.items()},
        **{_HEADER: np.frombuffer(header_json, np.uint8)},
    )
    body = buffer.getvalue()
    write_file_atomic(Path(path), MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def read_sealed_arrays(
    path: str | Path, fmt: str, version: int, what: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a file `write_sealed_arrays` wrote, refused (InvalidInputError naming the
    file) unless whole and unchanged (checksum), of format `fmt` and `version`."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what} {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc}") from exc
    start = len(MAGIC) + 65
    if not data.startswith(MAGIC) or len(data) < start:
        raise InvalidInputError(f"{path} is not a spatial_memory {what} file (or it is cut short)")
    body = data[start:]
    if hashlib.sha256(body).hexdigest().encode() + b"\n" != data[len(MAGIC) : start]:
        raise InvalidInputError(
            f"{path}: the {what}'s checksum does not match its content: the file is damaged (cut short, or a "
            "changed or flipped byte), not loading it; use a good copy"
        )
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        header = json.loads(arrays.pop(_HEADER).tobytes())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise InvalidInputError(f"{path} is not a spatial_memory {what} file")
    if header.get("version") != version or isinstance(header.get("version"), bool):
        got = header.get("version")
        raise InvalidInputError(f"{path}: {what} version {got!r}, this code reads {version}")
    return header, arrays

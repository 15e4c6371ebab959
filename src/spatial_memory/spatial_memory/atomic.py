"""Atomic directory output: build a directory beside its target and rename it into place when done.

A crash or an error while writing leaves no half-written episode or state behind, and an existing
target is never overwritten.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from spatial_memory.errors import InvalidInputError


def check_new_target(path: Path) -> Path:
    """The output path, refused if something is there already (episodes are never overwritten)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise InvalidInputError(f"{path} exists already; not overwriting an episode")
    if not path.name:
        raise InvalidInputError(f"{path!s} is not a usable episode path")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def staging_dir(path: Path) -> Path:
    """A fresh hidden directory beside `path` (same file system, so the final rename is atomic)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the published episode is a normal folder
    return staging


def publish_dir(built: Path, path: Path) -> None:
    """Move a finished directory into place in one rename; fails rather than replace an existing episode."""
    if path.exists():
        raise InvalidInputError(f"{path} appeared while writing; not overwriting it")
    os.rename(built, path)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and one rename (replaces `path`).

    For single files that are rewritten in place (checkpoints, saved memory): a crash leaves either the old
    file or the new one, never a half-written mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the published file is a normal file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

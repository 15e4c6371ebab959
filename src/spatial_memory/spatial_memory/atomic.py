"""Atomic directory output: build a directory beside its target and rename it into place when done.

A crash or an error while writing leaves no half-written episode or state behind, and an existing
target is never overwritten. Partials are named `.<target>.partial-<pid>-<random>`; one left by a run
that was killed (kill -9, power loss) is removed by the next write of the same target, once its owning
process is gone (`remove_stale_partials`). A run's output folder is replaced whole (`replaced_dir`):
a non-empty one only when asked to, never the root, home, working folder or a repository.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from spatial_memory.errors import InvalidInputError

log = logging.getLogger(__name__)

# A partial whose owner is gone is removed only after this quiet time: a writer in another PID namespace
# (another container on a shared volume) looks "gone" from here, but its files keep changing (each step
# of a recording writes to them). A partial without an owner PID (written before partials carried one)
# is removed only after STALE_UNOWNED_S.
STALE_GRACE_S = 10.0
STALE_UNOWNED_S = 3600.0


def _partial_prefix(path: Path) -> str:
    return f".{path.name}.partial-"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a reused id counts as alive: keep)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists under another user, or not a PID at all: never guess it is gone
    return True


def _last_touched(path: Path) -> float:
    """Newest mtime of `path` and what it holds (a staging folder's files change, the folder may not)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                try:
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                except OSError:
                    continue
    return newest


def remove_stale_partials(path: Path, now: float | None = None) -> list[Path]:
    """Remove the partials of `path` left by killed writers; returns what was removed.

    A partial is stale when the process named in it is gone and nothing in it changed for
    `STALE_GRACE_S`, or (no PID in its name) when nothing in it changed for `STALE_UNOWNED_S`. Partials
    of live writers, including concurrent writers of the same target, are left alone.
    """
    path = Path(path)
    prefix = _partial_prefix(path)
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for partial in candidates:
        owner = re.match(r"(\d+)-", partial.name[len(prefix) :])
        try:
            quiet = now - _last_touched(partial)
        except OSError:
            continue  # gone meanwhile
        if owner is not None:
            stale = not _pid_alive(int(owner.group(1))) and quiet >= STALE_GRACE_S
        else:
            stale = quiet >= STALE_UNOWNED_S
        if not stale:
            continue
        log.warning("removing %s, left by an interrupted write of %s", partial, path)
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        removed.append(partial)
    return removed


def check_output_dir(path: Path, what: str = "output folder") -> Path:
    """`path` as a folder that exists or can be created, and can be written to; checked before any work,
    so a file in the way or a read-only place is one clear error instead of a traceback after the work.
    Nothing is created here (a refused run leaves no trace)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" (in the way of {path})"
        raise InvalidInputError(f"{what}: {existing} is a file, not a folder{where}; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(
            f"cannot write to {what} {path}: {existing} is read-only or not ours; choose another path"
        )
    return path


def check_output_file(path: Path, what: str = "output file") -> Path:
    """`path` as a file that can be (re)written: not a folder, in a folder that can be written to (files
    are replaced by a rename in their folder, `write_file_atomic`)."""
    path = Path(path)
    if path.is_dir() or not path.name:
        raise InvalidInputError(f"{what} {path} is a folder; give a file name")
    check_output_dir(path.parent, f"the folder of {what}")
    return path


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
    """A fresh hidden directory beside `path` (same file system, so the final rename is atomic); stale
    partials of `path` from a killed run are removed first."""
    remove_stale_partials(path)
    staging = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(path)}{os.getpid()}-", dir=path.parent))
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
    file or the new one, never a half-written mix (and its partial, removed by the next write).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_partial_prefix(path)}{os.getpid()}-", dir=path.parent)
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


def _never_replaced(path: Path) -> str | None:
    """Why `path` must never be replaced whole (None when it may be): the file system root, the home
    folder, the working folder, this package's folder or a folder above one of them, or a folder holding
    `.git` (a repository root). A mistyped `--out` with `--overwrite` must not delete a life's work."""
    import spatial_memory

    resolved = path.resolve()
    if resolved == resolved.parent:
        return "it is the file system root"
    if (resolved / ".git").exists():
        return "it holds a .git (a repository)"
    protected = {
        "your home folder": Path.home().resolve(),
        "the working folder": Path.cwd().resolve(),
        "this package's folder": Path(spatial_memory.__file__).resolve().parent,
    }
    for name, folder in protected.items():
        if resolved == folder or resolved in folder.parents:
            return f"it is {name}" if resolved == folder else f"it holds {name}"
    return None


def _entries(path: Path) -> list[str]:
    """Names in folder `path` ([] when there is no folder)."""
    return sorted(os.listdir(path)) if path.is_dir() else []


def check_replaceable_dir(
    path: Path, overwrite: bool = False, what: str = "output folder", flag: str = "--overwrite"
) -> Path:
    """`path` as an output folder a run may write whole, checked before any work and creating nothing:
    missing or empty is fine; a non-empty one is refused unless `overwrite` (the CLI's `flag`), and is
    never replaced when it is (or holds) the root, the home or working folder, this package, a repository,
    or is a symbolic link. Why refuse: a run's outputs mixed with an earlier run's read as one run."""
    path = check_output_dir(path, what)
    entries = _entries(path)
    if not entries:
        return path
    why = "it is a symbolic link; name the folder itself" if path.is_symlink() else _never_replaced(path)
    if why is not None:
        raise InvalidInputError(
            f"{what} {path} is not empty and is never replaced: {why}; choose a new folder"
        )
    if not overwrite:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise InvalidInputError(
            f"{what} {path} is not empty ({shown}); pass {flag} to replace it whole, or choose a new folder"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"cannot replace {what} {path}: {path.parent} is read-only or not ours")
    return path


def _clear(folder: Path) -> None:
    """Remove what a failed run wrote into `folder` (a folder that was empty before it)."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def replaced_dir(
    path: Path, overwrite: bool = False, what: str = "output folder", flag: str = "--overwrite"
) -> Iterator[Path]:
    """An empty folder at `path` for a run to write into; the run's outputs replace the folder whole.

    A non-empty folder is refused unless `overwrite` (`check_replaceable_dir`); with it, the old folder is
    renamed to a hidden partial beside it (`.NAME.partial-PID-*`), deleted once the run succeeded and
    renamed back if the run fails (an exception or Ctrl-C), so a failed run loses nothing and leaves
    nothing: a folder the run created is removed, one that was empty is emptied again. After a kill -9
    the hidden old folder is removed by the next run into `path` once its process is gone.
    """
    path = check_replaceable_dir(path, overwrite, what, flag)
    remove_stale_partials(path)
    aside = None
    if _entries(path):
        aside = path.parent / f"{_partial_prefix(path)}{os.getpid()}-old-{secrets.token_hex(4)}"
        os.rename(path, aside)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            _clear(path)
        if aside is not None:
            os.rename(aside, path)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)

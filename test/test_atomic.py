"""Atomic output (issue 14): partials left by a killed writer are removed by the next write of the same
target, never those of a live writer; output paths are checked before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spatial_memory import atomic
from spatial_memory.atomic import (
    check_output_dir,
    check_output_file,
    remove_stale_partials,
    staging_dir,
    write_file_atomic,
)
from spatial_memory.errors import InvalidInputError


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _partial(folder: Path, name: str, age_s: float, directory: bool = False) -> Path:
    path = folder / name
    if directory:
        (path / "bag").mkdir(parents=True)
        (path / "bag" / "bag_0.mcap").write_bytes(b"x" * 100)
        touched = [path, path / "bag", path / "bag" / "bag_0.mcap"]
    else:
        path.write_bytes(b"half a state")
        touched = [path]
    for p in touched:
        os.utime(p, (time.time() - age_s, time.time() - age_s))
    return path


def test_only_stale_partials_of_the_same_target_are_removed(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getpid()
    stale_file = _partial(tmp_path, f".state.pt.partial-{dead}-abc123", age_s=120)
    stale_dir = _partial(tmp_path, f".state.pt.partial-{dead}-def456", age_s=120, directory=True)
    old_unowned = _partial(tmp_path, ".state.pt.partial-k2j3h4", age_s=2 * atomic.STALE_UNOWNED_S)
    kept = [
        _partial(tmp_path, f".state.pt.partial-{live}-ghi789", age_s=120),  # a live writer (us)
        _partial(tmp_path, f".state.pt.partial-{dead}-jkl012", age_s=1),  # owner gone a moment ago
        _partial(tmp_path, ".state.pt.partial-m5n6o7", age_s=60),  # old-style name, recent
        _partial(tmp_path, f".other.pt.partial-{dead}-pqr345", age_s=120),  # another target
    ]
    removed = remove_stale_partials(tmp_path / "state.pt")
    assert sorted(removed) == sorted([stale_file, stale_dir, old_unowned])
    assert not any(p.exists() for p in removed)
    assert all(p.exists() for p in kept)


def test_a_save_removes_the_partial_of_a_save_killed_before_it(tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    write_file_atomic(target, b"good state")
    leftover = _partial(tmp_path, f".state.pt.partial-{_dead_pid()}-zz9x8c", age_s=120)
    write_file_atomic(target, b"newer state")
    assert target.read_bytes() == b"newer state"
    assert not leftover.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_kill_9_mid_write_leaves_a_partial_the_next_write_removes(tmp_path: Path, monkeypatch) -> None:
    """A real kill -9: the child stages a folder (as a recording does) and is killed while writing it."""
    target = tmp_path / "compact"
    code = (
        "import sys, time; from pathlib import Path; from spatial_memory.atomic import staging_dir\n"
        "s = staging_dir(Path(sys.argv[1])); (s / 'rgb.npy').write_bytes(b'0' * 4096)\n"
        "print(s, flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    staged = Path(child.stdout.readline().strip())
    assert staged.is_dir() and staged.name.startswith(f".compact.partial-{child.pid}-")
    assert remove_stale_partials(target) == []  # its writer is alive: left alone
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert staged.is_dir()  # nothing cleaned it up
    monkeypatch.setattr(atomic, "STALE_GRACE_S", 0.0)
    fresh = staging_dir(target)  # the next run of the same recording
    assert not staged.exists() and fresh.is_dir()
    assert fresh.name.startswith(f".compact.partial-{os.getpid()}-")


def test_check_output_dir_and_file(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checked, not created: a refused run leaves no trace
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="file is a file, not a folder; choose"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(InvalidInputError, match=r"file is a file, not a folder \(in the way of .*below\)"):
        check_output_dir(tmp_path / "file" / "below")
    (tmp_path / "a").mkdir()
    with pytest.raises(InvalidInputError, match="is a folder; give a file name"):
        check_output_file(tmp_path / "a")
    assert check_output_file(tmp_path / "new" / "t.txt") == tmp_path / "new" / "t.txt"
    with pytest.raises(InvalidInputError, match="the folder of trajectory: .* is a file"):
        check_output_file(tmp_path / "file" / "t.txt", "trajectory")


def test_a_folder_that_cannot_be_written_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    """As for a read-only folder (root writes anyway, so the refusal is injected here)."""
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(InvalidInputError, match=r"cannot write to output folder .*new: .* is read-only"):
        check_output_dir(tmp_path / "new")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InvalidInputError, match="read-only"):
            check_output_dir(folder / "out")
    finally:
        folder.chmod(0o755)

"""Atomic output (issue 14): partials left by a killed writer are removed by the next write of the same
target, never those of a live writer; output paths are checked before any work; an output folder is
replaced whole only when asked, and a failed run puts the old one back."""

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
    check_replaceable_dir,
    remove_stale_partials,
    replaced_dir,
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


# ---------------------------------------------------------------------------------------------------------
# output folders replaced whole


def _old_run(folder: Path) -> Path:
    (folder / "maps").mkdir(parents=True)
    (folder / "maps" / "map_0004.png").write_bytes(b"old")
    (folder / "summary.md").write_text("the old run")
    return folder


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_non_empty_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = _old_run(tmp_path / "out")
    assert check_replaceable_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_replaceable_dir(tmp_path / "empty") == tmp_path / "empty"
    with pytest.raises(InvalidInputError, match=r"out is not empty \(maps, summary.md\); pass --overwrite"):
        check_replaceable_dir(out)
    with pytest.raises(InvalidInputError, match="pass --replace"):
        check_replaceable_dir(out, flag="--replace")
    assert check_replaceable_dir(out, overwrite=True) == out
    assert _tree(out) == ["maps", "maps/map_0004.png", "summary.md"]  # checked, not touched


def test_overwrite_replaces_the_folder_whole_once_the_run_succeeded(tmp_path: Path) -> None:
    out = _old_run(tmp_path / "out")
    with replaced_dir(out, overwrite=True) as folder:
        assert folder == out and list(out.iterdir()) == []  # the run starts in an empty folder
        (out / "summary.md").write_text("the new run")
    assert _tree(out) == ["summary.md"] and (out / "summary.md").read_text() == "the new run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one is gone, no partial left


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failed_run_puts_the_old_folder_back(tmp_path: Path, failure: type[BaseException]) -> None:
    out = _old_run(tmp_path / "out")
    with pytest.raises(failure), replaced_dir(out, overwrite=True):
        (out / "maps").mkdir()
        (out / "maps" / "map_0000.png").write_bytes(b"new")
        raise failure()
    assert _tree(out) == ["maps", "maps/map_0004.png", "summary.md"]
    assert (out / "maps" / "map_0004.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_run_leaves_no_folder_it_created_and_empties_an_empty_one(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), replaced_dir(tmp_path / "a" / "new") as folder:
        (folder / "half.png").write_bytes(b"x")
        raise RuntimeError
    assert not (tmp_path / "a" / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError), replaced_dir(tmp_path / "empty") as folder:
        (folder / "maps").mkdir()
        raise RuntimeError
    assert (tmp_path / "empty").is_dir() and list((tmp_path / "empty").iterdir()) == []


def test_a_symbolic_link_or_a_repository_is_never_replaced(tmp_path: Path) -> None:
    target = _old_run(tmp_path / "target")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(InvalidInputError, match="is a symbolic link"):
        check_replaceable_dir(tmp_path / "link", overwrite=True)
    (target / ".git").mkdir()
    with pytest.raises(InvalidInputError, match=r"never replaced: it holds a \.git"):
        check_replaceable_dir(target, overwrite=True)
    assert (target / "summary.md").read_text() == "the old run"


def test_kill_9_mid_overwrite_leaves_the_old_folder_hidden_for_the_next_run_to_remove(
    tmp_path: Path, monkeypatch
) -> None:
    """A real kill -9 while a run writes into a replaced folder: the old content waits, hidden, beside it."""
    out = _old_run(tmp_path / "out")
    code = (
        "import sys, time; from pathlib import Path; from spatial_memory.atomic import replaced_dir\n"
        "with replaced_dir(Path(sys.argv[1]), overwrite=True) as out:\n"
        "    (out / 'half.png').write_bytes(b'new'); print('writing', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(f".out.partial-{child.pid}-")]
    assert len(hidden) == 1 and _tree(hidden[0]) == ["maps", "maps/map_0004.png", "summary.md"]
    monkeypatch.setattr(atomic, "STALE_GRACE_S", 0.0)
    with replaced_dir(out, overwrite=True):
        (out / "summary.md").write_text("the next run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and _tree(out) == ["summary.md"]

"""Fault injection on the memory's files (issue 14): a checkpoint or a memory state cut at any length is
refused with one clear error naming it and never loads; kill -9 in the middle of a loop of saves leaves
the last state whole (it loads), and the next save removes what the killed one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_memory import atomic
from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import yaw_pose
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.engine import EngineConfig, MemoryEngine
from spatial_memory.memory.registry import build_model, load_checkpoint, save_checkpoint

SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
SMALL_KINAEMA = {"slots": 8, "dim": 32, "heads": 2, "correction_hidden": 32, "query_hidden": 32}
IMAGES = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
MS = 10**6


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    encoder = ImageEncoder(SMALL_ENCODER)
    model = build_model("kinaema", SMALL_KINAEMA, encoder_config=SMALL_ENCODER)
    save_checkpoint(tmp_path / "kinaema.pt", model, encoder)
    return tmp_path / "kinaema.pt"


def _engine(checkpoint: Path) -> MemoryEngine:
    return MemoryEngine(EngineConfig(checkpoint=str(checkpoint), resize="none", threads=1))


def _cuts(size: int, count: int = 30) -> list[int]:
    """Random lengths to cut a file of `size` bytes at, with the edges (empty, one byte, all but one)."""
    rng = np.random.default_rng(size)
    return sorted({0, 1, size - 1, *rng.integers(2, size - 1, count).tolist()})


def _assert_one_clear_error(exc: InvalidInputError, path: Path) -> None:
    message = str(exc)
    assert path.name in message and message.strip(), message


def test_a_truncated_checkpoint_is_refused_never_loaded(tmp_path: Path, checkpoint: Path) -> None:
    data = checkpoint.read_bytes()
    for length in _cuts(len(data)):
        cut = tmp_path / f"cut{length}.pt"
        cut.write_bytes(data[:length])
        with pytest.raises(InvalidInputError) as caught:
            load_checkpoint(cut)
        _assert_one_clear_error(caught.value, cut)
    assert load_checkpoint(checkpoint).model is not None  # the whole file still loads


def _walked(checkpoint: Path, steps: int = 3) -> MemoryEngine:
    engine = _engine(checkpoint)
    for i in range(steps):
        engine.update(IMAGES[i], T_world_base=yaw_pose(0.2 * i, 0.0, 0.1 * i), stamp_ns=200 * MS * i)
    return engine


def test_a_truncated_memory_state_is_refused_and_the_memory_kept(tmp_path: Path, checkpoint: Path) -> None:
    _walked(checkpoint).save(tmp_path / "state.pt")
    data = (tmp_path / "state.pt").read_bytes()
    engine = _walked(checkpoint, steps=1)
    before = (engine.state.clone(), engine.steps, engine.last_stamp_ns)
    for length in _cuts(len(data)):
        cut = tmp_path / f"cut{length}.pt"
        cut.write_bytes(data[:length])
        with pytest.raises(InvalidInputError) as caught:
            engine.load(cut)
        _assert_one_clear_error(caught.value, cut)
        assert torch.equal(engine.state, before[0]) and (engine.steps, engine.last_stamp_ns) == before[1:]
    engine.load(tmp_path / "state.pt")
    assert engine.steps == 3


SAVE_LOOP = """
import sys
import numpy as np
from spatial_memory.geometry import yaw_pose
from spatial_memory.memory.engine import EngineConfig, MemoryEngine
engine = MemoryEngine(EngineConfig(checkpoint=sys.argv[1], resize="none", threads=1))
images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
for i in range(100000):
    engine.update(images[i % 4], T_world_base=yaw_pose(0.01 * i, 0.0, 0.0), stamp_ns=10**8 * i)
    engine.save(sys.argv[2])
    print(i, flush=True)
"""


def test_kill_9_in_a_loop_of_saves_leaves_a_whole_state(
    tmp_path: Path, checkpoint: Path, monkeypatch
) -> None:
    """A real kill -9 at random moments of a process that saves its memory again and again."""
    state = tmp_path / "state.pt"
    rng = np.random.default_rng(0)
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(checkpoint), str(state)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3):  # a few saves done, then kill it somewhere in the next ones
            assert child.stdout.readline(), "the save loop died on its own"
        time.sleep(float(rng.uniform(0.0, 0.05)))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        engine = _engine(checkpoint)
        engine.load(state)  # the last state saved in full: the checksum holds
        assert engine.steps >= 3 and bool(torch.isfinite(engine.state).all())
    monkeypatch.setattr(atomic, "STALE_GRACE_S", 0.0)
    engine.save(state)  # the next save removes the partials of killed saves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kinaema.pt", "state.pt"]

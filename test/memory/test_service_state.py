"""MemoryService save / load / reset (issue 13): every backend and the stored views come back and answer as
before; a memory resumed after a restart (a new odometry frame and clock, the robot where it was saved)
answers as the memory that never stopped; files of another model or robot, truncated or bit-flipped ones
are refused with one message and change nothing; a kill -9 during a save leaves the old file."""

from __future__ import annotations

import math
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
from spatial_memory.geometry import invert, yaw_pose
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.engine import RESUMED, USED, EngineConfig
from spatial_memory.memory.poses import wrap_angle
from spatial_memory.memory.refine import RefineConfig
from spatial_memory.memory.registry import build_model, save_checkpoint
from spatial_memory.memory.service import KEYFRAMES, REFINED, MemoryService
from spatial_memory.saved_state import GIVEN_POSE, Resume
from spatial_memory.sim.live import LiveSim, LiveSimConfig, LiveWorldConfig

CHECKPOINT = "models/kinaema_indoor64.pt"
ROBOT = {"world_frame": "odom", "base_frame": "base_link"}
SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
SMALL_KINAEMA = {"slots": 8, "dim": 32, "heads": 2, "correction_hidden": 32, "query_hidden": 32}
IMAGES = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
MS = 10**6


# ---------------------------------------------------------------------------------------------------------
# the shipped model on a simulated house: every backend, refined answers included


@pytest.fixture(scope="module")
def drive():
    """A drive in a house (validation world 1000): per frame (rgb, depth, K, T_world_base, T_world_cam,
    stamp), a query picture near an early view, and the pose the robot took after the last frame."""
    sim = LiveSim(LiveSimConfig(world=LiveWorldConfig(preset="house", seed=1000)))
    frames = []
    while len(frames) < 26:
        sim.command_velocity(0.15, 0.4)
        tick = sim.tick()
        f = tick.camera("camera")
        if f is not None and (not frames or tick.stamp_ns - frames[-1][-1] >= 2e8):
            frames.append((f.rgb, f.depth, f.K, tick.T_world_base, f.T_world_cam, tick.stamp_ns))
    T_query = frames[6][4].copy()
    T_query[:3, 3] += 0.2 * T_query[:3, 0]
    query, _ = sim.sim.render_view(T_query)
    yield frames, query
    sim.close()


def _service() -> MemoryService:
    torch.set_num_threads(1)
    engine = EngineConfig(checkpoint=CHECKPOINT, camera_height_m=1.45)
    return MemoryService.from_config(engine, serve_keyframes=True, refine=RefineConfig())


def _feed(service: MemoryService, frames, T_frame=None, stamp_offset=0) -> list[str]:
    T_frame = np.eye(4) if T_frame is None else T_frame
    verdicts = []
    for rgb, depth, K, T_base, T_cam, stamp in frames:
        verdicts.append(service.update(rgb, T_world_base=T_frame @ T_base, stamp_ns=stamp + stamp_offset))
        service.add_view(rgb, depth, K, T_frame @ T_cam, stamp + stamp_offset)
    return verdicts


def _answers(service: MemoryService, query: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for backend in service.backends:
        a = service.query(query, backend)
        out[backend] = (a.x, a.y, a.yaw, a.sigma_m)
    return out


def test_save_and_load_give_back_every_backend_and_view(tmp_path, drive):
    frames, query = drive
    service = _service()
    _feed(service, frames)
    header = service.save(tmp_path / "memory.pt", ROBOT)
    assert header["steps"] == len(frames) and header["views"] >= 3 and header["saved_at"]
    assert header["model"]["backends"] == ["kinaema", KEYFRAMES, REFINED]
    assert header["robot"]["image_size"] == [160, 120] and header["robot"]["world_frame"] == "odom"
    loaded = _service()
    loaded.load(tmp_path / "memory.pt", ROBOT)
    assert loaded.steps == service.steps and loaded.keyframes.steps == service.keyframes.steps
    assert len(loaded.views) == len(service.views) and loaded.query(query, REFINED).inliers >= 25
    assert _answers(loaded, query) == _answers(service, query)
    loaded.reset()
    assert loaded.steps == 0 and len(loaded.views) == 0 and loaded.keyframes.steps == 0


def test_a_memory_resumed_after_a_restart_answers_as_one_that_never_stopped(tmp_path, drive):
    """Session 1 saw 20 frames and saved; the robot restarted where it stood: its odometry frame starts at
    the robot (another frame than session 1's) and its clock at 0. Fed the same last 6 frames in the new
    frame and clock, the loaded memory answers as the memory that went on in the old frame and clock."""
    frames, query = drive
    first, rest = frames[:20], frames[20:]
    went_on = _service()
    _feed(went_on, first)
    went_on.save(tmp_path / "memory.pt", ROBOT)
    _feed(went_on, rest)

    T_new_old = invert(first[-1][3])  # the new odometry frame: where the robot stood at the save
    clock = -first[-1][-1] + 3 * MS  # the new clock starts near 0
    resumed = _service()
    _feed(resumed, frames[:3], T_frame=yaw_pose(5.0, -2.0, 1.0))  # it saw a little before loading
    resumed.load(tmp_path / "memory.pt", ROBOT, resume=Resume())
    assert resumed.resume_pending and resumed.steps == 20
    rest_stand = [
        (*f[:3], first[-1][3], first[-1][4], f[5]) for f in rest[:1]
    ]  # first: still at the save pose
    verdicts = _feed(resumed, rest_stand, T_frame=T_new_old, stamp_offset=clock)
    verdicts += _feed(resumed, rest[1:], T_frame=T_new_old, stamp_offset=clock)
    assert verdicts[0] == RESUMED and set(verdicts[1:]) == {USED} and not resumed.resume_pending

    reference = _service()  # the memory that never stopped, fed the same (standing) first frame
    _feed(reference, first + rest_stand + rest[1:])
    got, want = _answers(resumed, query), _answers(reference, query)
    for backend in (went_on.backend, KEYFRAMES):
        assert got[backend] == pytest.approx(want[backend], abs=1e-4), backend
    x, y, yaw, sigma = got[REFINED]
    assert resumed.query(query, REFINED).inliers >= 25
    assert math.hypot(x - want[REFINED][0], y - want[REFINED][1]) < 0.02
    assert abs(wrap_angle(yaw - want[REFINED][2])) < math.radians(1.0)
    assert sigma <= want[REFINED][3] + 1e-6  # the restart's wall time does not age the views


def test_another_camera_size_is_refused_after_a_load(tmp_path, drive):
    frames, _ = drive
    service = _service()
    _feed(service, frames[:3])
    service.save(tmp_path / "memory.pt", ROBOT)
    fresh = _service()
    fresh.load(tmp_path / "memory.pt", ROBOT, resume=Resume())
    big = np.zeros((240, 320, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="saved from a 160x120 camera, this image is 320x240"):
        fresh.update(big, T_world_base=np.eye(4), stamp_ns=1)
    assert fresh.resume_pending and fresh.steps == 3


# ---------------------------------------------------------------------------------------------------------
# a tiny model: refusals and faults


def _tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model("kinaema", SMALL_KINAEMA, encoder_config=SMALL_ENCODER)
    save_checkpoint(path, model, ImageEncoder(SMALL_ENCODER))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _tiny_checkpoint(tmp_path / "kinaema.pt")


def _tiny_service(checkpoint: Path, **engine) -> MemoryService:
    cfg = EngineConfig(checkpoint=str(checkpoint), resize="none", threads=1, **engine)
    return MemoryService.from_config(cfg, serve_keyframes=True, refine=RefineConfig(enabled=False))


def _walk(service: MemoryService, steps: int) -> None:
    for i in range(steps):
        service.update(IMAGES[i], T_world_base=yaw_pose(0.2 * i, 0.0, 0.1 * i), stamp_ns=200 * MS * (i + 1))


def _observed(service: MemoryService) -> tuple:
    answers = tuple(service.query(IMAGES[0], b).x for b in service.backends) if service.steps else ()
    return service.steps, service.last_stamp_ns, service.keyframes.steps, answers


def test_files_of_another_model_or_robot_are_refused_naming_what_differs(tmp_path, tiny):
    saver = _tiny_service(tiny)
    _walk(saver, 3)
    saver.save(tmp_path / "memory.pt", ROBOT)
    other_weights = _tiny_service(_tiny_checkpoint(tmp_path / "other.pt", seed=1))
    _walk(other_weights, 2)
    before = _observed(other_weights)
    with pytest.raises(InvalidInputError) as caught:
        other_weights.load(tmp_path / "memory.pt", ROBOT)
    message = str(caught.value)
    assert "another model" in message and "weights_hash" in message and "memory.pt" in message
    assert "Nothing was changed" in message and _observed(other_weights) == before

    other_robot = _tiny_service(tiny, camera_height_m=0.5)
    _walk(other_robot, 2)
    before = _observed(other_robot)
    with pytest.raises(InvalidInputError) as caught:
        other_robot.load(tmp_path / "memory.pt", {**ROBOT, "world_frame": "map"})
    message = str(caught.value)
    assert "another robot" in message and "world_frame 'odom' (this node: 'map')" in message
    assert "camera_height_m" in message and _observed(other_robot) == before

    fewer = MemoryService.from_config(EngineConfig(checkpoint=str(tiny), resize="none"))  # no keyframes
    with pytest.raises(InvalidInputError, match="model backends"):
        fewer.load(tmp_path / "memory.pt", ROBOT)


def _cuts(size: int, count: int = 30) -> list[int]:
    rng = np.random.default_rng(size)
    return sorted({0, 1, size - 1, *rng.integers(2, size - 1, count).tolist()})


def test_truncated_or_bit_flipped_files_are_refused_and_change_nothing(tmp_path, tiny):
    saver = _tiny_service(tiny)
    _walk(saver, 4)
    saver.save(tmp_path / "memory.pt", ROBOT)
    data = (tmp_path / "memory.pt").read_bytes()
    service = _tiny_service(tiny)
    _walk(service, 2)
    before = _observed(service)
    damaged = tmp_path / "damaged.pt"
    for length in _cuts(len(data)):
        damaged.write_bytes(data[:length])
        with pytest.raises(InvalidInputError, match="damaged.pt"):
            service.load(damaged, ROBOT)
    rng = np.random.default_rng(2)
    refused = 0
    for position in rng.integers(0, len(data), 40):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        damaged.write_bytes(bytes(flipped))
        try:
            service.load(damaged, ROBOT)
        except InvalidInputError as exc:
            assert "damaged.pt" in str(exc)
            refused += 1
        else:  # a flip in zip bookkeeping torch does not read: the content must be exactly the saved one
            assert _observed(service) == _observed(saver)
            service.load(tmp_path / "memory.pt", ROBOT)  # (same content) then back to the test's state
            service.reset()
            _walk(service, 2)
    assert refused >= 30 and _observed(service) == before
    service.load(tmp_path / "memory.pt", ROBOT)
    assert _observed(service) == _observed(saver)


SAVE_LOOP = """
import sys
import numpy as np
from spatial_memory.geometry import yaw_pose
from spatial_memory.memory.engine import EngineConfig
from spatial_memory.memory.refine import RefineConfig
from spatial_memory.memory.service import MemoryService
cfg = EngineConfig(checkpoint=sys.argv[1], resize="none", threads=1)
service = MemoryService.from_config(cfg, serve_keyframes=True, refine=RefineConfig(enabled=False))
images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
for i in range(100000):
    service.update(images[i % 4], T_world_base=yaw_pose(0.01 * i, 0.0, 0.0), stamp_ns=10**8 * (i + 1))
    service.save(sys.argv[2])
    print(i, flush=True)
"""


def test_kill_9_during_saves_leaves_a_whole_file(tmp_path, tiny, monkeypatch):
    state = tmp_path / "memory.pt"
    rng = np.random.default_rng(0)
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(tiny), str(state)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3):
            assert child.stdout.readline(), "the save loop died on its own"
        time.sleep(float(rng.uniform(0.0, 0.05)))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        service = _tiny_service(tiny)
        service.load(state)  # the last file saved in full: the checksum holds
        assert service.steps >= 3 and service.keyframes.steps == service.steps
    monkeypatch.setattr(atomic, "STALE_GRACE_S", 0.0)
    service.save(state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kinaema.pt", "memory.pt"]


def test_resume_modes_of_the_engine(tmp_path, tiny):
    """A memory fed base poses, resumed: where it was saved (no step), or told where the robot is now in the
    saved frame (the step from the saved pose to there), whatever the new frame and clock."""
    saver = _tiny_service(tiny)
    _walk(saver, 3)
    saver.save(tmp_path / "memory.pt", ROBOT)
    last = yaw_pose(0.4, 0.0, 0.2)
    went_on = _tiny_service(tiny)
    went_on.load(tmp_path / "memory.pt", ROBOT)
    went_on.update(IMAGES[4], T_world_base=last @ yaw_pose(0.3, 0.1, 0.2), stamp_ns=800 * MS)
    told = _tiny_service(tiny)
    told.load(tmp_path / "memory.pt", ROBOT, resume=Resume(GIVEN_POSE, last @ yaw_pose(0.3, 0.1, 0.2)))
    assert told.update(IMAGES[4], T_world_base=yaw_pose(7.0, 7.0, 3.0), stamp_ns=5) == RESUMED
    assert told.steps == went_on.steps == 4
    assert _observed(told)[3] == pytest.approx(_observed(went_on)[3], abs=1e-5)  # every backend's answer
    assert told.last_stamp_ns == 5 and told.engine.last_continuation.stamp(800 * MS) == 4 + 200 * MS

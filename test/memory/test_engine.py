"""MemoryEngine: updates and queries from images and poses, bad input leaves the memory untouched, saved
states round-trip and are refused by other models, and the keyframe backend's geometry is exact."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.geometry import yaw_pose
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.engine import (
    DROPPED_LATE,
    RESET_AND_USED,
    USED,
    EngineConfig,
    MemoryAnswer,
    MemoryEngine,
    level_camera_pose,
)
from spatial_memory.memory.engine_config import resolve_checkpoint
from spatial_memory.memory.interface import HistoryState
from spatial_memory.memory.poses import planar_target
from spatial_memory.memory.registry import CHECKSUM_KEY, UNSEALED_VERSION, build_model, save_checkpoint, seal

SMALL_ENCODER = EncoderConfig(image_size=32, widths=(8, 16), token_dim=32, tokens_per_frame=4, heads=2)
SMALL_KINAEMA = {"slots": 8, "dim": 32, "heads": 2, "correction_hidden": 32, "query_hidden": 32}
# the shipped design: anchored slots and a recall ring (its state has extra rows and a step counter)
SMALL_RING = {**SMALL_KINAEMA, "anchors": True, "recall": 4, "recall_every": 2}
MS = 10**6


def _checkpoint(path, name="kinaema", config=None, seed=0):
    torch.manual_seed(seed)
    encoder = ImageEncoder(SMALL_ENCODER)
    model = build_model(name, config if config is not None else SMALL_KINAEMA, encoder_config=SMALL_ENCODER)
    save_checkpoint(path, model, encoder)
    return path


@pytest.fixture
def kinaema_ckpt(tmp_path):
    return _checkpoint(tmp_path / "kinaema.pt")


def _images(n, size=32, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _engine(ckpt, **kw) -> MemoryEngine:
    kw.setdefault("resize", "none")  # these tests feed the model's own size; a wrong size must fail loudly
    return MemoryEngine(EngineConfig(checkpoint=str(ckpt), **kw))


def _snapshot(engine):
    """Deep copy of everything an update or load may change."""
    state = engine.state
    tensors = (
        [state]
        if isinstance(state, torch.Tensor)
        else [getattr(state, f.name) for f in dataclasses.fields(state)]
    )
    return [t.clone() for t in tensors], engine.steps, engine.last_stamp_ns, engine.status()


def _assert_unchanged(engine, snap):
    tensors, steps, stamp, status = _snapshot(engine)
    assert all(torch.equal(a, b) for a, b in zip(tensors, snap[0], strict=True))
    assert (steps, stamp, status) == snap[1:]


def _walk(engine, images, start_ns=0):
    """Drive along a curve: one image every 0.2 s with the base pose from a circle arc."""
    for i, image in enumerate(images):
        engine.update(
            image, T_world_base=yaw_pose(0.3 * i, 0.1 * i, 0.2 * i), stamp_ns=start_ns + 200 * MS * i
        )


# ----------------------------------------------------------------------------------------------------
# config


def test_config_is_validated_and_the_engine_needs_a_real_checkpoint(tmp_path, kinaema_ckpt):
    with pytest.raises(ConfigError, match="resize"):
        EngineConfig(resize="bilinear")
    with pytest.raises(ConfigError, match="threads"):
        EngineConfig(threads=-1)
    with pytest.raises(ConfigError, match="checkpoint is empty"):
        MemoryEngine(EngineConfig())
    with pytest.raises(ConfigError, match="unknown memory backend"):
        _engine(kinaema_ckpt, backend="lstm")
    with pytest.raises(ConfigError, match="does not exist"):
        _engine(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="expected 'gru'"):
        _engine(kinaema_ckpt, backend="gru")
    with pytest.raises(ConfigError, match="image_size 64"):
        _engine(kinaema_ckpt, image_size=64)


# ----------------------------------------------------------------------------------------------------
# kinaema: update and query


def test_update_and_query_kinaema(kinaema_ckpt):
    engine = _engine(kinaema_ckpt, camera_height_m=1.2)
    images = _images(5)
    _walk(engine, images)
    answer = engine.query(images[2])
    assert isinstance(answer, MemoryAnswer) and answer.backend == "kinaema" and answer.steps == 5
    assert answer.T_base_query.shape == (4, 4) and answer.T_base_query[2, 3] == pytest.approx(1.2)
    np.testing.assert_allclose(
        planar_target(answer.T_base_query), [answer.x, answer.y, answer.yaw], atol=1e-9
    )
    assert 0.0 < answer.confidence < 1.0 and 0.0 < answer.seen_probability < 1.0
    assert answer.confidence == pytest.approx(1.0 / (1.0 + answer.sigma_m), rel=1e-5)
    status = engine.status()
    assert status["steps"] == 5 and status["last_stamp_ns"] == 800 * MS and status["backend"] == "kinaema"
    # 8 slots + 256 ring entries + the step counter, each 32 dims + an (x, y, yaw) anchor, float32
    assert status["state_bytes"] == (8 + 256 + 1) * (32 + 3) * 4 and status["model_parameters"] > 0
    engine.reset()
    assert engine.steps == 0 and engine.last_stamp_ns is None
    with pytest.raises(InvalidInputError, match="empty"):
        engine.query(images[0])


def test_pose_updates_give_the_increments_in_the_previous_base_frame(kinaema_ckpt, monkeypatch):
    engine = _engine(kinaema_ckpt)
    seen = []
    real = engine._update_state  # the model's update, traced or eager
    monkeypatch.setattr(engine, "_update_state", lambda s, t, o: (seen.append(o.clone()), real(s, t, o))[1])
    images = _images(3)
    engine.update(images[0], T_world_base=yaw_pose(1.0, 2.0, math.pi / 2), stamp_ns=1)
    engine.update(images[1], T_world_base=yaw_pose(1.0, 2.5, math.pi / 2 + 0.1), stamp_ns=2)  # 0.5 m ahead
    engine.update(images[2], odometry=None, T_world_base=yaw_pose(1.0, 2.5, math.pi / 2 + 0.1), stamp_ns=3)
    np.testing.assert_allclose(seen[0].numpy(), [[0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(seen[1].numpy(), [[0.5, 0.0, 0.1]], atol=1e-6)
    np.testing.assert_allclose(seen[2].numpy(), [[0, 0, 0]], atol=1e-6)


def test_odometry_updates(kinaema_ckpt):
    engine = _engine(kinaema_ckpt)
    images = _images(3)
    for i, image in enumerate(images):
        engine.update(image, odometry=(0.1, 0.0, 0.05), stamp_ns=i + 1)
    assert engine.steps == 3 and engine.status()["pose_source"] == "odometry"
    with pytest.raises(InvalidInputError, match="one kind"):
        engine.update(images[0], T_world_base=np.eye(4), stamp_ns=10)


def test_resize_policies(kinaema_ckpt):
    wide = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with pytest.raises(InvalidInputError, match="160x120.*32x32"):
        _engine(kinaema_ckpt, resize="none").update(wide, odometry=(0, 0, 0), stamp_ns=1)
    assert EngineConfig().resize == "crop"  # the default takes any common camera
    for policy in ("crop", "stretch"):
        engine = _engine(kinaema_ckpt, resize=policy)
        engine.update(wide, odometry=(0, 0, 0), stamp_ns=1)
        assert engine.steps == 1 and np.isfinite(engine.query(wide).x)
    # a picture too small to read is refused whatever the policy (an upscaled 1x1 image says nothing)
    for tiny in (
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((1, 8000, 3), np.uint8),
        np.zeros((7, 7, 3), np.uint8),
    ):
        for policy in ("crop", "stretch"):
            with pytest.raises(InvalidInputError, match="too small"):
                _engine(kinaema_ckpt, resize=policy).update(tiny, odometry=(0, 0, 0), stamp_ns=1)
    # and so is a strip (crop would read a sliver of it, stretch a squashed view), for updates and queries
    rng = np.random.default_rng(1)
    for policy in ("crop", "stretch"):
        engine = _engine(kinaema_ckpt, resize=policy)
        engine.update(wide, odometry=(0, 0, 0), stamp_ns=1)
        before = _snapshot(engine)
        for shape in ((16, 8000, 3), (8000, 16, 3), (40, 161, 3)):
            strip = rng.integers(0, 256, shape, dtype=np.uint8)
            with pytest.raises(InvalidInputError, match=rf"image is {shape[1]}x{shape[0]}: a strip"):
                engine.query(strip)
            with pytest.raises(InvalidInputError, match="a strip"):
                engine.update(strip, odometry=(0, 0, 0), stamp_ns=2)
            _assert_unchanged(engine, before)
        assert np.isfinite(engine.query(rng.integers(0, 256, (40, 160, 3), dtype=np.uint8)).x)  # 4:1 reads
    with pytest.raises(InvalidInputError, match="too small"):  # 15 px: below the 16 px floor
        _engine(kinaema_ckpt).update(np.zeros((15, 20, 3), np.uint8), odometry=(0, 0, 0), stamp_ns=1)
    # crop keeps the centre square: a picture whose borders differ but centre agrees encodes the same
    engine = _engine(kinaema_ckpt, resize="crop")
    other = wide.copy()
    other[:, :20] = 0
    t1, t2 = engine._image_tensor(wide), engine._image_tensor(other)
    assert torch.equal(t1, t2)


# ----------------------------------------------------------------------------------------------------
# bad input: a clear error and the memory untouched


def _bad_updates(images):
    good = images[0]
    T = yaw_pose(5.0, 0.0, 0.0)
    sheared = T.copy()
    sheared[0, 1] = 0.3
    nan_pose = T.copy()
    nan_pose[0, 3] = np.nan
    return {
        "non-rigid pose": (dict(image_rgb=good, T_world_base=sheared, stamp_ns=10**9), "not orthonormal"),
        "NaN pose": (dict(image_rgb=good, T_world_base=nan_pose, stamp_ns=10**9), "NaN"),
        "NaN odometry": (dict(image_rgb=good, odometry=(np.nan, 0, 0), stamp_ns=10**9), "finite"),
        "both poses": (
            dict(image_rgb=good, T_world_base=T, odometry=(0, 0, 0), stamp_ns=10**9),
            "exactly one",
        ),
        "no pose": (dict(image_rgb=good, stamp_ns=10**9), "exactly one"),
        "negative stamp": (dict(image_rgb=good, T_world_base=T, stamp_ns=-1), "non-negative"),
        "float stamp": (dict(image_rgb=good, T_world_base=T, stamp_ns=1.5e9), "integer"),
        "wrong size": (dict(image_rgb=good[:16], T_world_base=T, stamp_ns=10**9), "reads 32x32"),
        "grey image": (dict(image_rgb=good[..., 0], T_world_base=T, stamp_ns=10**9), r"\(H, W, 3\) uint8"),
        "float image": (dict(image_rgb=good.astype(np.float32), T_world_base=T, stamp_ns=10**9), "uint8"),
        "not an array": (dict(image_rgb=good.tolist(), T_world_base=T, stamp_ns=10**9), "numpy array"),
    }


@pytest.mark.parametrize("backend", ["kinaema", "kinaema_ring", "keyframes"])
def test_bad_input_is_refused_and_leaves_the_memory_untouched(tmp_path, kinaema_ckpt, backend):
    if backend == "kinaema_ring":
        backend, kinaema_ckpt = "kinaema", _checkpoint(tmp_path / "ring.pt", config=SMALL_RING)
    engine = _engine(kinaema_ckpt, backend=backend)
    images = _images(5)
    _walk(engine, images)
    before = _snapshot(engine)
    answer = engine.query(images[1])
    for kwargs, match in _bad_updates(images).values():
        with pytest.raises(InvalidInputError, match=match):
            kwargs = dict(kwargs)
            engine.update(kwargs.pop("image_rgb"), **kwargs)
        _assert_unchanged(engine, before)
    for bad in (images[0][:16], images[0].astype(np.float32), None):
        with pytest.raises(InvalidInputError):
            engine.query(bad)
    _assert_unchanged(engine, before)
    assert engine.query(images[1]) == _eq(answer)


def _eq(answer):
    """An object equal to answers equal to `answer` (MemoryAnswer holds an array)."""

    class _Same:
        def __eq__(self, other):
            return all(
                np.array_equal(getattr(other, f.name), getattr(answer, f.name))
                for f in dataclasses.fields(MemoryAnswer)
            )

    return _Same()


# ----------------------------------------------------------------------------------------------------
# save / load


@pytest.mark.parametrize("backend", ["kinaema", "kinaema_ring", "keyframes"])
def test_save_load_round_trip_gives_identical_answers(tmp_path, kinaema_ckpt, backend):
    if backend == "kinaema_ring":
        backend, kinaema_ckpt = "kinaema", _checkpoint(tmp_path / "ring.pt", config=SMALL_RING)
    engine = _engine(kinaema_ckpt, backend=backend)
    images = _images(6)
    _walk(engine, images[:4])
    engine.save(tmp_path / "state.pt")
    expected = [engine.query(im) for im in images]
    engine.update(images[4], T_world_base=yaw_pose(2.0, 0.0, 1.0), stamp_ns=5 * 10**9)

    fresh = _engine(kinaema_ckpt, backend=backend)
    fresh.load(tmp_path / "state.pt")
    assert fresh.steps == 4 and fresh.last_stamp_ns == 600 * MS
    for im, want in zip(images, expected, strict=True):
        assert fresh.query(im) == _eq(want)
    # the episode continues from the saved pose: the same next update gives the same memory
    engine.load(tmp_path / "state.pt")
    for e in (engine, fresh):
        e.update(images[5], T_world_base=yaw_pose(1.5, 0.5, 0.7), stamp_ns=10**9)
    assert engine.query(images[0]) == _eq(fresh.query(images[0]))
    assert not list(tmp_path.glob(".*partial*")), "atomic write left a temp file"


def test_load_refuses_states_of_other_models_and_leaves_the_engine_as_it_was(tmp_path, kinaema_ckpt):
    images = _images(4)
    other_config = _engine(_checkpoint(tmp_path / "big.pt", config={**SMALL_KINAEMA, "slots": 16}))
    other_weights = _engine(_checkpoint(tmp_path / "seed1.pt", seed=1))
    keyframes = _engine(kinaema_ckpt, backend="keyframes")
    for e in (other_config, other_weights, keyframes):
        _walk(e, images)
    other_config.save(tmp_path / "config.pt")
    other_weights.save(tmp_path / "weights.pt")
    keyframes.save(tmp_path / "keyframes.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    torch.save({"format": "spatial_memory.memory_state", "version": 99}, tmp_path / "future.pt")

    engine = _engine(kinaema_ckpt)
    _walk(engine, images[:2])
    before = _snapshot(engine)
    cases = {
        "config.pt": "model config differs: slots=16",
        "weights.pt": "other weights",
        "keyframes.pt": "'keyframes' memory, this engine runs 'kinaema'",
        "garbage.pt": "cannot read memory state",
        "future.pt": "version 99",
        "missing.pt": "does not exist",
    }
    for name, match in cases.items():
        with pytest.raises(InvalidInputError, match=match):
            engine.load(tmp_path / name)
        _assert_unchanged(engine, before)


def test_load_refuses_a_tampered_state(tmp_path, kinaema_ckpt):
    engine = _engine(kinaema_ckpt)
    _walk(engine, _images(2))
    engine.save(tmp_path / "state.pt")
    payload = torch.load(tmp_path / "state.pt", weights_only=True)
    payload["state"]["tensor"] = payload["state"]["tensor"][:, :4]
    torch.save(seal(payload), tmp_path / "cut.pt")  # resealed: the checks behind the checksum must catch it
    payload["state"]["tensor"] = torch.full_like(engine.state, float("nan"))  # the right shape, all NaN
    torch.save(seal(payload), tmp_path / "nan.pt")
    fresh = _engine(kinaema_ckpt)
    before = _snapshot(fresh)
    with pytest.raises(InvalidInputError, match="does not fit"):
        fresh.load(tmp_path / "cut.pt")
    with pytest.raises(InvalidInputError, match="NaN"):
        fresh.load(tmp_path / "nan.pt")
    _assert_unchanged(fresh, before)


def test_a_damaged_state_file_is_refused_not_loaded(tmp_path, kinaema_ckpt):
    """Fault injection: one byte flipped anywhere in a saved state fails the load with one clear error
    naming the file, or changes nothing the engine loads (torch does not check its zip CRCs)."""
    engine = _engine(kinaema_ckpt)
    _walk(engine, _images(3))
    engine.save(tmp_path / "state.pt")
    data, (want, steps, stamp, _) = (tmp_path / "state.pt").read_bytes(), _snapshot(engine)
    fresh = _engine(kinaema_ckpt)
    rng = np.random.default_rng(0)
    refused = 0
    for trial, at in enumerate(rng.integers(0, len(data), 40)):
        bad = bytearray(data)
        bad[at] ^= 1 << int(rng.integers(0, 8))
        damaged = tmp_path / f"flip{trial}.pt"
        damaged.write_bytes(bytes(bad))
        fresh.reset()
        try:
            fresh.load(damaged)
        except InvalidInputError as exc:
            assert f"flip{trial}.pt" in str(exc)
            refused += 1
            continue
        got = _snapshot(fresh)
        assert all(torch.equal(a, b) for a, b in zip(got[0], want, strict=True)), f"byte {at}: state changed"
        assert got[1:3] == (steps, stamp)
    assert refused >= 30  # nearly every byte is content; the rest is zip padding


def test_a_state_changed_behind_its_checksum_is_refused_and_an_old_one_loads(tmp_path, kinaema_ckpt, caplog):
    engine = _engine(kinaema_ckpt)
    _walk(engine, _images(2))
    engine.save(tmp_path / "state.pt")
    payload = torch.load(tmp_path / "state.pt", weights_only=True)
    payload["state"]["tensor"].view(-1)[5] += 0.01  # a plausible value, not resealed
    torch.save(payload, tmp_path / "changed.pt")
    fresh = _engine(kinaema_ckpt)
    before = _snapshot(fresh)
    with pytest.raises(InvalidInputError, match="changed.pt: the memory state's checksum does not match"):
        fresh.load(tmp_path / "changed.pt")
    _assert_unchanged(fresh, before)
    payload["state"]["tensor"].view(-1)[5] -= 0.01
    del payload[CHECKSUM_KEY]
    torch.save({**payload, "version": UNSEALED_VERSION}, tmp_path / "v1.pt")  # written before checksums
    with caplog.at_level("WARNING", logger="spatial_memory.memory.registry"):
        fresh.load(tmp_path / "v1.pt")
    assert "written before checksums" in caplog.text and fresh.steps == 2


# ----------------------------------------------------------------------------------------------------
# keyframes: exact geometry


def test_keyframes_answer_a_stored_frame_with_its_camera_pose_relative_to_now(kinaema_ckpt):
    offset = (0.2, -0.1, 0.3)  # camera (x, y, yaw) on the base
    engine = _engine(kinaema_ckpt, backend="keyframes", keyframe_camera_offset=offset)
    assert engine.backend == "keyframes" and isinstance(engine.state, HistoryState)
    images = _images(5)
    poses = [yaw_pose(0.5 * i, 0.2 * i * i, 0.4 * i) for i in range(5)]
    for i, (image, T) in enumerate(zip(images, poses, strict=True)):
        engine.update(image, T_world_base=T, stamp_ns=(i + 1) * 200 * MS)
    T_now_inv = np.linalg.inv(poses[-1])
    for i in (0, 2, 4):
        answer = engine.query(images[i])
        T_cam = poses[i] @ yaw_pose(*offset[:2], offset[2])  # the camera's planar pose in the world
        want = T_now_inv @ T_cam
        assert answer.x == pytest.approx(want[0, 3], abs=1e-4)
        assert answer.y == pytest.approx(want[1, 3], abs=1e-4)
        assert answer.yaw == pytest.approx(math.atan2(want[1, 0], want[0, 0]), abs=1e-4)
        assert answer.confidence > 0.99 and answer.seen_probability > 0.98  # cosine similarity 1
        np.testing.assert_allclose(answer.T_base_query, level_camera_pose(answer.x, answer.y, answer.yaw))


def test_keyframes_from_a_keyframes_checkpoint(tmp_path):
    ckpt = _checkpoint(tmp_path / "kf.pt", name="keyframes", config={"camera_offset": (1.0, 0.0, 0.0)})
    engine = _engine(ckpt, backend="keyframes")
    image = _images(1)[0]
    engine.update(image, T_world_base=np.eye(4), stamp_ns=1)
    assert engine.query(image).x == pytest.approx(1.0, abs=1e-5)


def test_a_shipped_model_is_found_by_its_relative_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = Path(resolve_checkpoint("models/kinaema_indoor64.pt"))
    assert found.is_absolute() and found.is_file()
    assert resolve_checkpoint("models/no_such_model.pt") == "models/no_such_model.pt"  # the loader says why


# ----------------------------------------------------------------------------------------------------
# time: out-of-order frames are dropped, a jump back resets


def test_out_of_order_frames_are_dropped_and_counted_not_fatal(kinaema_ckpt):
    engine = _engine(kinaema_ckpt)
    images = _images(6)
    _walk(engine, images[:5])  # stamps 0..800 ms
    before = _snapshot(engine)
    for stamp in (700 * MS, 800 * MS, 1):  # late, duplicate, 0.8 s back: all within the 1 s jump threshold
        assert engine.update(images[5], T_world_base=yaw_pose(9.0, 0.0, 0.0), stamp_ns=stamp) == DROPPED_LATE
    tensors, steps, stamp, status = _snapshot(engine)
    assert (steps, stamp) == before[1:3]
    assert all(torch.equal(a, b) for a, b in zip(tensors, before[0], strict=True))
    assert engine.counters == {
        "frames_used": 5,
        "frames_dropped_late": 3,
        "time_jump_resets": 0,
        "lost_resets": 0,
    }
    assert status["frames_dropped_late"] == 3
    assert engine.update(images[5], T_world_base=yaw_pose(1.0, 0.0, 0.0), stamp_ns=900 * MS) == USED
    assert engine.steps == 6


def test_a_jump_back_in_time_resets_the_memory_and_keeps_the_frame(kinaema_ckpt):
    engine = _engine(kinaema_ckpt, time_jump_reset_s=0.5)
    images = _images(6)
    _walk(engine, images[:5])
    before = _snapshot(engine)
    with pytest.raises(InvalidInputError, match="reads 32x32"):  # bad input: no reset either
        engine.update(images[5][:16], T_world_base=np.eye(4), stamp_ns=0)
    _assert_unchanged(engine, before)
    assert engine.update(images[5], T_world_base=yaw_pose(3.0, 1.0, 0.5), stamp_ns=0) == RESET_AND_USED
    assert engine.steps == 1 and engine.last_stamp_ns == 0
    assert engine.counters["time_jump_resets"] == 1
    # the new episode starts from that frame's pose: the next increment is measured from it
    assert engine.update(images[4], T_world_base=yaw_pose(3.5, 1.0, 0.5), stamp_ns=200 * MS) == USED
    assert engine.status()["pose_source"] == "pose"


def test_time_jump_threshold_is_checked():
    for bad in (-1.0, float("inf"), float("nan"), True):
        with pytest.raises(ConfigError, match="time_jump_reset_s"):
            EngineConfig(time_jump_reset_s=bad)


def test_motion_bounds_are_checked():
    for name in ("max_distance_m", "max_speed_m_s", "step_slack_m"):
        for bad in (0.0, -1.0, float("inf"), float("nan"), True):
            with pytest.raises(ConfigError, match=name):
                EngineConfig(**{name: bad})


@pytest.mark.parametrize("backend", ["kinaema", "keyframes"])
def test_an_absurd_pose_is_refused_and_the_memory_keeps_answering(tmp_path, kinaema_ckpt, backend):
    """A finite but absurd pose (a 1e30 m jump) used to turn the state NaN for good: every answer NaN, and
    the next save() overwrote the good state file. Now it is refused and nothing changes."""
    engine = _engine(kinaema_ckpt, backend=backend)
    images = _images(6)
    _walk(engine, images[:4])  # ends at (0.9, 0.3), stamp 0.6 s
    engine.save(tmp_path / "state.pt")
    good_file = (tmp_path / "state.pt").read_bytes()
    before, answer = _snapshot(engine), engine.query(images[1])
    absurd = {
        "1e30 m away": (yaw_pose(1e30, 0.0, 0.0), 800 * MS, r"1e\+30 m from the origin of its frame"),
        "past max_distance_m": (yaw_pose(0.0, 1000.5, 0.0), 800 * MS, "beyond max_distance_m = 1000 m"),
        "faster than the robot": (yaw_pose(30.0, 0.3, 0.0), 800 * MS, r"moved 29\.1 m in 0\.2 s"),
    }
    for T, stamp, match in absurd.values():
        with pytest.raises(InvalidInputError, match=match):
            engine.update(images[4], T_world_base=T, stamp_ns=stamp)
        _assert_unchanged(engine, before)
    assert engine.query(images[1]) == _eq(answer) and math.isfinite(answer.x)
    engine.save(tmp_path / "state.pt")
    assert (tmp_path / "state.pt").read_bytes() == good_file  # the same state saved again
    # a real jump of the odometry frame is accepted once the time since the last frame used can explain it
    assert engine.update(images[4], T_world_base=yaw_pose(30.0, 0.3, 0.0), stamp_ns=7 * 10**9) == USED


def test_an_absurd_odometry_step_is_refused(kinaema_ckpt):
    engine = _engine(kinaema_ckpt)
    images = _images(3)
    engine.update(images[0], odometry=(1e30, 0.0, 0.0), stamp_ns=0)  # the first increment is not used
    before = _snapshot(engine)
    for step in ((1e30, 0.0, 0.0), (0.0, -3.0, 0.0)):  # 3 m in 0.2 s: more than 5 m/s x 0.2 s + 1 m
        with pytest.raises(InvalidInputError, match="refused as a jump"):
            engine.update(images[1], odometry=step, stamp_ns=200 * MS)
        _assert_unchanged(engine, before)
    assert engine.update(images[1], odometry=(0.0, -1.9, 0.0), stamp_ns=200 * MS) == USED
    loose = _engine(kinaema_ckpt, max_speed_m_s=50.0)  # a faster robot: the bound is its top speed
    loose.update(images[0], odometry=(0.0, 0.0, 0.0), stamp_ns=0)
    assert loose.update(images[1], odometry=(0.0, -3.0, 0.0), stamp_ns=200 * MS) == USED


def test_a_state_that_is_not_finite_is_never_answered_or_saved(tmp_path, kinaema_ckpt, monkeypatch):
    engine = _engine(kinaema_ckpt)
    images = _images(4)
    _walk(engine, images[:3])
    engine.save(tmp_path / "state.pt")
    good_file = (tmp_path / "state.pt").read_bytes()
    before = _snapshot(engine)
    model_update = engine._update_state  # the model's update, traced or eager
    monkeypatch.setattr(engine, "_update_state", lambda *a: torch.full_like(model_update(*a), float("nan")))
    with pytest.raises(InvalidInputError, match="made the memory state NaN or infinite"):
        engine.update(images[3], T_world_base=yaw_pose(0.9, 0.3, 0.6), stamp_ns=600 * MS)
    _assert_unchanged(engine, before)
    monkeypatch.undo()
    engine.state.view(-1)[3] = float("inf")  # damaged in memory (the state is read-only by contract)
    with pytest.raises(InvalidInputError, match="answer is NaN or infinite"):
        engine.query(images[0])
    with pytest.raises(InvalidInputError, match=r"NaN or infinite: not saving it, .*state.pt is kept"):
        engine.save(tmp_path / "state.pt")
    assert (tmp_path / "state.pt").read_bytes() == good_file
    engine.load(tmp_path / "state.pt")  # the good state is still there to go back to
    assert math.isfinite(engine.query(images[0]).x)


def test_a_picture_without_information_is_refused_not_answered(kinaema_ckpt):
    engine = _engine(kinaema_ckpt)
    images = _images(5)
    _walk(engine, images)
    for blank in (np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8)):
        with pytest.raises(InvalidInputError, match="nothing to recognise"):
            engine.query(blank)
    assert np.isfinite(engine.query(images[0]).x)  # a real picture is answered
    open_engine = _engine(kinaema_ckpt, min_query_contrast=0.0)
    _walk(open_engine, images)
    assert np.isfinite(open_engine.query(np.zeros((32, 32, 3), np.uint8)).x)  # 0 accepts every picture
    with pytest.raises(ConfigError, match="min_query_contrast"):
        EngineConfig(min_query_contrast=-1.0)


def test_snapshot_and_restore_with_the_view_jump_check_on(kinaema_ckpt):
    """Mem-Nav starts every picture from a snapshot; the view jump check keeps the last frame's features."""
    engine = _engine(kinaema_ckpt, jump_check=True)
    images = _images(6)
    _walk(engine, images[:3])
    snap = engine.snapshot()
    answer = engine.query(images[1])
    _walk(engine, images[3:], start_ns=600 * MS)
    engine.restore(snap)
    assert engine.steps == 3 and engine.query(images[1]) == _eq(answer)
    engine.restore(snap)  # the snapshot stays usable
    assert engine.steps == 3


def test_a_prepared_frame_updates_as_the_image_itself(kinaema_ckpt):
    """`prepare` (run outside any lock by MemoryService) leaves the same state as a plain update; a frame
    prepared from another image is refused; a bad image is refused by `prepare` already."""
    plain, split = _engine(kinaema_ckpt, jump_check=True), _engine(kinaema_ckpt, jump_check=True)
    images = _images(4)
    for i, image in enumerate(images):
        pose = yaw_pose(0.1 * i, 0.0, 0.05 * i)
        plain.update(image, T_world_base=pose, stamp_ns=(i + 1) * 200 * MS)
        prepared = split.prepare(image)
        assert prepared.view is not None and prepared.tokens.shape[0] == 1
        split.update(image, T_world_base=pose, stamp_ns=(i + 1) * 200 * MS, prepared=prepared)
    assert torch.equal(plain.state, split.state) and plain.steps == split.steps == 4
    before = _snapshot(split)
    with pytest.raises(InvalidInputError, match="another image"):
        split.update(images[0].copy(), T_world_base=yaw_pose(0.5, 0, 0), stamp_ns=10**9, prepared=prepared)
    with pytest.raises(InvalidInputError):
        split.prepare(np.zeros((32, 32), np.uint8))
    _assert_unchanged(split, before)

"""TUM RGB-D folder and trajectory reading: parsing, association, slicing, resizing, round trips, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatial_memory.errors import InvalidInputError
from spatial_memory.vo.tum import (
    TUM_INTRINSICS,
    check_images,
    load_depth,
    load_rgb,
    parse_intrinsics,
    read_tum,
    read_tum_trajectory,
    scaled_K,
    write_tum,
)

K_FR3 = np.array([[535.4, 0, 320.1], [0, 539.2, 247.6], [0, 0, 1]])


def make_tum(root: Path, n: int = 6, size: tuple[int, int] = (64, 48), depth_offset: float = 0.005) -> Path:
    """A tiny TUM folder: n frames at 10 Hz, depth stamps shifted by depth_offset (the last depth missing)."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines, gt_lines = ["# timestamp filename"], ["# timestamp filename"], ["# tx..."]
    for i in range(n):
        stamp = 100.0 + 0.1 * i
        image = np.full((size[1], size[0], 3), (i, 2 * i, 3 * i), dtype=np.uint8)
        image[0, 0] = (255, 0, 0)  # BGR on disk: a blue top-left pixel
        cv2.imwrite(str(root / "rgb" / f"{stamp:.6f}.png"), image)
        rgb_lines.append(f"{stamp:.6f} rgb/{stamp:.6f}.png")
        if i < n - 1:
            d_stamp = stamp + depth_offset
            depth = np.full((size[1], size[0]), 5000 * (1 + i), dtype=np.uint16)
            depth[0, 0] = 0
            cv2.imwrite(str(root / "depth" / f"{d_stamp:.6f}.png"), depth)
            depth_lines.append(f"{d_stamp:.6f} depth/{d_stamp:.6f}.png")
        gt_lines.append(f"{stamp:.4f} {i} 0 0 0 0 0 1")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tum(tmp_path / "rgbd_dataset_freiburg3_tiny")


def test_parse_and_associate(tiny: Path) -> None:
    seq = read_tum(tiny)
    assert len(seq) == 6 and (seq.width, seq.height) == (64, 48)
    np.testing.assert_allclose(seq.stamps, 100.0 + 0.1 * np.arange(6))
    assert all(f.depth is not None for f in seq.frames[:5]) and seq.frames[5].depth is None
    np.testing.assert_allclose(seq.K, K_FR3)
    assert seq.depth_scale == 5000.0 and seq.gt_poses.shape == (6, 4, 4)
    np.testing.assert_allclose(seq.gt_poses[:, 0, 3], np.arange(6))


def test_depth_too_far_in_time_is_none(tmp_path: Path) -> None:
    seq = read_tum(make_tum(tmp_path / "freiburg1_x", depth_offset=0.03))
    assert all(f.depth is None for f in seq.frames)
    assert seq.K[0, 0] == 517.3
    assert np.all(load_depth(seq, 0) == 0)


def test_start_stride_max_frames(tiny: Path) -> None:
    seq = read_tum(tiny, stride=2, start=1, max_frames=2)
    np.testing.assert_allclose(seq.stamps, [100.1, 100.3])
    assert seq.frames[0].depth.name.startswith("100.105")


def test_images_and_resolution(tiny: Path) -> None:
    seq = read_tum(tiny)
    rgb = load_rgb(seq, 2)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 255) and tuple(rgb[5, 5]) == (6, 4, 2)  # BGR on disk -> RGB
    depth = load_depth(seq, 2)
    assert depth.dtype == np.float32 and depth[0, 0] == 0 and depth[5, 5] == pytest.approx(3.0)
    small = load_depth(seq, 2, (32, 24))
    assert small.shape == (24, 32) and set(np.unique(small)) <= {0.0, 3.0}  # nearest: no blended values
    assert load_rgb(seq, 2, (32, 24)).shape == (24, 32, 3)


def test_scaled_K() -> None:
    half = scaled_K(K_FR3, (640, 480), (320, 240))
    np.testing.assert_allclose(np.diag(half)[:2], [267.7, 269.6])
    np.testing.assert_allclose(half[:2, 2], [(320.1 + 0.5) / 2 - 0.5, (247.6 + 0.5) / 2 - 0.5])
    np.testing.assert_allclose(scaled_K(K_FR3, (640, 480), None), K_FR3)
    np.testing.assert_allclose(scaled_K(half, (320, 240), (640, 480)), K_FR3)


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :3] = Rotation.random(5, random_state=1).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(5, 3))
    stamps = 1341841873.4 + 0.033 * np.arange(5)
    path = tmp_path / "out" / "traj.txt"
    write_tum(path, stamps, poses)
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    quat_w_last = Rotation.from_matrix(poses[0, :3, :3]).as_quat()
    fields = np.array(lines[0].split(), dtype=float)
    assert np.allclose(fields[4:], quat_w_last, atol=1e-5) or np.allclose(fields[4:], -quat_w_last, atol=1e-5)
    back_stamps, back = read_tum_trajectory(path)
    np.testing.assert_allclose(back_stamps, stamps, atol=1e-6)
    np.testing.assert_allclose(back, poses, atol=1e-5)
    assert not list(path.parent.glob(".*partial*"))


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("rgb.txt", "1.0 rgb/a.png extra\n", "expected 'timestamp filename'"),
        ("rgb.txt", "abc rgb/a.png\n", "not a number"),
        ("groundtruth.txt", "1.0 0 0 0 0 0 1\n", "expected 'timestamp tx ty tz qx qy qz qw'"),
        ("groundtruth.txt", "1.0 0 0 x 0 0 0 1\n", "non-numeric"),
    ],
)
def test_malformed_lines(tiny: Path, name: str, text: str, match: str) -> None:
    (tiny / name).write_text("# comment\n" + text)
    with pytest.raises(InvalidInputError, match=match):
        read_tum(tiny)


def test_bad_inputs(tmp_path: Path, tiny: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        read_tum(tmp_path / "missing_freiburg3")
    with pytest.raises(InvalidInputError, match="stride"):
        read_tum(tiny, stride=0)
    (tiny / "rgb.txt").unlink()
    with pytest.raises(InvalidInputError, match="rgb.txt not found"):
        read_tum(tiny)
    unnamed = make_tum(tmp_path / "my_sequence")
    with pytest.raises(InvalidInputError, match="--intrinsics fx,fy,cx,cy .* intrinsics=K"):
        read_tum(unnamed)
    assert read_tum(unnamed, intrinsics=2 * np.eye(3)).K[0, 0] == 2.0
    with pytest.raises(InvalidInputError, match="3x3"):
        read_tum(unnamed, intrinsics=np.eye(2))
    with pytest.raises(InvalidInputError, match="finite"):
        write_tum(tmp_path / "t.txt", np.array([0.0]), np.full((1, 4, 4), np.nan))


def test_a_list_with_bytes_that_are_not_utf8_names_file_line_and_column(tiny: Path) -> None:
    """Issue 14: a UnicodeDecodeError traceback before."""
    (tiny / "rgb.txt").write_bytes(b"# timestamp filename\n100.0 rgb/a.png\n100.1 rgb/\xff\xfeb.png\n")
    with pytest.raises(InvalidInputError, match=r"rgb.txt:3: byte 0xff at column 11 is not UTF-8"):
        read_tum(tiny)


def test_every_listed_image_is_checked_before_any_work(tiny: Path) -> None:
    """Issue 14: a missing image at frame 50 stopped a run only when it got there (23 s in)."""
    seq = read_tum(tiny)
    seq.frames[4].rgb.unlink()
    seq.frames[1].depth.unlink()
    with pytest.raises(InvalidInputError, match=r"1 of the 6 colour images listed in .*rgb.txt are missing"):
        read_tum(tiny)
    assert len(read_tum(tiny, max_frames=4)) == 4  # frames not asked for are not checked
    seq = read_tum(tiny, max_frames=3)
    with pytest.raises(InvalidInputError, match=r"1 of the 3 depth images listed in .*depth.txt are missing"):
        check_images(seq, tiny / "depth.txt", depth=True)
    check_images(seq.frames[:1], tiny / "depth.txt", depth=True)


def test_intrinsics_from_the_command_line(tmp_path: Path) -> None:
    np.testing.assert_allclose(parse_intrinsics("535.4, 539.2,320.1,247.6"), K_FR3)
    np.testing.assert_allclose(parse_intrinsics("535.4 539.2 320.1 247.6"), K_FR3)
    np.testing.assert_allclose(parse_intrinsics("Freiburg3"), K_FR3)
    assert parse_intrinsics("freiburg1")[0, 0] == TUM_INTRINSICS["freiburg1"][0]
    text = tmp_path / "camera.txt"
    text.write_text("# fx fy cx cy d0 d1 d2 d3 d4\n535.4 539.2 320.1 247.6 0 0 0 0 0\n")
    np.testing.assert_allclose(parse_intrinsics(str(text)), K_FR3)
    info = tmp_path / "camera_info.yaml"
    data = "[535.4, 0, 320.1, 0, 539.2, 247.6, 0, 0, 1]"
    info.write_text(f"image_width: 640\ncamera_matrix:\n  rows: 3\n  cols: 3\n  data: {data}\n")
    np.testing.assert_allclose(parse_intrinsics(str(info)), K_FR3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera_matrix: {data: [1, 2]}\n")
    for value, match in [
        ("1,2,3", "--intrinsics takes fx,fy,cx,cy"),
        ("freiburg4", "--intrinsics takes"),
        ("0,500,320,240", "positive fx, fy"),
        ("nan,500,320,240", "finite"),
        (str(bad), "no 9-value camera_matrix"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            parse_intrinsics(value)


def test_real_clip(tum_teddy: Path) -> None:
    seq = read_tum(tum_teddy)
    assert len(seq) == 100 and (seq.width, seq.height) == (640, 480)
    assert all(f.depth is not None for f in seq.frames)
    np.testing.assert_allclose(seq.K, K_FR3)
    assert int(np.sum(seq.stamps < seq.gt_stamps[0])) == 5  # frames 0-3, and frame 4 by 9 ms
    assert np.allclose(np.linalg.det(seq.gt_poses[:, :3, :3]), 1.0)
    depth = load_depth(seq, 10)
    assert depth.shape == (480, 640) and 0.3 < np.median(depth[depth > 0]) < 5.0
    half = read_tum(tum_teddy, stride=2, start=4)
    assert len(half) == 48 and half.stamps[0] == seq.stamps[4]

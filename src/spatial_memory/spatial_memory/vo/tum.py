"""Reading TUM RGB-D folders (rgb/, depth/, rgb.txt, depth.txt, groundtruth.txt) and TUM trajectory files.

The layout is the one of the TUM RGB-D benchmark (Sturm et al., IROS 2012): list files of `timestamp path`
lines, 16-bit depth PNGs in metres x 5000 (0 = no reading) registered to the colour camera, and ground truth
as `timestamp tx ty tz qx qy qz qw` lines (Hamilton quaternion, w last) giving T_world_cam of the colour
camera's optical centre. Poses here are 4x4 float64 T_world_cam matrices throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from spatial_memory.atomic import write_file_atomic
from spatial_memory.errors import InvalidInputError

log = logging.getLogger(__name__)

MAX_DEPTH_DT = 0.02  # seconds between an rgb stamp and the depth stamp associated with it
DEPTH_SCALE = 5000.0  # TUM depth PNG value per metre

# (fx, fy, cx, cy) of the TUM RGB-D sensors at 640x480, by the sequence folder name
TUM_INTRINSICS: dict[str, tuple[float, float, float, float]] = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}


@dataclass(frozen=True)
class TumFrame:
    """One colour frame: its stamp, its image path and the associated depth image's path (None if none)."""

    stamp: float
    rgb: Path
    depth: Path | None


@dataclass(frozen=True)
class TumSequence:
    """A TUM RGB-D sequence (or a strided slice of one) with intrinsics and optional ground truth."""

    root: Path
    frames: tuple[TumFrame, ...]
    K: np.ndarray  # (3, 3) float64 at the native resolution
    width: int
    height: int
    depth_scale: float = DEPTH_SCALE
    gt_stamps: np.ndarray | None = None  # (N,)
    gt_poses: np.ndarray | None = None  # (N, 4, 4) T_world_cam

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def stamps(self) -> np.ndarray:
        """(len,) float64 colour frame stamps."""
        return np.array([f.stamp for f in self.frames], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# list files


def _read_text(path: Path) -> str:
    """The UTF-8 text of `path`; a byte that is not UTF-8 is one error naming the file, line and column."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        number, column = raw.count(b"\n", 0, exc.start) + 1, exc.start - line_start + 1
        raise InvalidInputError(
            f"{path}:{number}: byte 0x{raw[exc.start]:02x} at column {column} is not UTF-8 text "
            "(a TUM list holds 'timestamp path' lines)"
        ) from None


def _data_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty, non-comment line of a TUM text file."""
    if not path.is_file():
        raise InvalidInputError(f"{path} not found (a TUM folder holds rgb.txt, depth.txt, groundtruth.txt)")
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            rows.append((number, text.split()))
    return rows


def _stamp(text: str, path: Path, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{path}:{number}: timestamp {text!r} is not a number") from None
    if not np.isfinite(value):
        raise InvalidInputError(f"{path}:{number}: timestamp {text!r} is not finite")
    return value


def read_file_list(path: Path) -> tuple[np.ndarray, list[Path]]:
    """Stamps and paths (joined to the list's folder) of a `timestamp filename` list (rgb.txt, depth.txt)."""
    path = Path(path)
    stamps, files = [], []
    for number, fields in _data_lines(path):
        if len(fields) != 2:
            raise InvalidInputError(
                f"{path}:{number}: expected 'timestamp filename', got {len(fields)} fields"
            )
        stamps.append(_stamp(fields[0], path, number))
        files.append(path.parent / fields[1])
    return np.array(stamps, dtype=np.float64), files


def read_tum_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N,) stamps and (N, 4, 4) T_world_cam of a `stamp tx ty tz qx qy qz qw` file (groundtruth.txt)."""
    path = Path(path)
    rows = []
    for number, fields in _data_lines(path):
        if len(fields) != 8:
            raise InvalidInputError(
                f"{path}:{number}: expected 'timestamp tx ty tz qx qy qz qw', got {len(fields)} fields"
            )
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise InvalidInputError(f"{path}:{number}: non-numeric field in {' '.join(fields)!r}") from None
        if not np.all(np.isfinite(values)) or np.linalg.norm(values[4:]) < 1e-9:
            raise InvalidInputError(f"{path}:{number}: non-finite value or zero quaternion")
        rows.append(values)
    data = np.array(rows, dtype=np.float64).reshape(-1, 8)
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    if len(data):
        poses[:, :3, :3] = Rotation.from_quat(data[:, 4:8]).as_matrix()  # scipy: x, y, z, w
        poses[:, :3, 3] = data[:, 1:4]
    return data[:, 0].copy(), poses


def write_tum(path: Path, stamps: np.ndarray, poses: np.ndarray) -> None:
    """Write T_world_cam poses as `stamp tx ty tz qx qy qz qw` lines (w last), atomically."""
    stamps = np.asarray(stamps, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    if stamps.ndim != 1 or poses.shape != (len(stamps), 4, 4):
        raise InvalidInputError(f"need (N,) stamps and (N, 4, 4) poses, got {stamps.shape} and {poses.shape}")
    if not (np.all(np.isfinite(stamps)) and np.all(np.isfinite(poses))):
        raise InvalidInputError("stamps and poses must be finite")
    quats = Rotation.from_matrix(poses[:, :3, :3]).as_quat() if len(poses) else np.zeros((0, 4))
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for stamp, pose, q in zip(stamps, poses, quats, strict=True):
        t = pose[:3, 3]
        lines.append(
            f"{stamp:.6f} {t[0]:.6f} {t[1]:.6f} {t[2]:.6f} {q[0]:.6f} {q[1]:.6f} {q[2]:.6f} {q[3]:.6f}"
        )
    write_file_atomic(Path(path), ("\n".join(lines) + "\n").encode())


# ---------------------------------------------------------------------------------------------------------
# sequences


def associate_nearest(stamps: np.ndarray, candidates: np.ndarray, max_dt: float) -> np.ndarray:
    """Index into `candidates` of the nearest stamp for each of `stamps`, -1 where none is within max_dt."""
    stamps, candidates = np.asarray(stamps, np.float64), np.asarray(candidates, np.float64)
    if len(candidates) == 0:
        return np.full(len(stamps), -1, dtype=np.int64)
    order = np.argsort(candidates)
    sorted_c = candidates[order]
    after = np.searchsorted(sorted_c, stamps)
    left, right = np.clip(after - 1, 0, len(sorted_c) - 1), np.clip(after, 0, len(sorted_c) - 1)
    best = np.where(np.abs(sorted_c[left] - stamps) <= np.abs(sorted_c[right] - stamps), left, right)
    index = order[best]
    return np.where(np.abs(candidates[index] - stamps) <= max_dt, index, -1)


def default_intrinsics(root: Path) -> np.ndarray:
    """The TUM K of the sensor named in the folder name (freiburg1/2/3), else an error asking for one."""
    name = Path(root).name.lower()
    for key, (fx, fy, cx, cy) in TUM_INTRINSICS.items():
        if key in name:
            return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    raise InvalidInputError(
        f"cannot tell the camera of {root} from its name (no freiburg1/2/3 in it): give it with "
        f"--intrinsics fx,fy,cx,cy (or freiburg1/2/3, or a calibration file); in Python, intrinsics=K (3x3)"
    )


def _K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _calibration_file(path: Path) -> np.ndarray:
    """K from a calibration file: a ROS camera_info YAML (`camera_matrix: {data: [9 values]}` or `k:`/`K:`
    with 9 values) or a text file whose first data line starts with `fx fy cx cy` (TUM's camera
    parameter listing; distortion values after them are ignored)."""
    import yaml

    text = _read_text(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        matrix = doc.get("camera_matrix")
        values = matrix.get("data") if isinstance(matrix, dict) else doc.get("k", doc.get("K"))
        if isinstance(values, list) and len(values) == 9:
            try:
                return np.array(values, dtype=np.float64).reshape(3, 3)
            except (TypeError, ValueError):
                pass
        raise InvalidInputError(f"{path}: no 9-value camera_matrix.data (or k) in this camera_info file")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            if len(fields) >= 4:
                return _K(*(float(v) for v in fields[:4]))
        except ValueError:
            pass
        raise InvalidInputError(f"{path}:{number}: expected 'fx fy cx cy ...', got {line.strip()!r}")
    raise InvalidInputError(f"{path}: no 'fx fy cx cy' line in it")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_intrinsics(text: str) -> np.ndarray:
    """K (3x3) from a command-line value: 'fx,fy,cx,cy' (pixels at the images' native size), a TUM sensor
    name (freiburg1/2/3), or the path of a calibration file (`_calibration_file`)."""
    value = text.strip()
    if value.lower() in TUM_INTRINSICS:
        return _K(*TUM_INTRINSICS[value.lower()])
    fields = value.replace(",", " ").split()
    if len(fields) == 4 and all(_is_number(v) for v in fields):  # else maybe a file name with spaces
        return _check_K(_K(*(float(v) for v in fields)))
    path = Path(value).expanduser()
    if path.is_file():
        return _check_K(_calibration_file(path))
    raise InvalidInputError(
        f"--intrinsics takes fx,fy,cx,cy (four numbers, pixels), one of {sorted(TUM_INTRINSICS)} or a "
        f"calibration file; got {text!r}"
    )


def _check_K(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InvalidInputError(f"intrinsics must be a finite 3x3 matrix with positive fx, fy; got {K}")
    return K


def _image_size(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InvalidInputError(f"cannot read image {path}")
    return image.shape[1], image.shape[0]


def read_tum(
    root: Path,
    stride: int = 1,
    start: int = 0,
    max_frames: int | None = None,
    intrinsics: np.ndarray | None = None,
) -> TumSequence:
    """A TUM RGB-D folder as a `TumSequence`: colour frames [start::stride][:max_frames] with their depth.

    Each colour frame gets the nearest depth image within 0.02 s (else None). Ground truth is read when
    groundtruth.txt exists (all of it: evaluation associates it by time). Intrinsics default to the TUM
    values of the sensor named in the folder name.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"TUM folder {root} not found")
    if stride < 1 or start < 0 or (max_frames is not None and max_frames < 1):
        raise InvalidInputError(
            f"need stride >= 1, start >= 0, max_frames >= 1; got {stride}, {start}, {max_frames}"
        )
    K = _check_K(default_intrinsics(root) if intrinsics is None else intrinsics)
    rgb_stamps, rgb_files = read_file_list(root / "rgb.txt")
    depth_stamps, depth_files = (
        read_file_list(root / "depth.txt") if (root / "depth.txt").is_file() else (np.zeros(0), [])
    )
    match = associate_nearest(rgb_stamps, depth_stamps, MAX_DEPTH_DT)
    frames = [
        TumFrame(float(s), f, depth_files[m] if m >= 0 else None)
        for s, f, m in zip(rgb_stamps, rgb_files, match, strict=True)
    ][start::stride][:max_frames]
    if not frames:
        raise InvalidInputError(f"{root}: no colour frames left (start={start}, stride={stride})")
    check_images(frames, root / "rgb.txt", depth=False)
    gt_stamps = gt_poses = None
    if (root / "groundtruth.txt").is_file():
        gt_stamps, gt_poses = read_tum_trajectory(root / "groundtruth.txt")
    width, height = _image_size(frames[0].rgb)
    log.debug("%s: %d frames, %d with depth", root, len(frames), sum(f.depth is not None for f in frames))
    return TumSequence(root, tuple(frames), K, width, height, DEPTH_SCALE, gt_stamps, gt_poses)


def check_images(frames: Sequence[TumFrame] | TumSequence, listed_in: Path, depth: bool = False) -> None:
    """Every colour image (and depth image, with `depth`) of `frames` exists, checked before any work: a
    missing file at frame 50 used to stop a run only when it got there (23 s in)."""
    frames = frames.frames if isinstance(frames, TumSequence) else frames
    paths = [f.depth if depth else f.rgb for f in frames]
    missing = [p for p in paths if p is not None and not p.is_file()]
    if missing:
        kind = "depth" if depth else "colour"
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InvalidInputError(
            f"{len(missing)} of the {len(paths)} {kind} images listed in {listed_in} are missing: "
            f"{missing[0]}{more}"
        )


# ---------------------------------------------------------------------------------------------------------
# images


def scaled_K(K: np.ndarray, native_wh: tuple[int, int], resolution: tuple[int, int] | None) -> np.ndarray:
    """K for images resized from native (w, h) to `resolution` (w, h); pixel centres are kept aligned."""
    K = _check_K(K)
    if resolution is None or tuple(resolution) == tuple(native_wh):
        return K.copy()
    sx, sy = _resolution(resolution)[0] / native_wh[0], _resolution(resolution)[1] / native_wh[1]
    out = K.copy()
    out[0, 0], out[1, 1] = K[0, 0] * sx, K[1, 1] * sy
    out[0, 2], out[1, 2] = (K[0, 2] + 0.5) * sx - 0.5, (K[1, 2] + 0.5) * sy - 0.5
    return out


def _resolution(resolution: tuple[int, int]) -> tuple[int, int]:
    if len(resolution) != 2 or min(int(resolution[0]), int(resolution[1])) < 1:
        raise InvalidInputError(f"resolution must be (width, height) with positive sizes, got {resolution}")
    return int(resolution[0]), int(resolution[1])


def _frame(seq: TumSequence, i: int) -> TumFrame:
    if not -len(seq) <= i < len(seq):
        raise InvalidInputError(f"frame {i} out of range for a sequence of {len(seq)} frames")
    return seq.frames[i]


def load_rgb(seq: TumSequence, i: int, resolution: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of frame i, resized (INTER_AREA) to resolution (w, h) when given."""
    path = _frame(seq, i).rgb
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInputError(f"cannot read colour image {path}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if resolution is not None and (image.shape[1], image.shape[0]) != _resolution(resolution):
        image = cv2.resize(image, _resolution(resolution), interpolation=cv2.INTER_AREA)
    return image


def load_depth(seq: TumSequence, i: int, resolution: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) float32 depth in metres of frame i (0 = no reading), resized with INTER_NEAREST.

    A frame without an associated depth image gives all zeros (no reading anywhere).
    """
    frame = _frame(seq, i)
    if frame.depth is None:
        size = _resolution(resolution) if resolution is not None else (seq.width, seq.height)
        return np.zeros((size[1], size[0]), dtype=np.float32)
    raw = cv2.imread(str(frame.depth), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise InvalidInputError(f"cannot read {frame.depth} as a one-channel depth image")
    depth = raw.astype(np.float32) / np.float32(seq.depth_scale)
    if resolution is not None and (depth.shape[1], depth.shape[0]) != _resolution(resolution):
        depth = cv2.resize(depth, _resolution(resolution), interpolation=cv2.INTER_NEAREST)
    return depth

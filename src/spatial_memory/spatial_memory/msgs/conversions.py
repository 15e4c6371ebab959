"""ROS message <-> numpy conversions, duck-typed so they work on rclpy messages and on `rosbags` dataclasses.

Readers (`image_to_numpy`, `pose_to_matrix`, `joint_positions`, ...) only read fields by name, so the same
code converts a message received by an rclpy node, one read from a rosbag, and one built in a test from
the `rosbags` Humble or Jazzy typestore. Builders take a `MessageFactory`: `RclpyFactory()` in the nodes,
`RosbagsFactory(typestore)` in tests and bag tools. Nothing here imports rclpy at module level.

Conventions: images come out as fresh, C-contiguous arrays in native byte order -- colour always RGB
`(H, W, 3) uint8`, `mono8` `(H, W) uint8`, `16UC1` `(H, W) uint16`, `32FC1` `(H, W) float32`. Poses are 4x4
float64 `T_parent_child`; quaternions go through `spatial_memory.geometry` only (ROS order x, y, z, w).
Timestamps are int nanoseconds. Malformed messages raise `InvalidInputError` with a message naming the
field at fault.
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import check_pose, invert, make_pose, pose_from_xyz_quat, pose_to_xyz_quat

QUAT_NORM_TOL = 1e-3  # a received quaternion farther than this from unit length is a bug upstream
_INT32 = (-(2**31), 2**31 - 1)

# ----------------------------------------------------------------------------------------------------
# Message factories: how a builder makes a message of a given ROS type name
# ----------------------------------------------------------------------------------------------------


class MessageFactory(Protocol):
    """Makes messages by full type name ('sensor_msgs/msg/Image'); fields left out get their defaults."""

    def new(self, type_name: str, **fields: Any) -> Any:
        """A message of `type_name` with `fields` set and every other field at its default."""
        ...

    def uint8_array(self, data: np.ndarray) -> Any:
        """The value to store in a `uint8[]` field (image data) for this message flavour."""
        ...

    def float64_array(self, data: np.ndarray) -> Any:
        """The value to store in a `float64[]` field (joint positions) for this message flavour."""
        ...


class RclpyFactory:
    """Messages of the rclpy message classes (`sensor_msgs.msg.Image`, ...), imported on first use."""

    def new(self, type_name: str, **fields: Any) -> Any:
        return _rclpy_class(type_name)(**fields)

    def uint8_array(self, data: np.ndarray) -> array.array:
        out = array.array("B")  # rosidl's fast path: frombytes copies in one go (no per-element checks)
        out.frombytes(np.ascontiguousarray(data, dtype=np.uint8).tobytes())
        return out

    def float64_array(self, data: np.ndarray) -> array.array:
        return array.array("d", np.asarray(data, dtype=np.float64).tolist())


@cache
def _rclpy_class(type_name: str) -> type:
    """'pkg/msg/Name' -> the generated Python class `pkg.msg.Name`."""
    try:
        package, kind, name = type_name.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise InvalidInputError(f"no ROS message class for {type_name!r}: {exc}") from exc


class RosbagsFactory:
    """Messages of a `rosbags` typestore (`get_typestore(Stores.ROS2_JAZZY)`), every field filled.

    rosbags dataclasses have no defaults, so unspecified fields are filled from the typestore's field
    definitions (zeros, empty strings, empty arrays), recursively.
    """

    _NUMPY_DTYPES = {
        "bool": np.bool_,
        "byte": np.uint8,
        "char": np.uint8,
        "int8": np.int8,
        "uint8": np.uint8,
        "int16": np.int16,
        "uint16": np.uint16,
        "int32": np.int32,
        "uint32": np.uint32,
        "int64": np.int64,
        "uint64": np.uint64,
        "float32": np.float32,
        "float64": np.float64,
    }

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def new(self, type_name: str, **fields: Any) -> Any:
        try:
            cls = self.typestore.types[type_name]
            _, field_defs = self.typestore.fielddefs[type_name]
        except KeyError as exc:
            raise InvalidInputError(f"type {type_name!r} is not in the rosbags typestore") from exc
        known = {name for name, _ in field_defs}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InvalidInputError(f"{type_name} has no field(s) {unknown}")
        values = {name: fields[name] if name in fields else self._default(desc) for name, desc in field_defs}
        return cls(**values)

    def uint8_array(self, data: np.ndarray) -> np.ndarray:
        return np.array(data, dtype=np.uint8, copy=True).reshape(-1)  # never alias the caller's array

    def float64_array(self, data: np.ndarray) -> np.ndarray:
        return np.asarray(data, dtype=np.float64).reshape(-1).copy()

    def _default(self, desc: tuple[Any, Any]) -> Any:
        """Default value of one field from its rosbags description (nodetype, details)."""
        kind, details = desc
        kind = int(kind)  # rosbags Nodetype: BASE=1, NAME=2, ARRAY=3, SEQUENCE=4
        if kind == 1:
            base = details[0]
            if base == "string":
                return ""
            if base == "bool":
                return False
            return 0.0 if base.startswith("float") else 0
        if kind == 2:
            return self.new(details)
        element, length = details
        if int(element[0]) == 1 and element[1][0] in self._NUMPY_DTYPES:
            return np.zeros(length if kind == 3 else 0, dtype=self._NUMPY_DTYPES[element[1][0]])
        return [self._default(element) for _ in range(length if kind == 3 else 0)]


# ----------------------------------------------------------------------------------------------------
# Time and headers
# ----------------------------------------------------------------------------------------------------


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> int nanoseconds; `InvalidInputError` unless sec is an int32 and nanosec an
    integer in [0, 1e9) (a stamp outside those is malformed: read as is, it would shift time silently)."""
    sec, nanosec = getattr(stamp, "sec", None), getattr(stamp, "nanosec", None)
    for name, value in (("sec", sec), ("nanosec", nanosec)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidInputError(f"stamp {name} must be an integer, got {value!r}")
    if not _INT32[0] <= sec <= _INT32[1]:
        raise InvalidInputError(f"stamp sec {sec} does not fit builtin_interfaces/Time (int32 seconds)")
    if not 0 <= nanosec < 1_000_000_000:
        raise InvalidInputError(f"stamp nanosec {nanosec} is outside [0, 1e9)")
    return int(sec) * 1_000_000_000 + int(nanosec)


def ns_to_stamp(stamp_ns: int, factory: MessageFactory) -> Any:
    """int nanoseconds -> builtin_interfaces/Time (nanosec always in 0..1e9-1, sec an int32)."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    if not _INT32[0] <= sec <= _INT32[1]:
        raise InvalidInputError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return factory.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def make_header(stamp_ns: int, frame_id: str, factory: MessageFactory) -> Any:
    """std_msgs/Header with the stamp in nanoseconds."""
    return factory.new("std_msgs/msg/Header", stamp=ns_to_stamp(stamp_ns, factory), frame_id=frame_id)


# ----------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEncoding:
    """Layout of one supported sensor_msgs/Image encoding."""

    name: str
    channels: int
    dtype: np.dtype

    @property
    def pixel_bytes(self) -> int:
        return self.channels * self.dtype.itemsize


ENCODINGS: dict[str, ImageEncoding] = {
    e.name: e
    for e in (
        ImageEncoding("rgb8", 3, np.dtype(np.uint8)),
        ImageEncoding("bgr8", 3, np.dtype(np.uint8)),
        ImageEncoding("mono8", 1, np.dtype(np.uint8)),
        ImageEncoding("16UC1", 1, np.dtype(np.uint16)),
        ImageEncoding("32FC1", 1, np.dtype(np.float32)),
    )
}


def image_encoding(name: str) -> ImageEncoding:
    """The layout of a supported encoding, or `InvalidInputError` listing the supported ones."""
    try:
        return ENCODINGS[name]
    except KeyError:
        raise InvalidInputError(
            f"unsupported image encoding {name!r}; supported: {sorted(ENCODINGS)}"
        ) from None


def _as_bytes(data: Any) -> np.ndarray:
    """A flat uint8 view of an Image's `data` (numpy, array.array, bytes, memoryview or list)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise InvalidInputError(f"image data must be uint8 bytes, got dtype {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if isinstance(data, str):
        raise InvalidInputError("image data must be bytes or a sequence of 0..255 integers, got a str")
    try:
        values = np.asarray(list(data))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"image data must be bytes or a sequence of integers: {exc}") from exc
    if values.size and values.dtype.kind not in "iu":
        raise InvalidInputError(f"image data must be integers in 0..255, got {values.dtype} values")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise InvalidInputError("image data holds values outside 0..255")
    return values.astype(np.uint8)


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> a fresh array (RGB for colour), honouring row padding and `is_bigendian`.

    Raises `InvalidInputError` for an unknown encoding, an empty image, a step smaller than one row of
    pixels, or a data size other than `step * height`.
    """
    enc = image_encoding(str(msg.encoding))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise InvalidInputError(f"empty image: {width}x{height} ({enc.name})")
    row_bytes = width * enc.pixel_bytes
    if step < row_bytes:
        raise InvalidInputError(
            f"image step {step} is smaller than one row: width {width} x {enc.pixel_bytes} bytes per "
            f"{enc.name} pixel = {row_bytes}"
        )
    data = _as_bytes(msg.data)
    if data.size != step * height:
        raise InvalidInputError(
            f"image data has {data.size} bytes, expected step x height = {step} x {height} = {step * height} "
            f"({enc.name}, {enc.pixel_bytes} bytes per pixel)"
        )
    rows = np.ascontiguousarray(data.reshape(height, step)[:, :row_bytes])
    wire = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = rows.view(wire).astype(enc.dtype.newbyteorder("="), copy=True)
    pixels = pixels.reshape((height, width, enc.channels) if enc.channels > 1 else (height, width))
    if enc.name == "bgr8":
        pixels = np.ascontiguousarray(pixels[..., ::-1])
    return pixels


def default_encoding(image: np.ndarray) -> str:
    """The encoding an array is published with when none is given (RGB for 3-channel uint8)."""
    image = np.asarray(image)
    channels = image.shape[2] if image.ndim == 3 else 1
    table = {(np.dtype(np.uint8), 3): "rgb8", (np.dtype(np.uint8), 1): "mono8"}
    table |= {(np.dtype(np.uint16), 1): "16UC1", (np.dtype(np.float32), 1): "32FC1"}
    try:
        return table[(image.dtype.newbyteorder("="), channels)]
    except KeyError:
        raise InvalidInputError(
            f"no image encoding for a {image.dtype} array of shape {image.shape}; "
            "use uint8 RGB (H, W, 3), uint8 (H, W), uint16 (H, W) or float32 (H, W)"
        ) from None


def _check_array_for(image: np.ndarray, enc: ImageEncoding) -> np.ndarray:
    """Validate shape and bit depth of an array to publish as `enc`; returns it as (H, W, C)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != enc.channels:
        raise InvalidInputError(
            f"{enc.name} needs an array of shape (H, W{', 3' if enc.channels == 3 else ''}), "
            f"got {image.shape}"
        )
    if image.dtype.newbyteorder("=") != enc.dtype:  # either byte order: published little-endian
        raise InvalidInputError(
            f"wrong bit depth for {enc.name}: needs {enc.dtype} pixels, got {image.dtype} "
            "(convert explicitly)"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"empty image of shape {image.shape}")
    return image


def numpy_to_image(
    image: np.ndarray,
    encoding: str | None = None,
    *,
    factory: MessageFactory,
    stamp_ns: int = 0,
    frame_id: str = "",
) -> Any:
    """Array -> sensor_msgs/Image (little-endian, no row padding).

    Colour input is always RGB; with `encoding="bgr8"` the channels are swapped on the wire.
    """
    image = np.asarray(image)
    enc = image_encoding(encoding or default_encoding(image))
    pixels = _check_array_for(image, enc)
    if enc.name == "bgr8":
        pixels = pixels[..., ::-1]
    wire = np.ascontiguousarray(pixels, dtype=enc.dtype.newbyteorder("<"))
    height, width = pixels.shape[:2]
    return factory.new(
        "sensor_msgs/msg/Image",
        header=make_header(stamp_ns, frame_id, factory),
        height=height,
        width=width,
        encoding=enc.name,
        is_bigendian=0,
        step=width * enc.pixel_bytes,
        data=factory.uint8_array(wire.view(np.uint8).reshape(-1)),
    )


# ----------------------------------------------------------------------------------------------------
# Poses and transforms
# ----------------------------------------------------------------------------------------------------


def _vec(msg: Any, names: Iterable[str], what: str) -> np.ndarray:
    """Named float fields of a message as a finite float64 vector."""
    values = np.array([float(getattr(msg, n)) for n in names], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InvalidInputError(f"{what} contains NaN or infinite values: {values.tolist()}")
    return values


def _quat(q: Any, what: str) -> np.ndarray:
    """geometry_msgs/Quaternion -> (x, y, z, w), rejected unless finite and unit length."""
    xyzw = _vec(q, "xyzw", f"{what} orientation")
    norm = float(np.linalg.norm(xyzw))
    if abs(norm - 1.0) > QUAT_NORM_TOL:
        raise InvalidInputError(
            f"{what} orientation is not a unit quaternion (norm {norm:.6g}): {xyzw.tolist()}"
        )
    return xyzw


def pose_to_matrix(pose: Any) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 float64."""
    return pose_from_xyz_quat(_vec(pose.position, "xyz", "pose position"), _quat(pose.orientation, "pose"))


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4 float64."""
    xyz = _vec(transform.translation, "xyz", "transform translation")
    return pose_from_xyz_quat(xyz, _quat(transform.rotation, "transform"))


def msg_to_matrix(msg: Any) -> np.ndarray:
    """Any of Pose, PoseStamped, PoseWithCovariance(Stamped), Transform, TransformStamped -> 4x4."""
    if hasattr(msg, "transform"):
        return transform_to_matrix(msg.transform)
    if hasattr(msg, "translation") and hasattr(msg, "rotation"):
        return transform_to_matrix(msg)
    if hasattr(msg, "position") and hasattr(msg, "orientation"):
        return pose_to_matrix(msg)
    if hasattr(msg, "pose"):
        return msg_to_matrix(msg.pose)
    raise InvalidInputError(f"{type(msg).__name__} is not a pose or transform message")


def _point(factory: MessageFactory, type_name: str, xyz: np.ndarray) -> Any:
    return factory.new(type_name, x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _quaternion(factory: MessageFactory, q: np.ndarray) -> Any:
    return factory.new(
        "geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])
    )


def matrix_to_pose(T: np.ndarray, *, factory: MessageFactory) -> Any:
    """4x4 rigid transform -> geometry_msgs/Pose (rejects NaN and non-rigid matrices)."""
    xyz, q = pose_to_xyz_quat(check_pose(T))
    return factory.new(
        "geometry_msgs/msg/Pose",
        position=_point(factory, "geometry_msgs/msg/Point", xyz),
        orientation=_quaternion(factory, q),
    )


def matrix_to_pose_stamped(T: np.ndarray, stamp_ns: int, frame_id: str, *, factory: MessageFactory) -> Any:
    """4x4 `T_frame_x` -> geometry_msgs/PoseStamped in `frame_id`."""
    return factory.new(
        "geometry_msgs/msg/PoseStamped",
        header=make_header(stamp_ns, frame_id, factory),
        pose=matrix_to_pose(T, factory=factory),
    )


def matrix_to_transform(T: np.ndarray, *, factory: MessageFactory) -> Any:
    """4x4 rigid transform -> geometry_msgs/Transform."""
    xyz, q = pose_to_xyz_quat(check_pose(T))
    return factory.new(
        "geometry_msgs/msg/Transform",
        translation=_point(factory, "geometry_msgs/msg/Vector3", xyz),
        rotation=_quaternion(factory, q),
    )


def matrix_to_transform_stamped(
    T_parent_child: np.ndarray, stamp_ns: int, parent: str, child: str, *, factory: MessageFactory
) -> Any:
    """4x4 `T_parent_child` -> geometry_msgs/TransformStamped (the TF edge parent -> child)."""
    return factory.new(
        "geometry_msgs/msg/TransformStamped",
        header=make_header(stamp_ns, parent, factory),
        child_frame_id=child,
        transform=matrix_to_transform(T_parent_child, factory=factory),
    )


# ----------------------------------------------------------------------------------------------------
# Joint states
# ----------------------------------------------------------------------------------------------------


def _check_joint_lengths(names: list[str], count: int) -> None:
    """JointState `name` and `position` must pair up one to one."""
    if len(names) > count:
        raise InvalidInputError(
            f"JointState has {len(names)} names but {count} positions: joint {names[count]!r} has no position"
        )
    if len(names) < count:
        raise InvalidInputError(
            f"JointState has {count} positions but {len(names)} names: "
            f"position[{len(names)}] has no joint name"
        )


def joint_positions(msg: Any, joint_names: Sequence[str]) -> np.ndarray:
    """sensor_msgs/JointState -> positions of `joint_names` in that order (the message may list any order).

    Extra joints in the message (e.g. gripper fingers) are ignored. Missing, duplicated or non-finite
    wanted joints, and `name`/`position` of different lengths, raise `InvalidInputError` naming the joint.
    """
    names = [str(n) for n in msg.name]
    positions = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    _check_joint_lengths(names, positions.size)
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index and name in joint_names:
            raise InvalidInputError(f"joint {name!r} appears more than once in the JointState")
        index.setdefault(name, i)
    out = np.empty(len(joint_names), dtype=np.float64)
    for k, name in enumerate(joint_names):
        if name not in index:
            raise InvalidInputError(f"joint {name!r} is missing from the JointState (it has {names})")
        value = positions[index[name]]
        if not np.isfinite(value):
            raise InvalidInputError(f"joint {name!r} position is {value} (not finite)")
        out[k] = value
    return out


def make_joint_state(
    names: Sequence[str], positions: Sequence[float], stamp_ns: int, *, factory: MessageFactory
) -> Any:
    """sensor_msgs/JointState with positions only (velocity and effort empty, as the message allows)."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    _check_joint_lengths(list(names), positions.size)
    return factory.new(
        "sensor_msgs/msg/JointState",
        header=make_header(stamp_ns, "", factory),
        name=[str(n) for n in names],
        position=factory.float64_array(positions),
        velocity=factory.float64_array(np.zeros(0)),
        effort=factory.float64_array(np.zeros(0)),
    )


# ----------------------------------------------------------------------------------------------------
# Camera info, odometry, TF messages
# ----------------------------------------------------------------------------------------------------

PLUMB_BOB = "plumb_bob"  # sensor_msgs/CameraInfo distortion model; five coefficients k1 k2 t1 t2 k3


def check_intrinsics(K: np.ndarray, width: int, height: int, name: str = "K") -> np.ndarray:
    """A pinhole matrix as float64 3x3 (finite, positive focal lengths, last row 0 0 1) and a valid size."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise InvalidInputError(f"{name} must be a finite 3x3 matrix, got shape {K.shape}")
    if not np.array_equal(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0.0 or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InvalidInputError(f"{name} is not a pinhole matrix [[fx s cx] [0 fy cy] [0 0 1]]: {K.tolist()}")
    if int(width) <= 0 or int(height) <= 0:
        raise InvalidInputError(f"camera size must be positive, got {width}x{height}")
    return K


def make_camera_info(
    K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str, *, factory: MessageFactory
) -> Any:
    """sensor_msgs/CameraInfo of an ideal pinhole (rendered images): K, P = [K | 0], R = I, no distortion."""
    K = check_intrinsics(K, width, height)
    P = np.concatenate([K, np.zeros((3, 1))], axis=1)
    return factory.new(
        "sensor_msgs/msg/CameraInfo",
        header=make_header(stamp_ns, frame_id, factory),
        height=int(height),
        width=int(width),
        distortion_model=PLUMB_BOB,
        d=factory.float64_array(np.zeros(5)),
        k=factory.float64_array(K.reshape(-1)),
        r=factory.float64_array(np.eye(3).reshape(-1)),
        p=factory.float64_array(P.reshape(-1)),
    )


def camera_info_to_intrinsics(msg: Any) -> tuple[np.ndarray, int, int]:
    """sensor_msgs/CameraInfo -> (K as float64 3x3, width, height); a distorted camera is rejected."""
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if np.any(d != 0.0):
        raise InvalidInputError(
            f"camera info has {msg.distortion_model!r} distortion {d.tolist()}; only undistorted images "
            "are supported"
        )
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3).copy()
    width, height = int(msg.width), int(msg.height)
    return check_intrinsics(K, width, height, "camera info K"), width, height


def _covariance(cov: np.ndarray | None, what: str) -> np.ndarray:
    """A 6x6 covariance (or None = zeros) as the 36 row-major values of a ROS message."""
    if cov is None:
        return np.zeros(36)
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (6, 6) or not np.all(np.isfinite(cov)):
        raise InvalidInputError(f"{what} covariance must be a finite 6x6 matrix, got shape {cov.shape}")
    return cov.reshape(-1)


def make_odometry(
    T_odom_base: np.ndarray,
    stamp_ns: int,
    odom_frame: str,
    base_frame: str,
    *,
    factory: MessageFactory,
    twist: np.ndarray | None = None,
    pose_covariance: np.ndarray | None = None,
    twist_covariance: np.ndarray | None = None,
) -> Any:
    """nav_msgs/Odometry: `base_frame` pose in `odom_frame`; `twist` (vx vy vz wx wy wz) in `base_frame`."""
    twist = np.zeros(6) if twist is None else np.asarray(twist, dtype=np.float64).reshape(-1)
    if twist.shape != (6,) or not np.all(np.isfinite(twist)):
        raise InvalidInputError(f"twist must be 6 finite numbers (vx vy vz wx wy wz), got {twist.tolist()}")
    vec3 = "geometry_msgs/msg/Vector3"
    return factory.new(
        "nav_msgs/msg/Odometry",
        header=make_header(stamp_ns, odom_frame, factory),
        child_frame_id=base_frame,
        pose=factory.new(
            "geometry_msgs/msg/PoseWithCovariance",
            pose=matrix_to_pose(T_odom_base, factory=factory),
            covariance=factory.float64_array(_covariance(pose_covariance, "pose")),
        ),
        twist=factory.new(
            "geometry_msgs/msg/TwistWithCovariance",
            twist=factory.new(
                "geometry_msgs/msg/Twist",
                linear=_point(factory, vec3, twist[:3]),
                angular=_point(factory, vec3, twist[3:]),
            ),
            covariance=factory.float64_array(_covariance(twist_covariance, "twist")),
        ),
    )


def twist_to_vector(twist: Any) -> np.ndarray:
    """geometry_msgs/Twist -> (vx, vy, vz, wx, wy, wz) float64."""
    return np.concatenate(
        [_vec(twist.linear, "xyz", "twist linear"), _vec(twist.angular, "xyz", "twist angular")]
    )


def make_tf_message(transforms: Sequence[Any], *, factory: MessageFactory) -> Any:
    """tf2_msgs/TFMessage (what /tf and /tf_static carry) of TransformStamped messages."""
    return factory.new("tf2_msgs/msg/TFMessage", transforms=list(transforms))


# ----------------------------------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------------------------------


def diagnostic_status(
    name: str,
    level: int,
    message: str,
    values: Iterable[tuple[str, str]],
    hardware_id: str,
    *,
    factory: MessageFactory,
) -> Any:
    """diagnostic_msgs/DiagnosticStatus; `level` 0..3 (OK, WARN, ERROR, STALE), values as (key, value)."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in (0, 1, 2, 3):
        raise InvalidInputError(f"diagnostic level must be 0, 1, 2 or 3, got {level!r}")
    pairs = [factory.new("diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v)) for k, v in values]
    return factory.new(
        "diagnostic_msgs/msg/DiagnosticStatus",
        level=bytes([int(level)]) if isinstance(factory, RclpyFactory) else int(level),  # rclpy: bytes
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=pairs,
    )


def diagnostic_array(statuses: Sequence[Any], stamp_ns: int, *, factory: MessageFactory) -> Any:
    """diagnostic_msgs/DiagnosticArray (what /diagnostics carries) of DiagnosticStatus messages."""
    return factory.new(
        "diagnostic_msgs/msg/DiagnosticArray",
        header=make_header(stamp_ns, "", factory),
        status=list(statuses),
    )


# ----------------------------------------------------------------------------------------------------
# Keyframes: markers and interface messages
# ----------------------------------------------------------------------------------------------------

# The arrow marker points along its own +x; a camera optical frame looks along +z (REP-103). This
# rotation about y by -90 deg maps the marker's x onto the camera's z.
T_OPTICAL_ARROW = make_pose(np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))

MARKER_ARROW, MARKER_TEXT, MARKER_ADD, MARKER_DELETEALL = 0, 9, 0, 3  # visualization_msgs/Marker constants


def color_rgba(rgb: Sequence[float], factory: MessageFactory, alpha: float = 1.0) -> Any:
    """std_msgs/ColorRGBA from an RGB triple: integers are read as 0..255, floats as 0..1."""
    values = np.asarray(rgb, dtype=np.float64).reshape(-1)
    if values.size != 3 or not np.all(np.isfinite(values)):
        raise InvalidInputError(f"colour must be three finite numbers, got {list(rgb)}")
    if all(isinstance(c, (int, np.integer)) for c in rgb):
        values = values / 255.0
    r, g, b = np.clip(values, 0.0, 1.0)
    return factory.new("std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b), a=float(alpha))


@dataclass(frozen=True)
class MarkerStyle:
    """Sizes (metres) of the RViz keyframe markers."""

    arrow_length: float = 0.08
    arrow_width: float = 0.01
    text_height: float = 0.03
    text_offset: float = 0.03  # label above the arrow's tail (world +z)


def keyframe_markers(
    keyframes: Sequence[tuple[int, np.ndarray, Sequence[float]]],
    *,
    frame_id: str,
    stamp_ns: int,
    factory: MessageFactory,
    style: MarkerStyle = MarkerStyle(),
) -> Any:
    """visualization_msgs/MarkerArray: DELETEALL, then per keyframe an arrow (optical axis) and its number.

    `keyframes` holds `(number, T_world_cam, rgb)` triples, `T_world_cam` in `frame_id`.
    """
    header = make_header(stamp_ns, frame_id, factory)
    markers = [
        factory.new("visualization_msgs/msg/Marker", header=header, ns="", id=0, action=MARKER_DELETEALL)
    ]
    for number, T_world_cam, rgb in keyframes:
        color = color_rgba(rgb, factory)
        arrow_pose = check_pose(T_world_cam, f"keyframe {number} pose") @ T_OPTICAL_ARROW
        markers.append(
            factory.new(
                "visualization_msgs/msg/Marker",
                header=header,
                ns="keyframe_arrows",
                id=int(number),
                type=MARKER_ARROW,
                action=MARKER_ADD,
                pose=matrix_to_pose(arrow_pose, factory=factory),
                scale=_point(
                    factory,
                    "geometry_msgs/msg/Vector3",
                    [style.arrow_length, style.arrow_width, style.arrow_width],
                ),
                color=color,
            )
        )
        label = np.array(T_world_cam, dtype=np.float64).copy()
        label[:3, :3] = np.eye(3)
        label[2, 3] += style.text_offset
        markers.append(
            factory.new(
                "visualization_msgs/msg/Marker",
                header=header,
                ns="keyframe_labels",
                id=int(number),
                type=MARKER_TEXT,
                action=MARKER_ADD,
                pose=matrix_to_pose(label, factory=factory),
                scale=_point(factory, "geometry_msgs/msg/Vector3", [0.0, 0.0, style.text_height]),
                color=color,
                text=str(number),
            )
        )
    return factory.new("visualization_msgs/msg/MarkerArray", markers=markers)


def keyframe_to_msg(
    *,
    frame_id: int,
    number: int,
    T_world_cam: np.ndarray,
    rgb: Sequence[float],
    stamp_ns: int,
    world_frame: str,
    factory: MessageFactory,
) -> Any:
    """spatial_memory_interfaces/Keyframe for one keyframe of the spatial context."""
    return factory.new(
        "spatial_memory_interfaces/msg/Keyframe",
        header=make_header(stamp_ns, world_frame, factory),
        frame_id=int(frame_id),
        number=int(number),
        pose=matrix_to_pose(T_world_cam, factory=factory),
        color=color_rgba(rgb, factory),
    )


# ----------------------------------------------------------------------------------------------------
# TF from forward kinematics
# ----------------------------------------------------------------------------------------------------


class TfEdgeLike(Protocol):
    """What `fk_transforms` reads of an edge (`robot.description.TfEdge` is one); typed here so this
    layer stays below the robot model."""

    parent: str
    child: str


def fk_transforms(
    T_root: Mapping[str, np.ndarray],
    edges: Sequence[TfEdgeLike],
    stamp_ns: int,
    *,
    factory: MessageFactory,
) -> list[Any]:
    """TransformStamped `T_parent_child` for each edge from FK poses `T_root_frame` (one tree, one root).

    Raises `InvalidInputError` naming a frame the kinematics did not compute.
    """
    out = []
    for edge in edges:
        missing = [f for f in (edge.parent, edge.child) if f not in T_root]
        if missing:
            raise InvalidInputError(
                f"forward kinematics has no pose for frame(s) {missing} of the description"
            )
        T_parent_child = invert(T_root[edge.parent]) @ T_root[edge.child]
        out.append(
            matrix_to_transform_stamped(T_parent_child, stamp_ns, edge.parent, edge.child, factory=factory)
        )
    return out

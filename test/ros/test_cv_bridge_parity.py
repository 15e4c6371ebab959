"""Parity of our image conversions (`msgs/conversions.py`) with cv_bridge's `CvBridge`, where ROS 2 has it.

A ROS user whose other nodes use cv_bridge needs the two to agree on the wire. These tests build
`sensor_msgs/Image` messages (rclpy's classes, as a node receives them) and compare, pixel for pixel and byte
for byte, what each side makes of them. Skipped where cv_bridge is not importable (CI has no ROS 2 build).

Where the two differ, by design or by an upstream limitation, the test says so and asserts the difference,
so a change on either side shows up here:
- colour: we hand out and take RGB arrays whatever the wire order; cv_bridge hands out the wire order
  (`bgr8` stays BGR, OpenCV's convention) unless asked for `desired_encoding="rgb8"`;
- default encodings: we name an array `rgb8` / `mono8`, cv_bridge's passthrough `8UC3` / `8UC1`;
- row padding that is not a whole number of pixels: we drop it, cv_bridge's Python decoder reads the rows
  at the wrong offsets (it divides `step` by the pixel size);
- big-endian messages: cv_bridge's Python decoder calls `ndarray.newbyteorder()`, which numpy 2 removed,
  so with numpy >= 2 it raises `AttributeError`; we return native-order pixels;
- encodings: we take five (rgb8, bgr8, mono8, 16UC1, 32FC1) and refuse the rest with `InvalidInputError`;
  cv_bridge takes every encoding of `sensor_msgs/image_encodings.hpp`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv

FACTORY = conv.RclpyFactory()
ENCODINGS = ["rgb8", "bgr8", "mono8", "16UC1", "32FC1"]
COLOUR = {"rgb8", "bgr8"}
SHAPES = [(1, 1), (5, 7), (48, 64), (31, 17)]  # odd sizes catch row/column mix-ups
NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


@pytest.fixture(scope="module")
def cv_bridge() -> Any:
    """The cv_bridge module, or the test is skipped.

    In a fixture, not at module level: launch_testing's pytest plugin (active wherever ROS 2 is sourced)
    imports every test module of the folder outside pytest's skip handling, so a module-level skip
    would fail the collection of its neighbours.
    """
    return pytest.importorskip("cv_bridge")


@pytest.fixture(scope="module")
def bridge(cv_bridge) -> Any:
    """One CvBridge for the module (it builds its type tables once)."""
    return cv_bridge.CvBridge()


def sample(encoding: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random image in our convention (RGB for colour); depth holds NaN, +-inf and -0.0 as cameras send."""
    rng = np.random.default_rng(seed)
    if encoding in COLOUR:
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if encoding == "mono8":
        return rng.integers(0, 256, (height, width), dtype=np.uint8)
    if encoding == "16UC1":
        return rng.integers(0, 65536, (height, width), dtype=np.uint16)
    depth = rng.uniform(0.1, 10.0, (height, width)).astype(np.float32)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32)
    depth.reshape(-1)[: min(depth.size, 4)] = specials[: depth.size]
    return depth


def wire_order(image: np.ndarray, encoding: str) -> np.ndarray:
    """The array as it lies on the wire for `encoding`: channels reversed for bgr8, else as it is."""
    return image[..., ::-1] if encoding == "bgr8" else image


def hand_made(
    image: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False, junk: int = 0xAB
) -> Any:
    """An rclpy Image assembled byte by byte: rows of `image` in wire order, `pad` junk bytes after each."""
    pixels = wire_order(image, encoding)
    wire = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = wire.view(np.uint8).reshape(image.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), junk, np.uint8)], axis=1)
    return FACTORY.new(
        "sensor_msgs/msg/Image",
        height=image.shape[0],
        width=image.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=padded.shape[1],
        data=FACTORY.uint8_array(padded),
    )


def theirs_decoded(bridge: Any, msg: Any) -> np.ndarray:
    """cv_bridge's reading of `msg` in our convention: asked for RGB when the message is colour."""
    return bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8" if msg.encoding in COLOUR else "passthrough")


def assert_same_image(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Same shape, same native dtype and the same bytes (so NaN payloads and -0.0 count too)."""
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype and ours.dtype.isnative and theirs.dtype.isnative
    assert ours.tobytes() == np.ascontiguousarray(theirs).tobytes()


def message_fields(msg: Any) -> tuple:
    """What a subscriber reads of an Image, header aside."""
    return (msg.height, msg.width, msg.encoding, int(msg.is_bigendian), msg.step, bytes(msg.data))


# ----------------------------------------------------------------------------------------------------
# Message -> array
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decoding_matches_cv_bridge(bridge, encoding, shape):
    image = sample(encoding, *shape)
    msg = hand_made(image, encoding)
    ours = conv.image_to_numpy(msg)
    assert_same_image(ours, image)
    assert_same_image(ours, theirs_decoded(bridge, msg))


def test_bgr8_passthrough_is_bgr_in_cv_bridge_and_rgb_in_ours(bridge):
    image = sample("bgr8", 4, 6)
    msg = hand_made(image, "bgr8")
    assert_same_image(conv.image_to_numpy(msg), image)
    assert_same_image(bridge.imgmsg_to_cv2(msg), np.ascontiguousarray(image[..., ::-1]))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_whole_pixel_row_padding_is_dropped_by_both(bridge, encoding):
    image = sample(encoding, 9, 11)
    pixel_bytes = conv.image_encoding(encoding).pixel_bytes
    for pixels_of_padding in (1, 3):
        msg = hand_made(image, encoding, pad=pixels_of_padding * pixel_bytes)
        assert_same_image(conv.image_to_numpy(msg), image)
        assert_same_image(theirs_decoded(bridge, msg), image)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "16UC1", "32FC1"])
def test_padding_of_part_of_a_pixel_is_dropped_by_ours_and_misread_by_cv_bridge(bridge, encoding):
    # A driver that aligns rows to 4 bytes pads a 5-pixel rgb8 row (15 bytes) with 1 byte; the message
    # is valid (`step` is any byte count >= one row), but cv_bridge's Python decoder reads rows
    # `step // pixel_bytes` pixels apart, so every row after the first is shifted.
    image = sample(encoding, 6, 5)
    pixel_bytes = conv.image_encoding(encoding).pixel_bytes
    msg = hand_made(image, encoding, pad=1 if pixel_bytes > 1 else 0)
    assert msg.step % pixel_bytes != 0
    assert_same_image(conv.image_to_numpy(msg), image)
    theirs = theirs_decoded(bridge, msg)
    assert theirs.shape == image.shape
    assert theirs[0].tobytes() == image[0].tobytes()  # the first row is right ...
    assert theirs[1:].tobytes() != image[1:].tobytes()  # ... the others are not


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_big_endian_messages(bridge, encoding):
    image = sample(encoding, 7, 9)
    big = hand_made(image, encoding, bigendian=True, pad=conv.image_encoding(encoding).pixel_bytes)
    assert_same_image(conv.image_to_numpy(big), image)
    if NUMPY_2:
        with pytest.raises(AttributeError, match="newbyteorder"):
            theirs_decoded(bridge, big)
    else:
        assert_same_image(theirs_decoded(bridge, big), image)


# ----------------------------------------------------------------------------------------------------
# Array -> message
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encoding_matches_cv_bridge_byte_for_byte(bridge, encoding, shape):
    image = sample(encoding, *shape, seed=1)
    ours = conv.numpy_to_image(image, encoding, factory=FACTORY)
    theirs = bridge.cv2_to_imgmsg(np.ascontiguousarray(wire_order(image, encoding)), encoding=encoding)
    assert message_fields(ours) == message_fields(theirs)


@pytest.mark.parametrize(
    ("encoding", "passthrough"), [("rgb8", "8UC3"), ("mono8", "8UC1"), ("16UC1", "16UC1"), ("32FC1", "32FC1")]
)
def test_default_encodings_differ_only_in_name(bridge, encoding, passthrough):
    image = sample(encoding, 3, 4, seed=2)
    ours = conv.numpy_to_image(image, factory=FACTORY)
    theirs = bridge.cv2_to_imgmsg(image)
    assert (ours.encoding, theirs.encoding) == (encoding, passthrough)
    assert message_fields(ours)[3:] == message_fields(theirs)[3:]
    assert_same_image(bridge.imgmsg_to_cv2(ours), image)  # each reads the other's message
    if passthrough == encoding:
        assert_same_image(conv.image_to_numpy(theirs), image)
    else:
        with pytest.raises(InvalidInputError, match="unsupported image encoding"):
            conv.image_to_numpy(theirs)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_big_endian_arrays_are_published_little_endian_by_ours(bridge, encoding):
    native = sample(encoding, 4, 5, seed=3)
    big = native.astype(native.dtype.newbyteorder(">"))
    theirs = bridge.cv2_to_imgmsg(big, encoding=encoding)  # cv_bridge keeps the array's byte order
    assert theirs.is_bigendian
    assert_same_image(conv.image_to_numpy(theirs), native)
    ours = conv.numpy_to_image(big, encoding, factory=FACTORY)
    assert message_fields(ours) == message_fields(bridge.cv2_to_imgmsg(native, encoding=encoding))
    assert message_fields(conv.numpy_to_image(big, factory=FACTORY)) == message_fields(ours)


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["nonsense", "", "jpeg", "RGB8"])
def test_unknown_encodings_are_refused_by_both(cv_bridge, bridge, encoding):
    msg = hand_made(sample("mono8", 2, 3), "mono8")
    msg.encoding = encoding
    with pytest.raises(InvalidInputError, match="unsupported image encoding"):
        conv.image_to_numpy(msg)
    with pytest.raises(cv_bridge.CvBridgeError):
        bridge.imgmsg_to_cv2(msg)


@pytest.mark.parametrize(
    ("encoding", "dtype", "channels"),
    [
        ("rgba8", np.uint8, 4),
        ("bgra8", np.uint8, 4),
        ("mono16", np.uint16, 1),
        ("rgb16", np.uint16, 3),
        ("8UC3", np.uint8, 3),
        ("16SC1", np.int16, 1),
        ("64FC1", np.float64, 1),
        ("bayer_rggb8", np.uint8, 1),
    ],
)
def test_encodings_only_cv_bridge_reads_are_refused_by_ours(bridge, encoding, dtype, channels):
    shape = (3, 4, channels) if channels > 1 else (3, 4)
    image = np.arange(np.prod(shape)).astype(dtype).reshape(shape)
    msg = bridge.cv2_to_imgmsg(image, encoding=encoding)
    assert_same_image(bridge.imgmsg_to_cv2(msg), image)
    with pytest.raises(InvalidInputError, match=r"unsupported image encoding .*supported: \['16UC1'"):
        conv.image_to_numpy(msg)


@pytest.mark.parametrize(
    ("array", "encoding"),
    [
        (np.zeros((2, 3), np.float32), "mono8"),
        (np.zeros((2, 3, 3), np.uint8), "mono8"),
        (np.zeros((2, 3), np.uint8), "rgb8"),
        (np.zeros((2, 3), np.uint16), "32FC1"),
        (np.zeros((2, 3), np.float64), "32FC1"),
    ],
    ids=["float-as-mono8", "colour-as-mono8", "grey-as-rgb8", "uint16-as-32FC1", "float64-as-32FC1"],
)
def test_arrays_that_do_not_fit_the_encoding_are_refused_by_both(cv_bridge, bridge, array, encoding):
    with pytest.raises(InvalidInputError):
        conv.numpy_to_image(array, encoding, factory=FACTORY)
    with pytest.raises(cv_bridge.CvBridgeError, match="incompatible type"):
        bridge.cv2_to_imgmsg(array, encoding=encoding)


@pytest.mark.parametrize(
    ("array", "passthrough"),
    [
        (np.zeros((2, 3), np.int16), "16SC1"),
        (np.zeros((2, 3), np.float64), "64FC1"),
        (np.zeros((2, 3, 4), np.uint8), "8UC4"),
    ],
)
def test_arrays_without_an_encoding_of_ours_are_refused_by_ours_only(bridge, array, passthrough):
    assert bridge.cv2_to_imgmsg(array).encoding == passthrough
    with pytest.raises(InvalidInputError, match="no image encoding"):
        conv.numpy_to_image(array, factory=FACTORY)


def test_short_data_is_refused_by_both(bridge):
    msg = hand_made(sample("16UC1", 4, 5), "16UC1")
    msg.data = FACTORY.uint8_array(np.zeros(len(msg.data) - 2, np.uint8))
    with pytest.raises(InvalidInputError, match="expected step x height"):
        conv.image_to_numpy(msg)
    with pytest.raises(TypeError, match="buffer is too small"):  # numpy's error, not a CvBridgeError
        bridge.imgmsg_to_cv2(msg)

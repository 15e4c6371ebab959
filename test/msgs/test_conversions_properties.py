"""Property-based tests of the message conversions (issue 14), against the real ROS 2 message definitions:
any image of any supported encoding, size, row padding and byte order comes back bit-exact; any stamp
round-trips; malformed stamps and image sizes are an `InvalidInputError`, never a wrong answer."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rosbags.typesys import Stores, get_typestore

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import pose_from_xyz_rpy
from spatial_memory.msgs import conversions as conv

STORE = get_typestore(Stores.ROS2_HUMBLE)  # module level: hypothesis runs many examples per test function
FACTORY = conv.RosbagsFactory(STORE)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT32 = (-(2**31), 2**31 - 1)
NS = 1_000_000_000


@st.composite
def images(draw: st.DrawFn) -> tuple[np.ndarray, str]:
    """An array of any supported encoding and size up to 24x24, any values (NaN and inf for 32FC1)."""
    encoding = draw(st.sampled_from(sorted(conv.ENCODINGS)))
    enc = conv.ENCODINGS[encoding]
    shape = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    shape += (enc.channels,) if enc.channels > 1 else ()
    return draw(hnp.arrays(enc.dtype, shape)), encoding


def _same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality (a NaN pixel equals the same NaN)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _cdr(msg: object) -> object:
    """Serialise and read back, as a subscriber or a bag reader receives the message."""
    raw = STORE.serialize_cdr(msg, msg.__msgtype__)
    return STORE.deserialize_cdr(bytes(raw), msg.__msgtype__)


@SETTINGS
@given(image=images(), stamp_ns=st.integers(0, INT32[1] * NS), frame=st.text(max_size=8))
def test_any_image_round_trips_bit_exact(image: tuple[np.ndarray, str], stamp_ns: int, frame: str) -> None:
    array, encoding = image
    msg = _cdr(conv.numpy_to_image(array, encoding, factory=FACTORY, stamp_ns=stamp_ns, frame_id=frame))
    assert msg.step == array.shape[1] * conv.ENCODINGS[encoding].pixel_bytes
    assert _same_pixels(conv.image_to_numpy(msg), array)
    assert conv.stamp_to_ns(msg.header.stamp) == stamp_ns and msg.header.frame_id == frame


@SETTINGS
@given(image=images(), padding=st.integers(0, 17), bigendian=st.booleans(), junk=st.integers(0, 255))
def test_any_row_padding_and_byte_order_is_read_exactly(
    image: tuple[np.ndarray, str], padding: int, bigendian: bool, junk: int
) -> None:
    """A camera driver's message: rows padded with junk, big- or little-endian words, BGR on the wire."""
    array, encoding = image
    enc = conv.ENCODINGS[encoding]
    wire = array[..., ::-1] if encoding == "bgr8" else array
    rows = np.ascontiguousarray(wire, dtype=enc.dtype.newbyteorder(">" if bigendian else "<"))
    rows = rows.view(np.uint8).reshape(array.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], padding), junk, np.uint8)], axis=1)
    msg = FACTORY.new(
        "sensor_msgs/msg/Image",
        header=conv.make_header(0, "cam", FACTORY),
        height=array.shape[0],
        width=array.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=padded.shape[1],
        data=padded.reshape(-1).copy(),
    )
    assert _same_pixels(conv.image_to_numpy(_cdr(msg)), array)


@SETTINGS
@given(
    encoding=st.sampled_from(sorted(conv.ENCODINGS)),
    height=st.integers(-2, 12),
    width=st.integers(-2, 12),
    step=st.integers(-4, 200),
    size=st.integers(0, 600),
)
def test_a_malformed_image_message_is_refused_or_read_consistently(
    encoding: str, height: int, width: int, step: int, size: int
) -> None:
    """Header fields that disagree with the data are refused; when they agree, the array has their shape."""
    msg = FACTORY.new(
        "sensor_msgs/msg/Image",
        header=conv.make_header(0, "", FACTORY),
        height=max(height, 0),
        width=max(width, 0),
        encoding=encoding,
        is_bigendian=0,
        step=max(step, 0),
        data=np.zeros(size, np.uint8),
    )
    enc = conv.ENCODINGS[encoding]
    h, w, s = max(height, 0), max(width, 0), max(step, 0)
    consistent = h > 0 and w > 0 and s >= w * enc.pixel_bytes and size == s * h
    try:
        out = conv.image_to_numpy(msg)
    except InvalidInputError:
        assert not consistent
        return
    assert consistent and out.shape[:2] == (h, w) and out.dtype == enc.dtype


@SETTINGS
@given(stamp_ns=st.integers(INT32[0] * NS, INT32[1] * NS + NS - 1))
def test_any_stamp_round_trips(stamp_ns: int) -> None:
    stamp = _cdr(conv.make_header(stamp_ns, "", FACTORY)).stamp
    assert 0 <= stamp.nanosec < NS and conv.stamp_to_ns(stamp) == stamp_ns


@SETTINGS
@given(stamp_ns=st.integers() | st.sampled_from([INT32[1] * NS + NS, INT32[0] * NS - 1]))
def test_a_stamp_outside_time_is_refused_not_wrapped(stamp_ns: int) -> None:
    fits = INT32[0] * NS <= stamp_ns < (INT32[1] + 1) * NS
    try:
        stamp = conv.ns_to_stamp(stamp_ns, FACTORY)
    except InvalidInputError:
        assert not fits
        return
    assert fits and conv.stamp_to_ns(stamp) == stamp_ns


@SETTINGS
@given(
    sec=st.integers(-(2**40), 2**40) | st.booleans() | st.floats() | st.none(),
    nanosec=st.integers(-(2**40), 2**40) | st.booleans() | st.floats() | st.none(),
)
def test_stamp_to_ns_takes_only_well_formed_stamps(sec: object, nanosec: object) -> None:
    """A stamp built by hand (a duck-typed message): malformed fields are refused, never shifted."""
    stamp = type("Time", (), {"sec": sec, "nanosec": nanosec})()
    well_formed = all(isinstance(v, int) and not isinstance(v, bool) for v in (sec, nanosec))
    well_formed = well_formed and INT32[0] <= sec <= INT32[1] and 0 <= nanosec < NS
    try:
        ns = conv.stamp_to_ns(stamp)
    except InvalidInputError:
        assert not well_formed
        return
    assert well_formed and ns == sec * NS + nanosec


finite = st.floats(-1e4, 1e4, allow_nan=False)
angles = st.floats(-np.pi, np.pi)


@SETTINGS
@given(xyz=st.tuples(finite, finite, finite), rpy=st.tuples(angles, angles, angles))
def test_any_rigid_pose_round_trips_through_pose_and_transform(
    xyz: tuple[float, float, float], rpy: tuple[float, float, float]
) -> None:
    T = pose_from_xyz_rpy(xyz, rpy)
    for msg in (conv.matrix_to_pose(T, factory=FACTORY), conv.matrix_to_transform(T, factory=FACTORY)):
        back = conv.msg_to_matrix(_cdr(msg))
        np.testing.assert_allclose(back, T, atol=1e-9 * max(1.0, np.abs(xyz).max()))

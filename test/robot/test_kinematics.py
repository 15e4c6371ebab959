"""FR3 forward kinematics against an independent modified-DH chain written here (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.robot.description import CameraMount
from spatial_memory.robot.kinematics import FR3Kinematics

# Franka's published FR3 modified DH (Craig): a (m), d (m), alpha (rad) per joint, then the flange.
DH_TABLE = [
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
]
FLANGE = (0.0, 0.107, 0.0)
LOWER = np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159])
UPPER = np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])
HOME = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])
OPTICAL = "wrist_camera_optical_frame"


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def trans(x: float, y: float, z: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def modified_dh(a: float, d: float, alpha: float, theta: float) -> np.ndarray:
    """Craig's link transform: Rx(alpha) Tx(a) Rz(theta) Tz(d)."""
    return rot_x(alpha) @ trans(a, 0, 0) @ rot_z(theta) @ trans(0, 0, d)


def dh_chain(q: np.ndarray) -> dict[str, np.ndarray]:
    """Poses of fr3_link1..8, fr3_hand and fr3_hand_tcp in fr3_link0 (= base) by the DH table."""
    out = {}
    T = np.eye(4)
    for i, ((a, d, alpha), theta) in enumerate(zip(DH_TABLE, q, strict=True), start=1):
        T = T @ modified_dh(a, d, alpha, theta)
        out[f"fr3_link{i}"] = T
    out["fr3_link8"] = T @ modified_dh(*FLANGE, 0.0)
    out["fr3_hand"] = out["fr3_link8"] @ rot_z(-np.pi / 4)
    out["fr3_hand_tcp"] = out["fr3_hand"] @ trans(0, 0, 0.1034)
    return out


def rotation_angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Angle of Ra^T Rb, accurate near zero (||Ra - Rb||_F = 2 sqrt(2) sin(angle / 2))."""
    return 2.0 * math.asin(min(1.0, np.linalg.norm(Ra - Rb) / (2.0 * math.sqrt(2.0))))


def rpy_matrix(xyz, rpy) -> np.ndarray:
    """URDF origin: translation xyz, rotation Rz(yaw) Ry(pitch) Rx(roll)."""
    r, p, y = rpy
    cy, sy, cp, sp = math.cos(y), math.sin(y), math.cos(p), math.sin(p)
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1.0]])
    Ry = np.array([[cp, 0, sp], [0, 1.0, 0], [-sp, 0, cp]])
    T = rot_x(r)
    T[:3, :3] = Rz @ Ry @ T[:3, :3]
    T[:3, 3] = xyz
    return T


@pytest.fixture(scope="module")
def kin() -> FR3Kinematics:
    return FR3Kinematics()


@pytest.fixture(scope="module")
def random_q() -> np.ndarray:
    return np.random.default_rng(1234).uniform(LOWER, UPPER, size=(1000, 7))


def test_every_link_matches_the_dh_chain_at_1000_random_configurations(kin, random_q):
    worst_pos, worst_rot = 0.0, 0.0
    for q in random_q:
        fk = kin.forward_all(q)
        for name, T_dh in dh_chain(q).items():
            T = fk[name]
            worst_pos = max(worst_pos, float(np.abs(T[:3, 3] - T_dh[:3, 3]).max()))
            worst_rot = max(worst_rot, rotation_angle(T_dh[:3, :3], T[:3, :3]))
    assert worst_pos < 1e-9, f"position error {worst_pos:.3e} m"
    assert worst_rot < 1e-9, f"rotation error {worst_rot:.3e} rad"


def test_flange_hand_and_tcp_single_frame_calls_match_dh(kin, random_q):
    for q in random_q[:200]:
        dh = dh_chain(q)
        for frame in ("fr3_link8", "fr3_hand", "fr3_hand_tcp"):
            T = kin.forward(q, frame)
            assert T.shape == (4, 4) and T.dtype == np.float64
            np.testing.assert_allclose(T[:3, 3], dh[frame][:3, 3], atol=1e-9)
            assert rotation_angle(dh[frame][:3, :3], T[:3, :3]) < 1e-9
            np.testing.assert_array_equal(T[3], [0, 0, 0, 1])


def test_home_flange_position_derived_by_hand(kin):
    """Home q = [0, -pi/4, 0, -3pi/4, 0, pi/2, pi/4]: joints 1, 3, 5 are 0, so the arm lies in the x-z plane.

    Shoulder (joint 2) at z = 0.333; joints 2, 4, 6 turn about world y. Let c = cos(pi/4) = 1/sqrt(2).
    - upper arm: q2 = -pi/4 tilts it back: elbow (link3) at (-0.316 c, 0, 0.333 + 0.316 c);
    - the 0.0825 offset along link3's x = (c, 0, c): link4 at + (0.0825 c, 0, 0.0825 c);
    - joint 4 (about -y) adds 3pi/4, so the forearm is horizontal: link5 = link4 + (0.384, 0, 0.0825)
      (the -0.0825 along link4's x, which now points down, lifts it by 0.0825);
    - joint 6 = pi/2 undoes the forearm's pi/2: link7 = link5 + (0.088, 0, 0) and link7's z points down,
      so the flange is 0.107 below link7.
    x = 0.384 + 0.088 - (0.316 - 0.0825) c = 0.472 - 0.2335 c = 0.30689...
    z = 0.333 + 0.0825 - 0.107 + (0.316 + 0.0825) c = 0.3085 + 0.3985 c = 0.59028...
    Rotation: flange z = world -z, flange x = (c, -c, 0) (q7 = pi/4 about the downward z).
    """
    c = 1.0 / math.sqrt(2.0)
    T = kin.forward(HOME, "fr3_link8")
    np.testing.assert_allclose(T[:3, 3], [0.472 - 0.2335 * c, 0.0, 0.3085 + 0.3985 * c], atol=1e-9)
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1], atol=1e-9)
    np.testing.assert_allclose(T[:3, 0], [c, -c, 0], atol=1e-9)
    # The hand undoes q7's pi/4: the fingers open along world y; the TCP is 0.1034 lower.
    T_tcp = kin.forward(HOME)
    np.testing.assert_allclose(T_tcp[:3, 3], T[:3, 3] - [0, 0, 0.1034], atol=1e-9)
    np.testing.assert_allclose(T_tcp[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-9)
    np.testing.assert_array_equal(kin.home, HOME)


def test_forward_batch_and_forward_all_agree_with_forward(kin, random_q):
    Q = random_q[:50]
    for frame in ("fr3_hand_tcp", OPTICAL, "fr3_link3"):
        batch = kin.forward_batch(Q, frame)
        assert batch.shape == (50, 4, 4)
        for q, T in zip(Q, batch, strict=True):
            np.testing.assert_array_equal(T, kin.forward(q, frame))
    all_frames = kin.forward_all(Q[0])
    assert tuple(all_frames) == kin.frame_names
    for name, T in all_frames.items():
        np.testing.assert_array_equal(T, kin.forward(Q[0], name))
    np.testing.assert_array_equal(kin.camera_pose(Q[0]), all_frames[OPTICAL])
    np.testing.assert_array_equal(all_frames["base"], np.eye(4))
    assert kin.forward_batch(np.zeros((0, 7))).shape == (0, 4, 4)


def test_frame_names_cover_every_link_and_the_camera_frames(kin):
    expected = {
        "base",
        *(f"fr3_link{i}" for i in range(9)),
        "fr3_hand",
        "fr3_hand_tcp",
        "fr3_leftfinger",
        "fr3_rightfinger",
        "wrist_camera_link",
        OPTICAL,
    }
    assert set(kin.frame_names) == expected
    assert kin.joint_names == tuple(f"fr3_joint{i}" for i in range(1, 8))
    np.testing.assert_array_equal(kin.lower, LOWER)
    np.testing.assert_array_equal(kin.upper, UPPER)


def test_check_joints_returns_a_float64_copy(kin):
    q = HOME.copy()
    out = kin.check_joints(q)
    assert out.dtype == np.float64 and out is not q
    out[0] = 1.0
    assert q[0] == 0.0
    np.testing.assert_array_equal(kin.check_joints(HOME.tolist()), HOME)
    # Rounding noise just outside a limit is accepted unchanged.
    edge = kin.lower.copy()
    edge[5] -= 5e-10
    np.testing.assert_array_equal(kin.check_joints(edge), edge)


@pytest.mark.parametrize(
    ("q", "words"),
    [
        (np.zeros(6), ["7 joint values", "(6,)"]),
        (np.zeros((7, 1)), ["7 joint values", "(7, 1)"]),
        (["a"] * 7, ["must be numbers"]),
        ([None] * 7, ["fr3_joint1", "finite"]),  # numpy reads None as NaN
        ([0.0, -0.7, 0.0, -2.0, float("nan"), 1.5, 0.7], ["fr3_joint5", "nan", "finite"]),
        ([0.0, -0.7, 0.0, -2.0, 0.0, float("inf"), 0.7], ["fr3_joint6", "inf"]),
        ([0.0, -0.7, 0.0, -0.1, 0.0, 1.5, 0.7], ["fr3_joint4", "-0.1 rad", "[-3.0421, -0.1518]"]),
        ([3.0, -0.7, 0.0, -2.0, 0.0, 1.5, 0.7], ["fr3_joint1", "3 rad", "[-2.7437, 2.7437]"]),
    ],
)
def test_bad_joint_vectors_raise_clear_value_errors(kin, q, words):
    with pytest.raises(ValueError) as info:
        kin.forward(q)
    assert isinstance(info.value, InvalidInputError)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_clamp_clamps_out_of_limit_values_but_not_nan(kin):
    q = np.array([3.0, -0.7, 0.0, 0.5, 0.0, 0.1, -4.0])
    clamped = kin.check_joints(q, clamp=True)
    np.testing.assert_array_equal(clamped, [2.7437, -0.7, 0.0, -0.1518, 0.0, 0.5445, -3.0159])
    np.testing.assert_array_equal(kin.forward(q, clamp=True), kin.forward(clamped))
    assert q[0] == 3.0  # the caller's array is untouched
    with pytest.raises(InvalidInputError, match="fr3_joint2"):
        kin.check_joints([0.0, np.nan, 0.0, -2.0, 0.0, 1.5, 0.7], clamp=True)


def test_batch_errors_name_the_row_and_clamp_works(kin):
    Q = np.tile(HOME, (4, 1))
    Q[2, 3] = 0.3
    with pytest.raises(InvalidInputError, match=r"row 2: fr3_joint4"):
        kin.forward_batch(Q)
    T = kin.forward_batch(Q, clamp=True)
    q2 = HOME.copy()
    q2[3] = -0.1518
    np.testing.assert_array_equal(T[2], kin.forward(q2))
    with pytest.raises(InvalidInputError, match=r"\(N, 7\)"):
        kin.forward_batch(np.zeros((3, 6)))


def test_unknown_frame_lists_valid_names(kin):
    with pytest.raises(InvalidInputError) as info:
        kin.forward(HOME, "fr3_link9")
    assert "fr3_link9" in str(info.value) and "fr3_hand_tcp" in str(info.value)
    with pytest.raises(InvalidInputError):
        kin.forward_batch(np.tile(HOME, (2, 1)), "nope")


def test_a_failed_call_does_not_change_the_next_result(kin):
    T = kin.forward(HOME)
    with pytest.raises(InvalidInputError):
        kin.forward(np.full(7, np.nan))
    np.testing.assert_array_equal(kin.forward(HOME), T)


def test_custom_camera_mount_moves_the_camera_exactly_as_given(random_q):
    optical_offset = rpy_matrix((0, 0, 0), (-np.pi / 2, 0, -np.pi / 2))
    for mount in (
        CameraMount(parent="fr3_hand", xyz=(0.07, -0.01, 0.02), rpy=(0.1, -1.2, 2.9)),
        CameraMount(parent="fr3_link7", xyz=(0.0, 0.09, 0.05), rpy=(0.0, 0.0, 0.5)),
    ):
        kin = FR3Kinematics(mount)
        T_parent_cam = rpy_matrix(mount.xyz, mount.rpy)
        for q in random_q[:50]:
            expected = kin.forward(q, mount.parent) @ T_parent_cam @ optical_offset
            T = kin.camera_pose(q)
            np.testing.assert_allclose(T[:3, 3], expected[:3, 3], atol=1e-12)
            assert rotation_angle(expected[:3, :3], T[:3, :3]) < 1e-12

"""Where the FR3 is in a camera image: the arm's silhouette from its joint states, for masking it out of VO.

The URDF's visual geometry is boxes and cylinders. Each primitive is posed by forward kinematics, moved
into the camera frame with the camera's extrinsics, and projected; a convex solid projects to the convex
hull of its projected vertices (boxes: 8 corners; cylinders: both end circles, sampled), so each primitive
is one filled convex polygon. The mask is their union, dilated by a margin in pixels. No renderer and no
GL: it runs on a robot at camera rate (about 0.1 ms per primitive).

Near the camera: the vertices of a primitive that reach behind the near plane are dropped, so a primitive
cutting through the image plane is under-covered; an exocentric camera sees the arm from metres away, where
this never happens. Primitives entirely behind the camera are skipped.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import check_pose, pose_from_xyz_rpy
from spatial_memory.robot.kinematics import FR3Kinematics

CIRCLE_SAMPLES = 16


@dataclass(frozen=True, eq=False)
class Primitive:
    """A visual primitive of a link: `points` (M, 3) of its convex hull in the link frame."""

    link: str
    kind: str
    points: np.ndarray


def _vec(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else default


def _points(kind: str, geom: ET.Element) -> np.ndarray:
    """Hull points of a primitive in its own frame."""
    if kind == "box":
        sx, sy, sz = _vec(geom.get("size"), (0.0, 0.0, 0.0))
        corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return corners * np.array([sx, sy, sz]) / 2.0
    if kind == "cylinder":
        r, length = float(geom.get("radius", 0)), float(geom.get("length", 0))
        a = np.linspace(0.0, 2.0 * math.pi, CIRCLE_SAMPLES, endpoint=False)
        ring = np.column_stack([r * np.cos(a), r * np.sin(a)]) / math.cos(math.pi / CIRCLE_SAMPLES)  # outside
        return np.vstack([np.column_stack([ring, np.full(len(a), z)]) for z in (-length / 2, length / 2)])
    if kind == "sphere":
        r = float(geom.get("radius", 0)) / math.cos(math.pi / CIRCLE_SAMPLES)
        a = np.linspace(0.0, 2.0 * math.pi, CIRCLE_SAMPLES, endpoint=False)
        c, s, z = r * np.cos(a), r * np.sin(a), np.zeros_like(a)
        return np.vstack([np.column_stack(v) for v in ((c, s, z), (c, z, s), (z, c, s))])
    raise InvalidInputError(f"unsupported URDF geometry {kind!r} (boxes, cylinders and spheres are)")


def urdf_primitives(urdf: str | Path) -> list[Primitive]:
    """The visual primitives of every link of a URDF, as hull points in their link frames."""
    path = Path(urdf)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InvalidInputError(f"cannot read URDF {path}: {exc}") from exc
    out = []
    for link in root.findall("link"):
        for visual in link.findall("visual"):
            geom = visual.find("geometry")
            shape = next(iter(geom), None) if geom is not None else None
            if shape is None:
                continue
            origin = visual.find("origin")
            xyz = _vec(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0))
            rpy = _vec(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0))
            T = pose_from_xyz_rpy(xyz, rpy)
            local = _points(shape.tag, shape)
            out.append(Primitive(link.get("name"), shape.tag, local @ T[:3, :3].T + T[:3, 3]))
    return out


class ArmSilhouette:
    """Image mask of the arm for joint angles `q`, a camera's intrinsics and its pose relative to the arm."""

    def __init__(self, kinematics: FR3Kinematics, primitives: list[Primitive], near_m: float = 0.05) -> None:
        known = set(kinematics.frame_names)
        missing = sorted({p.link for p in primitives} - known)
        if missing:
            raise InvalidInputError(f"primitives on links the kinematics does not know: {missing}")
        self.kinematics, self.primitives, self.near_m = kinematics, primitives, near_m

    def mask(
        self,
        q: np.ndarray,
        K: np.ndarray,
        T_cam_base: np.ndarray,  # noqa: N803 - the project's pose naming
        width: int,
        height: int,
        margin_px: int = 0,
    ) -> np.ndarray:
        """(height, width) bool, True on the arm. T_cam_base: the arm's `base` frame in the camera's
        REP-103 optical frame (inverse of the camera pose in the arm base frame)."""
        T_cam_base = check_pose(T_cam_base, "T_cam_base")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise InvalidInputError(f"K must be 3x3, got {K.shape}")
        frames = self.kinematics.forward_all(q)
        out = np.zeros((height, width), np.uint8)
        for prim in self.primitives:
            T = T_cam_base @ frames[prim.link]
            P = prim.points @ T[:3, :3].T + T[:3, 3]
            P = P[P[:, 2] > self.near_m]
            if len(P) < 3:
                continue
            uv = (P[:, :2] / P[:, 2:3]) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
            uv = np.clip(uv, -4 * max(width, height), 5 * max(width, height))  # keep cv2's ints in range
            hull = cv2.convexHull(np.round(uv * 16).astype(np.int32))
            cv2.fillConvexPoly(out, hull, 1, cv2.LINE_8, shift=4)
        if margin_px > 0:
            k = 2 * int(margin_px) + 1
            out = cv2.dilate(out, np.ones((k, k), np.uint8))
        return out.astype(bool)

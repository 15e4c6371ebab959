"""Episodes as ROS 2 bags (MCAP), to replay into ROS, inspect in Foxglove, or read back.

A rosbag2 directory (`metadata.yaml` + one `.mcap`), Jazzy message
definitions, written with `rosbags`. Every message of a step carries the step's stamp (header and log
time); step stamps strictly increase. Topics (`bag_topics` lists them with their types):

| topic | type | content |
|---|---|---|
| `<cam>/image` | sensor_msgs/Image | rgb8 |
| `<cam>/depth` | sensor_msgs/Image | 32FC1, metres along the optical axis |
| `<cam>/camera_info` | sensor_msgs/CameraInfo | K, P = [K 0], R = I, plumb_bob, zero distortion |
| `joint_states` | sensor_msgs/JointState | positions |
| `/tf` | tf2_msgs/TFMessage | odom -> base_link from the (noisy) odometry |
| `/tf_static` | tf2_msgs/TFMessage | world -> odom (odometry origin), fixed camera mounts; latched |
| `odom` | nav_msgs/Odometry | noisy odometry; twist covariance[0] = -1 marks an unmeasured twist |
| `ground_truth/base_pose` | geometry_msgs/PoseStamped | T_world_base, frame `world` |
| `ground_truth/<cam>_pose` | geometry_msgs/PoseStamped | T_world_cam (optical frame), frame `world` |
| `queries/image` | sensor_msgs/Image | rgb8 query image (steps with a query only) |
| `queries/pose` | geometry_msgs/PoseStamped | T_base_query: query camera in frame `base_link` now |
| `queries/info` | std_msgs/String | JSON `{"stamp_ns": int, "seen": bool}` |

`<cam>` is the camera name (`camera` for the head/exocentric camera, `wrist_camera`). The episode
metadata (`EpisodeMetadata` as JSON) is in the bag's `custom_data` under `spatial_memory.episode`, which
rosbags writes both to `metadata.yaml` and into the MCAP file's own `rosbag2` metadata record.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from spatial_memory.atomic import check_new_target, publish_dir, staging_dir
from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory.sim.episode import (
    CameraFrame,
    EpisodeMetadata,
    OdometrySample,
    Query,
    StepRecord,
)

log = logging.getLogger(__name__)

METADATA_KEY = "spatial_memory.episode"  # rosbag2 custom_data key of the episode metadata JSON
BAG_VERSION = 9  # rosbag2 metadata version written (Jazzy reads 9)
QUERY_FRAME = "query_optical_frame"  # header frame of query images (no TF: the pose is on queries/pose)
UNKNOWN_COVARIANCE = -1.0  # covariance[0] of a quantity that was not measured (as in sensor_msgs/Imu)

GT_BASE_POSE = topics.GT_BASE_POSE
ODOM = topics.ODOM
QUERY_IMAGE, QUERY_POSE, QUERY_INFO = "queries/image", "queries/pose", "queries/info"

IMAGE, CAMERA_INFO, POSE_STAMPED = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CameraInfo",
    "geometry_msgs/msg/PoseStamped",
)
TF_MESSAGE = "tf2_msgs/msg/TFMessage"


@cache
def jazzy_typestore() -> Any:
    """The ROS 2 Jazzy message definitions every bag of ours is written and read with."""
    return get_typestore(Stores.ROS2_JAZZY)


def camera_topics(camera: str) -> dict[str, str]:
    """Topics of one camera: image, depth, camera_info and its ground-truth pose."""
    return {
        "image": f"{camera}/image",
        "depth": f"{camera}/depth",
        "camera_info": f"{camera}/camera_info",
        "pose": f"ground_truth/{camera}_pose",
    }


def bag_topics(metadata: EpisodeMetadata) -> dict[str, str]:
    """Every topic of an episode bag and its message type, in the order the connections are created."""
    out = {
        topics.JOINT_STATES: "sensor_msgs/msg/JointState",
        topics.TF: TF_MESSAGE,
        topics.TF_STATIC: TF_MESSAGE,
        ODOM: "nav_msgs/msg/Odometry",
        GT_BASE_POSE: POSE_STAMPED,
    }
    for cam in metadata.cameras:
        t = camera_topics(cam.name)
        out |= {t["image"]: IMAGE, t["depth"]: IMAGE, t["camera_info"]: CAMERA_INFO, t["pose"]: POSE_STAMPED}
    return out | {QUERY_IMAGE: IMAGE, QUERY_POSE: POSE_STAMPED, QUERY_INFO: "std_msgs/msg/String"}


def _latched_qos() -> Qos:
    """RELIABLE + TRANSIENT_LOCAL depth 1: what a /tf_static publisher offers, so replay latches it."""
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


# ----------------------------------------------------------------------------------------------------
# Messages of one instant (shared with the live sim node, which publishes the same topics)
# ----------------------------------------------------------------------------------------------------


def camera_messages(
    cam: CameraFrame, stamp_ns: int, world_frame: str, *, factory: conv.MessageFactory
) -> list[tuple[str, Any]]:
    """(topic, message) of one camera frame: camera_info, rgb8 image, 32FC1 depth, ground-truth pose."""
    names = camera_topics(cam.name)
    return [
        (
            names["camera_info"],
            conv.make_camera_info(cam.K, cam.width, cam.height, stamp_ns, cam.frame_id, factory=factory),
        ),
        (
            names["image"],
            conv.numpy_to_image(cam.rgb, "rgb8", factory=factory, stamp_ns=stamp_ns, frame_id=cam.frame_id),
        ),
        (
            names["depth"],
            conv.numpy_to_image(
                cam.depth, "32FC1", factory=factory, stamp_ns=stamp_ns, frame_id=cam.frame_id
            ),
        ),
        (names["pose"], conv.matrix_to_pose_stamped(cam.T_world_cam, stamp_ns, world_frame, factory=factory)),
    ]


def odometry_message(
    odo: OdometrySample, stamp_ns: int, odom_frame: str, base_frame: str, *, factory: conv.MessageFactory
) -> Any:
    """nav_msgs/Odometry of a sample; an unmeasured twist is marked by twist covariance[0] = -1."""
    twist_cov = np.zeros((6, 6))
    if odo.twist is None:
        twist_cov[0, 0] = UNKNOWN_COVARIANCE
    return conv.make_odometry(
        odo.T_odom_base,
        stamp_ns,
        odom_frame,
        base_frame,
        factory=factory,
        twist=odo.twist,
        twist_covariance=twist_cov,
    )


# ----------------------------------------------------------------------------------------------------
# Bag writer
# ----------------------------------------------------------------------------------------------------


class BagWriter:
    """Writes an episode, step by step, as a ROS 2 bag (MCAP storage) at `path`; a context manager.

    The bag appears at `path` only when the writer closes without error; on an exception (for example a
    step that does not fit the episode's cameras) the partial bag is deleted.
    """

    def __init__(self, path: str | Path, metadata: EpisodeMetadata) -> None:
        self.path = check_new_target(Path(path))
        self.metadata = metadata
        self.steps_written = 0
        self._factory = conv.RosbagsFactory(jazzy_typestore())
        self._staging: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._last_stamp = -1

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> BagWriter:
        """Create the staging bag, its connections and the episode metadata."""
        self._staging = staging_dir(self.path)
        self._writer = Writer(
            self._staging / self.path.name, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP
        )
        self._writer.set_custom_data(METADATA_KEY, self.metadata.to_json(indent=None))
        self._writer.open()
        store = jazzy_typestore()
        for topic, msgtype in bag_topics(self.metadata).items():
            qos = [_latched_qos()] if topic == topics.TF_STATIC else []
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=store, offered_qos_profiles=qos
            )
        return self

    def close(self) -> Path:
        """Finish the bag and move it to `path`; an episode needs at least one step."""
        if self._writer is None or self._staging is None:
            raise InvalidInputError("the bag writer is not open")
        if self.steps_written == 0:
            self.abort()
            raise InvalidInputError(f"no steps were written; {self.path} not created")
        try:
            self._writer.close()
            self._writer = None
            publish_dir(self._staging / self.path.name, self.path)
        finally:
            self.abort()
        log.info("wrote bag %s: %d steps", self.path, self.steps_written)
        return self.path

    def abort(self) -> None:
        """Drop whatever was written (the target path is never touched)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ------------------------------------------------------------------ writing
    def write(self, step: StepRecord) -> None:
        """Append one step (all its topics at its stamp); the step must fit the episode metadata."""
        if self._writer is None:
            raise InvalidInputError("the bag writer is not open (use it as a context manager)")
        self.metadata.check_step(step)
        if step.stamp_ns <= self._last_stamp:
            raise InvalidInputError(
                f"step stamps must increase: {step.stamp_ns} ns after {self._last_stamp} ns"
            )
        store = jazzy_typestore()  # build and serialise the whole step before writing any of it
        raws = [(topic, store.serialize_cdr(msg, msg.__msgtype__)) for topic, msg in self._messages(step)]
        for topic, raw in raws:
            self._writer.write(self._connections[topic], step.stamp_ns, raw)
        self._last_stamp = step.stamp_ns
        self.steps_written += 1

    def _messages(self, step: StepRecord) -> list[tuple[str, Any]]:
        """(topic, message) pairs of one step, in write order."""
        f, md, t = self._factory, self.metadata, step.stamp_ns
        out: list[tuple[str, Any]] = []
        if self.steps_written == 0:
            out.append((topics.TF_STATIC, self._static_tf(t)))
        out.append(
            (topics.JOINT_STATES, conv.make_joint_state(step.joint_names, step.joint_positions, t, factory=f))
        )
        odom_tf = conv.matrix_to_transform_stamped(
            step.odometry.T_odom_base, t, md.odom_frame, md.base_frame, factory=f
        )
        out.append((topics.TF, conv.make_tf_message([odom_tf], factory=f)))
        out.append((ODOM, odometry_message(step.odometry, t, md.odom_frame, md.base_frame, factory=f)))
        out.append(
            (GT_BASE_POSE, conv.matrix_to_pose_stamped(step.T_world_base, t, md.world_frame, factory=f))
        )
        for cam in step.cameras:
            out += camera_messages(cam, t, md.world_frame, factory=f)
        if step.query is not None:
            q = step.query
            out.append(
                (QUERY_IMAGE, conv.numpy_to_image(q.rgb, "rgb8", factory=f, stamp_ns=t, frame_id=QUERY_FRAME))
            )
            out.append((QUERY_POSE, conv.matrix_to_pose_stamped(q.T_base_query, t, md.base_frame, factory=f)))
            info = json.dumps(
                {
                    "stamp_ns": t,
                    "seen": q.seen,
                    "overlap": None if math.isnan(q.overlap) else q.overlap,
                    "source_step": q.source_step,
                }
            )
            out.append((QUERY_INFO, f.new("std_msgs/msg/String", data=info)))
        return out

    def _static_tf(self, stamp_ns: int) -> Any:
        """world -> odom, every fixed camera mount and the robot's other fixed frames, once, at the first
        step."""
        md, f = self.metadata, self._factory
        edges = [
            conv.matrix_to_transform_stamped(
                md.T_world_odom, stamp_ns, md.world_frame, md.odom_frame, factory=f
            )
        ]
        for cam in md.cameras:
            if cam.T_parent_cam is not None:
                edges.append(
                    conv.matrix_to_transform_stamped(
                        cam.T_parent_cam, stamp_ns, cam.parent_frame, cam.frame_id, factory=f
                    )
                )
        for e in md.static_transforms:
            edges.append(
                conv.matrix_to_transform_stamped(e.T_parent_child, stamp_ns, e.parent, e.child, factory=f)
            )
        return conv.make_tf_message(edges, factory=f)


def write_bag(path: str | Path, metadata: EpisodeMetadata, steps: Iterable[StepRecord]) -> Path:
    """Write a whole episode as a bag; nothing appears at `path` unless every step was good."""
    with BagWriter(path, metadata) as writer:
        for step in steps:
            writer.write(step)
    return writer.path


# ----------------------------------------------------------------------------------------------------
# Bag reader
# ----------------------------------------------------------------------------------------------------


def read_bag_metadata(path: str | Path) -> EpisodeMetadata:
    """The episode metadata stored in a bag directory's `metadata.yaml` (custom_data)."""
    meta_file = Path(path) / "metadata.yaml"
    try:
        info = yaml.safe_load(meta_file.read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{path} is not a readable rosbag2 directory: {exc}") from exc
    custom = info.get("custom_data") or {}
    if METADATA_KEY not in custom:
        raise InvalidInputError(f"{path} holds no spatial_memory episode metadata ({METADATA_KEY!r})")
    return EpisodeMetadata.from_json(custom[METADATA_KEY])


class BagReader:
    """Reads an episode bag written by `BagWriter` back into `StepRecord`s; open from construction on.

    Iterating streams every step in time order; `step(i)` reads only the messages at step i's stamp
    (the stamps are collected once, from the ground-truth base pose topic). Use it as a context
    manager, or call `close()`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise InvalidInputError(f"{self.path} is not a bag directory")
        self.metadata = read_bag_metadata(self.path)
        self._stamps: list[int] | None = None
        self._decoders = self._make_decoders()
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except (ReaderError, OSError) as exc:
            raise InvalidInputError(f"cannot open bag {self.path}: {exc}") from exc
        missing = sorted(set(bag_topics(self.metadata)) - set(self._reader.topics))
        if missing:
            self._reader.close()
            raise InvalidInputError(f"bag {self.path} lacks topics {missing}")

    def open(self) -> BagReader:
        """The reader itself (kept for symmetry with the writers: a BagReader is open once built)."""
        return self

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> BagReader:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._reader.topics[GT_BASE_POSE].msgcount

    @property
    def stamps_ns(self) -> list[int]:
        """Step stamps in order (read once from `ground_truth/base_pose`)."""
        if self._stamps is None:
            conns = self._connections([GT_BASE_POSE])
            self._stamps = [t for _, t, _ in self._reader.messages(conns)]
        return self._stamps

    def __iter__(self) -> Iterator[StepRecord]:
        yield from self._steps(self._reader.messages(self._connections(self._decoders)))

    def poses(self) -> dict[str, np.ndarray]:
        """Ground-truth and odometry poses of every step, stacked (T, 4, 4), without decoding any image."""
        wanted = {GT_BASE_POSE: "T_world_base", ODOM: "T_odom_base"}
        wanted |= {camera_topics(c.name)["pose"]: f"{c.name}.T_world_cam" for c in self.metadata.cameras}
        out: dict[str, list[np.ndarray]] = {name: [] for name in wanted.values()}
        store = jazzy_typestore()
        for conn, _, raw in self._reader.messages(self._connections(wanted)):
            out[wanted[conn.topic]].append(conv.msg_to_matrix(store.deserialize_cdr(raw, conn.msgtype).pose))
        return {name: np.stack(mats) for name, mats in out.items()}

    def step(self, index: int) -> StepRecord:
        """Step `index` (negative counts from the end) by reading only its stamp's messages."""
        stamps = self.stamps_ns
        if not -len(stamps) <= index < len(stamps):
            raise InvalidInputError(f"step {index} out of range: the episode has {len(stamps)} steps")
        t = stamps[index]
        steps = list(
            self._steps(self._reader.messages(self._connections(self._decoders), start=t, stop=t + 1))
        )
        return steps[0]

    # ------------------------------------------------------------------ decoding
    def _connections(self, wanted: Iterable[str]) -> list[Any]:
        wanted = set(wanted)
        return [c for c in self._reader.connections if c.topic in wanted]

    def _make_decoders(self) -> dict[str, Any]:
        """topic -> function(msg) -> the value the step assembly needs."""
        dec: dict[str, Any] = {
            topics.JOINT_STATES: lambda m: (
                tuple(str(n) for n in m.name),
                np.asarray(m.position, np.float64).copy(),
            ),
            ODOM: _decode_odometry,
            GT_BASE_POSE: conv.msg_to_matrix,
            QUERY_IMAGE: conv.image_to_numpy,
            QUERY_POSE: conv.msg_to_matrix,
            QUERY_INFO: lambda m: json.loads(m.data),
        }
        for cam in self.metadata.cameras:
            t = camera_topics(cam.name)
            dec[t["image"]] = lambda m: (conv.image_to_numpy(m), str(m.header.frame_id))
            dec[t["depth"]] = conv.image_to_numpy
            dec[t["camera_info"]] = lambda m: conv.camera_info_to_intrinsics(m)[0]
            dec[t["pose"]] = conv.msg_to_matrix
        return dec

    def _steps(self, messages: Iterable[tuple[Any, int, bytes]]) -> Iterator[StepRecord]:
        """Group messages by log time (one stamp = one step) and assemble each group."""
        store = jazzy_typestore()
        group: dict[str, Any] = {}
        stamp = None
        for conn, t, raw in messages:
            if stamp is not None and t != stamp:
                yield self._assemble(stamp, group)
                group = {}
            stamp = t
            group[conn.topic] = self._decoders[conn.topic](store.deserialize_cdr(raw, conn.msgtype))
        if stamp is not None:
            yield self._assemble(stamp, group)

    def _assemble(self, stamp: int, values: dict[str, Any]) -> StepRecord:
        required = [topics.JOINT_STATES, ODOM, GT_BASE_POSE]
        for cam in self.metadata.cameras:
            required += list(camera_topics(cam.name).values())
        missing = [topic for topic in required if topic not in values]
        if missing:
            raise InvalidInputError(f"bag {self.path}: step at {stamp} ns lacks {missing}")
        cameras = []
        for cam in self.metadata.cameras:
            t = camera_topics(cam.name)
            rgb, frame_id = values[t["image"]]
            cameras.append(
                CameraFrame(
                    name=cam.name,
                    rgb=rgb,
                    depth=values[t["depth"]],
                    K=values[t["camera_info"]],
                    frame_id=frame_id,
                    T_world_cam=values[t["pose"]],
                )
            )
        names, positions = values[topics.JOINT_STATES]
        return StepRecord(
            stamp_ns=stamp,
            cameras=tuple(cameras),
            joint_names=names,
            joint_positions=positions,
            T_world_base=values[GT_BASE_POSE],
            odometry=values[ODOM],
            query=self._query(stamp, values),
        )

    def _query(self, stamp: int, values: dict[str, Any]) -> Query | None:
        parts = [topic in values for topic in (QUERY_IMAGE, QUERY_POSE, QUERY_INFO)]
        if not any(parts):
            return None
        if not all(parts):
            raise InvalidInputError(f"bag {self.path}: the query at {stamp} ns lacks one of its three topics")
        info = values[QUERY_INFO]
        if not isinstance(info, dict) or not isinstance(info.get("seen"), bool):
            raise InvalidInputError(f"bag {self.path}: queries/info at {stamp} ns is not {{'seen': bool}}")
        overlap = info.get("overlap")
        return Query(
            rgb=values[QUERY_IMAGE],
            T_base_query=values[QUERY_POSE],
            seen=info["seen"],
            overlap=math.nan if overlap is None else overlap,
            source_step=info.get("source_step", -1),
        )


def _decode_odometry(msg: Any) -> OdometrySample:
    """nav_msgs/Odometry -> OdometrySample (twist None when its covariance[0] marks it unmeasured)."""
    unknown = float(np.asarray(msg.twist.covariance)[0]) == UNKNOWN_COVARIANCE
    twist = None if unknown else conv.twist_to_vector(msg.twist.twist)
    return OdometrySample(T_odom_base=conv.msg_to_matrix(msg.pose), twist=twist)

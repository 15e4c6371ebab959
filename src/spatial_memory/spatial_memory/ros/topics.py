"""Topic, service and frame names of the ROS graph, in one place.

Nodes, the launch file and the RViz-config test all read these. Topics are relative (so a launch file can
push the nodes into a namespace or remap them); the two services are absolute as the architecture page
names them. Frame names are only defaults: nodes take their frames from parameters.
"""

from __future__ import annotations

# --- inputs
JOINT_STATES = "joint_states"  # sensor_msgs/JointState (sensor-data QoS)
CAMERA_IMAGE = "camera/image"  # sensor_msgs/Image (sensor-data QoS)

# --- fk_node outputs
EE_POSE = "fk/ee_pose"  # geometry_msgs/PoseStamped of the end effector in the arm's root frame
ROBOT_DESCRIPTION = "robot_description"  # std_msgs/String URDF, TRANSIENT_LOCAL
TF = "/tf"
TF_STATIC = "/tf_static"

# --- spatial_context_node outputs
BEV_MAP = "spatial_context/bev_map"  # sensor_msgs/Image rgb8, RELIABLE + TRANSIENT_LOCAL depth 1
KEYFRAME_MARKERS = "spatial_context/keyframes"  # visualization_msgs/MarkerArray
KEYFRAME_IMAGES = "spatial_context/keyframe_images"  # sensor_msgs/Image rgb8: all keyframes tiled

# --- services (absolute)
PROMOTE_KEYFRAME = "/promote_keyframe"  # spatial_memory_interfaces/srv/PromoteKeyframe
QUERY_POSE = "/query_pose"  # spatial_memory_interfaces/srv/QueryPose

# Every topic one of our nodes publishes (RViz may only show these, plus the camera input).
PUBLISHED_TOPICS: frozenset[str] = frozenset(
    {EE_POSE, ROBOT_DESCRIPTION, TF, TF_STATIC, BEV_MAP, KEYFRAME_MARKERS, KEYFRAME_IMAGES}
)
SUBSCRIBED_TOPICS: frozenset[str] = frozenset({JOINT_STATES, CAMERA_IMAGE})

# --- node names (the keys of config/*.yaml)
FK_NODE = "fk_node"
SPATIAL_CONTEXT_NODE = "spatial_context_node"

# --- default frame names (REP-105 / franka_description)
ODOM_FRAME = "odom"
BASE_LINK_FRAME = "base_link"
ARM_ROOT_FRAME = "base"  # root link of the FR3 URDF
EE_FRAME = "fr3_hand_tcp"
CAMERA_OPTICAL_FRAME = "wrist_camera_optical_frame"

MODES = ("stationary", "mobile")

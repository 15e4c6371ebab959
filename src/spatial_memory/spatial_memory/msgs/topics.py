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

# --- memory_node
MEMORY_QUERY = "memory/query"  # spatial_memory_interfaces/srv/QueryPose, internal: /query_pose forwards here
MEMORY_ANSWER = "memory/answer"  # geometry_msgs/PoseWithCovarianceStamped: the latest answer (RViz)
MEMORY_STATUS = "memory/status"  # std_msgs/String: a JSON summary of the memory (backend, steps, ...)
MEMORY_SAVE = "memory/save"  # spatial_memory_interfaces/srv/SaveState: the memory to a file
MEMORY_LOAD = "memory/load"  # spatial_memory_interfaces/srv/LoadState: a saved memory back
MEMORY_RESET = "memory/reset"  # std_srvs/srv/Trigger: forget everything

# --- spatial_context_node state (the pose history, keyframes and their images)
CONTEXT_STATUS = "spatial_context/status"  # std_msgs/String: JSON (frames, keyframes, images used / dropped)
CONTEXT_SAVE = "spatial_context/save"  # spatial_memory_interfaces/srv/SaveState
CONTEXT_LOAD = "spatial_context/load"  # spatial_memory_interfaces/srv/LoadState
CONTEXT_RESET = "spatial_context/reset"  # std_srvs/srv/Trigger

# --- vo_node (inputs: camera/image, camera/camera_info, camera/depth, joint_states, odom = wheel odometry)
VO_ODOMETRY = "vo/odometry"  # nav_msgs/Odometry: base_link in odom, with covariance
VO_PATH = "vo/path"  # nav_msgs/Path: the newest poses of vo/odometry
VO_STATUS = "vo/status"  # std_msgs/String: JSON (rate, dropped frames, losses, where the motion came from)

# --- sim_node (MuJoCo) inputs: commands
CMD_VEL = "cmd_vel"  # geometry_msgs/Twist: linear.x (m/s) and angular.z (rad/s) of the base
JOINT_COMMANDS = "joint_commands"  # sensor_msgs/JointState: arm position targets, fr3_joint1..7 by name
# geometry_msgs/PoseStamped in `world`: carry the robot there (a kidnap: the wheel odometry does not see it)
SIM_TELEPORT = "sim/teleport"

# --- sim_node outputs (the names recorded bags use too: `camera` is the head camera)
CLOCK = "/clock"  # rosgraph_msgs/Clock: sim time
CAMERA_DEPTH = "camera/depth"  # sensor_msgs/Image 32FC1, metres along the optical axis (sensor-data QoS)
CAMERA_INFO = "camera/camera_info"  # sensor_msgs/CameraInfo (sensor-data QoS)
WRIST_CAMERA_IMAGE = "wrist_camera/image"
WRIST_CAMERA_DEPTH = "wrist_camera/depth"
WRIST_CAMERA_INFO = "wrist_camera/camera_info"
ODOM = "odom"  # nav_msgs/Odometry: noisy wheel odometry, odom -> base_link
GT_BASE_POSE = "ground_truth/base_pose"  # geometry_msgs/PoseStamped in `world`
GT_CAMERA_POSE = "ground_truth/camera_pose"  # head camera optical frame in `world`, with each image
GT_WRIST_CAMERA_POSE = "ground_truth/wrist_camera_pose"

# --- services (absolute)
MAP = "map"  # nav_msgs/OccupancyGrid (latched): sim_node's world, as nav2's map server would publish it
GOAL_POSE = "goal_pose"  # geometry_msgs/PoseStamped: where the policy wants the base (nav2's topic)
POLICY_GOAL = "policy/goal"  # geometry_msgs/PoseWithCovarianceStamped: the same goal with its 1-sigma (RViz)
POLICY_TASK = "policy/task"  # std_msgs/String: a text task for the policy (go-to-picture is the action)
POLICY_DECISION = "policy/decision"  # std_msgs/String: JSON of each decision
POLICY_STATUS = "policy/status"  # std_msgs/String: JSON (rate held, decision latency, fallbacks, ...)
GOAL_FOLLOWER_STATUS = "goal_follower/status"  # std_msgs/String: JSON (goal, state, command)
GO_TO_PICTURE = "go_to_picture"  # spatial_memory_interfaces/action/GoToPicture

PROMOTE_KEYFRAME = "/promote_keyframe"  # spatial_memory_interfaces/srv/PromoteKeyframe
QUERY_POSE = "/query_pose"  # spatial_memory_interfaces/srv/QueryPose

# Every topic one of our nodes publishes (RViz may only show these, plus the camera input).
SIM_TOPICS: frozenset[str] = frozenset(
    {
        CLOCK,
        JOINT_STATES,
        TF,
        TF_STATIC,
        ODOM,
        CAMERA_IMAGE,
        CAMERA_DEPTH,
        CAMERA_INFO,
        WRIST_CAMERA_IMAGE,
        WRIST_CAMERA_DEPTH,
        WRIST_CAMERA_INFO,
        GT_BASE_POSE,
        GT_CAMERA_POSE,
        GT_WRIST_CAMERA_POSE,
        MAP,
    }
)
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray: every node's health at 1 Hz (absolute)

PUBLISHED_TOPICS: frozenset[str] = (
    frozenset(
        {EE_POSE, ROBOT_DESCRIPTION, TF, TF_STATIC, BEV_MAP, KEYFRAME_MARKERS, KEYFRAME_IMAGES, MEMORY_STATUS}
        | {CONTEXT_STATUS}
        | {VO_ODOMETRY, VO_PATH, VO_STATUS, DIAGNOSTICS, MEMORY_ANSWER, POLICY_GOAL}
    )
    | SIM_TOPICS
)
SUBSCRIBED_TOPICS: frozenset[str] = frozenset(
    {JOINT_STATES, CAMERA_IMAGE, CAMERA_INFO, CAMERA_DEPTH, ODOM, CMD_VEL, JOINT_COMMANDS, SIM_TELEPORT}
)

# --- node names (the keys of config/*.yaml)
FK_NODE = "fk_node"
SPATIAL_CONTEXT_NODE = "spatial_context_node"
SIM_NODE = "sim_node"
MEMORY_NODE = "memory_node"
VO_NODE = "vo_node"
POLICY_NODE = "policy_node"
GOAL_FOLLOWER_NODE = "goal_follower_node"

# --- default frame names (REP-105 / franka_description)
WORLD_FRAME = "world"  # the simulated world's origin (ground truth is expressed in it)
ODOM_FRAME = "odom"
BASE_LINK_FRAME = "base_link"
ARM_ROOT_FRAME = "base"  # root link of the FR3 URDF
EE_FRAME = "fr3_hand_tcp"
CAMERA_OPTICAL_FRAME = "wrist_camera_optical_frame"
HEAD_CAMERA_OPTICAL_FRAME = "head_camera_optical_frame"  # the mobile base's head camera (sim)

MODES = ("stationary", "mobile")

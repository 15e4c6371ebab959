"""Bring up the spatial_memory graph: fk_node (TF + robot_description), spatial_context_node, optionally RViz.

    ros2 launch spatial_memory robot.launch.py mode:=stationary use_rviz:=true   # RViz if rviz2 is installed
    ros2 launch spatial_memory robot.launch.py mode:=mobile image_topic:=/camera/color/image_raw
    ros2 launch spatial_memory robot.launch.py mode:=mobile use_vo:=true \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info \
        depth_topic:=/camera/aligned_depth_to_color/image_raw

`mode:=mobile` takes camera poses from TF at the image stamp (an odometry source must publish
odom -> base_link); `world_frame` then defaults to `odom`. In mobile mode memory_node (the memory that
answers the /query_pose spatial_context_node forwards) starts under `use_memory`: `auto` (the default)
starts it when `memory_checkpoint` (or the parameter file's engine.checkpoint) names an existing file and
otherwise logs why not, `true` always, `false` never. `use_vo:=true` (mobile mode) starts vo_node, the
patch VO on that camera, to publish odom -> base_link (depth aligned to the colour image; the camera's
mount must be in TF). memory_node's refined answers read the same `camera_info_topic` and `depth_topic`.
`nodes:=robot|workstation` (default `all`) starts one half, for two machines on one ROS domain (README,
"Across machines"): the robot half fk_node, spatial_context_node, vo_node; the workstation half memory_node,
policy_node and RViz. Give both halves the same arguments.
Uses only launch APIs present in Humble and Jazzy.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from spatial_memory.msgs import topics
from spatial_memory.node_configs import memory_node_launch, missing_ros_package

HALVES = ("robot", "workstation")  # nodes:=... (besides all): the two machines the graph splits across


def _arguments() -> list[DeclareLaunchArgument]:
    """The launch arguments, with defaults and help text (`ros2 launch ... --show-args`)."""
    share = FindPackageShare("spatial_memory")
    mode = LaunchConfiguration("mode")
    return [
        DeclareLaunchArgument(
            "mode",
            default_value="stationary",
            choices=list(topics.MODES),
            description="pose source: FK or TF",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (simulation, bags)"
        ),
        DeclareLaunchArgument(
            "use_rviz",
            default_value="false",
            description="start RViz with our config (if rviz2 is installed; a robot is often headless)",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "robot.yaml"]),
            description="ROS 2 parameter file for fk_node and spatial_context_node",
        ),
        DeclareLaunchArgument(
            "world_frame",
            default_value=PythonExpression(
                ["'", topics.ODOM_FRAME, "' if '", mode, "' == 'mobile' else '", topics.ARM_ROOT_FRAME, "'"]
            ),
            description="frame poses and markers are expressed in (and RViz's fixed frame)",
        ),
        DeclareLaunchArgument(
            "image_topic", default_value=topics.CAMERA_IMAGE, description="camera image input"
        ),
        DeclareLaunchArgument(
            "joint_states_topic", default_value=topics.JOINT_STATES, description="FR3 joint state input"
        ),
        DeclareLaunchArgument(
            "use_vo",
            default_value="false",
            description="mobile mode: start vo_node to publish odom -> base_link from the camera",
        ),
        DeclareLaunchArgument(
            "use_policy",
            default_value="false",
            choices=["true", "false"],
            description="start policy_node: the 1 Hz scripted policy and the go_to_picture action; its "
            "goal_pose is for nav2 (start nav2 yourself)",
        ),
        DeclareLaunchArgument(
            "camera_info_topic",
            default_value=topics.CAMERA_INFO,
            description="vo_node and memory_node (refined answers): camera intrinsics",
        ),
        DeclareLaunchArgument(
            "depth_topic",
            default_value=topics.CAMERA_DEPTH,
            description="vo_node and memory_node (refined answers): depth aligned to the image",
        ),
        DeclareLaunchArgument(
            "wheel_odom_topic",
            default_value=topics.ODOM,
            description="the base's wheel odometry (nav_msgs/Odometry), read by vo_node when published",
        ),
        DeclareLaunchArgument(
            "use_memory",
            default_value="auto",
            choices=["auto", "true", "false"],
            description="mobile mode: start memory_node (auto: only if its checkpoint file exists)",
        ),
        DeclareLaunchArgument(
            "memory_checkpoint",
            default_value="",
            description="memory_node's checkpoint file ('' = engine.checkpoint of params_file)",
        ),
        DeclareLaunchArgument(
            "memory_resize",
            default_value="",
            description="memory_node's images of another size than the model's: crop (centre square), "
            "stretch or none (refuse); '' = engine.resize of params_file (crop)",
        ),
        DeclareLaunchArgument(
            "nodes",
            default_value="all",
            choices=["all", *HALVES],
            description="which half of the graph to start: robot = fk_node, spatial_context_node, vo_node; "
            "workstation = memory_node, policy_node, RViz",
        ),
    ]


def _half(name: str) -> IfCondition:
    """True when `nodes` is `all` or `name`: one machine runs one half of the graph."""
    return IfCondition(PythonExpression(["'", LaunchConfiguration("nodes"), f"' in ('all', '{name}')"]))


def _memory_node(context, *args, **kwargs) -> list:
    """Mobile mode: memory_node under `use_memory` (auto: if its checkpoint exists), or why not."""
    if LaunchConfiguration("mode").perform(context) != "mobile":
        return []  # the memory integrates base motion; a table-mounted arm has none
    override = LaunchConfiguration("memory_checkpoint").perform(context)
    params_file = LaunchConfiguration("params_file").perform(context)
    checkpoint, why_not = memory_node_launch(
        LaunchConfiguration("use_memory").perform(context), params_file, override
    )
    if why_not:
        return [LogInfo(msg=why_not)]
    sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    overrides = {"engine.checkpoint": checkpoint} if override else {}
    resize = LaunchConfiguration("memory_resize").perform(context)
    if resize:  # checked by memory_node's config, which refuses a bad value with one clear line
        overrides["engine.resize"] = resize
    return [
        Node(
            package="spatial_memory",
            executable="memory_node",
            name=topics.MEMORY_NODE,
            output="screen",
            parameters=[
                params_file,
                {"use_sim_time": sim_time, "world_frame": LaunchConfiguration("world_frame"), **overrides},
            ],
            remappings=[
                (topics.CAMERA_IMAGE, LaunchConfiguration("image_topic")),
                (topics.CAMERA_INFO, LaunchConfiguration("camera_info_topic")),
                (topics.CAMERA_DEPTH, LaunchConfiguration("depth_topic")),
            ],
        )
    ]


def _rviz(context, share, world_frame, sim_time) -> list:
    """RViz under `use_rviz:=true` when rviz2 is installed, else one line saying so: a missing rviz2 failed
    the launch after fk_node and spatial_context_node had started, and left them running."""
    missing = missing_ros_package("rviz2")
    if missing:
        return [LogInfo(msg=f"use_rviz:=true: {missing}")]
    config = PathJoinSubstitution([share, "config", "spatial_memory.rviz"])
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", config, "-f", world_frame],
        parameters=[sim_time],
        # the config's camera panel shows /camera/image: follow the driver's topic as the other nodes do
        remappings=[(topics.CAMERA_IMAGE, LaunchConfiguration("image_topic"))],
    )
    return [rviz]


def generate_launch_description() -> LaunchDescription:
    """fk_node + spatial_context_node with the parameter file, and RViz under `use_rviz`."""
    share = FindPackageShare("spatial_memory")
    params_file = LaunchConfiguration("params_file")
    sim_time = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}
    world_frame = LaunchConfiguration("world_frame")
    joint_states = (topics.JOINT_STATES, LaunchConfiguration("joint_states_topic"))
    fk_node = Node(
        package="spatial_memory",
        executable="fk_node",
        name=topics.FK_NODE,
        output="screen",
        parameters=[params_file, sim_time],
        remappings=[joint_states],
    )
    context_node = Node(
        package="spatial_memory",
        executable="spatial_context_node",
        name=topics.SPATIAL_CONTEXT_NODE,
        output="screen",
        parameters=[params_file, sim_time, {"mode": LaunchConfiguration("mode"), "world_frame": world_frame}],
        remappings=[joint_states, (topics.CAMERA_IMAGE, LaunchConfiguration("image_topic"))],
    )
    vo_node = Node(
        package="spatial_memory",
        executable="vo_node",
        name=topics.VO_NODE,
        output="screen",
        parameters=[params_file, sim_time, {"odom_frame": world_frame}],
        remappings=[
            joint_states,
            (topics.CAMERA_IMAGE, LaunchConfiguration("image_topic")),
            (topics.CAMERA_INFO, LaunchConfiguration("camera_info_topic")),
            (topics.CAMERA_DEPTH, LaunchConfiguration("depth_topic")),
            (topics.ODOM, LaunchConfiguration("wheel_odom_topic")),
        ],
        condition=IfCondition(
            PythonExpression(
                [
                    "'",
                    LaunchConfiguration("use_vo"),
                    "' == 'true' and '",
                    LaunchConfiguration("mode"),
                    "' == 'mobile'",
                ]
            )
        ),
    )
    rviz = OpaqueFunction(
        function=_rviz,
        args=[share, world_frame, sim_time],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    policy_node = Node(
        package="spatial_memory",
        executable="policy_node",
        name=topics.POLICY_NODE,
        output="screen",
        parameters=[params_file, sim_time, {"odom_frame": world_frame, "goal_frame": world_frame}],
        remappings=[(topics.CAMERA_IMAGE, LaunchConfiguration("image_topic"))],
        condition=IfCondition(LaunchConfiguration("use_policy")),
    )
    memory = OpaqueFunction(function=_memory_node)
    robot = GroupAction([fk_node, context_node, vo_node], condition=_half("robot"))
    workstation = GroupAction([memory, policy_node, rviz], condition=_half("workstation"))
    return LaunchDescription([*_arguments(), robot, workstation])

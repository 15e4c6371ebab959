"""Bring up the spatial_memory graph: fk_node (TF + robot_description), spatial_context_node, optionally RViz.

    ros2 launch spatial_memory robot.launch.py mode:=stationary use_rviz:=true
    ros2 launch spatial_memory robot.launch.py mode:=mobile image_topic:=/camera/color/image_raw

`mode:=mobile` takes camera poses from TF at the image stamp (an odometry source must publish
odom -> base_link); `world_frame` then defaults to `odom`. Uses only launch APIs present in Humble and Jazzy.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from spatial_memory.ros import topics


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
        DeclareLaunchArgument("use_rviz", default_value="true", description="start RViz with our config"),
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
    ]


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
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "spatial_memory.rviz"]), "-f", world_frame],
        parameters=[sim_time],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription([*_arguments(), fk_node, context_node, rviz])

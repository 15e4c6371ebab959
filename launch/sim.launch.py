"""Try the stack without a robot: sim_node (MuJoCo world + mobile FR3) with fk_node and spatial_context_node.

    ros2 launch spatial_memory sim.launch.py
    ros2 launch spatial_memory sim.launch.py world_preset:=apartment world_seed:=3 use_rviz:=true
    ros2 topic pub -r 10 /cmd_vel geometry_msgs/msg/Twist "{linear: {x: 0.3}, angular: {z: 0.2}}"

sim_node makes /clock (it runs on a wall timer); fk_node, spatial_context_node and RViz run on sim time.
spatial_context_node is in mobile mode: it takes the head camera's pose from TF (odom -> base_link from
sim_node's wheel odometry, base_link -> head camera on /tf_static) at each image's stamp. All parameters
come from `params_file` (config/sim.yaml); the arguments below override the world's preset and seed.
Uses only launch APIs present in Humble and Jazzy.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from spatial_memory.ros import topics
from spatial_memory.sim.presets import WORLD_PRESETS


def _arguments() -> list[DeclareLaunchArgument]:
    """The launch arguments, with defaults and help text (`ros2 launch ... --show-args`)."""
    share = FindPackageShare("spatial_memory")
    return [
        DeclareLaunchArgument(
            "world_preset",
            default_value="house",
            choices=sorted(WORLD_PRESETS),
            description="generated world: size and number of rooms",
        ),
        DeclareLaunchArgument(
            "world_seed", default_value="0", description="seed of the world's layout, textures, furniture"
        ),
        DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz with our config"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "sim.yaml"]),
            description="ROS 2 parameter file for sim_node, fk_node and spatial_context_node",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    """sim_node + fk_node + spatial_context_node with the parameter file, and RViz under `use_rviz`."""
    share = FindPackageShare("spatial_memory")
    params_file = LaunchConfiguration("params_file")
    sim_time = {"use_sim_time": True}  # everything but sim_node runs on the /clock sim_node publishes
    sim_node = Node(
        package="spatial_memory",
        executable="sim_node",
        name=topics.SIM_NODE,
        output="screen",
        parameters=[
            params_file,
            {
                "use_sim_time": False,  # it makes /clock
                "sim.world.preset": LaunchConfiguration("world_preset"),
                "sim.world.seed": ParameterValue(LaunchConfiguration("world_seed"), value_type=int),
            },
        ],
    )
    fk_node = Node(
        package="spatial_memory",
        executable="fk_node",
        name=topics.FK_NODE,
        output="screen",
        parameters=[params_file, sim_time],
    )
    context_node = Node(
        package="spatial_memory",
        executable="spatial_context_node",
        name=topics.SPATIAL_CONTEXT_NODE,
        output="screen",
        parameters=[params_file, sim_time],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=[
            "-d",
            PathJoinSubstitution([share, "config", "spatial_memory.rviz"]),
            "-f",
            topics.ODOM_FRAME,
        ],
        parameters=[sim_time],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription([*_arguments(), sim_node, fk_node, context_node, rviz])

"""Try the stack without a robot: sim_node (MuJoCo world + mobile FR3) with fk_node and spatial_context_node.

    ros2 launch spatial_memory sim.launch.py
    ros2 launch spatial_memory sim.launch.py world_preset:=apartment world_seed:=3 use_rviz:=true
    ros2 topic pub -r 10 /cmd_vel geometry_msgs/msg/Twist "{linear: {x: 0.3}, angular: {z: 0.2}}"

    ros2 launch spatial_memory sim.launch.py memory_checkpoint:=/path/to/kinaema.pt
    ros2 launch spatial_memory sim.launch.py odometry:=visual
    ros2 launch spatial_memory sim.launch.py use_policy:=true
    ros2 run spatial_memory go_to_picture picture.png      # drive there (the go_to_picture action)
    ros2 launch spatial_memory sim.launch.py nodes:=robot odometry:=visual use_policy:=true  # robot
    ros2 launch spatial_memory sim.launch.py nodes:=workstation use_policy:=true  # workstation

sim_node makes /clock (it runs on a wall timer); fk_node, spatial_context_node, memory_node and RViz run
on sim time.
spatial_context_node is in mobile mode: it takes the head camera's pose from TF (odom -> base_link,
base_link -> head camera on /tf_static) at each image's stamp. `odometry:=wheel` (the default): sim_node's
noisy wheel odometry publishes odom -> base_link; `odometry:=visual`: vo_node (the patch VO on the head
camera's RGB-D images, the arm masked from joint_states) publishes it instead, the wheel odometry only
starting its chain and bridging the frames it loses. All parameters
come from `params_file` (config/sim.yaml); the arguments below override the world's preset and seed.
memory_node (which answers the /query_pose that spatial_context_node forwards) needs a trained checkpoint:
`use_memory:=auto` (the default) starts it when `memory_checkpoint` (or the parameter file's
engine.checkpoint) names an existing file and otherwise logs why it did not; `true` always starts it (it
then stops with a clear error if the checkpoint is missing), `false` never does.
`use_policy:=true` adds policy_node (the 1 Hz scripted policy: keyframe nominations, the go_to_picture
action) and goal_follower_node (A* on sim_node's `map`, pure pursuit on `cmd_vel`: nav2's part in simulation).
`nodes:=robot|workstation` (default `all`) starts one half of the graph, for two machines on one ROS domain
(README, "Across machines"): the robot half is sensors and control (sim_node, fk_node, spatial_context_node,
vo_node, goal_follower_node), the workstation half the memory and the policy (memory_node, policy_node, RViz).
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
from spatial_memory.node_configs import memory_node_launch
from spatial_memory.sim.presets import WORLD_PRESETS

HALVES = ("robot", "workstation")  # nodes:=... (besides all): the two machines the graph splits across


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
            description="ROS 2 parameter file of sim_node, fk_node, spatial_context_node, memory_node",
        ),
        DeclareLaunchArgument(
            "use_memory",
            default_value="auto",
            choices=["auto", "true", "false"],
            description="start memory_node: auto = only if the memory checkpoint file exists",
        ),
        DeclareLaunchArgument(
            "memory_checkpoint",
            default_value="",
            description="memory_node's checkpoint file ('' = engine.checkpoint of params_file)",
        ),
        DeclareLaunchArgument(
            "use_policy",
            default_value="false",
            choices=["true", "false"],
            description="start policy_node (1 Hz policy, go_to_picture action) and goal_follower_node "
            "(drives cmd_vel to goal_pose on the sim's map, as nav2 would)",
        ),
        DeclareLaunchArgument(
            "odometry",
            default_value="wheel",
            choices=["wheel", "visual"],
            description="who publishes odom -> base_link: sim_node's wheel odometry or vo_node",
        ),
        DeclareLaunchArgument(
            "nodes",
            default_value="all",
            choices=["all", *HALVES],
            description="which half of the graph to start: robot = sensors and control (sim_node, fk_node, "
            "spatial_context_node, vo_node, goal_follower_node), workstation = memory_node, policy_node, "
            "RViz",
        ),
    ]


def _half(name: str) -> IfCondition:
    """True when `nodes` is `all` or `name`: one machine runs one half of the graph."""
    return IfCondition(PythonExpression(["'", LaunchConfiguration("nodes"), f"' in ('all', '{name}')"]))


def _memory_node(context, *args, **kwargs) -> list:
    """memory_node under `use_memory` (auto: if its checkpoint exists), or a log line saying why not."""
    override = LaunchConfiguration("memory_checkpoint").perform(context)
    params_file = LaunchConfiguration("params_file").perform(context)
    checkpoint, why_not = memory_node_launch(
        LaunchConfiguration("use_memory").perform(context), params_file, override
    )
    if why_not:
        return [LogInfo(msg=why_not)]
    overrides = {"engine.checkpoint": checkpoint} if override else {}
    return [
        Node(
            package="spatial_memory",
            executable="memory_node",
            name=topics.MEMORY_NODE,
            output="screen",
            parameters=[params_file, {"use_sim_time": True, **overrides}],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """sim_node + fk_node + spatial_context_node (+ memory_node, + vo_node) with the parameter file; RViz."""
    share = FindPackageShare("spatial_memory")
    params_file = LaunchConfiguration("params_file")
    sim_time = {"use_sim_time": True}  # everything but sim_node runs on the /clock sim_node publishes
    visual = PythonExpression(["'", LaunchConfiguration("odometry"), "' == 'visual'"])
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
                "publish_odom_tf": ParameterValue(
                    PythonExpression(["'", LaunchConfiguration("odometry"), "' == 'wheel'"]), value_type=bool
                ),
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
    vo_node = Node(
        package="spatial_memory",
        executable="vo_node",
        name=topics.VO_NODE,
        output="screen",
        parameters=[params_file, sim_time],
        condition=IfCondition(visual),
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
    use_policy = IfCondition(LaunchConfiguration("use_policy"))
    policy_nodes = [
        Node(
            package="spatial_memory",
            executable="policy_node",
            name=topics.POLICY_NODE,
            output="screen",
            parameters=[params_file, sim_time],
            condition=use_policy,
        ),
        Node(
            package="spatial_memory",
            executable="goal_follower_node",
            name=topics.GOAL_FOLLOWER_NODE,
            output="screen",
            parameters=[params_file, sim_time],
            condition=use_policy,
        ),
    ]
    memory = OpaqueFunction(function=_memory_node)
    policy_node, goal_follower_node = policy_nodes
    robot_nodes = [sim_node, fk_node, context_node, vo_node, goal_follower_node]
    robot = GroupAction(robot_nodes, condition=_half("robot"))
    workstation = GroupAction([memory, policy_node, rviz], condition=_half("workstation"))
    return LaunchDescription([*_arguments(), robot, workstation])

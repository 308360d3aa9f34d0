"""Both TimeBill nodes with parameters from config/timebill.yaml (standard ROS 2 launch, Jazzy/Kilted).

    ros2 launch timebill_ros timebill.launch.py
    ros2 launch timebill_ros timebill.launch.py model:=/models/qwen2.5-0.5b namespace:=robot1/llm log_level:=debug
    ros2 launch timebill_ros timebill.launch.py config:=/path/my.yaml predictor:=false

Where `launch` is not installed (a venv of PyPI wheels), `timebill_ros bringup` starts the same
nodes from the same file with the same arguments.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

# The restart rule `timebill_ros bringup` uses too, from the installed package (no ROS imports).
from timebill_ros.respawn import RESPAWN

PACKAGE = "timebill_ros"


def _nodes(context, *args, **kwargs):
    config = LaunchConfiguration("config").perform(context)
    model = LaunchConfiguration("model").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    log_level = LaunchConfiguration("log_level").perform(context)
    with_predictor = LaunchConfiguration("predictor").perform(context).strip().lower() in ("true", "1", "yes")
    # An empty model argument keeps the file's value; only a given one overrides it.
    params = [config] + ([{"model": model}] if model else [])
    # A node that ends is started again by the rule bringup follows (timebill_ros/respawn.py): the
    # other keeps serving meanwhile (the generation node on its local estimates).
    # respawn_max_retries needs launch from Jazzy on; after the last retry the node stays down.
    common = dict(package=PACKAGE, namespace=namespace, parameters=params, output="screen", emulate_tty=True,
                  arguments=["--ros-args", "--log-level", log_level],
                  respawn=True, respawn_delay=RESPAWN.delay, respawn_max_retries=RESPAWN.max_retries)
    # Managed nodes (configure loads the model, activate serves). They take themselves to active
    # (their `autostart` parameter, true by default), so a respawned node serves again without
    # a manager; with autostart:=false, drive them with launch's ChangeState events, nav2's
    # lifecycle manager or `ros2 lifecycle set`.
    nodes = [LifecycleNode(executable="generation_node", name="generation_node", **common)]
    if with_predictor:
        nodes.append(LifecycleNode(executable="predictor_node", name="predictor_node", **common))
    return nodes


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            "config", default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "timebill.yaml"]),
            description="parameter file read by both nodes"),
        DeclareLaunchArgument(
            "model", default_value="",
            description="model parameter: embedded, a Hugging Face folder or a .gguf file (empty: the config file's)"),
        DeclareLaunchArgument("namespace", default_value="timebill", description="namespace of both nodes"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error or fatal"),
        DeclareLaunchArgument("predictor", default_value="true",
                              description="also start the predictor node (false: the generation node estimates locally)"),
        OpaqueFunction(function=_nodes),
    ])

"""Shared body of the launch files: one launch_ros Node per entry of policy_xai.ros.graph."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from policy_xai.ros.graph import graph, topic_arguments


def describe(graph_name, extra_args=(), rviz=True):
    args = [
        DeclareLaunchArgument("params_file", default_value="", description="parameter file (default: the graph's)"),
        DeclareLaunchArgument("spec", default_value="", description="policy spec override (small, paper, path)"),
        DeclareLaunchArgument("weights", default_value="", description="policy weights override (.safetensors)"),
        DeclareLaunchArgument("method", default_value="", description="attribution method override"),
        DeclareLaunchArgument("device", default_value="",
                              description="torch device of the policy and attribution nodes: cpu, cuda, cuda:N, mps "
                                          "(default: their parameter's, cpu)"),
        DeclareLaunchArgument("allow_untrained", default_value="false",
                              description="let the policy node run untrained weights when weights is empty "
                                          "(simulation and tests only; never on a real arm)"),
        # the robot's topics (policy_xai.topics, role ROBOT), renamed in every node: image_topic:=/my/camera
        *(DeclareLaunchArgument(arg, default_value=name, description=f"name of the {key} topic (default {name})")
          for arg, (key, name) in topic_arguments().items()),
        *extra_args,
    ]

    def nodes(context):
        get = lambda name: LaunchConfiguration(name, default="").perform(context)  # noqa: E731
        pol = {k: get(k) for k in ("spec", "weights", "device") if get(k)}
        overrides = {"policy_node": dict(pol), "attribution_node": dict(pol)}
        if get("method"):
            overrides["attribution_node"]["method"] = get("method")
        if get("allow_untrained").lower() in ("true", "1", "yes"):
            overrides["policy_node"]["allow_untrained"] = True
        if get("task"):
            overrides["sim_node"] = {"task": get("task")}
        out = []
        name = graph_name or get("graph")
        topics = {key: get(arg) for arg, (key, _) in topic_arguments().items() if get(arg)}
        for n in graph(name, params_file=get("params_file") or None, overrides=overrides, topics=topics):
            params = [n.params_file] if n.params_file else []
            if n.parameters:
                params.append(n.parameters)
            out.append(Node(package="policy_xai", executable=n.executable, name=n.name, parameters=params,
                            remappings=list(n.remappings), output="screen"))
        return out

    actions = [*args, OpaqueFunction(function=nodes)]
    if rviz:
        from policy_xai.resources import share_path

        actions += [
            DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 with config/policy_xai.rviz"),
            Node(package="rviz2", executable="rviz2", arguments=["-d", str(share_path("config", "policy_xai.rviz"))],
                 condition=IfCondition(LaunchConfiguration("rviz"))),
        ]
    return LaunchDescription(actions)

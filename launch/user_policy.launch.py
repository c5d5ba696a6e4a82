"""A user's PyTorch policy driving the MuJoCo arm, explained live (graph "user_sim": sim_node,
user_policy_node, visualization_node; split:=true: graph "user_sim_split" with a
user_explainer_node; parameters from config/sim.yaml).

    ros2 launch policy_xai user_policy.launch.py model:=my_pkg.policies:make_policy \
        weights:=policy.safetensors mapping:=my_mapping.yaml [model_kwargs:='{"width": 8}'] \
        [method:=dtd] [device:=cpu] [split:=true] [rviz:=true]
    ros2 launch policy_xai user_policy.launch.py model:=policy.pt2 mapping:=my_mapping.yaml

model:= is `package.module:factory` (with weights:=, a .safetensors or state_dict file) or a
torch.export program (.pt2). mapping:= defaults to the shipped config/user_policy_sim.yaml (the sim's
64x64 camera and its 7 joints' positions and velocities); the sim camera takes the size of the
mapping's first camera. Without weights:= a factory model is refused unless allow_untrained:=true
(simulation and tests only). By default the user_policy_node acts and explains; split:=true runs it
with explain:=false and a user_explainer_node that explains in a process of its own (as
policy_node and attribution_node do; docs/ros.md compares the two).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from policy_xai.ros.graph import graph, user_sim_overrides


def generate_launch_description():
    args = [
        DeclareLaunchArgument("model", description="package.module:factory or a .pt2 torch.export program"),
        DeclareLaunchArgument("mapping", default_value="user_policy_sim",
                              description="YAML observation mapping (path or shipped config/ name)"),
        DeclareLaunchArgument("weights", default_value="", description="weights of a factory model"),
        DeclareLaunchArgument("model_kwargs", default_value="", description="factory keyword arguments (JSON)"),
        DeclareLaunchArgument("method", default_value="", description="attribution method (default dtd)"),
        DeclareLaunchArgument("device", default_value="", description="torch device (default cpu)"),
        DeclareLaunchArgument("allow_untrained", default_value="false",
                              description="run a factory model without weights (simulation and tests only)"),
        DeclareLaunchArgument("split", default_value="false",
                              description="explain in a user_explainer_node of its own"),
        DeclareLaunchArgument("params_file", default_value="", description="parameter file (default config/sim.yaml)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 with config/policy_xai.rviz"),
    ]

    def nodes(context):
        get = lambda name: LaunchConfiguration(name, default="").perform(context)  # noqa: E731
        yes = lambda name, default="false": (get(name) or default).lower() in ("true", "1", "yes")  # noqa: E731
        split = yes("split")
        overrides = user_sim_overrides(get("model"), get("mapping") or "user_policy_sim", get("model_kwargs"),
                                       get("weights"), get("method"), yes("allow_untrained"), get("device"),
                                       split=split)
        out = []
        for n in graph("user_sim_split" if split else "user_sim", params_file=get("params_file") or None,
                       overrides=overrides):
            params = [n.params_file] if n.params_file else []
            if n.parameters:  # strings stay strings (model_kwargs is JSON, not a YAML mapping)
                params.append({k: ParameterValue(v, value_type=str) if isinstance(v, str) else v
                               for k, v in n.parameters.items()})
            out.append(Node(package="policy_xai", executable=n.executable, name=n.name, parameters=params,
                            remappings=list(n.remappings), output="screen"))
        return out

    from policy_xai.resources import share_path

    rviz = Node(package="rviz2", executable="rviz2", arguments=["-d", str(share_path("config", "policy_xai.rviz"))],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription([*args, OpaqueFunction(function=nodes), rviz])

"""ROS 2 layer of policy_xai: thin rclpy adapters over the core.

interfaces.py re-exports the declarations of every topic, type, QoS and parameter default (they live
in the core: policy_xai.topics, policy_xai.parameters); convert.py turns numpy arrays into messages
and back (the field layouts and the array logic: policy_xai.messages); graph.py declares the node
graph used by the launch files and by runner.py (the process runner); the *_node.py modules are the
nodes. Importing this package does not import rclpy.
"""
